"""PPO experts at RL Zoo's tuned hyperparameters, trained here and shipped with sbil.

The EDM paper's reference configuration records a PPO expert for CartPole; RL Zoo (rl-zoo3)
has tuned PPO hyperparameters for all four built-in tasks, so one algorithm serves throughout.
One command trains all four, measures them and writes the folder sbil ships
(``src/sbil/deep/shipped_experts``)::

    nice -n 19 python -m sbil.deep.zoo --out src/sbil/deep/shipped_experts

``--env ENV`` (repeatable) does some of them. Per task it writes ``ENV/ppo-zoo.zip`` (the SB3
model, without the optimizer's moments) and ``ENV/ppo-zoo.json``
(the record: commands, versions, seed, hyperparameters, wall time, the observation
normalisation, the zip's sha256 and the greedy and sampled returns of 100 seeded episodes).
Training and measuring are two phases (``--phase train|record|all``); ``record`` only reads
the zip and re-measures it, so it can be rerun without training.

``get_expert(env_id, "ppo-zoo")`` loads a shipped expert (:mod:`sbil.deep.experts`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbil.deep.envs import BUILTIN_ENVS
from sbil.files import provenance, write_atomic, write_json_atomic

ZOO_NAME = "ppo-zoo"

#: Where the hyperparameters come from (copied by hand, not imported: rl-zoo3 is no dependency).
ZOO_SOURCE = "rl-zoo3 2.9.2, rl_zoo3/hyperparams/ppo.yml"

#: RL Zoo's tuned PPO hyperparameters, the entries of ``rl_zoo3/hyperparams/ppo.yml`` in
#: rl-zoo3 2.9.2 as written there (``lin_X`` is RL Zoo's linear schedule from X to 0, see
#: :class:`LinearSchedule`; ``normalize: true`` wraps the training envs in ``VecNormalize``
#: with the algorithm's gamma). None of the four sets ``policy_kwargs`` (MlpPolicy's default
#: 64x64 tanh actor and critic).
ZOO_PPO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8,
        "n_timesteps": 1e5,
        "policy": "MlpPolicy",
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "Acrobot-v1": {
        "normalize": True,
        "n_envs": 16,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "n_steps": 256,
        "gae_lambda": 0.94,
        "gamma": 0.99,
        "n_epochs": 4,
        "ent_coef": 0.0,
    },
    "MountainCar-v0": {
        "normalize": True,
        "n_envs": 16,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "n_steps": 16,
        "gae_lambda": 0.98,
        "gamma": 0.99,
        "n_epochs": 4,
        "ent_coef": 0.0,
    },
    "LunarLander-v3": {
        "n_envs": 16,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "n_steps": 1024,
        "batch_size": 64,
        "gae_lambda": 0.98,
        "gamma": 0.999,
        "n_epochs": 4,
        "ent_coef": 0.01,
    },
}
assert set(ZOO_PPO) == set(BUILTIN_ENVS)

#: Episodes of the recorded greedy and sampled returns; episode ``i`` is reset with seed
#: ``EVAL_SEED + i`` and the sampled expert draws with noise seed ``NOISE_SEED``.
EVAL_EPISODES = 100
EVAL_SEED = 10_000
NOISE_SEED = 0


@dataclass(frozen=True)
class LinearSchedule:
    """RL Zoo's ``lin_X``: ``X * progress_remaining``, from X at the start to 0 at the end."""

    initial_value: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial_value


def _value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]))
    return value


def ppo_arguments(env_id: str) -> tuple[dict[str, Any], int, int, bool]:
    """``(PPO keyword arguments, n_envs, total timesteps, normalize)`` for ``env_id``'s entry."""
    entry = dict(ZOO_PPO[env_id])
    n_envs = int(entry.pop("n_envs"))
    total = int(entry.pop("n_timesteps"))
    normalize = bool(entry.pop("normalize", False))
    entry.pop("policy")
    return {key: _value(value) for key, value in entry.items()}, n_envs, total, normalize


def zoo_paths(out: str | Path, env_id: str) -> tuple[Path, Path]:
    """``(model zip, JSON record)`` of ``env_id``'s expert under ``out``."""
    stem = Path(out) / env_id / ZOO_NAME
    return stem.with_suffix(".zip"), stem.with_suffix(".json")


def sha256(path: str | Path) -> str:
    """The file's sha256 as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _command(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "sbil.deep.zoo", *argv])


def _versions() -> dict[str, Any]:
    return provenance(["gymnasium", "numpy", "sbil", "stable-baselines3", "torch"])


#: Attributes left out of the saved model: the schedules (closures of this module, not needed
#: to act) and the episode statistics buffers.
_EXCLUDED = ["learning_rate", "lr_schedule", "clip_range", "ep_info_buffer", "ep_success_buffer"]


def _Progress(env_id: str, total: int):
    """An SB3 callback printing the steps done and the frames per second every 10%."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.start, self.next = time.perf_counter(), total // 10

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                fps = self.num_timesteps / (time.perf_counter() - self.start)
                print(f"[zoo] {env_id}: {self.num_timesteps} steps, {fps:.0f} fps", flush=True)
                self.next += total // 10
            return True

    return Progress()


def train(env_id: str, out: str | Path, *, seed: int = 0, command: str = "") -> dict[str, Any]:
    """Train ``env_id``'s PPO expert at RL Zoo's hyperparameters; write its zip and a record.

    The record (``ppo-zoo.json``) holds everything but the evaluation, which :func:`record`
    adds. Returns the record.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    kwargs, n_envs, total, normalize = ppo_arguments(env_id)
    model_path, record_path = zoo_paths(out, env_id)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if normalize:
        env = VecNormalize(env, gamma=kwargs["gamma"])
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps=total, callback=_Progress(env_id, total))
    wall = time.perf_counter() - start
    # Ship the policy without Adam's moments (two thirds of the zip): an empty optimizer state
    # loads as a fresh optimizer, and acting never reads it.
    model.policy.optimizer.state.clear()
    write_atomic(model_path, lambda path: model.save(path, exclude=_EXCLUDED))
    obs_normalization = None
    if normalize:
        rms = env.obs_rms
        obs_normalization = {
            "mean": [float(x) for x in rms.mean],
            "var": [float(x) for x in rms.var],
            "count": float(rms.count),
            "clip_obs": float(env.clip_obs),
            "epsilon": float(env.epsilon),
        }
    data = {
        "env_id": env_id,
        "name": ZOO_NAME,
        "algo": "ppo",
        "hyperparameters_source": ZOO_SOURCE,
        "hyperparameters": ZOO_PPO[env_id],
        "training": {
            "command": command,
            "seed": seed,
            "total_timesteps": total,
            "timesteps_done": int(model.num_timesteps),
            "wall_time_s": round(wall, 1),
            "torch_threads": torch.get_num_threads(),
            **_versions(),
        },
        "obs_normalization": obs_normalization,
        "model_file": model_path.name,
        "model_sha256": sha256(model_path),
        "evaluation": None,
    }
    write_json_atomic(record_path, data)
    return data


def main(argv: list[str] | None = None) -> None:
    """``python -m sbil.deep.zoo``: train and record the shipped PPO experts."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m sbil.deep.zoo", description=__doc__)
    parser.add_argument("--out", required=True, help="Folder to write ENV/ppo-zoo.{zip,json}.")
    parser.add_argument("--env", action="append", choices=list(ZOO_PPO), help="Task(s).")
    parser.add_argument("--seed", type=int, default=0, help="Training seed.")
    parser.add_argument("--phase", choices=["all", "train", "record"], default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads.")
    parser.add_argument(
        "--table", action="store_true", help="Only print the records' table (docs/experts.md)."
    )
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(args.out))
        return
    import torch

    torch.set_num_threads(args.threads)
    for env_id in args.env or list(ZOO_PPO):
        if args.phase in ("all", "train"):
            print(f"[zoo] training {env_id}", flush=True)
            data = train(env_id, args.out, seed=args.seed, command=_command(argv))
            print(f"[zoo] {env_id} trained in {data['training']['wall_time_s']} s", flush=True)
        if args.phase in ("all", "record"):
            data = record(env_id, args.out, command=_command(argv))
            print(f"[zoo] {env_id} recorded: {data['evaluation']['summary']}", flush=True)


def markdown_table(out: str | Path) -> str:
    """The records under ``out`` as docs/experts.md's table (tasks without a record skipped)."""
    import numpy as np

    lines = [
        "| task | VecNormalize | timesteps | training wall time | greedy return | "
        "sampled return | sampled min .. max | zip |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for env_id in ZOO_PPO:
        model_path, record_path = zoo_paths(out, env_id)
        if not record_path.is_file():
            continue
        data = json.loads(record_path.read_text())
        evaluation, training = data["evaluation"] or {}, data["training"]
        cells = []
        for mode in ("greedy", "sampled"):
            stats = evaluation.get(mode)
            cells.append(f"{stats['mean']:.2f} ± {stats['std']:.2f}" if stats else "not measured")
        sampled = np.array(evaluation["sampled"]["returns"]) if evaluation else None
        span = f"{sampled.min():.1f} .. {sampled.max():.1f}" if sampled is not None else ""
        lines.append(
            f"| {env_id} | {'yes' if data['obs_normalization'] else 'no'} | "
            f"{training['total_timesteps']:.0e} | {training['wall_time_s']:.0f} s | "
            f"{cells[0]} | {cells[1]} | {span} | {model_path.stat().st_size // 1000} KB |"
        )
    return "\n".join(lines)


def _returns(result) -> dict[str, Any]:
    return {
        "mean": result.mean,
        "std": result.std,
        "returns": [float(r) for r in result.returns],
        "lengths": [int(n) for n in result.lengths],
    }


def record(env_id: str, out: str | Path, *, command: str = "") -> dict[str, Any]:
    """Measure the saved expert and write the evaluation into its record.

    The greedy and the sampled policy (noise seed :data:`NOISE_SEED`) each play
    :data:`EVAL_EPISODES` episodes reset with seeds ``EVAL_SEED + i``, one episode at a time
    (``vectorize=False``: the model always sees a batch of one, so a test replaying an episode
    computes the same floats). Returns the record.
    """
    from sbil.deep.evaluation import evaluate
    from sbil.deep.experts import ObsNormalization, load_ppo_expert

    model_path, record_path = zoo_paths(out, env_id)
    data = json.loads(record_path.read_text())
    if sha256(model_path) != data["model_sha256"]:
        raise ValueError(f"{model_path} is not the model its record {record_path} describes.")
    normalize = ObsNormalization.from_record(data["obs_normalization"])
    start = time.perf_counter()
    measured = {}
    for mode, sample in (("greedy", False), ("sampled", True)):
        policy = load_ppo_expert(
            model_path, env_id, normalize=normalize, sample=sample, seed=NOISE_SEED
        )
        result = evaluate(policy, env_id, EVAL_EPISODES, seed=EVAL_SEED, vectorize=False)
        measured[mode] = _returns(result)
    summary = ", ".join(
        f"{mode} {measured[mode]['mean']:.2f} ± {measured[mode]['std']:.2f}" for mode in measured
    )
    data["evaluation"] = {
        "command": command,
        "episodes": EVAL_EPISODES,
        "eval_seed": EVAL_SEED,
        "noise_seed": NOISE_SEED,
        "vectorize": False,
        **measured,
        "summary": summary,
        "wall_time_s": round(time.perf_counter() - start, 1),
        **_versions(),
    }
    write_json_atomic(record_path, data)
    return data


if __name__ == "__main__":
    main()
