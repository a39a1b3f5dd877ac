"""`sbil reproduce` reports each claim as soon as it is decided (not only the table at the end),
on stderr, so that stdout stays the table alone."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sbil.experiments import consistency as cs
from sbil.experiments import reproduce as rp


@pytest.fixture
def small(monkeypatch):
    """A tiny consistency study (what is tested is when the claims are reported)."""
    real = rp.run_consistency
    small = cs.ConsistencyConfig(
        n_mdps=2, n_states=4, n_actions=2, n_params=2, sizes=(100, 10_000), n_seeds=2,
        n_seeds_example3=2, n_oracle=1, n_oracle_seeds=1, n_tabular=1,
    )  # fmt: skip
    monkeypatch.setattr(
        rp,
        "run_consistency",
        lambda config, *a, **k: real(cs.ConsistencyConfig(**{**small.__dict__, "seed": 0})),
    )


def test_each_claim_is_logged_when_its_stage_is_done(tmp_path, small):
    events = []
    result = rp.run_reproduce(
        rp.ReproduceConfig(out=tmp_path / "r", quick=True),
        progress=lambda done, total: events.append(("stage", done)),
        log=lambda line: events.append(("log", line)),
    )
    claims = [line for kind, line in events if kind == "log"]
    assert claims == [rp.claim_line(c) for c in result.claims]  # each once, in report order
    # the note's claims come before the first stage ends, the others before the fourth
    first = events.index(("stage", 1))
    assert [kind for kind, _ in events[:first]] == ["log"] * len(rp.NOTE_CLAIM_IDS)
    assert events.index(("stage", 4)) > events.index(("log", claims[-1]))
    theorem = next(c for c in result.claims if c.id == "theorem1")
    assert rp.claim_line(theorem).startswith("claim theorem1: agrees (sbil -0.24")
    assert rp.claim_line(theorem).endswith("; the note: approximately -0.245)")


def test_the_deep_section_reports_its_progress_and_claims(tmp_path, small, monkeypatch):
    import sys
    import types

    from sbil.experiments.claims import Claim, ClaimSection

    def deep_claims(out_dir, *, seed, quick, progress=None):
        for done in range(1, 11):
            progress(done, 10)
        claim = Claim(id="deep_rho", title="T.", value=0.5, agrees=False, text="Deep.")
        return ClaimSection(id="deep", title="Deep", blocks=(claim,))

    module = types.ModuleType("sbil.experiments.deep_critique")
    module.deep_claims = deep_claims
    monkeypatch.setitem(sys.modules, "sbil.experiments.deep_critique", module)
    lines = []
    rp.run_reproduce(
        rp.ReproduceConfig(out=tmp_path / "r", quick=True, deep=True), log=lines.append
    )
    deep = [line for line in lines if line.startswith(rp.DEEP_STAGE)]
    assert len(deep) == 10 and deep[-1].startswith(f"{rp.DEEP_STAGE}: 10/10 (100%)")
    assert lines[-1] == "claim deep_rho: disagrees (sbil 0.5)"


def test_the_command_prints_claims_on_stderr_and_the_table_on_stdout(tmp_path, small):
    from sbil.cli import tabular

    app = typer.Typer()
    tabular.register(app)

    @app.callback()
    def _root() -> None:  # keep "reproduce" a sub-command
        pass

    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    reported = [line for line in result.stderr.splitlines() if line.startswith("claim ")]
    assert [line.split()[1].rstrip(":") for line in reported] == [
        *rp.NOTE_CLAIM_IDS,
        *rp.BEYOND_CLAIM_IDS,
    ]
    assert not [line for line in result.stdout.splitlines() if line.startswith("claim ")]
    assert "sbil reproduce (" in result.stdout
