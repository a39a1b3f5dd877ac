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


@pytest.mark.slow
def test_note_claims_agree_in_quick_run(quick_run):
    by_id = {c.id: c for c in quick_run.claims}
    for cid in rp.NOTE_CLAIM_IDS:
        assert by_id[cid].agrees, cid


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(rp.ReportPathError, match="existing file"):
        rp.check_out_dir(f)
