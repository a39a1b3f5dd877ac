"""The training loop: resume after SIGKILL/SIGTERM bit for bit, divergence, per-seed data,
memory refusal, starting weights and snapshots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import (
    LearnerConfig,
    LearnerInputError,
    TrainingDiverged,
    TrainingInterrupted,
    train,
)

CONFIG = LearnerConfig(algo="edm", n_updates=300, sgld_buffer_size=200, batch_size=16)


def _data(n=200, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    obs = (rng.normal(size=(n, 4)) * scale).astype(np.float32)
    return from_arrays(obs, (obs[:, 2] > 0).astype(np.int64), n_actions=2)


def _equal(a, b) -> None:
    assert np.array_equal(a.loss, b.loss, equal_nan=True)
    assert np.array_equal(a.rho, b.rho, equal_nan=True)
    for name in a.policy_state:
        assert torch.equal(a.policy_state[name], b.policy_state[name]), name


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from sbil.deep.data import from_arrays
    from sbil.deep.learners import LearnerConfig, train

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(200, 4)).astype(np.float32)
    demos = from_arrays(obs, (obs[:, 2] > 0).astype(np.int64), n_actions=2)
    config = LearnerConfig(algo="edm", n_updates=300, sgld_buffer_size=200, batch_size=16)

    def progress(done, total):
        print(done, flush=True)

    train(demos, config, seeds=[0, 1], state_dir=sys.argv[1], checkpoint_every=7,
          progress=progress)
    """
)


def _start_child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_update(child, update: int) -> int:
    for line in child.stdout:
        if int(line) >= update:
            return int(line)
    raise AssertionError(f"the child ended before update {update}: {child.stderr.read()}")


@pytest.mark.parametrize("kill_seed", [0, 1])
def test_a_run_killed_at_a_random_update_resumes_to_identical_weights(tmp_path, kill_seed):
    target = int(np.random.default_rng(kill_seed).integers(20, 250))
    child = _start_child(tmp_path)
    reached = _wait_for_update(child, target)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert reached < CONFIG.n_updates
    saved = torch.load(tmp_path / "state" / "stack-0.pt", weights_only=True)
    assert 0 < saved["update"] < CONFIG.n_updates  # it really stopped part-way

    resumed = train(_data(), CONFIG, seeds=[0, 1], state_dir=tmp_path / "state")
    uninterrupted = train(_data(), CONFIG, seeds=[0, 1])
    _equal(resumed, uninterrupted)


def test_sigterm_saves_the_state_before_exiting(tmp_path):
    child = _start_child(tmp_path)
    reached = _wait_for_update(child, 50)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "TrainingInterrupted" in stderr
    saved = torch.load(tmp_path / "state" / "stack-0.pt", weights_only=True)
    assert reached <= saved["update"] < CONFIG.n_updates
    assert saved["history"].shape[-1] == saved["update"]  # the state of the last update
    resumed = train(_data(), CONFIG, seeds=[0, 1], state_dir=tmp_path / "state")
    _equal(resumed, train(_data(), CONFIG, seeds=[0, 1]))


def test_sigint_in_process_raises_training_interrupted(tmp_path):
    def interrupt(done, total):
        if done >= 30:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="can be resumed"):
        train(_data(), CONFIG, seeds=[3], state_dir=tmp_path / "s", progress=interrupt)
    resumed = train(_data(), CONFIG, seeds=[3], state_dir=tmp_path / "s")
    _equal(resumed, train(_data(), CONFIG, seeds=[3]))


def test_a_state_of_another_training_is_not_resumed(tmp_path):
    short = LearnerConfig(algo="bc", n_updates=5)
    train(_data(), short, seeds=[0], state_dir=tmp_path / "s")
    with pytest.raises(LearnerInputError, match="different training"):
        train(_data(), short, seeds=[1], state_dir=tmp_path / "s")
    (tmp_path / "s" / "stack-0.pt").write_bytes(b"garbage")
    with pytest.raises(LearnerInputError, match="cannot be read"):
        train(_data(), short, seeds=[0], state_dir=tmp_path / "s")


def test_a_diverging_loss_stops_with_the_update_and_the_likely_cause():
    with pytest.raises(TrainingDiverged, match=r"seed 0 became nan at update \d+ .*learning rate"):
        train(
            _data(),
            LearnerConfig(algo="edm", n_updates=50, learning_rate=1e8, sgld_buffer_size=100),
            seeds=[0],
        )
    started = time.perf_counter()
    with pytest.raises(TrainingDiverged) as caught:
        train(
            _data(),
            LearnerConfig(algo="edm", n_updates=5000, learning_rate=1e8, sgld_buffer_size=100),
            seeds=[0],
        )
    assert caught.value.update < 5000 and time.perf_counter() - started < 60


def test_without_stopping_only_the_diverged_learner_fails():
    config = LearnerConfig(algo="edm", n_updates=50, sgld_buffer_size=100)
    data = [_data(), _data(scale=1e30)]  # logits of ~1e30 overflow float32: inf, then NaN
    result = train(data, config, seeds=[0, 1], stop_on_divergence=False)
    assert list(result.diverged) == [1]
    assert np.isfinite(result.loss[0]).all()
    assert result.learner(0)(data[0].observations).shape == (200,)
    with pytest.raises(LearnerInputError, match="NaN or infinite"):
        result.learner(1)


def test_each_seed_can_train_on_its_own_data_like_a_single_run():
    config = LearnerConfig(algo="edm", n_updates=60, sgld_buffer_size=100)
    data = [_data(n=200, seed=1), _data(n=20, seed=2), _data(n=300, seed=3)]  # batch 32, 20, 32
    batched = train(data, config, seeds=[5, 6, 7])
    assert batched.n_pairs == (200, 20, 300)
    for index, seed in enumerate((5, 6, 7)):
        single = train(data[index], config, seeds=[seed])
        np.testing.assert_allclose(batched.loss[index], single.loss[0], atol=1e-5)
        for name, value in single.policy_state.items():
            np.testing.assert_allclose(batched.policy_state[name][index], value[0], atol=1e-5)


def test_a_run_too_large_for_memory_is_refused_before_allocating():
    with pytest.raises(LearnerInputError, match=r"needs at least .* GiB .*--hidden"):
        train(_data(), LearnerConfig(algo="bc", hidden_sizes=(100_000, 100_000)), seeds=[0])
    with pytest.raises(LearnerInputError, match="--sgld-buffer-size"):
        train(_data(), LearnerConfig(sgld_buffer_size=1_000_000_000), seeds=[0])


def test_training_can_start_from_given_weights_and_keep_snapshots():
    config = LearnerConfig(algo="bc", n_updates=40, learning_rate=1e-2)
    expert = train(_data(), config, seeds=[9]).learner(0)
    tiny = LearnerConfig(algo="bc", n_updates=6, learning_rate=1e-12)
    result = train(
        _data(), tiny, seeds=[0, 1], init_policy_state=expert.policy_state, snapshot_every=3
    )
    obs = _data().observations
    for index in (0, 1):  # a learning rate of 1e-12 leaves the expert's weights in place
        np.testing.assert_allclose(result.learner(index).logits(obs), expert.logits(obs), atol=1e-5)
    assert [update for update, _ in result.snapshots] == [3, 6]
    assert result.snapshots[0][1]["weight0"].shape[0] == 2
    with pytest.raises(LearnerInputError, match="does not fit"):
        train(_data(), tiny, seeds=[0], init_policy_state={"weight0": torch.zeros(1, 2, 2)})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_training_resumes_to_the_same_weights(tmp_path):
    """The saved state is loaded onto the device; the generators' states must go back to the
    CPU, where torch keeps them (set_state refused a CUDA tensor)."""

    def interrupt(done, total):
        if done >= 30:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(
            _data(), CONFIG, seeds=[3], state_dir=tmp_path / "s", progress=interrupt, device="cuda"
        )
    resumed = train(_data(), CONFIG, seeds=[3], state_dir=tmp_path / "s", device="cuda")
    _equal(resumed, train(_data(), CONFIG, seeds=[3], device="cuda"))


# --- decoupled EDM given its trained policy (BC's) ----------------------------------------------


def _given_bc_policy(data, config, seeds):
    from sbil.deep.training import TrainedPolicy

    bc = train(
        data,
        LearnerConfig(**{**config.to_dict(), "algo": "bc"}),
        seeds=seeds,
        stop_on_divergence=False,
    )
    return TrainedPolicy(bc.policy_state, bc.curves)


def _same_result(a, b) -> None:
    assert list(a.curves) == list(b.curves)
    for name in a.curves:
        assert np.array_equal(a.curves[name], b.curves[name], equal_nan=True), name
    for state_a, state_b in ((a.policy_state, b.policy_state), (a.energy_state, b.energy_state)):
        assert state_a.keys() == state_b.keys()
        for name in state_a:
            x, y = state_a[name].numpy(), state_b[name].numpy()
            assert np.array_equal(x, y, equal_nan=True), name  # NaN where diverged
    assert a.diverged.keys() == b.diverged.keys()
    assert [u for u, _ in a.diverged.values()] == [u for u, _ in b.diverged.values()]
    assert a.n_pairs == b.n_pairs


@pytest.mark.parametrize(
    "options",
    [{}, {"l2_coef": 0.01, "entropy_coef": 0.1}, {"learning_rate": 1e8}],
    ids=["plain", "regularised", "diverging"],
)
def test_decoupled_edm_given_bc_s_policy_trains_its_state_model_to_the_full_training_s_bits(
    options,
):
    # Three seeds on data of 200, 12 and 200 pairs: two stacks (batch 16 and 12).
    data = [_data(200, seed=0), _data(12, seed=1), _data(200, seed=2)]
    config = LearnerConfig(
        algo="edm-decoupled", n_updates=60, sgld_buffer_size=50, batch_size=16, **options
    )
    seeds = [3, 4, 5]
    full = train(data, config, seeds=seeds, stop_on_divergence=False)
    given = train(
        data,
        config,
        seeds=seeds,
        stop_on_divergence=False,
        trained_policy=_given_bc_policy(data, config, seeds),
    )
    _same_result(full, given)
    if options.get("learning_rate"):
        assert set(full.diverged) == {3, 4, 5}  # the case is one that diverges


def test_a_full_training_s_state_is_continued_given_the_policy(tmp_path):
    data = _data(200)
    config = LearnerConfig(algo="edm-decoupled", n_updates=60, sgld_buffer_size=50)
    full = train(data, config, seeds=[0, 1])

    def stop_at_30(done, total):
        if done == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            data, config, seeds=[0, 1], state_dir=tmp_path, checkpoint_every=10, progress=stop_at_30
        )
    given = _given_bc_policy(data, config, [0, 1])
    resumed = train(data, config, seeds=[0, 1], state_dir=tmp_path, trained_policy=given)
    _same_result(full, resumed)
    with pytest.raises(KeyboardInterrupt):  # and a run given the policy resumes itself
        train(
            data,
            config,
            seeds=[0, 1],
            state_dir=tmp_path / "given",
            checkpoint_every=10,
            progress=stop_at_30,
            trained_policy=given,
        )
    again = train(data, config, seeds=[0, 1], state_dir=tmp_path / "given", trained_policy=given)
    _same_result(full, again)


def test_a_trained_policy_is_for_decoupled_edm_and_must_fit():
    data = _data(100)
    given = _given_bc_policy(data, LearnerConfig(algo="bc", n_updates=20), [0])
    for algo in ("bc", "edm"):
        with pytest.raises(LearnerInputError, match="for decoupled EDM"):
            train(data, LearnerConfig(algo=algo, n_updates=20), seeds=[0], trained_policy=given)
    with pytest.raises(LearnerInputError, match=r"cross_entropy of every update, \[1, 30\]"):
        train(
            data, LearnerConfig(algo="edm-decoupled", n_updates=30), seeds=[0], trained_policy=given
        )
    with pytest.raises(LearnerInputError, match="do not fit 2 stacked"):
        train(
            data,
            LearnerConfig(algo="edm-decoupled", n_updates=20),
            seeds=[0, 1],
            trained_policy=given,
        )
