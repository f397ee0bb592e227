r"""Small representative structures around one atom of a large structure (paper Sec. IV.2, Fig. 5a).

LPR-guided active learning finds the least rigid local environment of a large
structure (e.g. a liquid-carbon cell of 14,000 atoms) and adds *small* structures
that contain that environment to the training set. Three constructions:

* :func:`carve_cluster`: the environment alone, as a non-periodic spherical cluster;
* :func:`periodic_embedding`: a tight cube around the environment, made periodic,
  with randomly displaced buffer atoms;
* :func:`high_symmetry_embedding`: the environment inserted into a diamond supercell
  that also keeps one intact diamond environment, plus the pure diamond supercell.

Both embeddings follow the paper's code (section_4b/embed_FG.py, embed_SC.py) by default:
the periodic cell has the fixed edge :math:`2 (r_c + b) + d_\mathrm{min} + 1.5\,\sigma`
(:func:`periodic_cell_edge`, ``cell="paper"``) and the diamond supercell loses every site
within :math:`r_c + b + d_\mathrm{min} + 1.5\,\sigma` of the insertion point
(:func:`hs_carve_radius`, ``carve_radius="paper"``), with :math:`b` the buffer width and
:math:`d_\mathrm{min}` the contact distance. ``cell="smallest"`` (the smallest
contact-free cell) and ``carve_radius="cutoff"`` (diamond sites kept up to :math:`r_c`)
are the project's earlier, tighter constructions. One departure from the paper's code
everywhere: its displaced buffer atoms may enter the target's cutoff sphere (changing
the target's features); here they never do.

Conventions shared by all of them:

* lengths in angstrom (A);
* the *target environment* of atom ``index`` with cutoff :math:`r_c` is every atom,
  periodic images included, whose vector :math:`\mathbf d` from the target satisfies
  :math:`|\mathbf d| < r_c` (strictly, as in :func:`ase.neighborlist.neighbor_list`);
* in every returned structure the target atom is atom 0, and its environment is kept
  *exactly*: the same species at the same vectors :math:`\mathbf d` (to rounding,
  ~1e-14 A), and no other atom or periodic image within :math:`r_c` of it;
  atoms placed by the construction (buffer or crystal atoms) are kept at least
  :math:`r_c + 10^{-6}` A away from the target, so that rounding cannot carry them inside;
* ``atoms.arrays["original_index"]`` gives each atom's index in the source structure
  (-1 for atoms of the diamond crystal) and ``atoms.arrays["buffer"]`` marks the randomly
  displaced atoms; ``atoms.info`` records the construction and its parameters;
* randomness only in the buffer displacements: ``rng`` is anything
  :func:`numpy.random.default_rng` accepts (None draws fresh entropy, so every call
  differs; a seed or Generator makes the result reproducible).

ASE is imported only when these functions are called; the rest of :mod:`rigidity`
does not need it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy.spatial import cKDTree

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

__all__ = ["carve_cluster", "periodic_embedding", "high_symmetry_embedding", "environment", "Environment",
           "periodic_cell_edge", "hs_carve_radius"]

#: A. Atoms placed by a construction stay at least cutoff + _TOL from a kept centre, so that
#: rounding (~1e-14 A) cannot move them across the cutoff sphere.
_TOL = 1e-6
#: rounds of redrawing the displacements of buffer atoms that break a constraint
_MAX_REDRAWS = 1000
#: diamond supercells tried beyond the smallest one that can hold the target environment
_MAX_SUPERCELL_GROWTH = 20


class Environment(NamedTuple):
    """Neighbours of one atom within a cutoff, sorted by distance (ties keep input order)."""

    distances: np.ndarray  #: (n,) A
    vectors: np.ndarray  #: (n, 3) A, neighbour position minus centre position (images included)
    numbers: np.ndarray  #: (n,) atomic numbers
    indices: np.ndarray  #: (n,) atom indices (an image has the index of its atom)


# ----------------------------------------------------------------------------- checks


def _check_index(atoms: Atoms, index: Any) -> int:
    n = len(atoms)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"index must be an integer atom index, got {index!r}")
    if not -n <= index < n:
        raise ValueError(f"index {int(index)} is out of range for a structure of {n} atoms: "
                         f"expected -{n} <= index < {n}")
    return int(index) % n


def _positive(value: Any, name: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {expected} (A), got {value!r}")
    return v


def _check_cell(atoms: Atoms) -> None:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        if not volume > 1e-9:
            raise ValueError(
                f"atoms are periodic (pbc={pbc.tolist()}) but their cell {atoms.cell.array.tolist()} has volume "
                f"{volume:g} A^3: expected a cell of positive volume (give non-periodic directions a non-zero "
                "cell vector too), or pbc=False"
            )


def _atomic_number(element: Any) -> tuple[int, str]:
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(element, (int, np.integer)) and not isinstance(element, bool):
        if 1 <= element < len(chemical_symbols):
            return int(element), chemical_symbols[int(element)]
    elif isinstance(element, str) and element in atomic_numbers and element != "X":
        return atomic_numbers[element], element
    raise ValueError(f"element {element!r} is not a chemical symbol or atomic number")


def _check_fixed_contacts(positions: np.ndarray, ids: np.ndarray, min_distance: float, what: str) -> None:
    """Fail if two atoms that the construction must keep in place are closer than min_distance."""
    pairs = cKDTree(positions).query_pairs(min_distance, output_type="ndarray")
    if len(pairs):
        a, b = pairs[0]
        d = float(np.linalg.norm(positions[a] - positions[b]))
        raise ValueError(
            f"cannot reach min_distance={min_distance!r} A: atoms {int(ids[a])} and {int(ids[b])} of {what} are "
            f"{d:.4f} A apart, and these atoms are kept fixed; lower min_distance below {d:.4f} A"
        )


# ----------------------------------------------------------------------------- geometry


def _neighbours(atoms: Atoms, index: int, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices, vectors (n, 3) and distances of every atom or periodic image with |d| < radius.

    Only the target is searched (O(N) per periodic image shift, not a full neighbour list),
    which keeps a 14,000-atom cell cheap. Sorted by distance, stable.
    """
    pos = atoms.positions
    rel = pos - pos[index]
    pbc = np.asarray(atoms.pbc, dtype=bool)
    shifts = np.zeros((1, 3))
    cell = np.zeros((3, 3))
    if pbc.any():
        cell = atoms.cell.array
        frac = np.linalg.solve(cell.T, rel.T).T
        rel = rel - np.where(pbc, np.round(frac), 0.0) @ cell  # fractional coordinates in [-1/2, 1/2]
        spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # distances between lattice planes
        n_max = np.where(pbc, np.ceil(radius / spacing + 0.5), 0).astype(int)
        shifts = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in n_max], indexing="ij"), axis=-1).reshape(-1, 3)
    js, vecs = [], []
    for s in shifts:
        v = rel + s @ cell
        keep = np.einsum("ij,ij->i", v, v) < radius * radius
        if not s.any():
            keep[index] = False
        js.append(np.flatnonzero(keep))
        vecs.append(v[keep])
    j = np.concatenate(js)
    vec = np.concatenate(vecs).reshape(-1, 3)
    dist = np.linalg.norm(vec, axis=1)
    order = np.argsort(dist, kind="stable")
    return j[order], vec[order], dist[order]


def _wrap(x: np.ndarray, edge: float) -> np.ndarray:
    """Coordinates folded into [0, edge) of a cubic cell (exact for coordinates already inside)."""
    y = np.mod(x, edge)
    return np.where(y >= edge, 0.0, y)


def _mic(v: np.ndarray, edge: float) -> np.ndarray:
    """Minimum-image vectors in a cubic cell of the given edge."""
    return v - edge * np.round(v / edge)


def _contacts(positions: np.ndarray, min_distance: float, edge: float | None) -> np.ndarray:
    """(p, 2) pairs closer than min_distance; minimum image in a cubic cell when edge is given."""
    if edge is None:
        return cKDTree(positions).query_pairs(min_distance, output_type="ndarray")
    return cKDTree(_wrap(positions, edge), boxsize=edge).query_pairs(min_distance, output_type="ndarray")


def _displace_buffer(
    base: np.ndarray,
    n_fixed: int,
    sigma: float,
    rng: np.random.Generator,
    min_distance: float,
    keep_out: list[np.ndarray],
    radius: float,
    edge: float | None,
) -> np.ndarray:
    """Gaussian displacements (n, 3) of atoms n_fixed: (0 for the fixed ones), redrawn until valid.

    Every coordinate of every buffer atom is drawn from N(0, sigma^2). A buffer atom's
    displacement is redrawn while the atom lies within ``radius + _TOL`` of a kept centre
    (``keep_out``) or closer than ``min_distance`` to any other atom (both atoms of a
    buffer-buffer contact are redrawn). Distances are direct (``edge`` None) or minimum
    image in a cubic cell of that edge.
    """
    disp = np.zeros_like(base)
    todo = np.arange(n_fixed, len(base))
    for _ in range(_MAX_REDRAWS):
        if todo.size == 0:
            return disp
        disp[todo] = rng.normal(0.0, sigma, size=(todo.size, 3))
        pos = base + disp
        bad = np.zeros(len(base), dtype=bool)
        for centre in keep_out:
            v = pos[n_fixed:] - centre
            if edge is not None:
                v = _mic(v, edge)
            bad[n_fixed:] |= np.einsum("ij,ij->i", v, v) < (radius + _TOL) ** 2
        pairs = _contacts(pos, min_distance, edge)
        bad[pairs.ravel()] = True
        bad[:n_fixed] = False
        todo = np.flatnonzero(bad)
    if todo.size == 0:
        return disp
    raise ValueError(
        f"could not place {todo.size} buffer atoms (e.g. atom {int(todo[0])}) within {_MAX_REDRAWS} redraws of "
        f"their N(0, {sigma}^2) displacements: each stays within {radius} A of a kept centre or closer than "
        f"min_distance={min_distance} A to another atom; lower min_distance or sigma"
    )


def _new_atoms(numbers: np.ndarray, positions: np.ndarray, edge: float | None) -> Atoms:
    from ase import Atoms

    if edge is None:
        return Atoms(numbers=numbers, positions=positions, pbc=False)
    return Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * edge, pbc=True)


# ----------------------------------------------------------------------------- public


def environment(atoms: Atoms, index: int, cutoff: float) -> Environment:
    r"""Neighbours of atom ``index`` within ``cutoff`` (A), periodic images included.

    A neighbour is any atom or periodic image (along the periodic directions of
    ``atoms.pbc``) whose vector :math:`\mathbf d = \mathbf r_j + \mathbf T - \mathbf r_i`
    from the centre has :math:`|\mathbf d| <` ``cutoff``; the centre itself is excluded,
    its own images are not.

    Returns
    -------
    Environment(distances (n,), vectors (n, 3), numbers (n,), indices (n,)), sorted by
    distance. Comparing ``environment(source, i, rc)`` with ``environment(embedded, 0, rc)``
    checks that an embedding kept the environment.
    """
    index = _check_index(atoms, index)
    cutoff = _positive(cutoff, "cutoff")
    _check_cell(atoms)
    j, vec, dist = _neighbours(atoms, index, cutoff)
    return Environment(dist, vec, atoms.numbers[j].copy(), j)


def carve_cluster(atoms: Atoms, index: int, cutoff: float) -> Atoms:
    r"""The target environment as a non-periodic cluster (paper Fig. 5a, "cluster carving").

    Parameters
    ----------
    atoms : source structure, periodic or not.
    index : target atom (negative indices count from the end).
    cutoff : radius of the environment, A; every atom or periodic image with
        :math:`|\mathbf d| <` cutoff from the target is taken.

    Returns
    -------
    Atoms with the target at the origin as atom 0, then its neighbours sorted by
    distance at positions :math:`\mathbf d` (so the cluster's vectors from atom 0 are the
    source's exactly); ``pbc`` False and no cell. Deterministic. ``info``: ``embedding``
    ("cluster"), ``centre_index`` (the target's index in ``atoms``), ``centre_atom`` (0,
    its index here), ``cutoff``. ``arrays["original_index"]``: source index of each atom
    (a periodic image keeps the index of its atom, so an index can repeat in small cells).
    """
    index = _check_index(atoms, index)
    cutoff = _positive(cutoff, "cutoff")
    _check_cell(atoms)
    j, vec, _ = _neighbours(atoms, index, cutoff)
    ids = np.concatenate([[index], j])
    cluster = _new_atoms(atoms.numbers[ids], np.vstack([np.zeros((1, 3)), vec]), None)
    cluster.info.update(embedding="cluster", centre_index=index, centre_atom=0, cutoff=cutoff)
    cluster.new_array("original_index", ids.astype(int))
    cluster.new_array("buffer", np.zeros(len(ids), dtype=bool))
    return cluster


def periodic_cell_edge(cutoff: float, buffer: float = 0.0, min_distance: float = 1.0, sigma: float = 0.2) -> float:
    r"""Edge of the paper's periodic-embedding cell, A (its code, section_4b/embed_FG.py).

    .. math:: L = 2 (r_c + b) + d_\mathrm{min} + 1.5\,\sigma

    the cube of half-width :math:`r_c + b` around the target plus a gap of the contact
    distance and 1.5 displacement widths between it and its periodic images: 8.8 A for the
    paper's :math:`r_c` = 3.75 A, :math:`b` = 0, :math:`d_\mathrm{min}` = 1 A, :math:`\sigma` = 0.2 A.
    """
    cutoff = _positive(cutoff, "cutoff")
    buffer = _positive(buffer, "buffer", allow_zero=True)
    min_distance = _positive(min_distance, "min_distance")
    sigma = _positive(sigma, "sigma", allow_zero=True)
    return 2.0 * (cutoff + buffer) + min_distance + 1.5 * sigma


def hs_carve_radius(cutoff: float, buffer: float = 0.0, min_distance: float = 1.0, sigma: float = 0.2) -> float:
    r"""Radius of the sphere the paper carves out of the diamond supercell, A (section_4b/embed_SC.py).

    .. math:: R = r_c + b + d_\mathrm{min} + 1.5\,\sigma

    the inserted sphere of radius :math:`r_c + b` plus the contact distance and 1.5
    displacement widths: 5.05 A for :math:`r_c` = 3.75 A, :math:`b` = 0, :math:`d_\mathrm{min}` = 1 A,
    :math:`\sigma` = 0.2 A.
    """
    cutoff = _positive(cutoff, "cutoff")
    buffer = _positive(buffer, "buffer", allow_zero=True)
    min_distance = _positive(min_distance, "min_distance")
    sigma = _positive(sigma, "sigma", allow_zero=True)
    return cutoff + buffer + min_distance + 1.5 * sigma


def periodic_embedding(
    atoms: Atoms,
    index: int,
    cutoff: float,
    sigma: float = 0.2,
    min_distance: float = 1.0,
    rng: Any = None,
    step: float = 0.1,
    *,
    buffer: float = 0.0,
    cell: str = "paper",
    max_enlargement: float = 5.0,
) -> Atoms:
    r"""A small periodic cell around the target environment (paper Fig. 5a, "periodic embedding").

    Construction, with :math:`h = r_c + ` ``buffer`` and vectors :math:`\mathbf d` from the target:

    1. *Cube*: every atom or periodic image with :math:`-h \le d_k < h` for k = x, y, z (a
       cube of edge :math:`L_0 = 2h` centred on the target). Those with :math:`|\mathbf d| < r_c`
       form the target environment and are kept exactly; the others are *buffer atoms*.
    2. *Cell*, by the rule ``cell``:

       * ``"paper"`` (default; the paper's code): a cubic cell of fixed edge
         :math:`L = 2h + ` ``min_distance`` :math:`+ 1.5\,` ``sigma`` (:func:`periodic_cell_edge`;
         8.8 A at :math:`r_c` = 3.75 A, buffer 0, ``min_distance`` 1 A, ``sigma`` 0.2 A);
       * ``"smallest"``: the smallest edge :math:`L = L_0 + k\,` ``step``, :math:`k = 0, 1, \dots`,
         at which the displaced atoms (step 3, drawn once in the open cube) have no two atoms
         closer than ``min_distance`` (minimum image, an atom and its own images included) and no
         periodic image of a buffer atom within :math:`r_c + 10^{-6}` A of the target.

    3. *Displacement*: each coordinate of each buffer atom is moved by an independent
       N(0, ``sigma``:sup:`2`) draw. A buffer atom's draw is rejected and redrawn while the atom
       (any periodic image of it, for ``"paper"``) would lie within :math:`r_c + 10^{-6}` A of the
       target, or closer than ``min_distance`` to any other atom (minimum image in the cell for
       ``"paper"``, direct distances in the open cube for ``"smallest"``; both atoms of a
       buffer-buffer contact are redrawn). The result is a Gaussian conditioned on those
       constraints, so the spread is slightly below ``sigma`` where the constraints bite.

    The atoms are not rescaled: the target sits at the cell centre :math:`(L/2, L/2, L/2)`,
    every atom at :math:`L/2 + \mathbf d` (+ displacement); buffer atoms that left the cell are
    wrapped back into it.

    Kept exactly: the target environment (species and vectors from the target; no other atom
    or image within :math:`r_c` of it, since :math:`L \ge 2 r_c`). The paper's code lets
    displaced buffer atoms enter the target's cutoff sphere, which changes the target's
    features; here they are kept out, so the target's environment is exactly the source's.
    Random: the buffer displacements (and for ``"smallest"`` also :math:`L`).

    Parameters
    ----------
    atoms : source structure, periodic or not (a periodic one needs a cell of positive volume).
    index : target atom.
    cutoff : radius :math:`r_c` of the kept environment, A (paper: 3.75 for a 3.7 A model).
    sigma : standard deviation of each buffer-atom coordinate displacement, A (paper: 0.2).
    min_distance : smallest allowed interatomic distance in the result, A (paper: 1, the
        "contact distance").
    rng : seed or :class:`numpy.random.Generator` of the displacements (None: fresh entropy).
    step : enlargement of the cell edge per try, A (``cell="smallest"`` only).
    buffer : extra half-width of the cube beyond ``cutoff``, A (0: the cube of edge :math:`2 r_c`).
    cell : ``"paper"`` or ``"smallest"``, the cell rule of step 2.
    max_enlargement : largest allowed :math:`L - L_0`, A, for ``cell="smallest"``; beyond it a
        ValueError is raised.

    Returns
    -------
    Atoms: cubic cell, ``pbc`` True, target as atom 0, then its environment sorted by
    distance, then the buffer atoms. ``info``: ``embedding`` ("periodic"), ``cell_rule``,
    ``centre_index``, ``centre_atom`` (0), ``cutoff``, ``sigma``, ``min_distance``, ``buffer``,
    ``step``, ``cube_edge`` (:math:`L_0`), ``cell_edge`` (:math:`L`), ``n_environment`` (target
    included), ``n_buffer``. ``arrays``: ``original_index``, ``buffer`` (True for displaced atoms).
    """
    index = _check_index(atoms, index)
    cutoff = _positive(cutoff, "cutoff")
    sigma = _positive(sigma, "sigma")
    min_distance = _positive(min_distance, "min_distance")
    step = _positive(step, "step")
    buffer = _positive(buffer, "buffer", allow_zero=True)
    max_enlargement = _positive(max_enlargement, "max_enlargement", allow_zero=True)
    if cell not in ("paper", "smallest"):
        raise ValueError(f"cell must be 'paper' (the paper's edge 2 (cutoff + buffer) + min_distance + 1.5 sigma) "
                         f"or 'smallest' (the smallest contact-free edge), got {cell!r}")
    _check_cell(atoms)
    rng = np.random.default_rng(rng)

    half = cutoff + buffer
    edge0 = 2.0 * half
    j, vec, dist = _neighbours(atoms, index, math.sqrt(3.0) * half + _TOL)
    in_cube = np.all((vec >= -half) & (vec < half), axis=1)
    j, vec, dist = j[in_cube], vec[in_cube], dist[in_cube]
    inside = dist < cutoff
    ids = np.concatenate([[index], j[inside], j[~inside]])
    base = np.vstack([np.zeros((1, 3)), vec[inside], vec[~inside]])
    n_fixed = 1 + int(inside.sum())
    _check_fixed_contacts(base[:n_fixed], ids[:n_fixed], min_distance, f"the target environment of atom {index}")

    if cell == "paper":
        edge = periodic_cell_edge(cutoff, buffer, min_distance, sigma)
        # the fixed atoms lie within r_c of the target and L - 2 r_c >= min_distance: no contact through images
        pos = base + _displace_buffer(base, n_fixed, sigma, rng, min_distance, [np.zeros(3)], cutoff, edge)
    else:
        pos = base + _displace_buffer(base, n_fixed, sigma, rng, min_distance, [np.zeros(3)], cutoff, None)
        n_steps = int(math.floor(max_enlargement / step + 1e-9))
        for k in range(n_steps + 1):
            edge = edge0 + k * step
            if edge < min_distance:
                continue
            v = _mic(pos[n_fixed:], edge)
            if np.any(np.einsum("ij,ij->i", v, v) < (cutoff + _TOL) ** 2):
                continue
            if len(_contacts(pos, min_distance, edge)) == 0:
                break
        else:
            raise ValueError(
                f"periodic embedding of atom {index}: no cell edge from {edge0:.3f} to {edge0 + n_steps * step:.3f} A "
                f"(max_enlargement={max_enlargement!r} A, step={step!r} A) keeps all atoms "
                f"min_distance={min_distance!r} A apart; raise max_enlargement, or use cell='paper'"
            )

    out = _new_atoms(atoms.numbers[ids], _wrap(pos + edge / 2.0, edge), edge)
    out.info.update(
        embedding="periodic",
        cell_rule=cell,
        centre_index=index,
        centre_atom=0,
        cutoff=cutoff,
        sigma=sigma,
        min_distance=min_distance,
        buffer=buffer,
        step=step,
        cube_edge=edge0,
        cell_edge=float(edge),
        n_environment=n_fixed,
        n_buffer=len(ids) - n_fixed,
    )
    out.new_array("original_index", ids.astype(int))
    out.new_array("buffer", np.arange(len(ids)) >= n_fixed)
    return out


def high_symmetry_embedding(
    atoms: Atoms,
    index: int,
    cutoff: float,
    lattice_constant: float = 3.567,
    element: Any = None,
    min_distance: float = 1.0,
    *,
    sigma: float = 0.2,
    rng: Any = None,
    buffer: float = 0.0,
    carve_radius: str | float = "paper",
) -> tuple[Atoms, Atoms]:
    r"""The target environment inserted into a diamond supercell (paper Fig. 5a, "HS embedding").

    Construction, for cubic diamond supercells of :math:`n \times n \times n` conventional
    cells (edge :math:`L = n a`), trying :math:`n = \lceil (2 r_c + b + 2 \cdot 10^{-6}) / a \rceil,
    \dots` with :math:`b` = ``buffer``:

    1. *Carving*: every diamond site whose minimum-image distance to the cell centre
       :math:`(L/2, L/2, L/2)` is below :math:`R` is removed, by the rule ``carve_radius``:

       * ``"paper"`` (default; the paper's code): :math:`R = r_c + b + ` ``min_distance``
         :math:`+ 1.5\,` ``sigma`` (:func:`hs_carve_radius`; 5.05 A at :math:`r_c` = 3.75 A,
         :math:`b` = 0, ``min_distance`` 1 A, ``sigma`` 0.2 A);
       * ``"cutoff"``: :math:`R = r_c + 10^{-6}` A, the fewest sites that keep the target
         environment; a number: that :math:`R` in A (at least :math:`r_c`).

       Sites closer than ``min_distance`` to an inserted atom (step 2) are removed too (none
       for ``"paper"``, whose sphere leaves a gap of ``min_distance`` + 1.5 ``sigma``).
    2. *Insertion*: the target and every atom or image with :math:`|\mathbf d| < r_c + b` are
       placed with the target at the cell centre, each at :math:`L/2 + \mathbf d`. Those within
       :math:`r_c` are the target environment, kept exactly; those beyond (only when
       :math:`b > 0`) are buffer atoms.
    3. *Size*: :math:`n` is the smallest for which (a) :math:`L \ge 2 r_c + b + 2 \cdot 10^{-6}`,
       so no periodic image of an inserted atom is within :math:`r_c` of the target, (b) no two
       atoms of the target environment are closer than ``min_distance`` through periodic images,
       and (c) some diamond atom has an intact diamond environment: no removed site and no
       inserted atom within :math:`r_c + 10^{-6}` A of it (the paper's "local environment from the
       high-symmetry structure"). Of those atoms the one farthest from the target is the
       *HS centre*; it and the diamond atoms within :math:`r_c + 10^{-6}` A of it are kept in place.
       (For the paper's 3.75 A, 1 A and 0.2 A in diamond carbon this gives its 3 x 3 x 3 supercell.)
    4. *Buffer*: every other atom is displaced by N(0, ``sigma``:sup:`2`) per coordinate,
       redrawn while it lies within :math:`r_c + 10^{-6}` A of the target or of the HS centre, or
       closer than ``min_distance`` to any atom (minimum image). ``sigma=0`` leaves the buffer
       undisplaced (deterministic). The paper's code does not keep displaced atoms out of the
       two cutoff spheres; here they are kept out, so both environments are exact.

    Kept exactly: the target environment (as in :func:`periodic_embedding`) and the HS
    centre's diamond environment. Contacts: no two atoms closer than ``min_distance``
    (minimum image), which needs ``min_distance`` below the diamond bond :math:`a\sqrt3/4`.

    Parameters
    ----------
    atoms, index, cutoff : source structure, target atom, environment radius :math:`r_c` (A).
    lattice_constant : cubic diamond lattice constant :math:`a`, A (default: diamond carbon;
        the paper's Materials Project cell mp-66 has 3.5607).
    element : symbol or atomic number of the crystal (default: the target atom's species).
    min_distance : smallest allowed interatomic distance, A (paper: 1, the "contact distance").
    sigma : buffer displacement per coordinate, A (paper: 0.2; 0 for none).
    rng : seed or Generator of the displacements (None: fresh entropy).
    buffer : radius beyond ``cutoff`` of the inserted sphere, A (its shell is displaced as buffer).
    carve_radius : ``"paper"``, ``"cutoff"`` or a radius in A: the carving rule of step 1.

    Returns
    -------
    (embedded, pure). ``embedded``: cubic cell of edge :math:`L`, ``pbc`` True; atom 0 the
    target, then its environment by distance, then the HS centre and its diamond environment
    by distance, then the buffer (inserted atoms beyond :math:`r_c` by distance, then diamond
    atoms by distance from the target). ``info``: ``embedding`` ("high_symmetry"), ``carve_rule``,
    ``carve_radius`` (:math:`R`, A), ``buffer``, ``centre_index``, ``centre_atom`` (0), ``cutoff``,
    ``lattice_constant``, ``element``, ``supercell`` (n), ``cell_edge``, ``sigma``, ``min_distance``,
    ``hs_centre`` (index of the HS centre here), ``n_environment``, ``n_hs_environment``,
    ``n_buffer``, ``n_removed`` (diamond sites removed). ``arrays``: ``original_index`` (-1 for
    diamond atoms), ``buffer``. ``pure``: the perfect diamond supercell of the same :math:`n`
    (``info["embedding"]`` = "high_symmetry_pure"), which the paper adds to the training set too.
    """
    from ase.build import bulk

    index = _check_index(atoms, index)
    cutoff = _positive(cutoff, "cutoff")
    a = _positive(lattice_constant, "lattice_constant")
    min_distance = _positive(min_distance, "min_distance")
    sigma = _positive(sigma, "sigma", allow_zero=True)
    buffer = _positive(buffer, "buffer", allow_zero=True)
    if isinstance(carve_radius, str):
        if carve_radius not in ("paper", "cutoff"):
            raise ValueError(f"carve_radius must be 'paper' (cutoff + buffer + min_distance + 1.5 sigma), 'cutoff' "
                             f"or a radius in A, got {carve_radius!r}")
        rule = carve_radius
        radius = (hs_carve_radius(cutoff, buffer, min_distance, sigma) if rule == "paper" else cutoff + _TOL)
    else:
        radius = _positive(carve_radius, "carve_radius")
        if radius < cutoff:
            raise ValueError(f"carve_radius={carve_radius!r} A is below cutoff={cutoff!r} A: diamond atoms would "
                             "stay inside the target environment")
        rule, radius = "radius", max(radius, cutoff + _TOL)
    number, symbol = _atomic_number(atoms.numbers[index] if element is None else element)
    _check_cell(atoms)
    bond = a * math.sqrt(3.0) / 4.0
    if min_distance >= bond:
        raise ValueError(
            f"min_distance={min_distance!r} A is not below the diamond bond length a*sqrt(3)/4 = {bond:.4f} A "
            f"of lattice_constant={lattice_constant!r} A: the crystal itself would break it"
        )
    rng = np.random.default_rng(rng)

    j, vec, dist = _neighbours(atoms, index, cutoff + buffer)
    env = dist < cutoff
    ids = np.concatenate([[index], j[env], j[~env]])
    inserted = np.vstack([np.zeros((1, 3)), vec[env], vec[~env]])
    n_env = 1 + int(env.sum())
    what = f"the target environment of atom {index}"
    _check_fixed_contacts(inserted[:n_env], ids[:n_env], min_distance, what)

    unit = bulk(symbol, "diamond", a=a, cubic=True)
    n0 = max(1, math.ceil((2.0 * cutoff + buffer + 2.0 * _TOL) / a))
    for n in range(n0, n0 + _MAX_SUPERCELL_GROWTH + 1):
        edge = n * a
        centre = np.full(3, edge / 2.0)
        ins = inserted + centre
        if len(_contacts(ins[:n_env], min_distance, edge)):
            continue
        sites = _wrap(unit.repeat(n).positions, edge)
        u = _mic(sites - centre, edge)
        removed = np.einsum("ij,ij->i", u, u) < radius**2
        d_ins, _ = cKDTree(_wrap(ins, edge), boxsize=edge).query(sites, k=1)
        removed |= d_ins < min_distance
        blockers = np.vstack([sites[removed], ins])
        d_block, _ = cKDTree(_wrap(blockers, edge), boxsize=edge).query(sites, k=1)
        intact = ~removed & (d_block >= cutoff + _TOL)
        if intact.any():
            break
    else:
        raise ValueError(
            f"no diamond supercell of up to {n0 + _MAX_SUPERCELL_GROWTH} cells per side holds the environment of "
            f"cutoff={cutoff!r} A, a carved sphere of {radius:.4g} A and an intact diamond environment with "
            f"min_distance={min_distance!r} A"
        )

    far = np.where(intact, np.linalg.norm(u, axis=1), -1.0)
    hs = int(np.argmax(far))  # farthest intact site; ties: lowest index
    w = _mic(sites - sites[hs], edge)
    near_hs = np.einsum("ij,ij->i", w, w) < (cutoff + _TOL) ** 2
    hs_env = np.flatnonzero(near_hs & ~removed)
    hs_env = hs_env[np.argsort(np.linalg.norm(w[hs_env], axis=1), kind="stable")]  # HS centre first
    rest = np.flatnonzero(~near_hs & ~removed)
    rest = rest[np.argsort(np.linalg.norm(u[rest], axis=1), kind="stable")]
    n_fixed = n_env + len(hs_env)
    base = np.vstack([ins[:n_env], sites[hs_env], ins[n_env:], sites[rest]])
    if sigma > 0:
        disp = _displace_buffer(base, n_fixed, sigma, rng, min_distance, [centre, sites[hs]], cutoff, edge)
        base = base + disp

    numbers = np.concatenate([atoms.numbers[ids[:n_env]], np.full(len(hs_env), number), atoms.numbers[ids[n_env:]],
                              np.full(len(rest), number)])
    out = _new_atoms(numbers, _wrap(base, edge), edge)
    out.info.update(
        embedding="high_symmetry",
        carve_rule=rule,
        carve_radius=float(radius),
        buffer=buffer,
        centre_index=index,
        centre_atom=0,
        cutoff=cutoff,
        lattice_constant=a,
        element=symbol,
        supercell=n,
        cell_edge=float(edge),
        sigma=sigma,
        min_distance=min_distance,
        hs_centre=n_env,
        n_environment=n_env,
        n_hs_environment=len(hs_env),
        n_buffer=len(out) - n_fixed,
        n_removed=int(removed.sum()),
    )
    original = np.concatenate([ids[:n_env], np.full(len(hs_env), -1), ids[n_env:], np.full(len(rest), -1)])
    out.new_array("original_index", original.astype(int))
    out.new_array("buffer", np.arange(len(out)) >= n_fixed)

    pure = unit.repeat(n)
    pure.info.update(embedding="high_symmetry_pure", lattice_constant=a, element=symbol, supercell=n,
                     cell_edge=float(edge))
    return out, pure
