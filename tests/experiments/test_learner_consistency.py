"""Tests for sbil.experiments.learner_consistency on a few small problems."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sbil.experiments import consistency as cs
from sbil.experiments import learner_consistency as lc
from sbil.experiments.learner_consistency import writing as lc_writing

SMALL = {"n_mdps": 3, "n_states": 5, "n_actions": 3, "n_params": 3, "seed": 7, "n_resamples": 50}


@pytest.fixture(scope="module")
def small() -> lc.LearnerConsistencyResult:
    return lc.run_learner_consistency(lc.LearnerConsistencyConfig(**SMALL))


def test_the_problems_are_the_consistency_studys(small):
    cfg = small.config
    ours = cs.random_problems(cfg.problems_config)
    theirs = cs.random_problems(
        cs.ConsistencyConfig(
            n_mdps=3, n_states=5, n_actions=3, n_params=3, seed=7, n_oracle=0, n_tabular=0
        )
    )
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.d_expert, b.d_expert)
        np.testing.assert_array_equal(lc.expert_visitation(a, "stationary", 0.99), b.d_expert)


def test_every_fit_has_a_row(small):
    rows = small.rows
    assert len(rows) == 3 * len(lc.DATA_KINDS) * len(lc.LEARNERS)
    assert set(rows["learner"]) == set(lc.LEARNERS)
    assert rows["git_commit"].nunique() == 1
    assert (rows["gradient_check"].dropna() < 1e-5).all()


def test_verdicts_follow_the_flow_equation(small):
    s = lc.summarise_learners(small).set_index(["data", "learner"])["verdict"]
    assert s["discounted", "bc"] == s["stationary", "bc"] == "consistent"
    for form in ("", "-expected"):
        assert s["discounted", f"valuedice-initial{form}"] == "consistent"
        assert s["stationary", f"valuedice-expert{form}"] == "consistent"
        assert s["discounted", f"valuedice-expert{form}"].startswith("inconsistent")
        assert s["stationary", f"valuedice-initial{form}"].startswith("inconsistent")
    for learner in ("iqlearn-tabular", "iqlearn-shared", "avril-tabular", "avril-shared"):
        assert s["discounted", learner] == "inconsistent (pi_E not even stationary)"


def test_flow_residual_is_zero_for_the_matching_start(small):
    rows = small.rows
    disc = rows[rows["data"] == "discounted"]
    stat = rows[rows["data"] == "stationary"]
    assert disc["flow_residual_initial"].max() < 1e-12
    assert stat["flow_residual_expert"].max() < 1e-12
    assert disc["flow_residual_expert"].min() > 1e-6
    assert stat["flow_residual_initial"].min() > 1e-6


def test_valuedice_needs_no_flow_equation_when_transitions_ignore_the_action(small):
    # The counterexample to "consistent exactly when the flow equation holds": with
    # P(s'|s, a) = P(s'|s) every problem is recovered although the flow from mu0 fails
    # (as much as for the problems as drawn, which every fit misses).
    rows = small.valuedice_action_independent
    n = small.config.n_mdps
    assert len(rows) == n * len(lc.SIDE_TRANSITIONS) * len(lc.SIDE_STARTS) * len(lc.SIDE_LEARNERS)
    free = rows[rows["transitions"] == "action-independent"]
    drawn = rows[rows["transitions"] == "as drawn"]
    assert free["recovered"].all()
    assert (free["expert_grad_norm"] < 1e-10).all()
    assert (free["flow_residual_initial"] > 1e-4).all()
    point = free[free["start"] == "state 0"]
    assert (point["flow_residual_initial"] > 0.5 * 2 * (1 - small.config.discount)).all()
    assert (point["expert_value"] > 1e-5).all()  # max_pi min_nu J < 0, the argmax still pi_E
    expected = free[free["learner"] == "valuedice-initial-expected"]
    np.testing.assert_allclose(expected["expert_value"], expected["state_kl"], rtol=1e-8)
    assert not drawn["recovered"].any()
    assert (drawn["expert_grad_norm"] > 1e-6).all()
    s = lc.summarise_action_independent(small)
    assert len(s) == len(lc.SIDE_TRANSITIONS) * len(lc.SIDE_STARTS) * len(lc.SIDE_LEARNERS)


def test_action_independent_transitions_average_over_actions():
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=(4, 3))
    free = lc.action_independent_transitions(p)
    np.testing.assert_allclose(free[:, 1], p.mean(1))
    np.testing.assert_array_equal(free[:, 0], free[:, 2])


def test_iqlearn_first_order_prediction_matches_the_optimum(small):
    # The miss is -(tau / (4 alpha)) H_BC^+ grad C(theta_E) to first order: the fitted
    # displacement's direction, its size within a factor 2 (a tabular Q: within 5%), and
    # many times tau / (4 alpha) itself.
    rows = small.rows
    iq = rows[rows["learner"].str.startswith("iqlearn")]
    assert (iq["first_order_cosine"] > 0.99).all()
    tv_ratio = iq["policy_tv"] / iq["first_order_policy_tv"]
    assert tv_ratio.between(0.5, 2.0).all()
    tab = iq["learner"] == "iqlearn-tabular"
    assert tv_ratio[tab].between(0.95, 1.05).all()
    shared = iq[~tab]
    assert (shared["theta_error"] / shared["first_order_theta_error"]).between(0.5, 2.0).all()
    eps = small.config.temperature / (4 * small.config.chi2_alpha)
    assert (shared["theta_error"] > 3 * eps).all()
    other = rows[~rows["learner"].str.startswith("iqlearn")]
    assert other["first_order_policy_tv"].isna().all()
    first = lc.summarise_first_order(small)
    assert set(first["learner"]) == {"iqlearn-tabular", "iqlearn-shared"}


def test_iqlearn_miss_does_not_grow_with_the_horizon(small):
    # A tabular Q's level grows like 1/(1 - gamma); its policy's miss does not.
    rows = small.iqlearn_discounts
    cfg = small.config
    n = min(cfg.n_mdps, cfg.discount_scan_mdps)
    assert len(rows) == n * len(cfg.discount_scan) * 2
    tab = rows[rows["learner"] == "iqlearn-tabular"].pivot(
        index="problem_id", columns="discount", values=["policy_tv", "logit_level"]
    )
    lo, hi = min(cfg.discount_scan), max(cfg.discount_scan)
    grow = tab["logit_level"][hi] / tab["logit_level"][lo]
    assert (grow > 0.3 * (1 - lo) / (1 - hi)).all()
    assert (tab["policy_tv"][hi] / tab["policy_tv"][lo]).between(0.8, 1.25).all()
    assert len(lc.summarise_discount_scan(small)) == len(cfg.discount_scan) * 2


def test_same_seed_same_numbers(small):
    again = lc.run_learner_consistency(small.config)
    cols = ["policy_tv", "value", "expert_grad_norm", "status"]
    pd.testing.assert_frame_equal(small.rows[cols], again.rows[cols])


def test_workers_give_the_same_rows(small):
    pooled = lc.run_learner_consistency(small.config, workers=2)
    cols = ["problem_id", "data", "learner", "policy_tv", "value", "status"]
    pd.testing.assert_frame_equal(small.rows[cols], pooled.rows[cols])
    with pytest.raises(ValueError, match="workers"):
        lc.run_learner_consistency(small.config, workers=0)


def test_write_and_readme(small, tmp_path):
    path = lc.write_learner_consistency(small, tmp_path / "out")
    text = path.read_text()
    assert "## Data: discounted" in text and "## Data: stationary" in text
    assert lc.COMMAND in text
    assert "sufficient for its consistency, not necessary" in text
    assert "ValueDICE with action-independent transitions" in text
    assert "first-order prediction" in text
    rows = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert len(rows) == len(small.rows)
    assert (tmp_path / "out" / "summary.csv").exists()
    side = pd.read_csv(tmp_path / "out" / "valuedice-action-independent.csv")
    assert len(side) == len(small.valuedice_action_independent)
    scan = pd.read_csv(tmp_path / "out" / "iqlearn-discounts.csv")
    assert len(scan) == len(small.iqlearn_discounts)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["command"] == lc.COMMAND
    assert config["git_commit"] == small.rows["git_commit"].iloc[0]
    assert config["n_mdps"] == small.config.n_mdps


def test_main_runs_and_rejects_bad_options(tmp_path, capsys):
    code = lc.main(["--out", str(tmp_path / "o"), "--n-mdps", "0"])
    assert code == 2
    assert "n_mdps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"discount": 1.0}, "discount"),
        ({"learners": ("bc", "dsfn")}, "learners"),
        ({"data": ()}, "data"),
        ({"temperature": 0.0}, "temperature"),
        ({"n_mdps": 0}, "n_mdps"),
        ({"discount_scan": (0.9, 1.0)}, "discount_scan"),
        ({"discount_scan_mdps": -1}, "discount_scan_mdps"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lc.LearnerConsistencyConfig(**kwargs)


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_processes_die_with_the_driver(tmp_path, sig):
    command = [sys.executable, "-m", "sbil.experiments.learner_consistency"]
    driver = subprocess.Popen(
        [*command, "--out", str(tmp_path), "--n-mdps", "40", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.1)
            workers = _children(driver.pid)
        assert len(workers) >= 2, "the workers never started"
        driver.send_signal(sig)
        driver.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "orphaned workers"
    finally:  # never leave processes behind, even when the test fails
        driver.kill()
        for w in workers | _children(driver.pid):
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_write_replaces_an_earlier_study_whole_and_nothing_else(small, tmp_path):
    out = tmp_path / "out"
    lc.write_learner_consistency(small, out)
    (out / "rows.csv").write_text("an older, longer table")
    lc.write_learner_consistency(small, out)  # an earlier study: replaced whole
    assert len(pd.read_csv(out / "rows.csv")) == len(small.rows)
    assert sorted(p.name for p in out.iterdir()) == sorted(lc.STUDY_FILES)
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"not a learner consistency study \(mine\.txt\)"):
        lc.write_learner_consistency(small, out)
    assert (out / "mine.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_interrupted_write_leaves_the_earlier_study(small, tmp_path, monkeypatch):
    out = tmp_path / "out"
    lc.write_learner_consistency(small, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lc_writing, "render_readme", interrupted)
    fewer = dataclasses.replace(small, rows=small.rows.head(3))  # tables that would differ
    with pytest.raises(KeyboardInterrupt):
        lc.write_learner_consistency(fewer, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
