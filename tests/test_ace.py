"""ACE invariants: symmetry, body order of the purified blocks, and independent constructions."""

import itertools
import math

import numpy as np
import pytest
from ase import Atoms
from numpy.polynomial import chebyshev, legendre
from scipy.spatial.transform import Rotation

from rigidity.descriptors.ace import ACE, real_clebsch_gordan, real_spherical_harmonics

SMALL = dict(cutoff=5.5, total_degree=[8, 7, 7, 6], radial_inner=1.5)


def cluster(n, seed=0, spread=1.6):
    """n Si atoms, no two closer than 1.9 A, all within a 5.5 A cutoff of each other."""
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.normal(scale=spread, size=3)
        if all(np.linalg.norm(p - q) > 1.9 for q in pos) and all(np.linalg.norm(p - q) < 5.2 for q in pos):
            pos.append(p)
    return Atoms("Si" * n, positions=np.array(pos))


@pytest.fixture(scope="module")
def both():
    return {"self_interacting": ACE(**SMALL), "purified": ACE(**SMALL, purified=True)}


# ----------------------------------------------------------------------------------------------
# spherical harmonics and coupling coefficients


def test_real_spherical_harmonics_closed_forms(rng):
    v = rng.normal(size=(20, 3))
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    Y = real_spherical_harmonics(2, v)
    np.testing.assert_allclose(Y[0], np.full((20, 1), 1 / math.sqrt(4 * math.pi)), rtol=1e-12)
    # l = 1: sqrt(3 / 4 pi) (y, z, x) for m = -1, 0, 1
    np.testing.assert_allclose(Y[1], math.sqrt(3 / (4 * math.pi)) * u[:, [1, 2, 0]], rtol=1e-12, atol=1e-14)
    # addition theorem: sum_m Y_lm(a) Y_lm(b) = (2l + 1) / (4 pi) P_l(a.b)
    a, b = real_spherical_harmonics(6, v[:10]), real_spherical_harmonics(6, v[10:])
    cos = np.sum(u[:10] * u[10:], axis=1)
    for l in range(7):
        expected = (2 * l + 1) / (4 * math.pi) * legendre.legval(cos, np.eye(l + 1)[l])
        np.testing.assert_allclose(np.sum(a[l] * b[l], axis=1), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("l1,l2,L", [(1, 1, 0), (1, 1, 1), (1, 2, 2), (2, 2, 3), (3, 2, 4), (4, 4, 4), (5, 3, 6)])
def test_real_clebsch_gordan_couples_to_an_invariant(l1, l2, L, rng):
    v = rng.normal(size=(3, 3))
    R = Rotation.random(random_state=int(rng.integers(1000))).as_matrix()
    C = real_clebsch_gordan(l1, l2, L)

    def triple(vectors):
        Ys = [real_spherical_harmonics(max(l1, l2, L), x[None])[l][0] for x, l in zip(vectors, (l1, l2, L))]
        return np.einsum("abc,a,b,c->", C, *Ys)

    value, rotated = triple(v), triple(v @ R.T)
    assert abs(value - rotated) < 1e-12 * max(1.0, abs(value))
    assert np.linalg.norm(C) > 0.5  # not the zero tensor


def test_clebsch_gordan_rejects_impossible_coupling():
    with pytest.raises(ValueError, match="no coupling of l1=1 and l2=1 to L=3"):
        real_clebsch_gordan(1, 1, 3)


# ----------------------------------------------------------------------------------------------
# the basis


def test_paper_block_sizes():
    """ACE1x's basis at the paper's degrees has nu = 3 and 4 blocks of 505 and 127 (SETTINGS.md)."""
    ace = ACE(total_degree=[24, 20, 16, 12], angular_weight=1.5)
    sizes = ace.block_sizes
    assert sizes["nu=3"] == 505 and sizes["nu=4"] == 127
    assert sizes["nu=1"] == 24  # n = 1..24, l = 0 (ACE1x adds 24 pair functions: 48)
    # nu = 2, brute force: 1 <= n1 <= n2, n1 + n2 + 2 * 1.5 * l <= 20
    pairs = sum(1 for l in range(10) for n1 in range(1, 21) for n2 in range(n1, 21) if n1 + n2 + 3 * l <= 20)
    assert sizes["nu=2"] == pairs == 274  # paper: 273
    assert ace.n_features == sum(sizes.values())
    assert [ace.basis[s.start].nu for s in ace.blocks.values()] == [1, 2, 3, 4]


def test_blocks_are_linearly_independent():
    """Dependent couplings of repeated one-particle functions are pruned: every block has full rank."""
    ace = ACE(cutoff=5.5, total_degree=[6, 8, 8, 8], radial_inner=1.5)
    frames = [cluster(9, seed=s, spread=2.0) for s in range(60)]
    X, _ = ace.atom_features(frames)
    for name, sl in ace.blocks.items():
        sv = np.linalg.svd(X[:, sl] / np.linalg.norm(X[:, sl], axis=0), compute_uv=False)
        assert sv[-1] / sv[0] > 1e-9, (name, sv[-1] / sv[0])
    # repeated factors with several couplings exist in this basis, and some were pruned
    repeated = [b for b in ace.basis if b.nu == 4 and len(set(zip(b.n, b.l))) < 4]
    assert repeated


# ----------------------------------------------------------------------------------------------
# symmetry


@pytest.mark.parametrize("flavour", ["self_interacting", "purified"])
def test_invariant_to_rotation_reflection_translation_and_permutation(both, flavour, rng):
    ace = both[flavour]
    atoms = cluster(6, seed=3)
    X0, _ = ace.atom_features([atoms])
    assert np.abs(X0).max() > 0.1
    perm = rng.permutation(len(atoms))
    R = Rotation.random(random_state=7).as_matrix()
    for M in (R, -R):  # proper rotation and rotation-inversion
        moved = atoms[perm]
        moved.positions = moved.positions @ M.T + np.array([3.0, -1.0, 2.0])
        X1, _ = ace.atom_features([moved])
        np.testing.assert_allclose(X1, X0[perm], rtol=1e-10, atol=1e-12)


def test_structure_features_mean_and_sum(both):
    ace = both["self_interacting"]
    frames = [cluster(3, seed=1), cluster(5, seed=2)]
    X, index = ace.atom_features(frames)
    assert index.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(ace.structure_features(frames, "sum")[1], X[3:].sum(axis=0))
    np.testing.assert_allclose(ace.structure_features(frames)[0], X[:3].mean(axis=0))


# ----------------------------------------------------------------------------------------------
# body order


def test_purified_blocks_vanish_below_their_body_order(both):
    for n_atoms in (2, 3, 4):
        atoms = cluster(n_atoms, seed=n_atoms)
        blocks = both["purified"].blocks
        P, _ = both["purified"].atom_features([atoms])
        S, _ = both["self_interacting"].atom_features([atoms])
        for nu in range(1, 5):
            sl = blocks[f"nu={nu}"]
            if nu >= n_atoms:  # an atom has n_atoms - 1 neighbours: nu-tuples of distinct ones need nu of them
                assert np.all(P[:, sl] == 0), (n_atoms, nu)
            else:
                assert np.abs(P[:, sl]).max() > 1e-6, (n_atoms, nu)
            assert np.abs(S[:, sl]).max() > 1e-6, (n_atoms, nu)  # self-interaction: never zero
    # nu = 1 is the same two-body sum in both flavours
    atoms = cluster(5, seed=11)
    sl = both["purified"].blocks["nu=1"]
    np.testing.assert_allclose(both["purified"].atom_features([atoms])[0][:, sl],
                               both["self_interacting"].atom_features([atoms])[0][:, sl], rtol=1e-12)


def test_purified_nu2_is_a_direct_sum_over_distinct_neighbour_pairs(both):
    """nu = 2 feature (n1, n2, l) = sum_{j != k} R_n1(r_j) R_n2(r_k) (2l + 1) P_l(cos theta_jk), from scratch."""
    ace = both["purified"]
    atoms = cluster(5, seed=5)
    X, _ = ace.atom_features([atoms])
    rc, r0 = SMALL["cutoff"], SMALL["radial_inner"]

    def radial(n, r):  # Chebyshev T_{n-1} on [r0, rc] with the (1 - r / rc)^2 envelope
        return chebyshev.chebval(2 * (r - r0) / (rc - r0) - 1, np.eye(n)[n - 1]) * (1 - r / rc) ** 2

    i = 0
    vec = atoms.positions - atoms.positions[i]
    others = [j for j in range(len(atoms)) if j != i]
    checked = 0
    for col in range(ace.blocks["nu=2"].start, ace.blocks["nu=2"].stop):
        b = ace.basis[col]
        (n1, n2), l = b.n, b.l[0]
        total = 0.0
        for j, k in itertools.permutations(others, 2):
            rj, rk = np.linalg.norm(vec[j]), np.linalg.norm(vec[k])
            cos = vec[j] @ vec[k] / (rj * rk)
            total += radial(n1, rj) * radial(n2, rk) * (2 * l + 1) * legendre.legval(cos, np.eye(l + 1)[l])
        assert X[i, col] == pytest.approx(total, rel=1e-10, abs=1e-12), b.label
        checked += 1
    assert checked == ace.block_sizes["nu=2"]


def _subset_expansion(ace_si, atoms, centre, nu):
    """Purified nu block of ``centre`` by inclusion-exclusion over sub-clusters, from self-interacting features.

    A self-interacting nu feature of the sub-cluster {centre} + U sums the coupled
    product over all nu-tuples of neighbours in U, repeats included. Tuples that use
    every atom of a set T are E(T) = sum_{U in T} (-1)^{|T| - |U|} SI(U); the
    distinct-neighbour sum is the sum of E(T) over the sets T of nu neighbours.
    """
    sl = ace_si.blocks[f"nu={nu}"]
    others = [j for j in range(len(atoms)) if j != centre]
    memo = {}

    def si(U):
        if U not in memo:
            if not U:
                memo[U] = np.zeros(sl.stop - sl.start)
            else:
                sub = atoms[[centre, *U]]
                memo[U] = ace_si.atom_features([sub])[0][0, sl]
        return memo[U]

    total = np.zeros(sl.stop - sl.start)
    for T in itertools.combinations(others, nu):
        for size in range(len(T) + 1):
            for U in itertools.combinations(T, size):
                total += (-1) ** (nu - size) * si(U)
    return total


@pytest.mark.parametrize("nu", [2, 3, 4])
def test_purified_block_equals_inclusion_exclusion_of_self_interacting_ones(both, nu):
    atoms = cluster(6, seed=21)
    P, _ = both["purified"].atom_features([atoms])
    sl = both["purified"].blocks[f"nu={nu}"]
    for centre in (0, 4):
        expected = _subset_expansion(both["self_interacting"], atoms, centre, nu)
        assert np.abs(expected).max() > 1e-6
        np.testing.assert_allclose(P[centre, sl], expected, rtol=1e-9, atol=1e-11 * np.abs(expected).max())


def test_periodic_structures_use_every_image():
    """Simple cubic Si (one atom per cell): its environment is made of its own periodic images."""
    a = 2.6
    crystal = Atoms("Si", cell=np.eye(3) * a, pbc=True, positions=[[0, 0, 0]])
    ace = ACE(cutoff=3.0, total_degree=[4, 4], radial_inner=1.5, purified=True)
    X, _ = ace.atom_features([crystal])
    # 6 neighbours at distance a: nu = 1 is 6 R_n(a)
    np.testing.assert_allclose(X[0, ace.blocks["nu=1"]], 6 * ace.radial(np.array([a]))[0][0, :4], rtol=1e-12)
    # the same environment written out as an explicit cluster of 7 atoms
    shell = np.array([[a, 0, 0], [-a, 0, 0], [0, a, 0], [0, -a, 0], [0, 0, a], [0, 0, -a]])
    cl = Atoms("Si7", positions=np.vstack([[0, 0, 0], shell]))
    Xc, _ = ace.atom_features([cl])
    np.testing.assert_allclose(X[0], Xc[0], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# the Laplacian-eigenstate radial basis (LE-ACE)


def test_spherical_bessel_zeros_closed_form_and_interlacing():
    from scipy.special import spherical_jn

    from rigidity.descriptors.ace import spherical_bessel_zeros

    np.testing.assert_allclose(spherical_bessel_zeros(0, 6), np.pi * np.arange(1, 7), rtol=1e-12)
    for l in (1, 2, 5):
        z = spherical_bessel_zeros(l, 5)
        assert np.abs(spherical_jn(l, z)).max() < 1e-12
        below = spherical_bessel_zeros(l - 1, 6)
        assert np.all(below[:5] < z) and np.all(z < below[1:6])  # zeros of j_{l-1} and j_l interlace


def test_laplacian_radial_basis_is_orthonormal_and_vanishes_at_the_cutoff():
    from scipy.integrate import quad

    ace = ACE(cutoff=4.5, total_degree=[400, 300, 200], radial="laplacian", species="C")
    rc = ace.cutoff
    at_cutoff = ace.radial(np.array([rc * (1 - 1e-12), rc, rc + 0.3]))
    for l, R in enumerate(at_cutoff):
        if R.shape[1]:
            assert np.abs(R).max() < 1e-9, l
    for l in (0, 1, 3):
        n = ace.max_n[l]
        assert n >= 2
        def product(r, l=l, i=0, j=0):
            R = ace.radial(np.array([r]))[l][0]
            return R[i] * R[j] * r * r

        gram = np.array([[quad(product, 0, rc, args=(l, i, j), limit=200)[0] for j in range(n)] for i in range(n)])
        np.testing.assert_allclose(gram, np.eye(n), atol=1e-8)
    # truncation by eigenvalue: every factor of every basis function has z_nl^2 within its block's budget
    from rigidity.descriptors.ace import spherical_bessel_zeros

    for b in ace.basis:
        total = sum(spherical_bessel_zeros(l, n)[n - 1] ** 2 for n, l in zip(b.n, b.l))
        assert total <= ace.total_degree[b.nu - 1] + 1e-9


def test_laplacian_ace_is_invariant(rng):
    atoms = cluster(7, seed=8)
    atoms.set_chemical_symbols(["C"] * 7)
    ace = ACE(cutoff=5.5, total_degree=[300, 200, 150, 120], radial="laplacian", species="C")
    X0, _ = ace.atom_features([atoms])
    perm = rng.permutation(7)
    moved = atoms[perm]
    moved.positions = moved.positions @ Rotation.random(random_state=3).as_matrix().T - 1.0
    np.testing.assert_allclose(ace.atom_features([moved])[0], X0[perm], rtol=1e-9, atol=1e-12)
    assert all(size > 0 for size in ace.block_sizes.values())


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(cutoff=-1.0), "cutoff must be a positive distance"),
        (dict(total_degree=[5, 1]), r"total_degree\[1\] = 1.0 leaves block nu=2 empty"),
        (dict(total_degree=[5, 5, 5, 5, 5]), "at most 4"),
        (dict(radial_inner=6.0), r"radial_inner must be in \[0, cutoff=5.5\)"),
        (dict(angular_weight=0), "angular_weight must be positive"),
        (dict(radial="gaussian"), "radial must be 'chebyshev' or 'laplacian'"),
        (dict(radial="laplacian", total_degree=[5.0]),
         r"total_degree\[0\] = 5.0 leaves block nu=1 empty \(it must be >= 9.8696"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ACE(**kwargs)


def test_bad_structures_are_named(both):
    with pytest.raises(ValueError, match=r"frame 1: elements \['C'\] found"):
        both["self_interacting"].atom_features([cluster(3), Atoms("SiC", positions=[[0, 0, 0], [2, 0, 0]])])
    with pytest.raises(ValueError, match="frame 0: two atoms at the same position"):
        both["purified"].atom_features([Atoms("Si2", positions=[[0, 0, 0], [0, 0, 0]])])
    with pytest.raises(ValueError, match="reduce must be 'mean' or 'sum'"):
        both["purified"].structure_features([cluster(3)], reduce="max")
    tight = ACE(**SMALL, purified=True, max_tuples=100)
    with pytest.raises(ValueError, match="exceeds max_tuples=100"):
        tight.atom_features([cluster(6)])
