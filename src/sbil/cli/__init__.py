"""The ``sbil`` command line: thin commands that parse, call one function and print.

Commands live in one module per area (``tabular``: ``reproduce``; ``deep``: ``collect``,
``expert``, ``evaluate``; ``train``: ``train``); each imports its heavy dependencies inside
the command so that ``sbil --help`` stays fast and works without torch installed.

Exit codes (the rule is in :mod:`sbil.cli._common`): 0 success, 1 failure, 2 usage error,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from typing import Annotated

import typer

from sbil.cli._common import (
    EXIT_INTERRUPTED,
    HELP_OPTIONS,
    Group,
    interrupt_reported,
    use_plain_flag_help,
)

app = typer.Typer(
    name="sbil",
    help="Strictly batch imitation learning: exact tabular analysis and deep offline learners "
    "(BC, EDM, ValueDICE, RCAL, IQ-Learn, AVRIL).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    pretty_exceptions_enable=False,
    cls=Group,
    context_settings=HELP_OPTIONS,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sbil")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "unknown (not installed; pip install -e . in the checkout)"


def _print_version(value: bool) -> None:
    if value:
        print(f"sbil {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print sbil's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    # The group's own options (--version); its help text is the app's help= above.
    pass


def _register() -> None:
    from sbil.cli import deep, export, plot, select, sweep, tabular, train

    if app.registered_commands:  # already registered (tests call this more than once)
        return
    tabular.register(app)
    deep.register(app)
    train.register(app)
    sweep.register(app)
    select.register(app)
    plot.register(app)
    export.register(app)
    use_plain_flag_help(app)


# Optional dependencies, by top-level module, and the extra of sbil that installs them.
_EXTRAS = {
    "torch": "deep",
    "gymnasium": "deep",
    "Box2D": "deep",
    "minari": "deep",
    "h5py": "deep",
    "stable_baselines3": "experts",
    "ray": "ray",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "tensorboard": "tensorboard",
    "moviepy": "video",
}
# sbil's own dependencies (pyproject's [project] dependencies), by top-level module.
_CORE = ("numpy", "scipy", "threadpoolctl", "matplotlib", "pandas", "typer", "rich", "tomli")


def _install(extra: str | None) -> str:
    """The command that installs sbil with ``extra`` (torch first for the deep extra)."""
    if extra is None:
        return "`pip install -e .` in a checkout (or `pip install sbil`)"
    torch = "torch==2.13.0 " if extra == "deep" else ""
    return f'`pip install {torch}-e ".[{extra}]"` in a checkout (or `pip install "sbil[{extra}]"`)'


def _importer(error: ModuleNotFoundError) -> str | None:
    """The module whose ``import`` statement failed: the innermost frame of the traceback
    outside importlib's machinery (None when there is no traceback)."""
    import traceback

    name = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("importlib"):
            name = module
    return name


def _missing_module(error: ModuleNotFoundError) -> str:
    """One line naming the missing module and the command that installs it."""
    name = error.name or str(error)
    top = name.split(".")[0]
    if top in _EXTRAS:
        extra = _EXTRAS[top]
        return (
            f"this command needs {name}, which comes with sbil's '{extra}' extra; install it "
            f"with {_install(extra)}."
        )
    if top == "sbil":
        return (
            f"sbil's own module {name} is missing, so this installation is broken; reinstall "
            f"with {_install(None)}."
        )
    if top in _CORE:
        return (
            f"this command needs {name}, one of sbil's own dependencies, which is not "
            f"installed; reinstall sbil with {_install(None)}."
        )
    importer = _importer(error) or ""
    user = importer.split(".")[0]
    if user in _EXTRAS:  # a dependency of an extra's package, e.g. of gymnasium
        extra = _EXTRAS[user]
        return (
            f"this command needs {name} (imported by {importer}, of sbil's '{extra}' extra), "
            f"which is not installed; install it with `pip install {top}`, or reinstall the "
            f"extra with {_install(extra)}."
        )
    where = f" (imported by {importer})" if importer else ""
    return (
        f"this command needs {name}{where}, which is not installed; install it with "
        f"`pip install {top}`, or reinstall sbil and the extra the command needs, e.g. "
        f"{_install('deep')}."
    )


def _expand_tilde_after_equals(arg: str) -> str:
    """``--opt=~/x`` -> ``--opt=/home/me/x``; every other argument unchanged."""
    import os

    option, sep, value = arg.partition("=")
    if sep and option.startswith("--") and (value == "~" or value.startswith("~/")):
        return f"{option}={os.path.expanduser(value)}"
    return arg


def main() -> None:
    """Entry point of the ``sbil`` console script."""
    import sys

    # The shell expands `--out ~/x` but not `--out=~/x`; expand the latter the same way.
    sys.argv[1:] = [_expand_tilde_after_equals(arg) for arg in sys.argv[1:]]
    try:
        _register()
        app()
    except KeyboardInterrupt:  # while importing, before typer runs the command
        _interrupted()
    except SystemExit as exit:
        # typer turns Ctrl-C inside a command into exit status 130, silently; no other path
        # exits with 130 (see sbil.cli._common), so say what happened here, once.
        if exit.code == EXIT_INTERRUPTED and not interrupt_reported():
            _interrupted()
        raise
    except ModuleNotFoundError as error:  # a missing dependency: one line saying what to install
        print(f"Error: {_missing_module(error)}", file=sys.stderr)
        raise SystemExit(1) from None


def _interrupted() -> None:
    import sys

    print("Interrupted (Ctrl-C).", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None
