"""Tests for sbil.experiments.sweeps (the sweep report) on synthetic sweep folders."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sbil.experiments.stats import iqm, probability_of_improvement
from sbil.experiments.sweeps import (
    ALGO_ORDER,
    comparisons,
    judge_edm_claim,
    load_rows,
    summarise_sweep,
    write_sweep_report,
)

REFS = {
    "CartPole-v1": (20.0, 500.0),
    "Acrobot-v1": (-500.0, -80.0),
}


def _row(env, algo, k, seed, *, ret=None, status="done", error=None, options=None, match=0.9):
    tag = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    cell_id = f"{env}__{algo}__k{k}__s{seed}__{tag}"
    done = status == "done"
    returns = [ret, ret] if done else []
    return {
        "schema": 1,
        "cell_id": cell_id,
        "config_hash": "0" * 64,
        "env_id": env,
        "algo": algo,
        "k": k,
        "seed": seed,
        "windows": "sliding",
        "train_episodes": list(range(seed, seed + k)),
        "options": {"every_nth_step": 20, **(options or {})},
        "n_pairs": 10 * k,
        "status": status,
        "error": error,
        "returns": returns,
        "return_mean": ret if done else None,
        "eval_episodes": 2,
        "eval_seed": 1000,
        "action_match": match if done else None,
        "action_match_episodes": 3 if done else 0,
        "train_seconds": 1.0,
        "eval_seconds": 0.5,
        "wall_seconds": 1.6,
        "git_commit": "abc1234",
        "sbil_version": "0.1.0",
        "run_dir": f"runs/{cell_id}",
    }


def _sweep(
    tmp_path: Path,
    rows,
    *,
    envs=None,
    algos=None,
    ks=None,
    seeds=None,
    refs=REFS,
    grid=None,
    spec=None,
):
    envs = envs if envs is not None else sorted({r["env_id"] for r in rows})
    algos = algos if algos is not None else sorted({r["algo"] for r in rows})
    ks = ks if ks is not None else sorted({r["k"] for r in rows})
    seeds = seeds if seeds is not None else sorted({r["seed"] for r in rows})
    folder = tmp_path / "sweep"
    (folder / "rows").mkdir(parents=True)
    if spec is None:  # as sbil.experiments.sweep writes it: {"schema", "spec": SweepSpec}
        spec = {
            "schema": 1,
            "spec": {
                "preset": None,
                "envs": envs,
                "algos": algos,
                "ks": ks,
                "seeds": seeds,
                "windows": "sliding",
                "every_nth_step": 20,
                "options": {"n_updates": 50},
                "grid": grid or {},
                "eval_episodes": 2,
                "eval_seed": 1000,
            },
        }
    (folder / "sweep.json").write_text(json.dumps(spec))
    if refs is not None:
        references = {
            env: {
                "random": {"mean": lo, "returns": [lo], "episodes": 1, "seed": 0},
                "expert": {"mean": hi, "returns": [hi], "episodes": 1, "seed": 0, "name": "x"},
            }
            for env, (lo, hi) in refs.items()
        }
        (folder / "references.json").write_text(json.dumps(references))
    for row in rows:
        (folder / "rows" / f"{row['cell_id']}.json").write_text(json.dumps(row))
    return folder


def _grid(returns_of, envs=("CartPole-v1",), algos=("bc", "edm"), ks=(1, 3), seeds=(0, 1, 2)):
    return [
        _row(env, algo, k, s, ret=returns_of(env, algo, k, s))
        for env in envs
        for algo in algos
        for k in ks
        for s in seeds
    ]


def _edm_ahead(env, algo, k, seed):
    lo, hi = REFS[env]
    base = 0.8 if algo == "edm" else 0.2  # normalised: EDM well ahead everywhere
    return lo + (base + 0.01 * seed + 0.001 * k) * (hi - lo)


def test_load_rows_keeps_failed_rows_and_normalises(tmp_path):
    rows = [
        _row("CartPole-v1", "bc", 1, 0, ret=260.0),
        _row("CartPole-v1", "bc", 1, 1, status="failed", error="loss became NaN at update 3"),
        _row("Acrobot-v1", "edm", 1, 0, ret=-80.0),
    ]
    frame = load_rows(_sweep(tmp_path, rows))
    assert len(frame) == 3
    assert list(frame["env_id"]) == ["Acrobot-v1", "CartPole-v1", "CartPole-v1"]
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["error"] == "loss became NaN at update 3"
    assert np.isnan(failed["normalised_score"]) and np.isnan(failed["return_mean"])
    assert frame["normalised_score"].iloc[0] == pytest.approx(1.0)
    assert frame["normalised_score"].iloc[1] == pytest.approx(0.5)
    assert set(frame["variant"]) == {"bc", "edm"}


def test_load_rows_names_bad_files(tmp_path):
    folder = _sweep(tmp_path, [_row("CartPole-v1", "bc", 1, 0, ret=1.0)])
    (folder / "rows" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        load_rows(folder)
    (folder / "rows" / "broken.json").write_text(json.dumps({"env_id": "x"}))
    with pytest.raises(ValueError, match="lacks algo, k, seed, status"):
        load_rows(folder)
    with pytest.raises(ValueError, match="no sweep folder"):
        load_rows(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no sweep\.json"):
        summarise_sweep(tmp_path)


def test_varying_options_become_variants(tmp_path):
    rows = [
        _row("CartPole-v1", "edm", 1, s, ret=100.0, options={"lr": lr})
        for s in (0, 1)
        for lr in (0.001, 0.01)
    ] + [_row("CartPole-v1", "bc", 1, s, ret=100.0) for s in (0, 1)]
    frame = load_rows(_sweep(tmp_path, rows))
    assert sorted(set(frame["variant"])) == ["bc", "edm (lr=0.001)", "edm (lr=0.01)"]


def test_summary_figures_match_the_statistics_by_hand(tmp_path):
    rows = _grid(_edm_ahead, envs=("CartPole-v1", "Acrobot-v1"))
    summary = summarise_sweep(_sweep(tmp_path, rows), n_resamples=200)
    assert summary["counts"] == {"rows": 24, "done": 24, "failed": 0, "missing": 0, "expected": 24}
    # Per cell: IQM over seeds of the returns.
    cell = next(
        c
        for c in summary["cells"]
        if (c["env_id"], c["variant"], c["k"]) == ("CartPole-v1", "edm", 3)
    )
    expected = [_edm_ahead("CartPole-v1", "edm", 3, s) for s in (0, 1, 2)]
    assert cell["return"]["iqm"] == pytest.approx(iqm(np.array(expected)))
    assert cell["return"]["low"] <= cell["return"]["iqm"] <= cell["return"]["high"]
    # Aggregate at k = 1: the IQM of the 3 x 2 normalised matrix.
    agg = next(
        a
        for a in summary["aggregate"]
        if a["variant"] == "bc" and a["scope"] == "k" and a["k"] == 1
    )
    matrix = np.array([[0.2 + 0.01 * s + 0.001] * 2 for s in (0, 1, 2)])
    assert agg["iqm"] == pytest.approx(iqm(matrix))
    assert agg["n_tasks"] == 2 and agg["seeds"] == [0, 1, 2]
    overall = next(a for a in summary["aggregate"] if a["variant"] == "edm" and a["scope"] == "all")
    assert overall["n_tasks"] == 4
    # EDM dominates BC on every task: P = 1 with a degenerate interval.
    poi = [i for i in summary["improvement"] if (i["x"], i["y"]) == ("edm", "bc")]
    assert {(i["scope"], i["k"]) for i in poi} == {("k", 1), ("k", 3), ("all", None)}
    assert all((i["p"], i["low"], i["high"]) == (1.0, 1.0, 1.0) for i in poi)
    claim = summary["claim"]["verdicts"][0]
    assert claim["verdict"] == "holds" and claim["ks"] == [1]
    # The paragraph quotes the very intervals of the tables (same resamples).
    table = next(i for i in poi if i["k"] == 1)
    assert (claim["p"], claim["low"], claim["high"]) == (table["p"], table["low"], table["high"])
    for variant in ("bc", "edm"):
        row = next(
            a
            for a in summary["aggregate"]
            if a["variant"] == variant and (a["scope"], a["k"]) == ("k", 1)
        )
        quoted = claim["normalised"][variant]
        assert (quoted["iqm"], quoted["low"], quoted["high"]) == (
            row["iqm"],
            row["low"],
            row["high"],
        )
    assert "**holds**" in summary["claim"]["text"]
    # Profiles: one curve per variant and scope, monotone non-increasing.
    curves = summary["profiles"]["curves"]
    assert len(curves) == 2 * 3
    for c in curves:
        assert np.all(np.diff(c["fraction"]) <= 0)


def test_claim_contradicted_and_not_resolved(tmp_path):
    def bc_ahead(env, algo, k, seed):
        return _edm_ahead(env, "bc" if algo == "edm" else "edm", k, seed)

    summary = summarise_sweep(_sweep(tmp_path / "a", _grid(bc_ahead)), n_resamples=200)
    assert summary["claim"]["verdicts"][0]["verdict"] == "contradicted"
    assert "**contradicted**" in summary["claim"]["text"]
    assert summary["claim"]["verdicts"][0]["p"] == 0.0

    def same(env, algo, k, seed):
        return 100.0 + seed  # identical scores for both algorithms: P = 1/2 exactly

    summary = summarise_sweep(_sweep(tmp_path / "b", _grid(same)), n_resamples=200)
    verdict = summary["claim"]["verdicts"][0]
    assert verdict["p"] == 0.5 and verdict["verdict"] == "not resolved"
    table = next(
        i for i in summary["improvement"] if (i["x"], i["scope"], i["k"]) == ("edm", "k", 1)
    )
    assert verdict["low"] < 0.5 < verdict["high"]
    assert (verdict["low"], verdict["high"]) == (table["low"], table["high"])
    assert "**not resolve**" in summary["claim"]["text"]


def test_claim_uses_the_smaller_half_of_ks(tmp_path):
    # EDM ahead at k = 1 and 3, behind at 7, 10 and 15: the claim about few trajectories
    # looks only at k in {1, 3}.
    def edm_ahead_small(env, algo, k, seed):
        ahead = (algo == "edm") == (k <= 3)
        return 100.0 + (50.0 if ahead else 0.0) + seed

    rows = _grid(edm_ahead_small, ks=(1, 3, 7, 10, 15))
    summary = summarise_sweep(_sweep(tmp_path, rows), n_resamples=100)
    verdict = summary["claim"]["verdicts"][0]
    assert verdict["ks"] == [1, 3] and verdict["verdict"] == "holds"
    assert [p["ks"] for p in verdict["per_k"]] == [[1], [3]]
    overall = next(
        i
        for i in summary["improvement"]
        if i["scope"] == "all" and (i["x"], i["y"]) == ("edm", "bc")
    )
    assert overall["p"] == pytest.approx(2 / 5)


def test_improvement_with_ties_and_a_hand_value(tmp_path):
    values = {("bc", 0): 1.0, ("bc", 1): 2.0, ("edm", 0): 2.0, ("edm", 1): 3.0}
    rows = [
        _row("CartPole-v1", algo, 1, s, ret=values[(algo, s)])
        for algo in ("bc", "edm")
        for s in (0, 1)
    ]
    summary = summarise_sweep(_sweep(tmp_path, rows), n_resamples=100)
    (poi,) = [i for i in summary["improvement"] if i["scope"] == "k"]
    # EDM (2, 3) vs BC (1, 2): 2>1, 2=2 (half), 3>1, 3>2 -> 3.5 / 4.
    assert poi["p"] == 0.875
    assert poi["p"] == probability_of_improvement(np.array([2.0, 3.0]), np.array([1.0, 2.0]))


def test_decoupled_edm_is_compared_with_edm_and_bc(tmp_path):
    rows = _grid(_edm_ahead, algos=("bc", "edm", "edm-decoupled"))
    summary = summarise_sweep(_sweep(tmp_path, rows), n_resamples=50)
    pairs = list(dict.fromkeys((i["x"], i["y"]) for i in summary["improvement"]))
    assert pairs == [("edm", "bc"), ("edm-decoupled", "bc"), ("edm-decoupled", "edm")]


SEVEN = ("bc", "edm", "edm-decoupled", "valuedice", "rcal", "iqlearn", "avril")
SEVEN_NAMES = ("BC", "EDM", "decoupled EDM", "ValueDICE", "RCAL", "IQ-Learn", "AVRIL")
# Normalised score of each learner before a small per-seed offset: ahead of BC (EDM, RCAL),
# tied with it (decoupled EDM: the very same scores), behind it (ValueDICE, AVRIL), and
# IQ-Learn ahead at k = 1 but behind at k = 3.
_SEVEN_BASE = {
    "bc": 0.5,
    "edm": 0.7,
    "edm-decoupled": 0.5,
    "valuedice": 0.3,
    "rcal": 0.9,
    "iqlearn": 0.6,
    "avril": 0.1,
}


def _seven_normalised(algo, k, seed):
    base = _SEVEN_BASE[algo] - (0.2 if (algo, k) == ("iqlearn", 3) else 0.0)
    return base + 0.01 * seed


def _seven_learner_sweep(tmp_path, envs=("CartPole-v1", "Acrobot-v1"), ks=(1, 3)):
    """A finished sweep folder of the seven learners x 2 envs x 2 ks x 3 seeds (per the
    schema: rows/*.json, sweep.json, references.json)."""

    def returns_of(env, algo, k, seed):
        lo, hi = REFS[env]
        return lo + _seven_normalised(algo, k, seed) * (hi - lo)

    return _sweep(tmp_path, _grid(returns_of, envs=envs, algos=SEVEN, ks=ks))


def test_comparisons_put_every_learner_against_bc_in_learner_order():
    assert comparisons(["avril", "zeta", "bc", "edm-decoupled", "alpha", "edm"]) == [
        ("edm", "bc"),
        ("edm-decoupled", "bc"),
        ("edm-decoupled", "edm"),
        ("avril", "bc"),
        ("alpha", "bc"),
        ("zeta", "bc"),
    ]
    assert comparisons(["edm", "edm-decoupled"]) == [("edm-decoupled", "edm")]
    assert comparisons(["bc"]) == [] and comparisons([]) == []
    assert ALGO_ORDER[: len(SEVEN)] == SEVEN and ALGO_ORDER[len(SEVEN) :] == ("dsfn",)


def test_every_learner_gets_p_over_bc_and_an_iqm_by_hand(tmp_path):
    summary = summarise_sweep(_seven_learner_sweep(tmp_path), n_resamples=200)
    assert [v["variant"] for v in summary["variants"]] == list(SEVEN)
    assert [v["name"] for v in summary["variants"]] == list(SEVEN_NAMES)
    pairs = list(dict.fromkeys((i["x"], i["y"]) for i in summary["improvement"]))
    assert pairs == [(a, "bc") for a in SEVEN[1:3]] + [("edm-decoupled", "edm")] + [
        (a, "bc") for a in SEVEN[3:]
    ]
    # Per-learner table: "few" is the smaller half of ks {1, 3}, i.e. k = 1.
    learners = summary["learners"]
    assert learners["scopes"] == [{"name": "few", "ks": [1]}, {"name": "all", "ks": [1, 3]}]
    rows = {r["variant"]: r for r in learners["rows"]}
    assert list(rows) == list(SEVEN)
    # Scores are separated by more than the seed offsets, so P is 1, 0 or (identical) 1/2.
    expected_p = {
        "edm": (1.0, 1.0),
        "edm-decoupled": (0.5, 0.5),
        "valuedice": (0.0, 0.0),
        "rcal": (1.0, 1.0),
        "iqlearn": (1.0, 0.5),  # ahead at k = 1, behind at k = 3
        "avril": (0.0, 0.0),
    }
    for algo, (p_few, p_all) in expected_p.items():
        (few,) = rows[algo]["few"]["vs_baseline"]
        (overall,) = rows[algo]["all"]["vs_baseline"]
        assert (few["x"], few["y"], few["n_tasks"], overall["n_tasks"]) == (algo, "bc", 2, 4)
        assert (few["p"], overall["p"]) == (p_few, p_all), algo
        assert few["low"] <= few["p"] <= few["high"]
    assert rows["bc"]["few"]["vs_baseline"] == [] and rows["bc"]["all"]["vs_baseline"] == []
    # IQM normalised over seeds x (env, k), by hand.
    for algo in SEVEN:
        for scope, ks in (("few", (1,)), ("all", (1, 3))):
            matrix = np.array(
                [[_seven_normalised(algo, k, s) for _ in range(2) for k in ks] for s in (0, 1, 2)]
            )
            assert rows[algo][scope]["normalised"]["iqm"] == pytest.approx(iqm(matrix)), algo
    # The table quotes the same intervals as the per-k tables and the claim's paragraph.
    for algo in SEVEN:
        few = rows[algo]["few"]["normalised"]
        agg = next(
            a
            for a in summary["aggregate"]
            if a["variant"] == algo and (a["scope"], a["k"]) == ("k", 1)
        )
        assert (few["iqm"], few["low"], few["high"]) == (agg["iqm"], agg["low"], agg["high"])
    (overall,) = rows["rcal"]["all"]["vs_baseline"]
    table = next(
        i for i in summary["improvement"] if (i["x"], i["y"], i["scope"]) == ("rcal", "bc", "all")
    )
    assert (overall["p"], overall["low"], overall["high"]) == (
        table["p"],
        table["low"],
        table["high"],
    )
    claim = summary["claim"]["verdicts"][0]
    (edm_few,) = rows["edm"]["few"]["vs_baseline"]
    assert (claim["p"], claim["low"], claim["high"]) == (
        edm_few["p"],
        edm_few["low"],
        edm_few["high"],
    )


def test_report_covers_seven_learners_in_tables_and_figures(tmp_path):
    folder = _seven_learner_sweep(tmp_path)
    report = write_sweep_report(folder, n_resamples=200)
    text = report.read_text()
    section = text.split("## Per learner", 1)[1].split("\n## ", 1)[0]
    header = (
        "| learner | IQM normalised, k = 1 | P(X > BC), k = 1 | IQM normalised, all (env, k) "
        "| P(X > BC), all (env, k) |"
    )
    assert header in section
    table_rows = [
        line for line in section.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert [r.split(" | ")[0][2:] for r in table_rows[1:]] == list(SEVEN_NAMES)
    assert "| BC | 0.510 [" in section and "(2×3) | (the baseline) |" in section
    assert "| IQ-Learn | " in section and "| 1.000 [1.000, 1.000] |" in section
    # The improvement table has one row per comparison and a column per scope.
    improvement = text.split("## Probability of improvement", 1)[1].split("\n## ", 1)[0]
    assert "| comparison | k = 1 | k = 3 | all k |" in improvement
    for name in SEVEN_NAMES[1:]:
        assert f"| P({name} > BC) | " in improvement, name
    assert "| P(decoupled EDM > EDM) | " in improvement
    assert "| P(AVRIL > BC) | 0.000 [0.000, 0.000] (2×3/3) |" in improvement
    # Every other table lists all seven too, in order.
    assert "| env | k | " + " | ".join(SEVEN_NAMES) + " |" in text
    per_env = text.split("### CartPole-v1", 1)[1].split("###", 1)[0]
    assert [line.split(" | ")[0][2:] for line in per_env.splitlines() if " | 1 | 3 |" in line] == [
        *SEVEN_NAMES
    ]
    aggregate = text.split("## Aggregate normalised score", 1)[1].split("\n## ", 1)[0]
    assert [line.split(" | ")[0][2:] for line in aggregate.splitlines() if "(2×3)" in line] == [
        *SEVEN_NAMES
    ]
    for name in (
        "return-vs-k-CartPole-v1.png",
        "return-vs-k-Acrobot-v1.png",
        "performance-profiles.png",
    ):
        assert (report.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text


def test_unknown_algorithms_are_reported_after_the_known_ones(tmp_path):
    rows = _grid(
        lambda env, algo, k, s: {"bc": 100.0, "zz-new": 300.0, "aa-old": 50.0}[algo] + s,
        algos=("zz-new", "bc", "aa-old"),
    )
    folder = _sweep(tmp_path, rows)
    summary = summarise_sweep(folder, n_resamples=50)
    assert [v["variant"] for v in summary["variants"]] == ["bc", "aa-old", "zz-new"]
    assert [v["name"] for v in summary["variants"]] == ["BC", "aa-old", "zz-new"]
    few = {r["variant"]: r["few"]["vs_baseline"] for r in summary["learners"]["rows"]}
    assert few["aa-old"][0]["p"] == 0.0 and few["zz-new"][0]["p"] == 1.0
    text = write_sweep_report(folder, n_resamples=50).read_text()
    assert "| P(aa-old > BC) | " in text and "| P(zz-new > BC) | " in text
    assert "| env | k | BC | aa-old | zz-new |" in text
    assert "**Not testable here**: this sweep has no finished EDM runs" in text


def test_learner_table_against_several_bc_option_sets(tmp_path):
    rows = [
        _row("CartPole-v1", algo, 1, s, ret=ret + s, options={"lr": lr})
        for algo, lr, ret in (("bc", 0.001, 100.0), ("bc", 0.01, 300.0), ("rcal", 0.001, 200.0))
        for s in (0, 1)
    ]
    folder = _sweep(tmp_path, rows, grid={"lr": [0.001, 0.01]})
    text = write_sweep_report(folder, n_resamples=20).read_text()
    section = text.split("## Per learner", 1)[1].split("\n## ", 1)[0]
    # One k only: the table has the "all" scope alone.
    assert "k ≤" not in section
    # RCAL's normalised scores are (200 - 20) / 480 = 0.375 and 181 / 480 = 0.377.
    assert (
        "| RCAL (lr=0.001) | 0.376 [0.375, 0.377] (1×2) | 1.000 [1.000, 1.000] vs BC (lr=0.001); "
        "0.000 [0.000, 0.000] vs BC (lr=0.01) |"
    ) in section


def test_partial_grid_and_failed_rows(tmp_path):
    rows = _grid(_edm_ahead, ks=(1,), seeds=(0, 1, 2))
    rows[1] = _row("CartPole-v1", "bc", 1, 1, status="failed", error="CUDA | out of memory")
    folder = _sweep(tmp_path, rows, ks=[1, 3], algos=["bc", "edm", "edm-decoupled"])
    summary = summarise_sweep(folder, n_resamples=50)
    assert summary["counts"]["failed"] == 1
    # k = 3 for every algorithm (3 x 3 cells) and all of decoupled EDM at k = 1 (3 cells).
    assert summary["counts"]["missing"] == 12
    assert summary["counts"]["expected"] == 18
    missing = {(m["variant"], m["k"]): m["seeds"] for m in summary["missing"]}
    assert missing[("edm-decoupled", 1)] == [0, 1, 2] and missing[("bc", 3)] == [0, 1, 2]
    bc = next(a for a in summary["aggregate"] if a["variant"] == "bc" and a["scope"] == "all")
    assert bc["seeds"] == [0, 2]
    assert "partial" in summary["claim"]["text"]

    report = write_sweep_report(folder, n_resamples=50)
    text = report.read_text()
    assert "this sweep is partial" in text
    assert "CUDA \\| out of memory" in text  # the pipe escaped inside the table
    assert "| CartPole-v1 | decoupled EDM | 1 | 0, 1, 2 |" in text


def test_report_has_every_section_and_files(tmp_path):
    rows = _grid(
        _edm_ahead, envs=("CartPole-v1", "Acrobot-v1"), algos=("bc", "edm", "edm-decoupled")
    )
    folder = _sweep(tmp_path, rows)
    report = write_sweep_report(folder, n_resamples=100)
    assert report == folder / "report" / "REPORT.md"
    text = report.read_text()
    for heading in (
        "## The EDM paper's claim in this run",
        "## Protocol",
        "## Normalisation references",
        "## Return and normalised score against k",
        "### CartPole-v1",
        "### Acrobot-v1",
        "## Aggregate normalised score",
        "## Probability of improvement",
        "## Performance profiles",
        "## Action match on held-out episodes",
        "## Failed and missing cells",
    ):
        assert heading in text, heading
    assert "None: every cell of the grid has a finished row." in text
    assert "| env | k | BC | EDM | decoupled EDM |" in text
    assert "| CartPole-v1 | 3 | 0.900 [0.900, 0.900] (3) |" in text
    assert "an EDM run scores above a BC run" in text
    assert "`abc1234`" in text and "options.n_updates" in text and "every_nth_step=20" in text
    out = report.parent
    for name in (
        "return-vs-k-CartPole-v1.png",
        "return-vs-k-Acrobot-v1.png",
        "performance-profiles.png",
    ):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    tidy = pd.read_csv(out / "rows.csv")
    assert len(tidy) == len(rows) and "returns" not in tidy.columns
    assert "normalised_score" in tidy.columns
    aggregates = json.loads((out / "aggregates.json").read_text())
    assert aggregates["claim"]["verdicts"][0]["verdict"] == "holds"
    # Same seed, same report.
    again = write_sweep_report(folder, tmp_path / "again", n_resamples=100)
    assert again == tmp_path / "again" / "REPORT.md"
    assert again.read_text().replace(str(tmp_path / "again"), "") == text.replace(
        str(folder / "report"), ""
    )
    assert json.loads((again.parent / "aggregates.json").read_text()) == aggregates
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_report_for_one_env_one_k_one_seed_and_no_references(tmp_path):
    rows = [_row("MountainCar-v0", a, 1, 0, ret=-200.0, match=None) for a in ("bc", "edm")]
    folder = _sweep(tmp_path, rows, refs=None)
    report = write_sweep_report(folder, n_resamples=20)
    text = report.read_text()
    assert "no entry in references.json" in text
    assert "No finished cell has a normalised score" in text
    assert "Not measured" in text
    assert "smoke test" in text  # one run per task is flagged as such
    assert not (report.parent / "performance-profiles.png").exists()
    assert (report.parent / "return-vs-k-MountainCar-v0.png").exists()


def test_report_with_only_bc_and_with_no_rows(tmp_path):
    folder = _sweep(tmp_path / "a", _grid(_edm_ahead, algos=("bc",)))
    text = write_sweep_report(folder, n_resamples=20).read_text()
    assert "**Not testable here**: this sweep has no finished EDM runs" in text
    assert "Not computable" in text

    folder = _sweep(
        tmp_path / "b", [], envs=["CartPole-v1"], algos=["bc", "edm"], ks=[1], seeds=[0, 1]
    )
    text = write_sweep_report(folder, n_resamples=20).read_text()
    assert "0 finished cells, 0 failed, 4 missing of 4" in text
    assert "No finished cells yet." in text


def test_judge_edm_claim_on_rows_directly(tmp_path):
    frame = load_rows(_sweep(tmp_path, _grid(_edm_ahead)))
    a = judge_edm_claim(frame, seed=3, n_resamples=50)
    b = judge_edm_claim(frame, seed=3, n_resamples=50)
    assert a == b
    assert a["verdicts"][0]["verdict"] == "holds"


def test_grid_options_name_variants_and_missing_ones(tmp_path):
    # The spec sweeps lr over two values; only lr = 0.001 has run so far.
    rows = [
        _row("CartPole-v1", algo, 1, s, ret=100.0 + s, options={"n_updates": 50, "lr": 0.001})
        for algo in ("bc", "edm")
        for s in (0, 1)
    ]
    folder = _sweep(tmp_path, rows, grid={"lr": [0.001, 0.01]})
    frame = load_rows(folder)
    assert sorted(set(frame["variant"])) == ["bc (lr=0.001)", "edm (lr=0.001)"]
    summary = summarise_sweep(folder, n_resamples=20)
    assert summary["counts"]["expected"] == 8 and summary["counts"]["missing"] == 4
    assert {m["variant"] for m in summary["missing"]} == {"bc (lr=0.01)", "edm (lr=0.01)"}
    text = write_sweep_report(folder, n_resamples=20).read_text()
    assert "| CartPole-v1 | decoupled EDM" not in text
    assert "| CartPole-v1 | EDM (lr=0.01) | 1 | 0, 1 |" in text


def test_flat_sweep_json_and_the_presets_own_spec(tmp_path):
    # A flat sweep.json (the schema note's layout) reads the same.
    rows = _grid(_edm_ahead, seeds=(0, 1))
    flat = {"schema": 1, "envs": ["CartPole-v1"], "algos": ["bc", "edm"], "ks": [1, 3]}
    flat["seeds"] = [0, 1]
    summary = summarise_sweep(_sweep(tmp_path / "flat", rows, spec=flat), n_resamples=20)
    assert summary["counts"]["expected"] == 8 and summary["counts"]["missing"] == 0
    # The quick preset's spec, as `sbil sweep --preset quick` stores it.
    sweep = pytest.importorskip("sbil.experiments.sweep")
    pytest.importorskip("torch")
    spec = {"schema": 1, "spec": sweep.preset("quick").to_dict()}
    folder = _sweep(tmp_path / "quick", _grid(_edm_ahead, ks=(1,), seeds=(0,)), spec=spec)
    summary = summarise_sweep(folder, n_resamples=20)
    quick = spec["spec"]
    n_grid = len(quick["envs"]) * len(quick["algos"]) * len(quick["ks"]) * len(quick["seeds"])
    assert summary["counts"]["expected"] == n_grid
    assert summary["counts"]["missing"] == n_grid - 2
    text = write_sweep_report(folder, n_resamples=20).read_text()
    assert "# Sweep report: quick preset" in text and "options.n_updates" in text


def test_a_smoke_test_preset_states_no_verdict_about_the_paper(tmp_path):
    """The quick preset (300 updates, 3 seeds) computes P(EDM > BC) but says nothing bold
    about the paper: the same rows under a spec of no preset are judged."""
    sweep = pytest.importorskip("sbil.experiments.sweep")
    pytest.importorskip("torch")
    quick = sweep.preset("quick").to_dict()
    rows = _grid(_edm_ahead, ks=(1,), seeds=(0, 1, 2))
    judged = summarise_sweep(_sweep(tmp_path / "a", rows), n_resamples=50)["claim"]
    assert judged["verdicts"][0]["verdict"] == "holds" and "**holds**" in judged["text"]
    folder = _sweep(tmp_path / "q", rows, spec={"schema": 1, "spec": quick})
    smoke = summarise_sweep(folder, n_resamples=50)["claim"]
    verdict = smoke["verdicts"][0]
    assert verdict["verdict"] == "smoke test"
    assert verdict["p"] == judged["verdicts"][0]["p"]  # the statistic is still computed
    assert "states no verdict about the paper" in smoke["text"]
    assert "the quick preset: 300 updates, 3 seeds, 10 evaluation episodes" in smoke["text"]
    text = write_sweep_report(folder, n_resamples=50).read_text()
    for word in ("**holds**", "**contradicted**", "**not resolved**"):
        assert word not in text


# --- damaged folders: one clear error naming the file -----------------------------------------


def _damaged_row_folder(tmp_path, edit):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    path = sorted((folder / "rows").glob("*.json"))[0]
    row = json.loads(path.read_text())
    edit(row)
    path.write_text(json.dumps(row))
    return folder, path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("cell_id"), "lacks cell_id"),
        (lambda r: r.update(cell_id=[]), "cell_id"),
        (lambda r: r.update(env_id=["CartPole-v1"]), "env_id"),
        (lambda r: r.update(env_id=3), "env_id"),
        (lambda r: r.update(algo={}), "algo"),
        (lambda r: r.update(options=[1]), "options"),
        (lambda r: r.update(options="lr=1"), "options"),
        (lambda r: r.update(seed=10**30), "seed"),
        (lambda r: r.update(seed=-1), "seed"),
        (lambda r: r.update(k=0), "k"),
    ],
)
def test_a_damaged_row_is_named_in_one_error(tmp_path, edit, message):
    folder, path = _damaged_row_folder(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as error:
        write_sweep_report(folder, n_resamples=10)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not (folder / "report").exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "must hold a JSON object"),
        ({"schema": 1, "spec": {"envs": 5}}, "envs"),
        ({"envs": "CartPole-v1", "algos": ["bc", "edm"]}, "envs"),
        ({"envs": [["CartPole-v1"]]}, "envs"),
        ({"algos": [{}]}, "algos"),
        ({"ks": ["a"]}, "ks"),
        ({"seeds": "0-2"}, "seeds"),
        ({"ks": [1, True]}, "ks"),
        ({"grid": [1]}, "grid"),
        ({"grid": {"lr": 0.1}}, "grid"),
        ({"options": [1]}, "options"),
        ({"preset": []}, "preset"),
    ],
)
def test_a_damaged_sweep_json_is_named_in_one_error(tmp_path, spec, message):
    folder = _sweep(tmp_path, _grid(_edm_ahead), spec=spec)
    with pytest.raises(ValueError, match=message) as error:
        write_sweep_report(folder, n_resamples=10)
    assert str(folder / "sweep.json") in str(error.value)


@pytest.mark.parametrize("references", [[], "x", {"CartPole-v1": 5}])
def test_damaged_references_are_named_or_marked_unusable(tmp_path, references):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    (folder / "references.json").write_text(json.dumps(references))
    if isinstance(references, dict):  # an entry that is no reference: the env is not normalised
        summary = summarise_sweep(folder, n_resamples=10)
        assert summary["references"]["CartPole-v1"]["usable"] is False
        return
    with pytest.raises(ValueError, match=r"references\.json must hold a JSON object"):
        write_sweep_report(folder, n_resamples=10)


def _sbil_app():
    from sbil.cli import _register, app

    _register()
    return app


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "sweep.json").write_text("[]"),
        lambda folder: (folder / "references.json").write_text("[]"),
        lambda folder: next((folder / "rows").glob("*.json")).write_text("[]"),
        lambda folder: next((folder / "rows").glob("*.json")).write_text('{"env_id": ["x"]}'),
    ],
)
def test_sbil_sweep_report_on_a_damaged_folder_is_one_line_and_exit_1(tmp_path, damage):
    from typer.testing import CliRunner

    folder = _sweep(tmp_path, _grid(_edm_ahead))
    damage(folder)
    result = CliRunner().invoke(_sbil_app(), ["sweep", "report", str(folder)])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and str(folder) in line


# --- rows outside the sweep's grid -------------------------------------------------------------


def test_rows_outside_the_grid_are_ignored_and_counted(tmp_path):
    rows = _grid(_edm_ahead, envs=("CartPole-v1", "Acrobot-v1"))
    clean = summarise_sweep(_sweep(tmp_path / "clean", rows), n_resamples=100)
    stray = [
        _row("MountainCar-v0", "bc", 1, 0, ret=-110.0),  # an env the grid does not have
        _row("CartPole-v1", "rcal", 1, 0, ret=500.0),  # a learner it does not have
        _row("CartPole-v1", "bc", 7, 0, ret=500.0),  # a k it does not have
        _row("CartPole-v1", "bc", 1, 9, ret=500.0),  # a seed it does not have
        _row("CartPole-v1", "edm", 1, 0, ret=20.0, options={"batch_size": 64}),  # options
    ]
    folder = _sweep(
        tmp_path / "stray",
        [*rows, *stray],
        envs=["CartPole-v1", "Acrobot-v1"],
        algos=["bc", "edm"],
        ks=[1, 3],
        seeds=[0, 1, 2],
        grid={"every_nth_step": [20]},
    )
    summary = summarise_sweep(folder, n_resamples=100)
    ignored = summary["outside_grid"]
    assert sorted(r["row_file"] for r in ignored) == sorted(f"{r['cell_id']}.json" for r in stray)
    reasons = {
        r["row_file"].split("__")[0] + r["row_file"].split("__")[1]: r["reason"] for r in ignored
    }
    assert "MountainCar-v0" in reasons["MountainCar-v0bc"] and "rcal" in reasons["CartPole-v1rcal"]
    # Every figure is that of the sweep without the stray rows.
    for key in ("counts", "cells", "aggregate", "improvement", "learners", "claim", "variants"):
        assert summary[key] == clean[key], key
    assert clean["outside_grid"] == []
    text = write_sweep_report(folder, n_resamples=100).read_text()
    assert "5 row files in `rows/` are outside the sweep's grid" in text
    assert "MountainCar-v0" not in text.split("## Failed and missing cells")[0]
    assert len(pd.read_csv(folder / "report" / "rows.csv")) == len(rows)


def test_without_a_grid_of_options_any_option_set_of_a_grid_learner_is_kept(tmp_path):
    # No `grid` in sweep.json: option-sets are told apart by the rows (as before).
    rows = [
        _row("CartPole-v1", "edm", 1, s, ret=100.0, options={"lr": lr})
        for s in (0, 1)
        for lr in (0.001, 0.01)
    ]
    summary = summarise_sweep(_sweep(tmp_path, rows), n_resamples=20)
    assert summary["outside_grid"] == [] and summary["counts"]["rows"] == 4


# --- where the report goes: staged, and only over an earlier report ----------------------------


def test_out_refuses_a_folder_holding_other_files_and_leaves_it_alone(tmp_path):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match=r"not an sbil sweep report \(notes\.txt\)"):
        write_sweep_report(folder, mine, n_resamples=10)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="not an sbil sweep report"):
        write_sweep_report(folder, tmp_path, n_resamples=10)  # the sweep's parent: holds it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "sweep"]


@pytest.mark.parametrize("inside", ["", "rows", "rows/report", "runs", "datasets"])
def test_out_never_writes_inside_the_sweeps_own_data(tmp_path, inside):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with pytest.raises(ValueError, match="sweep's own"):
        write_sweep_report(folder, folder / inside if inside else folder, n_resamples=10)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert write_sweep_report(folder, n_resamples=10).is_file()  # a later report still works


def test_out_replaces_an_earlier_report_whole(tmp_path):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    out = tmp_path / "report"
    first = write_sweep_report(folder, out, n_resamples=10)
    (out / "return-vs-k-Gone-v0.png").write_bytes(b"\x89PNG old figure")  # an earlier env's
    again = write_sweep_report(folder, out, n_resamples=10)
    assert again == first and "return-vs-k-Gone-v0.png" not in {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sbil-")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_sweep_report(folder, empty / "summary.md", n_resamples=10).name == "summary.md"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        write_sweep_report(folder, tmp_path / "file", n_resamples=10)


def test_out_refuses_an_interrupted_old_report_without_its_markdown(tmp_path):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    out = tmp_path / "report"
    out.mkdir()
    (out / "return-vs-k-CartPole-v1.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"no REPORT\.md"):
        write_sweep_report(folder, out, n_resamples=10)


def test_an_interrupted_report_leaves_the_previous_one_as_it_was(tmp_path, monkeypatch):
    from sbil.experiments.sweeps import report as sweep_report

    folder = _sweep(tmp_path, _grid(_edm_ahead, envs=("CartPole-v1", "Acrobot-v1")))
    report = write_sweep_report(folder, n_resamples=10)
    before = {p.name: p.read_bytes() for p in report.parent.iterdir()}
    saved = []

    def interrupted_after_one_figure(figure, path):
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        sweep_report.save_figure_atomic(figure, path, dpi=120)

    monkeypatch.setattr(sweep_report, "_save", interrupted_after_one_figure)
    with pytest.raises(KeyboardInterrupt):
        write_sweep_report(folder, n_resamples=20)
    assert {p.name: p.read_bytes() for p in report.parent.iterdir()} == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".sbil-")]
    saved.clear()
    with pytest.raises(KeyboardInterrupt):
        write_sweep_report(folder, tmp_path / "new", n_resamples=20)
    assert not (tmp_path / "new").exists()


def test_sbil_sweep_report_out_refusals_are_one_line_and_exit_1(tmp_path):
    from typer.testing import CliRunner

    folder = _sweep(tmp_path, _grid(_edm_ahead))
    for out in (folder / "rows", tmp_path):
        result = CliRunner().invoke(
            _sbil_app(), ["sweep", "report", str(folder), "--out", str(out)]
        )
        assert result.exit_code == 1, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: --out {out} ")


def test_sbil_sweep_report_says_how_many_rows_were_left_out(tmp_path):
    from typer.testing import CliRunner

    rows = _grid(_edm_ahead)
    folder = _sweep(tmp_path, [*rows, _row("CartPole-v1", "bc", 1, 9, ret=1.0)], seeds=[0, 1, 2])
    result = CliRunner().invoke(_sbil_app(), ["sweep", "report", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Wrote {folder / 'report' / 'REPORT.md'}"
    assert result.stderr.startswith("Warning: 1 row file(s) in ")


def test_out_through_a_link_into_the_sweeps_rows_is_refused(tmp_path):
    folder = _sweep(tmp_path, _grid(_edm_ahead))
    (tmp_path / "link").symlink_to(folder / "rows")
    with pytest.raises(ValueError, match="sweep's own data"):
        write_sweep_report(folder, tmp_path / "link" / "report", n_resamples=10)
    assert not [p for p in (folder / "rows").iterdir() if not p.name.endswith(".json")]


def test_the_edm_paper_presets_judge_the_papers_tasks_and_report_mountaincar_beside(tmp_path):
    refs = {**REFS, "MountainCar-v0": (-200.0, -100.0)}

    def returns(env, algo, k, seed):  # EDM ahead on CartPole, behind on MountainCar
        lo, hi = refs[env]
        ahead = (algo == "edm") == (env == "CartPole-v1")
        return lo + (0.8 if ahead else 0.2) * (hi - lo) + 0.001 * seed

    rows = _grid(returns, envs=("CartPole-v1", "MountainCar-v0"), seeds=tuple(range(5)))
    plain = _sweep(tmp_path / "plain", rows, refs=refs)
    spec = json.loads((plain / "sweep.json").read_text())
    spec["spec"]["preset"] = "edm-paper"
    paper = _sweep(tmp_path / "paper", rows, refs=refs, spec=spec)

    pooled = summarise_sweep(plain, n_resamples=50)
    assert pooled["beside"] == [] and pooled["claim"]["verdicts"][0]["envs"] == [
        "CartPole-v1",
        "MountainCar-v0",
    ]
    summary = summarise_sweep(paper, n_resamples=50)
    assert summary["headline_envs"] == ["CartPole-v1"]
    verdict = summary["claim"]["verdicts"][0]
    assert verdict["envs"] == ["CartPole-v1"] and verdict["p"] == 1.0
    assert verdict["verdict"] == "holds"
    assert all(e["envs"] == ["CartPole-v1"] for e in summary["aggregate"])
    (beside,) = summary["beside"]
    assert beside["env_id"] == "MountainCar-v0"
    assert beside["claim"]["verdicts"][0]["p"] == 0.0
    text = write_sweep_report(paper, n_resamples=50).read_text()
    assert "## Beside the verdict: MountainCar-v0" in text
    assert (
        "On MountainCar-v0 alone, at k ∈ {1} (5 EDM and 5 BC runs per k): P(EDM > BC) = 0.00"
        in text
    )
    assert "Per learner on MountainCar-v0 alone" in text


# ----------------------------------------------------------------------------- figures


def _figures_of(monkeypatch, folder, **kwargs):
    """Write the report of ``folder`` and keep every figure it saves, by file name."""
    from sbil.experiments.sweeps import report as sweep_report

    saved = {}

    def keep(figure, path):
        saved[path.name] = figure
        sweep_report.save_figure_atomic(figure, path, dpi=60)

    monkeypatch.setattr(sweep_report, "_save", keep)
    report = write_sweep_report(folder, **kwargs)
    return report, saved


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_interval_figure_draws_the_summarys_iqms_and_probabilities(tmp_path, monkeypatch):
    report, saved = _figures_of(monkeypatch, _seven_learner_sweep(tmp_path), n_resamples=200)
    text = report.read_text()
    assert _png(report.parent / "interval-estimates.png")
    section = text.split("## Per learner", 1)[1].split("\n## ", 1)[0]
    assert "![interval estimates per learner](interval-estimates.png)" in section
    assert "IQM normalised score (left) and P(X > BC) (right) at k = 1 and all (env, k)" in section
    summary = json.loads((report.parent / "aggregates.json").read_text())
    rows = {r["variant"]: r for r in summary["learners"]["rows"]}
    figure = saved["interval-estimates.png"]
    panels = {ax.get_gid(): ax for ax in figure.axes}
    assert set(panels) == {"iqm:few", "iqm:all", "p:few", "p:all"}
    for gid, ax in panels.items():
        metric, scope = gid.split(":")
        assert [t.get_text() for t in ax.get_yticklabels()] == list(SEVEN_NAMES), gid
        bars = {p.get_gid(): p for p in ax.patches if p.get_gid()}
        ticks = {line.get_gid(): line for line in ax.lines if line.get_gid()}
        expected = {
            algo: rows[algo][scope]["normalised"]
            if metric == "iqm"
            else next(iter(rows[algo][scope]["vs_baseline"]), None)
            for algo in SEVEN
        }
        expected = {a: e for a, e in expected.items() if e is not None}
        assert (
            set(bars)
            == set(ticks)
            == set(expected)
            == (set(SEVEN) if metric == "iqm" else set(SEVEN) - {"bc"})
        ), gid
        for algo, entry in expected.items():
            bar, tick = bars[algo], ticks[algo]
            point = entry["iqm" if metric == "iqm" else "p"]
            assert bar.get_x() == pytest.approx(entry["low"], abs=1e-12), (gid, algo)
            assert bar.get_x() + bar.get_width() == pytest.approx(entry["high"], abs=1e-12)
            assert list(tick.get_xdata()) == pytest.approx([point, point], abs=1e-12)
            # The row of the learner: the tick sits where its name is.
            assert np.mean(tick.get_ydata()) == SEVEN.index(algo)
        if metric == "p":
            assert [t.get_text() for t in ax.texts] == ["(the baseline)"]
    # Over all (env, k) the bars are the aggregate and improvement tables' entries themselves.
    ax = panels["iqm:all"]
    for algo in SEVEN:
        agg = next(a for a in summary["aggregate"] if a["variant"] == algo and a["scope"] == "all")
        (bar,) = [p for p in ax.patches if p.get_gid() == algo]
        assert (bar.get_x(), bar.get_x() + bar.get_width()) == pytest.approx(
            (agg["low"], agg["high"]), abs=1e-12
        )
    (avril_p,) = [p for p in panels["p:all"].patches if p.get_gid() == "avril"]
    table = next(i for i in summary["improvement"] if (i["x"], i["scope"]) == ("avril", "all"))
    assert avril_p.get_x() == table["low"] and table["p"] == 0.0


def test_the_interval_figure_pools_only_the_papers_tasks_in_the_edm_paper_presets(
    tmp_path, monkeypatch
):
    refs = {**REFS, "MountainCar-v0": (-200.0, -100.0)}

    def returns(env, algo, k, seed):
        lo, hi = refs[env]
        return lo + ({"bc": 0.3, "edm": 0.6}[algo] + 0.01 * seed) * (hi - lo)

    rows = _grid(returns, envs=("CartPole-v1", "MountainCar-v0"), seeds=tuple(range(4)))
    spec = json.loads((_sweep(tmp_path / "plain", rows, refs=refs) / "sweep.json").read_text())
    spec["spec"]["preset"] = "edm-paper"
    folder = _sweep(tmp_path / "paper", rows, refs=refs, spec=spec)
    report, saved = _figures_of(monkeypatch, folder, n_resamples=50)
    assert "over the EDM paper's control tasks (CartPole-v1), not MountainCar-v0" in (
        report.read_text()
    )
    summary = json.loads((report.parent / "aggregates.json").read_text())
    ax = next(a for a in saved["interval-estimates.png"].axes if a.get_gid() == "iqm:all")
    (edm,) = [p for p in ax.patches if p.get_gid() == "edm"]
    (entry,) = [r["all"]["normalised"] for r in summary["learners"]["rows"] if r["algo"] == "edm"]
    assert entry["envs"] == ["CartPole-v1"]
    assert (edm.get_x(), edm.get_x() + edm.get_width()) == pytest.approx(
        (entry["low"], entry["high"]), abs=1e-12
    )
    assert "CartPole-v1" in saved["interval-estimates.png"].get_suptitle()
    assert "MountainCar" not in saved["interval-estimates.png"].get_suptitle()


def test_return_against_k_keeps_its_axis_when_one_seed_is_an_outlier(tmp_path, monkeypatch):
    planted = -1e5  # one BC seed at k = 1: far below CartPole's random policy (20)

    def returns(env, algo, k, seed):
        if (algo, k, seed) == ("bc", 1, 3):
            return planted
        return {"bc": 300.0, "edm": 350.0}[algo] + 10 * seed + 20 * k

    rows = _grid(returns, ks=(1, 3, 7), seeds=tuple(range(10)))
    report, saved = _figures_of(monkeypatch, _sweep(tmp_path, rows), n_resamples=2000)
    text = report.read_text()
    assert _png(report.parent / "return-vs-k-CartPole-v1.png")
    assert "![return against k on CartPole-v1](return-vs-k-CartPole-v1.png)" in text
    assert "one seed's extreme return cannot flatten it" in text
    summary = json.loads((report.parent / "aggregates.json").read_text())
    cells = {(c["variant"], c["k"]): c for c in summary["cells"]}
    # The outlier reaches the interval (a resample drawing it three times keeps it in the
    # middle half), not the IQM: left alone, the interval would set the axis near -16,000.
    assert cells[("bc", 1)]["return"]["low"] < -5000
    assert 300 < cells[("bc", 1)]["return"]["iqm"] < 400
    ret_ax, norm_ax = saved["return-vs-k-CartPole-v1.png"].axes
    for ax, key, lines in ((ret_ax, "return", (20.0, 500.0)), (norm_ax, "normalised", (0, 1))):
        low, high = ax.get_ylim()
        iqms = [c[key]["iqm"] for c in cells.values()]
        assert low <= min(*iqms, *lines) and high >= max(*iqms, *lines), key
        span = max(*iqms, *lines) - min(*iqms, *lines)
        assert low > min(*iqms, *lines) - 0.4 * span, (key, low)  # not the outlier's -16,000
        # The plotted points are the summary's IQMs.
        for variant in ("bc", "edm"):
            (line,) = [li for li in ax.lines if li.get_gid() == variant]
            expected = [cells[(variant, k)][key]["iqm"] for k in (1, 3, 7)]
            assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-12)
        # The cut interval is marked at the edge, at BC's k = 1 only.
        (cut,) = [li for li in ax.lines if li.get_gid() == "cut"]
        assert cut.get_marker() == "v" and len(cut.get_xdata()) == 1
        assert abs(cut.get_xdata()[0] - 1) < 0.2 and low < cut.get_ydata()[0] < high
    # Without the outlier nothing is cut.
    calm = _grid(
        lambda e, a, k, s: {"bc": 300.0, "edm": 350.0}[a] + 10 * s + 20 * k,
        ks=(1, 3, 7),
        seeds=tuple(range(10)),
    )
    _, saved = _figures_of(monkeypatch, _sweep(tmp_path / "calm", calm), n_resamples=200)
    assert not [
        li
        for ax in saved["return-vs-k-CartPole-v1.png"].axes
        for li in ax.lines
        if li.get_gid() == "cut"
    ]


def test_axis_limits_cut_only_what_reaches_far_beyond_the_estimates():
    from sbil.experiments.sweeps.figures import _axis_limits

    assert _axis_limits([0.0, 1.0], [-0.1, -1e6], [1.1, 1.2]) == pytest.approx(
        (-0.25, 1.25, -0.3225, 1.2725)
    )
    # Intervals within the margin are drawn whole; the axis pads them by 5%.
    clip_low, clip_high, low, high = _axis_limits([10.0, 20.0], [9.0], [21.0])
    assert (clip_low, clip_high) == (7.5, 22.5) and (low, high) == pytest.approx((8.4, 21.6))
    # One point: a span of its own size, and an axis of some height, never zero.
    assert _axis_limits([5.0], [5.0], [5.0]) == pytest.approx((3.75, 6.25, 4.75, 5.25))


EIGHT = (*SEVEN, "dsfn")


def test_performance_profiles_stay_legible_with_eight_learners(tmp_path, monkeypatch):
    base = {**_SEVEN_BASE, "dsfn": 0.4}

    def returns(env, algo, k, seed):
        lo, hi = REFS[env]
        return lo + (base[algo] + 0.01 * seed) * (hi - lo)

    folder = _sweep(tmp_path, _grid(returns, envs=("CartPole-v1", "Acrobot-v1"), algos=EIGHT))
    report, saved = _figures_of(monkeypatch, folder, n_resamples=100)
    text = report.read_text()
    section = text.split("## Performance profiles", 1)[1].split("\n## ", 1)[0]
    for name in ("performance-profiles.png", "performance-profiles-per-learner.png"):
        assert _png(report.parent / name) and f"]({name})" in section, name
    assert "without their bands, which would overlap with 8 learners" in section
    summary = json.loads((report.parent / "aggregates.json").read_text())
    curves = {(c["variant"], c["scope"]): c for c in summary["profiles"]["curves"]}
    overlay = saved["performance-profiles.png"]
    overlay.canvas.draw()
    for ax in [a for a in overlay.axes if a.get_visible()]:
        lines = [li for li in ax.lines if li.get_gid() in EIGHT]
        assert [li.get_gid() for li in lines] == list(EIGHT)
        # Every learner apart in colour, and in line style or marker from each other one.
        assert len({li.get_color() for li in lines}) == 8
        assert len({(li.get_linestyle(), li.get_marker()) for li in lines}) == 8
        assert not ax.collections and ax.get_legend() is None  # no bands, no legend inside
    (legend,) = overlay.legends
    assert [t.get_text() for t in legend.get_texts()] == [*SEVEN_NAMES, "DSFN"]
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in overlay.axes)
    # Small multiples: one panel per learner, its band and curve the summary's over all tasks.
    per_learner = saved["performance-profiles-per-learner.png"]
    panels = [ax for ax in per_learner.axes if ax.get_visible()]
    assert len(panels) == 8
    for ax, variant in zip(panels, EIGHT, strict=True):
        c = curves[(variant, "all")]
        (line,) = [li for li in ax.lines if li.get_gid() == variant]
        assert list(line.get_ydata()) == pytest.approx(c["fraction"], abs=1e-12)
        (band,) = ax.collections
        ys = band.get_paths()[0].vertices[:, 1]
        assert min(ys) == pytest.approx(min(c["low"])) and max(ys) == pytest.approx(max(c["high"]))
        # BC dashed in black in every other learner's panel.
        dashed = [li for li in ax.lines if li.get_color() == "k" and li.get_linestyle() == "--"]
        assert len(dashed) == (0 if variant == "bc" else 1), variant
        if variant != "bc":
            assert list(dashed[0].get_ydata()) == pytest.approx(curves[("bc", "all")]["fraction"])


def test_performance_profiles_of_few_learners_keep_their_bands_in_one_figure(tmp_path, monkeypatch):
    report, saved = _figures_of(monkeypatch, _sweep(tmp_path, _grid(_edm_ahead)), n_resamples=50)
    text = report.read_text()
    assert "with pointwise 95% stratified bootstrap bands" in text
    assert "performance-profiles-per-learner" not in text
    assert not (report.parent / "performance-profiles-per-learner.png").exists()
    assert set(saved) == {
        "interval-estimates.png",
        "return-vs-k-CartPole-v1.png",
        "performance-profiles.png",
    }
    assert all(len(ax.collections) == 2 for ax in saved["performance-profiles.png"].axes)


def test_a_results_folder_with_rows_jsonl_gz_reads_as_its_rows_folder(tmp_path):
    import gzip
    import shutil

    rows = _grid(_edm_ahead, envs=("CartPole-v1", "Acrobot-v1"))
    folder = _sweep(tmp_path, rows)
    archive = tmp_path / "results"
    archive.mkdir()
    for name in ("sweep.json", "references.json"):
        shutil.copy(folder / name, archive / name)
    with gzip.open(archive / "rows.jsonl.gz", "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    assert summarise_sweep(archive) == summarise_sweep(folder)
    with gzip.open(archive / "rows.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write("{not json\n")
    with pytest.raises(ValueError, match=r"rows\.jsonl\.gz"):
        summarise_sweep(archive)


def test_a_learner_has_the_same_style_whichever_learners_share_the_report():
    from sbil.experiments.sweeps.common import ALGO_ORDER
    from sbil.experiments.sweeps.figures import _styles

    def styles(algos):
        variants = [{"variant": a, "algo": a} for a in algos]
        return _styles({"variants": variants})

    everyone = styles(list(ALGO_ORDER))
    assert styles(["bc", "valuedice"])["valuedice"] == everyone["valuedice"]
    assert styles(["dsfn"])["dsfn"] == everyone["dsfn"]
    assert len({json.dumps(s, sort_keys=True) for s in everyone.values()}) == len(ALGO_ORDER)
    two = _styles(
        {
            "variants": [
                {"variant": "bc (lr=0.001)", "algo": "bc"},
                {"variant": "bc (lr=0.01)", "algo": "bc"},
                {"variant": "mystery", "algo": "mystery"},
            ]
        }
    )
    assert len({json.dumps(s, sort_keys=True) for s in two.values()}) == 3
