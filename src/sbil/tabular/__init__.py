"""Exact analysis of BC and EDM on finite MDPs (numpy/scipy, float64, pure functions).

Modules:
    mdp: ``TabularMDP`` (transitions ``P[s, a, s']``, start ``rho0[s]``, horizon or discount)
        and constructors (random, self-loop, two-state, Gymnasium toy-text).
    visitation: exact state and state-action visitation of a policy.
    policies: linear-logit policy classes and EDM's state model ``log p_theta(s)``.
    objectives: BC and EDM objectives with analytic gradients and Hessians.
    estimators: batched Newton fits of BC and EDM to data or to exact visitation.
    demos: sampled demonstrations and empirical visitation.
    oracle: occupancy matching with known dynamics (minimise KL(d_E || d_pi_theta)).
    learners: population objectives and optima of ValueDICE, offline IQ-Learn and AVRIL.
    critique: the note's constructions (Theorem 1's MDP, Example 3's closed form, the
        gradient of log p_theta(s), the class with one parameter per state).
    checks: the validation every module shares (arrays, counts, seeds, policies,
        visitations, the energy convention).
    numeric: stable log-softmax / log-sum-exp kernels and total variation.

Importing this package never imports torch or gymnasium, and threadpoolctl only if installed
(to keep batched Newton fits on one BLAS thread). Everything random takes an explicit
``seed`` (an int or a ``np.random.Generator``; None is refused), and bad input raises a
ValueError that names the offending index and says how to fix it.

Example (Theorem 1 of the note: with shared parameters EDM misses the expert, BC does not)::

    import numpy as np
    from sbil.tabular.estimators import fit_bc, fit_edm
    from sbil.tabular.mdp import two_state_mdp
    from sbil.tabular.policies import example3_features, policy_probs
    from sbil.tabular.visitation import state_action_visitation

    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 0, 1] = p[0, 1, 1] = p[1, 1, 0] = 1.0  # action 0 stays, 1 switches
    features = example3_features(0.5)
    d_e = state_action_visitation(two_state_mdp(transitions=p), policy_probs(features, [1.0]))
    fit_bc(features, d_e).theta   # array([1.])
    fit_edm(features, d_e).theta  # not 1: EDM is inconsistent here
"""
