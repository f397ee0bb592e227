"""Structure of coarse-grained water trajectories (Figs 8-9): g(r), local Steinhardt order, densities, contacts.

A frame is an ASE ``Atoms`` with one bead per water molecule in a periodic cell;
lengths are in angstrom throughout. Every frame-based function accepts any 3D
periodic cell (orthorhombic or triclinic): each frame is handed to freud in its
standard orientation (first cell vector along x, second in the xy-plane, built
from the cell's lengths and angles) with the beads placed by their fractional
coordinates, so distances are those of the minimum-image convention of the
original cell.

Definitions
-----------
Pair correlation g(r). Count the ordered pairs (i, j), i != j, whose
minimum-image distance falls in the shell [r_k, r_k + dr) and divide by what an
ideal gas of the same density would put there::

    g(r_k) = <n_k> / (N * rho * V_k),    rho = N / V,    V_k = 4/3 pi ((r_k + dr)^3 - r_k^3),

where <n_k> is the ordered-pair count of a frame averaged over frames (twice
the count of unordered pairs). This is freud's ``normalization_mode='exact'``:
with rho = N / V rather than (N - 1) / V, the large-r limit of g is
(N - 1) / N, not 1 (0.992 for 128 beads). Profiles compared with each other
should therefore come from systems with the same N, as trajectory and reference
do here. freud computes in single precision, so g carries a relative rounding
error of about 1e-6.

Local Steinhardt order. For bead i with the N_b(i) neighbours j closer than
r_max (minimum image, i itself excluded)::

    q_lm(i) = 1/N_b(i) sum_j Y_lm(r_ij),     q_l(i) = sqrt(4 pi / (2l + 1) sum_m |q_lm(i)|^2).

The averaged variant of Lechner and Dellago (J. Chem. Phys. 129, 114707, 2008),
the paper's q̄4, first averages q_lm over the bead and its neighbours, so
that the second shell enters::

    q̄_lm(i) = 1/(N_b(i) + 1) (q_lm(i) + sum_j q_lm(j)),   q̄_l(i) from q̄_lm(i) as above.

A bead without neighbours has no q_l (nor q̄_l): it is NaN, so that
``np.isnan(q).sum()`` counts such beads.

Densities. A Gaussian kernel density estimate with a fixed absolute bandwidth
h (in the units of the values; 0.004 for the paper's q4)::

    p(x) = 1/(n h sqrt(2 pi)) sum_i exp(-(x - v_i)^2 / (2 h^2)),

which integrates to 1 over the real line. The distance between two such
profiles (or two g(r)) on a common grid is the integral of |p - q| by the
trapezoid rule.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

__all__ = ["pair_correlation", "steinhardt", "density", "l1_distance", "close_contacts", "min_distance"]

# elements of the (values x grid) block density() evaluates at once: 2**21 float64 = 16 MiB
_KDE_BLOCK = 2**21


# ----------------------------------------------------------------------------- validation


def _frames(frames) -> list:
    """The frames as a list of periodic 3D ``Atoms`` with one bead count, or a ValueError saying what is wrong."""
    from ase import Atoms

    if isinstance(frames, Atoms):
        frames = [frames]
    if not isinstance(frames, Iterable):
        raise TypeError(f"frames: expected a sequence of ase.Atoms, got {type(frames).__name__}")
    frames = list(frames)
    if not frames:
        raise ValueError("frames: expected at least one ase.Atoms frame, got an empty sequence")
    n_beads = None
    for k, atoms in enumerate(frames):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"frames[{k}]: expected an ase.Atoms, got {type(atoms).__name__}")
        if not np.all(atoms.pbc):
            raise ValueError(f"frames[{k}]: expected a frame periodic along all three cell vectors, "
                             f"got pbc={atoms.pbc.tolist()}")
        if atoms.cell.rank != 3 or not abs(atoms.cell.volume) > 0:
            raise ValueError(f"frames[{k}]: expected a 3D cell (three independent cell vectors), "
                             f"got cell={atoms.cell.array.tolist()}")
        if len(atoms) < 2:
            raise ValueError(f"frames[{k}]: expected at least 2 beads, got {len(atoms)}")
        if n_beads is None:
            n_beads = len(atoms)
        elif len(atoms) != n_beads:
            raise ValueError(f"frames: expected the same number of beads in every frame; frames[0] has {n_beads}, "
                             f"frames[{k}] has {len(atoms)}")
    return frames


def _widths(atoms) -> np.ndarray:
    """Distances (A) between opposite faces of the cell: 1 / |reciprocal vector| (without the 2 pi)."""
    return 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)


def _r_max(r_max, frames: list) -> float:
    if isinstance(r_max, bool) or not isinstance(r_max, numbers.Real) or not np.isfinite(r_max) or r_max <= 0:
        raise ValueError(f"r_max: expected a finite positive distance in A, got {r_max!r}")
    width, k = min((float(_widths(atoms).min()), k) for k, atoms in enumerate(frames))
    if r_max >= width / 2:
        raise ValueError(f"r_max: expected less than half the smallest cell width, {width / 2:.6g} A "
                         f"(frames[{k}] is {width:.6g} A wide; beyond half of it a pair's minimum image is not "
                         f"unique and freud refuses the query), got {r_max!r}")
    return float(r_max)


def _integer(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- freud systems


def _freud_system(atoms):
    """(freud.box.Box, points) of a periodic frame in freud's standard orientation, beads wrapped into the box."""
    import freud
    from ase.geometry import cellpar_to_cell

    # a along x, b in the xy-plane, right-handed: the upper-triangular box matrix freud wants (vectors as columns)
    standard = cellpar_to_cell(atoms.cell.cellpar())
    box = freud.box.Box.from_matrix(standard.T)
    fractional = np.mod(atoms.cell.scaled_positions(atoms.positions), 1.0)
    fractional[fractional >= 1.0] = 0.0  # np.mod(-1e-17, 1) == 1.0
    return box, box.make_absolute(fractional)


# ----------------------------------------------------------------------------- public functions


def pair_correlation(frames, bins: int = 200, r_max: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Pair correlation function g(r) of the beads, averaged over frames.

    Args:
        frames: ase.Atoms frames (or one frame), periodic in 3D, all with the same number of beads N.
        bins: number of equal-width bins over [0, r_max].
        r_max: largest distance (A); less than half the smallest cell width.

    Returns:
        (r, g): bin centres (A) and g at each, both of shape (bins,). Normalised as in freud's
        ``normalization_mode='exact'`` (module docstring): g = ordered-pair count / (N rho V_shell) with
        rho = N / V, so an ideal gas gives (N - 1) / N. When all frames have the same volume the histogram
        is accumulated over frames (``reset=False``); when volumes differ, each frame's g is normalised with its
        own volume and the profiles are averaged (freud's accumulation would use the last frame's volume for all).
    """
    import freud

    frames = _frames(frames)
    bins = _integer(bins, "bins", 1)
    r_max = _r_max(r_max, frames)
    volumes = np.array([abs(atoms.cell.volume) for atoms in frames])
    rdf = freud.density.RDF(bins=bins, r_max=r_max, r_min=0.0, normalization_mode="exact")
    if np.allclose(volumes, volumes[0], rtol=1e-10, atol=0.0):
        for atoms in frames:
            rdf.compute(_freud_system(atoms), reset=False)
        g = np.asarray(rdf.rdf, dtype=np.float64)
    else:
        g = np.zeros(bins)
        for atoms in frames:
            rdf.compute(_freud_system(atoms), reset=True)
            g += rdf.rdf
        g /= len(frames)
    return np.asarray(rdf.bin_centers, dtype=np.float64), g


def steinhardt(frames, l: int = 4, r_max: float = 3.6, average: bool = True) -> np.ndarray:
    """Local Steinhardt order q_l of every bead, or its Lechner-Dellago average q̄_l, in every frame.

    Args:
        frames: ase.Atoms frames (or one frame), periodic in 3D, all with the same number of beads.
        l: order of the spherical harmonics, >= 0 (4 for the paper's q̄4).
        r_max: neighbour cutoff (A): beads closer than r_max (minimum image, the bead itself excluded);
            less than half the smallest cell width.
        average: q̄_l, the q_lm averaged over the bead and its neighbours before the invariant is taken
            (freud's ``average=True``), rather than q_l.

    Returns:
        Dimensionless array of shape (n_frames, n_beads), in [0, 1]; NaN for a bead without neighbours
        (count them with ``np.isnan(q).sum()``). freud computes in single precision (relative error ~1e-6).
    """
    import freud

    frames = _frames(frames)
    l = _integer(l, "l", 0)
    r_max = _r_max(r_max, frames)
    compute = freud.order.Steinhardt(l, average=bool(average))
    query = {"mode": "ball", "r_max": r_max, "exclude_ii": True}
    out = np.empty((len(frames), len(frames[0])))
    for k, atoms in enumerate(frames):
        box, points = _freud_system(atoms)
        neighbours = freud.locality.AABBQuery(box, points).query(points, query).toNeighborList()
        compute.compute((box, points), neighbors=neighbours)
        out[k] = compute.particle_order
        out[k, neighbours.neighbor_counts == 0] = np.nan
    return out


def density(values, grid, bandwidth: float = 0.004) -> np.ndarray:
    """Gaussian kernel density estimate of the finite ``values`` at the points of ``grid``.

    Args:
        values: samples, any shape (flattened); NaN and infinite entries are dropped.
        grid: points where the density is evaluated, any shape; same units as the values.
        bandwidth: standard deviation h of each Gaussian kernel, in the units of the values (not relative to
            the spread of the data).

    Returns:
        The density (units: 1 / units of the values) with the shape of ``grid``:
        sum_i N(x; v_i, h^2) / n over the n finite values, which integrates to 1 over the real line.
        Evaluated in blocks of at most 2**21 (value, grid point) pairs (16 MiB of float64 each).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    grid = np.asarray(grid, dtype=np.float64)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real) or not (
            np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth: expected a finite positive kernel width, got {bandwidth!r}")
    if not np.all(np.isfinite(grid)):
        raise ValueError("grid: expected finite evaluation points, got NaN or infinite entries")
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("values: expected at least one finite value, got none")
    x = grid.ravel()
    out = np.zeros(x.size)
    step = max(1, _KDE_BLOCK // max(1, x.size))
    for start in range(0, values.size, step):
        block = np.subtract.outer(values[start:start + step], x)  # (step, n_grid)
        block /= bandwidth
        np.square(block, out=block)
        block *= -0.5
        np.exp(block, out=block)
        out += block.sum(axis=0)
        del block  # free it before the next block is allocated
    out /= values.size * bandwidth * np.sqrt(2.0 * np.pi)
    return out.reshape(grid.shape)


def l1_distance(x, p, q) -> float:
    """Integrated absolute difference ∫ |p(x) - q(x)| dx of two profiles on a common grid (trapezoid rule).

    Args:
        x: grid, one-dimensional, strictly increasing, at least 2 points (e.g. r in A, or q4).
        p, q: the two profiles at x (e.g. two g(r), or two densities of q4), same shape as x.

    Returns:
        The distance, in units of p times units of x (dimensionless for two probability densities, where it
        lies in [0, 2]; in A for two g(r)). The trapezoid rule is applied to |p - q| at the grid points.
    """
    x = np.asarray(x, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x: expected a one-dimensional grid of at least 2 points, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or not np.all(np.diff(x) > 0):
        raise ValueError("x: expected finite, strictly increasing grid points")
    for name, profile in (("p", p), ("q", q)):
        if profile.shape != x.shape:
            raise ValueError(f"{name}: expected the shape of x, {x.shape}, got {profile.shape}")
        if not np.all(np.isfinite(profile)):
            raise ValueError(f"{name}: expected finite values, got NaN or infinite entries")
    return float(np.trapezoid(np.abs(p - q), x))


def close_contacts(atoms, cutoff: float = 2.5) -> np.ndarray:
    """Pairs of beads closer than ``cutoff`` (A), by minimum-image distance.

    Args:
        atoms: one ase.Atoms frame; periodic along the directions where ``atoms.pbc`` is True.
        cutoff: distance in A; a pair counts when its distance is strictly below it.

    Returns:
        Integer array of shape (n_pairs, 2) of index pairs i < j, each pair once, sorted; (0, 2) if none.
        Found with ``ase.neighborlist.neighbor_list`` (every periodic image within the cutoff, deduplicated),
        so a pair is listed when its minimum-image distance is below the cutoff, whatever the cell size.
    """
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms: expected an ase.Atoms, got {type(atoms).__name__}")
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real) or not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff: expected a finite positive distance in A, got {cutoff!r}")
    i, j, _ = neighbor_list("ijd", atoms, float(cutoff))
    keep = i < j
    pairs = np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    if pairs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0)


def min_distance(atoms) -> float:
    """Smallest minimum-image distance (A) between two distinct beads of one ase.Atoms frame.

    Periodic images of a bead itself are not pairs. Uses ``atoms.get_all_distances(mic=True)``
    (N^2 memory: fine for the 128 beads of a frame).
    """
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms: expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) < 2:
        raise ValueError(f"atoms: expected at least 2 beads, got {len(atoms)}")
    distances = atoms.get_all_distances(mic=True)
    return float(distances[np.triu_indices(len(atoms), k=1)].min())
