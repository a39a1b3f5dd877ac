"""Held-out metrics (action match, NLL, AUC, APR) against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.deep.metrics import average_precision, held_out_metrics, roc_auc


def test_auc_and_apr_of_a_hand_example():
    # Positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 (positive, negative)
    # pairs are ordered correctly. Ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): precision 1 at
    # recall 1/2, then 2/3 at recall 1, so AP = 1/2 * 1 + 1/2 * 2/3.
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([False, False, True, True])
    assert roc_auc(scores, labels) == 0.75
    assert average_precision(scores, labels) == pytest.approx(0.5 + 1 / 3, abs=1e-15)


def test_ties_count_one_half_and_share_a_threshold():
    # Scores 0.5 (+), 0.5 (-), 0.2 (-), 0.9 (+): pairs (0.5+, 0.5-) tie = 1/2, the other three
    # are right: AUC = 3.5 / 4. Thresholds 0.9: P 1, R 1/2; 0.5 (two rows): P 2/3, R 1.
    scores = np.array([0.5, 0.5, 0.2, 0.9])
    labels = np.array([True, False, False, True])
    assert roc_auc(scores, labels) == 3.5 / 4
    assert average_precision(scores, labels) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    # All scores equal: AUC one half, AP the positive rate.
    assert roc_auc(np.ones(4), labels) == 0.5
    assert average_precision(np.ones(4), labels) == 0.5


def test_undefined_cases_are_none():
    assert roc_auc(np.array([0.1, 0.2]), np.array([True, True])) is None
    assert roc_auc(np.array([0.1, 0.2]), np.array([False, False])) is None
    assert average_precision(np.array([0.1, 0.2]), np.array([False, False])) is None
    assert average_precision(np.array([0.1, 0.2]), np.array([True, True])) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=12).filter(
        lambda pairs: len({label for _, label in pairs}) == 2
    )
)
def test_auc_is_the_pairwise_probability_and_ap_the_mean_precision_at_each_positive(pairs):
    scores = np.array([s / 4 for s, _ in pairs])
    labels = np.array([label for _, label in pairs])
    pos, neg = scores[labels], scores[~labels]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    assert roc_auc(scores, labels) == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)
    # AP as the mean over positives of the precision at that positive's score threshold.
    precisions = [np.mean(labels[scores >= s]) for s in pos]
    assert average_precision(scores, labels) == pytest.approx(np.mean(precisions), abs=1e-12)


def test_held_out_metrics_for_two_actions_by_hand():
    # pi(a=1|s) = sigmoid(l1 - l0): 0.2, 0.6, 0.7, 0.4; expert actions 0, 0, 1, 1.
    p1 = np.array([0.2, 0.6, 0.7, 0.4])
    logits = np.stack([np.zeros(4), np.log(p1 / (1 - p1))], axis=1)
    actions = np.array([0, 0, 1, 1])
    m = held_out_metrics(logits, actions)
    # Greedy: 0, 1, 1, 0 -> right on states 0 and 2.
    assert m.action_match == 0.5
    nll = -(math.log(0.8) + math.log(0.4) + math.log(0.7) + math.log(0.4)) / 4
    assert m.nll == pytest.approx(nll, abs=1e-12)
    # Positives 0.7, 0.4 vs negatives 0.2, 0.6: 0.7 beats both, 0.4 beats 0.2 -> 3/4.
    assert m.auc == pytest.approx(0.75, abs=1e-12)
    # Ranked 0.7 (+), 0.6 (-), 0.4 (+), 0.2 (-): AP = 1/2 * 1 + 1/2 * 2/3.
    assert m.apr == pytest.approx(0.5 + 1 / 3, abs=1e-12)
    assert m.n_states == 4 and m.averaging.startswith("binary")


def test_held_out_metrics_for_three_actions_average_one_vs_rest_over_defined_actions():
    # Action 2 is never taken: its AUC and APR are undefined and left out of the macro mean.
    pi = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    actions = np.array([0, 1, 1, 0])
    m = held_out_metrics(np.log(pi), actions)
    assert m.action_match == 0.5  # argmax 0, 1, 0, 2
    assert m.nll == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.4, 0.1])), abs=1e-12)
    auc0 = roc_auc(pi[:, 0], actions == 0)  # positives 0.7, 0.1 vs 0.3, 0.5: 2 of 4
    auc1 = roc_auc(pi[:, 1], actions == 1)  # positives 0.6, 0.4 vs 0.2, 0.1: 4 of 4
    assert (auc0, auc1) == (0.5, 1.0)
    assert m.auc == pytest.approx(0.75, abs=1e-12)
    # APR action 0: ranked 0.7 (+), 0.5, 0.3, 0.1 (+): 1/2 * 1 + 1/2 * 2/4; action 1: 1.
    assert m.apr == pytest.approx(((0.5 + 0.25) + 1.0) / 2, abs=1e-12)
    assert "one-vs-rest macro" in m.averaging and "[0, 1]" in m.averaging


def test_held_out_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="shapes"):
        held_out_metrics(np.zeros((3, 2)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        held_out_metrics(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="NaN"):
        held_out_metrics(np.array([[0.0, np.nan]]), np.array([0]))
