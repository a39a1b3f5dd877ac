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


def main() -> None:
    """Entry point of the ``sbil`` console script."""
    _register()
    app()
