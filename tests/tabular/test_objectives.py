"""Tests for sbil.tabular.objectives: finite differences, hand-computed values, batching."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.tabular.numeric import log_softmax
from sbil.tabular.objectives import bc_objective, edm_objective, edm_objective_for
from sbil.tabular.policies import (
    edm_state_log_prob,
    example3_features,
    logits,
    random_features,
)

OBJECTIVES = {
    "bc": bc_objective,
    "edm-reference": lambda t, f, d, **kw: edm_objective(t, f, d, convention="reference", **kw),
    "edm-note": lambda t, f, d, **kw: edm_objective(t, f, d, convention="note", **kw),
}


def _problem(seed: int, n_s: int = 5, n_a: int = 3, n_k: int = 4):
    rng = np.random.default_rng(seed)
    features = random_features(n_s, n_a, n_k, seed=rng)
    d = rng.dirichlet(np.ones(n_s * n_a)).reshape(n_s, n_a)
    theta = rng.normal(size=n_k)
    return theta, features, d


def _direct_value(name: str, theta, features, d) -> float:
    """The objective straight from its definition E_d[-log pi - log p]."""
    f = logits(features, theta)
    value = -np.sum(d * log_softmax(f))
    if name != "bc":
        convention = name.split("-")[1]
        value -= np.sum(d.sum(-1) * edm_state_log_prob(f, convention=convention))
    return float(value)


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_grad_hess_against_definition_and_finite_differences(name, seed):
    theta, features, d = _problem(seed)
    obj = OBJECTIVES[name](theta, features, d)
    assert obj.value == pytest.approx(_direct_value(name, theta, features, d), rel=1e-12)
    eps = 1e-6
    eye = np.eye(theta.size)
    fd_grad = np.array(
        [
            (
                _direct_value(name, theta + eps * e, features, d)
                - _direct_value(name, theta - eps * e, features, d)
            )
            / (2 * eps)
            for e in eye
        ]
    )
    np.testing.assert_allclose(obj.grad, fd_grad, atol=1e-8)
    fd_hess = np.array(
        [
            (
                OBJECTIVES[name](theta + eps * e, features, d).grad
                - OBJECTIVES[name](theta - eps * e, features, d).grad
            )
            / (2 * eps)
            for e in eye
        ]
    )
    np.testing.assert_allclose(obj.hess, fd_hess, atol=1e-7)
    np.testing.assert_allclose(obj.hess, obj.hess.T, atol=1e-14)


def test_edm_reference_is_joint_softmax_nll():
    theta, features, d = _problem(3)
    f = logits(features, theta)
    joint = f.ravel() - np.log(np.exp(f).sum())
    assert edm_objective(theta, features, d).value == pytest.approx(-np.sum(d.ravel() * joint))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.1, 5.0))
def test_convex_objectives_have_psd_hessians(seed, scale):
    theta, features, d = _problem(seed)
    for name in ("bc", "edm-reference"):
        hess = OBJECTIVES[name](scale * theta, features, d).hess
        assert np.linalg.eigvalsh(hess).min() >= -1e-12


def test_note_convention_is_not_convex_somewhere():
    """The note's sign makes the state term concave; some random problem shows it."""
    negative = False
    for seed in range(20):
        theta, features, d = _problem(seed)
        hess = edm_objective(3 * theta, features, d, convention="note").hess
        negative |= np.linalg.eigvalsh(hess).min() < -1e-6
    assert negative


@pytest.mark.parametrize("k", [-1.0, 0.0, 0.5, 2.0])
def test_example3_state_gradient_at_zero(k):
    """d/dtheta log p(s2) = (k - 1)/4 at theta = 0 (reference convention)."""
    features = example3_features(k)
    d = np.array([[0.0, 0.0], [0.5, 0.5]])  # all weight on s2: E_d[-log p] = -log p(s2)
    state_grad = (
        edm_objective(np.zeros(1), features, d).grad - bc_objective(np.zeros(1), features, d).grad
    )
    assert -state_grad[0] == pytest.approx((k - 1) / 4, abs=1e-14)


def test_theorem1_state_gradient_at_expert():
    """d/dtheta log p(s2) ~= -0.2452 at theta = 1, k = 1/2 (the note's Theorem 1)."""
    features = example3_features(0.5)
    d = np.array([[0.0, 0.0], [0.3, 0.7]])
    state_grad = (
        edm_objective(np.ones(1), features, d).grad - bc_objective(np.ones(1), features, d).grad
    )
    assert -state_grad[0] == pytest.approx(-0.2452, abs=5e-5)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_batched_matches_loop(name):
    problems = [_problem(s) for s in range(4)]
    theta = np.stack([p[0] for p in problems])
    features = np.stack([p[1] for p in problems])
    d = np.stack([p[2] for p in problems])
    batched = OBJECTIVES[name](theta, features, d)
    for b, (t, f, dd) in enumerate(problems):
        single = OBJECTIVES[name](t, f, dd)
        assert batched.value[b] == pytest.approx(single.value, rel=1e-13)
        np.testing.assert_allclose(batched.grad[b], single.grad, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(batched.hess[b], single.hess, rtol=1e-12, atol=1e-14)
    # Shared features broadcast against a batch of data.
    shared = OBJECTIVES[name](theta, features[0], d)
    assert shared.value[1] == pytest.approx(OBJECTIVES[name](theta[1], features[0], d[1]).value)


def test_order_and_shape_errors():
    theta, features, d = _problem(0)
    obj = bc_objective(theta, features, d, order=0)
    assert obj.grad is None and obj.hess is None
    assert edm_objective(theta, features, d, order=1).hess is None
    with pytest.raises(ValueError, match=r"d must be d\[..., s, a\].*pass one weight per"):
        bc_objective(theta, features, d[:, :2])
    with pytest.raises(ValueError, match=r"d must be a rectangular array of numbers.*ragged"):
        bc_objective(theta, features, [[0.5, 0.5], [0.0]])
    with pytest.raises(ValueError, match="convention must be"):
        edm_objective(theta, features, d, convention="paper")


@pytest.mark.parametrize("convention", ["reference", "note"])
def test_edm_objective_for_equals_edm_objective(convention):
    features = random_features(5, 3, 4, seed=0)
    theta = np.random.default_rng(1).normal(size=(2, 4))
    d = np.random.default_rng(2).dirichlet(np.ones(15), size=2).reshape(2, 5, 3)
    fixed = edm_objective_for(convention)(theta, features, d)
    direct = edm_objective(theta, features, d, convention=convention)
    for a, b in ((fixed.value, direct.value), (fixed.grad, direct.grad), (fixed.hess, direct.hess)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="convention must be 'reference' or 'note'"):
        edm_objective_for("paper")


def test_fit_edm_decodes_the_convention_once(monkeypatch):
    """The energy sign is validated at the edge, not on every Newton iteration."""
    import sbil.tabular.objectives as objectives
    from sbil.tabular.estimators import fit_edm

    calls = []
    real = objectives.energy_sign
    monkeypatch.setattr(objectives, "energy_sign", lambda c: calls.append(c) or real(c))
    features = random_features(6, 3, 4, seed=3)
    d = np.random.default_rng(4).dirichlet(np.ones(18)).reshape(6, 3)
    fit = fit_edm(features, d, convention="note")
    assert fit.n_iter > 3
    assert calls == ["note"]
