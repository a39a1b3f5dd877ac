"""The model-selection study: its grids, its three picks, its units and their resume, its
report, and that a pick's fresh seeds are what a plain run of that configuration gives."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from sbil.deep.learners import LearnerConfig
from sbil.experiments import selection as sel
from sbil.experiments.selection import (
    GRIDS,
    SELECTABLE,
    SelectionError,
    SelectionSpec,
    configurations,
    picks,
    run_study,
    selection_preset,
    study_picks,
)

TINY = {"algos": ["bc", "rcal"]}


def _record(config, checkpoints):
    """A selection unit's record: checkpoints = [(update, [(nll, return) or None per seed])]."""
    return {
        "config": config,
        "checkpoints": [
            {
                "update": update,
                "seeds": {
                    str(i): (
                        {"status": "failed", "error": "diverged"}
                        if s is None
                        else {"status": "done", "nll": s[0], "return_mean": s[1]}
                    )
                    for i, s in enumerate(seeds)
                },
            }
            for update, seeds in checkpoints
        ],
    }


def test_offline_picks_the_lowest_mean_nll_and_oracle_the_highest_mean_return():
    records = [
        _record(0, [(10, [(0.5, 100), (0.7, 120)]), (20, [(0.4, 90), (0.6, 80)])]),
        _record(1, [(10, [(0.3, 300), (0.9, 10)]), (20, [(0.45, 200), (0.5, 210)])]),
    ]
    chosen = picks(records, 20)
    assert (chosen["published"].config, chosen["published"].update) == (0, 20)
    assert (chosen["offline"].config, chosen["offline"].update) == (1, 20)  # mean 0.475
    assert chosen["offline"].score == pytest.approx(0.475)
    assert (chosen["oracle"].config, chosen["oracle"].update) == (1, 20)  # mean 205
    assert math.isnan(chosen["published"].score)


def test_a_candidate_with_a_failed_seed_is_never_picked_and_ties_go_to_the_first():
    records = [
        _record(0, [(10, [(0.5, 100), (0.5, 100)])]),
        _record(1, [(10, [(0.1, 900), None])]),  # best on both, but a seed diverged
        _record(2, [(10, [(0.5, 100), (0.5, 100)])]),  # ties configuration 0
    ]
    chosen = picks(records, 10)
    assert chosen["offline"].config == 0 and chosen["oracle"].config == 0


def test_with_every_candidate_failed_the_published_configuration_stands():
    chosen = picks([_record(0, [(10, [None])]), _record(1, [(10, [None])])], 10)
    assert all((p.config, p.update) == (0, 10) for p in chosen.values())
    assert math.isnan(chosen["offline"].score)


@pytest.mark.parametrize("algo", SELECTABLE)
def test_every_learner_has_four_configurations_and_the_first_is_its_published_one(algo):
    spec = SelectionSpec(envs=("CartPole-v1",), ks=(1,))
    options = configurations(spec, algo)
    assert len(options) == 4 and len({json.dumps(o, sort_keys=True) for o in options}) == 4
    first = LearnerConfig(algo=algo, **options[0])
    published = LearnerConfig(algo=algo, **spec.options)
    assert first == published
    assert len(GRIDS[algo]) == 2 and "learning_rate" in GRIDS[algo]


def test_iqlearn_tries_its_authors_temperature_and_valuedice_a_rate_beside_its_published():
    assert GRIDS["iqlearn"]["soft_q_temperature"] == [0.01, 0.001]
    assert GRIDS["valuedice"]["learning_rate"] == [1e-5, 1e-3]
    assert "edm-decoupled" not in SELECTABLE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"final_seeds": [1, 30]}, "fresh"),
        ({"checkpoint_every": 3000}, "divide"),
        ({"grids": {**GRIDS, "bc": {"learning_rate": [1e-3]}}}, "same number"),
        ({"algos": ["edm-decoupled"]}, "BC's"),
        ({"validation_episodes": 0}, "positive"),
        ({"grids": {**GRIDS, "bc": {"learning_rate": [1e-3, -1.0], "l2_coef": [0, 1]}}}, "bc"),
    ],
)
def test_a_bad_study_is_refused_with_what_to_change(change, message):
    with pytest.raises(SelectionError, match=message):
        SelectionSpec.from_dict({"envs": ["CartPole-v1"], "ks": [1], **change})


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    spec = selection_preset("tiny", **TINY)
    run_study(spec, folder, log=lambda line: None)
    return spec, folder


def test_a_study_writes_every_unit_and_validates_on_trajectories_no_seed_trains_on(tiny_study):
    spec, folder = tiny_study
    fresh, selecting = set(), set()
    chosen = study_picks(spec, folder)
    assert set(chosen) == {("CartPole-v1", 1, a) for a in TINY["algos"]}
    for unit in sel.selection_units(spec):
        record = json.loads(unit.path(folder).read_text())
        trained = {e for episodes in record["train_episodes"].values() for e in episodes}
        assert record["validation_episodes"] and not trained & set(record["validation_episodes"])
        selecting |= trained
        assert [c["update"] for c in record["checkpoints"]] == list(spec.checkpoints)
        for checkpoint in record["checkpoints"]:
            for entry in checkpoint["seeds"].values():
                assert entry["status"] == "done" and entry["nll"] > 0
                assert 0 <= entry["action_match"] <= 1 and "return_mean" in entry
    for (env_id, k, algo), picked in chosen.items():
        for unit in sel.final_units(spec, picked, env_id, k, algo):
            record = json.loads(unit.path(folder).read_text())
            assert record["seeds"] == list(spec.final_seeds)
            fresh |= {e for episodes in record["train_episodes"].values() for e in episodes}
            for checkpoint in record["checkpoints"]:
                played = checkpoint["update"] in unit.evaluate_at
                for entry in checkpoint["seeds"].values():
                    assert ("returns" in entry) == played
                    if played:
                        assert len(entry["returns"]) == spec.eval_episodes
    assert fresh and selecting and not fresh & selecting  # k = 1: no trajectory shared


def test_a_finished_study_trains_nothing_when_run_again(tiny_study, monkeypatch):
    spec, folder = tiny_study

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(sel, "run_unit", refuse)
    run_study(spec, folder, log=lambda line: None)


def test_two_workers_write_the_units_one_worker_writes(tiny_study, tmp_path):
    spec, folder = tiny_study
    run_study(spec, tmp_path, workers=2, log=lambda line: None)
    timings = ("train_seconds", "eval_seconds", "provenance")
    for phase in ("select", "final"):
        names = sorted(p.name for p in (folder / "units" / phase).glob("*.json"))
        assert names == sorted(p.name for p in (tmp_path / "units" / phase).glob("*.json"))
        for name in names:
            one, two = (
                {
                    k: v
                    for k, v in json.loads((f / "units" / phase / name).read_text()).items()
                    if k not in timings
                }
                for f in (folder, tmp_path)
            )
            assert one == two, name


def test_a_folder_of_another_study_is_refused(tiny_study):
    spec, folder = tiny_study
    with pytest.raises(SelectionError, match="different study"):
        run_study(dataclasses.replace(spec, eval_episodes=4), folder, log=lambda line: None)


def test_the_published_picks_fresh_seeds_are_what_a_plain_run_of_that_configuration_gives(
    tiny_study, tmp_path
):
    from sbil.experiments.runs import run_training

    spec, folder = tiny_study
    unit = sel.Unit("final", "CartPole-v1", 1, "bc", 0, (spec.n_updates,))
    run = dataclasses.replace(
        sel._run_spec(spec, unit, folder),
        eval_episodes=spec.eval_episodes,
        eval_seed=spec.eval_seed,
    )
    outcome = run_training(run, tmp_path / "plain")
    record = json.loads(
        next((folder / "units" / "final").glob("CartPole-v1__bc__k1__c0__*.json")).read_text()
    )
    (last,) = [c for c in record["checkpoints"] if c["update"] == spec.n_updates]
    for seed in outcome.seeds:
        assert last["seeds"][str(seed.seed)]["returns"] == seed.returns


def test_the_report_states_the_protocol_and_its_numbers_are_the_units(tiny_study):
    from sbil.experiments.selection_report import summarise_study, write_study_report

    spec, folder = tiny_study
    path = write_study_report(folder)
    text = path.read_text()
    assert "k + 1 trajectories" in text and "oracle" in text and "BC" in text and "RCAL" in text
    assert (folder / "selection-k1.png").is_file() and "selection-k1.png" in text
    summary = summarise_study(folder)
    references = json.loads((folder / "data" / "references.json").read_text())["CartPole-v1"]
    random, expert = references["random"]["mean"], references["expert"]["mean"]
    for cell in summary["cells"]:
        mode = cell["modes"]["published"]
        record = json.loads(
            next(
                (folder / "units" / "final").glob(f"CartPole-v1__{cell['algo']}__k1__c0__*.json")
            ).read_text()
        )
        (last,) = [c for c in record["checkpoints"] if c["update"] == mode["update"]]
        expected = [
            (np.mean(last["seeds"][str(s)]["returns"]) - random) / (expert - random)
            for s in spec.final_seeds
        ]
        assert mode["scores"] == pytest.approx(expected, rel=1e-12)
    assert not summary["missing"]


def test_the_command_line_runs_a_study_and_refuses_what_is_not_one(tmp_path):
    from sbil.cli import _register, app

    _register()
    runner = CliRunner()
    result = runner.invoke(
        app, ["select", "--preset", "tiny", "--algos", "bc", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "REPORT.md").is_file()
    result = runner.invoke(app, ["select", "report", str(tmp_path)])
    assert result.exit_code == 2 and "not a model-selection study" in result.output
    result = runner.invoke(app, ["select", "--preset", "tiny", "--algos", "edm-decoupled"])
    assert result.exit_code == 2 and "BC's" in result.output
