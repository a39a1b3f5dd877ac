"""DSFN (Lee, Srinivasan & Doshi-Velez, IJCAI 2019): batch apprenticeship learning with deep
successor features.

Abbeel & Ng's apprenticeship learning made strictly batch: a transition-regularised imitation
network (TRIL) gives the reward features ``phi`` and the first policy ``pi_0``; a deep successor
feature network (DSFN) estimates each candidate policy's feature expectation ``mu_pi`` off-policy
from the expert's transitions; max-margin (or projection) weights ``w`` separate the expert's
``mu_E`` from the candidates'; a batch Q-learner (the authors' DQN) finds the next candidate,
greedy in ``Q`` for the reward ``w . phi(s, a)``. The policy network is that ``Q``.

Written from the paper's appendix and the authors' code (dtak/batch-apprenticeship-learning):
``src/model/bc.py`` (TRIL), ``src/model/dsfn.py`` and ``src/core/feature_expectation.py`` (the
successor features and their ``mu``), ``src/model/mma.py`` (the weights), ``src/model/dqn.py``
(the Q-learner), ``src/run.py`` (the features ``phi(s, a) = [phi(s), onehot(a)]``).

**The schedule.** The phases share sbil's budget of ``n_updates`` updates of ``batch_size``
transitions (:func:`schedule`): TRIL takes the first fifth, then ``dsfn_iterations`` IRL
iterations share the rest equally, each half successor features (evaluating the current
candidate ``pi_i``; in iteration 0 also the expert) and half Q-learning (for the weights fitted
to ``mu_E`` and ``mu_0 .. mu_i``). Work between phases (the ``mu`` estimates over all training
states, the weights, re-initialising a network) is done by the first update of the next phase.
The final policy is the last Q-learner's (greedy, as every sbil policy acts).

**Where its state lives.** The policy network is ``Q``; TRIL, the successor-feature network,
``Q``'s target network, ``mu_E``, the ``mu_i`` and ``w`` are this module's (created by
:func:`parameter_groups`). Their values travel in the optimiser's third parameter group, key
``"dsfn"``, which the training loop saves and restores with Adam's state; after a resume the first
update copies them back into the live networks (:func:`_networks`), so that a resumed run is bit
for bit an uninterrupted one. (A cleaner home would be a learner-owned state dict that the
loop saves beside the networks.)

Deliberate differences from the authors' code (see ``docs/learners.md``): discrete actions with
one output block per action (TRIL's next-state head, the successor features, ``Q``) instead of
an action input; sbil's 64-64 ELU MLPs for every network, ``phi(s)`` being TRIL's last hidden
layer (the code: 128-128 tanh and a 64-wide feature layer); the shared update budget and one
batch size for every phase instead of each network's own (TRIL 3e4 updates, the DSFN until a
validation error below 10, DQN 5e4 updates of 256, ten IRL iterations); ``mu`` averaged over
the training states instead of the episodes' first states (for ``mu_E`` too, estimated by the
same successor features with the expert's next actions, where the code sums discounted
features along each episode); no early stopping of the IRL loop; one ``K``-stacked model per
network for the seeds.

Longer than ~400 lines: one learner, one file (:mod:`sbil.deep.learners`): DSFN has three
losses, two weight steps, a phase schedule and the state carried between phases, where the
other learners have one loss and one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from sbil.deep.losses import cross_entropy, named_terms
from sbil.deep.networks import StackedMLP

if TYPE_CHECKING:
    from sbil.deep.stack import Stack

#: The fraction of ``n_updates`` that TRIL trains for (sbil's choice: the code gives TRIL 3e4
#: updates and each of its ten Q-learners 5e4).
TRIL_FRACTION = 0.2
#: Adam's epsilon for every network (appendix Table 2; ``bc.py`` ``adam_epsilon=1e-4``).
ADAM_EPSILON = 1e-4
#: Each gradient tensor's norm is clipped to this, per learner (``dsfn.py`` and ``dqn.py``
#: ``grad_norm_clipping=10``, applied as ``tf.clip_by_norm`` to every variable's gradient).
GRADIENT_CLIP = 10.0
#: Polyak rate of Q's target network (appendix Table 2, "moving average for target network").
TARGET_RATE = 0.01
#: Iterations of the projected-gradient solver of the max-margin weights.
_SOLVER_STEPS = 3000
#: Rows per chunk when averaging over every training state.
_CHUNK = 4096
# Random streams of the networks this module re-initialises (the training loop's are 0..3).
_TRIL_INIT, _SF_INIT, _Q_INIT = 8, 16, 1024


@dataclass(frozen=True)
class DsfnLoss:
    """DSFN's terms, each ``[K]``; a term of a phase that is not running is NaN.

    Attributes:
        loss: what this update's Adam step minimised: the TRIL, successor-feature or Q loss.
        action_cross_entropy: TRIL's ``mean_D -log softmax(g(s))[a]``.
        transition_error: TRIL's ``mean_D mean_j (T(s, a)_j - s'_j)^2`` (non-terminal rows).
        successor_td: ``mean_D sum_j (psi(s, a)_j - y_j)^2``, the successor features' TD error.
        q_td: ``mean_D huber(Q(s, a) - y)``, the Q-learner's TD error.
        feature_margin: ``max_{|w| <= 1} min_j w . (mu_E - mu_j)`` of the current weights
            (the distance from ``mu_E`` to the candidates' hull; projection: to ``mu_bar``).
    """

    loss: torch.Tensor
    action_cross_entropy: torch.Tensor
    transition_error: torch.Tensor
    successor_td: torch.Tensor
    q_td: torch.Tensor
    feature_margin: torch.Tensor


# --- the losses, next to their equations ---------------------------------------------------------


def tril_loss(
    logits: torch.Tensor,
    predicted_next: torch.Tensor,
    actions: torch.Tensor,
    next_states: torch.Tensor,
    done: torch.Tensor,
    *,
    transition_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TRIL, the transition-regularised imitation network (``bc.py`` ``learn``):

    ``mean_D -log softmax(g(s))[a] + lambda mean_D mean_j (T(s, a)_j - s'_j)^2``,

    one network whose shared hidden layers (the features ``phi(s)``) feed the policy logits
    ``g(s)`` and a next-state prediction ``T(s, a)`` (one head per action). The code weighs the
    terms 0.7 and 1.0 (``lambda = 1 / 0.7``; the appendix gives 1.4). Terminal rows, whose next
    state may be unknown, are left out of the transition term.

    Args:
        logits: ``[K, B, A]`` ``g(s)``.
        predicted_next: ``[K, B, A, d]`` ``T(s, b)`` for every action ``b``.
        actions: ``[K, B]`` expert actions.
        next_states: ``[K, B, d]`` ``s'``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        transition_weight: lambda.

    Returns:
        ``(loss, cross_entropy, transition_error)``, each ``[K]``.
    """
    ce = cross_entropy(logits, actions)
    index = actions[..., None, None].expand(*actions.shape, 1, predicted_next.shape[-1])
    prediction = predicted_next.gather(-2, index).squeeze(-2)
    keep = 1.0 - done
    squared = (prediction - next_states).square().mean(-1)
    error = (keep * squared).sum(-1) / keep.sum(-1).clamp(min=1.0)
    return ce + transition_weight * error, ce, error


def successor_feature_loss(
    psi_data: torch.Tensor,
    features: torch.Tensor,
    psi_next: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
) -> torch.Tensor:
    """The DSFN's TD loss (``dsfn.py`` ``build_train``, lines 339-349):

    ``mean_D sum_j (psi(s, a)_j - [phi(s, a)_j + gamma (1 - done) psi(s', pi(s'))_j])^2``,

    with the target held fixed (no gradient through it, and no separate target network, as in
    the code), so that ``psi`` learns ``E_pi[sum_t gamma^t phi(s_t, a_t) | s_0 = s, a_0 = a]``
    from the expert's transitions whatever ``pi`` is.

    Args:
        psi_data: ``[K, B, p]`` ``psi(s, a)``.
        features: ``[K, B, p]`` ``phi(s, a)``.
        psi_next: ``[K, B, p]`` ``psi(s', a')``, ``a'`` the evaluated policy's next action.
        done: ``[K, B]``.
        discount: gamma.
    """
    target = features + discount * (1.0 - done)[..., None] * psi_next
    return (psi_data - target.detach()).square().sum(-1).mean(-1)


def q_learning_loss(
    q_sa: torch.Tensor,
    rewards: torch.Tensor,
    q_next_online: torch.Tensor,
    q_next_target: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
) -> torch.Tensor:
    """The batch Q-learner's loss (``dqn.py`` through baselines' ``deepq.build_train``: double
    Q-learning, Huber loss):

    ``mean_D huber(Q(s, a) - [r(s, a) + gamma (1 - done) Q'(s', argmax_b Q(s', b))])``,

    ``r(s, a) = w . phi(s, a)`` and ``Q'`` the target network.

    Args:
        q_sa: ``[K, B]`` ``Q(s, a)``.
        rewards: ``[K, B]``.
        q_next_online: ``[K, B, A]`` ``Q(s', .)``.
        q_next_target: ``[K, B, A]`` ``Q'(s', .)``.
        done: ``[K, B]``.
        discount: gamma.
    """
    best = q_next_online.argmax(-1, keepdim=True)
    target = rewards + discount * (1.0 - done) * q_next_target.gather(-1, best).squeeze(-1)
    return F.huber_loss(q_sa, target.detach(), reduction="none", delta=1.0).mean(-1)


# --- the weights: Abbeel & Ng's max-margin and projection steps ----------------------------------


def max_margin_weights(mu_expert: np.ndarray, mus: np.ndarray) -> tuple[np.ndarray, float]:
    """Abbeel & Ng's max-margin step (eq. 11; ``mma.py`` ``_optimize``, solved by cvxpy there):

    ``max_{t, |w|_2 <= 1} t  subject to  w . mu_E >= w . mu_j + t  for every j``.

    Solved through its dual: the point ``m*`` of the convex hull of the ``mu_j`` nearest to
    ``mu_E`` gives ``w = (mu_E - m*) / |mu_E - m*|`` and ``t = |mu_E - m*|`` (projected gradient
    on the simplex weights of the hull, float64, a fixed number of steps: deterministic).

    Args:
        mu_expert: ``[p]``.
        mus: ``[m, p]`` the candidates' feature expectations.

    Returns:
        ``(w [p], t)``.
    """
    gaps = mu_expert[None, :] - mus  # [m, p]
    direction = gaps.T @ nearest_mixture(mu_expert, mus)
    margin = float(np.linalg.norm(direction))
    return direction / max(margin, 1e-12), margin


def nearest_mixture(mu_expert: np.ndarray, mus: np.ndarray) -> np.ndarray:
    """``argmin_{lambda in simplex} |mu_E - sum_j lambda_j mu_j|_2``, ``[m]``: the mixture of
    the candidates nearest to the expert (FISTA on the simplex, float64, a fixed number of steps:
    deterministic). The code's ``_choose_mixture_weight`` (cvxpy) uses the 3-norm."""
    gaps = mu_expert[None, :] - mus  # [m, p]
    gram = gaps @ gaps.T
    step = 1.0 / max(float(np.linalg.eigvalsh(gram)[-1]), 1e-12)
    weights = np.full(len(mus), 1.0 / len(mus))
    momentum, t_prev = weights.copy(), 1.0
    for _ in range(_SOLVER_STEPS):  # FISTA on min_lambda |gaps^T lambda|^2 / 2 over the simplex
        new = _project_to_simplex(momentum - step * (gram @ momentum))
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t_prev * t_prev)) / 2.0
        momentum = new + ((t_prev - 1.0) / t_next) * (new - weights)
        weights, t_prev = new, t_next
    return weights


def projection_weights(mu_expert: np.ndarray, mus: np.ndarray) -> tuple[np.ndarray, float]:
    """Abbeel & Ng's projection step (section 3.1; ``mma.py`` ``_optimize_projection``):
    ``mu_bar_0 = mu_0``, ``mu_bar_i = mu_bar_{i-1} + [(mu_i - mu_bar_{i-1}) . (mu_E -
    mu_bar_{i-1}) / |mu_i - mu_bar_{i-1}|^2] (mu_i - mu_bar_{i-1})``, ``w = (mu_E - mu_bar) /
    |mu_E - mu_bar|`` and ``t = |mu_E - mu_bar|``. (The code's line 340 puts the parenthesis
    elsewhere, ``(mu_bar + a.b / |a|^2) * a``; this is the paper's update.)

    Args:
        mu_expert: ``[p]``.
        mus: ``[m, p]`` ``mu_0 .. mu_{m-1}``, in order.
    """
    bar = mus[0]
    for mu in mus[1:]:
        a, b = mu - bar, mu_expert - bar
        bar = bar + (a @ b) / max(float(a @ a), 1e-12) * a
    direction = mu_expert - bar
    margin = float(np.linalg.norm(direction))
    return direction / max(margin, 1e-12), margin


def _project_to_simplex(v: np.ndarray) -> np.ndarray:
    """The Euclidean projection of ``v`` onto ``{x >= 0, sum x = 1}``."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    ranks = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1), 0.0)


WEIGHT_METHODS = {"max_margin": max_margin_weights, "projection": projection_weights}


# --- the schedule ---------------------------------------------------------------------------------


def schedule(n_updates: int, iterations: int) -> list[tuple[str, int, int, int]]:
    """The phases ``(kind, iteration, start, end)`` over updates ``0 .. n_updates - 1``:
    ``("tril", 0, ...)``, then per IRL iteration ``i`` ``("sf", i, ...)`` and ``("q", i, ...)``,
    and a last ``("sf", iterations, ...)`` that evaluates the last Q-learner. TRIL takes
    ``TRIL_FRACTION`` of the budget; the other ``2 * iterations + 1`` phases share the rest
    equally (a phase may be empty when the budget is tiny)."""
    tril_end = int(n_updates * TRIL_FRACTION)
    bounds = np.linspace(tril_end, n_updates, 2 * iterations + 2).round().astype(int)
    phases = [("tril", 0, 0, tril_end)]
    for i in range(iterations):
        phases.append(("sf", i, int(bounds[2 * i]), int(bounds[2 * i + 1])))
        phases.append(("q", i, int(bounds[2 * i + 1]), int(bounds[2 * i + 2])))
    phases.append(("sf", iterations, int(bounds[-2]), int(bounds[-1])))
    return phases


def _phase_at(phases, update: int) -> int:
    return next(j for j, (_, _, start, end) in enumerate(phases) if start <= update < end)


# --- the networks and their state -----------------------------------------------------------------


def _feature_dim(stack: Stack) -> int:
    """``p = h + A``: ``phi(s, a) = [phi(s), onehot(a)]`` (``run.py`` lines 202-230)."""
    return stack.config.hidden_sizes[-1] + stack.n_actions


def _fresh(stack: Stack, stream: int, out_dim: int) -> StackedMLP:
    from sbil.deep.training import seed_generator

    return StackedMLP.initialized(
        [seed_generator(s, stream) for s in stack.seeds],
        in_dim=stack.obs_dim,
        hidden_sizes=stack.config.hidden_sizes,
        out_dim=out_dim,
        device=stack.device,
    )


@dataclass
class _Networks:
    tril: StackedMLP  # s -> [g(s) (A logits), T(s, .) (A * d)]
    successor: StackedMLP  # s -> [psi_E(s, .) (A * p), psi_pi(s, .) (A * p)]
    store: dict[str, torch.Tensor]  # what the optimiser's "dsfn" group saves


def parameter_groups(stack: Stack) -> list[dict]:
    """Adam's groups: ``Q`` (the policy network), TRIL, and the successor features, whose group
    also carries this module's saved state (key ``"dsfn"``); Adam's epsilon 1e-4 for all."""
    k, p, a = len(stack.seeds), _feature_dim(stack), stack.n_actions
    tril = _fresh(stack, _TRIL_INIT, a + a * stack.obs_dim)
    successor = _fresh(stack, _SF_INIT, 2 * a * p)
    zeros = {"dtype": torch.float64, "device": stack.device}
    store: dict[str, torch.Tensor] = {
        **{f"tril.{n}": v.detach() for n, v in tril.named_parameters()},
        **{f"successor.{n}": v.detach() for n, v in successor.named_parameters()},
        **{f"target.{n}": v.detach().clone() for n, v in stack.policy.named_parameters()},
        **{
            f"candidate{i}.{n}": torch.zeros_like(v)
            for i in range(1, stack.config.dsfn_iterations)
            for n, v in stack.policy.named_parameters()
        },
        "mu_expert": torch.zeros(k, p, **zeros),
        "mu": torch.zeros(k, stack.config.dsfn_iterations + 1, p, **zeros),
        "weights": torch.zeros(k, p, **zeros),
        "margin": torch.full((k,), math.nan, **zeros),
        "chosen": torch.full((k,), math.nan, **zeros),
    }
    stack.dsfn = _Networks(tril, successor, store)
    return [
        {"params": [*stack.policy.parameters()], "eps": ADAM_EPSILON},
        {"params": [*tril.parameters()], "eps": ADAM_EPSILON},
        {"params": [*successor.parameters()], "eps": ADAM_EPSILON, "dsfn": store},
    ]


def _networks(stack: Stack) -> _Networks:
    """The module's networks, with the saved state copied back into them after a resume (the
    optimiser's ``load_state_dict`` replaced the group's ``"dsfn"`` dict with the saved one)."""
    nets = stack.dsfn
    group = stack.optimizer.param_groups[2]
    if group["dsfn"] is not nets.store:
        with torch.no_grad():
            for name, value in group["dsfn"].items():
                nets.store[name].copy_(value)
        group["dsfn"] = nets.store
    return nets


def _weights_of(store, prefix: str) -> dict[str, torch.Tensor]:
    return {n.removeprefix(prefix): v for n, v in store.items() if n.startswith(prefix)}


def _mlp(state: dict[str, torch.Tensor], x: torch.Tensor, *, upto: int | None = None):
    """A stacked MLP from its weights (``StackedMLP.forward``); ``upto`` stops after that many
    layers (with the activation): the hidden features."""
    n_layers = sum(1 for n in state if n.startswith("weight"))
    h = x
    for layer in range(n_layers if upto is None else upto):
        h = torch.baddbmm(state[f"bias{layer}"], h, state[f"weight{layer}"])
        if layer < n_layers - 1:
            h = F.elu(h)
    return h


def _state_features(nets: _Networks, states: torch.Tensor) -> torch.Tensor:
    """``phi(s)``: TRIL's last hidden layer, ``[K, B, h]`` (no gradient)."""
    state = _weights_of(nets.store, "tril.")
    n_layers = sum(1 for n in state if n.startswith("weight"))
    return _mlp(state, states, upto=n_layers - 1)


def _pair_features(phi_s: torch.Tensor, actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """``phi(s, a) = [phi(s), onehot(a)]``, ``[K, B, h + A]``."""
    return torch.cat([phi_s, F.one_hot(actions, n_actions).to(phi_s.dtype)], dim=-1)


def _successor(nets: _Networks, states: torch.Tensor, block: int, p: int, a: int):
    """``psi(s, .)`` of block 0 (the expert) or 1 (the evaluated policy): ``[K, B, A, p]``."""
    out = nets.successor(states)[..., block * a * p : (block + 1) * a * p]
    return out.unflatten(-1, (a, p))


def _pick(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``values[k, b, actions[k, b]]`` for ``values`` ``[K, B, A, p]``: ``[K, B, p]``."""
    index = actions[..., None, None].expand(*actions.shape, 1, values.shape[-1])
    return values.gather(-2, index).squeeze(-2)


def _candidate_actions(stack: Stack, nets: _Networks, iteration: int, states: torch.Tensor):
    """``pi_i(s)``, greedy: TRIL's policy for ``i = 0``, else the Q-learner's."""
    if iteration == 0:
        logits = _mlp(_weights_of(nets.store, "tril."), states)[..., : stack.n_actions]
    else:
        logits = stack.policy(states)
    return logits.argmax(-1)


# --- between phases -------------------------------------------------------------------------------


@torch.no_grad()
def _feature_expectations(stack: Stack, nets: _Networks, iteration: int):
    """``mu_pi = mean_{s in D} psi_pi(s, pi(s))`` and ``mu_E = mean_{(s, a) in D} psi_E(s, a)``
    over each learner's training rows, float64 ``[K, p]`` each."""
    p, a, k = _feature_dim(stack), stack.n_actions, len(stack.seeds)
    largest = int(stack.n_pairs.max())
    rows = torch.stack(
        [
            torch.arange(largest).clamp(max=int(n) - 1) + int(offset)
            for n, offset in zip(stack.n_pairs, stack.offsets, strict=True)
        ]
    ).to(stack.device)
    counts = torch.as_tensor(stack.n_pairs, device=stack.device)
    mu_pi = torch.zeros(k, p, dtype=torch.float64, device=stack.device)
    mu_expert = torch.zeros_like(mu_pi)
    for start in range(0, largest, _CHUNK):
        index = rows[:, start : start + _CHUNK]
        mask = torch.arange(start, start + index.shape[1], device=stack.device) < counts[:, None]
        states, actions = stack.data_obs[index], stack.data_act[index]
        own = _pick(
            _successor(nets, states, 1, p, a), _candidate_actions(stack, nets, iteration, states)
        )
        expert = _pick(_successor(nets, states, 0, p, a), actions)
        mu_pi += (own.double() * mask[..., None]).sum(1)
        mu_expert += (expert.double() * mask[..., None]).sum(1)
    return mu_pi / counts[:, None], mu_expert / counts[:, None]


@torch.no_grad()
def _enter(stack: Stack, nets: _Networks, kind: str, iteration: int) -> None:
    """The work at the start of a phase."""
    store = nets.store
    if kind == "sf":  # a new successor-feature network per candidate (feature_expectation.py:254)
        _reinitialise(stack, nets.successor, _SF_INIT + iteration)
        return
    if kind != "q":
        return
    mu_pi, mu_expert = _feature_expectations(stack, nets, iteration)
    store["mu"][:, iteration] = mu_pi
    if iteration == 0:
        store["mu_expert"].copy_(mu_expert)
    solve = WEIGHT_METHODS[stack.config.irl_method]
    for k in range(len(stack.seeds)):
        w, margin = solve(
            store["mu_expert"][k].cpu().numpy(), store["mu"][k, : iteration + 1].cpu().numpy()
        )
        store["weights"][k] = torch.from_numpy(w)
        store["margin"][k] = margin
    if iteration > 0:  # a new Q-learner per iteration (dqn.py: a new graph per solve)
        for name, value in stack.policy.named_parameters():
            store[f"candidate{iteration}.{name}"].copy_(value)  # pi_i, for the final choice
        _reinitialise(stack, stack.policy, _Q_INIT + iteration)
    for name, value in stack.policy.named_parameters():
        store[f"target.{name}"].copy_(value)


@torch.no_grad()
def _choose_final_policy(stack: Stack, nets: _Networks) -> None:
    """After the last update: the policy becomes, per learner, the candidate ``pi_j`` with the
    largest weight in Abbeel & Ng's mixture, the convex combination of ``mu_0 .. mu_I``
    nearest to ``mu_E`` (``mma.py`` ``_choose_mixture_weight``, whose mixture the code returns
    as ``policy_best``; an sbil policy is one network, so the mixture's heaviest member)."""
    store, last = nets.store, stack.config.dsfn_iterations
    mu_pi, _ = _feature_expectations(stack, nets, last)
    store["mu"][:, last] = mu_pi
    for k in range(len(stack.seeds)):
        mixture = nearest_mixture(store["mu_expert"][k].cpu().numpy(), store["mu"][k].cpu().numpy())
        chosen = int(np.argmax(mixture))
        store["chosen"][k] = chosen
        if chosen == last:
            continue
        for name, value in stack.policy.named_parameters():
            if chosen == 0:  # TRIL's policy channel: its hidden layers and its first A outputs
                source = store[f"tril.{name}"][k][..., : value.shape[-1]]
            else:
                source = store[f"candidate{chosen}.{name}"][k]
            value[k].copy_(source)


def _reinitialise(stack: Stack, net: StackedMLP, stream: int) -> None:
    """Fresh weights for ``net`` from random stream ``stream`` of each learner's seed, and
    Adam's moments of it forgotten."""
    net.load_state_dict(_fresh(stack, stream, net.out_dim).state_dict())
    for parameter in net.parameters():
        stack.optimizer.state.pop(parameter, None)


# --- one update -----------------------------------------------------------------------------------


def _descend(stack: Stack, loss: torch.Tensor, parameters) -> None:
    """One Adam step on ``loss.sum()``, each learner's gradient of every tensor clipped to norm
    ``GRADIENT_CLIP`` (``tf.clip_by_norm``), per learner."""
    stack.optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    for parameter in parameters:
        grad = parameter.grad
        norm = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
        grad.mul_(GRADIENT_CLIP / torch.clamp(norm, min=GRADIENT_CLIP))
    stack.optimizer.step()


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One update of every learner of ``stack`` on its minibatch of transitions ``index``
    ``[K, B]``: a step of the phase that update ``stack.update`` belongs to (:func:`schedule`);
    returns the terms ``{name: [K]}`` and the policy's (``Q``'s) cross-entropy."""
    config = stack.config
    nets = _networks(stack)
    phases = schedule(config.n_updates, config.dsfn_iterations)
    current = _phase_at(phases, stack.update)
    if stack.update == phases[current][2]:  # first update of a phase: the work before it
        previous = -1 if stack.update == 0 else _phase_at(phases, stack.update - 1)
        for kind, iteration, _, _ in phases[previous + 1 : current + 1]:
            _enter(stack, nets, kind, iteration)
    kind, iteration, _, _ = phases[current]
    x, a, x_next, a_next, done = stack.transitions(index)
    k, n_actions, p = len(stack.seeds), stack.n_actions, _feature_dim(stack)
    nan = torch.full((k,), math.nan, device=stack.device)
    terms = dict.fromkeys(
        ("action_cross_entropy", "transition_error", "successor_td", "q_td", "feature_margin"),
        nan,
    )
    if kind == "tril":
        out = nets.tril(x)
        loss, terms["action_cross_entropy"], terms["transition_error"] = tril_loss(
            out[..., :n_actions],
            out[..., n_actions:].unflatten(-1, (n_actions, stack.obs_dim)),
            a,
            x_next,
            done,
            transition_weight=config.transition_weight,
        )
        _descend(stack, loss, nets.tril.parameters())
    elif kind == "sf":
        with torch.no_grad():
            phi_s, phi_next = _state_features(nets, torch.cat([x, x_next], 1)).split(stack.batch, 1)
            features = _pair_features(phi_s, a, n_actions)
            a_policy = _candidate_actions(stack, nets, iteration, x_next)
        psi = nets.successor(torch.cat([x, x_next], 1)).unflatten(-1, (2, n_actions, p))
        psi_data, psi_next = psi[:, : stack.batch], psi[:, stack.batch :].detach()
        loss = successor_feature_loss(
            _pick(psi_data[..., 1, :, :], a),
            features,
            _pick(psi_next[..., 1, :, :], a_policy),
            done,
            discount=config.discount,
        )
        if iteration == 0:  # the expert's own successor features, for mu_E
            loss = loss + successor_feature_loss(
                _pick(psi_data[..., 0, :, :], a),
                features,
                _pick(psi_next[..., 0, :, :], a_next),
                done,
                discount=config.discount,
            )
        del phi_next
        terms["successor_td"] = loss.detach()
        _descend(stack, loss, nets.successor.parameters())
    else:
        with torch.no_grad():
            phi_s = _state_features(nets, x)
            rewards = (
                (_pair_features(phi_s, a, n_actions).double() * nets.store["weights"][:, None, :])
                .sum(-1)
                .float()
            )
            q_next_target = _mlp(_weights_of(nets.store, "target."), x_next)
        q_data, q_next = stack.policy_on(x, x_next)
        loss = q_learning_loss(
            q_data.gather(-1, a.unsqueeze(-1)).squeeze(-1),
            rewards,
            q_next.detach(),
            q_next_target,
            done,
            discount=config.discount,
        )
        terms["q_td"] = loss.detach()
        terms["feature_margin"] = nets.store["margin"].float()
        _descend(stack, loss, stack.policy.parameters())
        with torch.no_grad():  # Polyak-averaged target network
            for name, value in stack.policy.named_parameters():
                nets.store[f"target.{name}"].lerp_(value, TARGET_RATE)
    with torch.no_grad():
        policy_ce = cross_entropy(stack.policy(x), a)
    if stack.update == config.n_updates - 1:
        _choose_final_policy(stack, nets)
    losses = DsfnLoss(loss=loss.detach(), **{n: v.detach() for n, v in terms.items()})
    return {**named_terms(losses), "cross_entropy": policy_ce}
