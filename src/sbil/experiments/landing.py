"""Where EDM lands: its infinite-data limit in the Example 3 class.

The class has two states and two actions with logits ``(0, theta)`` in s1 and
``(0, k theta)`` in s2. The expert is ``theta_E`` (default 1). The expert's state
distribution is set by the dynamics: the next state is s1 with probability ``q`` whatever
``(s, a)``, and the start distribution is ``(q, 1 - q)``, so ``d_E(s1) = q`` under any
kind of visitation (checked against :func:`sbil.tabular.visitation.state_visitation`).

With the reference energy convention EDM's objective is the negative log-likelihood of the
joint softmax ``p(s, a) ∝ exp f(s, a)``, so its optimum matches feature moments,
``E_{p_theta}[Phi] = E_{d_E}[Phi]`` (Jarrett et al. call EDM "energy-based distribution
matching"); it is consistent exactly when ``d_E(s) = p_{theta_E}(s)``. This module computes
the limit with the core's batched ``fit_edm``, and the consistent set by solving
"EDM's gradient at the expert = 0" for ``q`` (the gradient is affine in ``q``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sbil.tabular.checks import Convention
from sbil.tabular.estimators import fit_edm
from sbil.tabular.mdp import TabularMDP, two_state_mdp
from sbil.tabular.objectives import edm_objective
from sbil.tabular.policies import edm_state_log_prob, example3_features, logits, policy_probs
from sbil.tabular.visitation import state_visitation

DEFAULT_D1_GRID = tuple(float(x) for x in np.round(np.linspace(0.01, 0.99, 99), 10))
DEFAULT_K_GRID = tuple(float(x) for x in np.round(np.linspace(-2.0, 2.0, 81), 10))


def landing_mdp(q: float) -> TabularMDP:
    """Two-state MDP whose next state is s1 with probability ``q`` for every ``(s, a)``.

    Args:
        q: probability of s1, in (0, 1).

    Returns:
        A stationary TabularMDP with ``P[s, a, :] = (q, 1 - q)`` and start ``(q, 1 - q)``.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q = d_E(s1) must lie strictly between 0 and 1; got {q}.")
    transitions = np.empty((2, 2, 2))
    transitions[..., 0] = q
    transitions[..., 1] = 1.0 - q
    return two_state_mdp(transitions=transitions, initial=(q, 1.0 - q))


def expert_visitation(q: float, k: float, theta_expert: float = 1.0) -> np.ndarray:
    """The expert's exact state-action visitation ``d_E[s, a]`` on :func:`landing_mdp`."""
    features = example3_features(k)
    pi_e = policy_probs(features, np.array([theta_expert]))
    d_state = state_visitation(landing_mdp(q), pi_e)
    return d_state[:, None] * pi_e


@dataclass(frozen=True)
class LandingResult:
    """EDM's infinite-data limit over a grid of ``d_E(s1)`` and ``k``.

    Attributes:
        d1: ``d1[i]``, the expert's probability of s1 (grid).
        k: ``k[j]``, the class parameter (grid).
        theta: ``theta[j, i]``, EDM's limit (NaN where the fit did not converge).
        converged: ``converged[j, i]``.
        consistent_d1: ``consistent_d1[j]``, the d_E(s1) at which EDM's limit is the expert
            (NaN where every d_E(s1) is, i.e. where EDM's gradient at the expert vanishes
            identically, k = 1).
        theta_expert: the expert's parameter.
        convention: energy convention used.
    """

    d1: np.ndarray
    k: np.ndarray
    theta: np.ndarray
    converged: np.ndarray
    consistent_d1: np.ndarray
    theta_expert: float
    convention: Convention

    @property
    def flips(self) -> np.ndarray:
        """``flips[j, i]``: EDM's limiting policy prefers the other action from the expert.

        In s1 the expert's preference is sign(theta_E) and EDM's is sign(theta*); in s2 both
        are multiplied by the same k, so one sign comparison covers both states.
        """
        return np.sign(self.theta) == -np.sign(self.theta_expert)

    @property
    def error(self) -> np.ndarray:
        """``error[j, i] = |theta* - theta_E|``."""
        return np.abs(self.theta - self.theta_expert)


def consistent_state_probability(
    k: float, *, theta_expert: float = 1.0, convention: Convention = "reference"
) -> float:
    """The d_E(s1) for which EDM's infinite-data gradient at the expert is zero.

    The expert's visitation is ``d_E(s, a) = d_E(s) pi_E(a|s)``, affine in ``q = d_E(s1)``,
    so EDM's gradient at ``theta_E`` is ``(1 - q) g0 + q g1`` with ``g0``, ``g1`` its values
    at ``q = 0`` and ``q = 1``; this returns the root ``g0 / (g0 - g1)``, or NaN if the
    gradient is zero for every q (then EDM is consistent whatever d_E), or if the root falls
    outside [0, 1].

    Args:
        k: class parameter.
        theta_expert: the expert's theta.
        convention: energy convention.

    Returns:
        The consistent ``d_E(s1)``.
    """
    features = example3_features(k)
    theta = np.array([theta_expert])
    pi_e = policy_probs(features, theta)
    grads = []
    for s in (1, 0):  # q = 0 puts all mass on s2; q = 1 on s1
        d = np.zeros((2, 2))
        d[s] = pi_e[s]
        grads.append(
            float(np.asarray(edm_objective(theta, features, d, convention=convention).grad)[0])
        )
    g0, g1 = grads
    if abs(g0 - g1) <= 1e-14 * max(1.0, abs(g0), abs(g1)):
        return float("nan")
    q = g0 / (g0 - g1)
    return float(q) if 0.0 <= q <= 1.0 else float("nan")


def edm_state_model_s1(
    k: float, *, theta_expert: float = 1.0, convention: Convention = "reference"
) -> float:
    """EDM's state model at the expert, ``p_{theta_E}(s1)`` (moment matching's prediction)."""
    f = logits(example3_features(k), np.array([theta_expert]))
    return float(np.exp(edm_state_log_prob(f, convention=convention))[0])


def edm_landing(
    d1: Sequence[float] = DEFAULT_D1_GRID,
    k: Sequence[float] = DEFAULT_K_GRID,
    *,
    theta_expert: float = 1.0,
    convention: Convention = "reference",
) -> LandingResult:
    """EDM's infinite-data limit theta* for every (d_E(s1), k) on the grids, in one batch.

    Args:
        d1: values of the expert's state probability d_E(s1), each in (0, 1).
        k: values of the class parameter.
        theta_expert: the expert's theta.
        convention: energy convention passed to ``fit_edm``.

    Returns:
        LandingResult with ``theta[j, i]`` for ``k[j]``, ``d1[i]``.
    """
    d1 = np.asarray(d1, dtype=np.float64)
    ks = np.asarray(k, dtype=np.float64)
    if d1.ndim != 1 or ks.ndim != 1 or d1.size == 0 or ks.size == 0:
        raise ValueError("d1 and k must be non-empty 1-D sequences of numbers.")
    # d_E(s) is realised by the dynamics alone (checked through the core's visitation) ...
    d_state = np.stack([state_visitation(landing_mdp(q), np.full((2, 2), 0.5)) for q in d1])
    features = np.stack([example3_features(kj) for kj in ks])  # [n_k, 2, 2, 1]
    pi_e = np.stack([policy_probs(f, np.array([theta_expert])) for f in features])
    # ... and d_E(s, a) = d_E(s) pi_E(a|s): [n_k, n_d1, 2, 2]
    d_e = d_state[None, :, :, None] * pi_e[:, None, :, :]
    batch_features = np.broadcast_to(features[:, None], (ks.size, d1.size, 2, 2, 1))
    fit = fit_edm(
        batch_features.reshape(-1, 2, 2, 1),
        d_e.reshape(-1, 2, 2),
        convention=convention,
        raise_on_failure=False,
    )
    theta = np.asarray(fit.theta, dtype=np.float64).reshape(ks.size, d1.size)
    converged = np.asarray(fit.converged, dtype=bool).reshape(ks.size, d1.size)
    theta = np.where(converged, theta, np.nan)
    consistent = np.array(
        [
            consistent_state_probability(kj, theta_expert=theta_expert, convention=convention)
            for kj in ks
        ]
    )
    return LandingResult(
        d1=d1,
        k=ks,
        theta=theta,
        converged=converged,
        consistent_d1=consistent,
        theta_expert=float(theta_expert),
        convention=convention,
    )
