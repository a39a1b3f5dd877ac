"""Tests for sbil.deep.learners.iqlearn: IQ-Learn's loss by hand (its training, shared with the
other transition learners, is tested in tests/deep/test_transition_learners.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from sbil.deep.learners.iqlearn import iqlearn_loss
from sbil.deep.losses import cross_entropy


def _t(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.float64))


def _a(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.int64))


def _random_q(seed, k=2, b=5, a=3, scale=1.0):
    rng = np.random.default_rng(seed)
    return (
        _t(rng.normal(size=(k, b, a)) * scale),
        _a(rng.integers(0, a, size=(k, b))),
        _t(rng.normal(size=(k, b, a)) * scale),
    )


@pytest.mark.parametrize("temperature", [1.0, 0.01])
def test_iqlearn_value_terms_are_tau_times_the_cross_entropy_of_q_over_tau(temperature):
    # -mean_D [Q(s,a) - gamma V(s')] + mean_D [V(s) - gamma V(s')] = mean_D [V(s) - Q(s,a)]
    # = tau * mean_D -log softmax(Q(s,.) / tau)[a]: the gamma V(s') terms cancel.
    q, actions, q_next = _random_q(0, scale=0.05 if temperature < 1 else 1.0)
    done = _t([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]])
    terms = iqlearn_loss(
        q, actions, q_next, done, discount=0.97, temperature=temperature, chi2_alpha=0.5
    )
    ce = cross_entropy(q / temperature, actions)
    torch.testing.assert_close(-terms.reward_term + terms.value_term, temperature * ce)
    torch.testing.assert_close(terms.loss, temperature * ce + terms.chi2_term)


def test_iqlearn_chi2_term_and_terminal_masking_by_hand():
    q = np.array([[[1.0, 0.0], [0.2, 0.4]]])
    q_next = np.array([[[0.5, -0.5], [3.0, 1.0]]])
    actions, done, gamma, tau, alpha = [[0, 1]], [[0.0, 1.0]], 0.9, 0.5, 0.25
    v_next = tau * scipy.special.logsumexp(q_next / tau, axis=-1) * (1 - np.array(done))
    assert v_next[0, 1] == 0.0  # V(s') = 0 after a terminal step
    r = np.array([1.0, 0.4]) - gamma * v_next[0]
    v = tau * scipy.special.logsumexp(q / tau, axis=-1)[0]
    terms = iqlearn_loss(
        _t(q), _a(actions), _t(q_next), _t(done), discount=gamma, temperature=tau, chi2_alpha=alpha
    )
    assert terms.reward_term.item() == pytest.approx(r.mean(), rel=1e-12)
    assert terms.value_term.item() == pytest.approx((v - gamma * v_next[0]).mean(), rel=1e-12)
    assert terms.chi2_term.item() == pytest.approx((r**2).mean() / (4 * alpha), rel=1e-12)
    assert terms.loss.item() == pytest.approx(
        -r.mean() + (v - gamma * v_next[0]).mean() + (r**2).mean() / (4 * alpha), rel=1e-12
    )
