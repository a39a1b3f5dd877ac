"""Shared fixtures of the experiments tests: one small consistency study for all of them."""

import pytest

from sbil.experiments import consistency as cs


@pytest.fixture(scope="session")
def small_config() -> cs.ConsistencyConfig:
    """A consistency study small enough for tests (about a second): 4 random MDPs with
    |S| = 6, |A| = 3, K = 3, three data sizes up to 10^6, the oracle on 2 MDPs."""
    return cs.ConsistencyConfig(
        n_mdps=4,
        n_states=6,
        n_actions=3,
        n_params=3,
        sizes=(100, 10_000, 1_000_000),
        n_seeds=3,
        n_seeds_example3=6,
        n_oracle=2,
        n_tabular=3,
        seed=7,
    )


@pytest.fixture(scope="session")
def small_study(small_config) -> cs.ConsistencyResult:
    """:func:`sbil.experiments.consistency.run_consistency` of :func:`small_config`."""
    return cs.run_consistency(small_config)
