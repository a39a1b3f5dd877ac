"""Tests for sbil.deep.learners.valuedice: ValueDICE's objective, orthogonal regulariser and
gradient penalty by hand, its gradient and updates against the authors' code (its training,
shared with the other transition learners, is tested in tests/deep/test_transition_learners.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from sbil.deep.learners import LearnerConfig, minibatch_indices, seed_generator, train
from sbil.deep.learners.valuedice import (
    gradient_penalty,
    orthogonal_regularizer,
    valuedice_objective,
)
from sbil.deep.train_inputs import _MINIBATCH


def _t(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.float64))


def _a(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.int64))


def _valuedice_inputs(seed, k=2, b=6, a=3, one_hot=False):
    rng = np.random.default_rng(seed)
    nu, nu_next = _t(rng.normal(size=(k, b, a))), _t(rng.normal(size=(k, b, a)))
    logits_next, logits = _t(rng.normal(size=(k, b, a))), _t(rng.normal(size=(k, b, a)))
    if one_hot:  # softmax of these is exactly one-hot in float64 (exp(-1000) = 0)
        logits_next = -1000.0 * (logits_next < logits_next.amax(-1, keepdim=True))
        logits = -1000.0 * (logits < logits.amax(-1, keepdim=True))
    return nu, _a(rng.integers(0, a, size=(k, b))), nu_next, logits_next, logits


def _objective(nu, actions, nu_next, logits_next, logits, done, gamma):
    return valuedice_objective(
        nu, actions, nu_next, logits_next, nu, logits, done, discount=gamma
    ).objective


def test_valuedice_objective_by_hand():
    nu, actions, nu_next, logits_next, logits = (x.numpy() for x in _valuedice_inputs(1))
    done = np.zeros(actions.shape)
    done[0, 2] = done[1, 5] = 1.0
    gamma = 0.9
    pi_next, pi = scipy.special.softmax(logits_next, -1), scipy.special.softmax(logits, -1)
    nu_sa = np.take_along_axis(nu, actions[..., None], -1)[..., 0]
    diff = nu_sa - gamma * (1 - done) * (pi_next * nu_next).sum(-1)
    log_ratio = np.log(np.mean(np.exp(diff), axis=-1))
    initial = (1 - gamma) * (pi * nu).sum(-1).mean(-1)
    terms = valuedice_objective(
        _t(nu),
        _a(actions),
        _t(nu_next),
        _t(logits_next),
        _t(nu),
        _t(logits),
        _t(done),
        discount=gamma,
    )
    np.testing.assert_allclose(terms.log_ratio_term.numpy(), log_ratio, rtol=1e-12)
    np.testing.assert_allclose(terms.initial_term.numpy(), initial, rtol=1e-12)
    np.testing.assert_allclose(terms.objective.numpy(), log_ratio - initial, rtol=1e-12)


def test_valuedice_objective_ignores_a_constant_shift_of_nu_unless_a_step_is_terminal():
    # J(nu + c) = log E exp(nu - gamma nu' + (1 - gamma) c) - (1 - gamma)(E nu0 + c) = J(nu):
    # the policy's probabilities sum to one. A terminal step drops -gamma c from its term.
    nu, actions, nu_next, logits_next, logits = _valuedice_inputs(2)
    gamma, shift = 0.95, 3.7
    open_ended = torch.zeros(actions.shape, dtype=torch.float64)
    j = _objective(nu, actions, nu_next, logits_next, logits, open_ended, gamma)
    shifted = _objective(
        nu + shift, actions, nu_next + shift, logits_next, logits, open_ended, gamma
    )
    torch.testing.assert_close(shifted, j, rtol=0, atol=1e-12)
    terminal = open_ended.clone()
    terminal[:, 0] = 1.0
    j = _objective(nu, actions, nu_next, logits_next, logits, terminal, gamma)
    shifted = _objective(nu + shift, actions, nu_next + shift, logits_next, logits, terminal, gamma)
    assert (shifted - j).abs().min() > 1e-3


def test_valuedice_with_a_one_hot_policy_is_the_donsker_varadhan_form_at_its_actions():
    # With pi one-hot, E_pi nu(s', .) = nu(s', pi(s')): J is the code's Donsker-Varadhan form
    # log E_D exp(nu(s, a) - gamma nu(s', a'_pi)) - (1 - gamma) E nu(s0, a0_pi).
    nu, actions, nu_next, logits_next, logits = _valuedice_inputs(3, one_hot=True)
    gamma = 0.9
    done = torch.zeros(actions.shape, dtype=torch.float64)
    nu_sa = nu.gather(-1, actions[..., None])[..., 0]
    nu_next_pi = nu_next.gather(-1, logits_next.argmax(-1, keepdim=True))[..., 0]
    nu_0_pi = nu.gather(-1, logits.argmax(-1, keepdim=True))[..., 0]
    expected = (nu_sa - gamma * nu_next_pi).exp().mean(-1).log() - (1 - gamma) * nu_0_pi.mean(-1)
    got = _objective(nu, actions, nu_next, logits_next, logits, done, gamma)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def test_orthogonal_regularizer_is_the_codes_formula():
    # keras_utils.orthogonal_regularization: sum over Dense layers of
    # sum((kernel^T kernel * (1 - I))^2), the kernel stored [in, out] as sbil's weights are.
    rng = np.random.default_rng(4)
    weights = [rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 3, 4))]
    expected = [
        sum(np.sum(np.square((w[k].T @ w[k]) * (1 - np.eye(w.shape[2])))) for w in weights)
        for k in range(2)
    ]
    got = orthogonal_regularizer([_t(w) for w in weights])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # Orthonormal columns are not penalised; a column scaled by 2 still is not (only the
    # off-diagonal of W^T W counts).
    q = np.linalg.qr(rng.normal(size=(6, 4)))[0] * [1, 2, 1, 1]
    assert orthogonal_regularizer([_t(q[None])]).item() == pytest.approx(0.0, abs=1e-12)


def test_gradient_penalty_is_the_codes_formula():
    # value_dice.py: nu_grad = grad + EPS; mean((norm(nu_grad, axis=-1) - 1)^2)
    rng = np.random.default_rng(5)
    g = rng.normal(size=(2, 7, 3))
    eps = np.finfo(np.float32).eps
    expected = np.mean(np.square(np.linalg.norm(g + eps, axis=-1) - 1), axis=-1)
    np.testing.assert_allclose(gradient_penalty(_t(g)).numpy(), expected, rtol=1e-12)
    unit = _t(np.eye(3)[None] - eps)  # unit gradients (after the eps) cost nothing
    assert gradient_penalty(unit).item() == pytest.approx(0.0, abs=1e-12)


# --- ValueDICE against the authors' code ----------------------------------------------------------
# value_dice/value_dice.py (google-research), ValueDICE.update, with replay_regularization=0:
# the replay-buffer half of the concatenated batch gets weight 0. A one-hot policy makes the
# code's sampled action the exact expectation sbil takes.


def _weighted_softmax(x, weights, axis=0):
    x = x - x.amax(dim=axis)
    return weights * torch.exp(x) / torch.sum(weights * torch.exp(x), dim=axis, keepdim=True)


def _valuedice_loss_code(expert_nu_0, expert_nu, expert_nu_next, rb_nu, rb_nu_next, discount):
    replay_regularization = 0.0
    expert_diff = expert_nu - discount * expert_nu_next
    rb_diff = rb_nu - discount * rb_nu_next
    linear_loss_expert = torch.mean(expert_nu_0 * (1 - discount))
    linear_loss_rb = torch.mean(rb_diff)
    rb_expert_diff = torch.cat([expert_diff, rb_diff], 0)
    rb_expert_weights = torch.cat(
        [
            torch.ones(expert_diff.shape, dtype=expert_diff.dtype) * (1 - replay_regularization),
            torch.ones(rb_diff.shape, dtype=rb_diff.dtype) * replay_regularization,
        ],
        0,
    )
    rb_expert_weights = rb_expert_weights / torch.sum(rb_expert_weights)
    non_linear_loss = torch.sum(
        _weighted_softmax(rb_expert_diff, rb_expert_weights, axis=0).detach() * rb_expert_diff
    )
    linear_loss = (
        linear_loss_expert * (1 - replay_regularization) + linear_loss_rb * replay_regularization
    )
    return non_linear_loss - linear_loss


def test_valuedice_objective_has_the_gradient_of_the_authors_loss():
    nu, actions, nu_next, logits_next, logits = _valuedice_inputs(9, k=1, b=8, a=3, one_hot=True)
    nu.requires_grad_(True)
    nu_next.requires_grad_(True)
    gamma = 0.99
    rng = np.random.default_rng(10)
    rb_nu, rb_nu_next = _t(rng.normal(size=(8, 1))), _t(rng.normal(size=(8, 1)))
    code = _valuedice_loss_code(
        nu[0].gather(1, logits[0].argmax(1, keepdim=True)),  # nu(s0, pi(s0)), s0 = s
        nu[0].gather(1, actions[0, :, None]),  # nu(s, a)
        nu_next[0].gather(1, logits_next[0].argmax(1, keepdim=True)),  # nu(s', pi(s'))
        rb_nu,
        rb_nu_next,
        gamma,
    )
    done = torch.zeros(1, 8, dtype=torch.float64)
    terms = valuedice_objective(nu, actions, nu_next, logits_next, nu, logits, done, discount=gamma)
    code_grads = torch.autograd.grad(code, [nu, nu_next])
    sbil_grads = torch.autograd.grad(terms.objective.sum(), [nu, nu_next])
    for mine, theirs in zip(sbil_grads, code_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-15)
    assert code_grads[0].abs().sum() > 0.1 and code_grads[1].abs().sum() > 0.1
    # The values differ by design: the code's sum(stop_grad(softmax(x)) x) is the
    # log-mean-exp plus KL(softmax(x) || uniform) >= 0, zero only when all x are equal.
    with torch.no_grad():
        diff = (
            nu[0].gather(1, actions[0, :, None])[:, 0]
            - gamma * nu_next[0].gather(1, logits_next[0].argmax(1, keepdim=True))[:, 0]
        )
        p = diff.softmax(0)
        kl_to_uniform = (p * (p * len(p)).log()).sum()
    assert kl_to_uniform > 1e-3
    assert code.item() == pytest.approx(terms.objective.item() + kl_to_uniform.item(), rel=1e-12)


def test_valuedice_updates_match_the_authors_update_under_adam(
    episodes, sequential, initial_networks
):
    """Five updates written as ValueDICE.update (nu descends loss + nu_reg * penalty, the actor
    descends -loss + orthogonal regulariser, each from its own gradient of one forward pass,
    Adam at nu_lr 1e-3 and actor_lr 1e-5), fed sbil's minibatches and interpolation draws, give
    sbil's objective and weights. Offline and discrete, three parts stand in for the code's:
    E_pi nu(s', .) is the exact sum (one-hot inputs per action) instead of a sampled action;
    the replay-buffer points the penalty interpolates towards are the batch rolled by one
    (``_nu_gradient_penalty``), with pi(.|s') as the next action input. As in the code, nu's
    output layer has no bias and the orthogonal regulariser covers every layer of the actor.
    A terminal step has no continuation (the code uses absorbing states instead)."""
    import torch.nn.functional as F

    from sbil.deep.train_inputs import _SGLD

    demos = episodes(n_episodes=4, length=50, final=True, terminated=[False, True, False, False])
    config = LearnerConfig(algo="valuedice", n_updates=5, batch_size=64)
    assert (config.learning_rate, config.nu_learning_rate, config.gradient_penalty) == (
        1e-5,
        1e-3,
        10.0,
    )
    result = train(demos, config, seeds=[3])

    n_actions, gamma, batch = 2, config.discount, 64
    mean = demos.observations.mean(0, dtype=np.float64).astype(np.float32)
    std = np.maximum(demos.observations.std(0, dtype=np.float64), 1e-6).astype(np.float32)
    init = initial_networks(config, 3, 4, n_actions)
    actor, nu_net = sequential(init[0]), sequential(init[1])
    nu_net[-1].bias.requires_grad_(False)  # zero, as the code's use_bias=False
    nu_parameters = [p for p in nu_net.parameters() if p.requires_grad]
    nu_optimizer = torch.optim.Adam(nu_parameters, lr=1e-3)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=1e-5)

    def one_hot(actions):
        return F.one_hot(actions, n_actions).float()

    def expected_nu(states, probs):  # sum_b pi(b|s) nu(s, b)
        every = [nu_net(torch.cat([states, one_hot(torch.full((batch,), b))], 1)) for b in range(2)]
        return (probs * torch.cat(every, 1)).sum(1, keepdim=True)

    rows = demos.transition_rows()
    minibatches, interpolation = seed_generator(3, _MINIBATCH), seed_generator(3, _SGLD)
    objectives = []
    for _ in range(5):
        index = rows[minibatch_indices(minibatches, len(rows), batch).numpy()]
        expert_states = torch.from_numpy((demos.observations[index] - mean) / std)
        expert_next_states = torch.from_numpy((demos.next_observations[index] - mean) / std)
        expert_actions = one_hot(torch.from_numpy(demos.actions[index]))
        masks = 1 - torch.from_numpy(demos.terminals[index].astype(np.float32))[:, None]
        alpha = torch.rand(batch, 1, generator=interpolation)

        policy_next = actor(expert_next_states).softmax(1)
        expert_nu_0 = expert_nu_initial = expected_nu(
            expert_states, actor(expert_states).softmax(1)
        )
        expert_inputs = torch.cat([expert_states, expert_actions], 1)
        expert_nu = nu_net(expert_inputs)
        expert_nu_next = masks * expected_nu(expert_next_states, policy_next)
        zeros = torch.zeros(batch, 1)  # the replay half, weight 0
        loss = _valuedice_loss_code(expert_nu_0, expert_nu, expert_nu_next, zeros, zeros, gamma)

        expert_next_inputs = torch.cat([expert_next_states, policy_next.detach()], 1)
        rb_inputs, rb_next_inputs = expert_inputs.roll(1, 0), expert_next_inputs.roll(1, 0)
        nu_inter = alpha * expert_inputs + (1 - alpha) * rb_inputs
        nu_next_inter = alpha * expert_next_inputs + (1 - alpha) * rb_next_inputs
        nu_inter = torch.cat([nu_inter, nu_next_inter], 0).detach().requires_grad_(True)
        nu_grad = torch.autograd.grad(nu_net(nu_inter).sum(), nu_inter, create_graph=True)[0]
        nu_grad = nu_grad + np.finfo(np.float32).eps
        nu_grad_penalty = torch.mean(torch.square(nu_grad.norm(dim=-1, keepdim=True) - 1))
        nu_loss = loss + nu_grad_penalty * 10.0
        kernels = [linear.weight.T for linear in actor[::2]]
        orthogonal = sum(
            torch.sum(torch.square((k.T @ k) * (1 - torch.eye(k.shape[1])))) for k in kernels
        )
        pi_loss = -loss + 1e-4 * orthogonal

        nu_grads = torch.autograd.grad(nu_loss, nu_parameters, retain_graph=True)
        pi_grads = torch.autograd.grad(pi_loss, [*actor.parameters()])
        for parameter, gradient in zip(
            [*nu_parameters, *actor.parameters()], [*nu_grads, *pi_grads], strict=True
        ):
            parameter.grad = gradient.contiguous()
        nu_optimizer.step()
        actor_optimizer.step()
        diff = (expert_nu - gamma * expert_nu_next)[:, 0]
        j = diff.logsumexp(0) - math.log(batch) - (1 - gamma) * expert_nu_initial.mean()
        objectives.append(j.item())

    np.testing.assert_allclose(result.loss[0], objectives, rtol=0, atol=2e-5)
    for net, state in ((actor, result.policy_state), (nu_net, result.energy_state)):
        for layer, linear in enumerate(net[::2]):
            np.testing.assert_allclose(
                state[f"weight{layer}"][0], linear.weight.detach().T, rtol=0, atol=1e-6
            )
    for layer, linear in enumerate(actor[::2]):
        np.testing.assert_allclose(
            result.policy_state[f"bias{layer}"][0, 0], linear.bias.detach(), rtol=0, atol=1e-6
        )
    # nu's biases get gradients of ~0 in places (its output bias is not identified but for
    # terminal steps), where Adam turns last-bit differences into steps of up to nu_lr.
    gaps = torch.cat(
        [
            (result.energy_state[f"bias{layer}"][0, 0] - linear.bias.detach()).abs()
            for layer, linear in enumerate(nu_net[::2])
        ]
    )
    assert gaps.max() <= 5 * 1e-3 and (gaps > 1e-6).float().mean() < 0.05
