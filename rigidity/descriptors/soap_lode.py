r"""SOAP (short range) + LODE (long range) invariants for linear models, plain or range-separated.

A linear model on these features predicts a total energy as a sum of atomic terms,
:math:`E = \sum_i \mathbf w \cdot \mathbf x_i`, with the per-atom vector
:math:`\mathbf x_i` made of two blocks:

**SR** (short range): the SOAP power spectrum of the atom-centred density
:math:`\rho_i = \sum_{j:\, r_{ij} < r_c} f_c(r_{ij})\, g(\mathbf r - \mathbf r_{ij})`
(Gaussians of width ``atomic_gaussian_width``, a shifted-cosine smoothing of width
``cutoff_width`` below ``cutoff``; the centre atom included), expanded on GTO radial
functions and real spherical harmonics, :math:`c^{a}_{n l m}(i)` for neighbour species a:

.. math::

    p^{(z)}_{a b, l, n_1 n_2}(i) = \kappa_{ab} \frac{(-1)^l}{\sqrt{2l+1}}
        \sum_m c^{a}_{n_1 l m}(i)\, c^{b}_{n_2 l m}(i),
    \qquad a \le b,\ \kappa_{ab} = \sqrt2 \text{ if } a \ne b \text{ else } 1,

which is featomic's ``SoapPowerSpectrum`` convention (the test suite checks equality).

**LR** (long range): built on the LODE expansion :math:`V^{b}_{n l m}(i)` of the potential
of species b, :math:`V_i(\mathbf r) = \sum_j \phi(\mathbf r - \mathbf r_{ij})` with the smeared
power law :math:`\phi(r) \sim 1/r^p` (featomic ``SmearedPowerLaw``), computed in reciprocal
space with ``k_cutoff`` and projected on an orthonormalised monomial radial basis of radius
``lode_radius``. ``lr_block`` chooses the invariant:

- ``lode_lode`` (default, the paper's): the lambda = 0 power spectrum of the LODE expansion
  with itself, all ordered pairs of (species, radial index), as featomic's
  ``DensityCorrelations`` (one correlation, lambda = 0, sigma = 1) gives it (the test suite
  checks equality):

  .. math::

      q^{(z)}_{a b, l, n_1 n_2}(i) = \frac{(-1)^l}{\sqrt{2l+1}}
          \sum_m V^{a}_{n_1 l m}(i)\, V^{b}_{n_2 l m}(i);

- ``density_lode``: the SOAP density coefficients times the LODE ones, a mixed product
  (all ordered pairs (a, b)):

  .. math::

      q^{(z)}_{a b, l, n_1 n_2}(i) = \frac{(-1)^l}{\sqrt{2l+1}}
          \sum_m c^{a}_{n_1 l m}(i)\, V^{b}_{n_2 l m}(i).

  Its LR block is linear in V, so it vanishes wherever V does, but it also carries the
  SR density of every atom: it is not the paper's descriptor.

Two variants of V:

- ``non_orthogonal``: the reciprocal-space LODE of every atom in the periodic box,
  the centre and its SR neighbours included (they are counted in both blocks);
- ``range_separated``: that expansion minus the real-space expansion of the same
  density, on the same basis, of the atoms within ``cutoff`` of the centre (the centre
  included; featomic ``SphericalExpansion`` with a ``Step`` cutoff), before the invariants
  are formed. Only atoms beyond ``cutoff`` are left, so LR vanishes when nothing lies
  beyond the SR sphere.

Blocks per centre species are concatenated, zero where the atom has another species,
so one weight vector covers all species: with species (H, O), 4 radial functions and
l <= 3 this gives 2 x 3 x 16 x 4 = 384 SR and 2 x 4 x 64 = 512 LR features (the paper's
384 + 512), for either LR block.

Isolated structures and periodic boxes
--------------------------------------
LODE needs a periodic cell. Each (non-periodic) structure is put in a cubic box of
edge ``box_edge`` (A), centred on the midpoint of its bounding box; the box must exceed
the structure's extent plus ``cutoff`` so that no periodic image enters the SR sphere.

Two corrections make the reciprocal-space expansion consistent with the real-space one
(featomic 0.6.7, verified in ``tests/test_soap_lode.py``):

1. *Centre contribution.* featomic's ``LodeSpliner`` hands the native code the centre
   atom's self-contribution :math:`\sqrt{4\pi}\int r^2 R_n(r)\phi(r)\,dr` on the
   *primitive* monomials, while the splined radial integrals are orthonormalised;
   the two then disagree for ``center_atom_weight != 1`` (at weight 0, the l = 0
   coefficients of a lone atom come out as -1.17 instead of -0.009). We multiply that
   vector by the basis' orthonormalisation matrix. Weight 1 (the features) does not use
   it; weight 0 (the background below, and the tests) does.
2. *Background* (``background_correction=True``). The reciprocal sum omits k = 0, which
   shifts the potential by a uniform constant per atom in the box (for p = 3 it decays
   roughly as ln(L) / L^3: about 1.5 % of the largest l = 0 coefficient at L = 30 A).
   Adding the periodic images of every atom, each atom of species b in the box shifts
   :math:`V^{b}_{n 00}` by the same vector :math:`s_n(L)`: the reciprocal-space
   expansion, centre weight 0, of one atom alone in the same box. We subtract
   :math:`N_b\, s_n(L)`, which leaves the potential of the isolated structure up to
   image *differences* (relative to an atom's own images). Without it, an isolated
   monomer's range-separated LR block is not zero but this offset, and it differs between
   dimers and monomers (N_b doubles). The image differences are what the box edge still
   changes: for a molecule 10 A away they are about 7 % of its potential at L = 30 A and
   1.5 % at L = 40 A (the default), hence the default edge.

What remains between the two projections is the reciprocal-space truncation: at
``k_cutoff = pi`` (1/A) and smearing 1.2 A, about 1e-4 on l = 0 coefficients of order 1
(1e-5 at 2 pi).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["VARIANTS", "LR_BLOCKS", "SoapLode", "AtomFeatures", "box_structure"]

#: the two LODE variants: plain reciprocal space, or with the SR sphere's real-space part removed
VARIANTS = ("non_orthogonal", "range_separated")
#: the LR invariants: LODE x LODE power spectrum (the paper's), or SOAP density x LODE
LR_BLOCKS = ("lode_lode", "density_lode")


def _positive(value: Any, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return x


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def box_structure(atoms: Any, edge: float, margin: float = 0.0) -> Any:
    """A copy of an isolated structure in a cubic periodic box, centred on it.

    Parameters
    ----------
    atoms : ase.Atoms
        A structure without periodic boundary conditions.
    edge : float
        Box edge (A).
    margin : float
        Distance (A) the box must leave between the structure and its periodic images:
        ``edge`` must exceed the largest extent of the structure along x, y or z plus
        ``margin``.

    Returns
    -------
    ase.Atoms
        Same atoms, cell ``edge * I``, ``pbc = True``, the midpoint of the bounding box
        at the centre of the box.
    """
    edge = _positive(edge, "box_edge")
    if any(atoms.pbc):
        raise ValueError(
            f"structure {atoms.get_chemical_formula()} is periodic (pbc={atoms.pbc.tolist()}): "
            "the SOAP+LODE descriptor boxes isolated structures itself"
        )
    pos = atoms.get_positions()
    lo, hi = pos.min(0), pos.max(0)
    extent = float((hi - lo).max())
    if edge <= extent + margin:
        raise ValueError(
            f"box_edge = {edge} A is too small for {atoms.get_chemical_formula()}: its extent is {extent:.3f} A, "
            f"and periodic images must stay beyond the cutoff ({margin} A): need box_edge > {extent + margin:.3f} A"
        )
    boxed = atoms.copy()
    boxed.calc = None
    boxed.set_cell(np.eye(3) * edge)
    boxed.set_pbc(True)
    boxed.set_positions(pos + (0.5 * edge - 0.5 * (lo + hi)))
    return boxed


@dataclass
class AtomFeatures:
    """Per-atom SOAP+LODE features of a list of structures (one variant).

    Attributes
    ----------
    values : (n_atoms, n_features) float64
        Per-atom vectors :math:`\\mathbf x_i`, atoms of all structures in order.
    structure : (n_atoms,) int
        Index of the structure each atom belongs to.
    numbers : (n_atoms,) int
        Atomic numbers.
    n_structures : int
    blocks : dict name -> slice
        ``{"SR": ..., "LR": ...}``: the columns of each block.
    variant : str
    """

    values: np.ndarray
    structure: np.ndarray
    numbers: np.ndarray
    n_structures: int
    blocks: dict = field(default_factory=dict)
    variant: str = ""

    def structure_sums(self) -> np.ndarray:
        r"""(n_structures, n_features): :math:`\sum_{i \in A} \mathbf x_i`, the gradient of a total energy."""
        from ..features import structure_features

        return structure_features(self.values, self.structure, reduce="sum", n_structures=self.n_structures)


class SoapLode:
    """SOAP power spectrum (SR) and LODE invariants (LR), per atom, with featomic.

    Parameters
    ----------
    species : sequence of int
        Atomic numbers the feature layout covers (every structure's elements must be among them).
    cutoff : float
        SOAP cutoff radius r_c (A); also the range-separation radius.
    n_radial : int
        Number of GTO radial functions of the SOAP density (featomic ``max_radial = n_radial - 1``).
    max_angular : int
        Largest l of both expansions.
    atomic_gaussian_width : float
        Width of the SOAP Gaussians (A).
    cutoff_width : float
        Width of the shifted-cosine smoothing below ``cutoff`` (A), 0 <= width < cutoff.
    lode_exponent : int
        p of the 1/r^p potential (>= 1).
    lode_smearing : float
        Smearing of the power law (A).
    k_cutoff : float
        Reciprocal-space cutoff (1/A).
    lode_n_radial : int
        Number of monomial radial functions of the LODE expansion.
    lode_radius : float, optional
        Radius of the monomial basis (A); ``cutoff`` by default.
    lr_block : str
        ``lode_lode`` (the paper's LODE x LODE power spectrum) or ``density_lode`` (SOAP
        density x LODE); see the module docstring.
    box_edge : float
        Edge of the cubic box each structure is placed in (A).
    background_correction : bool
        Remove the k = 0 offset and self-image term (see the module docstring).
    lode_spline_accuracy, real_space_spline_accuracy : float
        Requested accuracies of featomic's splines of the reciprocal- and real-space
        radial integrals (the real-space one costs seconds: 1e-6 is 4 s, 1e-8 is 9 s).
    """

    def __init__(
        self,
        species: Sequence[int] = (1, 8),
        *,
        cutoff: float = 2.8,
        n_radial: int = 4,
        max_angular: int = 3,
        atomic_gaussian_width: float = 0.3,
        cutoff_width: float = 0.25,
        lode_exponent: int = 3,
        lode_smearing: float = 1.2,
        k_cutoff: float = math.pi,
        lode_n_radial: int = 4,
        lode_radius: float | None = None,
        lr_block: str = "lode_lode",
        box_edge: float = 40.0,
        background_correction: bool = True,
        lode_spline_accuracy: float = 1e-8,
        real_space_spline_accuracy: float = 1e-6,
    ):
        species = [int(s) for s in species] if not isinstance(species, (str, bytes)) else None
        if not species or len(set(species)) != len(species) or min(species) < 1:
            raise ValueError(f"species must be distinct positive atomic numbers, got {species!r}")
        self.species = tuple(sorted(species))
        self.cutoff = _positive(cutoff, "cutoff")
        self.n_radial = _count(n_radial, "n_radial", 1)
        self.max_angular = _count(max_angular, "max_angular", 0)
        self.atomic_gaussian_width = _positive(atomic_gaussian_width, "atomic_gaussian_width")
        cutoff_width = float(cutoff_width)
        if not (math.isfinite(cutoff_width) and 0 <= cutoff_width < self.cutoff):
            raise ValueError(f"cutoff_width must lie in [0, cutoff = {self.cutoff}) A, got {cutoff_width!r}")
        self.cutoff_width = cutoff_width
        self.lode_exponent = _count(lode_exponent, "lode_exponent", 1)
        self.lode_smearing = _positive(lode_smearing, "lode_smearing")
        self.k_cutoff = _positive(k_cutoff, "k_cutoff")
        self.lode_n_radial = _count(lode_n_radial, "lode_n_radial", 1)
        self.lode_radius = self.cutoff if lode_radius is None else _positive(lode_radius, "lode_radius")
        if lr_block not in LR_BLOCKS:
            raise ValueError(f"lr_block must be one of {list(LR_BLOCKS)}, got {lr_block!r}")
        self.lr_block = lr_block
        self.box_edge = _positive(box_edge, "box_edge")
        self.background_correction = bool(background_correction)
        self.lode_spline_accuracy = _positive(lode_spline_accuracy, "lode_spline_accuracy")
        self.real_space_spline_accuracy = _positive(real_space_spline_accuracy, "real_space_spline_accuracy")
        self._background: np.ndarray | None = None
        self._lock = threading.Lock()

    # -- layout ---------------------------------------------------------------
    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Neighbour-species pairs (a <= b) of the SR block."""
        s = self.species
        return [(a, b) for i, a in enumerate(s) for b in s[i:]]

    @property
    def n_sr(self) -> int:
        """SR features: centre species x pairs a <= b x (l_max + 1) x n_radial^2."""
        return len(self.species) * len(self.pairs) * (self.max_angular + 1) * self.n_radial**2

    @property
    def _lr_radial(self) -> tuple[int, int]:
        """Radial sizes (n1, n2) of the LR invariants: (lode, lode) or (density, lode)."""
        first = self.lode_n_radial if self.lr_block == "lode_lode" else self.n_radial
        return first, self.lode_n_radial

    @property
    def n_lr(self) -> int:
        """LR features: centre species x ordered pairs (a, b) x (l_max + 1) x n1 x n2 radial indices."""
        S = len(self.species)
        n1, n2 = self._lr_radial
        return S * S * S * (self.max_angular + 1) * n1 * n2

    @property
    def n_features(self) -> int:
        return self.n_sr + self.n_lr

    @property
    def blocks(self) -> dict[str, slice]:
        """Columns of each block: ``{"SR": slice(0, n_sr), "LR": slice(n_sr, n_features)}``."""
        return {"SR": slice(0, self.n_sr), "LR": slice(self.n_sr, self.n_features)}

    def feature_names(self) -> list[str]:
        """One label per column, e.g. ``"SR z=8 a=1 b=8 l=2 n1=0 n2=3"`` (z: centre, a/b: neighbour species)."""
        L, N = self.max_angular + 1, self.n_radial
        M1, M2 = self._lr_radial
        names = [
            f"SR z={z} a={a} b={b} l={l} n1={n1} n2={n2}"
            for z in self.species for a, b in self.pairs for l in range(L) for n1 in range(N) for n2 in range(N)
        ]
        names += [
            f"LR z={z} a={a} b={b} l={l} n1={n1} n2={n2}"
            for z in self.species for a in self.species for b in self.species
            for l in range(L) for n1 in range(M1) for n2 in range(M2)
        ]
        return names

    def hypers(self) -> dict[str, Any]:
        """The parameters, as plain values (for manifests)."""
        keys = ("species", "cutoff", "n_radial", "max_angular", "atomic_gaussian_width", "cutoff_width",
                "lode_exponent", "lode_smearing", "k_cutoff", "lode_n_radial", "lode_radius", "lr_block", "box_edge",
                "background_correction", "lode_spline_accuracy", "real_space_spline_accuracy")
        out = {k: getattr(self, k) for k in keys}
        out["species"] = list(self.species)
        return out

    # -- calculators ----------------------------------------------------------
    def _soap_key(self):
        return (self.cutoff, self.n_radial, self.max_angular, self.atomic_gaussian_width, self.cutoff_width)

    def _lode_key(self):
        return (self.lode_exponent, self.lode_smearing, self.k_cutoff, self.lode_n_radial, self.max_angular,
                self.lode_radius, self.lode_spline_accuracy)

    def density_calculator(self):
        """featomic ``SphericalExpansion`` of the SOAP density (GTO basis)."""
        return _density_calculator(*self._soap_key())

    def lode_calculator(self, center_atom_weight: float = 1.0):
        """featomic ``LodeSphericalExpansion`` (monomial basis, corrected centre contribution)."""
        return _lode_calculator(*self._lode_key(), float(center_atom_weight))

    def real_space_lode_calculator(self):
        """featomic ``SphericalExpansion`` of the same smeared power law and basis, atoms within ``cutoff`` (Step)."""
        return _real_lode_calculator(self.lode_exponent, self.lode_smearing, self.lode_n_radial, self.max_angular,
                                     self.lode_radius, self.cutoff, self.real_space_spline_accuracy)

    def background(self) -> np.ndarray:
        r"""(lode_n_radial,) shift :math:`s_n(L)` of the l = 0 LODE coefficients per atom of a species in the box.

        The reciprocal-space expansion, centre weight 0, of a single atom alone in the
        box: its periodic images plus the uniform k = 0 offset. (By the cubic symmetry of
        the images its l = 1, 2, 3 coefficients vanish.)
        """
        with self._lock:
            if self._background is None:
                from ase import Atoms

                edge = self.box_edge
                single = Atoms(numbers=[self.species[0]], positions=[[edge / 2] * 3], cell=np.eye(3) * edge, pbc=True)
                tm = self.lode_calculator(center_atom_weight=0.0).compute([single])
                z = self.species[0]
                block = tm.block({"o3_lambda": 0, "center_type": z, "neighbor_type": z})
                self._background = _sorted_props(block)[0, 0].copy()
        return self._background

    # -- features ---------------------------------------------------------------
    def check_frames(self, frames: Sequence[Any]) -> list:
        """The structures boxed for featomic; raises on unknown species, periodic input or a too small box."""
        frames = list(frames)
        if not frames:
            raise ValueError("no structures given")
        boxed = []
        known = set(self.species)
        for k, atoms in enumerate(frames):
            if not hasattr(atoms, "numbers") or len(atoms) == 0:
                raise ValueError(f"structure {k} is empty or not an ase.Atoms ({type(atoms).__name__})")
            unknown = sorted(set(int(z) for z in atoms.numbers) - known)
            if unknown:
                raise ValueError(
                    f"structure {k} ({atoms.get_chemical_formula()}) has atomic numbers {unknown} outside "
                    f"the descriptor's species {list(self.species)}"
                )
            try:
                boxed.append(box_structure(atoms, self.box_edge, margin=self.cutoff))
            except ValueError as err:
                raise ValueError(f"structure {k}: {err}") from None
        return boxed

    def _layout(self, boxed: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = np.array([len(a) for a in boxed])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        numbers = np.concatenate([a.numbers for a in boxed]).astype(int)
        structure = np.repeat(np.arange(len(boxed)), counts)
        return offsets, numbers, structure

    def density_expansion(self, frames: Sequence[Any]) -> list[np.ndarray]:
        r"""SOAP density coefficients :math:`c^{a}_{nlm}(i)`: [l] arrays (n_atoms, n_species, 2l+1, n_radial).

        Atoms of all structures in order; the species axis follows ``species``.
        """
        boxed = self.check_frames(frames)
        offsets, numbers, _ = self._layout(boxed)
        return _dense(self.density_calculator().compute(boxed), offsets, len(numbers), self.species,
                      self.max_angular + 1, self.n_radial)

    def lode_expansion(self, frames: Sequence[Any], center_atom_weight: float = 1.0) -> list[np.ndarray]:
        r"""Reciprocal-space LODE coefficients :math:`V^{b}_{nlm}(i)` of every atom in the box.

        [l] arrays (n_atoms, n_species, 2l+1, lode_n_radial); with ``background_correction``
        the k = 0 offset and self-image term, :math:`N_b\,s_n(L)`, are removed from l = 0.
        ``center_atom_weight`` scales the centre's own potential (1: included).
        """
        boxed = self.check_frames(frames)
        return self._lode(boxed, center_atom_weight)

    def _lode(self, boxed: list, center_atom_weight: float = 1.0) -> list[np.ndarray]:
        offsets, numbers, structure = self._layout(boxed)
        V = _dense(self.lode_calculator(center_atom_weight).compute(boxed), offsets, len(numbers), self.species,
                   self.max_angular + 1, self.lode_n_radial)
        if self.background_correction:
            # N_b (atoms of species b in the structure of atom i) x s_n, on the l = 0 coefficients
            n_b = np.stack([np.bincount(structure, weights=(numbers == b), minlength=len(boxed))
                            for b in self.species], axis=1)[structure]  # (n_atoms, S)
            V[0][:, :, 0, :] -= n_b[:, :, None] * self.background()[None, None, :]
        return V

    def _near(self, boxed: list) -> list[np.ndarray]:
        offsets, numbers, _ = self._layout(boxed)
        return _dense(self.real_space_lode_calculator().compute(boxed), offsets, len(numbers), self.species,
                      self.max_angular + 1, self.lode_n_radial)

    def potential_expansion(self, frames: Sequence[Any], variant: str) -> list[np.ndarray]:
        r"""The LODE coefficients that enter the LR block of ``variant``: [l] arrays (n_atoms, S, 2l+1, N).

        ``non_orthogonal``: :meth:`lode_expansion`; ``range_separated``: minus the real-space
        expansion of the atoms within ``cutoff`` of each centre (the centre included).
        """
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: choose from {list(VARIANTS)}")
        boxed = self.check_frames(frames)
        V = self._lode(boxed)
        if variant == "range_separated":
            V = [v - w for v, w in zip(V, self._near(boxed))]
        return V

    def compute(self, frames: Sequence[Any], variants: Sequence[str] = VARIANTS) -> dict[str, AtomFeatures]:
        """Per-atom features of ``frames`` for each variant.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Isolated structures (no pbc) whose elements are all in ``species``.
        variants : sequence of str
            Any of :data:`VARIANTS`.

        Returns
        -------
        dict variant -> :class:`AtomFeatures` (values of shape (n_atoms, n_features)).
        """
        variants = list(variants)
        bad = [v for v in variants if v not in VARIANTS]
        if bad or not variants:
            raise ValueError(f"unknown variants {bad or variants!r}: choose from {list(VARIANTS)}")
        boxed = self.check_frames(frames)
        offsets, numbers, structure = self._layout(boxed)
        density = _dense(self.density_calculator().compute(boxed), offsets, len(numbers), self.species,
                         self.max_angular + 1, self.n_radial)
        potential = self._lode(boxed)
        sr = self._sr_block(density, numbers)
        out = {}
        for variant in variants:
            pot = potential
            if variant == "range_separated":
                pot = [v - w for v, w in zip(potential, self._near(boxed))]
            first = pot if self.lr_block == "lode_lode" else density
            values = np.concatenate([sr, self._lr_block(first, pot, numbers)], axis=1)
            out[variant] = AtomFeatures(values, structure, numbers, len(boxed), self.blocks, variant)
        return out

    def _centre_layout(self, per_atom: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """(n_atoms, f) per-atom values -> (n_atoms, S * f), non-zero only in the atom's centre-species slot."""
        n, f = per_atom.shape
        out = np.zeros((n, len(self.species), f))
        slot = np.searchsorted(self.species, numbers)
        out[np.arange(n), slot] = per_atom
        return out.reshape(n, -1)

    def _sr_block(self, density: list[np.ndarray], numbers: np.ndarray) -> np.ndarray:
        idx = {z: k for k, z in enumerate(self.species)}
        parts = []
        for a, b in self.pairs:
            kappa = math.sqrt(2.0) if a != b else 1.0
            per_l = [
                kappa * (-1) ** l / math.sqrt(2 * l + 1)
                * np.einsum("imn,imk->ink", c[:, idx[a]], c[:, idx[b]])
                for l, c in enumerate(density)
            ]
            parts.append(np.stack(per_l, axis=1).reshape(len(numbers), -1))  # (l, n1, n2)
        return self._centre_layout(np.concatenate(parts, axis=1), numbers)

    def _lr_block(self, first: list[np.ndarray], potential: list[np.ndarray], numbers: np.ndarray) -> np.ndarray:
        """lambda = 0 invariants of ``first`` (the LODE or the density coefficients) with the LODE ones."""
        per_l = [
            (-1) ** l / math.sqrt(2 * l + 1) * np.einsum("iamn,ibmk->iabnk", c, v)
            for l, (c, v) in enumerate(zip(first, potential))
        ]
        q = np.stack(per_l, axis=3)  # (i, a, b, l, n1, n2)
        return self._centre_layout(q.reshape(len(numbers), -1), numbers)


# -- featomic plumbing (cached: splines cost seconds) --------------------------------------

def _mono_basis(n_radial, max_angular, radius, accuracy):
    import featomic

    return featomic.basis.Explicit(
        by_angular={
            l: featomic.basis.Monomials(angular_channel=l, max_radial=n_radial - 1, radius=radius)
            for l in range(max_angular + 1)
        },
        spline_accuracy=accuracy,
    )


@lru_cache(maxsize=8)
def _density_calculator(cutoff, n_radial, max_angular, width, cutoff_width):
    import featomic

    smoothing = featomic.cutoff.ShiftedCosine(width=cutoff_width) if cutoff_width > 0 else featomic.cutoff.Step()
    return featomic.SphericalExpansion(
        cutoff=featomic.cutoff.Cutoff(radius=cutoff, smoothing=smoothing),
        density=featomic.density.Gaussian(width=width),
        basis=featomic.basis.TensorProduct(
            max_angular=max_angular, radial=featomic.basis.Gto(max_radial=n_radial - 1, radius=cutoff)
        ),
    )


@lru_cache(maxsize=8)
def _lode_calculator(exponent, smearing, k_cutoff, n_radial, max_angular, radius, accuracy, center_atom_weight):
    import featomic
    from featomic.splines import LodeSpliner

    basis = _mono_basis(n_radial, max_angular, radius, accuracy)
    density = featomic.density.SmearedPowerLaw(smearing=smearing, exponent=exponent,
                                               center_atom_weight=center_atom_weight)
    hypers = LodeSpliner(density=density, basis=basis, k_cutoff=k_cutoff).get_hypers()
    # featomic 0.6.7 passes the centre contribution on the primitive basis: orthonormalise it
    # like the splined integrals (see the module docstring).
    splined = hypers["basis"].by_angular[0]
    ortho = basis.radial_basis(0)._get_orthonormalization_matrix()
    splined.lode_center_contribution = ortho @ np.asarray(splined.lode_center_contribution)
    return featomic.LodeSphericalExpansion(**hypers)


@lru_cache(maxsize=8)
def _real_lode_calculator(exponent, smearing, n_radial, max_angular, radius, cutoff, accuracy):
    import featomic
    from featomic.splines import SoapSpliner

    density = featomic.density.SmearedPowerLaw(smearing=smearing, exponent=exponent, center_atom_weight=1.0)
    spliner = SoapSpliner(
        cutoff=featomic.cutoff.Cutoff(radius=cutoff, smoothing=featomic.cutoff.Step()),
        density=density,
        basis=_mono_basis(n_radial, max_angular, radius, accuracy),
    )
    return featomic.SphericalExpansion(**spliner.get_hypers())


def _sorted_props(block) -> np.ndarray:
    """Block values (samples, m, n) with the radial property n in increasing order."""
    order = np.argsort(np.asarray(block.properties.column("n")))
    return np.asarray(block.values)[:, :, order]


def _dense(tmap, offsets: np.ndarray, n_atoms: int, species: Sequence[int], n_l: int, n_radial: int) -> list:
    """featomic spherical expansion -> [l] arrays of shape (n_atoms, n_species, 2l+1, n_radial).

    Blocks absent from the TensorMap (a species missing around a centre) stay zero.
    """
    out = [np.zeros((n_atoms, len(species), 2 * l + 1, n_radial)) for l in range(n_l)]
    slot = {z: k for k, z in enumerate(species)}
    for key, block in tmap.items():
        l = int(key["o3_lambda"])
        if l >= n_l:
            continue
        values = _sorted_props(block)
        if values.shape[2] != n_radial:
            raise RuntimeError(f"featomic block {key} has {values.shape[2]} radial functions, expected {n_radial}")
        rows = offsets[np.asarray(block.samples.column("system"))] + np.asarray(block.samples.column("atom"))
        out[l][rows, slot[int(key["neighbor_type"])]] = values
    return out
