"""The ``sbil`` command line: thin commands that parse, call one function and print.

Commands live in one module per area (``tabular``: ``reproduce``; ``deep``: ``collect``,
``expert``, ``evaluate``; ``train``: ``train``); each imports its heavy dependencies inside
the command so that ``sbil --help`` stays fast and works without torch installed.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sbil",
    help="Strictly batch imitation learning: exact tabular analysis and deep BC/EDM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from sbil.cli import deep, tabular, train

    tabular.register(app)
    deep.register(app)
    train.register(app)


# Optional dependencies, by top-level module, and the extra of sbil that installs them.
_EXTRAS = {
    "torch": "deep",
    "gymnasium": "deep",
    "Box2D": "deep",
    "minari": "deep",
    "h5py": "deep",
    "stable_baselines3": "experts",
}


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

    _register()
    # The shell expands `--out ~/x` but not `--out=~/x`; expand the latter the same way.
    sys.argv[1:] = [_expand_tilde_after_equals(arg) for arg in sys.argv[1:]]
    try:
        app()
    except ModuleNotFoundError as error:
        extra = _EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"Error: this command needs {error.name}, which comes with sbil's '{extra}' extra; "
            f'install it with `pip install torch==2.13.0 -e ".[{extra}]"` in a checkout '
            f'(or `pip install "sbil[{extra}]"`).',
            file=sys.stderr,
        )
        raise SystemExit(1) from None
