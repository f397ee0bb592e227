"""experiments.cg_structure: g(r), Steinhardt q_l and q̄_l, densities, L1 distances, close contacts.

The references are direct numpy / scipy calculations (minimum image by brute force over
neighbouring images, spherical harmonics from scipy.special.sph_harm_y) and closed forms.
freud computes in single precision: its results are compared to rtol 1e-5.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

freud = pytest.importorskip("freud")
ase = pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from scipy.special import sph_harm_y  # noqa: E402
from scipy.stats import gaussian_kde, norm  # noqa: E402

from experiments import cg_structure as cs  # noqa: E402

# a general (rotated, skewed) cell: rows are the cell vectors, in A
TRICLINIC = np.array([[10.0, 0.0, 0.0], [1.5, 9.5, 0.0], [-1.0, 2.0, 10.5]])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = freud.parallel.get_num_threads()
    freud.parallel.set_num_threads(1)
    yield
    freud.parallel.set_num_threads(before if before > 0 else None)


def rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def cell_of(kind, rng):
    if kind == "cubic":
        return np.eye(3) * 10.0
    return TRICLINIC @ rotation(rng).T  # vectors rotated: the cell is not upper or lower triangular


def random_frames(rng, cell, n_beads, n_frames):
    frac = rng.uniform(size=(n_frames, n_beads, 3))
    return [Atoms(f"H{n_beads}", scaled_positions=f, cell=cell, pbc=True) for f in frac]


def mic_vectors(atoms):
    """(N, N, 3) minimum-image vectors r_j - r_i by brute force over the 27 neighbouring images."""
    cell = atoms.cell.array
    frac = atoms.get_scaled_positions(wrap=True)
    d = frac[None, :, :] - frac[:, None, :]
    d -= np.round(d)
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
    cand = (d[:, :, None, :] + shifts[None, None]) @ cell  # (N, N, 27, 3)
    best = np.argmin(np.linalg.norm(cand, axis=-1), axis=-1)
    return np.take_along_axis(cand, best[:, :, None, None], axis=2)[:, :, 0]


# ----------------------------------------------------------------------------- g(r)


@pytest.mark.parametrize("kind", ["cubic", "triclinic"])
def test_pair_correlation_matches_direct_histogram(rng, kind):
    n, bins, r_max = 40, 45, 4.5
    frames = random_frames(rng, cell_of(kind, rng), n, 3)
    r, g = cs.pair_correlation(frames, bins=bins, r_max=r_max)

    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    for atoms in frames:
        dist = np.linalg.norm(mic_vectors(atoms), axis=-1)[np.triu_indices(n, k=1)]
        counts += 2 * np.histogram(dist, bins=edges)[0]  # ordered pairs
    volume = abs(frames[0].cell.volume)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    # freud's 'exact' normalisation: ideal-gas count N * rho * V_shell with rho = N / V (not (N - 1) / V)
    expected = counts / len(frames) / (n * (n / volume) * shell)

    assert counts.sum() > 500  # enough pairs that a binning or normalisation slip shows
    np.testing.assert_allclose(r, 0.5 * (edges[1:] + edges[:-1]), rtol=1e-6)
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-12)
    assert g.dtype == np.float64 and g.shape == (bins,)


def test_pair_correlation_ideal_gas_tends_to_n_minus_1_over_n(rng):
    n = 40
    frames = random_frames(rng, np.eye(3) * 10.0, n, 300)
    r, g = cs.pair_correlation(frames, bins=49, r_max=4.9)
    tail = g[r > 3.0].mean()  # ~9e4 ordered pairs: relative noise ~0.3 %
    assert tail == pytest.approx((n - 1) / n, abs=0.01)
    assert abs(tail - 1.0) > 0.015  # the N vs N - 1 convention is resolved


def test_pair_correlation_frames_of_different_volumes_are_averaged(rng):
    small = random_frames(rng, np.eye(3) * 10.0, 40, 1)
    large = random_frames(rng, np.eye(3) * 12.0, 40, 1)
    _, g_small = cs.pair_correlation(small, bins=40, r_max=4.0)
    _, g_large = cs.pair_correlation(large, bins=40, r_max=4.0)
    _, g_both = cs.pair_correlation(small + large, bins=40, r_max=4.0)
    np.testing.assert_allclose(g_both, 0.5 * (g_small + g_large), rtol=1e-6)


# ----------------------------------------------------------------------------- Steinhardt


def direct_ql(atoms, l, r_max, average):
    vec = mic_vectors(atoms)
    dist = np.linalg.norm(vec, axis=-1)
    n = len(atoms)
    nb = (dist < r_max) & ~np.eye(n, dtype=bool)
    m = np.arange(-l, l + 1)
    qlm = np.full((n, 2 * l + 1), np.nan, dtype=complex)
    for i in range(n):
        v = vec[i, nb[i]]
        if len(v) == 0:
            continue
        rr = np.linalg.norm(v, axis=1)
        theta = np.arccos(np.clip(v[:, 2] / rr, -1.0, 1.0))  # polar angle
        phi = np.arctan2(v[:, 1], v[:, 0])
        qlm[i] = sph_harm_y(l, m[None, :], theta[:, None], phi[:, None]).mean(axis=0)
    if average:
        qlm = np.array([(qlm[i] + qlm[nb[i]].sum(axis=0)) / (1 + nb[i].sum()) for i in range(n)])
    return np.sqrt(4.0 * np.pi / (2 * l + 1) * np.sum(np.abs(qlm) ** 2, axis=1)), nb.sum(axis=1)


@pytest.mark.parametrize("kind", ["cubic", "triclinic"])
@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("l", [4, 6])
def test_steinhardt_matches_direct_spherical_harmonics(rng, kind, average, l):
    r_max = 2.6
    frames = random_frames(rng, cell_of(kind, rng), 40, 2)
    q = cs.steinhardt(frames, l=l, r_max=r_max, average=average)
    assert q.shape == (2, 40) and q.dtype == np.float64
    for k, atoms in enumerate(frames):
        expected, counts = direct_ql(atoms, l, r_max, average)
        assert counts.max() >= 3  # real environments, not only pairs
        np.testing.assert_allclose(q[k], expected, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize(("lattice", "a", "r_max", "l", "expected"), [
    ("fcc", 5.0, 4.2, 4, 0.190941),   # 12 neighbours at a / sqrt(2), next shell at a
    ("fcc", 5.0, 4.2, 6, 0.574524),
    ("sc", 3.0, 3.5, 4, 0.763763),    # 6 neighbours at a, next shell at a sqrt(2)
])
@pytest.mark.parametrize("average", [False, True])
def test_steinhardt_closed_forms_of_lattices(rng, lattice, a, r_max, l, expected, average):
    atoms = bulk("Ar", lattice, a=a, cubic=True).repeat((3, 3, 3) if lattice == "fcc" else (5, 5, 5))
    turned = atoms.copy()
    turned.rotate(37.0, (1.0, 2.0, 3.0), rotate_cell=True)  # a rotated cell: the frame is reoriented for freud
    q = cs.steinhardt([atoms, turned], l=l, r_max=r_max, average=average)
    np.testing.assert_allclose(q, expected, atol=2e-6)  # the closed forms are given to 6 decimals


def test_steinhardt_isolated_bead_is_nan():
    cell = np.eye(3) * 12.0
    atoms = Atoms("H4", positions=[[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [7.0, 7.0, 7.0]],
                  cell=cell, pbc=True)
    for average in (False, True):
        q = cs.steinhardt(atoms, l=4, r_max=3.0, average=average)
        assert q.shape == (1, 4)
        assert np.isnan(q).sum() == 1 and np.isnan(q[0, 3])
        assert np.all(np.isfinite(q[0, :3]))


# ----------------------------------------------------------------------------- densities and distances


def test_density_integrates_to_one_and_drops_non_finite(rng):
    values = rng.normal(0.12, 0.02, size=1000)
    grid = np.linspace(-0.1, 0.35, 9001)
    p = cs.density(np.concatenate([values, [np.nan, np.inf]]), grid, bandwidth=0.004)
    assert np.trapezoid(p, grid) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_array_equal(p, cs.density(values, grid, bandwidth=0.004))


def test_density_of_one_value_is_the_normal_pdf():
    grid = np.linspace(0.2, 0.4, 301)
    np.testing.assert_allclose(cs.density([0.3], grid, bandwidth=0.004), norm.pdf(grid, 0.3, 0.004), rtol=1e-12)


def test_density_matches_gaussian_kde_and_is_chunked(rng, monkeypatch):
    values = rng.normal(0.1, 0.03, size=700)
    grid = np.linspace(0.0, 0.2, 201).reshape(3, 67)  # any grid shape is kept
    h = 0.004
    kde = gaussian_kde(values, bw_method=h / values.std(ddof=1))  # kde's covariance is the data's (ddof 1) x factor^2
    p = cs.density(values, grid, bandwidth=h)
    assert p.shape == grid.shape
    np.testing.assert_allclose(p, kde(grid.ravel()).reshape(grid.shape), rtol=1e-10, atol=1e-12)
    monkeypatch.setattr(cs, "_KDE_BLOCK", 1000)  # 4 values per block, 175 blocks
    np.testing.assert_allclose(cs.density(values, grid, bandwidth=h), p, rtol=1e-12)


def test_l1_distance_of_shifted_gaussians():
    x = np.linspace(-10.0, 12.0, 20001)
    mu = 1.3
    p, q = norm.pdf(x), norm.pdf(x, mu)
    assert cs.l1_distance(x, p, q) == pytest.approx(2 * (2 * norm.cdf(mu / 2) - 1), rel=1e-6)
    assert cs.l1_distance(x, q, p) == cs.l1_distance(x, p, q)
    assert cs.l1_distance(x, p, p) == 0.0
    # g(r)-like profiles: a constant offset c over [0, 5] gives 5 c
    r = np.linspace(0.0, 5.0, 11)
    assert cs.l1_distance(r, np.ones(11), np.full(11, 1.2)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- contacts


def test_close_contacts_across_the_boundary_and_min_distance():
    L = 15.66
    positions = [[0.5, 3.0, 3.0], [L - 1.5, 3.0, 3.0],   # 2.0 A apart through the x boundary
                 [5.0, 8.0, 8.0], [8.0, 8.0, 8.0],       # 3.0 A apart
                 [12.0, 12.0, 12.0]]
    atoms = Atoms("H5", positions=positions, cell=np.eye(3) * L, pbc=True)
    pairs = cs.close_contacts(atoms, cutoff=2.5)
    np.testing.assert_array_equal(pairs, [[0, 1]])
    assert pairs.dtype.kind == "i"
    np.testing.assert_array_equal(cs.close_contacts(atoms, cutoff=3.1), [[0, 1], [2, 3]])
    assert cs.close_contacts(atoms, cutoff=1.9).shape == (0, 2)
    assert cs.min_distance(atoms) == pytest.approx(2.0, rel=1e-12)


def test_close_contacts_lists_each_pair_once_in_a_small_cell():
    # cutoff 3.5 A in a 4 A cell: the pair is seen through two images (1 A and 3 A), listed once; no self pairs
    atoms = Atoms("H2", positions=[[0.5, 2.0, 2.0], [1.5, 2.0, 2.0]], cell=np.eye(3) * 4.0, pbc=True)
    np.testing.assert_array_equal(cs.close_contacts(atoms, cutoff=3.5), [[0, 1]])
    assert cs.min_distance(atoms) == pytest.approx(1.0, rel=1e-12)


# ----------------------------------------------------------------------------- bad input


def test_bad_frames_are_refused(rng):
    good = random_frames(rng, np.eye(3) * 10.0, 20, 1)[0]
    with pytest.raises(ValueError, match="frames: expected at least one"):
        cs.pair_correlation([])
    open_frame = good.copy()
    open_frame.pbc = [True, True, False]
    with pytest.raises(ValueError, match=r"frames\[1\]: expected a frame periodic"):
        cs.steinhardt([good, open_frame])
    no_cell = Atoms("H3", positions=rng.uniform(size=(3, 3)), pbc=True)
    with pytest.raises(ValueError, match=r"frames\[0\]: expected a 3D cell"):
        cs.pair_correlation([no_cell])
    with pytest.raises(ValueError, match="same number of beads"):
        cs.pair_correlation([good, good[:-1]])


def test_bad_parameters_are_refused(rng):
    frames = random_frames(rng, np.eye(3) * 10.0, 20, 1)
    with pytest.raises(ValueError, match="r_max: expected less than half the smallest cell width, 5 A"):
        cs.pair_correlation(frames, r_max=5.0)
    with pytest.raises(ValueError, match="r_max: expected less than half"):
        cs.steinhardt(frames, r_max=6.0)
    with pytest.raises(ValueError, match="bins: expected an integer >= 1"):
        cs.pair_correlation(frames, bins=0)
    with pytest.raises(ValueError, match="l: expected an integer >= 0"):
        cs.steinhardt(frames, l=-1)
    with pytest.raises(ValueError, match="bandwidth: expected a finite positive"):
        cs.density([0.1], [0.0, 0.1], bandwidth=0.0)
    with pytest.raises(ValueError, match="values: expected at least one finite value"):
        cs.density([np.nan], [0.0, 0.1])
    with pytest.raises(ValueError, match="q: expected the shape of x"):
        cs.l1_distance([0.0, 1.0], [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="cutoff: expected a finite positive"):
        cs.close_contacts(frames[0], cutoff=-1.0)
