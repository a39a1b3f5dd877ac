"""Every update's loss terms by name: what each learner records, that the named terms add up
to its loss, that the old ``loss``/``cross_entropy``/``rho`` read them, that ``on_terms``
sees them as training goes, and that a resumed run's curves equal an uninterrupted run's."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, LearnerInputError, TrainingInterrupted, train

EXPECTED = {
    "bc": ("loss", "cross_entropy"),
    "edm": ("loss", "cross_entropy", "rho"),
    "edm-decoupled": ("loss", "cross_entropy", "rho"),
    "valuedice": (
        "objective",
        "log_ratio_term",
        "initial_term",
        "nu_gradient_penalty",
        "orthogonal_regularizer",
        "cross_entropy",
    ),
    "rcal": ("loss", "margin", "reward_l1", "cross_entropy"),
    "iqlearn": ("loss", "reward_term", "value_term", "chi2_term", "cross_entropy"),
    "avril": ("loss", "cross_entropy", "kl", "td_nll"),
}


def _data(n_episodes=4, length=30, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n_episodes * length, 4)).astype(np.float32)
    return from_arrays(
        obs,
        (obs[:, 2] > 0).astype(np.int64),
        n_actions=2,
        episode_lengths=[length] * n_episodes,
        final_observations=rng.normal(size=(n_episodes, 4)).astype(np.float32),
        terminated=[True, False] * (n_episodes // 2),
    )


def _config(algo, **options):
    return LearnerConfig(algo=algo, n_updates=12, batch_size=16, sgld_buffer_size=50, **options)


def _close(total, parts):
    """``total == sum(parts)`` in float32, to a tolerance scaled to the parts' sizes."""
    scale = sum(np.abs(p) for p in parts) + np.abs(total)
    np.testing.assert_array_less(np.abs(total - sum(parts)), 1e-6 * scale + 1e-7)


@pytest.mark.parametrize("algo", list(EXPECTED))
def test_each_learner_records_its_loss_terms_by_name(algo):
    result = train(_data(), _config(algo), seeds=[0, 4])
    assert tuple(result.curves) == EXPECTED[algo]
    for name, curve in result.curves.items():
        assert curve.shape == (2, 12) and curve.dtype == np.float32, name
        assert np.isfinite(curve).all(), name
    assert result.loss is result.curves[result.loss_term]
    assert result.cross_entropy is result.curves["cross_entropy"]
    if "rho" in result.curves:
        assert result.rho is result.curves["rho"]
    else:
        assert result.rho.shape == (2, 12) and result.rho.dtype == np.float32
        assert np.isnan(result.rho).all()
    assert not np.array_equal(result.loss[0], result.loss[1])  # each seed its own row


def test_the_named_terms_add_up_to_each_learners_loss():
    data = _data()
    c = train(data, _config("edm"), seeds=[1]).curves
    _close(c["loss"], [c["cross_entropy"], c["rho"], c["rho"] ** 2])
    c = train(data, _config("valuedice"), seeds=[1]).curves
    _close(c["objective"], [c["log_ratio_term"], -c["initial_term"]])
    assert (c["nu_gradient_penalty"] >= 0).all() and (c["orthogonal_regularizer"] >= 0).all()
    c = train(data, _config("rcal", reward_l1_coef=0.5), seeds=[1]).curves
    _close(c["loss"], [c["margin"], 0.5 * c["reward_l1"]])
    c = train(data, _config("iqlearn"), seeds=[1]).curves
    _close(c["loss"], [-c["reward_term"], c["value_term"], c["chi2_term"]])
    c = train(data, _config("avril", td_likelihood_weight=0.3), seeds=[1]).curves
    _close(c["loss"], [c["cross_entropy"], c["kl"], 0.3 * c["td_nll"]])


@pytest.mark.parametrize("algo", ["bc", "edm", "rcal"])
def test_the_policy_regulariser_is_recorded_as_its_own_term(algo):
    result = train(_data(), _config(algo, l2_coef=0.01, entropy_coef=0.1), seeds=[2])
    c = result.curves
    assert "policy_regularizer" in c and np.isfinite(c["policy_regularizer"]).all()
    if algo == "rcal":  # the loss dataclass's loss, the regulariser apart
        _close(c["loss"], [c["margin"], c["reward_l1"]])
    else:  # what Adam minimised
        base = [c["cross_entropy"]] + ([c["rho"], c["rho"] ** 2] if algo == "edm" else [])
        _close(c["loss"], [*base, c["policy_regularizer"]])


def test_valuedice_without_penalty_and_regulariser_records_neither():
    config = _config("valuedice", gradient_penalty=0.0, orthogonal_coef=0.0)
    assert tuple(train(_data(), config, seeds=[0]).curves) == (
        "objective",
        "log_ratio_term",
        "initial_term",
        "cross_entropy",
    )


def test_on_terms_receives_every_update_once_in_order():
    calls = []
    config = LearnerConfig(algo="iqlearn", n_updates=450, batch_size=16)
    result = train(
        _data(),
        config,
        seeds=[0, 1],
        on_terms=lambda seeds, start, terms: calls.append((seeds, start, terms)),
    )
    assert [start for _, start, _ in calls] == list(range(0, 450, 2))  # every 450 // 200 updates
    assert all(seeds == (0, 1) for seeds, _, _ in calls)
    for name, curve in result.curves.items():
        joined = np.concatenate([terms[name] for _, _, terms in calls], axis=1)
        assert np.array_equal(joined, curve), name


def test_on_terms_sees_each_stack_with_its_own_seeds():
    calls = []
    data = [_data(), _data(n_episodes=2, length=5)]  # 120 and 10 pairs: batch 16 and 10
    result = train(
        data,
        _config("bc"),
        seeds=[7, 8],
        on_terms=lambda seeds, start, terms: calls.append((seeds, start, terms)),
    )
    by_seed = {}
    for seeds, _, terms in calls:
        by_seed.setdefault(seeds, []).append(terms["loss"])
    assert set(by_seed) == {(7,), (8,)}
    for index, seed in enumerate((7, 8)):
        assert np.array_equal(np.concatenate(by_seed[(seed,)], axis=1)[0], result.loss[index])


def test_progress_reports_the_last_update_once():
    calls = []
    train(_data(), _config("bc"), seeds=[0], progress=lambda done, total: calls.append(done))
    assert calls == list(range(1, 13))


@pytest.mark.parametrize("algo", ["edm", "valuedice"])
def test_resumed_curves_equal_an_uninterrupted_runs(tmp_path, algo):
    config = LearnerConfig(algo=algo, n_updates=300, batch_size=16, sgld_buffer_size=50)

    def interrupt(done, total):
        if done == 100:
            os.kill(os.getpid(), signal.SIGINT)

    first = []
    with pytest.raises(TrainingInterrupted):
        train(
            _data(),
            config,
            seeds=[0, 1],
            state_dir=tmp_path / "s",
            checkpoint_every=40,
            progress=interrupt,
            on_terms=lambda seeds, start, terms: first.append(start),
        )
    assert first and 99 <= first[-1] < 300  # the interrupted run handed on what it trained
    later = []
    resumed = train(
        _data(),
        config,
        seeds=[0, 1],
        state_dir=tmp_path / "s",
        on_terms=lambda seeds, start, terms: later.append((start, terms)),
    )
    whole = train(_data(), config, seeds=[0, 1])
    assert tuple(resumed.curves) == tuple(whole.curves) == EXPECTED[algo]
    for name in whole.curves:
        assert np.array_equal(resumed.curves[name], whole.curves[name], equal_nan=True), name
        # the resumed process hands on the whole history, from update 0
        joined = np.concatenate([terms[name] for _, terms in later], axis=1)
        assert np.array_equal(joined, whole.curves[name], equal_nan=True), name
    assert later[0][0] == 0


def test_a_state_of_the_older_format_is_refused_with_its_reason(tmp_path):
    config = LearnerConfig(algo="bc", n_updates=5)
    train(_data(), config, seeds=[0], state_dir=tmp_path / "s")
    path = tmp_path / "s" / "stack-0.pt"
    state = torch.load(path, weights_only=True)
    state["format"] = 1
    torch.save(state, path)
    with pytest.raises(LearnerInputError, match=r"another version of sbil .* delete it"):
        train(_data(), config, seeds=[0], state_dir=tmp_path / "s")
