"""Sweeps over your own data: a Minari dataset made with Minari's own API (played in the task it
records, normalised by its recorded returns), an env-free .npz (compared on held-out metrics),
their reports, bad data keys refused before anything is written, and sweeps of sbil's experts
unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sbil.experiments.stats import iqm
from sbil.experiments.sweep import SweepError, SweepSpec, groups, load_spec_file, run_sweep
from sbil.experiments.sweep_report import write_sweep_report

BUDGET = """
ks = [1, 2]
seeds = [0, 1]
holdout = 2
every_nth_step = 5
eval_episodes = 3
checkpoint_every = 25

[options]
n_updates = 50
sgld_buffer_size = 100
"""


def _heuristic(obs: np.ndarray) -> int:
    """A CartPole controller (the user's own, not one of sbil's experts)."""
    return int(obs[2] + obs[3] > 0)


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory) -> Path:
    """``me/cartpole/heuristic-v0``: 5 CartPole episodes recorded with ``minari.DataCollector``,
    exactly as Minari's documentation shows (it needs ``minari[create]``, i.e. jax)."""
    pytest.importorskip("jax", reason='minari.DataCollector needs pip install "minari[create]"')
    import gymnasium as gym
    from minari import DataCollector

    root = tmp_path_factory.mktemp("minari")
    env = DataCollector(gym.make("CartPole-v1"))
    for episode in range(5):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(_heuristic(obs))
            done = terminated or truncated
    import os

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)  # where create_dataset writes
    try:
        with pytest.warns(UserWarning):  # Minari asks for an author, a description, ...
            env.create_dataset("me/cartpole/heuristic-v0", algorithm_name="heuristic")
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    env.close()
    return root


def _spec_file(folder: Path, head: str, algos=("bc", "edm", "rcal")) -> Path:
    """A spec file of ``head``'s keys, the learners and :data:`BUDGET` (where head has none)."""
    given = {line.split("=")[0].strip() for line in head.splitlines() if "=" in line}
    budget = [line for line in BUDGET.splitlines() if line.split("=")[0].strip() not in given]
    path = folder / "sweep.toml"
    path.write_text(head + f"\nalgos = {json.dumps(list(algos))}\n" + "\n".join(budget) + "\n")
    return path


def _rows(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "rows").glob("*.json"))]


@pytest.fixture(scope="module")
def minari_sweep(minari_root, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("own")
    shutil.copytree(minari_root, work / "datasets")
    spec = _spec_file(work, 'dataset = "me/cartpole/heuristic-v0"\ndataset_root = "datasets"\n')
    folder = work / "sweeps" / "mine"
    summary = run_sweep(load_spec_file(spec), folder)
    assert (summary.n_cells, summary.done, summary.failed) == (12, 12, 0)
    return folder


def test_a_minari_dataset_made_with_minari_is_swept_in_the_task_it_records(minari_sweep):
    from minari import MinariDataset

    spec = json.loads((minari_sweep / "sweep.json").read_text())["spec"]
    # The task is the one the dataset records; its folder is stored relative to the sweep.
    assert spec["envs"] == ["CartPole-v1"]
    assert spec["datasets"] == {"CartPole-v1": "me/cartpole/heuristic-v0"}
    assert spec["dataset_root"] == "../../datasets"
    assert not {"expert", "expert_noise", "collect_seed", "dataset_episodes"} & set(spec)
    rows = _rows(minari_sweep)
    assert {r["algo"] for r in rows} == {"bc", "edm", "rcal"}
    for row in rows:
        assert row["status"] == "done" and row["env_id"] == "CartPole-v1"
        assert len(row["returns"]) == 3 and row["eval_episodes"] == 3
        held = row["held_out"]
        assert held["n_states"] > 0 and held["action_match"] == row["action_match"]
        assert 0 <= held["auc"] <= 1 and 0 <= held["apr"] <= 1 and held["nll"] > 0
    # The expert level: the dataset's own recorded episode returns (every episode).
    dataset = MinariDataset(minari_sweep.parent.parent / "datasets/me/cartpole/heuristic-v0/data")
    recorded = [float(np.sum(e.rewards)) for e in dataset.iterate_episodes()]
    references = json.loads((minari_sweep / "references.json").read_text())["CartPole-v1"]
    assert references["expert"]["returns"] == recorded
    assert references["expert"]["mean"] == pytest.approx(np.mean(recorded), abs=1e-9)
    assert references["expert"]["source"] == "dataset"
    assert len(references["random"]["returns"]) == 3 and references["random"]["seed"] == 0


def test_its_report_normalises_by_the_recorded_returns(minari_sweep):
    report = write_sweep_report(minari_sweep, n_resamples=50)
    text = report.read_text()
    assert "me/cartpole/heuristic-v0 (recorded returns)" in text
    summary = json.loads((report.parent / "aggregates.json").read_text())
    expert = summary["references"]["CartPole-v1"]["expert"]["mean"]
    random = summary["references"]["CartPole-v1"]["random"]["mean"]
    bc = next(c for c in summary["cells"] if c["variant"] == "bc" and c["k"] == 1)
    rows = [r for r in _rows(minari_sweep) if r["algo"] == "bc" and r["k"] == 1]
    scores = [(r["return_mean"] - random) / (expert - random) for r in rows]
    assert bc["normalised"]["iqm"] == pytest.approx(iqm(np.array(scores)), abs=1e-12)
    assert {"BC", "EDM", "RCAL"} <= {v["name"] for v in summary["variants"]}


def test_moving_the_sweep_with_its_data_keeps_every_cell(minari_sweep, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(minari_sweep.parent.parent, moved, ignore=shutil.ignore_patterns("*.lock"))
    spec = load_spec_file(moved / "sweep.toml")
    summary = run_sweep(spec, moved / "sweeps" / "mine")
    assert (summary.ran_groups, summary.skipped) == (0, 12)


def _cartpole_npz(path: Path, *, with_returns: bool) -> Path:
    """6 CartPole episodes of :func:`_heuristic` as an .npz (optionally with their returns)."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    obs_list, actions, lengths, returns = [], [], [], []
    for episode in range(6):
        obs, _ = env.reset(seed=100 + episode)
        done, total, n = False, 0.0, 0
        while not done and n < 60:  # short episodes keep the test fast
            obs_list.append(obs)
            actions.append(_heuristic(obs))
            obs, reward, terminated, truncated, _ = env.step(actions[-1])
            done, total, n = terminated or truncated, total + reward, n + 1
        lengths.append(n)
        returns.append(total)
    arrays = {"observations": np.array(obs_list), "actions": np.array(actions)}
    arrays["episode_lengths"] = np.array(lengths)
    if with_returns:
        arrays["episode_returns"] = np.array(returns)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("with_returns", [True, False])
def test_an_npz_played_in_a_task_is_normalised_by_its_returns_if_it_has_them(
    tmp_path, with_returns
):
    _cartpole_npz(tmp_path / "pole.npz", with_returns=with_returns)
    spec = _spec_file(tmp_path, 'datasets = {"CartPole-v1" = "pole.npz"}', algos=("bc",))
    summary = run_sweep(load_spec_file(spec), tmp_path / "sweep")
    assert (summary.done, summary.failed) == (4, 0)
    expert = json.loads((tmp_path / "sweep" / "references.json").read_text())["CartPole-v1"][
        "expert"
    ]
    text = write_sweep_report(tmp_path / "sweep", n_resamples=20).read_text()
    if with_returns:
        assert expert["returns"] == [60.0] * 6 and expert["mean"] == 60.0
        assert "pole.npz (recorded returns) | yes" in text
    else:
        assert expert["mean"] is None and "records no episode returns" in expert["problem"]
        assert "records no episode returns" in text


# --- env-free data: held-out metrics only -----------------------------------------------------


def _logged_decisions(path: Path, n_episodes: int = 8) -> Path:
    """Logged binary decisions with no environment: 3 features, action 1 likelier as x0 grows."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(15, 30, size=n_episodes)
    obs = rng.normal(size=(int(lengths.sum()), 3)).astype(np.float32)
    p1 = 1 / (1 + np.exp(-3 * obs[:, 0]))
    actions = (rng.random(len(obs)) < p1).astype(np.int64)
    np.savez(path, observations=obs, actions=actions, episode_lengths=lengths)
    return path


@pytest.fixture(scope="module")
def env_free_sweep(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("free")
    _logged_decisions(work / "icu.npz")
    spec = _spec_file(work, 'dataset = "icu.npz"\nn_actions = 2\n')
    folder = work / "sweep"
    summary = run_sweep(load_spec_file(spec), folder)
    assert (summary.n_cells, summary.done, summary.failed) == (12, 12, 0)
    return folder


def test_env_free_data_trains_and_is_measured_on_held_out_metrics(env_free_sweep):
    from sbil.deep.checkpoint import load_learner
    from sbil.deep.metrics import policy_held_out_metrics
    from sbil.experiments.runs import load_npz_demonstrations

    spec = json.loads((env_free_sweep / "sweep.json").read_text())["spec"]
    assert spec["env_free"] is True and spec["envs"] == ["icu"]
    assert spec["datasets"] == {"icu": "../icu.npz"}
    assert not (env_free_sweep / "references.json").exists()  # no return to anchor
    demos = load_npz_demonstrations(env_free_sweep.parent / "icu.npz", None)
    held_out = demos.select(range(demos.n_episodes - 2, demos.n_episodes))
    for row in _rows(env_free_sweep):
        assert row["status"] == "done" and row["env_id"] == "icu"
        assert row["returns"] == [] and row["return_mean"] is None and row["eval_episodes"] == 0
        held = row["held_out"]
        assert held["n_states"] == held_out.n_steps and held["averaging"].startswith("binary")
        learner = load_learner(env_free_sweep / row["run_dir"] / f"seed-{row['seed']}")
        assert held == policy_held_out_metrics(learner, held_out).to_dict()


def test_the_env_free_report_says_no_return_was_measured_and_ranks_on_the_metric(
    env_free_sweep,
):
    report = write_sweep_report(env_free_sweep, n_resamples=50)
    text = report.read_text()
    assert "**No return was measured.**" in text
    assert "computed on the **action match (ACC)**" in text
    assert "normalised score (random policy 0" not in text
    for name in ("BC", "EDM", "RCAL"):
        assert f"| {name} | 1 | 2 |" in text
    summary = json.loads((report.parent / "aggregates.json").read_text())
    rows = _rows(env_free_sweep)
    for metric in ("action_match", "nll", "auc", "apr"):
        cell = next(c for c in summary["cells"] if c["variant"] == "edm" and c["k"] == 2)
        values = [r["held_out"][metric] for r in rows if r["algo"] == "edm" and r["k"] == 2]
        assert cell[metric]["iqm"] == pytest.approx(iqm(np.array(values)), abs=1e-12)
    assert summary["claim"]["verdicts"][0]["x"] == "edm"
    assert (report.parent / "rows.csv").is_file()


def test_an_env_free_sweep_can_rank_on_the_nll_lower_first(env_free_sweep, tmp_path):
    folder = tmp_path / "nll"
    shutil.copytree(env_free_sweep, folder, ignore=shutil.ignore_patterns("report", "*.lock"))
    shutil.copy(env_free_sweep.parent / "icu.npz", tmp_path / "icu.npz")
    stored = json.loads((folder / "sweep.json").read_text())
    stored["spec"]["held_out_metric"] = "nll"
    (folder / "sweep.json").write_text(json.dumps(stored))
    from sbil.experiments.held_out_report import summarise_held_out_sweep

    summary = summarise_held_out_sweep(folder, n_resamples=50)
    rows = _rows(folder)
    nll = {
        a: np.mean([r["held_out"]["nll"] for r in rows if r["algo"] == a]) for a in ("bc", "edm")
    }
    entry = next(
        e for e in summary["improvement"] if (e["x"], e["y"], e["scope"]) == ("edm", "bc", "all")
    )
    # P(EDM > BC) on the NLL counts a lower NLL as better.
    assert (entry["p"] > 0.5) == (nll["edm"] < nll["bc"]) or entry["p"] == 0.5
    assert summary["metric"] == {
        "name": "nll",
        "label": "NLL of the expert's actions (nats)",
        "higher_is_better": False,
    }


@pytest.mark.filterwarnings("ignore::UserWarning")  # Minari's advice on metadata, eval_env
def test_an_env_free_minari_dataset_made_without_jax(tmp_path, monkeypatch):
    """A Minari dataset with no environment, made with Minari's lowest-level public API
    (``EpisodeBuffer`` + ``create_dataset_from_buffers``, no jax): an env-free sweep."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(1)
    buffers = []
    for e in range(5):
        n = int(rng.integers(10, 20))
        obs = rng.normal(size=(n + 1, 2)).astype(np.float32)
        buffers.append(
            EpisodeBuffer(
                id=e,
                observations=list(obs),
                actions=[int(x > 0) for x in obs[:-1, 0]],
                rewards=[0.0] * n,
                terminations=[False] * (n - 1) + [True],
                truncations=[False] * n,
            )
        )
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    minari.create_dataset_from_buffers(
        "me/logged-v0",
        buffers,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        action_space=gym.spaces.Discrete(2),
        algorithm_name="logged",
    )
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    spec = _spec_file(
        tmp_path, 'dataset = "me/logged-v0"\ndataset_root = "datasets"\n', algos=("bc", "edm")
    )
    loaded = load_spec_file(spec)
    assert loaded.env_free and loaded.envs == ("me-logged-v0",)
    summary = run_sweep(loaded, tmp_path / "sweep")
    assert (summary.done, summary.failed) == (8, 0)
    assert (
        "No return was measured"
        in write_sweep_report(tmp_path / "sweep", n_resamples=20).read_text()
    )


def test_adding_a_dataset_extends_a_finished_sweep(tmp_path):
    _logged_decisions(tmp_path / "a.npz")
    _logged_decisions(tmp_path / "b.npz", n_episodes=6)
    head = 'env_free = true\nn_actions = 2\ndatasets = {a = "a.npz"%s}'
    first = run_sweep(
        load_spec_file(_spec_file(tmp_path, head % "", algos=("bc",))), tmp_path / "s"
    )
    assert first.done == 4
    spec = load_spec_file(_spec_file(tmp_path, head % ', b = "b.npz"', algos=("bc",)))
    second = run_sweep(spec, tmp_path / "s")
    assert (second.skipped, second.done) == (4, 4)
    # A task whose source changed is another sweep.
    changed = load_spec_file(_spec_file(tmp_path, head.replace("a.npz", "b.npz") % "", ("bc",)))
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(changed, tmp_path / "s")


def test_a_preset_with_own_data_takes_the_presets_budget(tmp_path):
    _logged_decisions(tmp_path / "icu.npz")
    (tmp_path / "q.toml").write_text('preset = "quick"\ndataset = "icu.npz"\nn_actions = 2\n')
    spec = load_spec_file(tmp_path / "q.toml")
    assert spec.envs == ("icu",) and spec.env_free and spec.preset == "quick"
    assert spec.options["n_updates"] == 300 and spec.datasets == {"icu": str(tmp_path / "icu.npz")}


# --- bad keys: refused before anything is written -----------------------------------------------


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ('dataset_rot = "x"\ndataset = "icu.npz"\nn_actions = 2', "Unknown sweep keys"),
        ('datasets = {"CartPol-v1" = "icu.npz"}', "the key 'CartPol-v1' is the Gymnasium task"),
        ('datasets = {"CartPole-v1" = "icu.npz"}\nenvs = ["Acrobot-v1"]', "leave envs out"),
        ('dataset = "icu.npz"', "give n_actions"),
        ('dataset = "missing.npz"\nn_actions = 2', "does not exist"),
        ('dataset = "no/such-v0"\ndataset_root = "."', "No local Minari dataset 'no/such-v0'"),
        ('dataset = "not an id"', "Malformed dataset id"),
        ('dataset = "icu.npz"\nn_actions = 2\nexpert = "sb3-ppo"', "leave expert out"),
        ('envs = ["CartPole-v1"]\nenv_free = true', "env_free = true needs datasets"),
        ('dataset = "icu.npz"\nn_actions = 2\nheld_out_metric = "f1"', "held_out_metric"),
        ('dataset = "icu.npz"\nn_actions = 1', "n_actions must be an integer >= 2"),
        ('dataset = "icu.npz"\ndatasets = {a = "icu.npz"}', "not both"),
        ('datasets = {"a b" = "icu.npz"}\nenv_free = true\nn_actions = 2', "task name"),
        ('datasets = {"CartPole-v1" = "icu.npz"}\nn_actions = 2', "leave n_actions out"),
        ('dataset = "icu.npz"\nn_actions = 2\nholdout = 0', "holdout must be >= 1"),
        ('datasets = {"CartPole-v1" = "icu.npz"}', "observations of size 3 but CartPole-v1"),
        ('dataset = "few.npz"\nn_actions = 2', "fewer than max(ks) + holdout = 4"),
    ],
)
def test_bad_data_keys_are_refused_before_anything_is_written(tmp_path, head, message):
    _logged_decisions(tmp_path / "icu.npz")
    _logged_decisions(tmp_path / "few.npz", n_episodes=3)
    spec = _spec_file(tmp_path, head)
    folder = tmp_path / "sweep"
    with pytest.raises(SweepError, match=__import__("re").escape(message)) as error:
        run_sweep(load_spec_file(spec), folder)
    assert "\n" not in str(error.value)
    assert not folder.exists()


def test_sbil_sweep_refuses_bad_data_in_one_line(tmp_path):
    from sbil.cli import _register, app

    _register()
    spec = _spec_file(tmp_path, 'datasets = {"CartPol-v1" = "me/x-v0"}')
    result = CliRunner().invoke(app, ["sweep", "--spec", str(spec), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "CartPol-v1" in line and "env_free = true" in line
    assert not (tmp_path / "s").exists()


# --- sweeps of sbil's experts: unchanged ---------------------------------------------------------


def test_a_sweep_of_sbils_experts_keeps_its_description_ids_and_hashes():
    tiny = {
        "envs": ["CartPole-v1"],
        "ks": [1, 2],
        "algos": ["bc", "edm"],
        "seeds": [0, 1],
        "windows": "sliding",
        "holdout": 1,
        "every_nth_step": 5,
        "eval_episodes": 3,
        "options": {"n_updates": 30, "sgld_buffer_size": 100},
        "checkpoint_every": 10,
    }
    spec = SweepSpec.from_dict(tiny)
    expert_keys = ["expert", "expert_noise", "collect_seed", "dataset_episodes"]
    assert sorted(spec.to_dict()) == sorted([*tiny, "eval_seed", "grid", "preset", *expert_keys])
    # As computed by sbil before own data existed (commit c85784b).
    assert {g.group_id: g.config_hash(0)[:16] for g in groups(spec, Path("/somewhere"))} == {
        "CartPole-v1__edm__k1__305c07e2": "b8a12474b2206542",
        "CartPole-v1__bc__k1__3d0eab20": "4a8a3089ee37c4bd",
        "CartPole-v1__edm__k2__30c29578": "8bc51532b34e4e6a",
        "CartPole-v1__bc__k2__15b827b1": "07e4348fa9c8bed3",
    }
    assert not any(g.held_out_metrics for g in groups(spec, Path("/somewhere")))
