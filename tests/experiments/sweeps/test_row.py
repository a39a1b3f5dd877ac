"""Tests for sbil.experiments.sweeps.row: the one schema a sweep row is written and read by."""

import gzip
import json
from pathlib import Path

import pytest

from sbil.experiments.sweeps.row import FIELDS, REQUIRED, SCHEMA, Row

RESULTS = Path(__file__).resolve().parents[3] / "docs" / "results"


def _committed_rows(folder: str, n: int = 40) -> list[dict]:
    with gzip.open(RESULTS / folder / "rows.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line) for _, line in zip(range(n), lines, strict=False)]


@pytest.mark.parametrize("folder", ["edm-paper", "edm-paper-scripted"])
def test_committed_rows_read_and_write_back_unchanged(folder):
    """Rows of today's schema (with device) and of the older one (without) round-trip exactly:
    the same keys and values (the archives store keys sorted; a row file's order is the
    schema's, tested below and in test_sweep.py)."""
    for data in _committed_rows(folder):
        back = Row.from_dict(data).to_dict()
        assert json.dumps(back, sort_keys=True) == json.dumps(data, sort_keys=True)
        assert list(back) == [f for f in (*FIELDS, *sorted(set(data) - set(FIELDS))) if f in data]


def test_extra_fields_are_kept_after_the_schema():
    data = {
        "schema": SCHEMA,
        "cell_id": "c",
        "env_id": "CartPole-v1",
        "algo": "bc",
        "k": 1,
        "seed": 0,
        "status": "failed",
        "held_out": None,
    }
    row = Row.from_dict(data)
    assert row.extra == {"held_out": None} and not row.done
    assert list(row.to_dict())[-1] == "held_out"
    assert list(row.to_dict())[:-1] == [f for f in FIELDS if f not in ("device", "cpu")]


def test_the_cpu_is_written_where_known_and_read_back():
    data = {"schema": SCHEMA, "cell_id": "c", "env_id": "E", "algo": "bc", "k": 1, "seed": 0}
    data["status"] = "failed"
    assert "cpu" not in Row.from_dict(data).to_dict()  # as rows before the field
    row = Row.from_dict({**data, "cpu": "Some CPU; torch kernels AVX2"})
    assert row.cpu == "Some CPU; torch kernels AVX2" and row.extra == {}
    assert row.to_dict()["cpu"] == "Some CPU; torch kernels AVX2"


def test_the_schema_holds_the_required_fields_in_file_order():
    assert set(REQUIRED) <= set(FIELDS)
    assert FIELDS[:3] == ("schema", "cell_id", "config_hash")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": 0}, r"k = 0, not an integer >= 1"),
        ({"k": True}, r"k = true, not an integer >= 1"),
        ({"seed": -1}, r"seed = -1, not an integer in 0\.\."),
        ({"status": "running"}, r"status 'running', not 'done' or 'failed'"),
        ({"algo": ""}, r"algo = '', not a name"),
        ({"options": [1]}, r"options = \[1\], not a JSON object"),
    ],
)
def test_a_bad_row_is_refused_with_what_is_wrong(change, message):
    data = {"cell_id": "c", "env_id": "E", "algo": "bc", "k": 1, "seed": 0, "status": "done"}
    with pytest.raises(ValueError, match=message):
        Row.from_dict({**data, **change}, "rows/c.json")


def test_a_row_lacking_fields_or_not_an_object_is_refused():
    with pytest.raises(ValueError, match=r"rows/c\.json lacks k, seed: it is not a sweep row"):
        Row.from_dict(
            {"cell_id": "c", "env_id": "E", "algo": "bc", "status": "done"}, "rows/c.json"
        )
    with pytest.raises(ValueError, match=r"one JSON object \(a sweep row\), not list"):
        Row.from_dict([1], "rows/c.json")
