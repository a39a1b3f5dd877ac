"""Tests for sbil.tabular's package docstring: its example runs and says what it claims."""

import textwrap

import numpy as np

import sbil.tabular


def _example_code() -> str:
    doc = sbil.tabular.__doc__
    block = doc.split("::\n", 1)[1]
    return textwrap.dedent(block)


def test_package_example_runs_and_its_claims_hold():
    namespace: dict = {}
    code = _example_code()
    # The last two lines show results; run the set-up, then check the shown claims.
    *setup, bc_line, edm_line = [line for line in code.strip().splitlines() if line.strip()]
    exec("\n".join(setup), namespace)
    assert bc_line.startswith("fit_bc(") and "array([1.])" in bc_line
    assert edm_line.startswith("fit_edm(") and "not 1" in edm_line
    bc = eval(bc_line.split("#")[0], namespace)
    edm = eval(edm_line.split("#")[0], namespace)
    np.testing.assert_allclose(bc, [1.0], atol=1e-8)
    assert abs(edm[0] - 1.0) > 0.1
