"""One stack of learners (:class:`Stack`): staging, networks, optimiser, the update loop and
its checkpoints, around each learner's own update (:mod:`sbil.deep.learners`).

Longer than most modules: the stack's state and the loop that checkpoints and resumes it are
one object, whose checkpoint format and bit-for-bit resume are tested as one.

Part of the training loop (:mod:`sbil.deep.training` is its public face and module doc).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from sbil.deep.config import ALGO_DEFAULTS, LearnerConfig, LearnerInputError
from sbil.deep.learners.registry import learner_module
from sbil.deep.losses import cross_entropy, named_terms, policy_regularizer
from sbil.deep.networks import StackedMLP
from sbil.deep.segmented_adam import SegmentedAdam
from sbil.deep.sgld import uniform_buffer
from sbil.deep.train_inputs import (
    _ENERGY_INIT,
    _MINIBATCH,
    _POLICY_INIT,
    _SGLD,
    minibatch_indices,
    seed_generator,
)
from sbil.deep.train_result import (
    STATE_FORMAT,
    TrainedPolicy,
    TrainingDiverged,
    TrainingInterrupted,
    loss_term,
)
from sbil.files import write_bytes_atomic


def _divergence_hint(config: LearnerConfig) -> str:
    published = ALGO_DEFAULTS[config.algo]["learning_rate"]
    if config.learning_rate > max(1e-2, 10 * published):
        return (
            f"the learning rate {config.learning_rate:g} is likely too large (the published "
            f"setting for {config.algo} is {published:g})"
        )
    if config.uses_sgld:
        return (
            "the SGLD chains likely ran off to large inputs (try a smaller --sgld-step-size or "
            "--normalize) or the learning rate is too large"
        )
    return "the learning rate is likely too large or the observations badly scaled (--normalize)"


class Stack:
    """One stack of learners with equal minibatch size: the shared machinery around the
    learner's update (its module's ``update``, :mod:`sbil.deep.learners`).

    It stages each learner's training rows on the device, builds the networks and the
    optimiser, draws the minibatches, runs the loop and reads and writes the checkpoints. A
    learner's ``update(stack, index)`` reads:

    * ``config``, ``batch`` (``B``), ``n_actions``, ``obs_dim``, ``device``;
    * ``policy`` and ``energy`` (the second network, or None): stacked MLPs;
    * ``optimizer``: one fused Adam over the groups of its module's ``parameter_groups(stack)``
      if it has one, else of both networks' weights at ``learning_rate``;
    * ``sgld_gens``: each learner's generator of its SGLD stream, ``compile_sgld`` (run the
      chains through ``torch.compile``), and ``buffer``, the
      persistent SGLD buffer ``[K, sgld_buffer_size, obs_dim]`` of the learners that draw
      SGLD samples (else None);
    * :meth:`pairs`, :meth:`transitions`, :meth:`policy_on` and :meth:`descend`;
    * ``trained_policy``: the policy trained already (:class:`TrainedPolicy`), or None; with
      one, ``policy`` holds its weights, only ``energy`` trains, and each update calls the
      learner's ``state_model_update(stack, index, policy_terms)`` with the policy's terms of
      that update (``{name: [K]}``), which descends through :meth:`descend_state_model`.
    """

    def __init__(
        self,
        *,
        config,
        seeds,
        demos,
        rows,
        n_actions,
        device,
        init_policy_state,
        trained_policy=None,
        segments=None,
        compile_sgld=False,
    ):
        self.config, self.seeds, self.n_actions, self.device = config, seeds, n_actions, device
        self.compile_sgld = bool(compile_sgld)
        many = segments is not None and len(segments) > 1
        self.segments = tuple(map(int, segments)) if many else None
        self.learner = learner_module(config.algo)
        self.batch = min(config.batch_size, len(rows[0]))
        self.obs_dim = demos[0].obs_dim
        self.n_pairs = np.array([len(r) for r in rows], dtype=np.int64)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(self.n_pairs)[:-1]]))
        means, stds, observations, following = [], [], [], []
        for d, r in zip(demos, rows, strict=True):
            obs = d.observations
            if config.normalize_observations:
                mean = obs.mean(axis=0, dtype=np.float64).astype(np.float32)
                std = np.maximum(obs.std(axis=0, dtype=np.float64), 1e-6).astype(np.float32)
            else:
                mean, std = np.zeros(self.obs_dim, np.float32), np.ones(self.obs_dim, np.float32)
            means.append(mean)
            stds.append(std)
            observations.append(((obs - mean) / std)[r])
            if config.uses_transitions:  # unknown next states (terminal ones) become zeros
                following.append(np.nan_to_num((d.next_observations[r] - mean) / std, nan=0.0))
        self.mean, self.std = np.stack(means), np.stack(stds)
        self.data_obs = torch.from_numpy(np.concatenate(observations)).to(device)

        def gather(field: str) -> torch.Tensor:
            """One field's training rows of every learner, concatenated, on the device."""
            values = np.concatenate(
                [getattr(d, field)[r] for d, r in zip(demos, rows, strict=True)]
            )
            return torch.from_numpy(values).to(device)

        self.data_act = gather("actions")
        if config.uses_transitions:
            self.data_next_obs = torch.from_numpy(np.concatenate(following)).to(device)
            self.data_next_act = gather("next_actions").clamp(min=0)  # -1 only where unused
            self.data_done = gather("terminals").to(torch.float32)
        self.trained_policy = trained_policy
        self.fingerprint = self._fingerprint(demos, init_policy_state)
        if trained_policy is not None:
            # A full training's state of the same learners can be taken over (its policy's
            # Adam moments dropped); the fingerprint of this one also names the given policy.
            self.full_fingerprint = self.fingerprint
            self.fingerprint = _given_policy_fingerprint(self.fingerprint, trained_policy)
            self.policy_curves = {
                name: torch.from_numpy(curve).to(device)
                for name, curve in trained_policy.curves.items()
            }

        def networks(stream: int, in_dim: int, out_dim: int) -> StackedMLP:
            gens = [seed_generator(s, stream) for s in seeds]
            return StackedMLP.initialized(
                gens,
                in_dim=in_dim,
                hidden_sizes=config.hidden_sizes,
                out_dim=out_dim,
                device=device,
            )

        self.policy = networks(_POLICY_INIT, self.obs_dim, n_actions)
        if init_policy_state is not None:
            k = len(seeds)
            self.policy.load_state_dict(
                {name: v.expand(k, *v.shape[1:]).clone() for name, v in init_policy_state.items()}
            )
        if trained_policy is not None:
            self.policy.load_state_dict(trained_policy.policy_state)
        # The second network: decoupled EDM's state model, ValueDICE's nu, AVRIL's encoder.
        self.energy = None
        if config.second_network is not None:
            self.energy = networks(
                _ENERGY_INIT, *config.second_network_shape(self.obs_dim, n_actions)
            )
        groups = getattr(self.learner, "parameter_groups", _parameter_groups)(self)
        # The fused kernel is the same elementwise Adam as the default, about 3x cheaper per step.
        # Stepped per segment, so that each segment trains as it would alone (SegmentedAdam).
        self.optimizer = SegmentedAdam(
            groups, segments=segments, lr=config.learning_rate, betas=config.adam_betas
        )
        self.batch_gens = [seed_generator(s, _MINIBATCH) for s in seeds]
        self.sgld_gens = [seed_generator(s, _SGLD) for s in seeds]
        self.buffer = None
        if config.uses_sgld:
            # Filled learner by learner: one buffer in memory, not a list plus its stacked copy.
            self.buffer = torch.empty(len(seeds), config.sgld_buffer_size, self.obs_dim)
            for k, g in enumerate(self.sgld_gens):
                self.buffer[k] = uniform_buffer(g, config.sgld_buffer_size, self.obs_dim)
            self.buffer = self.buffer.to(device)
        self.update = 0
        self.history: list[torch.Tensor] = []  # [n_terms, K] per update
        self.term_names: tuple[str, ...] | None = None  # set by the first update or the state
        self.delivered = 0  # updates handed to on_terms by this process
        self.diverged: dict[int, tuple[int, float]] = {}  # by position in the stack
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []

    def _fingerprint(self, demos, init_policy_state) -> str:
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                [self.config.to_dict(), list(self.seeds), self.n_actions], sort_keys=True
            ).encode()
        )
        if self.segments is not None:  # steps per segment: another arithmetic (SegmentedAdam)
            digest.update(json.dumps({"segments": list(self.segments)}).encode())
        for d in demos:
            digest.update(d.observations.tobytes())
            digest.update(d.actions.tobytes())
            if self.config.uses_transitions:
                for array in (d.next_observations, d.next_actions, d.terminals):
                    digest.update(array.tobytes())
        if init_policy_state is not None:
            for name in sorted(init_policy_state):
                digest.update(init_policy_state[name].numpy().tobytes())
        return digest.hexdigest()

    # --- one update: the minibatch, then the learner's step ----------------------------------

    def step(self) -> dict[str, torch.Tensor]:
        """One update of every learner: draw each one's minibatch and call the learner's
        ``update``; returns its terms ``{name: [K]}`` (detached): the loss dataclass's fields by
        name, the optional regularisers, and always the policy's cross-entropy
        ``mean -log pi(a|s)`` on the minibatch.
        """
        index = torch.stack(
            [
                minibatch_indices(g, int(n), self.batch)
                for g, n in zip(self.batch_gens, self.n_pairs, strict=True)
            ]
        ) + self.offsets.unsqueeze(1)
        if self.trained_policy is not None:
            policy_terms = {name: c[:, self.update] for name, c in self.policy_curves.items()}
            return self.learner.state_model_update(self, index.to(self.device), policy_terms)
        return self.learner.update(self, index.to(self.device))

    def pairs(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, a)`` of the minibatch ``index`` ``[K, B]``: ``[K, B, d]``, ``[K, B]``."""
        return self.data_obs[index], self.data_act[index]

    def transitions(self, index: torch.Tensor):
        """``(s, a, s', a', done)`` of the minibatch: ``[K, B, d]``, ``[K, B]``, ``[K, B, d]``,
        ``[K, B]``, ``[K, B]`` (``done`` 1.0 where ``s'`` is terminal; ``s'`` is zeros and
        ``a'`` 0 where unknown)."""
        return (
            self.data_obs[index],
            self.data_act[index],
            self.data_next_obs[index],
            self.data_next_act[index],
            self.data_done[index],
        )

    def policy_on(
        self, states: torch.Tensor, next_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy network's outputs on ``s`` and ``s'`` ``[K, B, d]`` in one forward."""
        out = self.policy(torch.cat([states, next_states], dim=1))
        return out[:, : self.batch], out[:, self.batch :]

    def descend(
        self, losses, policy_logits: torch.Tensor, actions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One Adam step on ``losses.loss`` (a loss dataclass, ``[K]`` each) plus the optional
        policy regulariser on ``policy_logits`` ``[K, B, A]``; returns the update's terms: the
        dataclass's fields by name, ``policy_regularizer`` when it is on, and the policy's
        ``cross_entropy`` for ``actions`` ``[K, B]`` (the dataclass's own where it has one)."""
        terms = named_terms(losses)
        loss = losses.loss
        if self.config.l2_coef or self.config.entropy_coef:
            regularizer = policy_regularizer(policy_logits, self.policy, self.config)
            loss = loss + regularizer
            terms["policy_regularizer"] = regularizer.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # learner k's parameters get the gradient of loss[k] only
        self.optimizer.step()
        if "cross_entropy" not in terms:
            terms["cross_entropy"] = cross_entropy(policy_logits.detach(), actions)
        return terms

    def descend_state_model(
        self, losses, policy_terms: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """:meth:`descend` for a stack given its trained policy: one Adam step of the second
        network on ``losses.loss`` (whose policy term is the given one, a constant), plus the
        given ``policy_regularizer`` when it is on (a constant too, so that the recorded loss
        is the full training's); the gradients, hence the steps, are a full training's.
        Returns the terms as :meth:`descend` does."""
        terms = named_terms(losses)
        loss = losses.loss
        if self.config.l2_coef or self.config.entropy_coef:
            regularizer = policy_terms["policy_regularizer"]
            loss = loss + regularizer
            terms["policy_regularizer"] = regularizer
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.optimizer.step()
        return terms

    # --- the loop, checkpoints and divergence -------------------------------------------------

    def run(
        self,
        state_file,
        checkpoint_every,
        stop,
        stop_on_divergence,
        snapshot_every,
        progress,
        on_terms=None,
    ) -> dict:
        config = self.config
        if state_file is not None and state_file.is_file():
            self._load(state_file)
        report_every = max(1, config.n_updates // 200)
        k = len(self.seeds)
        reported = None  # the last update given to progress
        while self.update < config.n_updates:
            terms = self.step()
            if self.term_names is None:
                self.term_names = tuple(terms)
            values = torch.stack([terms[name] for name in self.term_names])  # [n_terms, K]
            self.update += 1
            self.history.append(values)
            loss = values[self.term_names.index(loss_term(config.algo))]
            finite = torch.isfinite(loss)
            if not bool(finite.all()):
                self._deliver(on_terms)  # the logs show the update that diverged
                self._record_divergence(finite, loss, stop_on_divergence)
            if snapshot_every and self.update % snapshot_every == 0:
                self.snapshots.append((self.update, _cpu_state(self.policy)))
            if state_file is not None and (
                self.update % checkpoint_every == 0 or self.update == config.n_updates
            ):
                self._save(state_file)
            if stop.is_set():
                if state_file is not None and self.update % checkpoint_every:
                    self._save(state_file)
                self._deliver(on_terms)
                raise TrainingInterrupted(
                    f"Interrupted at update {self.update} of {config.n_updates}; the training "
                    "state was saved, so the run can be resumed."
                )
            if self.update % report_every == 0 or self.update == config.n_updates:
                self._deliver(on_terms)
                if progress is not None:
                    progress(self.update)
                    reported = self.update
        if progress is not None and reported != config.n_updates:  # e.g. resumed when done
            progress(config.n_updates)
        self._deliver(on_terms)
        names = self.term_names or ()
        if self.history:
            history = torch.stack(self.history, dim=2).cpu().numpy()  # [n_terms, K, n_updates]
        else:
            history = np.zeros((len(names), k, 0), np.float32)
        return {
            "policy": _cpu_state(self.policy),
            "energy": None if self.energy is None else _cpu_state(self.energy),
            "curves": {name: history[i] for i, name in enumerate(names)},
            "mean": self.mean,
            "std": self.std,
            "n_pairs": self.n_pairs,
            "diverged": self.diverged,
            "snapshots": self.snapshots,
        }

    def _deliver(self, on_terms) -> None:
        """Hand the updates not yet given to ``on_terms`` to it (from update 0 after a load)."""
        if on_terms is None or self.delivered >= self.update:
            return
        block = torch.stack(self.history[self.delivered : self.update], dim=2).cpu().numpy()
        on_terms(self.seeds, self.delivered, {n: block[i] for i, n in enumerate(self.term_names)})
        self.delivered = self.update

    def _record_divergence(self, finite, loss, stop_on_divergence) -> None:
        for k in np.flatnonzero(~finite.cpu().numpy()):
            seed = self.seeds[k]
            if int(k) in self.diverged:
                continue
            value = float(loss[k])
            self.diverged[int(k)] = (self.update, value)
            message = (
                f"Training diverged: the loss of seed {seed} became {value} at update "
                f"{self.update} of {self.config.n_updates}; {_divergence_hint(self.config)}. "
                "Nothing of this learner was saved as finished."
            )
            if stop_on_divergence:
                raise TrainingDiverged(message, seed=seed, update=self.update)

    def _save(self, path: Path) -> None:
        payload = {
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "update": self.update,
            "policy": self.policy.state_dict(),
            "energy": None if self.energy is None else self.energy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer,
            "batch_gens": [g.get_state() for g in self.batch_gens],
            "sgld_gens": [g.get_state() for g in self.sgld_gens],
            "history": torch.stack(self.history, dim=2).cpu() if self.history else None,
            "terms": None if self.term_names is None else list(self.term_names),
            "diverged": [[self.seeds[k], u, v] for k, (u, v) in self.diverged.items()],
            "diverged_at": [[k, u, v] for k, (u, v) in self.diverged.items()],
            "snapshots": self.snapshots,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buffer.getvalue())

    def _load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            if not isinstance(state, dict):
                raise TypeError("not a dict")
        except Exception as error:
            raise LearnerInputError(
                f"The training state {path} cannot be read ({type(error).__name__}); delete it "
                "to start this training again."
            ) from None
        if state.get("format") != STATE_FORMAT:
            raise LearnerInputError(
                f"The training state {path} was written by another version of sbil (state "
                f"format {state.get('format')}, this one reads {STATE_FORMAT}); delete it to "
                "start this training again."
            )
        if self.trained_policy is not None and state.get("fingerprint") == self.full_fingerprint:
            # A full training's state (e.g. of an earlier sbil): continue it here.
            state = _without_policy_training(state, self.fingerprint)
        if state.get("fingerprint") != self.fingerprint:
            raise LearnerInputError(
                f"The training state {path} belongs to a different training (other data, seeds "
                "or settings); resume with the settings it was started with, or delete it."
            )
        self.update = int(state["update"])
        if self.trained_policy is None:
            self.policy.load_state_dict(state["policy"])
        if self.energy is not None:
            self.energy.load_state_dict(state["energy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.buffer is not None:
            self.buffer.copy_(state["buffer"])
        for g, s in zip(self.batch_gens, state["batch_gens"], strict=True):
            g.set_state(s.cpu())  # map_location moved it to the device; states live on CPU
        for g, s in zip(self.sgld_gens, state["sgld_gens"], strict=True):
            g.set_state(s.cpu())
        history = state["history"]
        self.history = [] if history is None else list(history.to(self.device).unbind(2))
        self.term_names = None if state["terms"] is None else tuple(state["terms"])
        self.delivered = 0  # this process has handed nothing to on_terms yet
        if "diverged_at" in state:  # by position (seeds may repeat across segments)
            self.diverged = {int(k): (int(u), float(v)) for k, u, v in state["diverged_at"]}
        else:  # an earlier sbil's, by seed (distinct then)
            at = {s: k for k, s in enumerate(self.seeds)}
            self.diverged = {at[int(s)]: (int(u), float(v)) for s, u, v in state["diverged"]}
        self.snapshots = [(int(u), dict(s)) for u, s in state["snapshots"]]


def _parameter_groups(stack: Stack) -> list[dict]:
    """Adam's parameter groups unless the learner's module has its own: the policy's (unless
    it was given trained), then the second network's, both at ``learning_rate``."""
    groups = []
    if stack.trained_policy is None:
        groups.append({"params": [*stack.policy.parameters()]})
    if stack.energy is not None:
        groups.append({"params": [*stack.energy.parameters()]})
    return groups


def _given_policy_fingerprint(fingerprint: str, trained: TrainedPolicy) -> str:
    """The fingerprint of a training given ``trained``: the full training's and the given
    policy's weights and terms."""
    digest = hashlib.sha256(f"{fingerprint} trained policy".encode())
    for name in sorted(trained.policy_state):
        digest.update(trained.policy_state[name].numpy().tobytes())
    for name in sorted(trained.curves):
        digest.update(name.encode())
        digest.update(trained.curves[name].tobytes())
    return digest.hexdigest()


def _without_policy_training(state: dict, fingerprint: str) -> dict:
    """A full training's state (both networks, one Adam over the policy's parameters then the
    second network's) as the state of its second network's training alone: the second
    group's parameters and moments, renumbered, under ``fingerprint``. Its weights, buffer,
    generators and history are what the training given its policy holds at the same update."""
    optimizer = state["optimizer"]
    _, energy_group = optimizer["param_groups"]
    moments = optimizer["state"]
    return {
        **state,
        "fingerprint": fingerprint,
        "optimizer": {
            "state": {i: moments[p] for i, p in enumerate(energy_group["params"]) if p in moments},
            "param_groups": [{**energy_group, "params": list(range(len(energy_group["params"])))}],
        },
    }


def _cpu_state(net: StackedMLP) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}
