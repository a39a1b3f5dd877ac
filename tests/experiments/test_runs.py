"""The run API under `sbil train` and the sweep: RunSpec, trajectory windows, thinning, the run
folder (claimed, resumed) and the data it loads. Tiny budgets throughout."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig
from sbil.experiments import runs
from sbil.experiments.runs import (
    RunError,
    RunSpec,
    every_nth_step,
    load_outcome,
    load_spec,
    run_training,
    training_episodes,
)

BC = LearnerConfig(algo="bc", n_updates=3, batch_size=4, hidden_sizes=(8,))


def _npz(path, *, n_episodes=4, length=5, obs_dim=3):
    """An .npz of ``n_episodes`` episodes; each observation's first entry is its episode."""
    rng = np.random.default_rng(0)
    n = n_episodes * length
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    obs[:, 0] = np.repeat(np.arange(n_episodes), length)
    np.savez(
        path, observations=obs, actions=np.arange(n) % 2, episode_lengths=[length] * n_episodes
    )
    return path


def _spec(path, **changes) -> RunSpec:
    fields = {"learner": BC, "seeds": (0, 1), "data": str(path), "n_actions": 2}
    return RunSpec(**{**fields, **changes})


# --- RunSpec --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": None}, "exactly one of --dataset"),
        ({"dataset": "sbil/cartpole/scripted-v0"}, "exactly one of --dataset"),
        ({"windows": "middle"}, "--windows must be one of first, sliding, random"),
        ({"episodes": 0}, "--episodes must be an integer >= 1"),
        ({"episodes": 2.0}, "--episodes must be an integer >= 1"),
        ({"holdout": -1}, "--holdout must be an integer >= 0"),
        ({"every_nth_step": 0}, "--every-nth-step must be an integer >= 1"),
        ({"eval_episodes": -1}, "--eval-episodes must be an integer >= 0"),
        ({"eval_seed": True}, "--eval-seed must be an integer >= 0"),
        ({"threads": 0}, "--threads must be an integer >= 1"),
        ({"checkpoint_every": 0}, "--checkpoint-every must be an integer >= 1"),
        ({"n_actions": 1}, "--n-actions must be an integer >= 2"),
        ({"eval_seed": 2**32 - 1, "eval_episodes": 2}, "uses seeds up to 4294967296"),
        ({"eval_seed": 2**32}, "--eval-seed must be an integer in 0..4294967295"),
        ({"learner": "bc"}, "learner must be a LearnerConfig"),
    ],
)
def test_run_spec_refuses_bad_fields(tmp_path, changes, message):
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _spec(tmp_path / "d.npz", **changes)


def test_run_spec_refuses_bad_seeds(tmp_path):
    with pytest.raises(ValueError, match=r"distinct.*\[3\]"):
        _spec(tmp_path / "d.npz", seeds=(3, 1, 3))
    with pytest.raises(ValueError, match="at least one seed"):
        _spec(tmp_path / "d.npz", seeds=())
    with pytest.raises(ValueError, match=r"0\.\.4294967295"):
        _spec(tmp_path / "d.npz", seeds=(2**32,))


def test_run_spec_round_trips_through_json_and_refuses_unknown_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _spec(
        "d.npz",  # relative: stored absolute, so the spec means the same file from anywhere
        seeds=(4, 2),
        episodes=2,
        windows="sliding",
        holdout=1,
        every_nth_step=3,
        eval_episodes=5,
        eval_seed=7,
        env_id="CartPole-v1",
        learner=LearnerConfig(algo="edm", n_updates=9, hidden_sizes=(5, 6), sgld_noise=0.1),
    )
    assert spec.data == str(tmp_path / "d.npz")
    doc = json.loads(json.dumps(spec.to_dict()))
    assert doc["seeds"] == [4, 2] and doc["learner"]["hidden_sizes"] == [5, 6]
    again = RunSpec.from_dict(doc)
    assert again == spec and again.learner == spec.learner and again.seeds == (4, 2)
    assert again.digest() == spec.digest()
    with pytest.raises(RunError, match=r"Unknown run description keys \['colour'\]"):
        RunSpec.from_dict({**doc, "colour": "red"})
    with pytest.raises(ValueError, match="Unknown learner config keys"):
        RunSpec.from_dict({**doc, "learner": {**doc["learner"], "dropout": 0.5}})
    with pytest.raises(RunError, match="must be a JSON object"):
        RunSpec.from_dict([doc])


def test_digest_is_stable_and_changes_with_every_field(tmp_path):
    spec = _spec(tmp_path / "d.npz")
    digest = spec.digest()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert _spec(tmp_path / "d.npz").digest() == digest  # built twice: the same run
    changed = [
        {"seeds": (0, 2)},
        {"seeds": (1, 0)},  # the order of the learners is part of the run
        {"episodes": 1},
        {"windows": "sliding"},
        {"holdout": 0},
        {"every_nth_step": 2},
        {"eval_episodes": 1},
        {"learner": LearnerConfig(algo="bc", n_updates=4, batch_size=4, hidden_sizes=(8,))},
        {"data": str(tmp_path / "e.npz")},
    ]
    digests = {_spec(tmp_path / "d.npz", **c).digest() for c in changed}
    assert digest not in digests and len(digests) == len(changed)


# --- which trajectories each seed trains on -------------------------------------------------


def test_first_windows_are_the_first_k_for_every_seed():
    for seed in (0, 3, 2**32 - 1):
        assert training_episodes("first", k=3, seed=seed, pool=10).tolist() == [0, 1, 2]


def test_sliding_windows_start_at_the_seed_and_wrap_around_the_pool():
    assert training_episodes("sliding", k=3, seed=0, pool=10).tolist() == [0, 1, 2]
    assert training_episodes("sliding", k=3, seed=4, pool=10).tolist() == [4, 5, 6]
    assert training_episodes("sliding", k=3, seed=8, pool=10).tolist() == [8, 9, 0]
    assert training_episodes("sliding", k=3, seed=25, pool=10).tolist() == [5, 6, 7]
    assert training_episodes("sliding", k=4, seed=3, pool=4).tolist() == [3, 0, 1, 2]
    big = training_episodes("sliding", k=2, seed=2**32 - 1, pool=7)
    assert big.tolist() == [(2**32 - 1) % 7, ((2**32 - 1) % 7 + 1) % 7]
    assert big.dtype == np.int64


def test_random_windows_are_a_reproducible_draw_of_distinct_episodes():
    draws = [training_episodes("random", k=3, seed=s, pool=10) for s in range(20)]
    for seed, draw in enumerate(draws):
        assert draw.dtype == np.int64 and draw.shape == (3,)
        assert np.all(np.diff(draw) > 0) and 0 <= draw.min() and draw.max() < 10
        again = training_episodes("random", k=3, seed=seed, pool=10)
        assert np.array_equal(again, draw)
    # 120 possible draws: twenty seeds drawing one and the same would mean the seed is ignored.
    assert len({tuple(d) for d in draws}) > 5
    assert training_episodes("random", k=10, seed=5, pool=10).tolist() == list(range(10))


@pytest.mark.parametrize("windows", ["first", "sliding", "random"])
def test_more_trajectories_than_the_pool_are_refused(windows):
    with pytest.raises(RunError, match="--episodes 11 asks for more trajectories than the 10"):
        training_episodes(windows, k=11, seed=0, pool=10)
    with pytest.raises(RunError, match="--episodes 0"):
        training_episodes(windows, k=0, seed=0, pool=10)


def test_unknown_windows_are_refused():
    with pytest.raises(RunError, match="--windows must be one of"):
        training_episodes("last", k=1, seed=0, pool=3)


# --- thinning ---------------------------------------------------------------------------------


def _demos(lengths):
    n = sum(lengths)
    obs = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    return from_arrays(obs, np.arange(n) % 3, episode_lengths=lengths, n_actions=3)


def test_every_nth_step_keeps_steps_0_n_2n_of_each_episode():
    demos = _demos([5, 3])
    thinned = every_nth_step(demos, 2)
    assert thinned.observations[:, 0].tolist() == [0, 2, 4, 5, 7]
    assert thinned.actions.tolist() == [0, 2, 1, 2, 1]
    assert thinned.episode_lengths.tolist() == [3, 2]
    assert thinned.n_actions == 3
    assert every_nth_step(demos, 1) is demos
    firsts = every_nth_step(demos, 20)  # longer than every episode: each episode's first step
    assert firsts.observations[:, 0].tolist() == [0, 5] and firsts.episode_lengths.tolist() == [
        1,
        1,
    ]


# --- data sources -----------------------------------------------------------------------------


def test_npz_data_errors_name_the_file(tmp_path):
    with pytest.raises(RunError, match=f"--data {tmp_path} is a folder; give the .npz file"):
        runs.load_npz_demonstrations(tmp_path, None)
    with pytest.raises(RunError, match="does not exist"):
        runs.load_npz_demonstrations(tmp_path / "missing.npz", None)
    np.savez(tmp_path / "a.npz", observations=np.zeros((3, 2)))
    with pytest.raises(RunError, match=r"lacks \['actions'\]"):
        runs.load_npz_demonstrations(tmp_path / "a.npz", None)


class _Demos:
    """A stand-in for Demonstrations with a declared action count (from a Minari space)."""

    def __init__(self, n_actions, actions=(0, 1, 0)):
        self.n_actions = n_actions
        self.actions = np.asarray(actions)

    def check_env(self, env_id):
        from sbil.deep.envs import env_spec

        return env_spec(env_id)


def test_a_declared_action_count_wins_over_the_data_and_must_agree():
    declared = from_arrays(np.zeros((3, 2), np.float32), np.array([0, 1, 0]), n_actions=5)
    assert runs.resolve_n_actions(declared, None, None) == 5  # not 2 = max action + 1
    assert runs.resolve_n_actions(_Demos(5), None, None) == 5
    assert runs.resolve_n_actions(_Demos(None), "Acrobot-v1", None) == 3
    assert runs.resolve_n_actions(_Demos(3), "Acrobot-v1", 3) == 3
    with pytest.raises(RunError, match=r"dataset's action space \(3 actions\) vs CartPole-v1"):
        runs.resolve_n_actions(_Demos(3), "CartPole-v1", None)
    with pytest.raises(RunError, match="has action 4 but the task has 3 actions"):
        runs.resolve_n_actions(_Demos(None, actions=(0, 4)), None, 3)
    with pytest.raises(RunError, match="pass --env ID or --n-actions N"):
        runs.resolve_n_actions(_Demos(None), None, None)


def test_load_run_data_selects_each_seeds_episodes_and_holds_out_the_rest(tmp_path):
    data = _npz(tmp_path / "d.npz", n_episodes=6)
    run = runs.load_run_data(_spec(data, seeds=(0, 1, 2), episodes=2, windows="sliding"))
    assert run.train_episodes == {0: [0, 1], 1: [1, 2], 2: [2, 3]}
    assert run.held_out == [4, 5]  # by default: every episode that no seed trains on
    for seed, demos in zip((0, 1, 2), run.per_seed, strict=True):
        assert sorted(set(demos.observations[:, 0].tolist())) == run.train_episodes[seed]
    assert sorted(set(run.held_out_demos.observations[:, 0].tolist())) == [4, 5]
    assert run.held_out_demos.n_steps == 10 and run.n_actions == 2

    held = runs.load_run_data(_spec(data, seeds=(3, 4), episodes=2, windows="sliding", holdout=2))
    assert held.train_episodes == {3: [3, 0], 4: [0, 1]}  # windows wrap within the pool 0..3
    assert held.held_out == [4, 5]

    thinned = runs.load_run_data(_spec(data, every_nth_step=2, holdout=1))
    assert thinned.per_seed[0].n_steps == 5 * 3  # episodes 0..4, steps 0, 2, 4 of each
    assert thinned.held_out_demos.n_steps == 5  # the held-out episode is matched on every step

    with pytest.raises(RunError, match="--holdout 6 leaves no episode to train on"):
        runs.load_run_data(_spec(data, holdout=6))
    with pytest.raises(RunError, match="--episodes 5 asks for more trajectories than the 4"):
        runs.load_run_data(_spec(data, holdout=2, episodes=5))


# --- the run folder ---------------------------------------------------------------------------


def _mtimes(folder):
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def no_training(monkeypatch):
    """Make training fail loudly: what follows must not train."""
    from sbil.deep import learners

    def boom(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(learners, "train", boom)


def test_a_finished_run_is_written_and_resumed_as_it_is(tmp_path, monkeypatch):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    spec = _spec(data, episodes=2, windows="sliding")
    first = run_training(spec, out)
    assert not first.resumed and runs.is_complete(out) and not (out / ".state").exists()
    assert [s.status for s in first.seeds] == ["done", "done"]
    assert [s.train_episodes for s in first.seeds] == [[0, 1], [1, 2]]
    assert first.held_out_episodes == 1 and first.held_out_states == 5  # episode 3
    assert load_spec(out) == spec
    before = _mtimes(out)
    assert {"config.json", "results.json", "losses.npz", "seed-0/weights.pt"} <= set(before)

    from sbil.deep import learners

    monkeypatch.setattr(learners, "train", lambda *a, **k: pytest.fail("retrained"))
    again = run_training(spec, out, resume=True)
    assert again.resumed and again.seeds == first.seeds and again.spec == spec
    assert again.train_seconds == first.train_seconds
    assert _mtimes(out) == before  # nothing rewritten
    assert load_outcome(out).seeds == first.seeds

    with pytest.raises(RunError, match="already holds a finished run; pass --resume"):
        run_training(spec, out)
    assert _mtimes(out) == before


def test_a_run_with_another_description_is_not_resumed(tmp_path, no_training):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    out.mkdir()
    spec = _spec(data)
    (out / "config.json").write_text(json.dumps({"spec": spec.to_dict(), "resolved": {}}))
    before = _mtimes(out)
    with pytest.raises(RunError, match="holds a run with a different description"):
        run_training(_spec(data, seeds=(0, 1, 2)), out, resume=True)
    with pytest.raises(RunError, match="already holds an interrupted run; pass --resume"):
        run_training(spec, out)
    assert _mtimes(out) == before


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    import torch

    from sbil.deep.checkpoint import load_learner

    data = _npz(tmp_path / "d.npz")
    spec = _spec(
        data,
        learner=LearnerConfig(
            algo="edm", n_updates=40, batch_size=4, hidden_sizes=(8,), sgld_buffer_size=50
        ),
        checkpoint_every=10,
        holdout=1,
    )
    reference = run_training(spec, tmp_path / "reference")

    def interrupt(done, total):  # a kill at update 27: the state of update 20 is on disk
        if done == 27:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, out, progress=interrupt)
    assert not runs.is_complete(out) and list((out / ".state").iterdir())
    seen = []
    resumed = run_training(spec, out, resume=True, progress=lambda done, total: seen.append(done))
    assert resumed.resumed and not (out / ".state").exists()
    assert seen[0] == 21 and seen[-1] == 40  # continued from update 20, not from the start
    for seed in spec.seeds:
        a = load_learner(tmp_path / "reference" / f"seed-{seed}").policy_state
        b = load_learner(out / f"seed-{seed}").policy_state
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with np.load(out / "losses.npz") as x, np.load(tmp_path / "reference" / "losses.npz") as y:
        assert np.array_equal(x["loss"], y["loss"], equal_nan=True)
    assert [s.action_match for s in resumed.seeds] == [s.action_match for s in reference.seeds]


def test_a_diverged_seed_is_failed_and_never_saved(tmp_path):
    data = _npz(tmp_path / "d.npz")
    config = LearnerConfig(algo="edm", n_updates=5, batch_size=4, learning_rate=1e8)
    spec = _spec(data, learner=config, seeds=(0,), holdout=1)
    with pytest.raises(Exception, match=r"at update \d+ of 5; the learning rate 1e\+08"):
        run_training(spec, tmp_path / "stop")
    assert not runs.is_complete(tmp_path / "stop")
    assert not list((tmp_path / "stop").glob("seed-*"))
    outcome = run_training(spec, tmp_path / "go", stop_on_divergence=False)
    (failed,) = outcome.seeds
    assert failed.status == "failed" and failed.checkpoint is None
    assert "diverged" in failed.error and "was not saved" in failed.error
    assert not list((tmp_path / "go").glob("seed-*"))


def test_claimed_folders(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        runs.claim_run_folder(tmp_path / "file", overwrite=False, resume=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(RunError, match="not an sbil training run"):
            runs.claim_run_folder(other, overwrite=overwrite, resume=False)
    assert (other / "notes.txt").read_text() == "mine"
    monkeypatch.chdir(other)
    for folder in (".", "..", str(tmp_path)):
        with pytest.raises(RunError, match="is the current folder or one of its parents"):
            runs.claim_run_folder(folder, overwrite=True, resume=False)
    assert runs.claim_run_folder(tmp_path / "new" / "run", overwrite=False, resume=False).is_dir()
    with pytest.raises(RunError, match=r"has no config\.json"):
        load_spec(other)
    assert os.listdir(other) == ["notes.txt"]


def test_npz_with_final_observations_gives_transitions(tmp_path):
    obs = np.arange(10, dtype=np.float32).reshape(5, 2)
    path = tmp_path / "t.npz"
    np.savez(
        path,
        observations=obs,
        actions=np.array([0, 1, 1, 0, 1]),
        episode_lengths=np.array([2, 3]),
        final_observations=np.array([[100.0, 101.0], [200.0, 201.0]]),
        terminated=np.array([False, True]),
    )
    demos = runs.load_npz_demonstrations(path, None)
    np.testing.assert_array_equal(demos.next_observations[1], [100.0, 101.0])
    np.testing.assert_array_equal(demos.next_observations[0], obs[1])
    assert demos.terminals.tolist() == [False, False, False, False, True]
    assert demos.next_actions.tolist() == [1, -1, 0, 1, -1]
    # every step of both episodes is a transition: the first episode's final state is known
    assert demos.transition_rows().tolist() == [0, 1, 2, 3, 4]
    # AVRIL also needs the next action: the truncated episode's last step is dropped
    assert demos.transition_rows(need_next_action=True).tolist() == [0, 2, 3, 4]
    np.savez(path, observations=obs, actions=np.zeros(5), final_observations=np.zeros((3, 2)))
    with pytest.raises(Exception, match="final_observations must be"):
        runs.load_npz_demonstrations(path, None)


# --- in-memory demonstrations -----------------------------------------------------------------


def test_path_based_digests_are_unchanged():
    # Pinned: a run folder's and a sweep cell's identity must not move with new RunSpec fields.
    spec = RunSpec(learner=BC, seeds=(0, 1), data="/data/d.npz", n_actions=2)
    assert spec.digest() == "992344f81b9451a94878bbca6866603a43b9665eaac626188c4d38e4b02dd3d2"
    spec = RunSpec(
        learner=BC,
        seeds=(0, 1),
        dataset="sbil/cartpole/scripted-v0",
        root="/data/minari",
        env_id="CartPole-v1",
        episodes=3,
        windows="sliding",
    )
    assert spec.digest() == "c269d543456df80fa0e3b00cd76a48ed64f5767e80aefa11d64adee4701d3f6e"


def _loaded(tmp_path, **kwargs):
    return runs.load_npz_demonstrations(_npz(tmp_path / "source.npz", **kwargs), None)


def test_in_memory_demonstrations_are_saved_in_the_run_and_recorded(tmp_path, monkeypatch):
    demos = _loaded(tmp_path)
    spec = RunSpec(learner=BC, seeds=(0, 1), data=demos, n_actions=2, episodes=2)
    assert spec.in_memory and spec.data is demos
    with pytest.raises(RunError, match="in-memory demonstrations has no JSON form"):
        spec.digest()
    out = tmp_path / "run"
    outcome = run_training(spec, out)
    saved = out / runs.DEMONSTRATIONS_FILE
    assert outcome.spec.data == str(saved) and load_spec(out) == outcome.spec
    assert runs.same_transitions(runs.load_npz_demonstrations(saved, None), demos)
    assert runs.is_run_folder(out)  # the saved file is one of the run's own
    # The same run from the file itself: the same description, so the same figures.
    by_path = run_training(dataclasses.replace(spec, data=tmp_path / "source.npz"), tmp_path / "p")
    assert [s.final_loss for s in by_path.seeds] == [s.final_loss for s in outcome.seeds]

    from sbil.deep import learners

    monkeypatch.setattr(learners, "train", lambda *a, **k: pytest.fail("retrained"))
    again = run_training(spec, out, resume=True)  # the same demonstrations: found finished
    assert again.resumed and again.seeds == outcome.seeds
    assert run_training(load_spec(out), out, resume=True).seeds == outcome.seeds
    other = runs.load_npz_demonstrations(_npz(tmp_path / "other.npz", length=6), None)
    with pytest.raises(RunError, match="trained on other demonstrations than these"):
        run_training(dataclasses.replace(spec, data=other), out, resume=True)


def test_in_memory_demonstrations_keep_their_task_action_count_and_transitions(tmp_path):
    from sbil.deep.data import from_arrays

    rng = np.random.default_rng(1)
    demos = from_arrays(
        rng.normal(size=(12, 4)).astype(np.float32),
        np.arange(12) % 2,
        episode_lengths=[5, 7],
        env_id="CartPole-v1",
        n_actions=2,
        final_observations=rng.normal(size=(2, 4)),
        terminated=[True, False],
    )
    spec = RunSpec(learner=BC, seeds=(0,), data=demos)
    outcome = run_training(spec, tmp_path / "run")
    assert outcome.spec.env_id == "CartPole-v1" and outcome.spec.n_actions == 2
    with np.load(tmp_path / "run" / runs.DEMONSTRATIONS_FILE) as saved:
        assert set(saved.files) == set(runs.NPZ_ARRAYS)
        assert saved["terminated"].tolist() == [True, False]


def test_in_memory_demonstrations_that_an_npz_cannot_hold_are_refused(tmp_path):
    thinned = every_nth_step(_loaded(tmp_path), 2)  # next states are not the following rows
    out = tmp_path / "run"
    with pytest.raises(RunError, match=r"cannot be saved as an \.npz that reads back the same"):
        run_training(RunSpec(learner=BC, seeds=(0,), data=thinned, n_actions=2), out)
    assert not (out / "config.json").exists() and not (out / runs.DEMONSTRATIONS_FILE).exists()
    with pytest.raises(RunError, match=r"data must be the path of an \.npz or Demonstrations"):
        RunSpec(learner=BC, seeds=(0,), data=np.zeros((3, 2)))


def test_decoupled_edm_given_its_bc_twin_writes_a_full_run_s_files_and_resumes(tmp_path):
    import torch

    from sbil.deep.checkpoint import load_learner

    data = _npz(tmp_path / "d.npz")
    learner = LearnerConfig(
        algo="edm-decoupled", n_updates=40, batch_size=4, hidden_sizes=(8,), sgld_buffer_size=50
    )
    spec = _spec(data, learner=learner, checkpoint_every=10, holdout=1)
    twin = runs.policy_twin(spec)
    assert twin.learner.algo == "bc" and twin.learner.sgld_buffer_size == 50
    assert runs.policy_twin(twin) is None
    reference = run_training(spec, tmp_path / "reference")  # trained in full
    run_training(twin, tmp_path / "bc")
    with pytest.raises(RunError, match="not bc"):
        run_training(twin, tmp_path / "bc-again", policy_from=tmp_path / "bc")
    assert not (tmp_path / "bc-again").exists()  # refused before anything is written

    def interrupt(done, total):  # a kill at update 27: the state of update 20 is on disk
        if done == 27:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, out, progress=interrupt, policy_from=tmp_path / "bc")
    resumed = run_training(spec, out, resume=True, policy_from=tmp_path / "bc")
    assert json.loads((out / "results.json").read_text())["policy_from"] == "../bc"
    assert "the policy is BC's" in (out / "log.txt").read_text()
    for seed in spec.seeds:  # the checkpoint sbil evaluate reads: both networks, a full run's
        a, b = (
            load_learner(tmp_path / "reference" / f"seed-{seed}"),
            load_learner(out / f"seed-{seed}"),
        )
        for x, y in ((a.policy_state, b.policy_state), (a.energy_state, b.energy_state)):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    with np.load(out / "losses.npz") as x, np.load(tmp_path / "reference" / "losses.npz") as y:
        assert x.files == y.files
        assert all(np.array_equal(x[n], y[n]) for n in x.files)
    assert [s.to_dict() for s in resumed.seeds] == [s.to_dict() for s in reference.seeds]
    # Another run's folder is no twin: the run trains in full, with the same results.
    other = run_training(spec, tmp_path / "other", policy_from=tmp_path / "reference")
    assert "not this run's BC twin" in (tmp_path / "other" / "log.txt").read_text()
    assert [s.to_dict() for s in other.seeds] == [s.to_dict() for s in reference.seeds]
