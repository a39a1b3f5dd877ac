"""The data-condition comparison: per condition P(EDM > BC) equals the sweep report's own,
regularised BC variants come from added folders, a cell in two folders is taken from the first,
and `sbil sweep compare` writes the report or refuses a bad condition in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbil.experiments.conditions import compare_conditions, parse_condition
from sbil.experiments.sweeps import claim as sweep_claim
from sbil.experiments.sweeps import load as sweep_load

REFS = {"CartPole-v1": (20.0, 500.0), "Acrobot-v1": (-500.0, -80.0)}


def _row(env, algo, k, seed, ret, options=None):
    tag = json.dumps(options or {}, sort_keys=True)
    return {
        "schema": 1,
        "cell_id": f"{env}__{algo}__k{k}__s{seed}__{abs(hash(tag)) % 10**8}",
        "config_hash": "0" * 64,
        "env_id": env,
        "algo": algo,
        "k": k,
        "seed": seed,
        "options": {"every_nth_step": 20, **(options or {})},
        "status": "done",
        "returns": [ret],
        "return_mean": ret,
        "git_commit": "abc1234",
    }


def _folder(path: Path, rows, grid=None) -> Path:
    (path / "rows").mkdir(parents=True)
    spec = {
        "envs": sorted({r["env_id"] for r in rows}),
        "algos": sorted({r["algo"] for r in rows}),
        "ks": sorted({r["k"] for r in rows}),
        "seeds": sorted({r["seed"] for r in rows}),
        "grid": grid or {},
    }
    (path / "sweep.json").write_text(json.dumps({"schema": 1, "spec": spec}))
    references = {
        env: {
            "random": {"mean": lo, "returns": [lo], "episodes": 1, "seed": 0},
            "expert": {"mean": hi, "returns": [hi], "episodes": 1, "seed": 0, "name": "x"},
        }
        for env, (lo, hi) in REFS.items()
    }
    (path / "references.json").write_text(json.dumps(references))
    for row in rows:
        (path / "rows" / f"{row['cell_id']}.json").write_text(json.dumps(row))
    return path


def _level(env, share):
    lo, hi = REFS[env]
    return lo + share * (hi - lo)


def _main(path, edm_share, bc_share, ks=(1, 3, 7, 10)):
    rows = [
        _row(env, algo, k, s, _level(env, share + 0.01 * s))
        for env in REFS
        for algo, share in (("bc", bc_share), ("edm", edm_share))
        for k in ks
        for s in range(4)
    ]
    return _folder(path, rows)


def test_each_conditions_verdict_is_its_own_reports_and_regularised_bc_sits_beside(tmp_path):
    ahead = _main(tmp_path / "ahead", 0.8, 0.3)
    behind = _main(tmp_path / "behind", 0.2, 0.6)
    regularised = [
        _row(env, "bc", k, s, _level(env, 0.9 + 0.01 * s), {"l2_coef": 0.001})
        for env in REFS
        for k in (1, 3)
        for s in range(4)
    ]
    extra = _folder(tmp_path / "reg", regularised, grid={"l2_coef": [0.001]})
    summary = compare_conditions(
        {"ahead": [ahead, extra], "behind": [behind]},
        ks=(1, 3),
        envs=tuple(REFS),
        n_resamples=200,
    )
    by_name = {c["name"]: c for c in summary["conditions"]}
    for name, folder in (("ahead", ahead), ("behind", behind)):
        own = sweep_claim.judge_edm_claim(sweep_load.load_rows(folder), n_resamples=200)[
            "verdicts"
        ][0]
        assert own["ks"] == [1, 3]
        got = by_name[name]["edm_over_bc"]
        assert (got["p"], got["low"], got["high"]) == (own["p"], own["low"], own["high"])
    assert by_name["ahead"]["edm_over_bc"]["p"] == 1.0
    assert by_name["behind"]["edm_over_bc"]["p"] == 0.0
    (reg,) = by_name["ahead"]["regularised"]
    assert reg["variant"] == "bc (l2_coef=0.001)"
    assert reg["edm_over_it"]["p"] == 0.0 and reg["it_over_bc"]["p"] == 1.0
    assert by_name["behind"]["regularised"] == []
    assert by_name["ahead"]["git_commits"] == ["abc1234"]


def test_a_cell_in_two_folders_is_taken_from_the_first(tmp_path):
    first = _main(tmp_path / "first", 0.8, 0.3, ks=(1,))
    bc_rows = [r for r in sweep_load.load_rows(first).to_dict("records") if r["algo"] == "bc"]
    copies = [
        {**_row(r["env_id"], "bc", 1, r["seed"], -1e6), "cell_id": r["cell_id"]} for r in bc_rows
    ]
    second = _folder(tmp_path / "second", copies)
    one = compare_conditions({"c": [first]}, ks=(1,), envs=tuple(REFS), n_resamples=100)
    two = compare_conditions({"c": [first, second]}, ks=(1,), envs=tuple(REFS), n_resamples=100)
    assert one["conditions"][0]["iqm"] == two["conditions"][0]["iqm"]


def test_a_condition_without_edm_is_refused_naming_it(tmp_path):
    rows = [_row("CartPole-v1", "bc", 1, s, 100.0) for s in range(3)]
    folder = _folder(tmp_path / "bc-only", rows)
    with pytest.raises(ValueError, match="'lonely' has no finished BC and EDM"):
        compare_conditions({"lonely": [folder]}, envs=("CartPole-v1",))


@pytest.mark.parametrize("text", ["sampled", "=dir", "name=", "name=,"])
def test_a_bad_condition_says_the_form(text):
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_condition(text)


def test_sbil_sweep_compare_writes_the_report_and_refuses_a_bad_condition(tmp_path):
    from sbil.cli import _register, app

    _register()
    folder = _main(tmp_path / "sampled", 0.8, 0.3)
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["sweep", "compare", "--condition", f"sampled={folder}", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    text = (out / "REPORT.md").read_text()
    assert "| sampled | 1.00 [1.00, 1.00]" in text and "sbil sweep compare" in text
    assert (out / "p-edm-over-bc.png").is_file()
    result = runner.invoke(app, ["sweep", "compare", "--condition", "oops", "--out", str(out)])
    assert result.exit_code == 2 and "NAME=DIR" in result.output
