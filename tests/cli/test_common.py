"""Tests for sbil.cli._common: the seed rule, seed lists, exit codes and help rendering."""

from __future__ import annotations

import time
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import _common
from sbil.cli._common import (
    MAX_SEED_COUNT,
    UsageError,
    check_seed,
    errors_as_messages,
    parse_seeds,
    require,
)
from sbil.seeds import MAX_SEED


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("0", [0]),
        ("0,1,2", [0, 1, 2]),
        ("0-4", [0, 1, 2, 3, 4]),
        ("0-9,12", [*range(10), 12]),
        (" 5 , 3-4 ,", [5, 3, 4]),  # order kept, blanks ignored
        (f"{MAX_SEED}", [MAX_SEED]),
        (f"{MAX_SEED - 1}-{MAX_SEED}", [MAX_SEED - 1, MAX_SEED]),
    ],
)
def test_parse_seeds_reads_lists_and_ranges(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b", "--seeds must be comma-separated seeds or ranges"),
        ("1.5", "--seeds must be comma-separated"),
        ("-1", "--seeds must be comma-separated"),
        ("", "--seeds must name at least one seed"),
        (",", "--seeds must name at least one seed"),
        ("5-3", "--seeds: the range 5-3 is empty"),
        ("0-4,3", "names seed 3 more than once"),
        ("0-9,5-6", "names seed 5 more than once"),
        ("2,2", "names seed 2 more than once"),
        (f"{MAX_SEED + 1}", "past the largest seed 4294967295"),
        ("99999999999999999999", "past the largest seed"),
        ("0-999999999", "names 1000000000 seeds, more than the 10000 allowed"),
    ],
)
def test_parse_seeds_refuses_bad_lists_with_a_usage_error(text, message):
    with pytest.raises(UsageError, match=message):
        parse_seeds(text)


def test_parse_seeds_names_the_option_and_takes_a_limit():
    with pytest.raises(UsageError, match="--eval-seeds must name"):
        parse_seeds("", "--eval-seeds")
    assert len(parse_seeds(f"0-{MAX_SEED_COUNT - 1}")) == MAX_SEED_COUNT
    with pytest.raises(UsageError, match="more than the 3 allowed"):
        parse_seeds("0-3", max_count=3)


def test_parse_seeds_is_linear_not_quadratic():
    started = time.perf_counter()
    assert len(parse_seeds("0-9999")) == 10_000
    # Many single seeds: the repeat check sorts ranges instead of comparing every pair.
    text = ",".join(str(s) for s in range(10_000))
    assert len(parse_seeds(text)) == 10_000
    started_refusal = time.perf_counter()
    with pytest.raises(UsageError):
        parse_seeds("0-999999999999")  # refused from the count, no list is built
    assert time.perf_counter() - started_refusal < 0.1
    assert time.perf_counter() - started < 2.0  # quadratic: ~10^8 comparisons, minutes


@pytest.mark.parametrize(
    ("seed", "count", "message"),
    [
        (-1, 1, r"--seed must be an integer in 0..4294967295 \(2\*\*32 - 1\), got -1"),
        (99999999999999999999, 1, "got 99999999999999999999"),
        (2**63 - 1, 2, "got 9223372036854775807"),
        (MAX_SEED, 2, r"--seed 4294967295 with 2 episodes uses seeds up to 4294967296"),
        (MAX_SEED - 5, 10, "--seed must be at most 4294967286"),
    ],
)
def test_check_seed_applies_the_one_rule_to_derived_seeds_too(seed, count, message):
    with pytest.raises(UsageError, match=message):
        check_seed("--seed", seed, count)


def test_check_seed_accepts_the_range():
    assert check_seed("--seed", 0) == 0
    assert check_seed("--seed", MAX_SEED) == MAX_SEED
    assert check_seed("--seed", MAX_SEED - 9, 10) == MAX_SEED - 9


def test_require_is_a_usage_error():
    require("--episodes", 1, 1)
    with pytest.raises(UsageError, match="--episodes must be at least 1, got 0"):
        require("--episodes", 0, 1)


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (UsageError("--x must be at least 1, got 0."), 2, "Error: --x must be at least 1, got 0."),
        (ValueError("No dataset."), 1, "Error: No dataset."),
        (FileNotFoundError(2, "No such file or directory", "/a/b"), 1, "No such file or"),
        (OSError(28, "No space left on device", "/a/b"), 1, "No space left on device: /a/b."),
    ],
)
def test_errors_become_one_line_and_the_exit_code_of_their_kind(capsys, error, code, line):
    with pytest.raises(typer.Exit) as exit, errors_as_messages():
        raise error
    assert exit.value.exit_code == code
    err = capsys.readouterr().err
    assert line in err and len(err.strip().splitlines()) == 1


def test_lock_conflicts_are_failures(capsys):
    from sbil.files import LockHeldError

    with pytest.raises(typer.Exit) as exit, errors_as_messages():
        raise LockHeldError("x is in use by process 1 on h.", "process 1 on h")
    assert exit.value.exit_code == 1


def test_missing_extras_and_interrupts_pass_through_to_main():
    with pytest.raises(ModuleNotFoundError), errors_as_messages():
        raise ModuleNotFoundError("no torch", name="torch")
    with pytest.raises(KeyboardInterrupt), errors_as_messages():
        raise KeyboardInterrupt


def test_exit_interrupted_says_so_once_with_status_130(capsys, monkeypatch):
    monkeypatch.setattr(_common, "_interrupt_reported", False)
    with pytest.raises(typer.Exit) as exit:
        _common.exit_interrupted("checkpoint saved in runs/a; resume with --resume")
    assert exit.value.exit_code == 130 and _common.interrupt_reported()
    assert capsys.readouterr().err.strip() == (
        "Interrupted (Ctrl-C); checkpoint saved in runs/a; resume with --resume."
    )


def test_flags_render_without_a_bool_type_in_help():
    app = typer.Typer(add_completion=False)

    @app.command()
    def go(
        quick: Annotated[bool, typer.Option("--quick/--slow", help="Be quick.")] = False,
        n: int = 1,
    ) -> None:
        """Go."""

    @app.command()
    def stay() -> None:
        """Stay."""

    _common.use_plain_flag_help(app)
    out = CliRunner().invoke(app, ["go", "--help"], env={"COLUMNS": "120"}).output
    assert "--quick" in out and "--help" in out and "<int>" in out
    assert "<bool>" not in out


def test_progress_without_a_terminal_prints_periodic_lines(capsys, monkeypatch):
    from sbil.cli import _common

    monkeypatch.setattr(_common, "stderr_is_terminal", lambda: False)
    monkeypatch.setattr(_common, "err_console", _common.Console(stderr=True, soft_wrap=True))
    with _common.progress_bar(None, "training edm x2") as update:
        assert update is not None
        for done in range(0, 1001, 10):
            update(done, 1000)
    lines = capsys.readouterr().err.strip().splitlines()
    assert 10 <= len(lines) <= 12  # every 10%, not every call
    assert lines[-1].startswith("training edm x2: 1000/1000 (100%)")
    assert "ETA" in lines[1]
    with _common.progress_bar(False, "quiet") as update:
        assert update is None


# --- sizes bounded before any work ---------------------------------------------------------------


def test_a_size_past_its_limit_is_a_usage_error_that_names_the_way_past_it(monkeypatch):
    monkeypatch.delenv("SBIL_MAX_EPISODES", raising=False)
    limit = _common.MAX_EPISODES
    require("--episodes", limit.default, 1, limit=limit)
    with pytest.raises(UsageError) as error:
        require("--episodes", 10**9, 1, limit=limit)
    message = str(error.value)
    assert message.startswith(f"--episodes 1000000000 is more than {limit.default}")
    assert "set SBIL_MAX_EPISODES=1000000000 to go past it on purpose" in message
    monkeypatch.setenv("SBIL_MAX_EPISODES", str(10**9))
    require("--episodes", 10**9, 1, limit=limit)  # on purpose
    monkeypatch.setenv("SBIL_MAX_EPISODES", "lots")
    with pytest.raises(UsageError, match="SBIL_MAX_EPISODES must be a positive integer"):
        require("--episodes", 5, 1, limit=limit)


def test_workers_are_bounded_by_the_cpus_this_process_may_use(monkeypatch):
    from sbil.machine import available_cpus

    monkeypatch.delenv("SBIL_MAX_WORKERS", raising=False)
    most = max(8, 4 * available_cpus())  # a 1-CPU machine still runs --workers 2
    assert _common.MAX_WORKERS.value() == most
    require("--workers", most, 1, limit=_common.MAX_WORKERS)
    with pytest.raises(UsageError, match=rf"--workers 100000 is more than the {most} worker"):
        require("--workers", 100_000, 1, limit=_common.MAX_WORKERS)
    monkeypatch.setenv("SBIL_MAX_WORKERS", "100000")
    require("--workers", 100_000, 1, limit=_common.MAX_WORKERS)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "runs/missing", "--episodes", "1000000000"],
        ["collect", "--env", "CartPole-v1", "--episodes", "1000000000"],
        ["expert", "eval", "CartPole-v1", "--episodes", "1000000000"],
    ],
)
def test_episode_counts_are_bounded_before_any_work(argv, tmp_path, monkeypatch):
    from sbil.cli import _register, app

    monkeypatch.delenv("SBIL_MAX_EPISODES", raising=False)
    monkeypatch.chdir(tmp_path)
    _register()
    started = time.perf_counter()
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: --episodes 1000000000 is more than 100000")
    assert "SBIL_MAX_EPISODES=1000000000" in line
    assert time.perf_counter() - started < 30 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "option", "variable", "limit"),
    [
        (
            ["train", "--data", "d.npz", "--algo", "bc", "--out", "o", "--updates", "10**9"],
            "--updates",
            "SBIL_MAX_UPDATES",
            1_000_000,
        ),
        (
            [
                "train",
                "--data",
                "d.npz",
                "--algo",
                "bc",
                "--env",
                "CartPole-v1",
                "--out",
                "o",
                "--eval-episodes",
                "10**9",
            ],
            "--eval-episodes",
            "SBIL_MAX_EPISODES",
            100_000,
        ),
        (
            ["evaluate", "--expert", "scripted", "--env", "CartPole-v1", "--n-envs", "10**9"],
            "--n-envs",
            "SBIL_MAX_ENVS",
            1024,
        ),
    ],
    ids=["train-updates", "train-eval-episodes", "evaluate-n-envs"],
)
def test_training_and_evaluation_sizes_are_bounded_before_any_work(
    argv, option, variable, limit, tmp_path, monkeypatch
):
    from sbil.cli import _register, app

    monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.npz").write_bytes(b"")  # never read: the bound comes first
    argv = [str(10**9) if arg == "10**9" else arg for arg in argv]
    _register()
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {option} 1000000000 is more than {limit}"), line
    assert f"set {variable}=1000000000 to go past it" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def _percents(lines: list[str]) -> list[str]:
    return [line.split(": ", 1)[1].split(",")[0] for line in lines]


def _progress_output(updates, capsys) -> list[str]:
    capsys.readouterr()
    update = _common._progress_lines("training")
    for done, total in updates:
        update(done, total)
    return capsys.readouterr().err.strip().splitlines()


def test_progress_lines_at_each_tenth_once_and_the_end_once(capsys):
    lines = _progress_output([*((d, 100) for d in range(1, 101)), (100, 100)], capsys)
    assert _percents(lines) == [f"{d}/100 ({d}%)" for d in range(10, 101, 10)]  # 30%, not 31%
    assert "ETA" in lines[0] and "ETA" not in lines[-1]


def test_progress_lines_with_uneven_steps_are_at_the_first_step_past_each_tenth(capsys):
    lines = _progress_output([*((d, 100) for d in range(7, 100, 7)), (100, 100)], capsys)
    assert _percents(lines) == [
        f"{d}/100 ({d}%)" for d in (14, 21, 35, 42, 56, 63, 70, 84, 91, 100)
    ]


def test_progress_lines_after_a_minute_keep_the_tenths_and_never_show_100_early(
    monkeypatch, capsys
):
    from sbil.experiments import run_log

    clock = {"now": 0.0}
    monkeypatch.setattr(run_log.time, "monotonic", lambda: clock["now"])
    capsys.readouterr()
    update = _common._progress_lines("slow")
    update(13, 1000)
    clock["now"] = 61.0
    update(130, 1000)  # a minute without a line: shown
    update(150, 1000)
    update(200, 1000)  # the next tenth, though a line came 7% ago
    clock["now"] = 130.0
    update(999, 1000)  # a minute again: 99%, not a rounded 100%
    update(1000, 1000)
    update(1000, 1000)
    lines = capsys.readouterr().err.strip().splitlines()
    assert _percents(lines) == [
        "130/1000 (13%)",
        "200/1000 (20%)",
        "999/1000 (99%)",
        "1000/1000 (100%)",
    ]
