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


@pytest.mark.parametrize(
    ("argv", "message", "command"),
    [
        (["bogus"], "No such command 'bogus'.", "sbil"),
        (["consistency", "--workers", "many"], "Invalid value for '--workers'", "sbil consistency"),
        (["consistency", "--wrkers", "2"], "No such option: --wrkers", "sbil consistency"),
        (["sweep", "report"], "Missing argument", "sbil sweep report"),
        (["sweep", "--workers", "x"], "Invalid value for '--workers'", "sbil sweep"),
        (["evaluate", "a", "--episodes", "1e9"], "Invalid value for '--episodes'", "sbil evaluate"),
        (["expert", "list", "--bad"], "No such option: --bad", "sbil expert list"),
        (["train", "--out"], "Option '--out' requires an argument", "sbil train"),
    ],
)
def test_usage_errors_are_one_line_with_exit_status_2(argv, message, command):
    _register()
    result = runner.invoke(app, argv, env={"COLUMNS": "80"})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {message}"), lines[0]
    assert lines[0].endswith(f" Try '{command} --help' for help."), lines[0]


def test_help_and_no_arguments_still_show_the_help():
    _register()
    for argv in ([], ["--help"], ["sweep", "report", "--help"]):
        result = runner.invoke(app, argv, env={"COLUMNS": "100"})
        assert result.exit_code == (2 if not argv else 0), (argv, result.output)
        assert "Usage:" in result.output and "Error" not in result.output


def test_the_console_script_prints_a_usage_error_in_one_line():
    code = "import sys; sys.argv = ['sbil', 'consistency', '--workers', 'x']; "
    code += "from sbil.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and not out.stdout
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("Error: Invalid value for '--workers': ")
    assert line.endswith(" Try 'sbil consistency --help' for help.")


def test_dash_h_shows_the_help_like_dash_dash_help_for_every_command():
    for name in ["", *_commands()]:
        argv = name.split()
        short = runner.invoke(app, [*argv, "-h"], env={"COLUMNS": "200"})
        long = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": "200"})
        assert short.exit_code == 0, (name, short.output)
        assert short.output == long.output, name
        assert "Usage:" in short.output


def test_version_prints_the_installed_version_and_exits_0():
    from importlib.metadata import version

    _register()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"sbil {version('sbil')}"


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("sweep report", "sbil sweep report [OPTIONS] SWEEP_DIR"),
        ("evaluate", "sbil evaluate [OPTIONS] [RUN_OR_CHECKPOINT]"),
        ("plot", "sbil plot [OPTIONS] RUN_DIR"),
        ("export", "sbil export [OPTIONS] RUN_DIR"),
        ("expert eval", "sbil expert eval [OPTIONS] ENV"),
        ("expert train", "sbil expert train [OPTIONS] ENV"),
    ],
)
def test_positional_arguments_are_shown_by_their_metavar(command, usage):
    _register()
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: {usage}" in result.output
    metavar = usage.split()[-1].strip("[]")
    lines = result.output.splitlines()
    panel = lines[lines.index(next(line for line in lines if "Arguments" in line)) + 1]
    assert metavar in panel, panel
    assert "<path>" not in panel and "<str>" not in panel, panel


def test_a_missing_argument_is_named_by_its_metavar():
    _register()
    result = runner.invoke(app, ["expert", "eval"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "Missing argument 'ENV'." in result.stderr


def _main_output(code: str, tmp_path) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and not out.stdout
    (line,) = out.stderr.strip().splitlines()
    return line


def test_a_missing_core_dependency_is_one_line_saying_to_reinstall_sbil(tmp_path):
    # scipy is one of sbil's own dependencies, imported by `sbil consistency`'s study.
    code = (
        "import sys; sys.modules['scipy'] = None; "
        "sys.argv = ['sbil', 'consistency', '--n-mdps', '1', '--out', 'study']; "
        "from sbil.cli import main; main()"
    )
    line = _main_output(code, tmp_path)
    assert line.startswith("Error: this command needs scipy")  # or a module of it
    assert "one of sbil's own dependencies, which is not installed; reinstall sbil" in line
    assert "`pip install -e .` in a checkout" in line


def test_a_missing_module_of_an_extras_package_names_the_module_and_the_extra(monkeypatch, capsys):
    import sbil.cli

    # A module of gymnasium (the 'deep' extra) imports a module that is not installed.
    scope = {"__name__": "gymnasium.envs.fake"}
    exec("def load():\n    import not_installed_xyz  # noqa: F401\n", scope)
    monkeypatch.setattr(sbil.cli, "_register", scope["load"])
    monkeypatch.setattr(sys, "argv", ["sbil", "expert", "list"])
    with pytest.raises(SystemExit) as exit:
        sbil.cli.main()
    assert exit.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "Error: this command needs not_installed_xyz (imported by gymnasium.envs.fake, of "
        "sbil's 'deep' extra), which is not installed; install it with "
        "`pip install not_installed_xyz`"
    ), line
    assert 'pip install torch==2.13.0 -e ".[deep]"' in line


def test_a_missing_module_of_no_known_package_is_still_one_line(monkeypatch, capsys):
    import sbil.cli

    def load():
        raise ModuleNotFoundError("No module named 'somewhere'", name="somewhere")

    monkeypatch.setattr(sbil.cli, "_register", load)
    monkeypatch.setattr(sys, "argv", ["sbil", "expert", "list"])
    with pytest.raises(SystemExit) as exit:
        sbil.cli.main()
    assert exit.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("Error: this command needs somewhere (imported by ")
    assert "`pip install somewhere`" in line


def test_every_command_summary_is_one_line_in_the_command_list():
    for name, command in _commands().items():
        summary = command.help.split("\n\n")[0] if command.help else ""
        assert "\n" not in summary.strip(), f"`sbil {name}`: {summary!r}"


def test_shell_completion_completes_commands_and_options():
    """typer's completion (``sbil --install-completion``): the installed script asks sbil."""
    from pathlib import Path

    sbil = Path(sys.executable).parent / "sbil"
    if not sbil.exists():
        pytest.skip("the sbil entry point is not installed beside this python")

    def complete(words: str) -> list[str]:
        env = {
            "_SBIL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        import os

        out = subprocess.run(
            [str(sbil)], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
        )
        return out.stdout.split()

    assert complete("sbil sw") == ["sweep"]
    assert "--workers" in complete("sbil sweep --wor")
    shown = runner.invoke(app, ["--help"]).output
    assert "--install-completion" in shown and "--show-completion" in shown
