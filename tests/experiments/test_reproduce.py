"""Tests for sbil.experiments.reproduce (quick run) and the report it writes."""

import json

import pytest

from sbil.experiments import reproduce as rp


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return rp.run_reproduce(rp.ReproduceConfig(out=out, quick=True))


@pytest.mark.slow
def test_quick_run_writes_report_and_results(quick_run):
    out = quick_run.out
    for name in (
        "REPORT.md",
        "results.json",
        "landing.png",
        "consistency.png",
        "limits.png",
        "consistency.csv",
        "consistency_summary.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    ids = [c["id"] for c in data["claims"]]
    assert ids[:4] == list(rp.NOTE_CLAIM_IDS)
    assert set(ids) == set(rp.NOTE_CLAIM_IDS) | set(rp.BEYOND_CLAIM_IDS)
    for c in data["claims"]:
        assert {"id", "note_value", "sbil_value", "agrees"} <= set(c)
        assert isinstance(c["agrees"], bool)
        assert c["note_value"] is None or isinstance(c["note_value"], float)
    by_id = {c["id"]: c for c in data["claims"]}
    assert by_id["theorem1"]["note_value"] == -0.2452
    assert by_id["edm_inconsistent_fraction"]["note_value"] is None
    assert data["git_commit"] and data["runtime_s"] > 0
    report = (out / "REPORT.md").read_text()
    for cid in ids:
        assert f"`{cid}`" in report
    assert "iid draws" in report
    assert by_id["bc_consistent"]["note_value"] is None  # the note gives no number


@pytest.mark.slow
def test_report_numbers_equal_results_json(quick_run):
    data = json.loads((quick_run.out / "results.json").read_text())
    report = (quick_run.out / "REPORT.md").read_text()
    rows = {}
    for line in report.split("## Summary")[1].split("## The note's claims")[0].splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {c["id"] for c in data["claims"]}
    for c in data["claims"]:
        _, note, ours, verdict = rows[c["id"]]
        assert float(ours) == pytest.approx(c["sbil_value"], rel=1e-3, abs=1e-4), c["id"]
        if c["note_value"] is None:
            assert note == "—"
        else:
            assert float(note) == pytest.approx(c["note_value"], rel=1e-3, abs=1e-4)
        assert verdict == ("agrees" if c["agrees"] else "**DISAGREES**")
    by_id = {c["id"]: c for c in data["claims"]}
    theorem1 = by_id["theorem1"]["details"]
    assert f"EDM converges to theta = {theorem1['edm_limit_theta']:.4f}" in report
    oracle = by_id["oracle_recovers_expert"]["details"]
    assert f"the first {oracle['finite_data_n_mdps']} random MDPs" in report


@pytest.mark.slow
def test_every_claim_agrees_in_quick_run(quick_run):
    by_id = {c.id: c for c in quick_run.claims}
    assert set(by_id) == set(rp.NOTE_CLAIM_IDS) | set(rp.BEYOND_CLAIM_IDS)
    for cid, claim in by_id.items():
        assert claim.agrees, cid


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


def test_report_write_turns_os_errors_into_report_path_errors(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(rp.ReportPathError, match="existing folder"):
        with rp.report_write(tmp_path / "taken") as path:
            rp.write_text_atomic(path, "x")
    with pytest.raises(rp.ReportPathError, match="cannot write"):
        with rp.report_write(tmp_path / "f") as path:
            raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed": -1}, "non-negative"),
        ({"seed": 1.5}, "non-negative integer"),
        ({"seed": True}, "non-negative integer"),
        ({"out": ""}, "empty"),
        ({"out": "  "}, "empty"),
        ({"out": 3}, "folder path"),
        ({"quick": "yes"}, "True or False"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rp.ReproduceConfig(**kwargs)
