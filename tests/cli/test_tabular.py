"""CLI smoke runs of ``sbil reproduce``, as a user would type them."""

import json
import sys

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
    assert "approximately -0.245" in result.output  # the note's value as the note prints it


def test_plain_reproduce_does_not_import_torch(tmp_path):
    """Plain `sbil reproduce` stays tabular: run up to its first stage, torch never loaded."""
    import subprocess

    code = (
        "import sys\n"
        "from sbil.experiments import reproduce as rp\n"
        "class Stop(Exception): pass\n"
        "def stop(*a, **k): raise Stop\n"
        "rp.run_consistency = stop\n"
        "from sbil.cli import tabular\n"
        "try:\n"
        f"    rp.run_reproduce(rp.ReproduceConfig(out={str(tmp_path / 'r')!r}, quick=True))\n"
        "except Stop:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'gymnasium' not in sys.modules, 'gymnasium imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--out", "FILE"], "existing file"),
        (["--out", "DIR_WITH_REPORT_MD_FOLDER"], "REPORT.md is a folder"),
        (["--out", "DIR_WITH_OTHER_FILES"], "not an sbil report (mine.txt)"),
    ],
)
def test_reproduce_unusable_out_is_a_failure_exit_1(app, tmp_path, args, message):
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "DIR_WITH_REPORT_MD_FOLDER" / "REPORT.md").mkdir(parents=True)
    (tmp_path / "DIR_WITH_OTHER_FILES").mkdir()
    (tmp_path / "DIR_WITH_OTHER_FILES" / "mine.txt").write_text("keep me")
    args = [a if a.startswith("--") else str(tmp_path / a) for a in args]
    result = CliRunner().invoke(app, ["reproduce", "--quick", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "FILE").read_text() == "not a folder"
    assert (tmp_path / "DIR_WITH_OTHER_FILES" / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seed", "-1"], "--seed must be an integer in 0..4294967295"),
        (["--seed", "4294967296"], "--seed must be an integer in 0..4294967295"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_reproduce_bad_arguments_are_usage_errors_exit_2(app, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["reproduce", "--quick", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_reproduce_deep_without_the_deep_studies_is_one_line_exit_1(app, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sbil.experiments.deep_critique", None)
    result = CliRunner().invoke(
        app, ["reproduce", "--quick", "--deep", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert "--deep needs sbil.experiments.deep_critique" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_reproduce_interrupted_is_130_with_one_line(tmp_path, monkeypatch, capsys):
    from sbil.cli import _common, main
    from sbil.experiments import reproduce as rp

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "r"
    monkeypatch.setattr(rp, "run_consistency", interrupt)
    monkeypatch.setattr(_common, "_interrupt_reported", False)
    monkeypatch.setattr(sys, "argv", ["sbil", "reproduce", "--quick", "--out", str(out)])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "Interrupted (Ctrl-C)."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging folder left
    assert list(out.iterdir()) == []


def test_consistency_command_writes_the_learner_study(app, tmp_path):
    out = tmp_path / "lc"
    result = CliRunner().invoke(app, ["consistency", "--n-mdps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    readme = (out / "README.md").read_text()
    assert "valuedice" in readme and "iqlearn" in readme and "avril" in readme
    assert "iqlearn-shared" in result.output and "inconsistent" in result.output
    bad = CliRunner().invoke(app, ["consistency", "--workers", "0", "--out", str(out)])
    assert bad.exit_code == 2 and "--workers" in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "100000"], "--workers 100000 is more than the "),
        (["--n-mdps", "1000000000"], "--n-mdps 1000000000 is more than 10000"),
        (["--n-mdps", "0"], "--n-mdps must be at least 1"),
    ],
)
def test_consistency_sizes_are_bounded_before_any_work(app, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("SBIL_MAX_WORKERS", raising=False)
    monkeypatch.delenv("SBIL_MAX_MDPS", raising=False)
    result = CliRunner().invoke(app, ["consistency", *args, "--out", str(tmp_path / "lc")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("out", "code", "message"),
    [
        ("", 2, "--out is empty"),
        ("FILE", 1, "is an existing file"),
        ("MINE", 1, "holds files that are not a learner consistency study (notes.txt)"),
    ],
)
def test_consistency_refuses_its_out_before_any_work(
    app, tmp_path, monkeypatch, out, code, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "MINE").mkdir()
    (tmp_path / "MINE" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["consistency", "--n-mdps", "2", "--out", out])
    assert result.exit_code == code, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "MINE"]
    assert [p.name for p in (tmp_path / "MINE").iterdir()] == ["notes.txt"]
