"""Expert demonstrations in memory: the validated, immutable :class:`Demonstrations` container.

:class:`Demonstrations` holds the state-action pairs learners train on, flattened over
episodes, with the episode boundaries kept so that the EDM protocol can vary the number of
trajectories ``k`` (:meth:`Demonstrations.subset`, :meth:`Demonstrations.split`). Build it
from arrays with :func:`from_arrays`; Minari datasets on disk are read by
:func:`sbil.deep.datasets.load_demonstrations`.

Example:
    >>> import numpy as np
    >>> from sbil.deep.demonstrations import from_arrays
    >>> demos = from_arrays(np.zeros((5, 3)), [0, 1, 1, 0, 1], episode_lengths=[2, 3])
    >>> demos.n_episodes, demos.n_steps, demos.subset(1).n_steps
    (2, 5, 2)

Longer than ~400 lines: one frozen container, whose validation (every field's shape, dtype,
finiteness and consistency with the others) is its constructor, and its subsetting methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sbil.deep.envs import EnvSpec, env_spec


class DatasetError(ValueError):
    """A dataset is missing, malformed, or does not fit the task it is used with."""


@dataclass(frozen=True, eq=False, repr=False)
class Demonstrations:
    """Expert state-action pairs of ``E`` episodes, concatenated in episode order.

    Attributes:
        observations: ``[N, obs_dim]`` float32, finite; the states where actions were taken
            (an episode's final observation is not included).
        actions: ``[N]`` int64, non-negative; ``actions[i]`` was taken in ``observations[i]``.
        episode_lengths: ``[E]`` int64, each ``>= 1``, summing to ``N``.
        episode_returns: ``[E]`` float64 undiscounted returns, or ``None`` if unknown.
        env_id: the Gymnasium task the episodes come from, if known.
        n_actions: size of the discrete action space the episodes were recorded with, if
            known (every action is ``< n_actions``). Learners should size their output from
            it, not from ``actions.max() + 1``: a dataset need not contain every action.
        next_observations: ``[N, obs_dim]`` float32, the state each action led to: row ``i+1``
            within an episode, and at an episode's last step its final observation, or a row
            of NaN where that was not recorded. Default: derived from the episodes (NaN at
            every last step).
        next_actions: ``[N]`` int64, the expert's action in the next state, ``-1`` where
            unknown (an episode's last step). Default: derived from the episodes.
        terminals: ``[N]`` bool, True where the step ended its episode in a terminal state
            (the task ended; nothing follows), False where the episode was cut by a time
            limit or goes on. Default: all False.

    Learners that use transitions (ValueDICE, RCAL, IQ-Learn, AVRIL) train on the rows whose
    next state is known (:meth:`transition_rows`).
    """

    observations: np.ndarray
    actions: np.ndarray
    episode_lengths: np.ndarray
    episode_returns: np.ndarray | None = None
    env_id: str | None = None
    n_actions: int | None = None
    next_observations: np.ndarray | None = None
    next_actions: np.ndarray | None = None
    terminals: np.ndarray | None = None

    def __post_init__(self) -> None:
        obs, actions, lengths = self.observations, self.actions, self.episode_lengths
        for name, value in (
            ("observations", obs),
            ("actions", actions),
            ("episode_lengths", lengths),
        ):
            if not isinstance(value, np.ndarray):
                raise DatasetError(
                    f"{name} must be a numpy array, got {type(value).__name__}; "
                    "build Demonstrations with from_arrays(...) to convert."
                )
        if obs.dtype != np.float32 or obs.ndim != 2:
            raise DatasetError(
                f"observations must be float32 of shape [N, obs_dim], got {obs.dtype} {obs.shape}; "
                "use from_arrays(...) to convert."
            )
        if actions.dtype != np.int64 or actions.shape != (len(obs),):
            raise DatasetError(
                f"actions must be int64 of shape [{len(obs)}] (one per observation), got "
                f"{actions.dtype} {actions.shape}."
            )
        if lengths.dtype != np.int64 or lengths.ndim != 1:
            raise DatasetError(
                f"episode_lengths must be int64 of shape [E], got {lengths.dtype} {lengths.shape}."
            )
        if len(lengths) == 0 or len(obs) == 0:
            raise DatasetError("The demonstrations are empty: they need at least one step.")
        if lengths.min() < 1:
            episode = int(np.argmin(lengths))
            raise DatasetError(
                f"Episode {episode} has {int(lengths[episode])} steps; "
                "every episode needs at least one."
            )
        if int(lengths.sum()) != len(obs):
            raise DatasetError(
                f"episode_lengths sum to {int(lengths.sum())} but there are {len(obs)} "
                "observations; they must be equal."
            )
        bad_rows = ~np.isfinite(obs).all(axis=1)
        if bad_rows.any():
            row = int(np.argmax(bad_rows))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has a NaN or infinite observation at step {step}; "
                "remove or fix that episode."
            )
        if actions.min() < 0:
            row = int(np.argmin(actions))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has negative action {int(actions[row])} at step {step}; "
                "discrete actions are 0..n_actions-1."
            )
        n_actions = self.n_actions
        if n_actions is not None:
            if isinstance(n_actions, bool) or not isinstance(n_actions, (int, np.integer)):
                raise DatasetError(
                    f"n_actions must be a positive integer or None, got {n_actions!r}."
                )
            if n_actions < 1:
                raise DatasetError(f"n_actions must be a positive integer, got {n_actions}.")
            object.__setattr__(self, "n_actions", int(n_actions))
            if actions.max() >= n_actions:
                row = int(np.argmax(actions >= n_actions))
                episode, step = self._locate(row)
                raise DatasetError(
                    f"Episode {episode} has action {int(actions[row])} at step {step}, but "
                    f"there are n_actions={n_actions} actions (0..{n_actions - 1}); "
                    "fix the action or pass the right n_actions."
                )
        returns = self.episode_returns
        if returns is not None:
            if not isinstance(returns, np.ndarray) or returns.shape != lengths.shape:
                raise DatasetError(
                    f"episode_returns must be an array of shape {lengths.shape} (one per episode), "
                    f"got {getattr(returns, 'shape', type(returns).__name__)}."
                )
            if not np.isfinite(returns).all():
                episode = int(np.argmax(~np.isfinite(returns)))
                raise DatasetError(f"Episode {episode} has a NaN or infinite return.")
        self._check_transitions()
        # Store read-only views: the container is immutable, the caller's arrays are untouched.
        for name in (
            "observations",
            "actions",
            "episode_lengths",
            "episode_returns",
            "next_observations",
            "next_actions",
            "terminals",
        ):
            value = getattr(self, name)
            if value is not None:
                view = value.view()
                view.setflags(write=False)
                object.__setattr__(self, name, view)

    def _check_transitions(self) -> None:
        """Fill the transition fields left as None from the episodes; check given ones."""
        obs, lengths = self.observations, self.episode_lengths
        last = np.cumsum(lengths) - 1
        is_last = np.zeros(len(obs), dtype=bool)
        is_last[last] = True
        if self.next_observations is None:
            following = np.full_like(obs, np.nan)
            following[~is_last] = obs[1:][~is_last[:-1]]
            object.__setattr__(self, "next_observations", following)
        if self.next_actions is None:
            following_actions = np.full(len(obs), -1, dtype=np.int64)
            following_actions[~is_last] = self.actions[1:][~is_last[:-1]]
            object.__setattr__(self, "next_actions", following_actions)
        if self.terminals is None:
            object.__setattr__(self, "terminals", np.zeros(len(obs), dtype=bool))
        nxt, nxt_act, terminals = self.next_observations, self.next_actions, self.terminals
        if not isinstance(nxt, np.ndarray) or nxt.dtype != np.float32 or nxt.shape != obs.shape:
            raise DatasetError(
                f"next_observations must be float32 of shape {list(obs.shape)} (one per "
                f"observation), got {getattr(nxt, 'dtype', type(nxt).__name__)} "
                f"{getattr(nxt, 'shape', '')}; use from_arrays(...) to build it."
            )
        finite, missing = np.isfinite(nxt).all(axis=1), np.isnan(nxt).all(axis=1)
        if not (finite | missing).all():
            episode, step = self._locate(int(np.argmax(~(finite | missing))))
            raise DatasetError(
                f"Episode {episode} has an infinite or partly-NaN next observation at step "
                f"{step}; a next observation is finite, or all NaN when it is unknown."
            )
        if (
            not isinstance(nxt_act, np.ndarray)
            or nxt_act.dtype != np.int64
            or nxt_act.shape != (len(obs),)
        ):
            raise DatasetError(
                f"next_actions must be int64 of shape [{len(obs)}], got "
                f"{getattr(nxt_act, 'dtype', type(nxt_act).__name__)}; use from_arrays(...)."
            )
        too_large = nxt_act >= self.n_actions if self.n_actions is not None else False
        bad_actions = (nxt_act < -1) | too_large
        if bad_actions.any():
            row = int(np.argmax(bad_actions))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has next action {int(nxt_act[row])} at step {step}; next "
                "actions are 0..n_actions-1, or -1 where unknown."
            )
        if (
            not isinstance(terminals, np.ndarray)
            or terminals.dtype != bool
            or terminals.shape != (len(obs),)
        ):
            raise DatasetError(f"terminals must be bool of shape [{len(obs)}].")
        if (terminals & ~is_last).any():
            episode, step = self._locate(int(np.argmax(terminals & ~is_last)))
            raise DatasetError(
                f"Episode {episode} is marked terminal at step {step}, which is not its last "
                "step; only an episode's last step can end it."
            )

    def transition_rows(self, *, need_next_action: bool = False) -> np.ndarray:
        """``[M]`` int64 rows usable as transitions ``(s, a, s')``: those whose next state is
        known or terminal; with ``need_next_action``, also those whose next action is known
        (every step but an episode's last) or terminal (AVRIL's ``Q(s', a')`` is then 0)."""
        known = np.isfinite(self.next_observations).all(axis=1) | self.terminals
        if need_next_action:
            known &= (self.next_actions >= 0) | self.terminals
        return np.flatnonzero(known).astype(np.int64)

    def __repr__(self) -> str:
        """A summary (counts, shapes, dtypes, returns), never the arrays themselves."""
        lengths = self.episode_lengths
        parts = [
            f"{self.n_episodes} episode{'s' * (self.n_episodes != 1)}",
            f"{self.n_steps} steps",
            f"env_id={self.env_id!r}",
            f"n_actions={self.n_actions}",
            f"observations {self.observations.dtype}{list(self.observations.shape)}",
            f"actions {self.actions.dtype}{list(self.actions.shape)}",
            f"episode length {_mean_std(lengths)} (min {lengths.min()}, max {lengths.max()})",
        ]
        if self.episode_returns is not None:
            parts.append(f"return {_mean_std(self.episode_returns)}")
        known = int(self.transition_rows().size)
        parts.append(
            f"{known} transitions (next state known), {int(self.terminals.sum())} terminal"
        )
        return f"Demonstrations({', '.join(parts)})"

    def _locate(self, row: int) -> tuple[int, int]:
        """(episode, step within it) of flat row ``row``."""
        ends = np.cumsum(self.episode_lengths)
        episode = int(np.searchsorted(ends, row, side="right"))
        start = int(ends[episode - 1]) if episode else 0
        return episode, row - start

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E``."""
        return len(self.episode_lengths)

    @property
    def n_steps(self) -> int:
        """Number of state-action pairs ``N``."""
        return len(self.actions)

    @property
    def obs_dim(self) -> int:
        """Length of an observation vector."""
        return int(self.observations.shape[1])

    @property
    def episode_starts(self) -> np.ndarray:
        """``[E]`` int64 index of each episode's first row."""
        return np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)

    def episode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(observations[T, obs_dim], actions[T])`` of episode ``index``."""
        if not -self.n_episodes <= index < self.n_episodes:
            raise IndexError(f"Episode {index} does not exist; there are {self.n_episodes}.")
        index %= self.n_episodes
        start = int(self.episode_starts[index])
        stop = start + int(self.episode_lengths[index])
        return self.observations[start:stop], self.actions[start:stop]

    def select(self, episodes: Sequence[int] | np.ndarray) -> Demonstrations:
        """The demonstrations of the given episodes, in the given order.

        ``env_id`` and ``n_actions`` are kept. To hold episodes out for evaluation, see
        :meth:`split`, or select the complement yourself.

        Args:
            episodes: episode indices, non-empty, each in ``0..E-1``, no repeats.
        """
        episodes = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if len(episodes) == 0:
            raise DatasetError("Select at least one episode.")
        if episodes.min() < 0 or episodes.max() >= self.n_episodes:
            raise DatasetError(
                f"Episode indices must be in 0..{self.n_episodes - 1}, got {episodes.tolist()}."
            )
        if len(np.unique(episodes)) != len(episodes):
            raise DatasetError(f"Episode indices must not repeat, got {episodes.tolist()}.")
        starts = self.episode_starts[episodes]
        lengths = self.episode_lengths[episodes]
        rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)])
        return Demonstrations(
            observations=self.observations[rows],
            actions=self.actions[rows],
            episode_lengths=lengths.copy(),
            episode_returns=None
            if self.episode_returns is None
            else self.episode_returns[episodes],
            env_id=self.env_id,
            n_actions=self.n_actions,
            next_observations=self.next_observations[rows],
            next_actions=self.next_actions[rows],
            terminals=self.terminals[rows],
        )

    def subset(self, k: int, *, seed: int | np.random.Generator | None = None) -> Demonstrations:
        """``k`` whole trajectories: the first ``k``, or ``k`` drawn without replacement.

        Args:
            k: number of trajectories, ``1 <= k <= n_episodes``.
            seed: ``None`` takes episodes ``0..k-1``; a seed or Generator draws ``k`` distinct
                episodes at random (kept in their original order).
        """
        return self.select(self._subset_indices(k, seed, self.n_episodes))

    def split(
        self, k: int, *, seed: int | np.random.Generator | None = None
    ) -> tuple[Demonstrations, Demonstrations]:
        """``(subset(k, seed=seed), the other E - k episodes)``, e.g. train and held-out.

        The first part is exactly :meth:`subset` with the same ``k`` and ``seed``; the second
        holds every other episode, in the original order.

        Args:
            k: number of trajectories in the first part, ``1 <= k <= n_episodes - 1`` (the
                second part cannot be empty).
            seed: as :meth:`subset`.

        Example:
            >>> train, held_out = demos.split(4)  # doctest: +SKIP
        """
        chosen = self._subset_indices(k, seed, self.n_episodes - 1)
        rest = np.setdiff1d(np.arange(self.n_episodes), chosen)
        return self.select(chosen), self.select(rest)

    def _subset_indices(
        self, k: int, seed: int | np.random.Generator | None, k_max: int
    ) -> np.ndarray:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= k_max:
            if k_max < self.n_episodes:
                raise DatasetError(
                    f"Cannot split {self.n_episodes} episodes with k={k!r}: k must be an integer "
                    f"in 1..{k_max} so that at least one episode is left over."
                )
            raise DatasetError(
                f"k must be an integer in 1..{self.n_episodes} (the number of episodes), got {k!r}."
            )
        if seed is None:
            return np.arange(k, dtype=np.int64)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(self.n_episodes, size=k, replace=False)).astype(np.int64)

    def check_env(self, env_id: str) -> EnvSpec:
        """Check that these demonstrations fit the task ``env_id`` and return its spec.

        Raises:
            UnsupportedEnvError: if the task is not supported.
            DatasetError: if the observation size or action count differs, or an action
                (named by episode and step) is not one of the task's actions.
        """
        spec = env_spec(env_id)
        if self.obs_dim != spec.obs_dim:
            raise DatasetError(
                f"The demonstrations have observations of size {self.obs_dim} but {env_id} has "
                f"observations of size {spec.obs_dim}; use demonstrations recorded on {env_id}."
            )
        if self.n_actions is not None and self.n_actions != spec.n_actions:
            raise DatasetError(
                f"The demonstrations were recorded with {self.n_actions} actions but {env_id} "
                f"has {spec.n_actions}; use demonstrations recorded on {env_id}."
            )
        if self.actions.max() >= spec.n_actions:
            row = int(np.argmax(self.actions >= spec.n_actions))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has action {int(self.actions[row])} at step {step}, but "
                f"{env_id} has {spec.n_actions} actions (0..{spec.n_actions - 1})."
            )
        return spec


def _mean_std(values: np.ndarray) -> str:
    """``"mean ± std"`` of an array, for summaries."""
    return f"{np.mean(values):.4g} ± {np.std(values):.4g}"


def from_arrays(
    observations: np.ndarray | Sequence[np.ndarray],
    actions: np.ndarray | Sequence[np.ndarray],
    *,
    episode_lengths: Sequence[int] | np.ndarray | None = None,
    episode_returns: Sequence[float] | np.ndarray | None = None,
    env_id: str | None = None,
    n_actions: int | None = None,
    final_observations: np.ndarray | Sequence[np.ndarray] | None = None,
    terminated: Sequence[bool] | np.ndarray | None = None,
) -> Demonstrations:
    """Build validated :class:`Demonstrations` from arrays.

    Args:
        observations: ``[N, obs_dim]`` array with ``episode_lengths`` given (or ``None`` for a
            single episode), or a sequence of per-episode ``[T_e, obs_dim]`` arrays.
        actions: ``[N]`` integer-valued array, or a sequence of per-episode ``[T_e]`` arrays.
        episode_lengths: ``[E]`` lengths summing to ``N`` (flat arrays only).
        episode_returns: ``[E]`` returns, optional.
        env_id: the task, optional (checked with :meth:`Demonstrations.check_env` if given).
        n_actions: size of the action space, optional; every action must be below it.
        final_observations: ``[E, obs_dim]``, each episode's observation after its last
            action (Minari's last observation), optional; learners that use transitions
            then also train on each episode's last step.
        terminated: ``[E]`` bool, whether each episode ended in a terminal state (rather than
            a time limit), optional (default: none did).

    Raises:
        DatasetError: if shapes disagree, actions are not integers, values are not finite,
            or the data is empty; the message names the offending episode.
    """
    per_episode = not isinstance(observations, np.ndarray) and isinstance(observations, Sequence)
    if per_episode:
        if episode_lengths is not None:
            raise DatasetError("Pass episode_lengths only with flat [N, obs_dim] arrays.")
        if isinstance(actions, np.ndarray) or len(actions) != len(observations):
            raise DatasetError(
                "With per-episode observation arrays, pass per-episode action arrays too "
                f"(got {len(observations)} observation arrays)."
            )
        if len(observations) == 0:
            raise DatasetError("The demonstrations are empty: they need at least one episode.")
        obs_list = [np.asarray(o) for o in observations]
        act_list = [np.asarray(a).reshape(-1) for a in actions]
        for e, (o, a) in enumerate(zip(obs_list, act_list, strict=True)):
            if o.ndim != 2 or len(o) != len(a):
                raise DatasetError(
                    f"Episode {e} has observations of shape {o.shape} and {len(a)} actions; "
                    "it needs observations [T, obs_dim] and T actions."
                )
            if o.shape[1] != obs_list[0].shape[1]:
                raise DatasetError(
                    f"Episode {e} has observations of size {o.shape[1]}, episode 0 of size "
                    f"{obs_list[0].shape[1]}; all episodes must come from one task."
                )
        episode_lengths = [len(a) for a in act_list]
        observations = np.concatenate(obs_list)
        actions = np.concatenate(act_list)
    observations = np.asarray(observations)
    actions = np.asarray(actions)
    for name, value in (
        ("observations", observations),
        ("actions", actions),
        ("final_observations", final_observations),
        ("episode_returns", episode_returns),
    ):
        _refuse_complex(name, value)
    if observations.ndim == 1:
        raise DatasetError(
            f"observations must be [N, obs_dim], got shape {observations.shape}; reshape a "
            "one-dimensional state to [N, 1]."
        )
    if not (np.issubdtype(observations.dtype, np.number) or observations.dtype == bool):
        raise DatasetError(f"observations must be numeric, got dtype {observations.dtype}.")
    if episode_lengths is None:
        episode_lengths = [len(actions)]
    lengths = np.asarray(episode_lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise DatasetError(f"episode_lengths must be a 1-D list of integers, got {lengths!r}.")
    if actions.ndim != 1:
        raise DatasetError(f"actions must be [N], got shape {actions.shape}.")
    if not (np.issubdtype(actions.dtype, np.number) or actions.dtype == bool):
        raise DatasetError(
            f"actions must be integers 0..n_actions-1, got dtype {actions.dtype}; convert them."
        )
    _check_action_values(actions, lengths)
    returns = None if episode_returns is None else np.asarray(episode_returns, dtype=np.float64)
    transitions = _transition_fields(observations, lengths, final_observations, terminated)
    demos = Demonstrations(
        observations=np.array(observations, dtype=np.float32, order="C"),  # a copy
        actions=np.array(actions, dtype=np.int64),
        episode_lengths=lengths.astype(np.int64),
        episode_returns=returns,
        env_id=env_id,
        n_actions=n_actions,
        **transitions,
    )
    if env_id is not None:
        demos.check_env(env_id)
    return demos


def _refuse_complex(name: str, value: object) -> None:
    """Refuse complex numbers, which a float32 cast would silently cut to their real part."""
    if value is not None and np.iscomplexobj(value):
        raise DatasetError(
            f"{name} are complex ({np.asarray(value).dtype}); sbil learns from real numbers. "
            "Keep the real part with np.real(x) (or magnitudes with np.abs(x)), or give the "
            "real and imaginary parts as features: np.concatenate([x.real, x.imag], axis=-1)."
        )


def _transition_fields(observations, lengths, final_observations, terminated) -> dict:
    """``next_observations`` and ``terminals`` from each episode's final observation and end."""
    out: dict = {}
    n_episodes = len(lengths)
    ends = np.cumsum(lengths) - 1
    if final_observations is not None:
        final = np.asarray(
            final_observations
            if isinstance(final_observations, np.ndarray)
            else np.stack([np.asarray(f).reshape(-1) for f in final_observations])
        )
        if (
            final.ndim != 2
            or final.shape[0] != n_episodes
            or (observations.ndim == 2 and final.shape[1] != observations.shape[1])
        ):
            raise DatasetError(
                f"final_observations must be [{n_episodes}, obs_dim] (one per episode), got "
                f"shape {final.shape}."
            )
        if not np.isfinite(final.astype(np.float64)).all():
            episode = int(np.argmax(~np.isfinite(final.astype(np.float64)).all(axis=1)))
            raise DatasetError(f"Episode {episode} has a NaN or infinite final observation.")
        following = np.full(observations.shape, np.nan, dtype=np.float32)
        following[:-1] = observations[1:]
        following[ends] = final
        out["next_observations"] = following
    if terminated is not None:
        flags = np.asarray(terminated)
        if flags.shape != (n_episodes,) or not (
            flags.dtype == bool or np.isin(flags, (0, 1)).all()
        ):
            raise DatasetError(
                f"terminated must be {n_episodes} booleans (one per episode), got {flags!r}."
            )
        terminals = np.zeros(int(np.sum(lengths)), dtype=bool)
        terminals[ends] = flags.astype(bool)
        out["terminals"] = terminals
    return out


def _check_action_values(actions: np.ndarray, lengths: np.ndarray) -> None:
    """Refuse actions that are not integers, or too large for int64, naming the first one
    as given (a cast would first turn 1e20 into -9223372036854775808)."""
    if np.issubdtype(actions.dtype, np.signedinteger) or actions.dtype == bool:
        return
    if np.issubdtype(actions.dtype, np.unsignedinteger):
        bad = actions > np.iinfo(np.int64).max
        fractional = np.zeros_like(bad)
    else:
        as_float = actions.astype(np.float64)
        fractional = ~np.isfinite(as_float) | (as_float != np.round(as_float))
        bad = fractional | (np.abs(as_float) >= 2.0**63)
    if not bad.any():
        return
    row = int(np.argmax(bad))
    ends = np.cumsum(lengths)
    episode = int(np.searchsorted(ends, row, side="right"))
    step = row - (int(ends[episode - 1]) if 0 < episode <= len(ends) else 0)
    value = actions[row].item()
    if fractional[row]:
        problem = f"a non-integer action {value!r}"
    elif value < 0:
        problem = f"negative action {value!r}"
    else:
        problem = f"action {value!r}, far too large for an action index,"
    raise DatasetError(
        f"Episode {episode} has {problem} at step {step}; discrete actions are integers "
        "0..n_actions-1."
    )
