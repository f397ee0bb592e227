"""Speed, memory and accuracy of the rigidity core, printed as figures (never asserted).

LPR of N per-atom features of width d (default N = 1,000,000, d = 512, float64):
environments per second and GFLOP/s, against three baselines timed in the same run
(a plain GEMM of the same shapes, explicit inverse + einsum, one ``solve`` per
environment timed on a subset and extrapolated), the peak memory above the input,
and the accuracy on a cond ~1e12 Hessian against a 40-digit mpmath reference.
Greedy selection (pool 5000, 200 targets, d = 512, 10 picks) against re-inverting
H for every candidate (timed on a subset, extrapolated).

Run: ``python benchmarks/bench_rigidity.py`` (``--n 200000`` for a lighter run).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import psutil

from rigidity import Hessian, select_greedy


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def _best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_lpr(n: int, d: int, repeat: int, rng) -> dict:
    X = rng.standard_normal((4 * d, d))
    h = Hessian(d, regularizer=1e-3).add(X)
    h.pr(X[:1])  # factorise outside the timing: it is done once per Hessian
    F = rng.standard_normal((n, d))
    input_bytes = F.nbytes
    rss0, peak0 = _rss_bytes(), _peak_rss_bytes()
    out = {}
    t_lpr = _best_of(lambda: out.setdefault("lpr", h.lpr(F)), repeat)
    peak1 = _peak_rss_bytes()
    extra = max(peak1 - rss0, 0) if peak1 > peak0 else None

    M = rng.standard_normal((d, d))
    buf = np.empty((n, d))
    t_gemm = _best_of(lambda: np.matmul(F, M, out=buf), repeat)
    buf = None  # release the N x d output before the next baseline

    H = h.matrix
    Hinv = np.linalg.inv(H)
    t_inv = _best_of(lambda: np.einsum("ij,jk,ik->i", F, Hinv, F, optimize=True), 1)
    ref = 1.0 / np.einsum("ij,jk,ik->i", F[:2000], Hinv, F[:2000], optimize=True)
    agree = float(np.max(np.abs(out["lpr"][:2000] - ref) / ref))

    m = min(n, 300)
    t0 = time.perf_counter()
    for i in range(m):
        f = F[i]
        _ = 1.0 / (f @ np.linalg.solve(H, f))
    t_solve = (time.perf_counter() - t0) / m * n

    flops = 2.0 * n * d * d  # the bound: N d^2 multiply-adds
    return {
        "n": n,
        "d": d,
        "lpr_s": t_lpr,
        "environments_per_s": n / t_lpr,
        "gflops_vs_bound": flops / t_lpr / 1e9,
        "gemm_s": t_gemm,
        "gemm_gflops": flops / t_gemm / 1e9,
        "lpr_over_gemm": t_lpr / t_gemm,
        "inverse_einsum_s": t_inv,
        "inverse_einsum_over_lpr": t_inv / t_lpr,
        "per_env_solve_s_extrapolated": t_solve,
        "per_env_solve_over_lpr": t_solve / t_lpr,
        "input_GiB": input_bytes / 2**30,
        "peak_above_input_GiB": None if extra is None else extra / 2**30,
        "max_rel_diff_vs_inverse": agree,
    }


def bench_accuracy(rng, d: int = 64, n_vectors: int = 6) -> dict:
    import mpmath

    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * np.logspace(0, -12, d)) @ Q.T
    H = (H + H.T) / 2
    h = Hessian(d)
    h._acc = H.copy()  # this exact float64 matrix, as if accumulated
    Hinv = np.linalg.inv(H)
    mpmath.mp.dps = 40
    Hm = mpmath.matrix(H.tolist())
    rows = {"stiff": [], "random": []}
    for kind in rows:
        for _ in range(n_vectors):
            if kind == "stiff":  # along the 8 stiffest directions, as for well-sampled environments
                g = Q[:, :8] @ rng.standard_normal(8) + 1e-9 * Q[:, -1]
            else:
                g = rng.standard_normal(d)
            gm = mpmath.matrix(g.tolist())
            ref = float((gm.T * mpmath.lu_solve(Hm, gm))[0])
            ours = float(h.variance(g[None])[0])
            inv = float(g @ Hinv @ g)
            rows[kind].append((abs(ours - ref) / ref, abs(inv - ref) / ref))
    out = {"cond": float(np.linalg.cond(H))}
    for kind, errs in rows.items():
        e = np.array(errs)
        out[f"{kind}_max_rel_err_cholesky"] = float(e[:, 0].max())
        out[f"{kind}_max_rel_err_inverse"] = float(e[:, 1].max())
    return out


def bench_greedy(pool: int, n_targets: int, d: int, picks: int, rng) -> dict:
    X = rng.standard_normal((2 * d, d))
    h = Hessian(d, regularizer=1e-3).add(X)
    T = rng.standard_normal((n_targets, d)) + 0.5
    C = rng.standard_normal((pool, d))
    h.pr(T[:1])
    t0 = time.perf_counter()
    sel = select_greedy(h, T, C, picks)
    t_greedy = time.perf_counter() - t0

    # baseline: for every candidate, invert H + x x^T and evaluate the targets' mean PR
    H = h.matrix
    m = 40
    t0 = time.perf_counter()
    scores = []
    for i in range(m):
        Hinv = np.linalg.inv(H + np.outer(C[i], C[i]))
        scores.append(np.mean(1.0 / np.einsum("ij,jk,ik->i", T, Hinv, T, optimize=True)))
    t_naive = (time.perf_counter() - t0) / m * pool * picks
    first = h.pr_after_adding(T, C[:m]).mean(axis=1)
    return {
        "pool": pool,
        "targets": n_targets,
        "d": d,
        "picks": picks,
        "greedy_s": t_greedy,
        "reinversion_s_extrapolated": t_naive,
        "reinversion_over_greedy": t_naive / t_greedy,
        "max_rel_diff_first_pick_scores": float(np.max(np.abs(first - np.array(scores)) / np.array(scores))),
        "objective_after_picks": sel.objective.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="number of environments for the LPR")
    parser.add_argument("--d", type=int, default=512, help="feature width")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many timings")
    parser.add_argument("--pool", type=int, default=5000, help="greedy: candidates")
    parser.add_argument("--targets", type=int, default=200, help="greedy: targets")
    parser.add_argument("--picks", type=int, default=10, help="greedy: picks")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    lpr = bench_lpr(args.n, args.d, args.repeat, rng)
    acc = bench_accuracy(rng)
    greedy = bench_greedy(args.pool, args.targets, args.d, args.picks, rng)
    if args.json:
        print(json.dumps({"lpr": lpr, "accuracy": acc, "greedy": greedy}, indent=1))
        return
    print(f"LPR, N = {lpr['n']:,} environments, d = {lpr['d']}, float64")
    print(f"  time                          {lpr['lpr_s']:.2f} s")
    print(f"  environments per second       {lpr['environments_per_s']:,.0f}")
    print(f"  GFLOP/s (2 N d^2 bound)       {lpr['gflops_vs_bound']:.1f}")
    print(f"  plain GEMM, same shapes       {lpr['gemm_s']:.2f} s ({lpr['gemm_gflops']:.1f} GFLOP/s); "
          f"LPR / GEMM = {lpr['lpr_over_gemm']:.2f}")
    print(f"  inverse + einsum              {lpr['inverse_einsum_s']:.2f} s; "
          f"{lpr['inverse_einsum_over_lpr']:.2f}x the LPR time")
    print(f"  per-environment solve         {lpr['per_env_solve_s_extrapolated']:.0f} s (extrapolated); "
          f"{lpr['per_env_solve_over_lpr']:.0f}x the LPR time")
    peak = lpr["peak_above_input_GiB"]
    print(f"  input                         {lpr['input_GiB']:.2f} GiB; "
          f"peak above input {'not measurable' if peak is None else f'{peak:.3f} GiB'}")
    print(f"  max rel. diff. vs inverse     {lpr['max_rel_diff_vs_inverse']:.1e} (first 2000 environments)")
    print(f"Accuracy, cond(H) = {acc['cond']:.1e}, relative error against 40-digit mpmath")
    print(f"  stiff g:  Cholesky {acc['stiff_max_rel_err_cholesky']:.1e}   "
          f"explicit inverse {acc['stiff_max_rel_err_inverse']:.1e}")
    print(f"  random g: Cholesky {acc['random_max_rel_err_cholesky']:.1e}   "
          f"explicit inverse {acc['random_max_rel_err_inverse']:.1e}")
    print(f"Greedy selection, pool {greedy['pool']}, {greedy['targets']} targets, "
          f"d = {greedy['d']}, {greedy['picks']} picks")
    print(f"  time                          {greedy['greedy_s']:.2f} s")
    print(f"  re-inversion per candidate    {greedy['reinversion_s_extrapolated']:.0f} s (extrapolated); "
          f"{greedy['reinversion_over_greedy']:.0f}x the greedy time")
    print(f"  first-pick scores vs baseline max rel. diff. {greedy['max_rel_diff_first_pick_scores']:.1e}")


if __name__ == "__main__":
    main()
