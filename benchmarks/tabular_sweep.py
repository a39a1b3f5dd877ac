"""Benchmark: the tabular consistency sweep, sbil's batched Newton vs per-fit PyTorch L-BFGS.

The sweep: 1000 random MDPs (|S| = 20, |A| = 4), 5 shared linear features, a random expert
per MDP, 8 data sizes N from 10 to 10^6 (one iid data set per MDP and N, drawn from the
expert's exact visitation), BC and EDM fitted on every data set: 16 000 fits.

- sbil: the whole sweep end to end (problem generation, exact visitation, sampling, and the
  two batched Newton solves ``fit_bc`` / ``fit_edm``), timed as it runs.
- baseline: a straightforward implementation, one fit at a time with PyTorch autograd and
  ``torch.optim.LBFGS`` (strong-Wolfe line search, float64, one torch thread), on a random
  subset of the same data sets; its time per fit is extrapolated to the 16 000 fits. The
  baseline's estimates are compared with sbil's on the subset (both solve the same problems).
  Both are timed in interleaved repeats, so they see the same machine load.

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


def time_baseline(res: dict[str, object], idx: np.ndarray) -> dict[str, float]:
    """Per-fit PyTorch times on the subset ``idx`` and agreement with sbil's estimates."""
    out: dict[str, float] = {}
    for method in ("bc", "edm"):
        fit = res[method]
        conv = np.asarray(fit.converged, dtype=bool)[idx]
        thetas, times = [], []
        for i in idx:
            t0 = time.perf_counter()
            thetas.append(torch_fit(res["features"][i], res["d"][i], method))
            times.append(time.perf_counter() - t0)
        thetas, times = np.stack(thetas), np.array(times)
        out[method] = float(times.mean())
        # Fits without a finite minimiser run L-BFGS to its iteration limit; show both.
        out[method + "_converged"] = float(times[conv].mean()) if conv.any() else np.nan
        diff = np.abs(thetas[conv] - np.asarray(fit.theta)[idx][conv])
        out[method + "_diff"] = float(diff.max()) if conv.any() else np.nan
        out[method + "_n"] = int(conv.sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-mdps", type=int, default=1000, help="random MDPs in the sweep")
    parser.add_argument(
        "--baseline-fits", type=int, default=200, help="fits per method timed with PyTorch"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved repeats of both; medians reported"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch intra-op threads for the baseline"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    # Default one intra-op thread: the tensors are tiny, so extra threads only add overhead;
    # with torch's default (2 here) a fit took 5 to 85 ms depending on other load on the
    # machine. One thread is the baseline's best case, so the speed-up is conservative.
    torch.set_num_threads(args.torch_threads)
    # Warm-up (imports, first-call overheads), not timed.
    warm = sbil_sweep(4, args.seed + 1)
    torch_fit(warm["features"][0], warm["d"][0], "bc")
    rng = np.random.default_rng(args.seed)
    runs, base = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        res = sbil_sweep(args.n_mdps, args.seed)
        n_total = res["d"].shape[0]
        idx = rng.choice(n_total, size=min(args.baseline_fits, n_total), replace=False)
        runs.append(res)
        base.append(time_baseline(res, idx))
    med = {
        k: float(np.median([r[k] for r in runs]))
        for k in ("setup_s", "sample_s", "bc_s", "edm_s", "total_s")
    }
    bmed = {k: float(np.median([b[k] for b in base])) for k in base[0]}
    totals = [n_total * (b["bc"] + b["edm"]) for b in base]
    ratio_fits = [t / (r["bc_s"] + r["edm_s"]) for t, r in zip(totals, runs, strict=True)]
    ratio_e2e = [t / r["total_s"] for t, r in zip(totals, runs, strict=True)]
    res = runs[0]
    print(
        f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread(s)); "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    print(
        f"sweep: {args.n_mdps} MDPs x {len(DEFAULT_SIZES)} sizes x 2 methods = "
        f"{res['n_fits']} fits; baseline timed on {len(idx)} random fits per method and "
        f"repeat, extrapolated; medians of {args.repeats} interleaved repeats\n"
    )
    print("| stage | sbil (s) |")
    print("|---|---|")
    for key in ("setup_s", "sample_s", "bc_s", "edm_s", "total_s"):
        print(f"| {key[:-2]} | {med[key]:.2f} |")
    conv_bc = int(np.sum(res["bc"].converged))
    conv_edm = int(np.sum(res["edm"].converged))
    print(f"\nconverged: BC {conv_bc}/{n_total}, EDM {conv_edm}/{n_total}")
    print(
        f"PyTorch L-BFGS per fit: BC {1e3 * bmed['bc']:.1f} ms, EDM {1e3 * bmed['edm']:.1f} ms;"
        f" extrapolated sweep fits: {float(np.median(totals)):.1f} s"
    )
    print(
        "PyTorch L-BFGS per fit, only fits sbil found a finite minimiser for: "
        f"BC {1e3 * bmed['bc_converged']:.1f} ms, EDM {1e3 * bmed['edm_converged']:.1f} ms"
    )
    print(
        "max |theta_torch - theta_sbil| on converged fits: "
        f"BC {max(b['bc_diff'] for b in base):.2e}, EDM {max(b['edm_diff'] for b in base):.2e}"
    )
    print(
        f"speed-up, fits only: {np.median(ratio_fits):.0f}x "
        f"(repeats: {', '.join(f'{x:.0f}' for x in ratio_fits)}); end to end (sbil incl. "
        f"setup vs baseline fits only): {np.median(ratio_e2e):.0f}x "
        f"(repeats: {', '.join(f'{x:.0f}' for x in ratio_e2e)})"
    )


if __name__ == "__main__":
    main()
