"""The run folder's log and the tidy per-seed figures: lines as they happen, progress every
10% and once at the end, rows written as CSV and JSON with the same columns."""

from __future__ import annotations

import csv
import json
import re

import pytest

from sbil.experiments import run_log
from sbil.experiments.run_log import RunLog, progress_lines, tee
from sbil.experiments.seed_figures import (
    COLUMNS,
    SeedFigures,
    read_seed_figures,
    write_seed_figures,
)


def test_progress_lines_every_tenth_and_the_end_once():
    lines = []
    update = progress_lines("training", lines.append)
    for done in range(1, 101):
        update(done, 100)
    update(100, 100)  # a second report of the end (as training used to send) prints nothing
    assert [line.split(":")[1].split()[0] for line in lines] == [
        f"{d}/100" for d in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    ]
    assert lines[-1].startswith("training: 100/100 (100%), ") and "ETA" not in lines[-1]
    assert "ETA" in lines[0]


def test_progress_lines_after_a_minute_without_a_tenth(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(run_log.time, "monotonic", lambda: clock["now"])
    lines = []
    update = progress_lines("slow", lines.append)
    update(1, 1000)
    clock["now"] = 61.0
    update(2, 1000)
    assert lines == ["slow: 2/1000 (0%), 61 s elapsed, ETA 507:19"]


def test_run_log_appends_timestamped_single_lines(tmp_path):
    path = tmp_path / "log.txt"
    RunLog(path).write("first")
    log = RunLog(path)  # a second writer appends
    log.write("a message\nover two lines")
    log.progress("evaluating seed 3")(5, 5)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  "
    assert re.fullmatch(stamp + "first", lines[0])
    assert re.fullmatch(stamp + "a message over two lines", lines[1])
    assert re.fullmatch(stamp + r"evaluating seed 3: 5/5 \(100%\), 0 s elapsed", lines[2])


def test_tee_calls_every_callback_and_skips_none():
    seen = []
    assert tee(None, None) is None
    one = seen.append
    assert tee(None, one) is one
    both = tee(lambda d, t: seen.append(("a", d)), None, lambda d, t: seen.append(("b", d)))
    both(3, 4)
    assert seen == [("a", 3), ("b", 3)]


def _row(**changes) -> SeedFigures:
    fields = dict.fromkeys(COLUMNS)
    fields.update(status="done", n_episodes=0, policy="seed-0")
    return SeedFigures(**{**fields, **changes})


def test_seed_figures_as_csv_and_json(tmp_path):
    rows = [
        _row(env_id="CartPole-v1", algo="edm", k=3, seed=0, mean_return=12.5, n_episodes=4),
        _row(seed=1, status="failed", error="diverged: the loss became nan, at update 3"),
    ]
    csv_path, json_path = write_seed_figures(tmp_path, "training", rows)
    assert (csv_path.name, json_path.name) == ("training.csv", "training.json")
    assert read_seed_figures(json_path) == rows
    with open(csv_path, newline="") as file:
        table = list(csv.DictReader(file))
    assert tuple(table[0]) == COLUMNS
    assert table[0]["mean_return"] == "12.5" and table[0]["final_loss"] == ""
    assert table[1]["error"] == "diverged: the loss became nan, at update 3"  # quoted comma
    assert json.loads(json_path.read_text())[1]["mean_return"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic, no leftovers


def test_seed_figures_are_one_row_type():
    with pytest.raises(TypeError):
        SeedFigures(**{**_row().to_dict(), "unknown": 1})
