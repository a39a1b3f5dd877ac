"""ValueDICE (Kostrikov, Nachum & Tompson, ICLR 2020), offline, with discrete actions.

A min-max over the policy and a second network ``nu(s, a)`` (the state and a one-hot action in,
one value out, with no trained output bias, as in the authors' code): ``nu`` descends the
objective (:func:`valuedice_objective`) plus ``gradient_penalty`` times its gradient penalty
(:func:`gradient_penalty`), the policy ascends it (descends ``-J`` plus ``orthogonal_coef``
times :func:`orthogonal_regularizer`), each with its own learning rate
(``nu_learning_rate``, ``learning_rate``). ``docs/learners.md`` lists where this deviates from
the paper and the code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from sbil.deep.losses import cross_entropy, named_terms, policy_regularizer

if TYPE_CHECKING:
    from sbil.deep.networks import StackedMLP
    from sbil.deep.stack import Stack


def _value_under(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``sum_a softmax(logits)[a] * values[a]`` over the last axis."""
    return (logits.softmax(-1) * values).sum(-1)


@dataclass(frozen=True)
class ValueDiceLoss:
    """ValueDICE's objective and its terms, each ``[K]``.

    Attributes:
        objective: ``J(pi, nu)``; nu descends ``J + gradient_penalty * penalty``, the policy
            ascends ``J`` (descends ``-J + orthogonal regulariser``).
        log_ratio_term: ``log E_D exp(nu(s, a) - gamma E_pi nu(s', .))``.
        initial_term: ``(1 - gamma) E_{s0} E_pi nu(s0, .)``.
    """

    objective: torch.Tensor
    log_ratio_term: torch.Tensor
    initial_term: torch.Tensor


def valuedice_objective(
    nu_data: torch.Tensor,
    actions: torch.Tensor,
    nu_next: torch.Tensor,
    policy_logits_next: torch.Tensor,
    nu_initial: torch.Tensor,
    policy_logits_initial: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
) -> ValueDiceLoss:
    """ValueDICE's offline objective (Kostrikov et al. 2020, eq. 11 with no replay data):

    ``J(pi, nu) = log E_{(s,a,s')~D} exp(nu(s, a) - gamma E_{a'~pi(s')} nu(s', a'))
    - (1 - gamma) E_{s0} E_{a0~pi(s0)} nu(s0, a0)``,

    minimised over ``nu`` and maximised over ``pi`` (``min_nu J = -KL(d^pi || d^E)``). With
    discrete actions the expectations over ``pi`` are exact sums (the code samples a
    reparameterised action). As in the authors' code, the initial states ``s0`` are the batch's
    expert states, and ``log E exp`` is a batch log-mean-exp (the code's
    ``sum stop_grad(softmax(x)) x`` has the same gradient).

    Args:
        nu_data: ``[K, B, A]`` ``nu(s, .)`` on the expert states.
        actions: ``[K, B]`` expert actions.
        nu_next: ``[K, B, A]`` ``nu(s', .)``.
        policy_logits_next: ``[K, B, A]`` policy logits at ``s'``.
        nu_initial: ``[K, B0, A]`` ``nu(s0, .)`` on the initial states.
        policy_logits_initial: ``[K, B0, A]`` policy logits at ``s0``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal (no continuation), else 0.0.
        discount: gamma.
    """
    nu_sa = nu_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    continuation = (1.0 - done) * _value_under(policy_logits_next, nu_next)
    diff = nu_sa - discount * continuation
    log_ratio = diff.logsumexp(-1) - math.log(diff.shape[-1])
    initial = (1.0 - discount) * _value_under(policy_logits_initial, nu_initial).mean(-1)
    return ValueDiceLoss(
        objective=log_ratio - initial, log_ratio_term=log_ratio, initial_term=initial
    )


def orthogonal_regularizer(weights: list[torch.Tensor]) -> torch.Tensor:
    """``sum_l ||W_l^T W_l * (1 - I)||^2`` per learner ``[K]`` over ``[K, in, out]`` weights
    (Brock et al. 2019, eq. 3; ValueDICE applies it to every layer of its actor's trunk)."""
    total = 0.0
    for w in weights:
        gram = torch.bmm(w.transpose(1, 2), w)
        off = gram * (1 - torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype))
        total = total + off.square().sum(dim=(1, 2))
    return total


def gradient_penalty(gradients: torch.Tensor) -> torch.Tensor:
    """``mean_b (||g_b + eps|| - 1)^2`` per learner ``[K]`` for ``gradients [K, B, d]``
    (WGAN-GP, Gulrajani et al. 2017, as in ValueDICE's code, which adds float32 eps)."""
    eps = torch.finfo(torch.float32).eps
    return ((gradients + eps).norm(dim=-1) - 1.0).square().mean(-1)


# --- the update ---------------------------------------------------------------------------------


def parameter_groups(stack: Stack) -> list[dict]:
    """Adam's parameter groups: the policy's at ``learning_rate`` and nu's at
    ``nu_learning_rate``. The code's nu has no output bias: it stays zero and is not trained."""
    with torch.no_grad():
        stack.energy.biases[-1].zero_()
    stack.energy.biases[-1].requires_grad_(False)
    return [
        {"params": [*stack.policy.parameters()]},
        {"params": _nu_parameters(stack.energy), "lr": stack.config.nu_learning_rate},
    ]


def _nu_parameters(nu: StackedMLP) -> list[torch.Tensor]:
    return [p for p in nu.parameters() if p.requires_grad]


def nu_values(nu: StackedMLP, states: torch.Tensor, n_actions: int) -> torch.Tensor:
    """``nu(s, a)`` for every action: ``[K, N, d]`` -> ``[K, N, A]``."""
    k, n, obs_dim = states.shape
    onehot = torch.eye(n_actions, device=states.device).expand(k, n, n_actions, n_actions)
    inputs = torch.cat([states.unsqueeze(2).expand(k, n, n_actions, obs_dim), onehot], dim=-1)
    return nu(inputs.reshape(k, n * n_actions, -1)).view(k, n, n_actions)


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One min-max step of every learner of ``stack`` on its minibatch of transitions
    ``index`` ``[K, B]``; returns the terms ``{name: [K]}``: the objective's, the unweighted
    penalties whose weight is not 0, the policy regulariser when on, the cross-entropy."""
    config, batch, policy, nu = stack.config, stack.batch, stack.policy, stack.energy
    x, a, x_next, _, done = stack.transitions(index)
    both = torch.cat([x, x_next], dim=1)
    logits, nu_both = policy(both), nu_values(nu, both, stack.n_actions)
    # The initial states s0 are the expert states of the batch, as in the authors' code.
    losses = valuedice_objective(
        nu_both[:, :batch],
        a,
        nu_both[:, batch:],
        logits[:, batch:],
        nu_both[:, :batch],
        logits[:, :batch],
        done,
        discount=config.discount,
    )
    terms = named_terms(losses)
    nu_loss = losses.objective
    if config.gradient_penalty:
        penalty = _nu_gradient_penalty(stack, x, a, x_next, logits[:, batch:].detach())
        nu_loss = nu_loss + config.gradient_penalty * penalty
        terms["nu_gradient_penalty"] = penalty.detach()
    policy_loss = -losses.objective
    if config.orthogonal_coef:  # on every layer of the actor, as the code's trunk
        orthogonal = orthogonal_regularizer(policy.weights)
        policy_loss = policy_loss + config.orthogonal_coef * orthogonal
        terms["orthogonal_regularizer"] = orthogonal.detach()
    if config.l2_coef or config.entropy_coef:
        regularizer = policy_regularizer(logits[:, :batch], policy, config)
        policy_loss = policy_loss + regularizer
        terms["policy_regularizer"] = regularizer.detach()
    # nu descends nu_loss, the policy descends policy_loss: each gradient goes to its own
    # parameters only. backward(inputs=...) lays each gradient out like its parameter (the
    # double backward of the penalty returns transposed layouts, which a fused Adam would
    # apply element-for-element to the wrong weights if assigned to .grad as they are).
    stack.optimizer.zero_grad(set_to_none=True)
    nu_loss.sum().backward(inputs=_nu_parameters(nu), retain_graph=True)
    policy_loss.sum().backward(inputs=[*policy.parameters()])
    stack.optimizer.step()
    terms["cross_entropy"] = cross_entropy(logits[:, :batch].detach(), a)
    return terms


def _nu_gradient_penalty(stack: Stack, x, a, x_next, next_logits) -> torch.Tensor:
    """ValueDICE's penalty on ``||grad nu|| - 1`` with respect to its input ``(s, action)``,
    at points interpolated between each expert input and another of the batch (offline
    there is no replay buffer to interpolate towards): ``(s, onehot(a))`` and
    ``(s', pi(.|s'))``, the policy's action distribution standing in for the code's
    sampled action. The mixing weights come from each learner's SGLD stream, which
    ValueDICE draws no chains from."""
    b = a.shape[1]
    mix = torch.stack([torch.rand(b, 1, generator=g) for g in stack.sgld_gens]).to(x.device)
    current = torch.cat([x, F.one_hot(a, stack.n_actions).to(x.dtype)], dim=-1)
    following = torch.cat([x_next, next_logits.softmax(-1)], dim=-1)
    points = torch.cat(
        [
            mix * current + (1 - mix) * current.roll(1, dims=1),
            mix * following + (1 - mix) * following.roll(1, dims=1),
        ],
        dim=1,
    ).requires_grad_(True)
    (grads,) = torch.autograd.grad(stack.energy(points).sum(), points, create_graph=True)
    return gradient_penalty(grads)
