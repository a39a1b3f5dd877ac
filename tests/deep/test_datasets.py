"""Tests for sbil.deep.datasets: Minari ids, folders and reading datasets as demonstrations."""

from __future__ import annotations

import numpy as np
import pytest

from sbil.deep.collection import collect
from sbil.deep.datasets import check_dataset_id, default_dataset_id, load_demonstrations
from sbil.deep.demonstrations import DatasetError


def test_dataset_ids_follow_minari_rules():
    assert default_dataset_id("CartPole-v1", "scripted") == "sbil/cartpole/scripted-v0"
    assert default_dataset_id("LunarLander-v3", "sb3-ppo") == "sbil/lunarlander/sb3-ppo-v0"
    for bad in ["no-version", "sbil/cart pole-v0", "", "a/b/-v0x"]:
        with pytest.raises(DatasetError, match="Malformed dataset id"):
            check_dataset_id(bad)


def test_minari_finds_the_dataset_through_its_environment_variable(tmp_path, monkeypatch):
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    info = collect("MountainCar-v0", 2, dataset_id="mc-v1")  # root from the variable
    dataset = minari.load_dataset("mc-v1")
    assert dataset.total_episodes == 2 and dataset.total_steps == info.n_steps
    assert load_demonstrations("mc-v1").n_episodes == 2


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
