"""SGLD on its own: exact-density sampling at temperature 1 (the generic reference sampler on a
Gaussian, and the fused chain that trains EDM on a network's density), EDM's cold published
setting, the fused EDM chain against the reference, and the persistent buffer."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from sbil.deep.networks import StackedMLP
from sbil.deep.sgld import (
    autograd_drift,
    buffer_start,
    buffer_write,
    draw_chain_randomness,
    langevin_noise_scale,
    sampling_temperature,
    sgld,
    sgld_logsumexp,
    uniform_buffer,
)

MEAN, STD = 1.0, 0.5


def _gaussian_log_density(x: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((x - MEAN) / STD) ** 2).sum(-1)


def _chains(step: float, noise_scale: float, n_steps: int, n_chains: int = 4000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(n_chains, 1, generator=gen) * 2 - 1
    noise = torch.randn(n_steps, n_chains, 1, generator=gen)
    drift = autograd_drift(_gaussian_log_density)
    return sgld(drift, x0, noise, step_size=step, noise_scale=noise_scale)[:, 0]


def test_temperature_formulas():
    assert langevin_noise_scale(0.01) == pytest.approx(math.sqrt(0.02))
    assert sampling_temperature(0.01, langevin_noise_scale(0.01)) == pytest.approx(1.0)
    assert sampling_temperature(0.01, 0.01) == pytest.approx(0.005)  # EDM's published setting
    with pytest.raises(ValueError, match="positive"):
        langevin_noise_scale(0.0)


def test_langevin_noise_samples_the_exact_density():
    step = 0.002
    samples = _chains(step, langevin_noise_scale(step), n_steps=1500).numpy()
    # The step's discretisation bias inflates the variance by about step / (4 sigma^2) = 0.2%.
    result = stats.kstest(samples, stats.norm(MEAN, STD).cdf)
    assert result.pvalue > 0.01, result
    assert samples.std() == pytest.approx(STD, rel=0.05)


def test_published_setting_samples_a_far_colder_density():
    samples = _chains(0.01, 0.01, n_steps=1500).numpy()
    # Temperature T = 0.005: stationary law N(MEAN, T * STD^2), i.e. std 0.035 instead of 0.5.
    assert samples.std() < 0.1 * STD
    assert samples.std() == pytest.approx(STD * math.sqrt(0.005), rel=0.1)
    assert stats.kstest(samples, stats.norm(MEAN, STD).cdf).pvalue < 1e-6


def test_fused_chain_equals_generic_sgld_and_autograd_reference():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    net = StackedMLP.initialized(gens, in_dim=3, hidden_sizes=(16, 16), out_dim=2)
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 8, 3, generator=g) * 2 - 1
    noise = torch.randn(20, 2, 8, 3, generator=g)
    fused = sgld_logsumexp(net, x0, noise, step_size=0.01, noise_scale=0.01)
    generic = sgld(net.logsumexp_input_grad, x0, noise, step_size=0.01, noise_scale=0.01)
    by_autograd = sgld(
        autograd_drift(lambda x: net(x).logsumexp(-1)),
        x0,
        noise,
        step_size=0.01,
        noise_scale=0.01,
    )
    torch.testing.assert_close(fused, generic, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused, by_autograd, rtol=1e-5, atol=1e-6)
    assert not fused.requires_grad and all(p.grad is None for p in net.parameters())
    # Ascent on logsumexp f: without noise the chain climbs the unnormalised log density.
    climbed = sgld_logsumexp(net, x0, torch.zeros_like(noise), step_size=0.05, noise_scale=0.0)
    assert (net(climbed).logsumexp(-1) > net(x0).logsumexp(-1)).all()


def _decaying_energy() -> StackedMLP:
    """A random 1-D StackedMLP whose density ``exp(logsumexp f)`` is normalisable: with ELU,
    non-negative middle weights and non-positive output weights every logit falls linearly as
    ``|x|`` grows, so the density has exponential tails. Skewed (about 0.9), not Gaussian."""
    net = StackedMLP.initialized(
        [torch.Generator().manual_seed(0)], in_dim=1, hidden_sizes=(16, 16), out_dim=3
    )
    with torch.no_grad():
        net.weights[0].mul_(3.0)
        net.biases[0].mul_(3.0)
        net.weights[1].abs_()
        net.weights[2].abs_().neg_()
    return net


def test_fused_langevin_chain_samples_a_network_density():
    """The sampler that trains EDM (sgld_logsumexp), at temperature 1, against the exact
    density of a network, normalised by quadrature on a grid holding all but ~1e-5 of the mass."""
    net = _decaying_energy()
    grid = torch.linspace(-12.0, 12.0, 200_001)
    with torch.no_grad():
        log_density = net(grid.view(1, -1, 1)).logsumexp(-1)[0].double().numpy()
    x = grid.double().numpy()
    density = np.exp(log_density - log_density.max())
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    cdf /= cdf[-1]

    def exact_cdf(v):
        return np.interp(v, x, cdf)

    step = 0.002
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 4000, 1, generator=gen) * 2 - 1
    noise = torch.randn(3000, 1, 4000, 1, generator=gen)
    samples = sgld_logsumexp(
        net, x0, noise, step_size=step, noise_scale=langevin_noise_scale(step)
    ).view(-1)
    samples = samples.double().numpy()
    assert stats.kstest(samples, exact_cdf).pvalue > 0.01
    # The test can tell this density's shape apart: a normal with its mean and std is rejected,
    # and so is the published cold setting (T = 0.005) run on the same draws.
    weights = density / density.sum()
    mean = (weights * x).sum()
    normal = stats.norm(mean, np.sqrt((weights * (x - mean) ** 2).sum()))
    assert stats.kstest(samples, normal.cdf).pvalue < 1e-6
    cold = sgld_logsumexp(net, x0, noise, step_size=step, noise_scale=0.01).view(-1).numpy()
    assert stats.kstest(cold, exact_cdf).pvalue < 1e-6


def test_noise_shape_must_match():
    with pytest.raises(ValueError, match="noise must have shape"):
        sgld(lambda x: x, torch.zeros(2, 3), torch.zeros(5, 3, 2), step_size=0.1, noise_scale=0.1)


def test_buffer_start_and_write_by_hand():
    buffer = torch.arange(12.0).view(2, 3, 2)  # K=2 learners, 3 slots, d=2
    indices = torch.tensor([[2, 0], [1, 1]])
    reinit = torch.full((2, 2, 2), -5.0)
    mask = torch.tensor([[False, True], [False, False]])
    start = buffer_start(buffer, indices, reinit, mask)
    assert start.tolist() == [[[4.0, 5.0], [-5.0, -5.0]], [[8.0, 9.0], [8.0, 9.0]]]
    buffer_write(buffer, torch.tensor([[2, 0], [0, 1]]), torch.ones(2, 2, 2))
    assert buffer.tolist() == [[[1, 1], [2, 3], [1, 1]], [[1, 1], [1, 1], [10, 11]]]


def test_chain_randomness_is_seeded_and_shaped():
    def draw(seed):
        return draw_chain_randomness(
            torch.Generator().manual_seed(seed),
            batch_size=32,
            dim=4,
            buffer_size=100,
            n_steps=20,
            reinit_prob=0.05,
        )

    a, b, c = draw(0), draw(0), draw(1)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.buffer_indices, b.buffer_indices)
    assert not torch.equal(a.noise, c.noise)
    assert a.noise.shape == (20, 32, 4) and a.reinit.shape == (32, 4)
    assert a.buffer_indices.max() < 100 and a.reinit.abs().max() <= 1
    buffer = uniform_buffer(torch.Generator().manual_seed(0), 1000, 3)
    assert buffer.shape == (1000, 3) and -1 <= buffer.min() and buffer.max() <= 1


def _small_chain_inputs():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    net = StackedMLP.initialized(gens, in_dim=3, hidden_sizes=(16, 16), out_dim=2)
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 8, 3, generator=g) * 2 - 1
    return net, x0, torch.randn(20, 2, 8, 3, generator=g)


@pytest.mark.slow
def test_the_compiled_chain_equals_the_eager_one_to_float32_rounding(monkeypatch):
    from sbil.deep import sgld as module

    if not hasattr(torch, "_dynamo") or not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile does not support this Python")
    monkeypatch.setattr(module, "_COMPILED", {})
    net, x0, noise = _small_chain_inputs()
    eager = sgld_logsumexp(net, x0, noise, step_size=0.01, noise_scale=0.01)
    compiled = sgld_logsumexp(net, x0, noise, step_size=0.01, noise_scale=0.01, compiled=True)
    assert "unavailable" not in module._COMPILED, module._COMPILED
    # Fused kernels round differently: 20 steps of terms of size |x| <= ~1, each off by a few
    # float32 ulps, so the tolerance is scaled to the samples' size, not to a difference.
    scale = float(eager.abs().max())
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5 * scale)
    assert not torch.equal(x0, compiled) and not compiled.requires_grad


def test_a_failing_compiler_warns_once_and_the_eager_chain_runs(monkeypatch):
    from sbil.deep import sgld as module

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler\nsecond line")

        return call

    monkeypatch.setattr(module, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    net, x0, noise = _small_chain_inputs()
    eager = sgld_logsumexp(net, x0, noise, step_size=0.01, noise_scale=0.01)
    with pytest.warns(RuntimeWarning, match="no C.. compiler.*runs eagerly"):
        first = sgld_logsumexp(net, x0, noise, step_size=0.01, noise_scale=0.01, compiled=True)
    assert torch.equal(first, eager)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        again = sgld_logsumexp(net, x0, noise, step_size=0.01, noise_scale=0.01, compiled=True)
    assert torch.equal(again, eager) and module.compiled_chain() is None
