"""What the expert modules share: the expert names and the observation check.

Part of :mod:`sbil.deep.experts` (its module doc describes every kind of expert).
"""

from __future__ import annotations

import numpy as np

SCRIPTED = "scripted"
SHIPPED = "ppo-zoo"
SB3_ALGOS: tuple[str, ...] = ("ppo", "dqn")
SB3_INSTALL = "pip install 'sbil[experts]'  (or: pip install 'stable-baselines3>=2.3')"


def _as_batch(obs: np.ndarray, obs_dim: int, who: str) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise ValueError(
            f"The {who} expert takes observations of shape [n, {obs_dim}], got {obs.shape}; "
            "pass a batch (use obs[None] for a single observation)."
        )
    return obs
