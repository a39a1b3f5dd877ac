"""SegmentedAdam: each segment of a stacked parameter steps as its own tensor, so learners train
the same whichever others share their stack (torch's fused CPU Adam finishes each tensor's last
``numel mod width`` elements in a scalar loop, and which learners fall there depends on K)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from sbil.deep.config import LearnerConfig, LearnerInputError
from sbil.deep.data import from_arrays
from sbil.deep.learners.registry import ALGOS
from sbil.deep.segmented_adam import SegmentedAdam
from sbil.deep.training import TrainingInterrupted, train, train_together


def _steps(optimizer_of, params, grads):
    optimizer = optimizer_of(params)
    for grad in grads:
        for p, g in zip(params, grad, strict=True):
            p.grad = g.clone()
        optimizer.step()
    return optimizer


def _params_and_grads(sizes, n_steps=25, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    shapes = [(n, 3, 5), (n, 1, 2), (n, 1, 5)]  # per learner 15, 2 and 5 floats
    params = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(n_steps)]
    return params, grads


def test_segments_step_as_separate_fused_adams():
    sizes = (3, 5, 1)
    params, grads = _params_and_grads(sizes)
    together = [p.clone().requires_grad_(False) for p in params]
    _steps(
        lambda ps: SegmentedAdam(ps, segments=sizes, lr=1e-2, weight_decay=1e-3), together, grads
    )
    start = 0
    for n in sizes:
        part = [p[start : start + n].clone() for p in params]
        part_grads = [[g[start : start + n] for g in step] for step in grads]
        _steps(
            lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-3, fused=True),
            part,
            part_grads,
        )
        for p, q in zip(together, part, strict=True):
            torch.testing.assert_close(p[start : start + n], q, rtol=0, atol=0)
        start += n


def test_without_segments_it_is_torchs_fused_adam_and_keeps_its_state_layout():
    params, grads = _params_and_grads((4,))
    ours, theirs, split = ([p.clone() for p in params] for _ in range(3))
    _steps(lambda ps: SegmentedAdam(ps, segments=(4,), lr=1e-2), ours, grads)
    torchs = _steps(lambda ps: torch.optim.Adam(ps, lr=1e-2, fused=True), theirs, grads)
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    segmented = _steps(lambda ps: SegmentedAdam(ps, segments=(1, 3), lr=1e-2), split, grads)
    for mine, its in zip(segmented.state.values(), torchs.state.values(), strict=True):
        assert {k: (v.shape, v.dtype) for k, v in mine.items()} == {
            k: (v.shape, v.dtype) for k, v in its.items()
        }
        assert float(mine["step"]) == len(grads)


def test_bad_segments_and_unsupported_options_are_refused():
    params, grads = _params_and_grads((4,), n_steps=1)
    with pytest.raises(ValueError, match="does not stack 5 learners"):
        _steps(lambda ps: SegmentedAdam(ps, segments=(2, 3), lr=1e-2), params, grads)
    with pytest.raises(ValueError, match="plain Adam only"):
        SegmentedAdam(params, segments=(2, 2), amsgrad=True)


def _data(episodes, seed):
    return episodes(n_episodes=4, length=25, seed=seed, final=True)


@pytest.mark.parametrize("algo", [a for a in ALGOS if a != "edm-decoupled"])
def test_trainings_together_equal_separate_trainings_bit_for_bit(algo, episodes):
    """Two runs, the second with its own data, seeds that repeat the first's and more learners."""
    config = LearnerConfig(algo=algo, n_updates=60, hidden_sizes=(16, 16), sgld_buffer_size=64)
    runs = [
        ([_data(episodes, 100 + s) for s in range(3)], [0, 1, 2]),
        ([_data(episodes, 200 + s) for s in range(5)], [0, 1, 2, 3, 4]),
    ]
    together = train_together(runs, config)
    for (data, seeds), result in zip(runs, together, strict=True):
        alone = train(data, config, seeds=seeds)
        assert result.seeds == alone.seeds and result.n_pairs == alone.n_pairs
        np.testing.assert_array_equal(result.obs_mean, alone.obs_mean)
        for name, value in alone.curves.items():
            np.testing.assert_array_equal(result.curves[name], value, err_msg=name)
        for name, value in alone.policy_state.items():
            np.testing.assert_array_equal(result.policy_state[name], value, err_msg=name)
        for name, value in (alone.energy_state or {}).items():
            np.testing.assert_array_equal(result.energy_state[name], value, err_msg=name)


@pytest.mark.parametrize("options", [{}, {"l2_coef": 0.01}], ids=["plain", "regularised"])
def test_decoupled_edm_given_bc_s_policies_trains_together_as_each_run_alone(episodes, options):
    """Decoupled EDM's state models of several runs (a sweep's k) in one stack, each given its
    run's BC policy, equal each run's own given-policy training bit for bit."""
    from sbil.deep.training import TrainedPolicy

    config = LearnerConfig(
        algo="edm-decoupled", n_updates=60, hidden_sizes=(16, 16), sgld_buffer_size=64, **options
    )
    bc_config = LearnerConfig(**{**config.to_dict(), "algo": "bc"})
    runs = [
        ([_data(episodes, 100 + s) for s in range(3)], [0, 1, 2]),
        ([_data(episodes, 200 + s) for s in range(5)], [0, 1, 2, 3, 4]),
    ]
    given = []
    for data, seeds in runs:
        bc = train(data, bc_config, seeds=seeds)
        given.append(TrainedPolicy(bc.policy_state, bc.curves))
    together = train_together(runs, config, trained_policies=given)
    for (data, seeds), policy, result in zip(runs, given, together, strict=True):
        alone = train(data, config, seeds=seeds, trained_policy=policy)
        assert list(result.curves) == list(alone.curves)
        for name, value in alone.curves.items():
            np.testing.assert_array_equal(result.curves[name], value, err_msg=name)
        for name, value in alone.policy_state.items():
            np.testing.assert_array_equal(result.policy_state[name], value, err_msg=name)
        for name, value in alone.energy_state.items():
            np.testing.assert_array_equal(result.energy_state[name], value, err_msg=name)
    with pytest.raises(LearnerInputError, match="one TrainedPolicy per run"):
        train_together(runs, config, trained_policies=given[:1])
    with pytest.raises(LearnerInputError, match="not bc"):
        train_together(runs, bc_config, trained_policies=given)


def test_together_a_diverged_learner_is_its_own_runs_and_the_state_resumes(tmp_path):
    config = LearnerConfig(algo="edm", n_updates=40, sgld_buffer_size=100)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(200, 4)).astype(np.float32)
    good = from_arrays(obs, (obs[:, 2] > 0).astype(np.int64), n_actions=2)
    bad = from_arrays(obs * 1e30, (obs[:, 2] > 0).astype(np.int64), n_actions=2)  # overflows
    runs = [([good, good], [0, 1]), ([good, bad], [0, 1])]
    first, second = train_together(runs, config, stop_on_divergence=False)
    assert first.diverged == {} and list(second.diverged) == [1]

    def interrupt(done, total):
        if done == 10:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="can be resumed"):
        train_together(
            runs, config, stop_on_divergence=False, state_dir=tmp_path, progress=interrupt
        )
    resumed = train_together(runs, config, stop_on_divergence=False, state_dir=tmp_path)
    assert resumed[1].diverged == second.diverged
    np.testing.assert_array_equal(resumed[0].loss, first.loss)
    np.testing.assert_array_equal(resumed[1].loss[0], second.loss[0])


def test_bad_runs_are_refused(episodes):
    config = LearnerConfig(algo="bc", n_updates=2)
    with pytest.raises(LearnerInputError, match="non-empty list"):
        train_together([], config)
    with pytest.raises(LearnerInputError, match=r"runs\[0\] must be a \(data, seeds\) pair"):
        train_together([_data(episodes, 0)], config)
    with pytest.raises(LearnerInputError, match="distinct"):
        train_together([(_data(episodes, 0), [1, 1])], config)
