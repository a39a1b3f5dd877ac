"""Benchmark exact visitation (and the batched fits) of sbil.tabular.

Each case runs in a fresh Python process so that its peak resident memory
(``resource.getrusage(...).ru_maxrss``, which includes the interpreter and numpy/scipy,
about 0.1 GiB) is its own. Timings are wall-clock ``time.perf_counter`` seconds.

Cases:
    sparse-build       random_mdp(10^6 states, 4 actions, 5 successors, sparse=True)
    sparse-discounted  discounted_visitation on that MDP, gamma = 0.99, random policy
                       (fixed-point iteration, rtol 1e-12; the residual is re-checked here)
    sbil-gmres         the same solve with sbil's restarted GMRES alone (the fallback for
                       slowly mixing chains), for comparison
    scipy-gmres        the same solve with scipy.sparse.linalg.gmres, for comparison
    dense-horizon      finite_horizon_visitation, dense |S| = 2000, |A| = 4, H = 100
    batched-fits       fit_bc and fit_edm on 8000 problems each (|S| = 20, |A| = 4, K = 5,
                       sampled data N in {10, ..., 10^5}), as in the consistency sweep

Usage:
    python benchmarks/tabular_visitation.py            # all cases
    python benchmarks/tabular_visitation.py --case dense-horizon
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = (
    "sparse-build",
    "sparse-discounted",
    "sbil-gmres",
    "scipy-gmres",
    "dense-horizon",
    "batched-fits",
)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _sparse_mdp():
    from sbil.tabular.mdp import random_mdp

    return random_mdp(10**6, 4, seed=0, successors=5, sparse=True, discount=0.99)


def _random_policy(n_states: int, n_actions: int):
    import numpy as np

    return np.random.default_rng(1).dirichlet(np.ones(n_actions), size=n_states)


def case_sparse_build() -> dict:
    start = time.perf_counter()
    mdp = _sparse_mdp()
    seconds = time.perf_counter() - start
    nnz = sum(p.nnz for p in mdp.transitions)
    return {"seconds": seconds, "detail": f"{nnz:,} nonzeros"}


def case_sparse_discounted() -> dict:
    import numpy as np

    from sbil.tabular.visitation import discounted_visitation, policy_transition_transposed

    mdp = _sparse_mdp()
    pi = _random_policy(mdp.n_states, mdp.n_actions)
    start = time.perf_counter()
    d = discounted_visitation(mdp, pi)
    seconds = time.perf_counter() - start
    p_t = policy_transition_transposed(mdp, pi)
    b = (1 - mdp.discount) * mdp.initial
    residual = np.linalg.norm(d - mdp.discount * (p_t @ d) - b) / np.linalg.norm(b)
    return {
        "seconds": seconds,
        "detail": f"relative residual {residual:.1e}, sum {d.sum():.15f}, min {d.min():.1e}",
    }


def case_sbil_gmres() -> dict:
    import numpy as np

    from sbil.tabular.visitation import gmres, policy_transition_transposed

    mdp = _sparse_mdp()
    pi = _random_policy(mdp.n_states, mdp.n_actions)
    gamma = mdp.discount
    start = time.perf_counter()
    p_t = policy_transition_transposed(mdp, pi)
    b = (1 - gamma) * mdp.initial
    d, residual = gmres(lambda x: x - gamma * (p_t @ x), b, x0=mdp.initial.copy(), rtol=1e-12)
    seconds = time.perf_counter() - start
    residual = np.linalg.norm(d - gamma * (p_t @ d) - b) / np.linalg.norm(b)
    return {"seconds": seconds, "detail": f"relative residual {residual:.1e}"}


def case_scipy_gmres() -> dict:
    import numpy as np
    import scipy.sparse.linalg as spla

    from sbil.tabular.visitation import policy_transition_transposed

    mdp = _sparse_mdp()
    pi = _random_policy(mdp.n_states, mdp.n_actions)
    gamma, n = mdp.discount, mdp.n_states
    start = time.perf_counter()
    p_t = policy_transition_transposed(mdp, pi)
    op = spla.LinearOperator((n, n), matvec=lambda x: x - gamma * (p_t @ x), dtype=np.float64)
    b = (1 - gamma) * mdp.initial
    d, info = spla.gmres(op, b, x0=mdp.initial.copy(), rtol=1e-12, atol=0.0, restart=40)
    seconds = time.perf_counter() - start
    residual = np.linalg.norm(op @ d - b) / np.linalg.norm(b)
    return {"seconds": seconds, "detail": f"relative residual {residual:.1e}, info {info}"}


def case_dense_horizon() -> dict:
    from sbil.tabular.mdp import random_mdp
    from sbil.tabular.visitation import state_action_visitation

    mdp = random_mdp(2000, 4, seed=0, horizon=100)
    pi = _random_policy(2000, 4)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        d = state_action_visitation(mdp, pi)
        times.append(time.perf_counter() - start)
    return {"seconds": sorted(times)[1], "detail": f"median of 3, sum {d.sum():.15f}"}


def case_batched_fits() -> dict:
    import numpy as np

    from sbil.tabular.demos import sample_visitation
    from sbil.tabular.estimators import fit_bc, fit_edm
    from sbil.tabular.mdp import random_mdp
    from sbil.tabular.policies import policy_probs, random_features
    from sbil.tabular.visitation import state_action_visitation

    n_mdps, sizes = 1000, (10, 30, 100, 300, 1000, 3000, 10_000, 100_000)
    rng = np.random.default_rng(0)
    features = np.stack([random_features(20, 4, 5, seed=rng) for _ in range(n_mdps)])
    theta = rng.normal(size=(n_mdps, 5))
    pi = policy_probs(features, theta)
    d_e = np.stack(
        [state_action_visitation(random_mdp(20, 4, seed=i), pi[i]) for i in range(n_mdps)]
    )
    d_hat = np.concatenate([sample_visitation(d_e, n, seed=j) for j, n in enumerate(sizes)])
    feats = np.concatenate([features] * len(sizes))
    start = time.perf_counter()
    bc = fit_bc(feats, d_hat, raise_on_failure=False)
    edm = fit_edm(feats, d_hat, raise_on_failure=False)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "detail": (
            f"{2 * feats.shape[0]:,} fits; converged BC {bc.converged.sum()}, "
            f"EDM {edm.converged.sum()}; flagged no finite minimiser: BC "
            f"{(bc.status == 'no finite minimiser').sum()}, EDM "
            f"{(edm.status == 'no finite minimiser').sum()}"
        ),
    }


def run_case(name: str) -> dict:
    result = globals()["case_" + name.replace("-", "_")]()
    result["case"] = name
    result["peak_gib"] = _peak_gib()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, help="run one case in this process")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    print("| case | seconds | peak memory (GiB) | detail |")
    print("|---|---|---|---|")
    for name in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['seconds']:.2f} | {r['peak_gib']:.2f} | {r['detail']} |", flush=True)


if __name__ == "__main__":
    main()
