"""Held-out metrics of a policy on logged expert decisions: what an env-free comparison measures.

Where no environment can be played (logged decisions, as the EDM paper's MIMIC-III
experiment), a learner is judged on expert states it never trained on, by how well its action
distribution ``pi(a|s) = softmax(f(s))[a]`` predicts the expert's action there:

* **action match** (the EDM paper's ACC): the fraction of states where the greedy action
  ``argmax_a f(s)[a]`` (ties to the lowest action, as the learner plays) is the expert's;
* **NLL**: the mean negative log-likelihood ``-log pi(a_E|s)`` of the expert's actions, in nats;
* **AUC** and **APR** (the paper's AUC, APR): the area under the ROC curve and the average
  precision of ``pi(a=1|s)`` as a score for "the expert took action 1", for two actions; for
  more actions the one-vs-rest macro average over the actions (each action's score
  ``pi(a|s)`` against "the expert took ``a``"), over the actions for which the figure is defined
  (AUC: the action was taken in some held-out states and not in others; APR: it was taken in
  some).

AUC is the Mann-Whitney statistic with tied scores counted one half (rank formula with
mid-ranks); APR is ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in
decreasing order, with ``R_0 = 0`` (scikit-learn's ``average_precision_score``, no
interpolation). Both are None where undefined.

Example:
    >>> import numpy as np
    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    >>> average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.8333333333333333
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax
from scipy.stats import rankdata

#: The held-out metrics, in the order reports list them; "higher is better" except NLL.
METRICS: tuple[str, ...] = ("action_match", "nll", "auc", "apr")
METRIC_NAMES = {
    "action_match": "action match (ACC)",
    "nll": "NLL of the expert's actions (nats)",
    "auc": "AUC",
    "apr": "APR",
}
HIGHER_IS_BETTER = {"action_match": True, "nll": False, "auc": True, "apr": True}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores[n]`` for the boolean ``labels[n]``.

    The probability that a positive scores above a negative, ties counted one half:
    ``(sum of the positives' mid-ranks - P (P + 1) / 2) / (P N)``. None without both a
    positive and a negative.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores, method="average")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Average precision of ``scores[n]`` for the boolean ``labels[n]``.

    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds ``t_1 > t_2 > ...`` (the
    distinct scores), where ``P_n`` and ``R_n`` are the precision and recall of predicting
    "positive" for ``score >= t_n``, and ``R_0 = 0``. None without a positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # The last index of each run of equal scores: a threshold admits the whole run.
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_positives = np.cumsum(sorted_labels)[last]
    predicted = last + 1
    precision = true_positives / predicted
    recall = true_positives / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class HeldOutMetrics:
    """A policy's held-out metrics on ``n_states`` expert states (see the module doc)."""

    action_match: float
    """Fraction of states where the greedy action is the expert's."""
    nll: float
    """Mean ``-log pi(a_E|s)``, nats."""
    auc: float | None
    """AUC of ``pi(a=1|s)`` (two actions) or the one-vs-rest macro AUC; None if undefined."""
    apr: float | None
    """Average precision, as ``auc``; None if undefined."""
    n_states: int
    """Held-out states measured."""
    averaging: str
    """How AUC and APR were computed: "binary" or "one-vs-rest macro over actions [...]"."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def held_out_metrics(logits: np.ndarray, actions: np.ndarray) -> HeldOutMetrics:
    """The held-out metrics of a policy with ``logits[n, A]`` on states whose expert actions
    are ``actions[n]`` (int, in ``0..A-1``); ``pi = softmax(logits)``, in float64.

    Raises:
        ValueError: for shapes that disagree, no states, or actions outside ``0..A-1``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    actions = np.asarray(actions)
    if logits.ndim != 2 or actions.shape != (len(logits),):
        raise ValueError(
            f"held_out_metrics needs logits [n, n_actions] and actions [n], got shapes "
            f"{logits.shape} and {actions.shape}."
        )
    n, n_actions = logits.shape
    if n == 0 or n_actions < 2:
        raise ValueError(f"held_out_metrics needs states and >= 2 actions, got {logits.shape}.")
    if not np.isfinite(logits).all():
        raise ValueError("The policy's logits contain NaN or infinite values.")
    if (
        not np.issubdtype(actions.dtype, np.integer)
        or actions.min() < 0
        or actions.max() >= n_actions
    ):
        raise ValueError(f"Expert actions must be integers in 0..{n_actions - 1}.")
    log_pi = log_softmax(logits, axis=1)
    rows = np.arange(n)
    match = float(np.mean(logits.argmax(axis=1) == actions))
    nll = float(-np.mean(log_pi[rows, actions]))
    pi = np.exp(log_pi)
    if n_actions == 2:
        labels = actions == 1
        auc, apr = roc_auc(pi[:, 1], labels), average_precision(pi[:, 1], labels)
        averaging = "binary: pi(a=1|s) as the score of action 1"
    else:
        aucs = {a: roc_auc(pi[:, a], actions == a) for a in range(n_actions)}
        aprs = {a: average_precision(pi[:, a], actions == a) for a in range(n_actions)}
        auc_used = [a for a, v in aucs.items() if v is not None]
        apr_used = [a for a, v in aprs.items() if v is not None]
        auc = float(np.mean([aucs[a] for a in auc_used])) if auc_used else None
        apr = float(np.mean([aprs[a] for a in apr_used])) if apr_used else None
        averaging = f"one-vs-rest macro: AUC over actions {auc_used}, APR over actions {apr_used}"
    return HeldOutMetrics(
        action_match=match, nll=nll, auc=auc, apr=apr, n_states=n, averaging=averaging
    )


def policy_held_out_metrics(learner, demos, *, batch_size: int = 65_536) -> HeldOutMetrics:
    """:func:`held_out_metrics` of a trained learner (``learner.logits(obs)``) on the states
    and expert actions of ``demos`` (:class:`~sbil.deep.demonstrations.Demonstrations`)."""
    obs = demos.observations
    logits = np.concatenate(
        [
            learner.logits(obs[start : start + batch_size])
            for start in range(0, len(obs), batch_size)
        ]
    )
    return held_out_metrics(logits, demos.actions)
