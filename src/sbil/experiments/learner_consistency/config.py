"""The learner-consistency study's learners, data kinds, settings and result.

Part of :mod:`sbil.experiments.learner_consistency`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sbil.experiments.consistency import ConsistencyConfig

#: The learners, in report order. ``valuedice-*``: the policy is softmax(Phi theta), the
#: critic tabular; ``-initial``/``-expert`` is the start distribution of the (1 - gamma) term;
#: ``-expected`` is the paper's Bellman-operator form, the others the sampled loss's limit.
LEARNERS: tuple[str, ...] = (
    "bc",
    "valuedice-initial",
    "valuedice-expert",
    "valuedice-initial-expected",
    "valuedice-expert-expected",
    "iqlearn-tabular",
    "iqlearn-shared",
    "avril-tabular",
    "avril-shared",
)
DATA_KINDS: tuple[str, ...] = ("discounted", "stationary")


@dataclass(frozen=True)
class LearnerConsistencyConfig:
    """Configuration of the learner consistency study.

    Attributes:
        n_mdps: random MDPs (the consistency study's first ``n_mdps``).
        n_states: states per MDP (the consistency study's).
        n_actions: actions per MDP.
        n_params: shared parameters K.
        theta_scale: the expert's theta_E ~ N(0, theta_scale^2) per coordinate.
        seed: root seed of the problems (the consistency study's ``seed``).
        discount: gamma of every objective and of the ``"discounted"`` data.
        temperature: IQ-Learn's soft-Q temperature tau.
        chi2_alpha: IQ-Learn's chi-squared coefficient alpha.
        likelihood_weight: AVRIL's lambda.
        data: data distributions, a subset of ``("discounted", "stationary")``.
        learners: learners, a subset of :data:`LEARNERS`.
        fit_tolerance: gradient-norm tolerance of every fit.
        recovery_tolerance: a converged fit with policy TV at most this recovers pi_E.
        stationarity_tolerance: an expert gradient norm above this means pi_E is not a
            stationary point of the learner's objective.
        n_resamples: bootstrap resamples of the TV intervals.
        discount_scan: the discounts of IQ-Learn's gamma scan.
        discount_scan_mdps: the scan's problems (the first ones; at most ``n_mdps``).
    """

    n_mdps: int = 200
    n_states: int = 20
    n_actions: int = 4
    n_params: int = 5
    theta_scale: float = 1.0
    seed: int = 0
    discount: float = 0.99
    temperature: float = 0.01
    chi2_alpha: float = 0.5
    likelihood_weight: float = 1.0
    data: tuple[str, ...] = DATA_KINDS
    learners: tuple[str, ...] = LEARNERS
    fit_tolerance: float = 1e-8
    recovery_tolerance: float = 1e-6
    stationarity_tolerance: float = 1e-6
    n_resamples: int = 2000
    discount_scan: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    discount_scan_mdps: int = 20

    def __post_init__(self) -> None:
        self.problems_config  # noqa: B018 - validates the shared fields (one message source)
        if not (0.0 <= self.discount < 1.0):
            raise ValueError(f"discount must lie in [0, 1); got {self.discount!r}.")
        for name in (
            "temperature",
            "chi2_alpha",
            "likelihood_weight",
            "fit_tolerance",
            "recovery_tolerance",
            "stationarity_tolerance",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
        for name, allowed in (("data", DATA_KINDS), ("learners", LEARNERS)):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values or set(values) - set(allowed):
                raise ValueError(
                    f"{name} must be a non-empty tuple drawn from {', '.join(allowed)}; got "
                    f"{values!r}."
                )
        if not isinstance(self.n_resamples, int) or self.n_resamples < 1:
            raise ValueError(f"n_resamples must be a positive integer; got {self.n_resamples!r}.")
        scan = self.discount_scan
        if not isinstance(scan, tuple) or not all(
            isinstance(g, (int, float)) and 0.0 <= g < 1.0 for g in scan
        ):
            raise ValueError(f"discount_scan must be a tuple of discounts in [0, 1); got {scan!r}.")
        if not isinstance(self.discount_scan_mdps, int) or self.discount_scan_mdps < 0:
            raise ValueError(
                "discount_scan_mdps must be a non-negative integer; got "
                f"{self.discount_scan_mdps!r}."
            )

    @property
    def problems_config(self) -> ConsistencyConfig:
        """The consistency study's configuration that generates the same problems."""
        return ConsistencyConfig(
            n_mdps=self.n_mdps,
            n_states=self.n_states,
            n_actions=self.n_actions,
            n_params=self.n_params,
            theta_scale=self.theta_scale,
            seed=self.seed,
            n_oracle=0,
            n_tabular=0,
        )


@dataclass(frozen=True)
class LearnerConsistencyResult:
    """Tidy rows of :func:`run_learner_consistency`.

    Attributes:
        config: the configuration.
        rows: one row per (problem, data, learner): problem_id, data, learner, converged,
            status, policy_tv (sum_s d_E(s) TV(pi(.|s), pi_E(.|s))), theta_error
            (|theta - theta_E|, shared-feature learners only), visitation_tv (TV between the
            learnt policy's visitation of the data's kind and d_E), value, grad_norm,
            gradient_check, n_iter, expert_grad_norm (see the module docstring), recovered,
            flow_residual_initial / flow_residual_expert (L1 norm of d_E(s) - (1 - gamma)
            mu0(s) - gamma (P^T d_E)(s) for mu0 = the MDP's start / d_E(s)),
            greedy_tv_floor, seconds, plus the root seed and git commit; IQ-Learn rows also
            first_order_theta_error (shared features), first_order_policy_tv and
            first_order_cosine (the first-order prediction of the optimum, see
            :func:`_iqlearn_first_order`) and logit_level (sum_{s,a} d_E(s, a) Q(s, a) / tau
            at the optimum).
        valuedice_action_independent: one row per (problem, transitions, start, learner) of
            the ValueDICE side study (:func:`valuedice_action_independent_rows`).
        iqlearn_discounts: one row per (problem, discount, learner) of IQ-Learn's gamma scan
            (:func:`iqlearn_discount_rows`).
        wall_seconds: the whole run's wall time.
    """

    config: LearnerConsistencyConfig
    rows: pd.DataFrame
    wall_seconds: float = field(default=float("nan"))
    valuedice_action_independent: pd.DataFrame = field(default_factory=pd.DataFrame)
    iqlearn_discounts: pd.DataFrame = field(default_factory=pd.DataFrame)
