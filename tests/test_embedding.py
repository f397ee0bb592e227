"""Small structures around one atom (paper Sec. IV.2, Fig. 5a): cluster, periodic and high-symmetry embeddings.

Every check of a result goes through ASE's own neighbour list (periodic images included),
independent of the library's target-only neighbour search.
"""

import math

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.spatial.distance import cdist

from rigidity.embedding import (
    carve_cluster,
    environment,
    high_symmetry_embedding,
    hs_carve_radius,
    periodic_cell_edge,
    periodic_embedding,
)

CUTOFF = 3.7  # A, the paper's Fig. 5 cutoff
A_DIAMOND = 3.567  # A


def random_carbon(n=240, density=2.6, d_min=1.2, seed=7):
    """A liquid-like periodic carbon cell: random sequential addition with a hard-core distance (A)."""
    rng = np.random.default_rng(seed)
    edge = (n * 12.011 / (density * 0.602214076)) ** (1 / 3)  # density in g/cm^3
    pos = np.empty((0, 3))
    while len(pos) < n:
        c = rng.uniform(0.0, edge, size=3)
        d = pos - c
        d -= edge * np.round(d / edge)
        if (np.einsum("ij,ij->i", d, d) >= d_min**2).all():
            pos = np.vstack([pos, c])
    return Atoms(f"C{n}", positions=pos, cell=[edge] * 3, pbc=True)


@pytest.fixture(scope="module")
def liquid():
    return random_carbon()


def ase_environment(atoms, index, cutoff):
    """(distances, vectors, numbers) of atom ``index`` within cutoff, from ASE's neighbour list."""
    i, j, d, D = neighbor_list("ijdD", atoms, cutoff)
    keep = i == index
    order = np.argsort(d[keep], kind="stable")
    return d[keep][order], D[keep][order], atoms.numbers[j[keep]][order]


def assert_same_environment(source, index, result, cutoff=CUTOFF):
    d0, v0, z0 = ase_environment(source, index, cutoff)
    d1, v1, z1 = ase_environment(result, 0, cutoff)
    assert len(d1) == len(d0), f"{len(d1)} neighbours in the result, {len(d0)} in the source"
    np.testing.assert_allclose(d1, d0, rtol=0, atol=1e-10)
    # vectors matched one to one: each source vector has exactly one result vector within 1e-10
    close = cdist(v0, v1) < 1e-10
    assert (close.sum(axis=0) == 1).all() and (close.sum(axis=1) == 1).all()
    assert (z1[np.argmax(close, axis=1)] == z0).all()


def assert_valid_cell(atoms, min_distance):
    assert atoms.pbc.all()
    assert atoms.get_volume() > 0
    s = atoms.get_scaled_positions(wrap=False)
    assert (s >= -1e-12).all() and (s <= 1 + 1e-12).all()
    i, _ = neighbor_list("ij", atoms, min_distance)
    assert len(i) == 0, "two atoms (or an atom and an image) closer than min_distance"


def buffer_displacements(source, index, embedded):
    """Actual displacement of every buffer atom: its vector from the target in the result minus in the source."""
    edge = embedded.info["cell_edge"]
    src = source.positions[embedded.arrays["original_index"]] - source.positions[index]
    src -= source.cell.array[0, 0] * np.round(src / source.cell.array[0, 0])  # cubic source cell
    new = embedded.positions - embedded.positions[0]
    delta = new - src
    delta -= edge * np.round(delta / edge)
    return delta[embedded.arrays["buffer"]]


# ----------------------------------------------------------------------------- environment


def test_environment_matches_ase(liquid):
    env = environment(liquid, 11, CUTOFF)
    d, v, z = ase_environment(liquid, 11, CUTOFF)
    np.testing.assert_allclose(env.distances, d, rtol=0, atol=1e-12)
    assert ((cdist(env.vectors, v) < 1e-12).sum(axis=1) == 1).all()
    assert (env.numbers == z).all()
    assert (env.indices != 11).all()  # the centre is not its own neighbour in a large cell


def test_environment_counts_own_images_in_a_small_cell():
    atoms = Atoms("C", positions=[[0.3, 0.2, 0.1]], cell=[2.0, 2.0, 2.0], pbc=True)
    env = environment(atoms, 0, 3.0)  # 6 images at 2 A and 12 at 2.83 A; corners at 3.46 A are out
    assert len(env.distances) == 18 and (env.indices == 0).all()
    np.testing.assert_allclose(env.distances, ase_environment(atoms, 0, 3.0)[0], rtol=0, atol=1e-12)
    triclinic = Atoms("CC", positions=[[0, 0, 0], [0.9, 0.8, 0.7]],
                      cell=[[2.5, 0, 0], [1.2, 2.3, 0], [0.4, 0.9, 2.6]], pbc=True)
    for cutoff in (1.0, 4.0):
        np.testing.assert_allclose(environment(triclinic, 1, cutoff).distances,
                                   ase_environment(triclinic, 1, cutoff)[0], atol=1e-12)
    slab = triclinic.copy()
    slab.pbc = [True, True, False]
    np.testing.assert_allclose(environment(slab, 0, 4.0).distances, ase_environment(slab, 0, 4.0)[0], atol=1e-12)


# ----------------------------------------------------------------------------- cluster


def test_carved_cluster_keeps_the_environment(liquid):
    for index in (0, 57, -1):
        cluster = carve_cluster(liquid, index, CUTOFF)
        source_index = index % len(liquid)
        assert_same_environment(liquid, source_index, cluster)
        assert not cluster.pbc.any() and cluster.cell.volume == 0
        np.testing.assert_array_equal(cluster.positions[0], 0.0)
        assert cluster.info["embedding"] == "cluster"
        assert cluster.info["centre_index"] == source_index and cluster.info["centre_atom"] == 0
        assert cluster.info["cutoff"] == CUTOFF
        assert cluster.arrays["original_index"][0] == source_index
        # the cluster is exactly the environment: every atom but the centre is a neighbour
        assert len(cluster) == 1 + len(ase_environment(liquid, source_index, CUTOFF)[0])
        assert np.linalg.norm(cluster.positions, axis=1).max() < CUTOFF


def test_carved_cluster_of_a_molecule_has_no_images():
    atoms = Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                    [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])
    cluster = carve_cluster(atoms, 1, 1.2)
    assert cluster.get_chemical_symbols() == ["H", "C"]


# ----------------------------------------------------------------------------- periodic embedding


@pytest.mark.parametrize("cell", ["paper", "smallest"])
def test_periodic_embedding_keeps_the_environment_and_the_contacts(liquid, cell):
    for seed, index in enumerate((0, 5, 99, 180)):
        emb = periodic_embedding(liquid, index, CUTOFF, rng=seed, cell=cell)
        assert_same_environment(liquid, index, emb)
        assert_valid_cell(emb, 1.0)
        edge = emb.info["cell_edge"]
        np.testing.assert_allclose(emb.cell.array, np.eye(3) * edge)
        if cell == "paper":  # the paper's fixed edge: the cube, the contact distance and 1.5 sigma
            assert edge == pytest.approx(2 * CUTOFF + 1.0 + 1.5 * 0.2, abs=1e-12)
        else:  # the smallest contact-free edge on the 0.1 A grid from the cube's
            assert edge >= 2 * CUTOFF
            assert math.isclose((edge - 2 * CUTOFF) / 0.1, round((edge - 2 * CUTOFF) / 0.1), abs_tol=1e-9)
            if edge > 2 * CUTOFF + 1e-9:  # one step less would break a contact or let an image in
                with pytest.raises(ValueError, match="no cell edge"):
                    periodic_embedding(liquid, index, CUTOFF, rng=seed, cell=cell,
                                       max_enlargement=edge - 2 * CUTOFF - 0.1 + 1e-9)
        assert emb.info["embedding"] == "periodic" and emb.info["sigma"] == 0.2 and emb.info["cube_edge"] == 2 * CUTOFF
        assert emb.info["cell_rule"] == cell
        assert emb.info["n_environment"] + emb.info["n_buffer"] == len(emb)
        assert emb.info["n_buffer"] > 10
        # the buffer is the rest of the tight cube around the target: before displacement
        # every buffer atom had |d_k| < cutoff, |d| >= cutoff
        d = liquid.positions[emb.arrays["original_index"]] - liquid.positions[index]
        d -= liquid.cell.array[0, 0] * np.round(d / liquid.cell.array[0, 0])
        buf = emb.arrays["buffer"]
        assert (np.abs(d[buf]) <= CUTOFF).all() and (np.linalg.norm(d[buf], axis=1) >= CUTOFF).all()
        assert (np.linalg.norm(d[~buf], axis=1) < CUTOFF).all()
        n_cube = np.all(np.abs(_all_vectors(liquid, index)) < CUTOFF, axis=1).sum() + 1
        assert len(emb) == n_cube


def test_paper_cell_edge_and_carve_radius_follow_the_papers_formulas():
    # section_4b/embed_FG.py and embed_SC.py at the paper's r_cut 3.75 A, contact 1 A, sigma 0.2 A, buffer 0
    assert periodic_cell_edge(3.75, 0.0, 1.0, 0.2) == pytest.approx(8.8, abs=1e-12)
    assert hs_carve_radius(3.75, 0.0, 1.0, 0.2) == pytest.approx(5.05, abs=1e-12)
    for r, b, d, s in ((3.7, 0.0, 1.0, 0.2), (3.75, 1.0, 0.8, 0.1), (2.0, 5.0, 1.2, 0.0)):
        assert periodic_cell_edge(r, b, d, s) == pytest.approx(2 * (r + b) + d + 1.5 * s, abs=1e-12)
        assert hs_carve_radius(r, b, d, s) == pytest.approx(r + b + d + 1.5 * s, abs=1e-12)
    with pytest.raises(ValueError, match=r"buffer must be .* -1"):
        periodic_cell_edge(3.75, -1)


@pytest.mark.parametrize("buffer", [0.0, 1.0])
def test_paper_cell_keeps_displaced_buffer_atoms_out_of_the_target_cutoff(liquid, buffer):
    """sigma 0.5 A: an unconstrained draw would move many buffer atoms inside r_c (the paper's code lets it)."""
    sigma, edge = 0.5, periodic_cell_edge(CUTOFF, buffer, 1.0, 0.5)
    for seed, index in enumerate((3, 60, 200)):
        emb = periodic_embedding(liquid, index, CUTOFF, sigma=sigma, rng=seed, buffer=buffer)
        assert emb.info["cell_edge"] == pytest.approx(edge)
        assert_same_environment(liquid, index, emb)  # ASE: no extra atom or image within r_c of the target
        assert_valid_cell(emb, 1.0)
        # how many buffer atoms an unconstrained N(0, sigma) draw from the same cube would have let in
        src = liquid.positions[emb.arrays["original_index"]] - liquid.positions[index]
        src -= liquid.cell.array[0, 0] * np.round(src / liquid.cell.array[0, 0])
        free = src + np.random.default_rng(seed).normal(0.0, sigma, size=src.shape)
        entered = np.linalg.norm(free[emb.arrays["buffer"]], axis=1) < CUTOFF
        assert entered.sum() >= 1


def test_embedded_target_has_the_features_of_the_source(liquid):
    """LE-ACE (the Fig. 5 model, cutoff 3.7 A) of the target: unchanged to rounding by every construction."""
    from rigidity.descriptors.ace import ACE

    ace = ACE(cutoff=CUTOFF, total_degree=[200, 120, 80], radial="laplacian", species="C")
    index = 17
    built = [periodic_embedding(liquid, index, CUTOFF, rng=0, cell=c, sigma=0.3) for c in ("paper", "smallest")]
    built += [high_symmetry_embedding(liquid, index, CUTOFF, rng=0, carve_radius=c, sigma=0.3)[0]
              for c in ("paper", "cutoff")]
    built.append(carve_cluster(liquid, index, CUTOFF))
    A, _ = ace.atom_features([liquid])
    B, structure = ace.atom_features(built)
    first = np.concatenate([[0], np.cumsum(np.bincount(structure))[:-1]])
    np.testing.assert_allclose(B[first], np.repeat(A[index][None], len(built), axis=0), rtol=1e-10,
                               atol=1e-12 * np.abs(A[index]).max())
    assert np.abs(A - A[index]).max() > 1e-3 * np.abs(A[index]).max()  # the features do tell atoms apart


def _all_vectors(atoms, index):
    """Minimum-image vectors from atom ``index`` (enough for a cube of edge 2 * CUTOFF in this cubic cell)."""
    edge = atoms.cell.array[0, 0]
    assert edge > 2 * CUTOFF
    d = np.delete(atoms.positions - atoms.positions[index], index, axis=0)
    return d - edge * np.round(d / edge)


def test_periodic_embedding_is_random_but_reproducible(liquid):
    a = periodic_embedding(liquid, 42, CUTOFF, rng=1)
    b = periodic_embedding(liquid, 42, CUTOFF, rng=1)
    c = periodic_embedding(liquid, 42, CUTOFF, rng=np.random.default_rng(2))
    d = periodic_embedding(liquid, 42, CUTOFF)  # fresh entropy
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.cell.array, b.cell.array)
    da, dc, dd = (buffer_displacements(liquid, 42, x) for x in (a, c, d))
    assert np.abs(da - dc).min(axis=1).max() > 1e-3 and np.abs(da - dd).max() > 1e-3
    assert_same_environment(liquid, 42, c)
    assert_same_environment(liquid, 42, d)


def test_buffer_displacements_have_the_requested_spread(liquid):
    sigma = 0.2
    rng = np.random.default_rng(0)
    deltas = np.vstack(
        [buffer_displacements(liquid, i, periodic_embedding(liquid, i, CUTOFF, sigma=sigma, rng=rng))
         for i in range(0, 240, 24)]
    )
    assert deltas.size > 500
    assert abs(deltas.std() - sigma) < 0.3 * sigma
    assert abs(deltas.mean()) < 0.05
    assert (np.abs(deltas) > 0).all()


def test_periodic_embedding_with_a_buffer_shell(liquid):
    emb = periodic_embedding(liquid, 3, CUTOFF, buffer=1.0, rng=0)
    assert emb.info["cube_edge"] == 2 * (CUTOFF + 1.0)
    assert emb.info["cell_edge"] >= 2 * (CUTOFF + 1.0)
    assert_same_environment(liquid, 3, emb)
    assert_valid_cell(emb, 1.0)


def test_periodic_embedding_of_a_non_periodic_structure(liquid):
    cluster = carve_cluster(liquid, 8, 6.0)
    emb = periodic_embedding(cluster, 0, CUTOFF, rng=0)
    assert_same_environment(cluster, 0, emb)
    assert_valid_cell(emb, 1.0)


def test_embeddings_of_a_cell_smaller_than_the_cube():
    from ase.build import bulk

    small = bulk("C", "diamond", a=A_DIAMOND, cubic=True).repeat(2)  # edge 7.13 A < cube edge 7.4 A
    small.rattle(0.05, seed=2)
    for emb in (periodic_embedding(small, 5, CUTOFF, rng=0), high_symmetry_embedding(small, 5, CUTOFF, rng=0)[0]):
        assert_same_environment(small, 5, emb)
        assert_valid_cell(emb, 1.0)
    cluster = carve_cluster(small, 5, CUTOFF)
    assert_same_environment(small, 5, cluster)
    assert np.bincount(cluster.arrays["original_index"]).max() > 1  # images of one atom are separate atoms


# ----------------------------------------------------------------------------- high-symmetry embedding


def test_pure_diamond_is_perfect(liquid):
    _, pure = high_symmetry_embedding(liquid, 0, CUTOFF, rng=0)
    bond = A_DIAMOND * math.sqrt(3) / 4
    i, d = neighbor_list("id", pure, 2.0)  # between the first (1.54 A) and second (2.52 A) shells
    np.testing.assert_array_equal(np.bincount(i, minlength=len(pure)), 4)
    np.testing.assert_allclose(d, bond, rtol=0, atol=1e-10)
    assert pure.pbc.all() and len(pure) == 8 * pure.info["supercell"] ** 3
    assert set(pure.numbers) == {6}


@pytest.mark.parametrize("sigma", [0.2, 0.0])
def test_high_symmetry_embedding_keeps_both_environments(liquid, sigma):
    for seed, index in enumerate((0, 77, 150)):
        emb, pure = high_symmetry_embedding(liquid, index, CUTOFF, sigma=sigma, rng=seed)
        assert_same_environment(liquid, index, emb)
        assert_valid_cell(emb, 1.0)
        n = emb.info["supercell"]
        np.testing.assert_allclose(emb.cell.array, pure.cell.array)
        assert n * A_DIAMOND >= 2 * CUTOFF
        # the HS centre keeps a perfect diamond environment
        hs = emb.info["hs_centre"]
        d_hs = ase_environment(emb, hs, CUTOFF)[0]
        d_pure = ase_environment(pure, 0, CUTOFF)[0]
        np.testing.assert_allclose(d_hs, d_pure, rtol=0, atol=1e-10)
        assert emb.info["n_hs_environment"] == len(d_pure) + 1
        # inserted, HS environment, buffer: the counts add up, and only the buffer moved
        info = emb.info
        assert info["n_environment"] + info["n_hs_environment"] + info["n_buffer"] == len(emb)
        assert info["n_environment"] == 1 + len(ase_environment(liquid, index, CUTOFF)[0])
        assert len(pure) - info["n_removed"] == info["n_hs_environment"] + info["n_buffer"]
        diamond = emb.arrays["original_index"] == -1
        assert diamond.sum() == len(pure) - info["n_removed"]
        assert (emb.numbers[diamond] == 6).all()
        off = cdist(emb.positions[diamond], pure.positions).min(axis=1)
        moved = emb.arrays["buffer"][diamond]
        assert (off[~moved] < 1e-10).all()
        if sigma > 0:
            assert (off[moved] > 1e-6).all()
        else:
            assert (off < 1e-10).all()


def _brute_mic_distances(points, centre, edge):
    """Distances from centre to each point over the 27 nearest images of a cubic cell (no minimum-image shortcut)."""
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) * edge
    return np.linalg.norm(points[:, None, :] + shifts[None] - centre, axis=-1).min(axis=1)


@pytest.mark.parametrize("carve", ["paper", "cutoff", 5.5])
def test_high_symmetry_embedding_removes_exactly_the_diamond_sites_within_the_carve_radius(liquid, carve):
    index = 33
    emb, pure = high_symmetry_embedding(liquid, index, CUTOFF, sigma=0.0, carve_radius=carve)
    radius = {"paper": CUTOFF + 1.0, "cutoff": CUTOFF, 5.5: 5.5}[carve]  # paper: r_c + contact + 1.5 sigma (0)
    assert emb.info["carve_radius"] == pytest.approx(radius, abs=1e-5)
    edge = emb.info["cell_edge"]
    centre = emb.positions[0]
    np.testing.assert_allclose(centre, edge / 2)
    inserted = emb.positions[emb.arrays["original_index"] >= 0]
    d_centre = _brute_mic_distances(pure.positions, centre, edge)
    d_inserted = np.min([_brute_mic_distances(pure.positions, x, edge) for x in inserted], axis=0)
    kept_expected = (d_centre >= radius) & (d_inserted >= 1.0)
    if carve != "cutoff":  # the carved sphere leaves a gap of at least the contact distance
        assert (d_inserted[d_centre >= radius] >= 1.0).all()
    diamond = emb.positions[emb.arrays["original_index"] == -1]
    match = cdist(pure.positions, diamond) < 1e-9
    assert (match.sum(axis=1) <= 1).all() and (match.sum(axis=0) == 1).all()
    np.testing.assert_array_equal(match.any(axis=1), kept_expected)
    assert emb.info["n_removed"] == int((~kept_expected).sum())
    assert_same_environment(liquid, index, emb)


def test_high_symmetry_embedding_at_the_papers_settings():
    """The paper's r_cut 3.75 A, contact 1 A, sigma 0.2 A, diamond mp-66 (a = 3.5607 A): its 3 x 3 x 3 supercell."""
    a = 3.5607451090903233
    atoms = random_carbon(n=300, density=3.49, d_min=1.2, seed=3)  # the paper's liquid density
    emb, pure = high_symmetry_embedding(atoms, 0, 3.75, lattice_constant=a, rng=0)
    assert emb.info["supercell"] == 3 and len(pure) == 216
    # section_4b/embed_SC.py sizes the supercell as ceil(2 (2 r + b + d + 1.5 s) / (sqrt(3) a))
    assert math.ceil(2 * (2 * 3.75 + 1.0 + 0.3) / (math.sqrt(3) * a)) == 3
    d_centre = _brute_mic_distances(pure.positions, np.full(3, 1.5 * a), 3 * a)
    assert emb.info["n_removed"] == int((d_centre < 5.05).sum())
    n_inserted = 1 + len(ase_environment(atoms, 0, 3.75)[0])
    assert len(emb) == n_inserted + 216 - emb.info["n_removed"]
    # the HS centre is the corner site, 1.5 a sqrt(3) = 9.25 A from the insertion point, whose 3.75 A diamond
    # environment (35 atoms with it) is clear of the 5.05 A sphere; the other kept sites are the buffer
    d_corner = _brute_mic_distances(pure.positions, np.zeros(3), 3 * a)
    assert emb.info["n_hs_environment"] == int(((d_corner < 3.75) & (d_centre >= 5.05)).sum()) == 35
    assert emb.info["n_buffer"] == int(((d_corner >= 3.75) & (d_centre >= 5.05)).sum()) == 99
    assert_same_environment(atoms, 0, emb, cutoff=3.75)


def test_high_symmetry_embedding_with_a_buffer_shell(liquid):
    emb, _ = high_symmetry_embedding(liquid, 21, CUTOFF, buffer=1.0, rng=0)
    assert emb.info["carve_radius"] == pytest.approx(CUTOFF + 1.0 + 1.0 + 0.3)
    assert_same_environment(liquid, 21, emb)
    assert_valid_cell(emb, 1.0)
    # the inserted sphere reaches r_c + 1 A; its shell beyond r_c is buffer (displaced), the rest is fixed
    shell = 1 + len(ase_environment(liquid, 21, CUTOFF + 1.0)[0])
    inserted = emb.arrays["original_index"] >= 0
    assert inserted.sum() == shell
    assert (inserted & emb.arrays["buffer"]).sum() == shell - emb.info["n_environment"] > 0
    assert emb.info["n_environment"] + emb.info["n_hs_environment"] + emb.info["n_buffer"] == len(emb)


def test_high_symmetry_embedding_is_random_but_reproducible(liquid):
    a, _ = high_symmetry_embedding(liquid, 9, CUTOFF, rng=3)
    b, _ = high_symmetry_embedding(liquid, 9, CUTOFF, rng=3)
    c, _ = high_symmetry_embedding(liquid, 9, CUTOFF, rng=4)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert len(a) == len(c)
    buf = a.arrays["buffer"]
    assert np.abs(a.positions[buf] - c.positions[buf]).max() > 1e-3
    np.testing.assert_array_equal(a.positions[~buf], c.positions[~buf])


def test_high_symmetry_embedding_other_element_and_lattice(liquid):
    emb, pure = high_symmetry_embedding(liquid, 4, CUTOFF, lattice_constant=5.431, element="Si", sigma=0.0)
    assert_same_environment(liquid, 4, emb)
    assert_valid_cell(emb, 1.0)
    assert emb.info["element"] == "Si" and emb.info["supercell"] == 2
    assert set(pure.get_chemical_symbols()) == {"Si"}


# ----------------------------------------------------------------------------- errors


def _periodic_without_cell():
    return Atoms("C2", positions=[[0, 0, 0], [1.5, 0, 0]], pbc=True)


def _close_pair():
    atoms = random_carbon(n=60, density=1.5, seed=1)
    atoms.positions[1] = atoms.positions[0] + [0.7, 0.0, 0.0]
    return atoms


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a: carve_cluster(a, 240, CUTOFF), r"index 240 is out of range .* 240 atoms"),
        (lambda a: periodic_embedding(a, -241, CUTOFF), r"index -241 is out of range"),
        (lambda a: environment(a, 1.5, CUTOFF), r"index must be an integer .* 1\.5"),
        (lambda a: carve_cluster(a, 0, 0.0), r"cutoff must be .* > 0 .* 0\.0"),
        (lambda a: high_symmetry_embedding(a, 0, -1.0), r"cutoff must be .* -1\.0"),
        (lambda a: periodic_embedding(a, 0, CUTOFF, sigma=0.0), r"sigma must be .* 0\.0"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, sigma=-0.1), r"sigma must be .* >= 0 .* -0\.1"),
        (lambda a: periodic_embedding(a, 0, CUTOFF, min_distance=-1), r"min_distance must be .* -1"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, min_distance=0), r"min_distance must be .* 0"),
        (lambda a: periodic_embedding(a, 0, CUTOFF, step=0), r"step must be .* 0"),
        (lambda a: periodic_embedding(a, 0, CUTOFF, sigma=float("nan")), r"sigma must be finite .* nan"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, lattice_constant=0.0), r"lattice_constant must be .* 0\.0"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, lattice_constant=-3.5), r"lattice_constant must be .* -3\.5"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, element="Xx"), r"element 'Xx'"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, min_distance=1.6), r"min_distance=1\.6 .* diamond bond"),
        (lambda a: carve_cluster(_periodic_without_cell(), 0, CUTOFF), r"volume 0 A\^3"),
        (lambda a: periodic_embedding(_periodic_without_cell(), 0, CUTOFF), r"pbc=\[True, True, True\].* volume"),
        (lambda a: high_symmetry_embedding(_periodic_without_cell(), 0, CUTOFF), r"positive volume"),
        (lambda a: periodic_embedding(a, 0, CUTOFF, max_enlargement=0.0, rng=0, cell="smallest"),
         r"max_enlargement=0\.0"),
        (lambda a: periodic_embedding(a, 0, CUTOFF, cell="tight"), r"cell must be 'paper' .* 'smallest'.* 'tight'"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, carve_radius="huge"), r"carve_radius must be .* 'huge'"),
        (lambda a: high_symmetry_embedding(a, 0, CUTOFF, carve_radius=3.0), r"carve_radius=3\.0 A is below cutoff"),
        (lambda a: periodic_embedding(_close_pair(), 0, CUTOFF), r"min_distance=1\.0 .* atoms 0 and 1 .* 0\.7000 A"),
        (lambda a: high_symmetry_embedding(_close_pair(), 0, CUTOFF), r"atoms 0 and 1 .* 0\.7000 A"),
    ],
)
def test_bad_inputs_raise_naming_the_value(liquid, call, match):
    with pytest.raises(ValueError, match=match):
        call(liquid)
