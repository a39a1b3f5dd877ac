"""Stacked MLPs: shapes, independence of the stacked models, the hand-written input gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbil.deep.networks import StackedMLP


def _net(seeds=(0, 1, 2), in_dim=4, hidden=(64, 64), out_dim=3) -> StackedMLP:
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return StackedMLP.initialized(gens, in_dim=in_dim, hidden_sizes=hidden, out_dim=out_dim)


def test_shapes_and_parameter_names():
    net = _net()
    assert net(torch.zeros(3, 5, 4)).shape == (3, 5, 3)
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes == {
        "weight0": (3, 4, 64),
        "bias0": (3, 1, 64),
        "weight1": (3, 64, 64),
        "bias1": (3, 1, 64),
        "weight2": (3, 64, 3),
        "bias2": (3, 1, 3),
    }
    assert net.hidden_sizes == (64, 64) and net.in_dim == 4 and net.out_dim == 3


def test_initialisation_is_per_generator_and_within_linear_bounds():
    stacked = _net(seeds=(5, 6))
    alone = _net(seeds=(6,))
    for name, value in alone.state_dict().items():
        assert torch.equal(stacked.state_dict()[name][1:2], value)
    assert not torch.equal(stacked.weight0[0], stacked.weight0[1])
    for weight in stacked.weights:
        assert weight.abs().max() <= 1 / weight.shape[1] ** 0.5


def test_stacked_forward_equals_each_model_alone_and_the_reference_sequential():
    stacked = _net(seeds=(0, 1, 2))
    x = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(9))
    out = stacked(x)
    for k in range(3):
        single = StackedMLP(1, 4, (64, 64), 3)
        single.load_state_dict(stacked.model_state(k))
        torch.testing.assert_close(single(x[k : k + 1])[0], out[k], rtol=0, atol=1e-6)
        reference = nn.Sequential(
            nn.Linear(4, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, 3)
        )
        with torch.no_grad():
            for linear, w, b in zip(reference[::2], stacked.weights, stacked.biases, strict=True):
                linear.weight.copy_(w[k].T)
                linear.bias.copy_(b[k, 0])
        torch.testing.assert_close(reference(x[k]), out[k], rtol=1e-5, atol=1e-5)


def test_a_model_does_not_depend_on_the_other_models_inputs():
    net = _net()
    x = torch.randn(3, 4, 4)
    y = x.clone()
    y[1] += 10.0
    torch.testing.assert_close(net(x)[[0, 2]], net(y)[[0, 2]])


@pytest.mark.parametrize("hidden", [(64, 64), (8,), (5, 6, 7), ()])
def test_logsumexp_input_grad_matches_autograd(hidden):
    net = _net(hidden=hidden)
    with torch.no_grad():  # larger weights so that ELU's negative branch is exercised
        for w in net.weights:
            w.mul_(3)
    x = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1))
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(net(xr).logsumexp(-1).sum(), xr)
    torch.testing.assert_close(net.logsumexp_input_grad(x), expected, rtol=1e-5, atol=1e-6)
    frozen = net.frozen()
    torch.testing.assert_close(
        frozen.logsumexp_ascent(x, 0.01), x + 0.01 * expected, rtol=1e-5, atol=1e-6
    )
    assert all(p.grad is None for p in net.parameters())


def test_to_keeps_parameter_lists_in_sync():
    net = _net().double()
    assert all(w.dtype == torch.float64 for w in net.weights)
    assert net.weights[0] is net.weight0
    assert net(torch.zeros(3, 1, 4, dtype=torch.float64)).dtype == torch.float64


def test_bad_sizes_and_model_index_raise():
    with pytest.raises(ValueError, match="positive layer sizes"):
        StackedMLP(2, 0, (64,), 2)
    with pytest.raises(IndexError, match="there are 3"):
        _net().model_state(3)
