"""Tests for sbil.seeds: the one range every seed sbil uses lies in."""

from __future__ import annotations

import numpy as np
import pytest

from sbil.seeds import MAX_SEED, check_seed_range


@pytest.mark.parametrize("seed", [0, 1, MAX_SEED, np.int64(7), np.uint32(MAX_SEED)])
def test_a_seed_in_range_comes_back_as_a_plain_int(seed):
    out = check_seed_range(seed)
    assert out == int(seed) and type(out) is int


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (-1, r"seed must be an integer in 0\.\.4294967295 \(2\*\*32 - 1\), got -1\."),
        (MAX_SEED + 1, r"got 4294967296\."),
        (True, r"seed must be an integer in 0\.\.4294967295, got True\."),
        (1.0, r"got 1\.0\."),
        ("3", r"got '3'\."),
        (None, r"got None\."),
    ],
)
def test_a_seed_out_of_range_or_not_an_integer_is_refused(seed, message):
    with pytest.raises(ValueError, match=message):
        check_seed_range(seed)


def test_the_derived_seeds_must_fit_too_and_the_message_says_the_largest_first_seed():
    assert check_seed_range(MAX_SEED - 9, 10) == MAX_SEED - 9  # seeds up to MAX_SEED exactly
    with pytest.raises(ValueError) as caught:
        check_seed_range(MAX_SEED - 9, 11, name="--seed", unit="episodes")
    text = str(caught.value)
    assert "--seed 4294967286 with 11 episodes uses seeds up to 4294967296" in text
    assert f"--seed must be at most {MAX_SEED - 10}." in text


def test_count_one_or_less_derives_nothing():
    assert check_seed_range(MAX_SEED, 1) == MAX_SEED
    assert check_seed_range(MAX_SEED, 0) == MAX_SEED
