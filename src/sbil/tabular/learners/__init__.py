"""Population objectives of ValueDICE, IQ-Learn and AVRIL on finite MDPs, and their optima.

"Population" means infinite expert data: every expectation over the data set is an exact sum
over the expert's visitation ``d[s, a]`` and the true transitions ``P[s, a, s']``, which is what
the sampled minibatch loss of the deep learners (:mod:`sbil.deep.losses`) converges to. The
question these functions answer is the critique's: is the learner's optimum the expert's
policy ``pi_E(a|s) = d(s, a) / d(s)`` when the expert is in the model class, as BC's is?

Index order everywhere: ``P[s, a, s']``, ``d[s, a]``, ``pi[s, a]`` (= ``pi(a|s)``), features
``Phi[s, a, k]``, parameters ``theta[k]``, critics ``nu[s, a]`` and ``Q[s, a]``. The learnt
model is linear in the features, ``f = Phi . theta``; one-hot features
(:func:`sbil.tabular.policies.tabular_features`) give the tabular class. All arrays float64.

Objectives (each one function next to its equation, returning its terms and gradients):

* :func:`valuedice_objective` -- ValueDICE (Kostrikov, Nachum & Tompson, ICLR 2020), offline
  (replay regularisation 0), discrete actions, the policy's actions summed exactly::

      J(pi, nu) = log E_{(s,a)~d, s'~P(.|s,a)} exp(nu(s,a) - gamma sum_b pi(b|s') nu(s',b))
                  - (1 - gamma) E_{s0~mu0} sum_b pi(b|s0) nu(s0,b).

  ``nu`` (tabular) minimises J, the policy maximises ``min_nu J``. ``next_state="sampled"`` is
  the form above (``s'`` inside the exponential's expectation: the limit of the sampled loss);
  ``"expected"`` is the paper's Bellman-operator form ``exp(nu - gamma P^pi nu)``, for which
  Donsker-Varadhan gives ``min_nu J = -KL(dtilde^pi || d)`` with ``dtilde^pi`` the policy's
  normalised discounted occupancy from ``mu0``. ``mu0`` is the MDP's start distribution (the
  paper's equation) or the expert's state distribution ``d(s)`` (the authors' code, which
  sets the initial states to the expert states; sbil's deep learner follows the code).
* :func:`iqlearn_objective` -- offline IQ-Learn (Garg et al., NeurIPS 2021) with the
  chi-squared regulariser, "value_expert" form, soft-Q temperature ``tau``, ``V_Q(s) = tau
  logsumexp_a Q(s, a) / tau`` and ``pi_Q = softmax(Q / tau)``::

      L(Q) = -E_{d,s'}[Q(s,a) - gamma V_Q(s')] + E_{d,s'}[V_Q(s) - gamma V_Q(s')]
             + 1/(4 alpha) E_{d,s'}[(Q(s,a) - gamma V_Q(s'))^2].

  The first two terms add up to ``tau E_d[-log pi_Q(a|s)]``, ``tau`` times BC's loss (they
  telescope in ``s'``), so IQ-Learn here is BC plus a chi-squared penalty on the implied
  reward ``Q(s, a) - gamma V_Q(s')``, and ``Q`` serves both;
  :func:`iqlearn_first_order_step` predicts, to first order in ``tau / (4 alpha)``, how far
  that penalty moves the optimum from BC's.
* :func:`avril_objective` -- AVRIL (Chan & van der Schaar, ICLR 2021) with a state-only
  Gaussian reward posterior ``q(R(s)) = N(mu_s, sigma_s^2)``, prior ``N(0, 1)``, weight
  ``lambda``, and policy ``softmax(Q)``::

      L(Q, mu, sigma) = E_d[-log softmax(Q(s, .))[a]]
          + E_{s~d}[KL(N(mu_s, sigma_s^2) || N(0, 1))]
          + lambda E_{(s,a)~d, s'~P, a'~pi_E(.|s')}[-log N(Q(s,a) - gamma Q(s',a'); mu_s,
                                                            sigma_s^2)].

Fits (:func:`fit_valuedice`, :func:`fit_iqlearn`, :func:`fit_avril`) return a
:class:`LearnerFit`: L-BFGS-B with the analytic gradient (ValueDICE: the inner minimisation
over ``nu`` is convex and solved by Newton's method to round-off at every policy, and the outer
gradient is Danskin's, ``d/dtheta min_nu J = dJ/dtheta`` at the minimising ``nu``), a Newton
polish with a finite-difference Hessian if L-BFGS-B stops short of ``tol``, and a closing
gradient check against central differences. The outer problems are not convex in general: a
fit is a stationary point reached from ``theta0`` (zeros, the uniform policy, by default).

RCAL (Piot, Geist & Pietquin, 2014) has no population solver here: its loss (a large-margin
hinge plus ``|Q(s, a) - gamma max_b Q(s', b)|``) is non-smooth and non-convex, and its policy
is greedy, so it cannot equal a stochastic expert at all (see
:func:`greedy_policy_tv_floor`).

Modules: :mod:`.common` (fit results and statuses, input checks, the minimiser and its
gradient check, RCAL's floor), and one per learner holding its objective, terms and fit:
:mod:`.valuedice`, :mod:`.iqlearn`, :mod:`.avril`. Import from here.
"""

from __future__ import annotations

from sbil.tabular.learners.avril import (
    AvrilTerms,
    avril_objective,
    avril_parameter_objective,
    fit_avril,
)
from sbil.tabular.learners.common import (
    COLLAPSED_STD,
    CONVERGED,
    INNER_FAILED,
    NO_FINITE_MINIMISER,
    NOT_CONVERGED,
    POLISH_STEPS,
    LearnerFit,
    NextState,
    Start,
    expert_policy,
    greedy_policy_tv_floor,
)
from sbil.tabular.learners.iqlearn import (
    IQLearnTerms,
    fit_iqlearn,
    iqlearn_first_order_step,
    iqlearn_objective,
    iqlearn_parameter_objective,
)
from sbil.tabular.learners.valuedice import (
    ValueDiceCritic,
    ValueDiceTerms,
    fit_valuedice,
    valuedice_min_nu,
    valuedice_objective,
    valuedice_policy_objective,
    valuedice_start,
)

__all__ = [
    "COLLAPSED_STD",
    "CONVERGED",
    "INNER_FAILED",
    "NOT_CONVERGED",
    "NO_FINITE_MINIMISER",
    "POLISH_STEPS",
    "AvrilTerms",
    "IQLearnTerms",
    "LearnerFit",
    "NextState",
    "Start",
    "ValueDiceCritic",
    "ValueDiceTerms",
    "avril_objective",
    "avril_parameter_objective",
    "expert_policy",
    "fit_avril",
    "fit_iqlearn",
    "fit_valuedice",
    "greedy_policy_tv_floor",
    "iqlearn_first_order_step",
    "iqlearn_objective",
    "iqlearn_parameter_objective",
    "valuedice_min_nu",
    "valuedice_objective",
    "valuedice_policy_objective",
    "valuedice_start",
]
