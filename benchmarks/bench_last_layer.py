"""Benchmark of rigidity.last_layer on MACE: features, and energy + force rows, batched against a per-feature loop.

A MACE model with the paper's Si settings (2 interactions, 128x0e+128x1o, max_ell 3,
correlation 3, r_max 5.5 A, readout MLP 16x0e: 128 + 16 = 144 last-layer features;
random weights, float64) on 10-atom Si clusters, and the same architecture on a
128-bead box (one species, water density, 15.6 A cell). It prints structures per
second for

- features alone (``features``, batches of ``--batch`` structures);
- energy + force rows, per-feature loop: one structure at a time, one backward pass per
  feature (``force_rows(batch_size=1, mode="reverse")``, the usual loop): the baseline;
- energy + force rows, batched, reverse mode: one backward pass per feature serves the
  whole batch;
- forward mode: one double-vjp pass per atom coordinate of the largest structure, shared
  by the batch; "auto": the cheaper of the two by their pass counts (what the library does);

and the process's peak resident memory. Times are CPU times of this machine, with the
threads torch is given (``OMP_NUM_THREADS``); look at the load (``uptime``) first.

Run: ``python benchmarks/bench_last_layer.py [--clusters 8] [--boxes 1] [--batch 16]`` (about 10 minutes)
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def paper_si_mace(species, r_max=5.5, seed=0):
    import mace  # noqa: F401
    import torch
    from e3nn import o3
    from mace import modules
    from mace.modules import gate_dict, interaction_classes

    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float64)
    return modules.ScaleShiftMACE(
        r_max=r_max, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        interaction_cls=interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(species), hidden_irreps=o3.Irreps("128x0e+128x1o"),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(species)), avg_num_neighbors=8.0,
        atomic_numbers=list(species), correlation=3, gate=gate_dict["silu"],
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )


def si_clusters(n, rng, atoms=10):
    """Clusters grown atom by atom, bonds 2.2-2.6 A, no two atoms closer than 2.2 A."""
    from ase import Atoms

    out = []
    for _ in range(n):
        pos = [np.zeros(3)]
        while len(pos) < atoms:
            v = rng.normal(size=3)
            trial = pos[rng.integers(len(pos))] + rng.uniform(2.2, 2.6) * v / np.linalg.norm(v)
            if np.min(np.linalg.norm(np.array(pos) - trial, axis=1)) >= 2.2:
                pos.append(trial)
        out.append(Atoms(f"Si{atoms}", positions=np.array(pos)))
    return out


def bead_boxes(n, rng, beads=128, edge=15.64):
    """Random boxes of beads (Z = 8) at water's molecular density, no two closer than 2.4 A."""
    from ase import Atoms

    out = []
    for _ in range(n):
        pos = []
        while len(pos) < beads:
            trial = rng.uniform(0, edge, size=3)
            if pos:
                d = np.array(pos) - trial
                d -= edge * np.round(d / edge)
                if np.min(np.linalg.norm(d, axis=1)) < 2.4:
                    continue
            pos.append(trial)
        out.append(Atoms(numbers=[8] * beads, positions=np.array(pos), cell=[edge] * 3, pbc=True))
    return out


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def run(name, ll, frames, batch, modes):
    n = len(frames)
    print(f"{name}: {n} structures of {len(frames[0])} atoms, d = {ll.n_features}, batch {batch}")
    t_feat, _ = timed(ll.features, frames, batch_size=batch)
    print(f"  features alone:                                   {n / t_feat:9.3f} structures/s")
    t_loop, (rows_l, _) = timed(ll.force_rows, frames, batch_size=1, mode="reverse")
    print(f"  energy + force rows, per-feature loop, one structure at a time:"
          f" {n / t_loop:9.3f} structures/s  (the baseline)")
    scale = np.abs(rows_l).max()
    for mode in modes:
        t, (rows, _) = timed(ll.force_rows, frames, batch_size=batch, mode=mode)
        diff = np.abs(rows - rows_l).max() / scale
        print(f"  energy + force rows, batched, {mode:>7} mode:       {n / t:9.3f} structures/s"
              f"  {t_loop / t:5.1f}x the baseline  (max relative difference {diff:.1e})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--boxes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    import torch

    from rigidity.last_layer import MACELastLayer

    rng = np.random.default_rng(0)
    print(f"torch threads: {torch.get_num_threads()}; CPU times of this machine")
    run("Si clusters", MACELastLayer(paper_si_mace([14])), si_clusters(args.clusters, rng), args.batch,
        ("reverse", "forward", "auto"))
    if args.boxes:
        # 384 coordinates against 144 features: forward mode would take 384 passes, auto takes reverse
        run("128-bead boxes", MACELastLayer(paper_si_mace([8])), bead_boxes(args.boxes, rng), args.batch,
            ("auto",))
    print(f"peak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
