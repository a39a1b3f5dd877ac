"""The constructions of the critique of EDM, as functions of the tabular core.

The note (Swamy, Choudhury, Bagnell & Wu, on EDM of Jarrett, Bica & van der Schaar, NeurIPS
2020) argues with a few small MDPs and policy classes. This module builds them and computes the
quantities its examples are about; :mod:`sbil.experiments.claims_note` turns them into checked
claims with the report's wording. Nothing here is a claim or a verdict: only math.

Energy conventions (see :func:`sbil.tabular.policies.edm_state_log_prob`): "reference" is
``p(s) ∝ exp(logsumexp_a f(s, a))``, the sign of the note's eq. (11) and of EDM's code; "note"
is ``p(s) ∝ exp(-logsumexp_a f(s, a))``, the sign of the note's eqs. (4)-(5).
"""

from __future__ import annotations

import numpy as np

from sbil.tabular.checks import Convention
from sbil.tabular.mdp import TabularMDP, self_loop_mdp, two_state_mdp
from sbil.tabular.objectives import bc_objective, edm_objective


def state_log_prob_gradient(
    features: np.ndarray, theta: np.ndarray, state: int, *, convention: Convention = "reference"
) -> np.ndarray:
    """Gradient ``d/dtheta log p_theta(state)`` of EDM's state model, from the core objectives.

    EDM's per-pair loss is ``-log pi(a|s) - log p(s)`` and BC's is ``-log pi(a|s)``; with all
    the weight on one pair ``(state, 0)`` the difference of their gradients is exactly
    ``-grad log p_theta(state)``. This reads the gradient off ``edm_objective`` and
    ``bc_objective`` rather than re-deriving it.

    Args:
        features: ``Phi[s, a, k]``.
        theta: ``theta[k]``.
        state: the state index.
        convention: "reference" or "note".

    Returns:
        ``grad[k]``.
    """
    features = np.asarray(features, dtype=np.float64)
    weights = np.zeros(features.shape[:2])
    weights[state, 0] = 1.0
    theta = np.asarray(theta, dtype=np.float64)
    edm = edm_objective(theta, features, weights, convention=convention)
    bc = bc_objective(theta, features, weights)
    return -(np.asarray(edm.grad) - np.asarray(bc.grad))


def example3_note_gradient(theta: float | np.ndarray, k: float | np.ndarray) -> np.ndarray:
    """The note's closed form of ``d/dtheta log p_theta(s2)`` in the Example 3 class.

    ``k * sigmoid(k theta) - (e^theta + k e^{k theta}) / (2 + e^theta + e^{k theta})``
    (reference convention); at ``theta = 0`` it is ``(k - 1) / 4``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    e1, ek = np.exp(theta), np.exp(k * theta)
    return k / (1.0 + np.exp(-k * theta)) - (e1 + k * ek) / (2.0 + e1 + ek)


def self_loop_from_start(n_states: int, n_actions: int) -> TabularMDP:
    """Example 1's MDP: every action keeps the agent in its state; start in state 0.

    Analysed with discount 0.9 (its stationary distribution is not unique); any policy's
    visitation is the point mass on state 0.
    """
    start = np.zeros(n_states)
    start[0] = 1.0
    return self_loop_mdp(n_states, n_actions, initial=start, discount=0.9)


def theorem1_mdp() -> TabularMDP:
    """The concrete MDP used for Theorem 1: action 0 stays, action 1 switches state.

    Two states, two actions, stationary visitation (no discount, no horizon).
    """
    transitions = np.zeros((2, 2, 2))
    transitions[0, 0, 0] = transitions[1, 0, 1] = 1.0  # action 0: stay
    transitions[0, 1, 1] = transitions[1, 1, 0] = 1.0  # action 1: switch
    return two_state_mdp(transitions=transitions)


def per_state_features() -> np.ndarray:
    """Example 3's two states with one parameter per state: logits (0, theta1) in s1 and
    (0, theta2) in s2.

    No parameter is shared across states; the expert of Theorem 1 (theta = 1, k = 1/2) is
    ``theta = (1, 1/2)`` in this class.

    Returns:
        ``Phi[s, a, k]`` of shape ``(2, 2, 2)``.
    """
    features = np.zeros((2, 2, 2))
    features[0, 1, 0] = features[1, 1, 1] = 1.0
    return features
