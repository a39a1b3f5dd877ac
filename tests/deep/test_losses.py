"""Tests for sbil.deep.losses: the terms every learner shares, against float64 formulas."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sbil.deep.config import LearnerConfig
from sbil.deep.losses import cross_entropy, named_terms, policy_regularizer
from sbil.deep.networks import StackedMLP


def _logits_actions(k=3, b=5, a=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(k, b, a, generator=generator)
    actions = torch.randint(0, a, (k, b), generator=generator)
    return logits, actions


def test_cross_entropy_is_each_learner_s_mean_negative_log_softmax():
    logits, actions = _logits_actions()
    got = cross_entropy(logits, actions)
    x = logits.double().numpy()
    log_pi = x - np.log(np.exp(x).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_pi, actions.numpy()[..., None], -1)[..., 0].mean(1)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6, atol=1e-6)


def test_cross_entropy_of_one_learner_does_not_depend_on_the_others():
    logits, actions = _logits_actions()
    alone = cross_entropy(logits[1:2], actions[1:2])
    changed = logits.clone()
    changed[0] += 100.0
    assert torch.equal(cross_entropy(changed, actions)[1:2], alone)


def test_policy_regularizer_is_zero_when_off_and_its_formula_when_on():
    logits, _ = _logits_actions(k=2)
    policy = StackedMLP(2, 3, (8,), 4)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for w in policy.weights:
            w.copy_(torch.randn(w.shape, generator=generator))
    assert policy_regularizer(logits, policy, LearnerConfig(algo="bc")) == 0.0
    config = LearnerConfig(algo="bc", l2_coef=0.01, entropy_coef=0.5)
    got = policy_regularizer(logits, policy, config)
    l2 = sum(w.detach().double().square().sum(dim=(1, 2)) for w in policy.weights)
    p = logits.double().softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean(-1)
    np.testing.assert_allclose(
        got.detach().double().numpy(), (0.01 * l2 - 0.5 * entropy).numpy(), rtol=1e-5, atol=1e-6
    )


def test_named_terms_keeps_the_field_order_and_detaches():
    @dataclasses.dataclass(frozen=True)
    class Terms:
        loss: torch.Tensor
        cross_entropy: torch.Tensor

    x = torch.ones(2, requires_grad=True)
    terms = named_terms(Terms(loss=x * 2, cross_entropy=x * 3))
    assert list(terms) == ["loss", "cross_entropy"]
    assert not any(t.requires_grad for t in terms.values())
    assert terms["cross_entropy"].tolist() == pytest.approx([3.0, 3.0])
