"""A sweep's data when it is not recorded by sbil's experts: your own Minari datasets and ``.npz``
files, played in their Gymnasium task or, without one, compared on held-out metrics alone.

A sweep spec names its data with these keys (``SweepSpec`` fields, TOML)::

    datasets = {"CartPole-v1" = "me/cartpole/heuristic-v0"}   # task = Minari id or path.npz
    dataset_root = "datasets"      # the Minari datasets folder of those ids (optional)
    env_free = false               # true: no environment; the tasks are names
    n_actions = 2                  # env-free .npz only: its number of discrete actions
    held_out_metric = "action_match"   # env-free: what the statistics use (or auc, apr, nll)

or, in a spec file, the shorthand ``dataset = "me/cartpole/heuristic-v0"``: one task, played in
the environment the Minari dataset records (``DataCollector`` records it); a dataset that records
none (an ``.npz``, or a Minari dataset made without an environment) makes an env-free sweep whose
one task is named after the dataset. Paths in a spec file are relative to that file; in
``sweep.json`` they are stored relative to the sweep folder (:func:`to_stored`), absolute only
when the two share no folder but ``/``.

A played task's normalisation anchors (``references.json``) are the random policy's return,
measured as for sbil's experts, and the expert level: the mean of the dataset's own recorded
episode returns (Minari stores every step's reward; an ``.npz`` may carry ``episode_returns``
``[E]``), over all its episodes. An env-free task has no returns: its learners are compared on
held-out expert states (:mod:`sbil.deep.metrics`).

Every value is checked before a sweep writes anything: :func:`check_sources` (cheap: types,
names, ids, tasks) runs when the spec is made, :func:`load_sources` (opens every dataset) before
the sweep folder is touched.

Longer than ~400 lines: a sweep's own-data sources end to end: their description, the cheap
checks when the spec is made, loading, the references of each dataset, held-out rows and the
portable paths stored in ``sweep.json``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sbil.deep.metrics import METRICS

#: Spec keys this module reads, with their defaults (``SweepSpec`` fields).
DATA_KEYS: dict[str, Any] = {
    "datasets": {},
    "dataset_root": None,
    "env_free": False,
    "n_actions": None,
    "held_out_metric": "action_match",
}
#: The keys of a spec with sbil's experts that own data replaces, with their defaults.
EXPERT_KEYS: dict[str, Any] = {
    "expert": "scripted",
    "expert_noise": "none",
    "collect_seed": 10_000,
    "dataset_episodes": None,
}
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SweepDataError(ValueError):
    """A sweep's data source that cannot be used as asked (one line, saying how to fix it)."""


def is_npz(source: str) -> bool:
    """Whether a data source names an ``.npz`` file (else it is a Minari dataset id)."""
    return source.lower().endswith(".npz")


@dataclass(frozen=True)
class DataSource:
    """One task's data: a Minari dataset or an ``.npz``, and the task it is played in."""

    task: str
    """The task's name in rows and reports: the Gymnasium id, or (env-free) a name."""
    dataset: str | None
    """Minari dataset id, or None for an ``.npz``."""
    root: str | None
    """The Minari datasets folder (absolute), None: ``$MINARI_DATASETS_PATH`` or ``~/.minari``."""
    data: str | None
    """Absolute path of the ``.npz``, or None for a Minari dataset."""
    env_id: str | None
    """The Gymnasium task its learners are played in; None for env-free data."""
    n_actions: int | None
    """The number of actions, where only the spec gives it (an env-free ``.npz``)."""

    @property
    def label(self) -> str:
        """The dataset id or the file's name, for messages and reports."""
        return self.dataset if self.dataset is not None else Path(self.data).name

    def run_fields(self) -> dict[str, Any]:
        """The data fields of a :class:`~sbil.experiments.runs.RunSpec` for this task."""
        return {
            "dataset": self.dataset,
            "root": self.root,
            "data": self.data,
            "env_id": self.env_id,
            "n_actions": self.n_actions,
        }


def _absolute(path: str | os.PathLike, base: Path | None) -> str:
    path = Path(path).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return os.path.normpath(path.absolute())  # lexically: "a/../b" is "b", links kept


def resolve_paths(data: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """``data`` (spec keys) with its ``.npz`` paths and ``dataset_root`` made absolute,
    relative ones taken from ``base`` (the spec file's folder; None: the current folder)."""
    out = dict(data)
    datasets = out.get("datasets")
    if isinstance(datasets, Mapping):
        out["datasets"] = {
            task: _absolute(source, base) if isinstance(source, str) and is_npz(source) else source
            for task, source in datasets.items()
        }
    if isinstance(out.get("dataset_root"), (str, os.PathLike)):
        out["dataset_root"] = _absolute(out["dataset_root"], base)
    return out


def expand_shorthand(data: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """Spec keys with ``dataset = SOURCE`` replaced by ``datasets`` (and ``env_free``), and the
    tasks (``envs``) taken from ``datasets`` when they are not given; paths resolved against
    ``base`` (:func:`resolve_paths`).

    The shorthand's task is the environment a Minari dataset records; a dataset that records
    none (an ``.npz``, or a Minari dataset made without an environment) gives an env-free sweep
    whose task is named after it.
    """
    data = dict(data)
    if "dataset" in data:
        source = data.pop("dataset")
        if "datasets" in data:
            raise SweepDataError(
                "Give either dataset = SOURCE (one task) or a datasets table, not both."
            )
        if not isinstance(source, str) or not source:
            raise SweepDataError(
                f"dataset must be a Minari dataset id or a path ending in .npz, got {source!r}."
            )
        data = resolve_paths({**data, "datasets": {"_": source}}, base)
        source = data["datasets"]["_"]
        env = None if data.get("env_free") else _recorded_env(source, data.get("dataset_root"))
        if env is None:
            data["env_free"] = True
            task = Path(source).stem if is_npz(source) else source.replace("/", "-")
        else:
            task = env
        data["datasets"] = {task: source}
    else:
        data = resolve_paths(data, base)
    if isinstance(data.get("datasets"), Mapping) and data["datasets"] and "envs" not in data:
        data["envs"] = list(data["datasets"])
    return data


def _recorded_env(source: str, root: str | None) -> str | None:
    """The Gymnasium id a Minari dataset records (None for an ``.npz`` or no env spec)."""
    if is_npz(source):
        return None
    from minari import MinariDataset

    from sbil.deep.datasets import dataset_path

    path = _minari_path(source, root)
    try:
        spec = MinariDataset(path / "data").env_spec
    except Exception as error:  # Minari and h5py fail in many ways on a damaged dataset
        raise SweepDataError(
            f"Cannot read the Minari dataset {source!r} at {dataset_path(source, root)} "
            f"({type(error).__name__}: {error}); re-create it, or pass the right dataset_root."
        ) from None
    return None if spec is None else spec.id


def _minari_path(source: str, root: str | None) -> Path:
    from sbil.deep.datasets import DatasetError, dataset_path, datasets_root

    try:
        path = dataset_path(source, root)
    except DatasetError as error:
        raise SweepDataError(f"datasets: {error}") from None
    if not (path / "data").is_dir():
        raise SweepDataError(
            f"No local Minari dataset {source!r} under {datasets_root(root)}; make it first "
            "(minari.DataCollector, or `sbil collect`), or set dataset_root to its datasets "
            "folder."
        )
    return path


def check_sources(spec: Any) -> tuple[DataSource, ...]:
    """The spec's data sources, checked without opening any dataset (types, task names, ids,
    tasks, and the keys that do not go with own data). ``spec`` has the :data:`DATA_KEYS` and
    :data:`EXPERT_KEYS` as attributes, and ``envs``, ``holdout``.

    Raises:
        SweepDataError: naming the key and how to fix it.
    """
    datasets = spec.datasets
    if not isinstance(datasets, Mapping):
        raise SweepDataError(
            'datasets must be a table of task = source, e.g. {"CartPole-v1" = '
            f'"me/cartpole/heuristic-v0"}}, got {datasets!r}.'
        )
    if not isinstance(spec.env_free, bool):
        raise SweepDataError(f"env_free must be true or false, got {spec.env_free!r}.")
    if spec.held_out_metric not in METRICS:
        raise SweepDataError(
            f"held_out_metric must be one of {', '.join(METRICS)}, got {spec.held_out_metric!r}."
        )
    if not datasets:
        for key in ("dataset_root", "n_actions"):
            if getattr(spec, key) is not None:
                raise SweepDataError(f"{key} is for own data: give datasets (or dataset) too.")
        if spec.env_free:
            raise SweepDataError("env_free = true needs datasets (or dataset): your own data.")
        return ()
    for key, default in EXPERT_KEYS.items():
        if getattr(spec, key) != default:
            raise SweepDataError(
                f"{key} is for demonstrations that sbil's experts record; with datasets the "
                f"data is yours: leave {key} out."
            )
    if tuple(spec.envs) != tuple(datasets):
        raise SweepDataError(
            f"With datasets the tasks are its keys ({', '.join(datasets)}); leave envs out "
            f"(got envs {list(spec.envs)})."
        )
    root = spec.dataset_root
    if root is not None and not isinstance(root, str):
        raise SweepDataError(f"dataset_root must be a folder path, got {root!r}.")
    n_actions = spec.n_actions
    if n_actions is not None and (
        isinstance(n_actions, bool) or not isinstance(n_actions, int) or n_actions < 2
    ):
        raise SweepDataError(f"n_actions must be an integer >= 2, got {n_actions!r}.")
    if spec.env_free and spec.holdout < 1:
        raise SweepDataError(
            "An env-free sweep is measured on held-out episodes only: holdout must be >= 1."
        )
    sources = []
    for task, source in datasets.items():
        sources.append(_check_source(task, source, root, n_actions, spec.env_free))
    return tuple(sources)


def _check_source(
    task: Any, source: Any, root: str | None, n_actions: int | None, env_free: bool
) -> DataSource:
    from sbil.deep.datasets import DatasetError, check_dataset_id

    if not isinstance(source, str) or not source:
        raise SweepDataError(
            f"datasets.{task}: a source is a Minari dataset id or a path ending in .npz, got "
            f"{source!r}."
        )
    npz = is_npz(source)
    if not npz:
        try:
            check_dataset_id(source)
        except DatasetError as error:
            raise SweepDataError(f"datasets.{task}: {error} (a file must end in .npz)") from None
    if env_free:
        if not isinstance(task, str) or not _TASK_NAME.fullmatch(task) or "__" in task:
            raise SweepDataError(
                f"datasets: the env-free task name {task!r} must be letters, digits, '-', '_' "
                "and '.' (no '__'); it names the task in rows and reports."
            )
        if npz and n_actions is None:
            raise SweepDataError(
                f"datasets.{task}: an .npz records no action space; give n_actions = N (the "
                "number of discrete actions)."
            )
        env_id = None
    else:
        from sbil.deep.envs import UnsupportedEnvError, env_spec

        try:
            spec = env_spec(task)
        except UnsupportedEnvError as error:
            raise SweepDataError(
                f"datasets: the key {task!r} is the Gymnasium task its data is played in: "
                f"{error} For data without an environment set env_free = true."
            ) from None
        if n_actions is not None:
            raise SweepDataError(
                f"n_actions is for env-free .npz data; {task} has {spec.n_actions} actions: "
                "leave n_actions out."
            )
        env_id = task
    return DataSource(
        task=task,
        dataset=None if npz else source,
        root=None if npz else root,
        data=_absolute(source, None) if npz else None,
        env_id=env_id,
        n_actions=n_actions if npz and env_free else None,
    )


def load_source(source: DataSource):
    """The source's :class:`~sbil.deep.demonstrations.Demonstrations` with its recorded
    episode returns (Minari's rewards; an ``.npz``'s optional ``episode_returns``), checked
    against its task.

    Raises:
        SweepDataError: for a missing, damaged or unsuitable dataset, naming it.
    """
    from sbil.deep.datasets import DatasetError, load_demonstrations
    from sbil.experiments.runs import RunError, load_npz_demonstrations, resolve_n_actions

    try:
        if source.dataset is not None:
            _minari_path(source.dataset, source.root)
            demos = load_demonstrations(source.dataset, root=source.root, env_id=source.env_id)
        else:
            demos = load_npz_demonstrations(source.data, source.env_id)
            returns = _npz_returns(source.data, demos.n_episodes)
            if returns is not None:
                import dataclasses

                demos = dataclasses.replace(demos, episode_returns=returns)
        resolve_n_actions(demos, source.env_id, source.n_actions)
    except (DatasetError, RunError) as error:
        raise SweepDataError(f"datasets.{source.task}: {error}") from None
    return demos


def _npz_returns(path: str, n_episodes: int) -> np.ndarray | None:
    with np.load(path) as loaded:  # load_npz_demonstrations has read it already
        if "episode_returns" not in loaded.files:
            return None
        try:
            returns = np.asarray(loaded["episode_returns"], dtype=np.float64)
        except (ValueError, TypeError):
            returns = None
    if returns is None or returns.shape != (n_episodes,) or not np.isfinite(returns).all():
        raise SweepDataError(
            f"{path}: episode_returns must be {n_episodes} finite numbers (one per episode)."
        )
    return returns


def load_sources(spec: Any, sources: tuple[DataSource, ...]) -> dict[str, Any]:
    """Open every source and check it holds the episodes the sweep needs (``max(ks) +
    holdout``); per task its demonstrations. Nothing is written.

    Raises:
        SweepDataError: naming the dataset and what it lacks.
    """
    out = {}
    need = max(spec.ks) + spec.holdout
    for source in sources:
        demos = load_source(source)
        if demos.n_episodes < need:
            raise SweepDataError(
                f"datasets.{source.task}: {source.label} has {demos.n_episodes} episodes, fewer "
                f"than max(ks) + holdout = {need}; lower ks or holdout, or record more episodes."
            )
        out[source.task] = demos
    return out


def dataset_references(
    source: DataSource, demos, *, eval_episodes: int, eval_seed: int
) -> dict[str, Any]:
    """A played task's ``references.json`` entry: the random policy's returns over the sweep's
    evaluation episodes (as for sbil's experts) and the dataset's own recorded returns as the
    expert level (``mean`` None, with a ``problem``, when the data records none)."""
    from sbil.deep.envs import env_spec
    from sbil.deep.evaluation import evaluate
    from sbil.experiments.sweeps.folder import _random_policy

    random = evaluate(
        _random_policy(env_spec(source.env_id).n_actions, eval_seed),
        source.env_id,
        eval_episodes,
        eval_seed,
        vectorize=False,
    )
    expert: dict[str, Any] = {"source": "dataset", "name": f"{source.label} (recorded returns)"}
    returns = demos.episode_returns
    if returns is None:
        expert.update(
            mean=None,
            returns=[],
            episodes=0,
            problem=f"{source.label} records no episode returns (an .npz may add "
            "episode_returns [E])",
        )
    else:
        expert.update(mean=float(np.mean(returns)), returns=returns.tolist(), episodes=len(returns))
    return {
        "random": {
            "mean": random.mean,
            "returns": random.returns.tolist(),
            "episodes": eval_episodes,
            "seed": eval_seed,
        },
        "expert": expert,
    }


def held_out_rows(run_spec, folder: Path, seeds) -> dict[int, dict[str, Any]]:
    """Per seed of a finished run, :class:`~sbil.deep.metrics.HeldOutMetrics` of its
    checkpoint on the run's held-out episodes, as a dict (seeds without a checkpoint, i.e.
    failed ones, are left out; {} when the run holds nothing out)."""
    from sbil.deep.checkpoint import load_learner
    from sbil.deep.metrics import policy_held_out_metrics
    from sbil.experiments.runs import load_run_data

    held_out = load_run_data(run_spec).held_out_demos
    if held_out is None:
        return {}
    out = {}
    for seed in seeds:
        checkpoint = folder / f"seed-{seed}"
        if (checkpoint / "learner.json").is_file():
            out[seed] = policy_held_out_metrics(load_learner(checkpoint), held_out).to_dict()
    return out


# --- sweep.json: paths relative to the sweep folder ----------------------------------------------


def _portable(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` unless the two share no folder but the root."""
    absolute, here = Path(path).absolute(), folder.absolute()
    common = Path(os.path.commonpath([absolute, here]))
    if common == Path(common.anchor):
        return str(absolute)
    return os.path.relpath(absolute, here)


def to_stored(spec: dict[str, Any], sweep_dir: Path) -> dict[str, Any]:
    """``SweepSpec.to_dict()`` as ``sweep.json`` stores it: own data's paths relative to the
    sweep folder (:func:`from_stored` undoes it)."""
    out = dict(spec)
    if out.get("datasets"):
        out["datasets"] = {
            task: _portable(source, sweep_dir) if is_npz(source) else source
            for task, source in out["datasets"].items()
        }
    if out.get("dataset_root"):
        out["dataset_root"] = _portable(out["dataset_root"], sweep_dir)
    return out


def from_stored(spec: dict[str, Any], sweep_dir: Path) -> dict[str, Any]:
    """The inverse of :func:`to_stored`: paths in ``sweep.json`` made absolute again."""
    return resolve_paths(spec, sweep_dir.absolute())


def portable_run(run: dict[str, Any]) -> dict[str, Any]:
    """A run description without where its data lies on this machine (the ``.npz``'s folder),
    for ids and hashes that must survive moving the sweep with its data; ``sweep.json`` still
    pins the sources."""
    if run.get("data") is None:
        return run
    return {**run, "data": Path(run["data"]).name}
