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

Importing this package never imports torch or gymnasium.
"""
