"""EDM update cost at the published settings: sbil against the reference code's structure.

Three contenders, timed side by side in one process, interleaved over repeats (the median
repeat is reported, so a burst of load from other processes hits all of them alike):

* ``reference``: :class:`ReferenceStructureEDM` below follows the structure of the EDM reference
  code (``EDMStudent`` in vanderschaarlab/mlforhealthlabpub ``alg/edm``): an ``nn.Sequential``
  MLP, ``np.random.choice`` minibatches, a Python loop of 20 ``torch.autograd.grad`` calls with
  ``retain_graph=True`` for SGLD, separate forward passes for the CE and the two ``logsumexp``
  terms, one ``nn.CrossEntropyLoss``, Adam.
* ``sbil x1``: :func:`sbil.deep.learners.train` with one seed.
* ``sbil x20``: the same with 20 seeds trained together as one stacked model.

Data: 10 trajectories of the scripted CartPole-v1 expert (5,000 pairs), batch 32, SGLD 20 steps
of size 0.01 and noise 0.01, buffer 10,000, reinit 0.05, MLP 64-64 ELU, Adam 1e-3.

Run: ``python benchmarks/deep_edm_update.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, train


class ReferenceStructureEDM:
    """One EDM learner written the way the reference code is (the baseline to beat)."""

    def __init__(self, observations: np.ndarray, actions: np.ndarray, n_actions: int) -> None:
        self.states = observations
        self.actions = actions
        dim = observations.shape[1]
        self.net = nn.Sequential(
            nn.Linear(dim, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, n_actions)
        )
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3, betas=(0.9, 0.999))
        self.batch_size = 32
        self.buffer = torch.FloatTensor(10_000, dim).uniform_(-1, 1)

    def _sample_via_sgld(self) -> torch.Tensor:
        indices = torch.randint(0, len(self.buffer), (self.batch_size,))
        buffer_samples = self.buffer[indices]
        random_samples = torch.FloatTensor(self.batch_size, self.buffer.shape[1]).uniform_(-1, 1)
        mask = (torch.rand(self.batch_size) < 0.05).float()[:, None]
        x_t = ((1 - mask) * buffer_samples + mask * random_samples).requires_grad_(True)
        for _ in range(20):
            grad = torch.autograd.grad(self.net(x_t).logsumexp(1).sum(), [x_t], retain_graph=True)[
                0
            ]
            x_t.data += 0.01 * grad + 0.01 * torch.randn_like(x_t)
        samples = x_t.detach()
        self.buffer[indices] = samples
        return samples

    def update(self) -> None:
        # The reference draws from numpy's legacy global RNG; kept for fidelity.
        rows = np.random.choice(len(self.states), size=self.batch_size, replace=False)  # noqa: NPY002
        state = torch.FloatTensor(self.states[rows])
        action = torch.LongTensor(self.actions[rows])
        loss_pi = nn.CrossEntropyLoss()(self.net(state), action)
        state_q = self._sample_via_sgld()
        rho = self.net(state_q).logsumexp(1).mean() - self.net(state).logsumexp(1).mean()
        loss = loss_pi + rho + rho**2
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def expert_pairs(n_trajectories: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """State-action pairs of the scripted CartPole-v1 expert (episode seeds 0..n-1)."""
    from sbil.deep.evaluation import run_episodes
    from sbil.deep.experts import get_expert

    _, _, trajectories = run_episodes(
        get_expert("CartPole-v1"), "CartPole-v1", n_trajectories, seed=0, record=True
    )
    observations = np.concatenate([t.observations[:-1] for t in trajectories])
    actions = np.concatenate([t.actions for t in trajectories])
    return observations, actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=200, help="updates per timed repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=20, help="K for the batched run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for all contenders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (the reference structure uses the global RNG)

    observations, actions = expert_pairs()
    demos = from_arrays(observations, actions)
    reference = ReferenceStructureEDM(observations, actions, 2)
    config = LearnerConfig(algo="edm", n_updates=args.updates)
    batched_config = LearnerConfig(algo="edm", n_updates=max(1, args.updates // 4))

    def run_reference() -> float:
        start = time.perf_counter()
        for _ in range(args.updates):
            reference.update()
        return (time.perf_counter() - start) / args.updates

    def run_single() -> float:
        start = time.perf_counter()
        train(demos, config, seeds=[0], n_actions=2, num_threads=args.threads)
        return (time.perf_counter() - start) / args.updates

    def run_batched() -> float:
        start = time.perf_counter()
        train(
            demos,
            batched_config,
            seeds=range(args.seeds),
            n_actions=2,
            num_threads=args.threads,
        )
        return (time.perf_counter() - start) / batched_config.n_updates

    for run in (run_reference, run_single, run_batched):  # warm up (imports, allocator)
        run()
    times: dict[str, list[float]] = {"reference": [], "single": [], "batched": []}
    for _ in range(args.repeats):
        times["reference"].append(run_reference())
        times["single"].append(run_single())
        times["batched"].append(run_batched())
    ref = statistics.median(times["reference"])
    single = statistics.median(times["single"])
    batched = statistics.median(times["batched"])
    k = args.seeds
    print(
        f"{datetime.date.today()} torch {torch.__version__} threads {args.threads} "
        f"{platform.processor() or platform.machine()}; median of {args.repeats} repeats "
        f"({args.updates} updates each; batched {batched_config.n_updates})"
    )
    print(f"{'contender':<22}{'ms / update':>12}{'learner-updates/s':>20}{'vs reference':>14}")
    print(f"{'reference structure':<22}{ref * 1e3:>12.3f}{1 / ref:>20.0f}{1.0:>13.2f}x")
    print(f"{'sbil, 1 learner':<22}{single * 1e3:>12.3f}{1 / single:>20.0f}{ref / single:>13.2f}x")
    print(
        f"{f'sbil, {k} learners':<22}{batched * 1e3:>12.3f}{k / batched:>20.0f}"
        f"{k * ref / batched:>13.2f}x"
    )
    spread = {name: (min(v) * 1e3, max(v) * 1e3) for name, v in times.items()}
    print(
        "min/max ms per update over repeats:",
        {k: f"{a:.2f}/{b:.2f}" for k, (a, b) in spread.items()},
    )


if __name__ == "__main__":
    main()
