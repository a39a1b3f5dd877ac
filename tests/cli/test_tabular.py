"""CLI smoke runs of ``sbil reproduce``, as a user would type them."""

import json

import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import tabular


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
    ids = {c["id"] for c in json.loads((out / "results.json").read_text())["claims"]}
    assert {"example1", "example2", "example3", "theorem1"} <= ids
    assert "theorem1" in result.output  # the summary table


def test_reproduce_out_is_existing_file_gives_clear_error(app, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    result = CliRunner().invoke(app, ["reproduce", "--out", str(f), "--quick"])
    assert result.exit_code == 2
    assert "existing file" in result.output
    assert "Traceback" not in result.output
    assert f.read_text() == "not a folder"
