"""Si clusters (Figs 1-2) and Si n-mers (Fig 6): growth rules, farthest-point sampling, labels, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import compose

from experiments.data import run
from experiments.datasets import si_clusters, si_nmers
from experiments.datasets.io import DatasetError, read_frames, write_frames

# Stillinger-Weber silicon as published (PRB 31, 5262 (1985)), written out here independently of matscipy
SW_EPSILON = 2.1683  # eV
SW_SIGMA = 2.0951  # A
SW_A = 7.049556277
SW_B = 0.6022245584
SW_P = 4
SW_Q = 0
SW_CUT = 1.80  # reduced cutoff a


def sw_pair(r):
    """epsilon * f2(r / sigma), f2(x) = A (B x^-p - x^-q) exp(1 / (x - a)) for x < a, else 0 (eV)."""
    x = np.asarray(r, dtype=float) / SW_SIGMA
    inside = x < SW_CUT
    xs = np.where(inside, x, 0.5 * SW_CUT)  # keep exp() finite outside the cutoff
    f2 = SW_A * (SW_B * xs ** (-SW_P) - xs ** (-SW_Q)) * np.exp(1.0 / (xs - SW_CUT))
    return SW_EPSILON * np.where(inside, f2, 0.0)


def pair_distances(pos):
    i, j = np.triu_indices(len(pos), k=1)
    return np.linalg.norm(pos[i] - pos[j], axis=1)


def is_connected(adjacency):
    seen, todo = {0}, [0]
    while todo:
        k = todo.pop()
        for m in np.flatnonzero(adjacency[k]):
            if m not in seen:
                seen.add(int(m))
                todo.append(int(m))
    return len(seen) == len(adjacency)


def assert_growth_rules(pos, bond_min, bond_max, max_coordination):
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= bond_min - 1e-12, f"atoms {d.min():.3f} A apart, below bond_min={bond_min}"
    neighbours = d <= bond_max
    assert neighbours.sum(axis=1).max() <= max_coordination, neighbours.sum(axis=1)
    assert is_connected(neighbours), "cluster is not connected through bonds <= bond_max"


def frames_of(overrides):
    return run(compose(overrides))


def signature(frames):
    return [(a.get_positions().copy(), a.info["energy"], a.arrays["forces"].copy()) for a in frames]


def same(sig1, sig2):
    """Identical structures; labels equal to 1e-9 (the reference's threaded sums may differ in the last bits)."""
    return len(sig1) == len(sig2) and all(
        np.array_equal(p1, p2) and abs(e1 - e2) <= 1e-9 and np.allclose(f1, f2, rtol=0, atol=1e-9)
        for (p1, e1, f1), (p2, e2, f2) in zip(sig1, sig2)
    )


# --------------------------------------------------------------------------------------------- grower


@pytest.mark.parametrize("rules", [dict(bond_min=2.0, bond_max=2.5, max_coordination=6),
                                   dict(bond_min=2.0, bond_max=2.5, max_coordination=2),
                                   dict(bond_min=2.0, bond_max=3.6, max_coordination=6)])
def test_grown_clusters_obey_the_rules_and_are_connected(rng, rules):
    for n_atoms in (2, 3, 5, 10):
        pool = si_clusters.grow_pool(n_atoms, 40, rng, **rules)
        assert pool.shape == (40, n_atoms, 3)
        for pos in pool:
            assert_growth_rules(pos, **rules)


def test_grown_bonds_span_the_drawn_range(rng):
    # dimers: the one distance is the drawn bond, uniform in [bond_min, bond_max]
    d = np.array([pair_distances(p)[0] for p in si_clusters.grow_pool(2, 400, rng, bond_min=2.0, bond_max=2.5)])
    assert d.min() >= 2.0 and d.max() <= 2.5
    assert d.min() < 2.05 and d.max() > 2.45 and abs(d.mean() - 2.25) < 0.03


def test_grower_is_deterministic_under_its_generator():
    a = si_clusters.grow_pool(6, 5, np.random.default_rng(3))
    b = si_clusters.grow_pool(6, 5, np.random.default_rng(3))
    c = si_clusters.grow_pool(6, 5, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_grower_keeps_every_distance_below_the_diameter_cap(rng):
    for n_atoms, cap in ((3, 4.2), (5, 4.6), (5, 5.6)):
        pool = si_clusters.grow_pool(n_atoms, 60, rng, bond_min=2.0, bond_max=2.5, max_diameter=cap)
        diameters = np.array([pair_distances(p).max() for p in pool])
        assert diameters.max() < cap
        for pos in pool:
            assert_growth_rules(pos, 2.0, 2.5, 6)
    # the cap binds: without it, pentamers are wider than 4.6 A more often than not
    free = np.array([pair_distances(p).max() for p in si_clusters.grow_pool(5, 60, rng, bond_min=2.0, bond_max=2.5)])
    assert np.mean(free >= 4.6) > 0.5


def test_cube_root_bond_law_has_the_papers_distribution(rng):
    # r = bond_min + u^(1/3) (bond_max - bond_min): P(r <= x) = ((x - bond_min) / (bond_max - bond_min))^3
    d = np.array([pair_distances(p)[0]
                  for p in si_clusters.grow_pool(2, 2000, rng, bond_min=2.0, bond_max=2.5, bond_law="cube_root")])
    assert d.min() >= 2.0 and d.max() <= 2.5
    x = np.sort(d)
    cdf = ((x - 2.0) / 0.5) ** 3
    ks = np.max(np.maximum(np.arange(1, len(x) + 1) / len(x) - cdf, cdf - np.arange(len(x)) / len(x)))
    assert ks < 1.63 / np.sqrt(len(x))  # Kolmogorov-Smirnov at the 1% level
    assert abs(d.mean() - 2.375) < 0.01  # E[u^(1/3)] = 3/4


def test_grower_refuses_impossible_rules(rng):
    with pytest.raises(ValueError, match="bond range"):
        si_clusters.grow_cluster(4, rng, bond_min=2.5, bond_max=2.0)
    with pytest.raises(ValueError, match="max_diameter=1.9 A: must exceed bond_min=2.0"):
        si_clusters.grow_cluster(4, rng, max_diameter=1.9)
    with pytest.raises(ValueError, match=r"bond_law='cubic': expected one of \['uniform', 'cube_root'\]"):
        si_clusters.grow_cluster(4, rng, bond_law="cubic")
    with pytest.raises(RuntimeError, match="could not grow"):  # a chain cannot branch to 4 atoms with coordination <= 1
        si_clusters.grow_cluster(4, rng, max_coordination=1, max_batches=5, max_restarts=3)


# ------------------------------------------------------------------------------- descriptor and FPS


def test_descriptor_is_invariant_to_rotation_translation_and_permutation(rng):
    pos = si_clusters.grow_cluster(7, rng)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = (pos @ q.T + rng.normal(size=3))[rng.permutation(7)]
    np.testing.assert_allclose(si_clusters.distance_descriptor(moved), si_clusters.distance_descriptor(pos), atol=1e-12)
    assert si_clusters.distance_descriptor(pos).shape == (21,)
    other = si_clusters.grow_cluster(7, rng)
    assert not np.allclose(si_clusters.distance_descriptor(other), si_clusters.distance_descriptor(pos))


def test_fps_picks_extremes_first_on_a_line():
    x = np.arange(11.0)[:, None]  # mean 5: 0 and 10 tie as farthest, the lower index wins
    assert si_clusters.farthest_point_sampling(x, 3).tolist() == [0, 10, 5]


def test_fps_returns_the_requested_number_of_distinct_structures(rng):
    pool = si_clusters.grow_pool(5, 200, rng)
    desc = si_clusters.distance_descriptor(pool)
    picked = si_clusters.farthest_point_sampling(desc, 30)
    assert picked.shape == (30,) and len(set(picked.tolist())) == 30
    chosen = desc[picked]
    gaps = np.linalg.norm(chosen[:, None] - chosen[None], axis=-1)[np.triu_indices(30, k=1)]
    assert gaps.min() > 0
    # FPS spreads the picks: their closest pair is farther apart than that of 30 random ones
    rand = desc[rng.choice(200, 30, replace=False)]
    rand_gaps = np.linalg.norm(rand[:, None] - rand[None], axis=-1)[np.triu_indices(30, k=1)]
    assert gaps.min() > rand_gaps.min()


def test_fps_refuses_duplicates_and_bad_counts():
    x = np.array([[0.0], [1.0], [1.0], [0.0]])
    with pytest.raises(ValueError, match="only 2 distinct"):
        si_clusters.farthest_point_sampling(x, 3)
    with pytest.raises(ValueError, match="n=5 of 4"):
        si_clusters.farthest_point_sampling(x, 5)


def test_subsets_follow_the_fractions(rng):
    s = si_clusters.assign_subsets(1000, 0.1, 0.1, rng)
    assert (s == "test").sum() == 100 and (s == "validation").sum() == 100 and (s == "train").sum() == 800
    s = si_clusters.assign_subsets(3, 0.1, 0.1, rng)  # rounded up: one of each even for three
    assert sorted(s) == ["test", "train", "validation"]
    with pytest.raises(ValueError, match="> 1"):
        si_clusters.assign_subsets(10, 0.6, 0.6, rng)


# ------------------------------------------------------------------------------------- si_clusters


SMALL_CLUSTERS = ["dataset=si_clusters", "scale=smoke", "dataset.generate.max_atoms=5"]


def test_si_clusters_deterministic_under_seed():
    a = signature(frames_of(SMALL_CLUSTERS))
    b = signature(frames_of(SMALL_CLUSTERS))
    c = signature(frames_of(SMALL_CLUSTERS + ["seed=1"]))
    assert same(a, b)
    assert len(a) == len(c) and not any(np.allclose(p1, p2) for (p1, _, _), (p2, _, _) in zip(a, c))


def test_si_clusters_labels_equal_a_fresh_gfn2_calculation():
    # a reused tblite calculator restarts from the previous wavefunction and can land on wrong states
    from experiments.datasets.references import label

    frames = frames_of(SMALL_CLUSTERS)
    for atoms in frames[::2]:
        ref = label(Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions()), "gfn2-xtb",
                    electronic_temperature=1000.0, accuracy=1.0)
        assert atoms.info["energy"] == pytest.approx(ref.info["energy"], abs=1e-5)
        np.testing.assert_allclose(atoms.arrays["forces"], ref.arrays["forces"], atol=1e-4)


def test_si_clusters_smoke_dataset_is_complete(tmp_path):
    frames = frames_of(["dataset=si_clusters", "scale=smoke"])
    cfg = compose(["dataset=si_clusters", "scale=smoke"])
    n_keep = cfg.dataset.generate.n_keep  # config/sizes/dataset/si_clusters/smoke.yaml
    sizes = [a.info["n_atoms"] for a in frames]
    assert sorted(set(sizes)) == list(range(3, 11)) and all(sizes.count(n) == n_keep for n in range(3, 11))
    for atoms in frames:
        assert len(atoms) == atoms.info["n_atoms"] and set(atoms.get_chemical_symbols()) == {"Si"}
        assert atoms.info["reference_method"] == "GFN2-xTB" and "tblite" in atoms.info["reference_program"]
        assert atoms.info["dataset"] == "si_clusters" and atoms.info["source"] == "generate"
        assert atoms.arrays["forces"].shape == (len(atoms), 3)
        assert np.isfinite(atoms.info["energy"]) and not atoms.pbc.any()
        assert_growth_rules(atoms.get_positions(), 2.0, 2.5, 6)
        # GFN2-xTB binds Si clusters: below the isolated atoms, by less than 3 eV per atom
        binding = (atoms.info["energy"] - len(atoms) * atoms.info["isolated_atom_energy"]) / len(atoms)
        assert -3.0 < binding < 0.0
    for n in range(3, 11):
        assert sorted(a.info["subset"] for a in frames if a.info["n_atoms"] == n) == ["test", "train", "validation"]
    path = write_frames(frames, tmp_path / "si_clusters.extxyz")
    back = read_frames(path, periodic=False)
    assert [a.info["subset"] for a in back] == [a.info["subset"] for a in frames]
    np.testing.assert_allclose([a.info["energy"] for a in back], [a.info["energy"] for a in frames])


def test_si_clusters_prepare_assigns_subsets_to_a_file(rng):
    params = si_clusters.Params()
    frames = [Atoms(f"Si{n}", positions=si_clusters.grow_cluster(n, rng)) for n in (3, 3, 3, 4, 4, 4, 4)]
    out = si_clusters.prepare(frames, params, seed=0)
    assert [a.info["n_atoms"] for a in out] == [3, 3, 3, 4, 4, 4, 4]
    assert sorted(a.info["subset"] for a in out[:3]) == ["test", "train", "validation"]
    out[0].info.pop("subset")
    with pytest.raises(DatasetError, match=r"frames \[0\]"):
        si_clusters.prepare(out, params, seed=0)


# ---------------------------------------------------------------------------------------- si_nmers


def test_si_nmers_deterministic_under_seed():
    a = signature(frames_of(["dataset=si_nmers", "scale=smoke"]))
    b = signature(frames_of(["dataset=si_nmers", "scale=smoke"]))
    c = signature(frames_of(["dataset=si_nmers", "scale=smoke", "seed=1"]))
    assert same(a, b)
    assert len(a) == len(c) and not same(a, c)
    grown = [k for k, (p, _, _) in enumerate(a) if len(p) > 2]  # dimer curves are the same whatever the seed
    assert not any(np.allclose(a[k][0], c[k][0]) for k in grown)


@pytest.fixture(scope="module")
def nmers():
    return frames_of(["dataset=si_nmers", "scale=smoke"])


def test_si_nmers_counts_subsets_and_provenance(nmers):
    sizes = compose(["dataset=si_nmers", "scale=smoke"]).dataset.generate  # config/sizes/dataset/si_nmers/smoke.yaml
    count = {s: sum(a.info["subset"] == s for a in nmers)
             for s in ("dimer", "trimer", "tetramer", "pentamer", "dimer_curve")}
    assert count == {"dimer": sizes.n_dimers, "trimer": sizes.n_trimers, "tetramer": sizes.n_tetramers,
                     "pentamer": sizes.n_pentamers, "dimer_curve": sizes.n_curve}
    natoms = {"dimer": 2, "trimer": 3, "tetramer": 4, "pentamer": 5, "dimer_curve": 2}
    for atoms in nmers:
        assert len(atoms) == atoms.info["n_atoms"] == natoms[atoms.info["subset"]]
        assert atoms.info["reference_method"].startswith("Stillinger-Weber")
        assert "matscipy" in atoms.info["reference_program"]
        assert atoms.arrays["forces"].shape == (len(atoms), 3)
        assert not atoms.pbc.any() and atoms.cell.volume == 0
        if atoms.info["subset"] != "dimer_curve":
            assert_growth_rules(atoms.get_positions(), 2.0, 2.5, 6)


def test_si_nmers_are_grown_by_the_papers_rules(nmers):
    """Brute force over every grown n-mer: each atom's nearest neighbour at 2.0-2.5 A (the paper's bonds), and
    every distance below the paper's constant-density cap, 4.121 A (n / 2)^(1/3)."""
    grown = [a for a in nmers if a.info["subset"] != "dimer_curve"]
    assert {len(a) for a in grown} == {2, 3, 4, 5}
    for atoms in grown:
        n = len(atoms)
        d = atoms.get_all_distances()
        assert d.max() < 4.121 * (n / 2) ** (1 / 3)
        np.fill_diagonal(d, np.inf)
        assert np.all((d.min(axis=1) >= 2.0) & (d.min(axis=1) <= 2.5)), d.min(axis=1)
        if n == 5:  # so that purified ACE's nu = 4 block (all four neighbours within 5.5 A) is not zero
            assert (d < 5.5).sum(axis=1).max() == 4


def test_si_nmers_two_plus_three_body_is_the_total(nmers):
    for atoms in nmers:
        assert (atoms.info["energy_two_body"] + atoms.info["energy_three_body"]
                == pytest.approx(atoms.info["energy"], abs=1e-12))
    # the three-body part is not trivially zero beyond dimers
    assert max(abs(a.info["energy_three_body"]) for a in nmers if a.info["n_atoms"] == 5) > 0.1


def test_si_nmers_dimers_follow_the_published_pair_potential(nmers):
    dimers = [a for a in nmers if a.info["n_atoms"] == 2]
    r = np.array([a.get_distance(0, 1) for a in dimers])
    curve = [a for a in dimers if a.info["subset"] == "dimer_curve"]
    np.testing.assert_allclose([a.info["separation"] for a in curve], np.linspace(2.0, 4.0, len(curve)))
    assert r.min() <= 2.0 + 1e-9 and r.max() >= 3.77  # the curve reaches past the cutoff
    e2 = np.array([a.info["energy_two_body"] for a in dimers])
    np.testing.assert_allclose(e2, sw_pair(r), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([a.info["energy"] for a in dimers], sw_pair(r), rtol=1e-9, atol=1e-12)
    assert all(a.info["energy_three_body"] == 0.0 for a in dimers)
    # the published pair minimum: -epsilon at 2^(1/6) sigma
    assert sw_pair(2.3521) == pytest.approx(-SW_EPSILON, abs=1e-3)


def test_si_nmers_two_body_is_the_pair_sum_for_every_cluster(nmers):
    for atoms in nmers:
        assert atoms.info["energy_two_body"] == pytest.approx(sw_pair(pair_distances(atoms.get_positions())).sum(),
                                                              abs=1e-9)


def test_si_nmers_forces_are_minus_the_energy_gradient(nmers):
    atoms = next(a for a in nmers if a.info["n_atoms"] == 5)
    h = 1e-5
    for i, k in [(0, 0), (2, 1), (4, 2)]:
        e = []
        for step in (h, -h):
            moved = Atoms("Si5", positions=atoms.get_positions())
            moved.positions[i, k] += step
            e.append(si_nmers.stillinger_weber_split(moved).info["energy"])
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(atoms.arrays["forces"][i, k], abs=1e-5)


def test_si_nmers_survive_an_extxyz_round_trip(nmers, tmp_path):
    back = read_frames(write_frames(nmers, tmp_path / "si_nmers.extxyz"), periodic=False)
    for key in ("energy", "energy_two_body", "energy_three_body"):
        np.testing.assert_allclose([a.info[key] for a in back], [a.info[key] for a in nmers], rtol=1e-12)
    assert [a.info["subset"] for a in back] == [a.info["subset"] for a in nmers]


def test_si_nmers_prepare_names_subsets_from_the_atom_count():
    frames = [Atoms(f"Si{n}", positions=np.arange(3 * n, dtype=float).reshape(n, 3) * 2.2) for n in (2, 3, 4, 5)]
    out = si_nmers.prepare(frames, si_nmers.Params(), seed=0)
    assert [a.info["subset"] for a in out] == ["dimer", "trimer", "tetramer", "pentamer"]
    with pytest.raises(DatasetError, match="6 atoms"):
        si_nmers.prepare([Atoms("Si6", positions=np.zeros((6, 3)))], si_nmers.Params(), seed=0)


def test_si_nmers_refuse_a_reference_without_a_known_split():
    with pytest.raises(ValueError, match="stillinger-weber"):
        si_nmers.generate(si_nmers.Params(reference="gfn2-xtb"), seed=0)


def test_si_nmers_size_cap_and_bad_growth_parameters():
    params = si_nmers.Params()
    # the paper's cap: twice the radius of a sphere holding n atoms at the density of 2 atoms in a 4.121 A sphere
    dimer_volume = 4 / 3 * np.pi * (4.121 / 2) ** 3
    paper = [2 * (3 / 4 / np.pi * (dimer_volume / 2 * n)) ** (1 / 3) for n in (2, 3, 4, 5)]
    np.testing.assert_allclose([si_nmers.size_cap(params, n) for n in (2, 3, 4, 5)], paper, rtol=1e-12)
    assert si_nmers.size_cap(si_nmers.Params(density_diameter=None), 5) is None
    with pytest.raises(ValueError, match="density_diameter=1.5 A"):
        si_nmers.generate(si_nmers.Params(density_diameter=1.5), seed=0)
    with pytest.raises(ValueError, match="bond_law='normal'"):
        si_nmers.generate(si_nmers.Params(bond_law="normal"), seed=0)
