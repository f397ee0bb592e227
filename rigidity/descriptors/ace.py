"""Atomic cluster expansion (ACE) invariants in body-order blocks, self-interacting or purified.

For a centre atom i with neighbours j (distance vectors r_ij within ``cutoff``), the
one-particle basis is

    phi_{nlm}(r) = R_n(r) Y_lm(r_hat),   R_n(r) = T_{n-1}(x(r)) (1 - r / r_c)^2,

with T the Chebyshev polynomials, x(r) the distance mapped linearly from
[``radial_inner``, ``cutoff``] onto [-1, 1] and Y_lm real spherical harmonics
normalised to a mean square of one over the sphere (Y_00 = 1; that is
sqrt(4 pi) times the orthonormal ones), so that the features are of order one.
With ``radial="laplacian"`` the radial functions are instead the Laplacian
eigenstates of the cutoff sphere, j_l(z_nl r / r_c) (LE-ACE), and the basis is
truncated by their eigenvalues z_nl^2 (``total_degree`` is then LE-ACE's E_max).
A body-order-nu invariant couples nu one-particle
functions k_t = (n_t, l_t) to a rotation scalar with Clebsch-Gordan coefficients:

    nu = 1:  c                        (l = 0)
    nu = 2:  sum_m a_m b_m            (l_1 = l_2)
    nu = 3:  sum C^{l1 l2 l3}_{m1 m2 m3} a b c
    nu = 4:  sum_M [a (x) b]_{L M} [c (x) d]_{L M}   for every admissible L

The two flavours differ only in what is coupled:

- **self-interacting** (the usual ACE): the product of atomic bases
  A_{k}(i) = sum_j phi_k(r_ij), i.e. a sum over all nu-tuples of neighbours,
  repeated neighbours included. The nu block then also carries lower body orders
  (a neighbour counted twice), which is why its blocks overlap.
- **purified**: the same couplings summed over tuples of *distinct* neighbours
  only, sum_{j1 != ... != j_nu} phi_{k1}(r_ij1) ... phi_{k_nu}(r_ij_nu): the
  canonical many-body expansion. The nu block of a purified descriptor is
  exactly (nu + 1)-body: it vanishes for an atom with fewer than nu neighbours.
  Its cost grows as (neighbours)^nu per atom, so it is meant for clusters and
  small molecules, not for dense bulk with large cutoffs.

Which tuples enter: sorted multisets (k_1 <= ... <= k_nu) with an even sum of l
(inversion-invariant), a non-vanishing coupling, and total degree
sum_t deg(n_t, l_t) <= total_degree[nu - 1], deg = n + angular_weight * l
(Chebyshev) or z_nl^2 (Laplacian). Couplings that are
linearly dependent once the product is symmetrised over repeated k's are dropped,
so every block has full rank (as a set of polynomials).

The descriptor is species-blind: every atom must be of one element (``species``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

__all__ = ["ACE", "BasisFunction", "real_spherical_harmonics", "real_clebsch_gordan", "spherical_bessel_zeros"]


# ----------------------------------------------------------------------------------------------
# spherical harmonics and Clebsch-Gordan coefficients in the real basis


@cache
def _complex_to_real(l: int) -> np.ndarray:
    """Unitary U with Y^real_m = sum_mu U[m, mu] Y^complex_mu (rows m = -l..l, Condon-Shortley phase)."""
    U = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    s = 1 / math.sqrt(2)
    for m in range(-l, l + 1):
        row, mu = m + l, abs(m)
        if m == 0:
            U[row, l] = 1.0
        elif m > 0:
            U[row, l + mu] = (-1) ** mu * s
            U[row, l - mu] = s
        else:
            U[row, l - mu] = 1j * s
            U[row, l + mu] = -1j * (-1) ** mu * s
    return U


def real_spherical_harmonics(max_angular: int, directions: np.ndarray) -> list[np.ndarray]:
    """Real spherical harmonics, orthonormal on the unit sphere.

    Parameters
    ----------
    max_angular : highest l
    directions : (n, 3) vectors (normalised here; zero vectors are an error)

    Returns
    -------
    list of (n, 2l + 1) arrays, l = 0 .. max_angular, columns m = -l .. l
    """
    from scipy.special import sph_harm_y

    v = np.asarray(directions, dtype=float).reshape(-1, 3)
    norm = np.linalg.norm(v, axis=1)
    if np.any(norm == 0):
        raise ValueError("real_spherical_harmonics: zero-length direction (two atoms on top of each other?)")
    v = v / norm[:, None]
    theta = np.arccos(np.clip(v[:, 2], -1.0, 1.0))
    phi = np.arctan2(v[:, 1], v[:, 0])
    out = []
    for l in range(max_angular + 1):
        m = np.arange(-l, l + 1)
        Yc = sph_harm_y(l, m[None, :], theta[:, None], phi[:, None])  # (n, 2l+1), complex
        out.append(np.real(Yc @ _complex_to_real(l).T))
    return out


def _complex_cg(j1: int, m1: int, j2: int, m2: int, J: int, M: int) -> float:
    """<j1 m1 j2 m2 | J M> by Racah's formula in exact rational arithmetic."""
    if m1 + m2 != M or not (abs(j1 - j2) <= J <= j1 + j2) or abs(m1) > j1 or abs(m2) > j2 or abs(M) > J:
        return 0.0
    f = math.factorial
    pre = Fraction((2 * J + 1) * f(J + j1 - j2) * f(J - j1 + j2) * f(j1 + j2 - J), f(j1 + j2 + J + 1))
    pre *= f(J + M) * f(J - M) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2)
    total = Fraction(0)
    for k in range(0, j1 + j2 - J + 1):
        terms = (j1 + j2 - J - k, j1 - m1 - k, j2 + m2 - k, J - j2 + m1 + k, J - j1 - m2 + k)
        if min(terms) < 0:
            continue
        denom = f(k)
        for t in terms:
            denom *= f(t)
        total += Fraction((-1) ** k, denom)
    return float(total) * math.sqrt(pre) if total else 0.0


@cache
def real_clebsch_gordan(l1: int, l2: int, L: int) -> np.ndarray:
    """Real-basis coupling tensor C[a, b, c] with [x (x) y]_c = sum_ab C[a, b, c] x_a y_b equivariant.

    ``x`` transforms like real Y_{l1}, ``y`` like Y_{l2}, the result like Y_L. The
    complex CG tensor is rotated to the real basis; the result is real for even
    l1 + l2 + L and purely imaginary for odd (it is then multiplied by -i), with
    unit Frobenius norm * sqrt(2L + 1) as for the complex coefficients.
    """
    if not abs(l1 - l2) <= L <= l1 + l2:
        raise ValueError(f"no coupling of l1={l1} and l2={l2} to L={L} (need |l1 - l2| <= L <= l1 + l2)")
    Cc = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * L + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            M = m1 + m2
            if abs(M) <= L:
                Cc[m1 + l1, m2 + l2, M + L] = _complex_cg(l1, m1, l2, m2, L, M)
    U1, U2, UL = _complex_to_real(l1), _complex_to_real(l2), _complex_to_real(L)
    Cr = np.einsum("am,bn,cM,mnM->abc", U1.conj(), U2.conj(), UL, Cc)
    if np.linalg.norm(Cr.imag) > np.linalg.norm(Cr.real):
        Cr = -1j * Cr
    if np.linalg.norm(Cr.imag) > 1e-10 * max(1.0, np.linalg.norm(Cr.real)):
        raise AssertionError(f"real CG ({l1}, {l2}, {L}) is not real")  # cannot happen for a unitary U
    return np.ascontiguousarray(Cr.real)


# ----------------------------------------------------------------------------------------------
# the basis: which coupled tuples enter each body-order block


@dataclass(frozen=True)
class BasisFunction:
    """One invariant: body order ``nu``, radial and angular indices per factor, coupling ``L`` (nu = 4)."""

    nu: int
    n: tuple[int, ...]
    l: tuple[int, ...]
    L: int | None = None

    @property
    def label(self) -> str:
        s = f"nu={self.nu} n={self.n} l={self.l}"
        return s if self.L is None else f"{s} L={self.L}"


def _coupling_tensor(ls: tuple[int, ...], L: int | None) -> np.ndarray:
    """The invariant tensor T[m_1, ..., m_nu] of a coupling (full, for the rank test)."""
    nu = len(ls)
    if nu == 1:
        return np.ones(1)
    if nu == 2:
        return np.eye(2 * ls[0] + 1)
    if nu == 3:
        return real_clebsch_gordan(ls[0], ls[1], ls[2])
    return np.einsum("abM,cdM->abcd", real_clebsch_gordan(ls[0], ls[1], L), real_clebsch_gordan(ls[2], ls[3], L))


@cache
def _independent_couplings(ls: tuple[int, ...], pattern: tuple[int, ...]) -> tuple:
    """Couplings of a tuple that stay linearly independent after symmetrisation.

    ``pattern`` labels equal one-particle functions (e.g. (0, 0, 1, 2) when k_1 = k_2):
    the product of the coupled factors is symmetric under permutations of equal
    labels, so only the symmetrised coupling tensors matter. Returns the L values
    (None for nu < 4) of a maximal independent subset (pivoted QR).
    """
    nu = len(ls)
    candidates: list[int | None]
    if nu == 4:
        lo = max(abs(ls[0] - ls[1]), abs(ls[2] - ls[3]))
        hi = min(ls[0] + ls[1], ls[2] + ls[3])
        candidates = list(range(lo, hi + 1))
    else:
        candidates = [None]
    if not candidates:
        return ()
    perms = [p for p in itertools.permutations(range(nu)) if all(pattern[p[t]] == pattern[t] for t in range(nu))]
    columns = []
    for L in candidates:
        T = _coupling_tensor(ls, L)
        columns.append(sum(np.transpose(T, p) for p in perms).ravel() / len(perms))
    M = np.stack(columns, axis=1)
    from scipy.linalg import qr

    _, R, piv = qr(M, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.sum(diag > 1e-10 * max(1.0, diag.max() if diag.size else 0.0)))
    return tuple(sorted(candidates[i] for i in piv[:rank]))


@cache
def spherical_bessel_zeros(l: int, count: int) -> np.ndarray:
    """The first ``count`` positive zeros z_1 < z_2 < ... of the spherical Bessel function j_l."""
    from scipy.optimize import brentq
    from scipy.special import spherical_jn

    zeros: list[float] = []
    step, x = 0.1, max(l, 1) * 0.5
    f_prev = spherical_jn(l, x)
    while len(zeros) < count:  # consecutive zeros are about pi apart: a 0.1 grid cannot skip one
        f = spherical_jn(l, x + step)
        if f_prev == 0 or f_prev * f < 0:
            zeros.append(brentq(lambda t: spherical_jn(l, t), x, x + step, xtol=1e-14))
        x, f_prev = x + step, f
    return np.array(zeros)


class _Degree:
    """Degree of a one-particle function (n, l), n >= 1, and the basis truncation built on it.

    ``chebyshev``: n + angular_weight * l. ``laplacian``: the Laplacian eigenvalue
    z_nl^2 of j_l(z_nl r / r_c) in the cutoff sphere (dimensionless, as LE-ACE's E_max).
    Both grow with n and l, which the candidate bounds rely on.
    """

    def __init__(self, radial: str, angular_weight: float):
        self.radial, self.w = radial, angular_weight

    def __call__(self, n: int, l: int) -> float:
        if self.radial == "chebyshev":
            return n + self.w * l
        return float(spherical_bessel_zeros(l, n)[n - 1] ** 2)

    def others(self, k: int, l: int) -> float:
        """Least total degree of k more factors whose l add up to at least l (inf if k = 0 and l > 0)."""
        @cache
        def f(k: int, need: int) -> float:
            if need <= 0:
                return k * self(1, 0)
            if k == 0:
                return math.inf
            return min(self(1, lp) + f(k - 1, need - lp) for lp in range(0, need + 1))

        return f(k, l)


def _one_particle_candidates(nu: int, dmax: float, degree: _Degree) -> list[tuple[int, int]]:
    """(n, l) that can appear in a nu-tuple of total degree <= dmax.

    nu = 1 needs l = 0. For nu >= 2 the other factors must carry l's adding up to at
    least l (a coupling to a scalar needs l <= sum of the others), which costs at
    least ``degree.others(nu - 1, l)``.
    """
    out = []
    l = 0
    while True:
        rest = 0.0 if nu == 1 else degree.others(nu - 1, l)
        if degree(1, l) + rest > dmax + 1e-9 or (nu == 1 and l > 0):
            break
        n = 1
        while degree(n, l) + rest <= dmax + 1e-9:
            out.append((n, l))
            n += 1
        l += 1
    return sorted(out, key=lambda k: (k[1], k[0]))


def _enumerate_basis(total_degree: Sequence[float], degree: _Degree) -> list[BasisFunction]:
    basis: list[BasisFunction] = []
    for nu, dmax in enumerate(total_degree, start=1):
        one = _one_particle_candidates(nu, dmax, degree)
        deg = {k: degree(*k) for k in one}
        for tup in itertools.combinations_with_replacement(one, nu):
            if sum(deg[k] for k in tup) > dmax + 1e-9:
                continue
            ls = tuple(k[1] for k in tup)
            if sum(ls) % 2:
                continue
            if nu == 2 and ls[0] != ls[1]:
                continue
            if nu >= 3 and 2 * max(ls) > sum(ls):
                continue
            if nu == 3 and not abs(ls[0] - ls[1]) <= ls[2] <= ls[0] + ls[1]:
                continue
            labels = {k: i for i, k in enumerate(dict.fromkeys(tup))}
            pattern = tuple(labels[k] for k in tup)
            for L in _independent_couplings(ls, pattern):
                basis.append(BasisFunction(nu, tuple(k[0] for k in tup), ls, L))
    return basis


# ----------------------------------------------------------------------------------------------
# the descriptor


class ACE:
    """ACE invariants with body-order blocks nu = 1 .. ``correlation_order``.

    Parameters
    ----------
    cutoff : radial cutoff r_c (A)
    total_degree : maximal total degree of each block, one value per nu
        (degree of a one-particle function: n + angular_weight * l, n >= 1, for the
        Chebyshev basis; the Laplacian eigenvalue z_nl^2 for the Laplacian one, so that
        ``total_degree`` is LE-ACE's E_max per body order)
    purified : sum over tuples of distinct neighbours only (canonical many-body expansion)
    angular_weight : weight of l in the degree (Chebyshev basis)
    radial_inner : distance (A) mapped to x = -1 by the Chebyshev basis (below it the
        polynomials extrapolate; choose the shortest distance expected)
    radial : "chebyshev" (T_{n-1}(x) (1 - r / r_c)^2, the same for every l) or
        "laplacian": Laplacian eigenstates in the cutoff sphere (LE-ACE, Bigi et al. 2022),
        R_nl(r) = j_l(z_nl r / r_c) / (|j_{l+1}(z_nl)| sqrt(r_c^3 / 2)), z_nl the n-th zero
        of j_l: orthonormal with weight r^2 on [0, r_c] and zero at the cutoff
    species : the one element allowed in the structures (the descriptor is species-blind)
    max_tuples : refuse a purified calculation that would enumerate more neighbour tuples

    Attributes
    ----------
    basis : list of :class:`BasisFunction`, in feature order
    blocks : {"nu=1": slice, ...}: the columns of each body-order block
    """

    def __init__(
        self,
        cutoff: float = 5.5,
        total_degree: Sequence[float] = (24, 20, 16, 12),
        purified: bool = False,
        angular_weight: float = 1.5,
        radial_inner: float = 0.0,
        species: str = "Si",
        max_tuples: int = 50_000_000,
        radial: str = "chebyshev",
    ):
        if not (isinstance(cutoff, (int, float)) and np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive distance in A, got {cutoff!r}")
        if not 0 <= radial_inner < cutoff:
            raise ValueError(f"radial_inner must be in [0, cutoff={cutoff}), got {radial_inner!r}")
        degree = [float(d) for d in total_degree]
        if not 1 <= len(degree) <= 4:
            raise ValueError(f"total_degree needs one entry per body order nu = 1..4 (at most 4), "
                             f"got {list(total_degree)}")
        if radial not in ("chebyshev", "laplacian"):
            raise ValueError(f"radial must be 'chebyshev' or 'laplacian', got {radial!r}")
        if not angular_weight > 0:
            raise ValueError(f"angular_weight must be positive, got {angular_weight!r}")
        self._degree = _Degree(radial, float(angular_weight))
        for nu, d in enumerate(degree, start=1):
            least = self._degree(1, 0) * nu
            if not d >= least - 1e-9:
                raise ValueError(f"total_degree[{nu - 1}] = {d} leaves block nu={nu} empty (it must be >= {least:.6g})")
        self.cutoff = float(cutoff)
        self.total_degree = degree
        self.correlation_order = len(degree)
        self.purified = bool(purified)
        self.angular_weight = float(angular_weight)
        self.radial_inner = float(radial_inner)
        self.species = species
        self.max_tuples = int(max_tuples)
        self.radial_basis = radial
        self.basis = _enumerate_basis(degree, self._degree)
        max_n: dict[int, int] = {}
        for b in self.basis:
            for n, l in zip(b.n, b.l):
                max_n[l] = max(max_n.get(l, 0), n)
        self.max_n = {l: max_n.get(l, 0) for l in range(max(max_n) + 1)}
        self.max_radial = max(max_n.values())
        self.max_angular = max(max_n)
        self.blocks: dict[str, slice] = {}
        start = 0
        for nu in range(1, self.correlation_order + 1):
            size = sum(1 for b in self.basis if b.nu == nu)
            self.blocks[f"nu={nu}"] = slice(start, start + size)
            start += size

    @property
    def n_features(self) -> int:
        return len(self.basis)

    @property
    def block_sizes(self) -> dict[str, int]:
        return {name: s.stop - s.start for name, s in self.blocks.items()}

    def __repr__(self) -> str:
        flavour = "purified" if self.purified else "self-interacting"
        return (f"ACE({flavour}, {self.radial_basis} radial basis, cutoff={self.cutoff}, "
                f"total_degree={self.total_degree}, blocks={self.block_sizes})")

    # -- one-particle basis -------------------------------------------------------------------

    def radial(self, r: np.ndarray) -> list[np.ndarray]:
        """R_nl(r) for n = 1 .. max_n[l]: list over l of (len(r), max_n[l]); zero beyond the cutoff."""
        r = np.asarray(r, dtype=float).ravel()
        inside = r < self.cutoff
        if self.radial_basis == "laplacian":
            from scipy.special import spherical_jn

            out = []
            for l in range(self.max_angular + 1):
                z = spherical_bessel_zeros(l, max(self.max_n[l], 1))[: self.max_n[l]]
                norm = np.sqrt(2 / self.cutoff**3) / np.abs(spherical_jn(l + 1, z))
                R = spherical_jn(l, np.outer(r, z) / self.cutoff) * norm
                out.append(np.where(inside[:, None], R, 0.0))
            return out
        x = 2 * (r - self.radial_inner) / (self.cutoff - self.radial_inner) - 1
        T = np.empty((r.size, self.max_radial))
        T[:, 0] = 1.0
        if self.max_radial > 1:
            T[:, 1] = x
        for n in range(2, self.max_radial):
            T[:, n] = 2 * x * T[:, n - 1] - T[:, n - 2]
        T *= np.where(inside, (1 - r / self.cutoff) ** 2, 0.0)[:, None]
        return [T[:, : self.max_n[l]] for l in range(self.max_angular + 1)]

    def one_particle(self, vectors: np.ndarray) -> list[np.ndarray]:
        """phi_{nlm}(r) of neighbour vectors: list over l of (n_vectors, max_n[l], 2l + 1).

        Uses sqrt(4 pi) times the orthonormal real spherical harmonics (Y_00 = 1).
        """
        vectors = np.asarray(vectors, dtype=float).reshape(-1, 3)
        r = np.linalg.norm(vectors, axis=1)
        R = self.radial(r)
        Y = real_spherical_harmonics(self.max_angular, vectors)
        # Y_00 = 1: features of order one, so that a ridge alpha means the same in every block
        scale = math.sqrt(4 * math.pi)
        return [R[l][:, :, None] * (scale * Y[l][:, None, :]) for l in range(self.max_angular + 1)]

    # -- neighbours ---------------------------------------------------------------------------

    def _neighbours(self, frames):
        from ase.neighborlist import neighbor_list

        centres, vectors, counts = [], [], []
        offset = 0
        for index, atoms in enumerate(frames):
            symbols = set(atoms.get_chemical_symbols())
            if symbols - {self.species}:
                raise ValueError(
                    f"frame {index}: elements {sorted(symbols - {self.species})} found; this ACE is species-blind "
                    f"and built for {self.species!r} only"
                )
            i, D = neighbor_list("iD", atoms, self.cutoff)
            if len(i) and np.min(np.linalg.norm(D, axis=1)) == 0:
                raise ValueError(f"frame {index}: two atoms at the same position")
            order = np.argsort(i, kind="stable")
            centres.append(i[order] + offset)
            vectors.append(D[order])
            counts.append(len(atoms))
            offset += len(atoms)
        return (np.concatenate(centres) if centres else np.zeros(0, int),
                np.concatenate(vectors) if vectors else np.zeros((0, 3)), np.array(counts, dtype=int))

    # -- features -----------------------------------------------------------------------------

    def atom_features(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom invariants of a list of ASE Atoms.

        Returns
        -------
        X : (total atoms, n_features), columns in the order of ``basis`` (blocks nu = 1, 2, ...)
        structure : (total atoms,) index of the frame each row belongs to
        """
        frames = list(frames)
        centre, vectors, counts = self._neighbours(frames)
        n_atoms = int(counts.sum())
        phi = self.one_particle(vectors)
        if self.purified:
            X = self._purified(phi, centre, n_atoms)
        else:
            A = [np.zeros((n_atoms,) + p.shape[1:]) for p in phi]
            for l, p in enumerate(phi):
                np.add.at(A[l], centre, p)
            X = self._self_interacting(A)
        return X, np.repeat(np.arange(len(frames)), counts)

    def structure_features(self, frames, reduce: str = "mean") -> np.ndarray:
        """Per-structure features: the mean (``reduce="mean"``) or the sum of the atoms' rows."""
        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        frames = list(frames)
        X, structure = self.atom_features(frames)
        out = np.zeros((len(frames), X.shape[1]))
        np.add.at(out, structure, X)
        if reduce == "mean":
            out /= np.bincount(structure, minlength=len(frames))[:, None]
        return out

    def _pair_coupling(self, a: np.ndarray, b: np.ndarray, l1: int, l2: int, L: int) -> np.ndarray:
        C = real_clebsch_gordan(l1, l2, L)
        return (a[:, :, None] * b[:, None, :]).reshape(len(a), a.shape[1] * b.shape[1]) @ C.reshape(-1, 2 * L + 1)

    def _self_interacting(self, A: list[np.ndarray]) -> np.ndarray:
        n_atoms = A[0].shape[0]
        X = np.empty((n_atoms, self.n_features))
        pairs: dict = {}

        def get(k, l):  # A_{n l m}(i) for one-particle function (n, l), n >= 1
            return A[l][:, k - 1, :]

        def coupled(n1, l1, n2, l2, L):
            key = (n1, l1, n2, l2, L)
            if key not in pairs:
                pairs[key] = self._pair_coupling(get(n1, l1), get(n2, l2), l1, l2, L)
            return pairs[key]

        for col, b in enumerate(self.basis):
            n, l = b.n, b.l
            if b.nu == 1:
                X[:, col] = get(n[0], 0)[:, 0]
            elif b.nu == 2:
                X[:, col] = np.einsum("im,im->i", get(n[0], l[0]), get(n[1], l[1]))
            elif b.nu == 3:
                X[:, col] = np.einsum("im,im->i", coupled(n[0], l[0], n[1], l[1], l[2]), get(n[2], l[2]))
            else:
                X[:, col] = np.einsum("im,im->i", coupled(n[0], l[0], n[1], l[1], b.L),
                                      coupled(n[2], l[2], n[3], l[3], b.L))
        return X

    def _tuples(self, centre: np.ndarray, n_atoms: int) -> dict:
        """Ordered tuples of distinct neighbours of each centre, as indices into the neighbour table.

        Returns {"pair": (centre, j1, j2), "triple": (centre, pair, j3), "quad": (centre, pair, pair)}
        where "pair" indexes the rows of the pair table.
        """
        counts = np.bincount(centre, minlength=n_atoms)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        nu = self.correlation_order
        total = int(np.sum(counts.astype(float) ** nu))
        if total > self.max_tuples:
            raise ValueError(
                f"purified ACE: about {total} neighbour {nu}-tuples (largest neighbourhood {counts.max()} atoms) "
                f"exceeds max_tuples={self.max_tuples}; use a smaller cutoff or the self-interacting flavour"
            )
        out = {"pair": [[], [], []], "triple": [[], [], []], "quad": [[], [], []]}
        pair_base = 0
        for i in np.flatnonzero(counts >= 2):
            k, s = int(counts[i]), int(starts[i])
            pp = np.array(list(itertools.permutations(range(k), 2)), dtype=int).reshape(-1, 2)
            out["pair"][0].append(np.full(len(pp), i))
            out["pair"][1].append(s + pp[:, 0])
            out["pair"][2].append(s + pp[:, 1])
            pair_index = {(a, b): pair_base + r for r, (a, b) in enumerate(map(tuple, pp))}
            if nu >= 3 and k >= 3:
                tt = np.array(list(itertools.permutations(range(k), 3)), dtype=int)
                out["triple"][0].append(np.full(len(tt), i))
                out["triple"][1].append(np.array([pair_index[(a, b)] for a, b, _ in tt]))
                out["triple"][2].append(s + tt[:, 2])
            if nu >= 4 and k >= 4:
                qq = np.array(list(itertools.permutations(range(k), 4)), dtype=int)
                out["quad"][0].append(np.full(len(qq), i))
                out["quad"][1].append(np.array([pair_index[(a, b)] for a, b, _, _ in qq]))
                out["quad"][2].append(np.array([pair_index[(c, d)] for _, _, c, d in qq]))
            pair_base += len(pp)
        return {key: tuple(np.concatenate(v) if v else np.zeros(0, int) for v in cols) for key, cols in out.items()}

    def _purified(self, phi: list[np.ndarray], centre: np.ndarray, n_atoms: int) -> np.ndarray:
        X = np.zeros((n_atoms, self.n_features))
        tuples = self._tuples(centre, n_atoms)
        pc, pj1, pj2 = tuples["pair"]
        tc, tp, tj3 = tuples["triple"]
        qc, qp1, qp2 = tuples["quad"]
        cache: dict = {}

        def get(rows, n, l):
            return phi[l][rows, n - 1, :]

        def coupled(n1, l1, n2, l2, L):  # per ordered pair of distinct neighbours
            key = (n1, l1, n2, l2, L)
            if key not in cache:
                cache[key] = self._pair_coupling(get(pj1, n1, l1), get(pj2, n2, l2), l1, l2, L)
            return cache[key]

        def scatter(col, rows, values):
            X[:, col] = np.bincount(rows, weights=values, minlength=n_atoms)

        for col, b in enumerate(self.basis):
            n, l = b.n, b.l
            if b.nu == 1:
                scatter(col, centre, phi[0][:, n[0] - 1, 0])
            elif b.nu == 2:
                scatter(col, pc, np.einsum("pm,pm->p", get(pj1, n[0], l[0]), get(pj2, n[1], l[1])))
            elif b.nu == 3:
                P = coupled(n[0], l[0], n[1], l[1], l[2])
                scatter(col, tc, np.einsum("tm,tm->t", P[tp], get(tj3, n[2], l[2])))
            else:
                P12 = coupled(n[0], l[0], n[1], l[1], b.L)
                P34 = coupled(n[2], l[2], n[3], l[3], b.L)
                scatter(col, qc, np.einsum("qm,qm->q", P12[qp1], P34[qp2]))
        return X
