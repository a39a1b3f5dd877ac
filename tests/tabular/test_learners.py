"""Tests for sbil.tabular.learners: hand cases, Donsker-Varadhan, gradients, optima."""

import numpy as np
import pytest

from sbil.tabular import learners as lr
from sbil.tabular.learners import valuedice as lr_valuedice
from sbil.tabular.mdp import TabularMDP, random_mdp
from sbil.tabular.objectives import bc_objective
from sbil.tabular.policies import policy_probs, random_features, tabular_features
from sbil.tabular.visitation import discounted_visitation, state_action_visitation

GAMMA = 0.9


def _problem(seed: int, n_s: int = 5, n_a: int = 3, n_k: int = 3, discount: float = GAMMA):
    """A random MDP (discounted visitation), shared features and a realisable expert."""
    rng = np.random.default_rng(seed)
    mdp = random_mdp(n_s, n_a, seed=rng, discount=discount, initial=rng.dirichlet(np.ones(n_s)))
    features = random_features(n_s, n_a, n_k, seed=rng)
    theta = rng.normal(size=n_k)
    pi_e = policy_probs(features, theta)
    return mdp, features, theta, pi_e, state_action_visitation(mdp, pi_e)


def _central(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _bandit(p: float) -> tuple[TabularMDP, np.ndarray]:
    """One state, two actions (both stay): d is the expert's action distribution."""
    mdp = TabularMDP(np.ones((1, 2, 1)), np.array([1.0]), discount=GAMMA)
    return mdp, np.array([[p, 1.0 - p]])


# ---------------------------------------------------------------------------- ValueDICE


@pytest.mark.parametrize("next_state", ["sampled", "expected"])
def test_valuedice_on_a_bandit_recovers_the_action_distribution(next_state):
    mdp, d = _bandit(0.8)
    fit = lr.fit_valuedice(mdp, tabular_features(1, 2), d, discount=GAMMA, next_state=next_state)
    assert fit.converged
    np.testing.assert_allclose(fit.policy, d, atol=1e-9)
    assert abs(fit.value) < 1e-12  # -min_nu J = KL(dtilde || d) = 0
    assert fit.gradient_check < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_donsker_varadhan_min_nu_is_minus_kl(seed):
    mdp, features, _, _, d = _problem(seed)
    pi = policy_probs(features, np.random.default_rng(seed).normal(size=features.shape[-1]))
    p = mdp.dense_transitions()
    for start in ("initial", "expert"):
        mu0 = lr.valuedice_start(mdp, d, start)
        critic = lr.valuedice_min_nu(p, d, mu0, pi, discount=GAMMA, next_state="expected")
        assert critic.converged
        start_mdp = TabularMDP(p, mu0, discount=GAMMA)
        d_tilde = discounted_visitation(start_mdp, pi)[:, None] * pi
        kl = float(np.sum(d_tilde * np.log(d_tilde / d)))
        assert critic.terms.value == pytest.approx(-kl, abs=1e-12)
        np.testing.assert_allclose(critic.terms.weights, d_tilde, atol=1e-12)
        # The sampled form is never below the expected one (Jensen, s' inside the exponential).
        sampled = lr.valuedice_min_nu(p, d, mu0, pi, discount=GAMMA, next_state="sampled")
        assert sampled.terms.value >= critic.terms.value - 1e-12
        assert sampled.terms.value > critic.terms.value + 1e-6  # stochastic P: strictly


@pytest.mark.parametrize("next_state", ["sampled", "expected"])
def test_valuedice_gradients_match_finite_differences(next_state):
    mdp, features, _, _, d = _problem(3)
    rng = np.random.default_rng(0)
    p, mu0 = mdp.dense_transitions(), mdp.initial
    pi = policy_probs(features, rng.normal(size=3))
    nu = rng.normal(size=pi.shape)

    def j(nu_, pi_):
        return lr.valuedice_objective(
            p, d, mu0, pi_, nu_, discount=GAMMA, next_state=next_state
        ).value

    terms = lr.valuedice_objective(p, d, mu0, pi, nu, discount=GAMMA, next_state=next_state)
    np.testing.assert_allclose(terms.grad_nu, _central(lambda x: j(x, pi), nu), atol=1e-8)
    np.testing.assert_allclose(terms.grad_pi, _central(lambda x: j(nu, x), pi), atol=1e-8)
    hess = lr_valuedice._valuedice_hessian(terms, p, pi, GAMMA, next_state == "sampled")
    fd = _central(
        lambda x: lr.valuedice_objective(
            p, d, mu0, pi, x, discount=GAMMA, next_state=next_state
        ).grad_nu[0, 1],
        nu,
    )
    np.testing.assert_allclose(hess[1], fd.reshape(-1), atol=1e-7)
    # The outer (Danskin) gradient in theta.
    theta = rng.normal(size=3)

    def g(x):
        return lr.valuedice_policy_objective(
            mdp, features, d, x, discount=GAMMA, next_state=next_state
        )[0]

    grad = lr.valuedice_policy_objective(
        mdp, features, d, theta, discount=GAMMA, next_state=next_state
    )[1]
    np.testing.assert_allclose(grad, _central(g, theta), atol=1e-7)


@pytest.mark.parametrize("next_state", ["sampled", "expected"])
def test_tabular_valuedice_from_the_initial_distribution_recovers_the_expert(next_state):
    mdp, _, _, pi_e, d = _problem(4, n_s=4, n_a=2)
    fit = lr.fit_valuedice(
        mdp, tabular_features(4, 2), d, discount=GAMMA, start="initial", next_state=next_state
    )
    assert fit.converged and fit.status == "converged"
    np.testing.assert_allclose(fit.policy, pi_e, atol=1e-7)
    assert fit.gradient_check < 1e-6


def test_valuedice_recovers_the_expert_when_d_satisfies_the_flow_from_its_start():
    mdp, features, theta_e, pi_e, d_disc = _problem(5)
    stationary = TabularMDP(mdp.transitions, mdp.initial)  # no discount: stationary d
    d_stat = state_action_visitation(stationary, pi_e)
    for d, good, bad in ((d_disc, "initial", "expert"), (d_stat, "expert", "initial")):
        ok = lr.fit_valuedice(mdp, features, d, discount=GAMMA, start=good)
        assert ok.converged
        np.testing.assert_allclose(ok.theta, theta_e, atol=1e-6)
        miss = lr.fit_valuedice(mdp, features, d, discount=GAMMA, start=bad)
        assert miss.converged
        assert np.linalg.norm(miss.theta - theta_e) > 1e-4
        # theta_E is not even stationary for the mismatched start.
        _, grad = lr.valuedice_policy_objective(
            mdp, features, d, theta_e, discount=GAMMA, start=bad
        )
        assert np.linalg.norm(grad) > 1e-5


def _flow_residual(p, d, mu0, gamma):
    return float(np.abs(d.sum(-1) - (1 - gamma) * mu0 - gamma * np.einsum("sa,sat->t", d, p)).sum())


@pytest.mark.parametrize("next_state", ["sampled", "expected"])
def test_valuedice_with_action_independent_transitions_needs_no_flow_equation(next_state):
    # The flow equation from mu0 is sufficient, not necessary: when P(s'|s, a) = P(s'|s),
    # every policy has the same state occupancy rho from mu0, so -min_nu J separates into a
    # policy-free state mismatch and E_rho KL(pi || pi_E), minimised by pi_E alone.
    n_s, n_a, gamma = 6, 3, 0.99
    rng = np.random.default_rng(11)
    p_state = rng.dirichlet(np.full(n_s, 0.5), size=n_s)
    p = np.repeat(p_state[:, None, :], n_a, axis=1)
    features = random_features(n_s, n_a, 3, seed=rng)
    theta_e = rng.normal(size=3)
    pi_e = policy_probs(features, theta_e)
    mu0 = np.eye(n_s)[0]  # all mass on state 0, far from the data's states
    mdp = TabularMDP(p, mu0)
    stationary = state_action_visitation(mdp, pi_e)  # no discount: stationary d_E
    other = rng.dirichlet(np.ones(n_s))[:, None] * pi_e  # any state distribution will do
    rho = discounted_visitation(TabularMDP(p, mu0, discount=gamma), pi_e)
    for d in (stationary, other):
        assert _flow_residual(p, d, mu0, gamma) > 5e-3  # the flow from mu0 fails
        fit = lr.fit_valuedice(mdp, features, d, discount=gamma, next_state=next_state)
        assert fit.converged
        np.testing.assert_allclose(fit.theta, theta_e, atol=1e-6)
        value, grad = lr.valuedice_policy_objective(
            mdp, features, d, theta_e, discount=gamma, next_state=next_state
        )
        assert np.linalg.norm(grad) < 1e-10  # pi_E is stationary ...
        kl = float(np.sum(rho * np.log(rho / d.sum(-1))))
        assert value > 1e-4  # ... although max_pi min_nu J = -value is not 0
        if next_state == "expected":
            assert value == pytest.approx(kl, rel=1e-8)  # the state mismatch KL(rho || d)
        else:
            assert value <= kl + 1e-12  # the sampled form may also bend P (Jensen)
    # The same data and start with the action back in the transitions: missed.
    mdp = TabularMDP(rng.dirichlet(np.full(n_s, 0.5), size=(n_s, n_a)), mu0)
    d = state_action_visitation(mdp, pi_e)
    miss = lr.fit_valuedice(mdp, features, d, discount=gamma, next_state=next_state)
    assert miss.converged
    assert np.linalg.norm(miss.theta - theta_e) > 1e-4


# ----------------------------------------------------------------------------- IQ-Learn


def test_iqlearn_first_two_terms_are_tau_times_bc():
    mdp, features, _, _, d = _problem(6)
    rng = np.random.default_rng(1)
    tau = 0.3
    theta = rng.normal(size=3)
    q = tau * (features @ theta)
    terms = lr.iqlearn_objective(
        mdp.dense_transitions(), d, q, discount=GAMMA, temperature=tau, alpha=0.5
    )
    bc = float(bc_objective(theta, features, d, order=0).value)
    assert terms.expert_term + terms.value_term == pytest.approx(tau * bc, abs=1e-12)
    np.testing.assert_allclose(terms.policy, policy_probs(features, theta), atol=1e-14)


def test_iqlearn_gradient_matches_finite_differences():
    mdp, _, _, _, d = _problem(7)
    q = np.random.default_rng(2).normal(size=d.shape)
    p = mdp.dense_transitions()

    def loss(x):
        return lr.iqlearn_objective(p, d, x, discount=GAMMA, temperature=0.5, alpha=0.5).value

    grad = lr.iqlearn_objective(p, d, q, discount=GAMMA, temperature=0.5, alpha=0.5).grad_q
    np.testing.assert_allclose(grad, _central(loss, q), atol=1e-8)


def test_iqlearn_on_a_bandit_is_biased_unless_the_expert_is_uniform():
    # One state: Q(a) = tau log pi_E(a) + c is BC-optimal, but the chi^2 term's gradient there,
    # d(a) (r(a) - gamma E_d r) / (2 alpha) with r(a) = tau log pi_E(a) + (1 - gamma) c, is
    # zero only if log pi_E(a) is the same for every action.
    mdp, d = _bandit(0.5)
    fit = lr.fit_iqlearn(mdp, tabular_features(1, 2), d, discount=GAMMA)
    np.testing.assert_allclose(fit.policy, d, atol=1e-9)
    mdp, d = _bandit(0.8)
    fit = lr.fit_iqlearn(mdp, tabular_features(1, 2), d, discount=GAMMA, temperature=0.5)
    assert fit.converged
    assert abs(fit.policy[0, 0] - 0.8) > 1e-3
    # The objective at the optimum is below its value at every expert Q (any shift c).
    p = mdp.dense_transitions()
    best_expert = min(
        lr.iqlearn_objective(
            p, d, 0.5 * np.log(d) + c, discount=GAMMA, temperature=0.5, alpha=0.5
        ).value
        for c in np.linspace(-3, 3, 6001)
    )
    assert fit.value < best_expert - 1e-6
    # As alpha grows the chi^2 term vanishes and IQ-Learn becomes BC.
    weak = lr.fit_iqlearn(
        mdp, tabular_features(1, 2), d, discount=GAMMA, temperature=0.5, alpha=1e9
    )
    np.testing.assert_allclose(weak.policy, d, atol=1e-6)


def test_iqlearn_shared_features_expert_is_not_stationary():
    mdp, features, theta_e, pi_e, d = _problem(8)
    _, grad = lr.iqlearn_parameter_objective(mdp, features, d, theta_e, discount=GAMMA)
    assert np.linalg.norm(grad) > 1e-4
    fit = lr.fit_iqlearn(mdp, features, d, discount=GAMMA)
    assert fit.converged and fit.gradient_check < 1e-6
    assert np.abs(fit.policy - pi_e).max() > 1e-4


@pytest.mark.parametrize("seed", [8, 12, 13])
def test_iqlearn_first_order_step_predicts_the_optimum(seed):
    # theta* - theta_E = -(tau / (4 alpha)) H_BC^{-1} grad C(theta_E) + O((tau / (4 alpha))^2):
    # the direction (cosine > 0.99), and the length within a factor 2 at IQ-Learn's defaults
    # (tau = 0.01, alpha = 0.5; here 0.69-0.87 of it), within 1% when the penalty is 100
    # times weaker.
    mdp, features, theta_e, _, d = _problem(seed)
    for alpha, factor in ((0.5, 2.0), (50.0, 1.01)):
        options = {"discount": GAMMA, "temperature": 0.01, "alpha": alpha}
        step = lr.iqlearn_first_order_step(mdp, features, d, theta_e, **options)
        fit = lr.fit_iqlearn(mdp, features, d, **options)
        assert fit.converged
        moved = fit.theta - theta_e
        cosine = moved @ step / (np.linalg.norm(moved) * np.linalg.norm(step))
        assert cosine > 0.99
        assert 1 / factor < np.linalg.norm(moved) / np.linalg.norm(step) < factor
        # The step's scale is tau / (4 alpha) times H_BC^{-1} grad C, not tau / (4 alpha).
        assert np.linalg.norm(step) > 3 * 0.01 / (4 * alpha)


def test_iqlearn_first_order_step_is_zero_for_a_uniform_expert():
    mdp, d = _bandit(0.5)
    step = lr.iqlearn_first_order_step(mdp, tabular_features(1, 2), d, np.zeros(2))
    np.testing.assert_allclose(step, 0.0, atol=1e-12)


# -------------------------------------------------------------------------------- AVRIL


def test_avril_gradients_match_finite_differences():
    mdp, features, _, _, d = _problem(9)
    rng = np.random.default_rng(3)
    x = rng.normal(size=3 + 2 * 5) * 0.5

    def loss(y):
        return lr.avril_parameter_objective(mdp, features, d, y, discount=GAMMA)[0]

    grad = lr.avril_parameter_objective(mdp, features, d, x, discount=GAMMA)[1]
    np.testing.assert_allclose(grad, _central(loss, x), atol=1e-7)


def test_avril_posterior_at_the_optimum_is_its_closed_form():
    # dL/dmu_s = 0 gives mu_s = lambda rbar_s / (sigma_s^2 + lambda), rbar_s the mean TD error.
    mdp, features, _, pi_e, d = _problem(10)
    fit = lr.fit_avril(mdp, features, d, discount=GAMMA, likelihood_weight=0.5)
    assert fit.converged
    q, mu, sigma = (fit.auxiliary[k] for k in ("q", "reward_mean", "reward_std"))
    w = (d[:, :, None] * mdp.dense_transitions())[..., None] * pi_e[None, None]
    r = q[:, :, None, None] - GAMMA * q[None, None]
    rbar = (w * r).sum((1, 2, 3)) / d.sum(-1)
    np.testing.assert_allclose(mu, 0.5 * rbar / (sigma**2 + 0.5), atol=1e-7)


def test_avril_at_a_constant_q_by_hand():
    # Q = 0: every TD error is 0, so mu = 0 and the loss is
    # log A + sum_s d(s) [sigma^2/2 - 1/2 - log sigma + lambda (log sigma + log(2 pi)/2)]:
    # bounded for lambda = 1 (infimum log A - 1/2 + log(2 pi)/2 as sigma -> 0, not attained),
    # unbounded below for lambda > 1.
    mdp, features, _, _, d = _problem(10)
    log_std = -8.0
    x = np.concatenate([np.zeros(3), np.zeros(5), np.full(5, log_std)])
    for lam in (1.0, 2.0):
        value, _ = lr.avril_parameter_objective(
            mdp, features, d, x, discount=GAMMA, likelihood_weight=lam
        )
        s2 = np.exp(2 * log_std)
        expected = np.log(3) + s2 / 2 - 0.5 - log_std + lam * (log_std + 0.5 * np.log(2 * np.pi))
        assert value == pytest.approx(expected, abs=1e-12)


def test_avril_with_a_weak_likelihood_is_bc_and_with_the_default_is_not():
    mdp, features, theta_e, _, d = _problem(11)
    weak = lr.fit_avril(mdp, features, d, discount=GAMMA, likelihood_weight=1e-9)
    np.testing.assert_allclose(weak.theta, theta_e, atol=1e-5)
    default = lr.fit_avril(mdp, features, d, discount=GAMMA)
    # Here the default collapses to a constant Q (the uniform policy) with sigma -> 0.
    assert default.status == "no finite minimiser" and not default.converged
    assert default.auxiliary["reward_std"].min() < lr.COLLAPSED_STD
    np.testing.assert_allclose(default.policy, 1.0 / 3.0, atol=1e-6)


# ----------------------------------------------------------------------- RCAL, checks


def test_greedy_policy_tv_floor_by_hand():
    d = np.array([[0.3, 0.1], [0.0, 0.6]])  # pi_E(.|0) = (0.75, 0.25), state 1 deterministic
    assert lr.greedy_policy_tv_floor(d) == pytest.approx(0.1)


def test_fits_are_deterministic():
    mdp, features, _, _, d = _problem(12)
    for fit in (lr.fit_valuedice, lr.fit_iqlearn, lr.fit_avril):
        a = fit(mdp, features, d, discount=GAMMA)
        b = fit(mdp, features, d, discount=GAMMA)
        np.testing.assert_array_equal(a.theta, b.theta)
        assert a.value == b.value


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"start": "uniform"}, "start must be"),
        ({"next_state": "mean"}, "next_state must be"),
        ({"discount": 1.0}, "discount"),
        ({"theta0": np.zeros(7)}, "theta0 must be"),
        ({"tol": -1.0}, "tol must be"),
    ],
)
def test_valuedice_rejects_bad_options(kwargs, match):
    mdp, features, _, _, d = _problem(13)
    with pytest.raises(ValueError, match=match):
        lr.fit_valuedice(mdp, features, d, **kwargs)


def test_fits_reject_mismatched_shapes():
    mdp, features, _, _, d = _problem(14)
    with pytest.raises(ValueError, match="features must be"):
        lr.fit_iqlearn(mdp, features[:2], d)
    with pytest.raises(ValueError, match="d_expert must be"):
        lr.fit_avril(mdp, features, d[:2] / d[:2].sum())
    with pytest.raises(ValueError, match="temperature"):
        lr.fit_iqlearn(mdp, features, d, temperature=0.0)
