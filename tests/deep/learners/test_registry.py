"""Tests for sbil.deep.learners.registry: the one list of learners, importable without torch,
whose every line names the module holding the learner's loss and update step."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from sbil.deep.config import LearnerConfig
from sbil.deep.learners.registry import (
    ALGO_DEFAULTS,
    ALGOS,
    DISPLAY_NAMES,
    LEARNERS,
    SGLD_ALGOS,
    TRANSITION_ALGOS,
    algo_list,
    learner_module,
    learner_spec,
)


def test_the_registry_imports_without_torch():
    code = (
        "import sys\n"
        "import sbil.deep.learners.registry, sbil.deep.config\n"
        "from sbil.deep.learners import LearnerConfig\n"
        "LearnerConfig(algo='edm').to_dict()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_lists_are_read_from_the_registry():
    assert ALGOS == ("bc", "edm", "edm-decoupled", "valuedice", "rcal", "iqlearn", "avril", "dsfn")
    assert TRANSITION_ALGOS == ("valuedice", "rcal", "iqlearn", "avril", "dsfn")
    assert SGLD_ALGOS == ("edm", "edm-decoupled")
    assert tuple(DISPLAY_NAMES) == ALGOS
    assert DISPLAY_NAMES["iqlearn"] == "IQ-Learn"
    assert algo_list() == "bc, edm, edm-decoupled, valuedice, rcal, iqlearn, avril or dsfn"
    assert all(LEARNERS[name].name == name for name in ALGOS)


def test_other_lists_read_the_registry():
    from sbil.cli import train as cli_train
    from sbil.experiments import sweep_report

    assert sweep_report.ALGO_ORDER == ALGOS
    assert sweep_report.ALGO_NAMES == DISPLAY_NAMES
    assert cli_train._ALGOS == algo_list()
    assert cli_train._SGLD == "EDM's SGLD sampler (edm, edm-decoupled)"
    assert cli_train._TRANSITIONS == "Transition learners (valuedice, rcal, iqlearn, avril, dsfn)"


@pytest.mark.parametrize("name", ALGOS)
def test_each_learner_has_a_config_with_its_defaults(name):
    spec = learner_spec(name)
    config = LearnerConfig(algo=name)
    assert {key: getattr(config, key) for key in spec.defaults} == ALGO_DEFAULTS[name]
    assert config.uses_transitions == spec.uses_transitions
    assert config.uses_sgld == spec.uses_sgld
    assert config.second_network == spec.second_network
    assert (spec.second_network is None) == (spec.second_network_shape is None)
    assert spec.relative_cost >= 1
    if spec.uses_next_action:
        assert spec.uses_transitions


def test_config_fields_of_some_learners_name_registered_learners():
    for f in dataclasses.fields(LearnerConfig):
        for key in ("algos", "used_by"):
            assert set(f.metadata.get(key, ())) <= set(ALGOS), f.name


def test_an_unknown_name_lists_the_learners():
    with pytest.raises(ValueError, match=r"algo must be one of bc, edm, .* got 'gail'"):
        learner_spec("gail")


@pytest.mark.parametrize("name", ALGOS)
def test_each_learner_module_holds_its_update_step(name):
    module = learner_module(name)
    assert module.__name__ == f"sbil.deep.learners.{LEARNERS[name].module}"
    assert callable(module.update)
    assert callable(getattr(module, "parameter_groups", callable))


def test_the_package_gives_every_name_it_lists():
    import sbil.deep.learners as learners

    for name in learners.__all__:
        assert getattr(learners, name) is not None
    with pytest.raises(AttributeError):
        learners.no_such_name  # noqa: B018
