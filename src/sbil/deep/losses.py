"""The learners' losses, each one short function next to its equation.

* BC: :func:`cross_entropy`, ``E_D[-log pi(a|s)]`` with ``pi(a|s) = softmax(f(s))[a]``.
* EDM (Jarrett, Bica & van der Schaar, NeurIPS 2020) and the critique's decoupled control:
  :func:`edm_loss`, ``CE + rho + rho**2`` as in the reference code, whose terms come back in
  an :class:`EdmLoss`.
* ValueDICE (Kostrikov, Nachum & Tompson, ICLR 2020), offline: :func:`valuedice_objective`.
* RCAL (Piot, Geist & Pietquin, 2014): :func:`rcal_loss`.
* IQ-Learn, offline with the chi-squared regulariser (Garg et al., NeurIPS 2021):
  :func:`iqlearn_loss`.
* AVRIL (Chan & van der Schaar, ICLR 2021): :func:`avril_loss`.
* Optional policy regularisers: :func:`policy_regularizer`.

The four learners that use transitions take ``done[k, b]`` (1.0 where ``s'`` is terminal, so
nothing follows it) and drop the continuation there; ``docs/learners.md`` lists every place
where these forms deviate from the papers and the authors' code.

All losses are batched over ``K`` independent learners (a leading ``K`` axis) and return one
value per learner; the training loop (:mod:`sbil.deep.training`) sums them, which gives each
learner exactly its own gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sbil.deep.config import LearnerConfig
from sbil.deep.networks import StackedMLP


def cross_entropy(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """BC's loss, ``mean_b -log softmax(logits[k, b])[actions[k, b]]``, per learner.

    Args:
        logits: ``[K, B, A]`` policy logits on expert states.
        actions: ``[K, B]`` int64 expert actions.

    Returns:
        ``[K]``.
    """
    k, b, a = logits.shape
    nll = F.cross_entropy(logits.reshape(k * b, a), actions.reshape(k * b), reduction="none")
    return nll.view(k, b).mean(dim=1)


def state_log_density_gap(
    state_logits_data: torch.Tensor, state_logits_samples: torch.Tensor
) -> torch.Tensor:
    """``rho = mean_q logsumexp g - mean_D logsumexp g`` per learner (EDM's state term).

    ``logsumexp_a g(s)[a]`` is the unnormalised ``log p(s)``; ``rho`` is a contrastive
    divergence estimate of ``-E_D log p(s)`` up to a constant.

    Args:
        state_logits_data: ``[K, B, A]`` state-model outputs on expert states.
        state_logits_samples: ``[K, B', A]`` state-model outputs on SGLD samples.

    Returns:
        ``[K]``.
    """
    return state_logits_samples.logsumexp(-1).mean(-1) - state_logits_data.logsumexp(-1).mean(-1)


@dataclass(frozen=True)
class EdmLoss:
    """EDM's loss and its terms, each ``[K]`` (one value per learner).

    Attributes:
        loss: ``cross_entropy + rho + rho**2``, what Adam minimises.
        cross_entropy: the policy term ``mean_D -log pi(a|s)``.
        rho: the state term's contrastive gap ``mean_q lse g - mean_D lse g``; it can be
            negative, and so can ``loss`` (``rho + rho**2`` is smallest, -1/4, at
            ``rho = -1/2``).
    """

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    rho: torch.Tensor


def edm_loss(
    policy_logits: torch.Tensor,
    actions: torch.Tensor,
    state_logits_data: torch.Tensor,
    state_logits_samples: torch.Tensor,
) -> EdmLoss:
    """EDM's loss as in the reference code (``EDMStudent._compute_loss``): ``CE + rho + rho**2``.

    With ``pi(a|s) = softmax(f(s))[a]`` and ``p(s) ∝ sum_a exp g(s)[a]``, the objective
    ``E_D[-log pi(a|s) - log p(s)]`` (Jarrett et al., eq. 9) is estimated by the cross-entropy
    plus ``rho``, the contrastive-divergence estimate of ``-E_D log p(s)`` up to a constant;
    the reference adds ``rho**2``. For ``"edm"`` ``g = f`` (one network); for
    ``"edm-decoupled"`` ``g`` is the separate state network.

    Args:
        policy_logits: ``[K, B, A]`` policy logits on expert states.
        actions: ``[K, B]`` expert actions.
        state_logits_data: ``[K, B, A]`` state-model outputs on the same expert states.
        state_logits_samples: ``[K, B', A]`` state-model outputs on SGLD samples.
    """
    ce = cross_entropy(policy_logits, actions)
    rho = state_log_density_gap(state_logits_data, state_logits_samples)
    return EdmLoss(loss=ce + rho + rho**2, cross_entropy=ce, rho=rho)


def policy_regularizer(
    policy_logits: torch.Tensor, policy: StackedMLP, config: LearnerConfig
) -> torch.Tensor | float:
    """``l2_coef * sum ||W||^2 - entropy_coef * mean entropy(pi)`` per learner ``[K]`` (or 0)."""
    penalty: torch.Tensor | float = 0.0
    if config.l2_coef:
        penalty = penalty + config.l2_coef * sum(w.square().sum(dim=(1, 2)) for w in policy.weights)
    if config.entropy_coef:
        log_pi = policy_logits.log_softmax(-1)
        entropy = -(log_pi.exp() * log_pi).sum(-1).mean(-1)
        penalty = penalty - config.entropy_coef * entropy
    return penalty


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


@dataclass(frozen=True)
class RcalLoss:
    """RCAL's loss and its terms, each ``[K]``.

    Attributes:
        loss: ``margin + reward_l1_coef * reward_l1``.
        margin: the large-margin classification term.
        reward_l1: ``mean |R(s, a)|`` of the implied reward.
    """

    loss: torch.Tensor
    margin: torch.Tensor
    reward_l1: torch.Tensor


def rcal_loss(
    q_data: torch.Tensor,
    actions: torch.Tensor,
    q_next: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
    reward_l1_coef: float,
) -> RcalLoss:
    """RCAL (Piot, Geist & Pietquin 2014, eq. 6): classification with a margin, regularised by
    the sparsity of the reward that the score function implies:

    ``mean_D [max_b (Q(s, b) + l(a, b)) - Q(s, a)]
    + lambda * mean_D |Q(s, a) - gamma max_b Q(s', b)|``,

    with the margin ``l(a, b) = 1[b != a]`` and ``R(s, a) = Q(s, a) - gamma max_b Q(s', b)``,
    the reward for which ``Q`` is optimal (inverted Bellman equation), estimated from the
    sampled ``s'``. The policy is greedy in ``Q``.

    Args:
        q_data: ``[K, B, A]`` ``Q(s, .)`` on expert states.
        actions: ``[K, B]`` expert actions.
        q_next: ``[K, B, A]`` ``Q(s', .)``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        discount: gamma.
        reward_l1_coef: lambda.
    """
    margin = torch.ones_like(q_data).scatter_(-1, actions.unsqueeze(-1), 0.0)
    q_sa = q_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    classification = ((q_data + margin).amax(-1) - q_sa).mean(-1)
    reward = q_sa - discount * (1.0 - done) * q_next.amax(-1)
    reward_l1 = reward.abs().mean(-1)
    return RcalLoss(
        loss=classification + reward_l1_coef * reward_l1, margin=classification, reward_l1=reward_l1
    )


@dataclass(frozen=True)
class IqLearnLoss:
    """IQ-Learn's loss (to minimise) and its terms, each ``[K]``.

    Attributes:
        loss: ``-reward_term + value_term + chi2_term``.
        reward_term: ``mean_D r``, ``r = Q(s, a) - gamma V(s')`` (the implied reward).
        value_term: ``mean_D [V(s) - gamma V(s')]``.
        chi2_term: ``mean_D r^2 / (4 alpha)``.
    """

    loss: torch.Tensor
    reward_term: torch.Tensor
    value_term: torch.Tensor
    chi2_term: torch.Tensor


def iqlearn_loss(
    q_data: torch.Tensor,
    actions: torch.Tensor,
    q_next: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
    temperature: float,
    chi2_alpha: float,
) -> IqLearnLoss:
    """Offline IQ-Learn with the chi-squared divergence (Garg et al. 2021, eq. 10 with
    ``phi(r) = r - r^2 / (4 alpha)``, and the expert-states form of the initial-value term,
    their eq. 14 ``E_D[V(s) - gamma V(s')] = (1 - gamma) E_{p0} V(s0)``):

    ``min_Q  -mean_D [Q(s, a) - gamma V(s')] + mean_D [V(s) - gamma V(s')]
    + mean_D [(Q(s, a) - gamma V(s'))^2] / (4 alpha)``,

    with the soft value ``V(s) = tau logsumexp_a Q(s, a) / tau`` (``V(s') = 0`` where ``s'`` is
    terminal) and the policy ``pi(a|s) = softmax(Q(s, .) / tau)[a]``.

    Args:
        q_data: ``[K, B, A]`` ``Q(s, .)`` on expert states.
        actions: ``[K, B]`` expert actions.
        q_next: ``[K, B, A]`` ``Q(s', .)``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        discount: gamma.
        temperature: tau.
        chi2_alpha: alpha.
    """
    v_data = temperature * (q_data / temperature).logsumexp(-1)
    v_next = (1.0 - done) * temperature * (q_next / temperature).logsumexp(-1)
    q_sa = q_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    reward = q_sa - discount * v_next
    reward_term = reward.mean(-1)
    value_term = (v_data - discount * v_next).mean(-1)
    chi2 = reward.square().mean(-1) / (4.0 * chi2_alpha)
    return IqLearnLoss(
        loss=-reward_term + value_term + chi2,
        reward_term=reward_term,
        value_term=value_term,
        chi2_term=chi2,
    )


@dataclass(frozen=True)
class AvrilLoss:
    """AVRIL's negative ELBO and its terms, each ``[K]``.

    Attributes:
        loss: ``cross_entropy + kl + td_likelihood_weight * td_nll``.
        cross_entropy: ``mean_D -log softmax(Q(s, .))[a]``.
        kl: ``mean_D KL(q(R(s)) || N(0, 1))``.
        td_nll: ``mean_D -log N(Q(s, a) - gamma Q(s', a'); mu(s), sigma(s)^2)``.
    """

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    kl: torch.Tensor
    td_nll: torch.Tensor


def avril_loss(
    q_data: torch.Tensor,
    actions: torch.Tensor,
    q_next: torch.Tensor,
    next_actions: torch.Tensor,
    reward_params: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
    td_likelihood_weight: float,
) -> AvrilLoss:
    """AVRIL's negative ELBO (Chan & van der Schaar 2021, eq. 9), averaged over the batch as in
    the authors' code:

    ``mean_D [-log pi(a|s) + KL(q_phi(R(s)) || N(0, 1))
    - lambda log q_phi(Q(s, a) - gamma Q(s', a') | s)]``,

    with ``pi(a|s) = softmax(Q(s, .))[a]``, the state-only Gaussian reward posterior
    ``q_phi(R(s)) = N(mu(s), sigma(s)^2)`` of the encoder, and ``(s', a')`` the expert's next
    state and action (``Q(s', a') = 0`` where ``s'`` is terminal).

    Args:
        q_data: ``[K, B, A]`` ``Q(s, .)``.
        actions: ``[K, B]`` expert actions.
        q_next: ``[K, B, A]`` ``Q(s', .)``.
        next_actions: ``[K, B]`` the expert's next actions (any valid action where done).
        reward_params: ``[K, B, 2]`` the encoder's ``(mu(s), log sigma(s))``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        discount: gamma (the authors' code has no discount: 1).
        td_likelihood_weight: lambda (1 in the code).
    """
    ce = cross_entropy(q_data, actions)
    q_sa = q_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    q_next_a = q_next.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
    td = q_sa - discount * (1.0 - done) * q_next_a
    mean, log_sd = reward_params[..., 0], reward_params[..., 1]
    var = torch.exp(2 * log_sd)
    kl = (0.5 * (-torch.log(var) - 1.0 + var + mean.square())).mean(-1)
    td_nll = 0.5 * ((td - mean) / log_sd.exp()).square() + log_sd + 0.5 * math.log(2 * math.pi)
    td_nll = td_nll.mean(-1)
    return AvrilLoss(
        loss=ce + kl + td_likelihood_weight * td_nll, cross_entropy=ce, kl=kl, td_nll=td_nll
    )
