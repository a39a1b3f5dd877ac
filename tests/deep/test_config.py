"""Tests for sbil.deep.config: options a learner does not use are refused, naming who uses them."""

from __future__ import annotations

import dataclasses

import pytest

from sbil.deep.config import SGLD_ALGOS, LearnerConfig, LearnerInputError

SGLD_FIELDS = [f.name for f in dataclasses.fields(LearnerConfig) if f.name.startswith("sgld_")]
CHANGED = {
    "sgld_steps": 7,
    "sgld_step_size": 0.02,
    "sgld_noise": 0.1,
    "sgld_buffer_size": 500,
    "sgld_reinit_prob": 0.5,
}


def test_every_sgld_option_is_covered():
    assert sorted(SGLD_FIELDS) == sorted(CHANGED)
    assert SGLD_ALGOS == ("edm", "edm-decoupled")


@pytest.mark.parametrize("field", sorted(CHANGED))
@pytest.mark.parametrize("algo", ["bc", "valuedice", "rcal", "iqlearn", "avril"])
def test_an_sgld_option_for_a_learner_without_sgld_is_refused(algo, field):
    config = LearnerConfig(algo=algo, **{field: CHANGED[field]})
    with pytest.raises(LearnerInputError) as error:
        config.refuse_unused_options()
    assert str(error.value) == (
        f"{field} applies to edm, edm-decoupled only (the learners that draw SGLD samples), "
        f"not {algo}; leave it at its default."
    )


@pytest.mark.parametrize("algo", ["edm", "edm-decoupled"])
def test_sgld_options_are_kept_for_the_learners_that_draw_sgld_samples(algo):
    config = LearnerConfig(algo=algo, **CHANGED)
    assert config.refuse_unused_options() is config
    assert {k: getattr(config, k) for k in CHANGED} == CHANGED


def test_defaults_pass_and_the_record_is_unchanged():
    # Recorded configs (checkpoints, sweep cell ids) keep every SGLD field for every learner.
    for algo in ("bc", "valuedice", "edm"):
        config = LearnerConfig(algo=algo)
        assert config.refuse_unused_options() is config
        assert set(SGLD_FIELDS) <= set(config.to_dict())
    # A config recorded with an SGLD value that never acted (a sweep's shared options) loads.
    stored = LearnerConfig(algo="bc", sgld_buffer_size=1000).to_dict()
    assert LearnerConfig.from_dict(stored).to_dict() == stored


def test_sbil_train_refuses_an_sgld_option_for_bc_as_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from sbil.cli import _register, app

    _register()
    args = ["train", "--data", str(tmp_path / "x.npz"), "--algo", "bc", "--sgld-steps", "7"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "Error: --sgld-steps applies to edm, edm-decoupled only (the learners that draw SGLD "
        "samples), not bc; leave it at its default."
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["entropy_coef", "l2_coef"])
def test_a_regulariser_that_would_not_act_is_refused_and_its_zero_keeps_the_record(name):
    from sbil.deep.learners.registry import LEARNERS

    unregularised = [a for a, spec in LEARNERS.items() if not spec.regularised]
    assert unregularised == ["dsfn"]
    with pytest.raises(LearnerInputError, match=f"{name} does not act on dsfn"):
        LearnerConfig(algo="dsfn", **{name: 0.1})
    assert (
        LearnerConfig(algo="dsfn", **{name: 0.0}).to_dict() == LearnerConfig(algo="dsfn").to_dict()
    )
    assert name in LearnerConfig(algo="dsfn").to_dict()  # the record (and hashes) unchanged
    LearnerConfig(algo="bc", **{name: 0.1})
