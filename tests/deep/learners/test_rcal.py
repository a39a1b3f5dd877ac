"""Tests for sbil.deep.learners.rcal: RCAL's loss by hand (its training, shared with the other
transition learners, is tested in tests/deep/test_transition_learners.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbil.deep.learners.rcal import rcal_loss


def _t(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.float64))


def _a(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.int64))


# K=1, B=2, A=3.
RCAL_Q = [[[1.0, 2.0, 0.5], [0.5, -1.0, 3.0]]]
RCAL_ACTIONS = [[1, 0]]
RCAL_Q_NEXT = [[[0.5, 1.5, -2.0], [2.0, 0.0, 1.0]]]


def test_rcal_loss_by_hand():
    # Row 0, a=1: max(1+1, 2+0, 0.5+1) - 2 = 0; row 1, a=0: max(0.5+0, -1+1, 3+1) - 0.5 = 3.5.
    # R(s, a) = Q(s, a) - 0.9 max Q(s', .): row 0: 2 - 0.9 * 1.5 = 0.65; row 1 is terminal: 0.5.
    terms = rcal_loss(
        _t(RCAL_Q),
        _a(RCAL_ACTIONS),
        _t(RCAL_Q_NEXT),
        _t([[0.0, 1.0]]),
        discount=0.9,
        reward_l1_coef=0.5,
    )
    assert terms.margin.item() == pytest.approx(1.75, rel=1e-12)
    assert terms.reward_l1.item() == pytest.approx((0.65 + 0.5) / 2, rel=1e-12)
    assert terms.loss.item() == pytest.approx(1.75 + 0.5 * 0.575, rel=1e-12)
    # Without the terminal flag row 1's reward is 0.5 - 0.9 * 2 = -1.3.
    open_ended = rcal_loss(
        _t(RCAL_Q),
        _a(RCAL_ACTIONS),
        _t(RCAL_Q_NEXT),
        _t([[0.0, 0.0]]),
        discount=0.9,
        reward_l1_coef=0.5,
    )
    assert open_ended.reward_l1.item() == pytest.approx((0.65 + 1.3) / 2, rel=1e-12)
    assert open_ended.margin.item() == terms.margin.item()


def test_rcal_margin_vanishes_only_when_the_expert_action_wins_by_the_margin():
    q = _t([[[3.0, 2.0, 1.0], [3.0, 2.5, 0.0]]])  # row 0 wins by 1, row 1 by only 0.5
    terms = rcal_loss(
        q, _a([[0, 0]]), torch.zeros_like(q), _t([[0.0, 0.0]]), discount=0.0, reward_l1_coef=1.0
    )
    assert terms.margin.item() == pytest.approx(0.5 / 2, rel=1e-12)
    assert terms.reward_l1.item() == pytest.approx(3.0, rel=1e-12)  # gamma 0: R = Q(s, a)
