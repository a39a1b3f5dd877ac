"""Tests for sbil.deep.data: validation, subsets, and the Minari round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sbil.deep.data import (
    DatasetError,
    Demonstrations,
    check_dataset_id,
    collect,
    default_dataset_id,
    from_arrays,
    load_demonstrations,
)
from sbil.deep.experts import cartpole_expert


def _demos(lengths=(3, 2, 4), obs_dim=2, n_actions=2) -> Demonstrations:
    n = sum(lengths)
    obs = np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim)
    actions = np.arange(n) % n_actions
    returns = np.asarray(lengths, dtype=float) * 10
    return from_arrays(obs, actions, episode_lengths=lengths, episode_returns=returns)


# --- Demonstrations and from_arrays ------------------------------------------------------------


def test_from_arrays_flat_and_per_episode_agree():
    flat = _demos()
    starts = flat.episode_starts
    obs_list = [
        flat.observations[s : s + n] for s, n in zip(starts, flat.episode_lengths, strict=True)
    ]
    act_list = [flat.actions[s : s + n] for s, n in zip(starts, flat.episode_lengths, strict=True)]
    per_episode = from_arrays(obs_list, act_list)
    np.testing.assert_array_equal(per_episode.observations, flat.observations)
    np.testing.assert_array_equal(per_episode.actions, flat.actions)
    np.testing.assert_array_equal(per_episode.episode_lengths, [3, 2, 4])
    assert flat.n_episodes == 3 and flat.n_steps == 9 and flat.obs_dim == 2
    assert flat.observations.dtype == np.float32 and flat.actions.dtype == np.int64


def test_from_arrays_without_lengths_is_one_episode():
    demos = from_arrays(np.zeros((5, 3)), np.ones(5))
    assert demos.n_episodes == 1
    np.testing.assert_array_equal(demos.episode_lengths, [5])


def test_demonstrations_are_read_only_without_freezing_the_callers_arrays():
    obs = np.zeros((3, 2), np.float32)
    demos = from_arrays(obs, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="read-only"):
        demos.observations[0, 0] = 1.0
    obs[0, 0] = 1.0  # still writable, and copied: the demonstrations do not change
    assert demos.observations[0, 0] == 0.0


def test_episode_returns_the_episode_rows():
    demos = _demos()
    obs, actions = demos.episode(1)
    np.testing.assert_array_equal(obs, demos.observations[3:5])
    np.testing.assert_array_equal(actions, demos.actions[3:5])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"observations": np.zeros((0, 2)), "actions": np.zeros(0, int)}, "empty"),
        ({"observations": [], "actions": []}, "empty"),
        ({"observations": np.zeros(4), "actions": np.zeros(4, int)}, r"\[N, obs_dim\]"),
        ({"observations": np.zeros((4, 2)), "actions": np.zeros(3, int)}, "one per observation"),
        (
            {
                "observations": np.zeros((4, 2)),
                "actions": np.zeros(4, int),
                "episode_lengths": [2, 1],
            },
            "sum to 3 but there are 4",
        ),
        (
            {
                "observations": np.zeros((4, 2)),
                "actions": np.zeros(4, int),
                "episode_lengths": [4, 0],
            },
            "Episode 1 has 0 steps",
        ),
        (
            {
                "observations": np.zeros((4, 2)),
                "actions": [0, 1, 0.5, 1],
                "episode_lengths": [2, 2],
            },
            "Episode 1 has a non-integer action",
        ),
        (
            {"observations": np.zeros((4, 2)), "actions": [0, 1, 0, -1], "episode_lengths": [2, 2]},
            "Episode 1 has negative action -1 at step 1",
        ),
        (
            {
                "observations": np.zeros((4, 2)),
                "actions": np.zeros(4, int),
                "episode_returns": [1.0, 2.0],
            },
            "episode_returns must be an array of shape",
        ),
        (
            {
                "observations": np.zeros((4, 2)),
                "actions": np.zeros(4, int),
                "episode_lengths": [2, 2],
                "episode_returns": [1.0, np.nan],
            },
            "Episode 1 has a NaN or infinite return",
        ),
        (
            {"observations": [np.zeros((2, 2)), np.zeros((2, 3))], "actions": [[0, 0], [0, 0]]},
            "Episode 1 has observations of size 3",
        ),
        (
            {"observations": [np.zeros((2, 2))], "actions": [[0, 0, 1]]},
            "Episode 0 has observations of shape",
        ),
    ],
)
def test_from_arrays_rejects_bad_input(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        from_arrays(**kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observation_names_the_episode_and_step(bad):
    obs = np.zeros((6, 2))
    obs[4, 1] = bad
    with pytest.raises(DatasetError, match="Episode 1 has a NaN or infinite observation at step 1"):
        from_arrays(obs, np.zeros(6, int), episode_lengths=[3, 3])


def test_direct_construction_requires_exact_dtypes():
    with pytest.raises(DatasetError, match="float32"):
        Demonstrations(np.zeros((2, 2)), np.zeros(2, np.int64), np.array([2]))
    with pytest.raises(DatasetError, match="numpy array"):
        Demonstrations([[0.0]], np.zeros(1, np.int64), np.array([1]))


def test_check_env_reports_mismatches():
    with pytest.raises(DatasetError, match=r"observations of size 2 but CartPole-v1 has .* size 4"):
        _demos(obs_dim=2).check_env("CartPole-v1")
    obs = np.zeros((5, 4))
    actions = [0, 1, 0, 0, 2]
    with pytest.raises(
        DatasetError, match=r"Episode 1 has action 2 at step 2, .* 2 actions \(0..1\)"
    ):
        from_arrays(obs, actions, episode_lengths=[2, 3], env_id="CartPole-v1")
    spec = from_arrays(obs, [0, 1, 0, 0, 1], episode_lengths=[2, 3]).check_env("CartPole-v1")
    assert spec.n_actions == 2


# --- subset / select ---------------------------------------------------------------------------


def test_subset_without_seed_takes_the_first_k_episodes():
    demos = _demos(lengths=(3, 2, 4, 1))
    sub = demos.subset(2)
    np.testing.assert_array_equal(sub.episode_lengths, [3, 2])
    np.testing.assert_array_equal(sub.observations, demos.observations[:5])
    np.testing.assert_array_equal(sub.episode_returns, [30.0, 20.0])
    assert demos.subset(4).n_steps == demos.n_steps


def test_subset_with_seed_draws_distinct_whole_episodes_deterministically():
    demos = _demos(lengths=(1, 2, 3, 4, 5, 6))
    a, b = demos.subset(3, seed=7), demos.subset(3, seed=7)
    np.testing.assert_array_equal(a.observations, b.observations)
    assert a.n_episodes == 3
    # Episode lengths are distinct, so they identify the drawn episodes: whole and in order.
    lengths = a.episode_lengths.tolist()
    assert lengths == sorted(lengths) and len(set(lengths)) == 3
    for length in lengths:
        obs, _ = demos.episode(length - 1)
        assert any(np.array_equal(obs, a.episode(i)[0]) for i in range(3))
    draws = {tuple(demos.subset(3, seed=s).episode_lengths) for s in range(20)}
    assert len(draws) > 1


@pytest.mark.parametrize("k", [0, 4, -1, 1.5, True])
def test_subset_rejects_bad_k(k):
    with pytest.raises(DatasetError, match=r"k must be an integer in 1..3"):
        _demos().subset(k)


def test_select_validates_indices():
    demos = _demos()
    with pytest.raises(DatasetError, match=r"in 0..2"):
        demos.select([3])
    with pytest.raises(DatasetError, match="must not repeat"):
        demos.select([1, 1])
    with pytest.raises(DatasetError, match="at least one"):
        demos.select([])


def test_n_actions_is_validated_and_kept_by_subset_select_and_split():
    demos = from_arrays(np.zeros((5, 2)), [0, 0, 1, 0, 0], episode_lengths=[2, 1, 2], n_actions=3)
    assert demos.n_actions == 3
    assert demos.subset(2).n_actions == 3
    assert demos.subset(2, seed=0).n_actions == 3
    assert demos.select([2, 0]).n_actions == 3
    assert all(part.n_actions == 3 for part in demos.split(1))
    assert _demos().n_actions is None
    with pytest.raises(DatasetError, match=r"Episode 1 has action 2 at step 1, .*n_actions=2"):
        from_arrays(np.zeros((4, 2)), [0, 1, 0, 2], episode_lengths=[2, 2], n_actions=2)
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(DatasetError, match="n_actions must be a positive integer"):
            from_arrays(np.zeros((2, 2)), [0, 0], n_actions=bad)


def test_check_env_rejects_a_different_action_count():
    demos = from_arrays(np.zeros((2, 4)), [0, 1], n_actions=3)
    with pytest.raises(DatasetError, match=r"recorded with 3 actions but CartPole-v1 has 2"):
        demos.check_env("CartPole-v1")


def test_split_gives_the_subset_and_every_other_episode():
    demos = _demos(lengths=(1, 2, 3, 4, 5))
    first, rest = demos.split(2)
    np.testing.assert_array_equal(first.episode_lengths, [1, 2])
    np.testing.assert_array_equal(rest.episode_lengths, [3, 4, 5])
    np.testing.assert_array_equal(rest.observations, demos.observations[3:])
    np.testing.assert_array_equal(rest.episode_returns, [30.0, 40.0, 50.0])
    drawn, held_out = demos.split(2, seed=4)
    np.testing.assert_array_equal(drawn.observations, demos.subset(2, seed=4).observations)
    lengths = sorted(drawn.episode_lengths.tolist() + held_out.episode_lengths.tolist())
    assert lengths == [1, 2, 3, 4, 5]
    assert held_out.episode_lengths.tolist() == sorted(held_out.episode_lengths.tolist())


@pytest.mark.parametrize("k", [0, 5, 1.0])
def test_split_must_leave_an_episode_over(k):
    with pytest.raises(DatasetError, match=r"Cannot split 5 episodes with k=.*in 1..4"):
        _demos(lengths=(1, 1, 1, 1, 1)).split(k)


# --- Minari datasets ---------------------------------------------------------------------------


def test_dataset_ids_follow_minari_rules():
    assert default_dataset_id("CartPole-v1", "scripted") == "sbil/cartpole/scripted-v0"
    assert default_dataset_id("LunarLander-v3", "sb3-ppo") == "sbil/lunarlander/sb3-ppo-v0"
    for bad in ["no-version", "sbil/cart pole-v0", "", "a/b/-v0x"]:
        with pytest.raises(DatasetError, match="Malformed dataset id"):
            check_dataset_id(bad)


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


def test_minari_finds_the_dataset_through_its_environment_variable(tmp_path, monkeypatch):
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    info = collect("MountainCar-v0", 2, dataset_id="mc-v1")  # root from the variable
    dataset = minari.load_dataset("mc-v1")
    assert dataset.total_episodes == 2 and dataset.total_steps == info.n_steps
    assert load_demonstrations("mc-v1").n_episodes == 2


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


def test_load_reports_missing_and_mismatched_datasets(tmp_path):
    with pytest.raises(DatasetError, match=r"No local Minari dataset 'nothing-v0'.*sbil collect"):
        load_demonstrations("nothing-v0", root=tmp_path)
    collect("CartPole-v1", 1, root=tmp_path, dataset_id="cp-v0")
    with pytest.raises(DatasetError, match=r"observations of size 4 but Acrobot-v1 has .* size 6"):
        load_demonstrations("cp-v0", root=tmp_path, env_id="Acrobot-v1")


def test_load_rejects_continuous_action_datasets(tmp_path):
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    storage = MinariStorage.new(
        _mkdir(tmp_path / "pend-v0") / "data",
        observation_space=gym.spaces.Box(-1, 1, (3,)),
        action_space=gym.spaces.Box(-2, 2, (1,)),
    )
    storage.update_metadata({"dataset_id": "pend-v0", "minari_version": "0.5.4"})
    storage.update_episodes(
        [
            EpisodeBuffer(
                observations=np.zeros((3, 3), np.float32),
                actions=np.zeros((2, 1), np.float32),
                rewards=[0.0, 0.0],
                terminations=[False, True],
                truncations=[False, False],
            )
        ]
    )
    with pytest.raises(DatasetError, match="continuous"):
        load_demonstrations("pend-v0", root=tmp_path)


def test_load_names_the_episode_with_nan_observations(tmp_path):
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    storage = MinariStorage.new(
        _mkdir(tmp_path / "nan-v0") / "data",
        observation_space=gym.spaces.Box(-np.inf, np.inf, (2,)),
        action_space=gym.spaces.Discrete(2),
    )
    storage.update_metadata({"dataset_id": "nan-v0", "minari_version": "0.5.4"})
    episodes = []
    for bad in (False, True):
        obs = np.zeros((3, 2), np.float32)
        if bad:
            obs[1, 0] = np.nan
        episodes.append(
            EpisodeBuffer(
                observations=obs,
                actions=np.zeros(2, np.int64),
                rewards=[1.0, 1.0],
                terminations=[False, True],
                truncations=[False, False],
            )
        )
    storage.update_episodes(episodes)
    with pytest.raises(DatasetError, match="Episode 1 of 'nan-v0' contains NaN"):
        load_demonstrations("nan-v0", root=tmp_path)


def _mkdir(path):
    path.mkdir(parents=True)
    return path


def test_load_rejects_an_empty_dataset(tmp_path):
    import gymnasium as gym
    from minari.dataset.minari_storage import MinariStorage

    storage = MinariStorage.new(
        _mkdir(tmp_path / "empty-v0") / "data",
        observation_space=gym.spaces.Box(-1, 1, (2,)),
        action_space=gym.spaces.Discrete(2),
    )
    storage.update_metadata({"dataset_id": "empty-v0", "minari_version": "0.5.4"})
    with pytest.raises(DatasetError, match="'empty-v0' has no episodes"):
        load_demonstrations("empty-v0", root=tmp_path)


@pytest.mark.filterwarnings("ignore:.*(author|algorithm_name|description|eval_env|env_spec)")
def test_load_takes_the_action_count_from_the_dataset_not_the_data(tmp_path):
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            observations=np.zeros((3, 2), np.float32),
            actions=np.zeros(2, np.int64),  # only action 0 of 3
            rewards=[1.0, 1.0],
            terminations=[False, True],
            truncations=[False, False],
        )
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
        minari.create_dataset_from_buffers(
            "three-v0",
            buffers,
            action_space=gym.spaces.Discrete(3),
            observation_space=gym.spaces.Box(-1, 1, (2,)),
        )
    demos = load_demonstrations("three-v0", root=tmp_path)
    assert demos.n_actions == 3
    assert demos.subset(1).n_actions == 3


def test_load_names_the_episode_with_an_action_outside_the_action_space(tmp_path):
    _write_dataset(tmp_path, "big-v0", actions=[np.zeros(2, np.int64), np.array([1, 4])])
    with pytest.raises(
        DatasetError, match=r"Episode 1 of 'big-v0' has action 4 at step 1, .* 2 actions"
    ):
        load_demonstrations("big-v0", root=tmp_path)


def test_load_reports_a_truncated_data_file(tmp_path):
    path = _write_dataset(tmp_path, "cut-v0", actions=[np.zeros(2, np.int64)] * 2)
    data_file = path / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[:1000])
    with pytest.raises(
        DatasetError, match=r"Cannot read .*'cut-v0'.*sbil collect --overwrite"
    ) as info:
        load_demonstrations("cut-v0", root=tmp_path)
    assert info.value.__suppress_context__


def test_load_reports_empty_metadata(tmp_path):
    path = _write_dataset(tmp_path, "meta-v0", actions=[np.zeros(2, np.int64)])
    (path / "data" / "metadata.json").write_text("{}")
    with pytest.raises(
        DatasetError, match=r"Cannot read the Minari dataset 'meta-v0'.*sbil collect --overwrite"
    ) as info:
        load_demonstrations("meta-v0", root=tmp_path)
    assert "(AssertionError)" in str(info.value)  # no dangling ": " for an empty message


def _write_dataset(root, dataset_id, *, actions):
    """A Discrete(2) dataset with one 2-step episode per entry of ``actions``."""
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    path = _mkdir(root / dataset_id)
    storage = MinariStorage.new(
        path / "data",
        observation_space=gym.spaces.Box(-1, 1, (2,)),
        action_space=gym.spaces.Discrete(2),
    )
    storage.update_metadata({"dataset_id": dataset_id, "minari_version": "0.5.4"})
    storage.update_episodes(
        [
            EpisodeBuffer(
                observations=np.zeros((3, 2), np.float32),
                actions=a,
                rewards=[1.0, 1.0],
                terminations=[False, True],
                truncations=[False, False],
            )
            for a in actions
        ]
    )
    return path


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

    from sbil.deep.data import CollectResult

    result = CollectResult("x-v0", Path("x"), np.array([1.0, 3.0]), n_steps=4)
    assert (result.mean, result.std, result.n_episodes) == (2.0, 1.0, 2)
