"""CLI smoke runs of ``sbil reproduce``, as a user would type them."""

import json

import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import tabular
from sbil.experiments.reproduce import BEYOND_CLAIM_IDS, NOTE_CLAIM_IDS


@pytest.fixture
def app():
    app = typer.Typer()
    tabular.register(app)

    @app.callback()
    def _root() -> None:  # keep "reproduce" a sub-command
        pass

    return app


@pytest.mark.slow
def test_reproduce_quick_writes_report(app, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, ["reproduce", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert (out / "REPORT.md").exists()
    ids = [c["id"] for c in json.loads((out / "results.json").read_text())["claims"]]
    assert ids == list(NOTE_CLAIM_IDS) + list(BEYOND_CLAIM_IDS)
    for cid in ids:
        assert cid in result.output  # the summary table


def test_reproduce_out_is_existing_file_gives_clear_error(app, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    result = CliRunner().invoke(app, ["reproduce", "--out", str(f), "--quick"])
    assert result.exit_code == 2
    assert "existing file" in result.output
    assert "Traceback" not in result.output
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_reproduce_bad_arguments_give_one_line(app, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["reproduce", "--quick", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_reproduce_report_name_taken_by_a_folder(app, tmp_path):
    (tmp_path / "REPORT.md").mkdir()
    result = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path), "--quick"])
    assert result.exit_code == 2
    assert "REPORT.md is a folder" in result.output
    assert "Traceback" not in result.output
