"""The assembled ``sbil`` app: every command registers and its help renders as written."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from sbil.cli import _expand_tilde_after_equals, _register, app

runner = CliRunner()


def _commands() -> dict:
    _register()
    group = typer.main.get_command(app)
    out = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a sub-group such as `sbil expert`
            out.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            out[name] = command
    return out


def test_every_command_is_registered():
    assert {"reproduce", "collect", "train", "evaluate", "expert list"} <= set(_commands())


def test_help_texts_have_no_rich_markup_that_would_be_swallowed():
    # Rich renders "[default: x]" inside a help string as a markup tag and drops it.
    for name, command in _commands().items():
        for param in command.params:
            text = getattr(param, "help", None) or ""
            assert "[" not in text, f"`sbil {name}` option {param.name}: {text!r}"


def test_dataset_default_is_shown_in_collect_help():
    _register()
    result = runner.invoke(app, ["collect", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "default: sbil/<task>/<expert>-v0" in result.output


def test_sbil_help_does_not_import_torch():
    code = (
        "import sys; from sbil.cli import _register, app; _register(); "
        "from typer.testing import CliRunner; r = CliRunner().invoke(app, ['--help']); "
        "assert r.exit_code == 0, r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("missing", "argv"),
    [
        ("gymnasium", ["collect", "--env", "CartPole-v1", "--episodes", "1"]),
        ("torch", ["train", "--data", "x.npz", "--out", "unused"]),
        ("torch", ["evaluate", "checkpoint"]),
    ],
)
def test_a_command_without_its_optional_dependency_says_which_extra_to_install(
    missing, argv, tmp_path
):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "learner.json").write_text("{}")
    # Simulate a core-only install: importing the module fails inside the command.
    code = (
        f"import sys; sys.modules[{missing!r}] = None; sys.argv = ['sbil', *{argv!r}]; "
        "from sbil.cli import main; main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert f"needs {missing}" in out.stderr and "'deep' extra" in out.stderr
    assert "Traceback" not in out.stderr


def test_tilde_after_equals_is_expanded_like_the_shell_would(monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    assert _expand_tilde_after_equals("--out=~/runs") == "--out=/home/me/runs"
    assert _expand_tilde_after_equals("--out=~") == "--out=/home/me"
    for unchanged in ("--out=a~b", "~/x", "-o=~/x", "--seeds=0-4", "--out=~other/x"):
        assert _expand_tilde_after_equals(unchanged) == unchanged


def test_no_help_shows_a_bool_type_for_flags():
    for name in ["", *_commands()]:
        result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (name, result.output)
        assert "<bool>" not in result.output, name


def test_an_interrupt_while_loading_a_command_is_130_with_one_line(monkeypatch, capsys):
    import sbil.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(sbil.cli, "_register", interrupted)
    monkeypatch.setattr(sys, "argv", ["sbil", "expert", "list"])
    with pytest.raises(SystemExit) as exit:
        sbil.cli.main()
    assert exit.value.code == 130
    assert capsys.readouterr().err.strip() == "Interrupted (Ctrl-C)."
