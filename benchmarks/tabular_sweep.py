"""Benchmark: the tabular consistency sweep, sbil's batched Newton vs per-fit PyTorch L-BFGS.

The sweep: 1000 random MDPs (|S| = 20, |A| = 4), 5 shared linear features, a random expert
per MDP, 8 data sizes N from 10 to 10^6 (one iid data set per MDP and N, drawn from the
expert's exact visitation), BC and EDM fitted on every data set: 16 000 fits.

- sbil: the whole sweep end to end (problem generation, exact visitation, sampling, and the
  two batched Newton solves ``fit_bc`` / ``fit_edm``), timed as it runs.
- baseline: a straightforward implementation, one fit at a time with PyTorch autograd and
  ``torch.optim.LBFGS`` (strong-Wolfe line search, float64), on a random subset of the same
  data sets; its time per fit is extrapolated to the 16 000 fits. The baseline's estimates are
  compared with sbil's on the subset, to show both solve the same problems.

Run: ``python benchmarks/tabular_sweep.py`` (``--help`` for options). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time

import numpy as np

from sbil.experiments.consistency import DEFAULT_SIZES, ConsistencyConfig, random_problems
from sbil.tabular.demos import sample_visitation
from sbil.tabular.estimators import fit_bc, fit_edm


def sbil_sweep(n_mdps: int, seed: int) -> dict[str, object]:
    """Run the sweep with sbil; returns timings, data and estimates."""
    t0 = time.perf_counter()
    config = ConsistencyConfig(n_mdps=n_mdps, n_seeds=1, seed=seed, n_oracle=0, n_tabular=0)
    problems = random_problems(config)
    features = np.stack([p.features for p in problems])
    d_e = np.stack([p.d_expert for p in problems])
    t1 = time.perf_counter()
    d_hat = np.stack(
        [sample_visitation(d_e, n, seed=seed + j) for j, n in enumerate(DEFAULT_SIZES)]
    )
    flat_d = d_hat.reshape(-1, *d_e.shape[1:])  # [sizes * mdps, S, A]
    flat_f = np.broadcast_to(features, (len(DEFAULT_SIZES), *features.shape)).reshape(
        -1, *features.shape[1:]
    )
    t2 = time.perf_counter()
    bc = fit_bc(flat_f, flat_d, raise_on_failure=False)
    t3 = time.perf_counter()
    edm = fit_edm(flat_f, flat_d, raise_on_failure=False)
    t4 = time.perf_counter()
    return {
        "setup_s": t1 - t0,
        "sample_s": t2 - t1,
        "bc_s": t3 - t2,
        "edm_s": t4 - t3,
        "total_s": t4 - t0,
        "n_fits": 2 * flat_d.shape[0],
        "features": flat_f,
        "d": flat_d,
        "bc": bc,
        "edm": edm,
    }


def torch_fit(features: np.ndarray, d: np.ndarray, method: str) -> np.ndarray:
    """One fit with PyTorch autograd and L-BFGS (strong Wolfe), written the plain way."""
    import torch

    phi = torch.as_tensor(features, dtype=torch.float64)  # [S, A, K]
    w = torch.as_tensor(d, dtype=torch.float64)  # [S, A]
    theta = torch.zeros(phi.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=100,
        tolerance_grad=1e-10,  # sbil's Newton stops at gradient norm 1e-10
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = phi @ theta  # logits [S, A]
        loss = -(w * torch.log_softmax(f, dim=-1)).sum()  # BC: -E_d log pi(a|s)
        if method == "edm":  # EDM adds -E_d log p(s), p(s) ∝ exp(logsumexp_a f(s))
            log_p = torch.log_softmax(torch.logsumexp(f, dim=-1), dim=0)
            loss = loss - (w.sum(-1) * log_p).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-mdps", type=int, default=1000, help="random MDPs in the sweep")
    parser.add_argument(
        "--baseline-fits", type=int, default=200, help="fits per method timed with PyTorch"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    # Warm-up (imports, first-call overheads) on a tiny sweep, not timed.
    sbil_sweep(4, args.seed + 1)
    res = sbil_sweep(args.n_mdps, args.seed)
    rng = np.random.default_rng(args.seed)
    n_total = res["d"].shape[0]
    idx = rng.choice(n_total, size=min(args.baseline_fits, n_total), replace=False)
    torch_fit(res["features"][0], res["d"][0], "bc")  # warm-up
    per_fit = {}
    diffs = {}
    for method in ("bc", "edm"):
        fit = res[method]
        conv = np.asarray(fit.converged, dtype=bool)
        thetas, times = [], []
        for i in idx:
            t0 = time.perf_counter()
            thetas.append(torch_fit(res["features"][i], res["d"][i], method))
            times.append(time.perf_counter() - t0)
        thetas, times = np.stack(thetas), np.array(times)
        per_fit[method] = float(times.mean())
        ok = conv[idx]
        # Fits without a finite minimiser run L-BFGS to its iteration limit; show both.
        per_fit[method + "_converged"] = float(times[ok].mean()) if ok.any() else float("nan")
        diffs[method] = (
            float(np.max(np.abs(thetas[ok] - np.asarray(fit.theta)[idx][ok])))
            if ok.any()
            else float("nan")
        )
        diffs[method + "_n"] = int(ok.sum())
    baseline_total = n_total * (per_fit["bc"] + per_fit["edm"])
    fits_only = res["bc_s"] + res["edm_s"]
    print(
        f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; numpy {np.__version__}, torch {torch.__version__}"
    )
    print(
        f"sweep: {args.n_mdps} MDPs x {len(DEFAULT_SIZES)} sizes x 2 methods = "
        f"{res['n_fits']} fits; "
        f"baseline timed on {len(idx)} fits per method, extrapolated\n"
    )
    print("| stage | sbil (s) |")
    print("|---|---|")
    for key in ("setup_s", "sample_s", "bc_s", "edm_s", "total_s"):
        print(f"| {key[:-2]} | {res[key]:.2f} |")
    conv_bc = int(np.sum(res["bc"].converged))
    conv_edm = int(np.sum(res["edm"].converged))
    print(f"\nconverged: BC {conv_bc}/{n_total}, EDM {conv_edm}/{n_total}")
    print(
        f"PyTorch L-BFGS per fit: BC {1e3 * per_fit['bc']:.1f} ms, "
        f"EDM {1e3 * per_fit['edm']:.1f} ms; "
        f"extrapolated sweep fits: {baseline_total:.1f} s"
    )
    print(
        "PyTorch L-BFGS per fit, only fits sbil found a finite minimiser for: "
        f"BC {1e3 * per_fit['bc_converged']:.1f} ms, EDM {1e3 * per_fit['edm_converged']:.1f} ms"
    )
    print(
        f"max |theta_torch - theta_sbil| on converged subset: "
        f"BC {diffs['bc']:.2e} ({diffs['bc_n']} fits), "
        f"EDM {diffs['edm']:.2e} ({diffs['edm_n']} fits)"
    )
    print(
        f"speed-up, fits only: {baseline_total / fits_only:.0f}x; "
        "end to end (sbil total incl. setup vs baseline fits only): "
        f"{baseline_total / res['total_s']:.0f}x"
    )


if __name__ == "__main__":
    main()
