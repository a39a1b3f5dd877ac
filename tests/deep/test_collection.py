"""Tests for sbil.deep.collection: recording an expert into a Minari dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sbil.deep.collection import collect
from sbil.deep.datasets import load_demonstrations
from sbil.deep.demonstrations import DatasetError
from sbil.deep.experts import cartpole_expert


def test_collect_then_load_round_trip(tmp_path):
    info = collect("CartPole-v1", 3, seed=11, root=tmp_path)
    assert info.dataset_id == "sbil/cartpole/scripted-v0"
    assert info.path == tmp_path / "sbil" / "cartpole" / "scripted-v0"
    metadata = json.loads((info.path / "data" / "metadata.json").read_text())
    assert metadata["expert_return_mean"] == pytest.approx(info.mean)
    assert metadata["total_episodes"] == 3 and metadata["collection_seed"] == 11

    demos = load_demonstrations(info.dataset_id, root=tmp_path)
    assert demos.env_id == "CartPole-v1" and demos.n_episodes == 3
    np.testing.assert_array_equal(demos.episode_returns, info.returns)
    assert demos.n_steps == info.n_steps == int(demos.episode_lengths.sum())
    # The stored actions are the expert's actions in the stored states.
    np.testing.assert_array_equal(cartpole_expert(demos.observations), demos.actions)
    # Episode 0 starts where reset(seed=11) starts.
    import gymnasium as gym

    first_obs, _ = gym.make("CartPole-v1").reset(seed=11)
    np.testing.assert_array_equal(demos.observations[0], first_obs)
    # No temporary folders left behind.
    assert [p.name for p in info.path.parent.iterdir()] == ["scripted-v0"]


def test_collect_refuses_to_overwrite_unless_asked(tmp_path):
    collect("CartPole-v1", 2, root=tmp_path, dataset_id="ns/cp-v0")
    with pytest.raises(DatasetError, match=r"already exists.*--overwrite"):
        collect("CartPole-v1", 1, root=tmp_path, dataset_id="ns/cp-v0")
    collect("CartPole-v1", 1, root=tmp_path, dataset_id="ns/cp-v0", overwrite=True)
    assert load_demonstrations("ns/cp-v0", root=tmp_path).n_episodes == 1
    assert sorted(p.name for p in (tmp_path / "ns").iterdir()) == ["cp-v0"]


def test_collect_with_a_relative_root_or_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    collect("CartPole-v1", 1, root="rel", dataset_id="a-v0")
    assert load_demonstrations("a-v0", root="rel").n_episodes == 1
    monkeypatch.setenv("MINARI_DATASETS_PATH", "relenv")
    collect("CartPole-v1", 1, dataset_id="b-v0")
    assert load_demonstrations("b-v0", root=tmp_path / "relenv").n_episodes == 1


def test_overwrite_never_replaces_a_folder_that_is_not_one_dataset(tmp_path):
    # "grp/a-v0/b-v0" makes grp/a-v0 a namespace folder holding another dataset.
    collect("CartPole-v1", 1, root=tmp_path, dataset_id="grp/a-v0/b-v0")
    with pytest.raises(DatasetError, match=r"is not a Minari dataset.*will not replace"):
        collect("CartPole-v1", 1, root=tmp_path, dataset_id="grp/a-v0", overwrite=True)
    assert load_demonstrations("grp/a-v0/b-v0", root=tmp_path).n_episodes == 1


def test_failed_collection_leaves_no_dataset(tmp_path):
    calls = []

    def failing_policy(obs):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("policy crashed")
        return np.zeros(len(obs), np.int64)

    with pytest.raises(RuntimeError, match="policy crashed"):
        collect("CartPole-v1", 4, expert=failing_policy, root=tmp_path, dataset_id="crash-v0")
    assert not (tmp_path / "crash-v0").exists()


def test_collected_dataset_is_readable_by_others_as_the_umask_allows(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        info = collect("CartPole-v1", 1, root=tmp_path, dataset_id="shared-v0")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [info.path, *info.path.rglob("*")]}
    assert modes.pop("shared-v0") == 0o755
    assert modes.pop("data") == 0o755
    assert modes and set(modes.values()) == {0o644}, modes


def test_collect_into_an_unusable_root_names_the_option(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DatasetError, match=r"Cannot write datasets under .*a-file.*--root"):
        collect("CartPole-v1", 1, root=blocker / "datasets")


def test_collect_result_summarises_the_returns():
    from pathlib import Path

    from sbil.deep.collection import CollectResult

    result = CollectResult("x-v0", Path("x"), np.array([1.0, 3.0]), n_steps=4)
    assert (result.mean, result.std, result.n_episodes) == (2.0, 1.0, 2)


def test_a_second_collect_of_the_same_id_fails_at_once_and_the_first_is_kept(tmp_path):
    import threading

    started, release = threading.Event(), threading.Event()

    def slow_expert(obs):  # records while the second collect runs
        started.set()
        assert release.wait(30)
        return np.zeros(len(obs), np.int64)

    outcome = {}
    first = threading.Thread(
        target=lambda: outcome.update(
            first=collect("CartPole-v1", 2, expert=slow_expert, root=tmp_path, dataset_id="r-v0")
        )
    )
    first.start()
    try:
        assert started.wait(30)
        for overwrite in (False, True):
            with pytest.raises(DatasetError, match=r"'r-v0' .* is being written right now by"):
                collect("CartPole-v1", 1, root=tmp_path, dataset_id="r-v0", overwrite=overwrite)
    finally:
        release.set()
        first.join(60)
    demos = load_demonstrations("r-v0", root=tmp_path)
    assert demos.n_episodes == 2 and (demos.actions == 0).all()  # the first writer's data
    np.testing.assert_array_equal(demos.episode_returns, outcome["first"].returns)
    assert [p.name for p in tmp_path.iterdir()] == ["r-v0"]  # no lock or staging left


def test_a_collect_that_finished_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    # The destination is checked again once the lock is held: a dataset written between the
    # first check and the lock (by a collect that ran and finished) is kept, not overwritten.
    import sbil.deep.collection as collection

    checks = []
    check = collection._check_destination

    def check_then_appear(final, dataset_id, overwrite):
        checks.append(final)
        if len(checks) == 1:
            check(final, dataset_id, overwrite)
            collect("CartPole-v1", 1, root=tmp_path, dataset_id="late-v0", seed=5)
        else:
            check(final, dataset_id, overwrite)

    monkeypatch.setattr(collection, "_check_destination", check_then_appear)
    with pytest.raises(DatasetError, match="already exists"):
        collect("CartPole-v1", 2, root=tmp_path, dataset_id="late-v0")
    assert load_demonstrations("late-v0", root=tmp_path).n_episodes == 1


def test_a_collect_killed_while_writing_leaves_a_staging_folder_the_next_one_removes(tmp_path):
    import subprocess
    import sys

    # Kill a real `collect` with SIGKILL in the middle of writing the Minari files.
    code = (
        "import os, signal; from minari.dataset.minari_storage import MinariStorage; "
        "new = MinariStorage.new; MinariStorage.new = staticmethod(lambda *a, **k: "
        "(new(*a, **k), os.kill(os.getpid(), signal.SIGKILL))); "
        "from sbil.deep.collection import collect; "
        f"collect('CartPole-v1', 1, root={str(tmp_path)!r}, dataset_id='k-v0')"
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert killed.returncode == -9, killed.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.startswith(".sbil-tmp-") for name in left), left  # the half-written one
    collect("CartPole-v1", 1, root=tmp_path, dataset_id="k-v0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k-v0"]
    assert load_demonstrations("k-v0", root=tmp_path).n_episodes == 1


@pytest.mark.parametrize(
    ("seed", "n_episodes", "message"),
    [
        (99999999999999999999, 1, r"seed must be an integer in 0..4294967295"),
        (2**63 - 1, 2, r"seed must be an integer in 0..4294967295"),
        (2**32 - 1, 2, r"seed 4294967295 with 2 episodes uses seeds up to 4294967296"),
        (-1, 1, r"seed must be an integer in 0..4294967295"),
    ],
)
def test_collect_refuses_seeds_outside_the_one_seed_range_before_any_work(
    tmp_path, seed, n_episodes, message
):
    with pytest.raises(ValueError, match=message):
        collect("CartPole-v1", n_episodes, seed=seed, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_collect_stores_the_largest_seeds_exactly(tmp_path):
    info = collect("CartPole-v1", 2, seed=2**32 - 2, root=tmp_path)
    import h5py

    with h5py.File(info.path / "data" / "main_data.hdf5") as handle:
        seeds = [int(handle[f"episode_{i}"].attrs["seed"]) for i in range(2)]
    assert seeds == [2**32 - 2, 2**32 - 1]


# --- stochastic experts -----------------------------------------------------------------------


def test_an_epsilon_expert_gets_its_own_id_and_metadata_and_is_reproducible(tmp_path):
    noisy = collect("CartPole-v1", 3, seed=4, root=tmp_path, noise="epsilon:0.3")
    assert noisy.dataset_id == "sbil/cartpole/scripted-eps0_3-v0"
    assert noisy.expert == "scripted, epsilon:0.3"
    plain = collect("CartPole-v1", 3, seed=4, root=tmp_path)
    assert plain.dataset_id == "sbil/cartpole/scripted-v0"
    meta = json.loads((noisy.path / "data" / "metadata.json").read_text())
    assert meta["expert_noise"] == "epsilon:0.3" and meta["expert_deterministic"] is False
    assert meta["noise_seed"] == 4 and "epsilon:0.3 noise" in meta["description"]
    plain_meta = json.loads((plain.path / "data" / "metadata.json").read_text())
    assert plain_meta["expert_noise"] == "none" and plain_meta["expert_deterministic"] is True
    assert plain_meta["noise_seed"] is None

    demos = load_demonstrations(noisy.dataset_id, root=tmp_path)
    greedy = cartpole_expert(demos.observations)
    off = float((demos.actions != greedy).mean())
    assert 0.05 < off < 0.3  # about epsilon / 2 (a random action is the expert's half the time)
    again = collect("CartPole-v1", 3, seed=4, root=tmp_path, noise="epsilon:0.3", dataset_id="a-v0")
    np.testing.assert_array_equal(load_demonstrations("a-v0", root=tmp_path).actions, demos.actions)
    other = collect("CartPole-v1", 3, seed=5, root=tmp_path, noise="epsilon:0.3", dataset_id="b-v0")
    assert not np.array_equal(other.returns, again.returns) or other.n_steps != again.n_steps


@pytest.mark.parametrize(
    ("noise", "message"),
    [
        ("sample", "Scripted experts have no action distribution"),
        ("epsilon:0", r"epsilon must be a probability in \(0, 1\]"),
        ("epsilon:2", r"epsilon must be a probability in \(0, 1\]"),
        ("epsilon", "needs its probability"),
        ("softmax:1", "Unknown expert noise 'softmax'"),
    ],
)
def test_bad_expert_noise_is_refused_before_recording(tmp_path, noise, message):
    with pytest.raises(ValueError, match=message):
        collect("CartPole-v1", 1, root=tmp_path, noise=noise)
    assert list(tmp_path.iterdir()) == []
