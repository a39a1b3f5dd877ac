"""Tests for sbil.experiments.consistency on a few small MDPs."""

import numpy as np
import pandas as pd
import pytest

from sbil.experiments import consistency as cs
from sbil.experiments.claims_note import theorem1
from sbil.tabular.policies import example3_features


def test_every_fit_has_a_row(small_study, small_config):
    rows = small_study.rows
    finite = rows[np.isfinite(rows["n_samples"])]
    per_size = 2 * (small_config.n_mdps * small_config.n_seeds + small_config.n_seeds_example3)
    per_size += (
        small_config.n_oracle * small_config.oracle_seeds + small_config.n_seeds_example3
    )  # oracle
    assert len(finite) == len(small_config.sizes) * per_size  # nothing silently dropped
    assert set(rows["method"]) == {"bc", "edm", "oracle"}
    # Non-converged fits are kept, with infinite error.
    assert (~finite["converged"] == np.isinf(finite["error"])).all()
    assert rows["git_commit"].nunique() == 1


def test_bc_error_shrinks_with_n_and_its_limit_is_the_expert(small_study):
    summary = cs.summarise(small_study, n_resamples=200)
    for problem in ("random", "example3"):
        s = summary[(summary["problem"] == problem) & (summary["method"] == "bc")]
        iqms = s.sort_values("n_samples")["iqm"].to_numpy()
        assert iqms[-1] < iqms[0] / 10
        assert iqms[-1] < 0.05
    lim = cs.limits(small_study)
    bc = lim[lim["method"] == "bc"]
    assert bc["converged"].all()
    assert bc["error"].max() < 1e-8
    assert bc["visitation_tv"].max() < 1e-8


def test_edm_limit_on_example3_is_theorem1s(small_study):
    lim = cs.limits(small_study)
    edm = lim[(lim["method"] == "edm") & (lim["problem"] == "example3")].iloc[0]
    assert edm["error"] == pytest.approx(abs(theorem1().details["edm_limit_theta"] - 1.0), abs=1e-8)
    summary = cs.inconsistency_summary(small_study, "example3")
    assert summary["edm"]["n_inconsistent"] == 1
    assert summary["bc"]["n_inconsistent"] == 0


def test_oracle_recovers_the_expert(small_study, small_config):
    lim = cs.limits(small_study)
    oracle = lim[(lim["method"] == "oracle") & (lim["problem"] == "random")]
    assert len(oracle) == small_config.n_oracle
    assert oracle["converged"].all()
    assert oracle["error"].max() < 1e-5


def test_oracle_on_finite_data_is_paired_with_bc_and_edm(small_study, small_config):
    sub = cs.oracle_subset(small_study)
    finite = sub.rows[np.isfinite(sub.rows["n_samples"]) & (sub.rows["problem"] == "random")]
    counts = finite.groupby(["method", "n_samples"]).size()
    assert (counts == small_config.n_oracle * small_config.oracle_seeds).all()
    assert set(finite["method"]) == {"bc", "edm", "oracle"}
    assert finite["problem_id"].max() == small_config.n_oracle - 1
    # Same data sets: with a million draws the oracle and BC are both close to the expert,
    # EDM is not.
    summary = cs.summarise(sub, n_resamples=100)
    big = summary[(summary["problem"] == "random") & (summary["n_samples"] == 1_000_000)]
    by = dict(zip(big["method"], big["iqm"], strict=True))
    assert by["oracle"] < 0.05 and by["bc"] < 0.05
    assert by["edm"] > 0.1
    assert (big["n_problems"] == small_config.n_oracle).all()
    ex3 = summary[(summary["problem"] == "example3") & (summary["method"] == "oracle")]
    assert len(ex3) == len(small_config.sizes)
    assert ex3.sort_values("n_samples")["iqm"].iloc[-1] < 0.05


def test_oracle_seeds_never_exceed_the_data_sets():
    assert cs.ConsistencyConfig(n_seeds=1, n_oracle_seeds=3).oracle_seeds == 1
    assert cs.ConsistencyConfig(n_seeds=5, n_oracle_seeds=3).oracle_seeds == 3


def test_oracle_subset_is_empty_without_oracle(small_config):
    cfg = cs.ConsistencyConfig(
        **{**small_config.__dict__, "n_oracle": 0, "n_tabular": 0, "n_mdps": 2}
    )
    r = cs.run_consistency(cfg)
    assert "oracle" not in set(r.rows["method"])
    assert cs.oracle_subset(r).rows.empty


def test_one_hot_edm_equals_bc(small_study, small_config):
    tab = small_study.tabular
    assert len(tab) == small_config.n_tabular
    assert (tab["converged_bc"] & tab["converged_edm"]).all()
    assert tab["max_policy_diff"].max() < 1e-8
    assert tab["policy_tv_bc"].max() < 1e-8


def test_same_seed_same_numbers(small_study, small_config):
    again = cs.run_consistency(small_config)
    pd.testing.assert_frame_equal(small_study.rows, again.rows)
    pd.testing.assert_frame_equal(small_study.tabular, again.tabular)
    other = cs.run_consistency(cs.ConsistencyConfig(**{**small_config.__dict__, "seed": 8}))
    assert len(other.rows) == len(small_study.rows)
    assert not np.array_equal(other.rows["error"].to_numpy(), small_study.rows["error"].to_numpy())


def test_summarise_counts_fits_without_minimiser(small_config):
    rows = pd.DataFrame(
        {
            "problem": "random",
            "problem_id": [0, 0, 1, 1],
            "method": "bc",
            "n_samples": 10.0,
            "seed": [0, 1, 0, 1],
            "converged": [True, False, True, True],
            "status": ["converged", "no finite minimiser", "converged", "converged"],
            "error": [0.5, np.inf, 0.2, 0.3],
            "policy_tv": [0.1, np.nan, 0.1, 0.1],
        }
    )
    fake = cs.ConsistencyResult(config=small_config, rows=rows, tabular=pd.DataFrame())
    s = cs.summarise(fake, n_resamples=50).iloc[0]
    assert s["n_fits"] == 4
    assert s["n_no_minimiser"] == 1
    assert s["n_other_failures"] == 0
    assert np.isfinite(s["iqm"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_mdps": 0}, "n_mdps"),
        ({"n_states": 1}, "at least 2 states"),
        ({"sizes": ()}, "sizes"),
        ({"n_oracle": 10, "n_mdps": 3}, "n_oracle"),
        ({"n_oracle_seeds": -1}, "n_oracle_seeds"),
        ({"seed": -1}, "non-negative"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"n_mdps": True}, "n_mdps must be an integer"),
        ({"sizes": (10, 2.5)}, "sizes"),
        ({"limit_tolerance": float("nan")}, "limit_tolerance"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cs.ConsistencyConfig(**kwargs)


def test_separable_data_is_kept_as_no_finite_minimiser():
    # Only action 1 is ever observed: BC's likelihood grows without bound in theta.
    d = np.array([[[0.0, 0.5], [0.0, 0.5]]])
    _, ok, status = cs._fit("bc", example3_features(0.5)[None], d)
    assert not ok[0]
    assert status[0] == "no finite minimiser"


def test_error_slope_interval_brackets_the_slope(small_study):
    summary = cs.summarise(small_study, n_resamples=50)
    for problem in ("random", "example3"):
        ci = cs.error_slope_interval(small_study, problem, "bc", n_resamples=300, seed=0)
        assert ci.estimate == pytest.approx(cs.error_slope(summary, problem, "bc"), abs=1e-12)
        assert ci.low <= ci.estimate <= ci.high
        assert ci.high - ci.low > 0  # the data sets differ, so the slope has sampling noise
        assert -1.0 < ci.low and ci.high < 0.0
    again = cs.error_slope_interval(small_study, "random", "bc", n_resamples=300, seed=0)
    assert again == cs.error_slope_interval(small_study, "random", "bc", n_resamples=300, seed=0)


def test_error_slope_interval_needs_two_sizes(small_study):
    ci = cs.error_slope_interval(small_study, "random", "bc", min_n=10**6)
    assert np.isnan(ci.estimate) and np.isnan(ci.low)


def test_run_consistency_reports_progress(small_config):
    cfg = cs.ConsistencyConfig(
        **{**small_config.__dict__, "n_mdps": 2, "n_oracle": 1, "n_tabular": 1, "sizes": (100,)}
    )
    calls = []
    cs.run_consistency(cfg, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_policy_tv_by_hand():
    pi_e = np.array([[1.0, 0.0], [0.5, 0.5]])
    pi = np.array([[0.5, 0.5], [0.5, 0.5]])
    d_e = np.array([[0.6, 0.0], [0.2, 0.2]])  # d_E(s) = (0.6, 0.4)
    assert cs.policy_tv(pi, d_e, pi_e) == pytest.approx(0.6 * 0.5 + 0.4 * 0.0)
