"""Tests for sbil.tabular.checks: one validator per kind of input, one-sentence messages."""

import numpy as np
import pytest

from sbil.tabular import checks


def test_as_float_array_names_the_argument():
    assert checks.as_float_array([[1, 2]], "x", "x[i]").dtype == np.float64
    with pytest.raises(ValueError, match=r"^x must be a rectangular array of numbers x\[i\]; got"):
        checks.as_float_array([[1], [1, 2]], "x", "x[i]")
    with pytest.raises(ValueError, match="non-numbers"):
        checks.as_float_array(["a"], "x", "x[i]")


def test_first_index_is_plain_ints():
    mask = np.zeros((2, 3), dtype=bool)
    mask[1, 2] = True
    assert checks.first_index(mask) == "1, 2"


@pytest.mark.parametrize("value", [0, 2.5, True, np.nan, "3", None])
def test_validated_count_refuses(value):
    with pytest.raises(ValueError, match=r"n must be an integer >= 1"):
        checks.validated_count(value, "n")


def test_validated_count_accepts_whole_numbers():
    assert checks.validated_count(3.0, "n") == 3
    assert checks.validated_count(np.int64(0), "n", minimum=0) == 0


@pytest.mark.parametrize("value", [1.0, -0.1, np.nan, "x", True])
def test_validated_discount_refuses(value):
    with pytest.raises(ValueError, match=r"discount must be a number in \[0, 1\)"):
        checks.validated_discount(value)


def test_validated_rng_needs_an_explicit_seed():
    rng = np.random.default_rng(0)
    assert checks.validated_rng(rng) is rng
    assert checks.validated_rng(3).integers(100) == np.random.default_rng(3).integers(100)
    for bad in (None, -1, 1.5, True):
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            checks.validated_rng(bad)


def test_validate_policy_messages():
    with pytest.raises(ValueError, match=r"shape \(S, A\) = \(2, 2\)"):
        checks.validate_policy(np.ones((2, 3)) / 3, 2, 2)
    with pytest.raises(ValueError, match=r"negative entry pi\[0, 1\]"):
        checks.validate_policy([[1.5, -0.5], [0.5, 0.5]], 2, 2)
    with pytest.raises(ValueError, match=r"row pi\[1, :\] sums to 0.9"):
        checks.validate_policy([[0.5, 0.5], [0.5, 0.4]], 2, 2)


def test_validate_visitation_names_the_problem():
    d = np.full((3, 2, 2), 0.25)
    d[2, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"sums to 1.25 for problem \(2,\)"):
        checks.validate_visitation(d)


@pytest.mark.parametrize("value", ["reference", "note"])
def test_validated_convention_accepts_the_two_names(value):
    assert checks.validated_convention(value) == value
    assert checks.validated_convention(np.str_(value)) == value


@pytest.mark.parametrize("value", ["paper", "Reference", None, 1, ""])
def test_validated_convention_refuses_others(value):
    with pytest.raises(ValueError, match=r"^convention must be 'reference' or 'note'; got"):
        checks.validated_convention(value)
