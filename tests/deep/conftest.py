"""Helpers shared by the deep learners' tests, as fixtures: small episodes, initial networks,
networks as torch.nn.Sequential (for re-implementations of the authors' code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.networks import StackedMLP
from sbil.deep.train_inputs import _ENERGY_INIT, _POLICY_INIT, seed_generator


def make_episodes(n_episodes=8, length=30, d=4, seed=0, final=False, terminated=None, n_actions=2):
    """Random episodes, actions a function of the state; optionally final observations and
    terminal flags."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n_episodes, length + 1, d)).astype(np.float32)
    actions = (obs[:, :-1, 2] + 0.5 * obs[:, :-1, 3] > 0).astype(np.int64)
    if n_actions > 2:
        actions = actions + (obs[:, :-1, 0] > 1).astype(np.int64)
    return from_arrays(
        list(obs[:, :-1]),
        list(actions),
        n_actions=n_actions,
        final_observations=list(obs[:, -1]) if final else None,
        terminated=terminated,
    )


def as_sequential(net: StackedMLP) -> torch.nn.Sequential:
    """An nn.Sequential of Linear/ELU layers holding a K = 1 StackedMLP's weights."""
    layers = []
    for w, b in zip(net.weights, net.biases, strict=True):
        linear = torch.nn.Linear(w.shape[1], w.shape[2])
        with torch.no_grad():
            linear.weight.copy_(w[0].T)
            linear.bias.copy_(b[0, 0])
        layers += [linear, torch.nn.ELU()]
    return torch.nn.Sequential(*layers[:-1])


def initial_networks_of(config, seed, obs_dim, n_actions):
    """The policy and second network (or None) a learner of ``config`` and ``seed`` starts
    from, each a K = 1 StackedMLP, as training initialises them."""
    policy = StackedMLP.initialized(
        [seed_generator(seed, _POLICY_INIT)],
        in_dim=obs_dim,
        hidden_sizes=config.hidden_sizes,
        out_dim=n_actions,
    )
    inputs, outputs = config.second_network_shape(obs_dim, n_actions)
    second = None
    if config.second_network is not None:
        second = StackedMLP.initialized(
            [seed_generator(seed, _ENERGY_INIT)],
            in_dim=inputs,
            hidden_sizes=config.hidden_sizes,
            out_dim=outputs,
        )
        if config.algo == "valuedice":  # the code's nu has no output bias
            with torch.no_grad():
                second.biases[-1].zero_()
    return policy, second


@pytest.fixture(scope="session")
def episodes():
    """:func:`make_episodes`: random episodes, actions a function of the state."""
    return make_episodes


@pytest.fixture(scope="session")
def sequential():
    """:func:`as_sequential`: a K = 1 StackedMLP's weights in an nn.Sequential."""
    return as_sequential


@pytest.fixture(scope="session")
def initial_networks():
    """:func:`initial_networks_of`: a learner's initial policy and second network."""
    return initial_networks_of
