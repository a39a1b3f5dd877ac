"""Tests for sbil.experiments.reproduce: the quick run, its report, its folder handling."""

import json
import os
import re

import pytest

from sbil import files as sbil_files
from sbil.experiments import consistency as cs
from sbil.experiments import reproduce as rp


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True))


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells (a ``\\|`` inside a cell is not a separator)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


@pytest.mark.slow
def test_quick_run_writes_report_and_results(quick_run):
    out = quick_run.out
    data = json.loads((out / "results.json").read_text())
    assert sorted(os.listdir(out)) == sorted(data["files"])
    for name in data["files"]:
        assert (out / name).stat().st_size > 0, name
    ids = [c["id"] for c in data["claims"]]
    assert ids == list(rp.NOTE_CLAIM_IDS) + list(rp.BEYOND_CLAIM_IDS)
    assert [s["id"] for s in data["sections"]] == ["note", "beyond"]
    for c in data["claims"]:
        assert {"id", "note_value", "sbil_value", "agrees", "text", "section"} <= set(c)
        assert isinstance(c["agrees"], bool)
        assert c["note_value"] is None or isinstance(c["note_value"], str)
    by_id = {c["id"]: c for c in data["claims"]}
    assert by_id["theorem1"]["note_value"] == "approximately -0.245"
    assert by_id["edm_inconsistent_fraction"]["note_value"] is None
    assert data["runtime_s"] > 0 and "git_commit" in data
    import numpy

    assert data["versions"]["numpy"] == numpy.__version__  # provenance, from sbil.files
    report = (out / "REPORT.md").read_text()
    for cid in ids:
        assert f"`{cid}`" in report
        assert by_id[cid]["text"] in report  # the claim's own words, rendered as given
    assert "iid draws" in report
    assert "needs parameters shared across states" not in report


@pytest.mark.slow
def test_report_numbers_equal_results_json(quick_run):
    data = json.loads((quick_run.out / "results.json").read_text())
    report = (quick_run.out / "REPORT.md").read_text()
    rows = {}
    for line in report.split("## Summary")[1].split("## The note's claims")[0].splitlines():
        if line.startswith("| `"):
            cells = _cells(line)
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {c["id"] for c in data["claims"]}
    for c in data["claims"]:
        _, note_value, ours, verdict = rows[c["id"]]
        assert float(ours) == pytest.approx(c["sbil_value"], rel=1e-3, abs=1e-4), c["id"]
        assert note_value == (c["note_value"] or "—")
        assert verdict == ("agrees" if c["agrees"] else "**DISAGREES**")
    by_id = {c["id"]: c for c in data["claims"]}
    theorem1 = by_id["theorem1"]["details"]
    assert f"EDM converges to theta = {theorem1['edm_limit_theta']:.4f}" in report
    oracle = by_id["oracle_recovers_expert"]["details"]
    assert f"the first {oracle['finite_data_n_mdps']} random MDPs" in report


@pytest.mark.slow
def test_quick_run_verdicts_are_the_same_at_seeds_0_to_4(quick_run, tmp_path):
    """Every claim agrees at every seed: a verdict must not hang on an optimiser's stopping
    rule or on one seed's draw (the oracle once 'disagreed' at seeds 2 and 3 for that)."""
    verdicts = {0: {c.id: c.agrees for c in quick_run.claims}}
    for seed in (1, 2, 3, 4):
        run = rp.run_reproduce(rp.ReproduceConfig(out=tmp_path / f"s{seed}", quick=True, seed=seed))
        verdicts[seed] = {c.id: c.agrees for c in run.claims}
        failed = {c.id: c.details for c in run.claims if not c.agrees}
        assert not failed, f"seed {seed}: {failed}"
    assert all(v == verdicts[0] for v in verdicts.values())
    assert all(verdicts[0].values())


def _small_run(monkeypatch):
    """Make run_reproduce's consistency study tiny (the folder handling is what is tested)."""
    real = rp.run_consistency
    small = cs.ConsistencyConfig(
        n_mdps=2, n_states=4, n_actions=2, n_params=2, sizes=(100, 10_000), n_seeds=2,
        n_seeds_example3=2, n_oracle=1, n_oracle_seeds=1, n_tabular=1,
    )  # fmt: skip

    def run_small(config, *args, **kwargs):
        return real(cs.ConsistencyConfig(**{**small.__dict__, "seed": config.seed}))

    monkeypatch.setattr(rp, "run_consistency", run_small)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_interrupted_rerun_leaves_the_earlier_report_whole(tmp_path, monkeypatch):
    """Ctrl-C half-way through a re-run must not leave figures of one run and results of
    another: the earlier report stays exactly as it was, and no staging folder is left."""
    _small_run(monkeypatch)
    out = tmp_path / "report"
    rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True, seed=0))
    before = _snapshot(out)
    assert "results.json" in before and "landing.png" in before
    real_write = rp.write_csv_atomic

    def interrupted(frame, path):  # figures are written by now, tables not all
        if str(path).endswith("consistency_summary.csv"):
            raise KeyboardInterrupt
        return real_write(frame, path)

    monkeypatch.setattr(rp, "write_csv_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True, seed=1))
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging, no lock


def test_rerun_replaces_the_whole_report(tmp_path, monkeypatch):
    _small_run(monkeypatch)
    out = tmp_path / "report"
    rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True, seed=0))
    first = json.loads((out / "results.json").read_text())
    # An earlier report that listed a file this run does not write: it is not kept.
    first["files"].append("old_figure.png")
    (out / "results.json").write_text(json.dumps(first))
    (out / "old_figure.png").write_text("from an earlier run")
    rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True, seed=1))
    second = json.loads((out / "results.json").read_text())
    assert second["command"].endswith("--seed 1")
    assert sorted(os.listdir(out)) == sorted(second["files"])
    assert "old_figure.png" not in os.listdir(out)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, monkeypatch):
    _small_run(monkeypatch)
    out = tmp_path / "report"
    with sbil_files.lock(out.absolute()):
        with pytest.raises(sbil_files.LockHeldError, match="in use by process"):
            rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True))
    assert not out.exists() or not any(out.iterdir())


def test_deep_without_its_module_fails_before_any_work(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sbil.experiments.deep_critique", None)
    with pytest.raises(ValueError, match=r"--deep needs sbil\.experiments\.deep_critique"):
        rp.run_reproduce(rp.ReproduceConfig(out=tmp_path / "r", quick=True, deep=True))
    assert not (tmp_path / "r").exists()


def test_deep_section_is_rendered_after_the_tabular_ones(tmp_path, monkeypatch):
    import sys
    import types

    from sbil.experiments.claims import Claim, ClaimSection
    from sbil.files import write_text_atomic

    _small_run(monkeypatch)
    calls = []

    def deep_claims(out_dir, *, seed, quick, progress=None):
        calls.append((out_dir, seed, quick))
        write_text_atomic(out_dir / "deep.csv", "a\n1\n")
        claim = Claim(id="deep_rho", title="T.", value=0.5, agrees=True, text="Deep text.")
        return ClaimSection(id="deep", title="Deep", blocks=("Intro.", claim), files=("deep.csv",))

    module = types.ModuleType("sbil.experiments.deep_critique")
    module.deep_claims = deep_claims
    monkeypatch.setitem(sys.modules, "sbil.experiments.deep_critique", module)
    out = tmp_path / "r"
    result = rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True, seed=3, deep=True))
    assert calls and calls[0][1:] == (3, True) and calls[0][0] != out  # wrote into staging
    assert (out / "deep.csv").read_text() == "a\n1\n"
    data = json.loads((out / "results.json").read_text())
    assert data["claims"][-1]["id"] == "deep_rho" and data["claims"][-1]["section"] == "deep"
    report = (out / "REPORT.md").read_text()
    beyond, deep = report.index("## Beyond the note"), report.index("## Deep")
    assert beyond < deep < report.index("## What disagrees")
    assert result.claims[-1].id == "deep_rho"
    # A later plain run may replace that report: its files were listed in results.json.
    monkeypatch.setitem(sys.modules, "sbil.experiments.deep_critique", None)
    rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True))
    assert not (out / "deep.csv").exists()


def test_progress_counts_the_stages(tmp_path, monkeypatch):
    _small_run(monkeypatch)
    calls = []
    rp.run_reproduce(
        rp.ReproduceConfig(out=tmp_path / "r", quick=True),
        progress=lambda done, total: calls.append((done, total)),
    )
    n = len(rp.STAGES)
    assert calls == [(i, n) for i in range(1, n + 1)]


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(rp.ReportPathError, match="existing file"):
        rp.check_out_dir(f)


def test_out_dir_edge_cases(tmp_path, monkeypatch):
    with pytest.raises(rp.ReportPathError, match="empty"):
        rp.check_out_dir("")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rp.check_out_dir("~/rep") == tmp_path / "rep"
    assert (tmp_path / "rep").is_dir()
    assert rp.ReproduceConfig(out="~/x").out_dir == tmp_path / "x"
    (tmp_path / "rep" / "REPORT.md").mkdir()
    with pytest.raises(rp.ReportPathError, match=r"REPORT\.md is a folder"):
        rp.check_out_dir(tmp_path / "rep")


def test_out_dir_holding_other_files_is_refused_but_an_old_report_is_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(rp.ReportPathError, match=r"not an sbil report \(notes.txt\)"):
        rp.check_out_dir(tmp_path)
    old_report = tmp_path / "old"
    old_report.mkdir()
    for name in rp.REPORT_FILES:
        (old_report / name).write_text("earlier run")
    assert rp.check_out_dir(old_report) == old_report
    (old_report / "sub").mkdir()  # a folder is never part of a report: refused, not deleted
    with pytest.raises(rp.ReportPathError, match=r"not an sbil report \(sub\)"):
        rp.check_out_dir(old_report)


def test_report_write_turns_os_errors_into_report_path_errors(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(rp.ReportPathError, match="existing folder"):
        with rp.report_write(tmp_path / "taken") as path:
            sbil_files.write_text_atomic(path, "x")
    with pytest.raises(rp.ReportPathError, match="cannot write"):
        with rp.report_write(tmp_path / "f") as path:
            raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed": -1}, r"--seed must be an integer in 0\.\.4294967295"),
        ({"seed": 2**32}, r"--seed must be an integer in 0\.\.4294967295"),
        ({"seed": 1.5}, "--seed must be an integer"),
        ({"seed": True}, "--seed must be an integer"),
        ({"out": ""}, "empty"),
        ({"out": "  "}, "empty"),
        ({"out": 3}, "folder path"),
        ({"quick": "yes"}, "True or False"),
        ({"deep": 1}, "True or False"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rp.ReproduceConfig(**kwargs)
