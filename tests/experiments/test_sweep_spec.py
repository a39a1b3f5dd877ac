"""sbil sweep's description: every bad value is refused in one line (a SweepError) before any
work, sizes are bounded (counted, not expanded), and two specs that name the same grid in
another order are the same sweep. No training here."""

from __future__ import annotations

import time

import pytest

from sbil.experiments.sweep import (
    SweepError,
    SweepSpec,
    check_backend,
    load_spec_file,
    max_local_workers,
    n_cells,
    preset,
)

BASE = {"envs": ["CartPole-v1"], "ks": [1], "seeds": [0], "algos": ["bc"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"envs": [1]}, r"envs must be task ids like 'CartPole-v1', got 1"),
        ({"envs": [""]}, r"envs must be task ids"),
        ({"envs": ["CartPole-v1", "CartPole-v1"]}, r"envs repeats 'CartPole-v1'"),
        ({"seeds": [-1]}, r"seeds must be integers in 0\.\.4294967295, got -1"),
        ({"seeds": [0, 0]}, r"seeds repeats 0"),
        ({"ks": [1, 1]}, r"ks repeats 1"),
        ({"algos": ["bc", "bc"]}, r"algos repeats 'bc'"),
        ({"dataset_episodes": "x"}, r"dataset_episodes must be an integer or absent .*, got 'x'"),
        ({"dataset_episodes": True}, r"dataset_episodes must be an integer"),
        ({"expert_noise": "bogus"}, r"expert_noise: Unknown expert noise 'bogus'"),
        ({"expert": 3}, r"expert must be an expert's name"),
        ({"eval_seed": 2**32 - 2, "eval_episodes": 3}, r"eval_seed 4294967294 with 3"),
        ({"collect_seed": 2**32 - 1}, r"collect_seed 4294967295 with 11"),
        ({"grid": {"learning_rate": [1e-3, 1e-3]}}, r"grid\.learning_rate repeats 0\.001"),
        ({"preset": 3}, r"preset must be a preset's name"),
    ],
)
def test_a_bad_value_is_one_clear_sweep_error(change, message):
    with pytest.raises(SweepError, match=message):
        SweepSpec.from_dict({**BASE, **change})


def test_a_spec_that_is_not_a_table_is_refused():
    with pytest.raises(SweepError, match="must be a table of keys"):
        SweepSpec.from_dict([])


def test_a_preset_overridden_with_a_bad_type_is_a_sweep_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('preset = "quick"\ndataset_episodes = "x"\n')
    with pytest.raises(SweepError, match="dataset_episodes must be an integer"):
        load_spec_file(path)
    path.write_text('preset = ["quick"]\n')
    with pytest.raises(SweepError, match="preset must be"):
        load_spec_file(path)


def test_eval_episodes_past_the_seed_range_names_the_limit_not_a_negative_seed(monkeypatch):
    with pytest.raises(SweepError, match=r"\(eval_episodes\), more than the 100,000") as caught:
        SweepSpec.from_dict({**BASE, "eval_episodes": 4294967297})
    assert "-1" not in str(caught.value)
    monkeypatch.setenv("SBIL_SWEEP_MAX_EVAL_EPISODES", str(2**40))  # past the limit on purpose
    with pytest.raises(SweepError, match=r"at most 4294967296 \(2\*\*32\), got 4294967297"):
        SweepSpec.from_dict({**BASE, "eval_episodes": 4294967297})


@pytest.mark.parametrize(
    ("change", "limit", "variable"),
    [
        ({"seeds": list(range(10**6))}, "10,000", "SBIL_SWEEP_MAX_SEEDS"),
        ({"ks": list(range(1, 10**5 + 1))}, "1,000", "SBIL_SWEEP_MAX_KS"),
        ({"eval_episodes": 10**6}, "100,000", "SBIL_SWEEP_MAX_EVAL_EPISODES"),
        ({"dataset_episodes": 10**7}, "100,000", "SBIL_SWEEP_MAX_DATASET_EPISODES"),
    ],
)
def test_sizes_past_their_limit_are_refused_saying_how_to_go_past_it(change, limit, variable):
    with pytest.raises(SweepError, match=f"more than the {limit} allowed.*{variable}="):
        SweepSpec.from_dict({**BASE, **change})


def test_a_huge_grid_is_counted_and_refused_before_it_is_expanded():
    grid = {
        "learning_rate": [1e-3 * (1 + i / 1000) for i in range(1000)],
        "batch_size": list(range(1, 10_001)),
    }
    started = time.perf_counter()
    with pytest.raises(SweepError, match=r"10,000,000 cells .*SBIL_SWEEP_MAX_CELLS=10000000"):
        SweepSpec.from_dict({**BASE, "grid": grid})
    assert time.perf_counter() - started < 5  # nothing was expanded (10^7 option sets)


def test_the_cell_limit_can_be_raised_or_lowered_on_purpose(monkeypatch):
    spec = {**BASE, "ks": [1, 2], "seeds": [0, 1], "algos": ["bc", "edm"]}  # 8 cells
    assert n_cells(SweepSpec.from_dict(spec)) == 8
    monkeypatch.setenv("SBIL_SWEEP_MAX_CELLS", "4")
    with pytest.raises(SweepError, match=r"8 cells \(.*\), more than the 4 allowed"):
        SweepSpec.from_dict(spec)
    monkeypatch.setenv("SBIL_SWEEP_MAX_CELLS", "8")
    SweepSpec.from_dict(spec)
    monkeypatch.setenv("SBIL_SWEEP_MAX_CELLS", "many")
    with pytest.raises(SweepError, match="SBIL_SWEEP_MAX_CELLS must be a positive integer"):
        SweepSpec.from_dict(spec)


def test_the_same_grid_in_another_order_is_the_same_sweep():
    a = SweepSpec.from_dict({**BASE, "ks": [1, 3], "algos": ["bc", "edm"]})
    b = SweepSpec.from_dict({**BASE, "ks": [3, 1], "algos": ["edm", "bc"]})
    c = preset("quick")
    d = SweepSpec.from_dict({**c.to_dict(), "preset": None})  # the same grid from a file
    assert a.same_grid(b) and c.same_grid(d)
    assert not a.same_grid(SweepSpec.from_dict({**BASE, "ks": [1, 3]}))


@pytest.mark.parametrize(
    ("workers", "backend", "address", "message"),
    [
        (0, "local", None, "--workers must be a positive integer, got 0"),
        (-3, "local", None, "--workers must be a positive integer, got -3"),
        (1, "dask", None, "--backend must be one of local, ray, got 'dask'"),
        (1, "local", "127.0.0.1:1", "--address is for --backend ray"),
    ],
)
def test_backend_options_are_checked_alone(workers, backend, address, message):
    with pytest.raises(SweepError, match=message):
        check_backend(workers, backend, address)


def test_workers_on_this_machine_are_bounded_unless_raised_on_purpose(monkeypatch):
    monkeypatch.delenv("SBIL_MAX_WORKERS", raising=False)
    most = max_local_workers()
    assert most >= 8
    check_backend(most, "local", None)
    with pytest.raises(SweepError, match=f"more than its limit of {most}.*SBIL_MAX_WORKERS"):
        check_backend(100_000, "local", None)
    with pytest.raises(SweepError, match="SBIL_MAX_WORKERS"):
        check_backend(most + 1, "ray", None)  # a local Ray starts its workers here too
    check_backend(100_000, "ray", "127.0.0.1:6379")  # a cluster's CPUs decide there
    monkeypatch.setenv("SBIL_MAX_WORKERS", "200000")
    check_backend(100_000, "local", None)
    monkeypatch.setenv("SBIL_MAX_WORKERS", "x")
    with pytest.raises(SweepError, match="SBIL_MAX_WORKERS must be a positive integer"):
        check_backend(2, "local", None)
