"""Helpers shared by the ``sbil`` commands: errors and exit codes, seeds, progress bars.

Exit codes, the same for every command:

* ``0``: success.
* ``2``: a usage error: the command line itself is wrong (an unknown option, a missing
  argument, a malformed or out-of-range value, options that conflict), found before any work
  starts. typer reports its own; a command raises :class:`UsageError` for the ones it checks.
* ``1``: a failure: the command line is fine but the work could not be done (a missing or
  damaged dataset, checkpoint or file, an unwritable destination, an unknown task or expert).
  A command raises ``ValueError`` (the library's errors are ValueErrors) or ``OSError``.
* ``130``: interrupted (Ctrl-C), with one line saying so (:func:`sbil.cli.main`).

Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console

from sbil.machine import env_limit, max_workers
from sbil.progress import ProgressCallback
from sbil.seeds import MAX_SEED, check_seed_range

# soft_wrap: long paths and messages stay on one line when piped or copied.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

#: ``-h`` beside ``--help`` for ``sbil`` and every sub-command (click passes a context's
#: settings on to its sub-commands' contexts).
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

#: Exit status of a usage error, a failure and an interrupt (Ctrl-C).
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130

ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show a progress bar on stderr (default: when stderr is a terminal).",
        show_default=False,
    ),
]
ExpertsDirOption = Annotated[
    Path | None, typer.Option("--experts-dir", help="Cache of trained experts.")
]


class UsageError(ValueError):
    """The command line is wrong (exit status 2); the message names the option."""


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@dataclass(frozen=True)
class Limit:
    """The largest value a size option takes without asking, so that a typo (10**9 episodes,
    100000 worker processes) is refused before hours of work or a fork storm start. The
    environment variable ``variable`` raises it for a run that means it."""

    variable: str
    """e.g. ``SBIL_MAX_EPISODES``: set it to a larger integer to go past the limit."""
    default: int | Callable[[], int]
    """The limit, or a function of this machine giving it (e.g. its CPU count)."""
    reason: str
    """Why there is a limit, shown after it, e.g. ``"sbil's limit for episodes"``."""

    def value(self) -> int:
        """The limit in force: the environment variable's, else the default."""
        try:
            return env_limit(self.variable, self.default)
        except ValueError as error:
            raise UsageError(str(error)) from None


#: Episodes of one evaluation or collection (sweeps use 300).
MAX_EPISODES = Limit("SBIL_MAX_EPISODES", 100_000, "sbil's limit for episodes")
#: Processes of one command: 4 per CPU, at least 8 (more only share the same cores).
MAX_WORKERS = Limit(
    "SBIL_MAX_WORKERS",
    max_workers,
    "worker processes this machine allows (4 per CPU this process may use, at least 8; "
    "more only share the same cores)",
)
#: Adam updates of one training run (the EDM paper's runs use 10000).
MAX_UPDATES = Limit("SBIL_MAX_UPDATES", 1_000_000, "sbil's limit for training updates")
#: Environments one evaluation steps together (each is an environment object in memory).
MAX_ENVS = Limit("SBIL_MAX_ENVS", 1024, "sbil's limit for environments stepped together")
#: Random MDPs of one tabular study (the studies use 200; 10000 take hours).
MAX_MDPS = Limit("SBIL_MAX_MDPS", 10_000, "sbil's limit for random MDPs")


def require(option: str, value: int, minimum: int, *, limit: Limit | None = None) -> None:
    """Check a count option before the library sees it, so the message names the option.

    Args:
        option: the option's name, e.g. ``"--episodes"``.
        value: the value given.
        minimum: the smallest value allowed.
        limit: the largest value allowed without setting the limit's environment variable.

    Raises:
        UsageError: if ``value < minimum``, or past ``limit`` (saying how to go past it).
    """
    if value < minimum:
        raise UsageError(f"{option} must be at least {minimum}, got {value}.")
    if limit is not None and value > (most := limit.value()):
        what = (
            f"the {most} {limit.reason}" if callable(limit.default) else (f"{most}, {limit.reason}")
        )
        raise UsageError(
            f"{option} {value} is more than {what}; pass at most {most}, or set "
            f"{limit.variable}={value} to go past it on purpose."
        )


def check_seed(option: str, seed: int, count: int = 1, *, unit: str = "episodes") -> int:
    """Check ``seed`` and the ``count`` seeds derived from it (``seed .. seed + count - 1``)
    against sbil's one seed rule (:mod:`sbil.seeds`: all in ``0 .. 2**32 - 1``).

    Args:
        option: the option's name for the message, e.g. ``"--seed"``.
        seed: the value given.
        count: how many consecutive seeds the command derives from it (e.g. ``--episodes``).
        unit: what those seeds seed, for the message.

    Raises:
        UsageError: naming the option, the seed out of range and the largest allowed value.
    """
    try:
        return check_seed_range(seed, count, name=option, unit=unit)
    except ValueError as error:
        raise UsageError(str(error)) from None


#: The most seeds one option may name (a learner per seed; more is a typo, e.g. 0-999999999).
MAX_SEED_COUNT = 10_000


def parse_seeds(
    text: str, option: str = "--seeds", *, max_count: int = MAX_SEED_COUNT
) -> list[int]:
    """Parse distinct seeds like ``"0,1,2"``, ``"0-9"`` or ``"0-9,12"`` (ranges inclusive).

    The work is linear in the number of seeds (repeats are found by sorting the ranges, not by
    comparing every pair), and an absurd count is refused before any list is built.

    Args:
        text: comma-separated seeds and ``low-high`` ranges, in the order they are wanted.
        option: the option's name for messages.
        max_count: the most seeds allowed.

    Returns:
        The seeds in the order given, each in ``0 .. 2**32 - 1``.

    Raises:
        UsageError: for malformed text, an empty or reversed range, a seed out of range, a
            seed named twice, or more than ``max_count`` seeds (each message names ``option``).

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    malformed = (
        f"{option} must be comma-separated seeds or ranges like 0,1,2 or 0-9 or 0-9,12, "
        f"got {text!r}."
    )
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low_text, dash, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise UsageError(malformed) from None
        if low > high:
            raise UsageError(
                f"{option}: the range {part} is empty; write LOW-HIGH with LOW <= HIGH."
            )
        for value in (low, high):
            if value > MAX_SEED:
                raise UsageError(
                    f"{option}: seed {value} is past the largest seed {MAX_SEED} (2**32 - 1); "
                    f"seeds must lie in 0..{MAX_SEED}."
                )
        ranges.append((low, high))
    if not ranges:
        raise UsageError(f"{option} must name at least one seed, got {text!r}.")
    count = sum(high - low + 1 for low, high in ranges)
    if count > max_count:
        raise UsageError(
            f"{option} {text!r} names {count} seeds, more than the {max_count} allowed "
            "(one learner per seed); name fewer seeds."
        )
    # Sorted by their first seed, two ranges share a seed only if two neighbours do.
    ordered = sorted(ranges)
    for (_, high_a), (low_b, _) in itertools.pairwise(ordered):
        if low_b <= high_a:
            raise UsageError(
                f"{option} {text!r} names seed {low_b} more than once; equal seeds train "
                "identical learners, so give distinct seeds."
            )
    return [seed for low, high in ranges for seed in range(low, high + 1)]


@contextlib.contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn the library's clear errors into one red line and the exit status of its kind.

    :class:`UsageError` exits with 2; other ``ValueError``, ``ImportError``, ``OSError`` and
    :class:`sbil.files.LockHeldError` with 1. A missing optional dependency
    (``ModuleNotFoundError``) and Ctrl-C pass through to :func:`sbil.cli.main`, which names
    the extra to install or reports the interrupt (exit 130).
    """
    from sbil.files import LockHeldError

    try:
        yield
    except ModuleNotFoundError:
        raise  # a missing optional dependency: sbil.cli.main names the extra to install
    except (ValueError, ImportError, OSError, LockHeldError) as error:
        code = EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILURE
        print_error(_describe(error))
        raise typer.Exit(code=code) from None


_interrupt_reported = False


def exit_interrupted(detail: str | None = None) -> None:
    """Report Ctrl-C in one line (with ``detail``, e.g. where a checkpoint was saved) and exit
    with status 130. A command that lets ``KeyboardInterrupt`` propagate gets the plain line
    from :func:`sbil.cli.main`; call this only to say more, so the line is printed once."""
    global _interrupt_reported
    _interrupt_reported = True
    suffix = f"; {detail}" if detail else ""
    err_console.print(f"Interrupted (Ctrl-C){suffix}.", markup=False, highlight=False)
    raise typer.Exit(code=EXIT_INTERRUPTED)


def interrupt_reported() -> bool:
    """Whether :func:`exit_interrupted` has already said that the command was interrupted."""
    return _interrupt_reported


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}."
    return str(error)


def print_error(message: str) -> None:
    """Print ``Error: message`` as one red line on stderr."""
    from rich.markup import escape

    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)


@contextlib.contextmanager
def progress_bar(enabled: bool | None, description: str) -> Iterator[ProgressCallback | None]:
    """Yield a ``progress(done, total)`` callback that reports progress on stderr.

    On a terminal (or with ``enabled=True``) it draws a rich bar with the elapsed time and an
    ETA measured from the start. Without a terminal and no flag given (``enabled=None``), e.g.
    in a log file, it prints a one-line message every 10% of the work or every 60 s, whichever
    comes first, so a long run is never silent. ``enabled=False`` prints nothing.
    """
    if enabled is False:
        yield None
        return
    if enabled is None and not stderr_is_terminal():
        yield _progress_lines(description)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "{task.fields[eta]}",
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None, eta="")
        started = time.monotonic()

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, eta=_eta(started, done, total))

        yield update


def _eta(started: float, done: int, total: int) -> str:
    """``"ETA 1:23"`` from the average speed since ``started`` (empty before any progress)."""
    if done <= 0 or total <= done:
        return ""
    left = (time.monotonic() - started) * (total - done) / done
    return f"ETA {int(left // 60)}:{int(left % 60):02d}"


def _progress_lines(description: str) -> ProgressCallback:
    """A callback printing ``description: done/total (p%), elapsed, ETA`` on stderr at each
    10% of the work once, every 60 s without one, and once at the end (the same lines as a
    run's log, :func:`sbil.experiments.run_log.progress_lines`)."""
    from sbil.experiments.run_log import progress_lines

    def write(line: str) -> None:
        err_console.print(line, markup=False, highlight=False)

    return progress_lines(description, write)


# --- help rendering ---------------------------------------------------------------------------


def _hide_flag_types(params: list[Any]) -> list[Any]:
    # typer's rich help prints a "<bool>" type beside every flag (--help included), where a
    # flag takes no value; an empty metavar leaves that column blank.
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
        elif getattr(param, "param_type_name", None) == "argument":
            _plain_argument(param)
    return params


def _plain_argument(param: Any) -> None:
    """Show a positional argument as ``NAME`` (``[NAME]`` when optional) in the usage line and
    the arguments panel, as man pages do, instead of typer's ``{name}`` and a ``<path>`` type
    beside a name that already says what it is."""
    if param.metavar is None:
        param.metavar = param.name.upper()
    name = param.metavar if param.required else f"[{param.metavar}]"
    if param.nargs != 1:
        name += "..."
    # Instance attributes: this argument only, whichever typer version built it.
    param.get_usage_pieces = lambda ctx: [name]
    param.display_type_rich = lambda ctx: None


# The click exception typer reports for a bad command line (typer >= 0.20 ships its own copy
# of click, older typer uses click's): found from typer's public BadParameter, so either works.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


@contextlib.contextmanager
def _click_errors_in_one_line(command_path: str | None = None) -> Iterator[None]:
    """Print typer's own usage errors (an unknown option, a missing argument, a value that is
    not an integer) as one line like every other sbil error, instead of rich's five-line box,
    and exit with their status (2 for usage errors). ``command_path`` names the command for
    the help hint when the error carries no context (e.g. an option missing its value)."""
    try:
        yield
    except _ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            raise  # `sbil` alone: the help was printed already, typer exits with 2
        message = " ".join(error.format_message().split())  # one line whatever click wrote
        if message and message[-1] not in ".?!":
            message += "."
        ctx = getattr(error, "ctx", None)
        path = ctx.command_path if ctx is not None else command_path
        if path:
            message += f" Try '{path} --help' for help."
        print_error(message)
        raise typer.Exit(code=error.exit_code) from None


def _command_path(info_name: str | None, parent: Any) -> str | None:
    if parent is None:
        return info_name
    return f"{parent.command_path} {info_name}" if info_name else parent.command_path


class Command(typer.core.TyperCommand):
    """A typer command whose help shows no value type for flags and whose usage errors are
    one line (:func:`_click_errors_in_one_line`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        with _click_errors_in_one_line(_command_path(info_name, parent)):
            return super().make_context(info_name, args, parent=parent, **extra)


class Group(typer.core.TyperGroup):
    """A typer command group whose help shows no value type for flags and whose usage errors,
    its sub-commands' included, are one line (:func:`_click_errors_in_one_line`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        with _click_errors_in_one_line(_command_path(info_name, parent)):
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _click_errors_in_one_line(ctx.command_path):  # resolving the sub-command
            return super().invoke(ctx)


def use_plain_flag_help(app: typer.Typer) -> None:
    """Make every command and sub-group of ``app`` render flags without ``<bool>``."""
    for info in app.registered_commands:
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = Command
    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is not None:
            if isinstance(sub.info.cls, typer.models.DefaultPlaceholder) or sub.info.cls in (
                None,
                typer.core.TyperGroup,
            ):
                sub.info.cls = Group
            use_plain_flag_help(sub)
