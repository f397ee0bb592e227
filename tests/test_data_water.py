"""Water datasets of Figs 7-9: monomers, dimers (GFN2-xTB) and coarse-grained liquid water (OpenMM).

Checked against independent calculations: internal coordinates and distances
recomputed from positions, centres of mass by explicit loops on a hand-built
frame, the kJ/mol/nm -> eV/A constant from CODATA values, the paper's frame
shuffle done the paper's way (``random.seed`` then ``random.shuffle``), and
physical properties (forces = -dE/dx, vanishing interaction energy of distant
molecules, vanishing net force of internal forces).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from ase import Atoms
from conftest import compose

from experiments import data
from experiments.datasets import cg_water, water_dimers, water_monomers
from experiments.datasets.io import DatasetError, read_frames, write_frames
from experiments.datasets.references import calculator
from experiments.datasets.water_geometry import internal_coordinates, random_rotation, sample_water


def _run(name: str, seed: int | None = None, *extra: str) -> list[Atoms]:
    overrides = [f"dataset={name}", "scale=smoke", *extra]
    if seed is not None:
        overrides.append(f"seed={seed}")
    return data.run(compose(overrides))


def _params(name: str, scale: str = "smoke"):
    cfg = compose([f"dataset={name}", f"scale={scale}"])
    ds = data.dataset_config(cfg)
    module = {"water_dimers": water_dimers, "water_monomers": water_monomers, "cg_water": cg_water}[name]
    return data.generator_params(ds, module.Params)


def _same(a: list[Atoms], b: list[Atoms]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.get_chemical_symbols() != y.get_chemical_symbols():
            return False
        # identical structures; labels to 1e-9 (the reference's threaded sums may differ in the last bits)
        if not (np.array_equal(x.positions, y.positions)
                and np.allclose(x.arrays["forces"], y.arrays["forces"], rtol=0, atol=1e-9)):
            return False
        ex, ey = x.info.get("energy"), y.info.get("energy")
        if (ex is None) != (ey is None) or (ex is not None and abs(ex - ey) > 1e-9):
            return False
    return True


@pytest.fixture(scope="module")
def monomers():
    return _run("water_monomers")


@pytest.fixture(scope="module")
def dimers():
    return _run("water_dimers")


@pytest.fixture(scope="module")
def cg_frames():
    return _run("cg_water")


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["water_monomers", "water_dimers", "cg_water"])
@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_every_scale_gives_valid_params(name, scale):
    params = _params(name, scale)
    if name == "cg_water":
        cg_water._check(params)  # cutoff below half the box, positive sizes
        subsets, _ = cg_water.assign_subsets(params.n_frames, params.split_seed, params.validation_start,
                                             params.validation_fraction, params.test_fraction)
        assert {"train", "validation", "test"} <= set(subsets)


def test_paper_sizes_follow_the_paper():
    assert _params("water_dimers", "paper").n_dimers == 100  # text: 100 dimer configurations
    assert _params("water_monomers", "paper").n_monomers == 100  # text: 100 monomer configurations
    p = _params("cg_water", "paper")
    assert (p.n_molecules, p.n_frames, p.split_seed, p.temperature) == (128, 50000, 20240406, 300.0)
    assert _params("water_dimers", "quick").n_dimers >= 100  # Fig 7 trains on up to the first 100


def test_download_source_explains_why_there_is_none():
    with pytest.raises(DatasetError, match="materialscloud"):
        _run("cg_water", None, "dataset.source=download")


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", ["water_monomers", "water_dimers"])
def test_xtb_datasets_are_deterministic_under_the_seed(name, monomers, dimers):
    first = {"water_monomers": monomers, "water_dimers": dimers}[name]
    again = _run(name)
    other = _run(name, 12345)
    assert _same(first, again)
    assert not _same(first, other)


def test_monomers_and_dimers_use_different_random_streams(monomers, dimers):
    r_mono = {round(a.info["r_oh1"], 12) for a in monomers}
    r_dim = {round(internal_coordinates(a.positions[:3])[0], 12) for a in dimers}
    assert not r_mono & r_dim


@pytest.mark.slow
def test_cg_water_is_deterministic_under_the_seed(cg_frames):
    again = _run("cg_water")
    other = _run("cg_water", 12345)
    assert _same(cg_frames, again)  # OpenMM CPU platform, DeterministicForces, 1 thread: bit-identical
    assert not _same(cg_frames, other)


# --------------------------------------------------------------------------- geometry


def test_random_rotations_are_rotations_and_uniform():
    rng = np.random.default_rng(3)
    rotations = np.array([random_rotation(rng) for _ in range(4000)])
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    # Haar measure: every matrix element has mean 0 and variance 1/3
    np.testing.assert_allclose(rotations.mean(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose((rotations**2).mean(axis=0), 1 / 3, atol=0.03)


def test_sampled_water_covers_the_documented_ranges_uniformly():
    rng = np.random.default_rng(4)
    samples = [sample_water(rng, 0.86, 1.10, 92.0, 122.0) for _ in range(3000)]
    measured = np.array([internal_coordinates(pos) for pos, _ in samples])
    drawn = np.array([internal for _, internal in samples])
    np.testing.assert_allclose(measured, drawn, atol=1e-9)  # the positions realise the drawn coordinates
    bonds, angles = measured[:, :2].ravel(), measured[:, 2]
    assert 0.86 <= bonds.min() < 0.865 and 1.095 < bonds.max() <= 1.10
    assert 92.0 <= angles.min() < 92.5 and 121.5 < angles.max() <= 122.0
    assert np.mean(bonds) == pytest.approx(0.98, abs=0.005)  # uniform: mean at the centre
    assert np.mean(angles) == pytest.approx(107.0, abs=0.5)
    assert all(np.array_equal(pos[0], np.zeros(3)) for pos, _ in samples)  # oxygen at the origin


def test_monomer_geometries_within_the_sampled_ranges(monomers):
    p = _params("water_monomers")
    assert len(monomers) == p.n_monomers
    for atoms in monomers:
        assert atoms.get_chemical_symbols() == ["O", "H", "H"]
        assert not atoms.pbc.any()
        r1, r2, angle = internal_coordinates(atoms.positions)
        assert p.bond_min <= r1 <= p.bond_max and p.bond_min <= r2 <= p.bond_max
        assert p.angle_min <= angle <= p.angle_max
        assert (r1, r2, angle) == pytest.approx((atoms.info["r_oh1"], atoms.info["r_oh2"], atoms.info["angle_hoh"]))


def test_dimers_sorted_in_range_and_clash_free(dimers):
    p = _params("water_dimers")
    assert len(dimers) == p.n_dimers
    distances = []
    for atoms in dimers:
        assert atoms.get_chemical_symbols() == ["O", "H", "H", "O", "H", "H"]
        d = float(np.linalg.norm(atoms.positions[3] - atoms.positions[0]))
        assert atoms.info["o_o_distance"] == pytest.approx(d, abs=1e-9)
        assert p.o_o_min <= d <= p.o_o_max
        closest = min(np.linalg.norm(atoms.positions[i] - atoms.positions[j]) for i in range(3) for j in range(3, 6))
        assert closest >= p.min_intermolecular
        for mol in (atoms.positions[:3], atoms.positions[3:]):
            r1, r2, angle = internal_coordinates(mol)
            assert p.bond_min <= min(r1, r2) and max(r1, r2) <= p.bond_max and p.angle_min <= angle <= p.angle_max
        distances.append(d)
    assert np.all(np.diff(distances) >= 0)
    assert [a.info["dimer_rank"] for a in dimers] == list(range(len(dimers)))


def test_sample_dimer_rejects_clashes_and_says_when_it_cannot():
    p = water_dimers.Params(min_intermolecular=2.2)
    rng = np.random.default_rng(5)
    for _ in range(50):
        assert water_dimers.min_intermolecular_distance(water_dimers.sample_dimer(rng, 3.0, p)) >= 2.2
    with pytest.raises(RuntimeError, match="no clash-free dimer"):
        water_dimers.sample_dimer(rng, 3.0, water_dimers.Params(min_intermolecular=5.0, max_attempts=5))


def test_dimers_from_a_file_are_sorted(dimers):
    shuffled = [dimers[i].copy() for i in np.random.default_rng(6).permutation(len(dimers))]
    for atoms in shuffled:
        atoms.info.pop("o_o_distance")
    back = water_dimers.prepare(shuffled, _params("water_dimers"), 0)
    assert [a.info["o_o_distance"] for a in back] == pytest.approx([a.info["o_o_distance"] for a in dimers])


# --------------------------------------------------------------------------- GFN2-xTB reference


def test_gfn2_xtb_reference_recorded(monomers, dimers, tmp_path):
    for atoms in monomers + dimers:
        assert atoms.info["reference_method"] == "GFN2-xTB"
        assert atoms.info["reference_program"].startswith("tblite ")
        assert (atoms.info["energy_unit"], atoms.info["force_unit"]) == ("eV", "eV/A")
        assert np.isfinite(atoms.info["energy"]) and atoms.arrays["forces"].shape == (len(atoms), 3)
    back = read_frames(write_frames(dimers, tmp_path / "d.extxyz"))
    assert back[0].info["reference_method"] == "GFN2-xTB" and back[0].info["dataset"] == "water_dimers"


def test_xtb_forces_are_minus_the_energy_gradient(monomers):
    atoms = monomers[0].copy()
    calc = calculator("gfn2-xtb")
    h, (i, k) = 1e-4, (1, 2)
    energies = []
    for sign in (1, -1):
        displaced = atoms.copy()
        displaced.positions[i, k] += sign * h
        displaced.calc = calc
        energies.append(displaced.get_potential_energy())
    assert atoms.arrays["forces"][i, k] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-4)


def test_distant_dimer_energy_is_the_sum_of_its_monomers(dimers):
    far = dimers[-1]
    assert far.info["o_o_distance"] > 5.0
    calc = calculator("gfn2-xtb")
    parts = []
    for sl in (slice(0, 3), slice(3, 6)):
        mol = far[sl].copy()
        mol.calc = calc
        parts.append(mol.get_potential_energy())
    # dipole-dipole interaction of two waters at > 5 A is below ~0.03 eV
    assert abs(far.info["energy"] - sum(parts)) < 0.03


# --------------------------------------------------------------------------- coarse-graining


def test_force_unit_constant_from_codata():
    avogadro, elementary_charge = 6.02214076e23, 1.602176634e-19  # CODATA 2018 (exact in SI 2019)
    ev_per_kj_mol = 1e3 / avogadro / elementary_charge  # 1 kJ/mol in eV
    assert cg_water.KJ_MOL_NM_TO_EV_A == pytest.approx(ev_per_kj_mol / 10.0, rel=1e-12)
    assert cg_water.KJ_MOL_NM_TO_EV_A == pytest.approx(0.0010364269656262175, rel=1e-12)
    from ase import units  # ASE's own constants (CODATA 2014): agree to their 1e-8 difference

    assert cg_water.KJ_MOL_NM_TO_EV_A == pytest.approx(units.kJ / units.mol / units.nm, rel=1e-7)


def test_coarse_grain_against_explicit_loops(rng):
    length = 10.0
    masses = np.array([15.9994, 1.008, 1.008, 16.5, 2.0, 1.5])
    whole = np.array([[9.7, 5.0, 0.2], [10.6, 5.3, -0.4], [9.3, 4.2, 0.5],  # straddles x = L and z = 0
                      [3.0, 3.0, 3.0], [3.9, 3.2, 3.1], [2.7, 3.8, 2.6]])
    forces = rng.normal(size=(6, 3))
    frame = Atoms("OHHOHH", positions=whole, cell=np.eye(3) * length, pbc=True, masses=masses)
    frame.wrap()  # atoms of molecule 0 now sit on opposite faces of the box
    assert np.ptp(frame.positions[:3, 0]) > length / 2
    frame.arrays["forces"] = forces
    frame.info["note"] = "kept"

    beads = cg_water.coarse_grain(frame, 3, "O")

    for m in range(2):
        com = np.zeros(3)
        for i in range(3 * m, 3 * m + 3):
            com += masses[i] * whole[i]
        com /= masses[3 * m:3 * m + 3].sum()
        np.testing.assert_allclose(beads.positions[m], com % length, atol=1e-12)
        np.testing.assert_allclose(beads.arrays["forces"][m], forces[3 * m] + forces[3 * m + 1] + forces[3 * m + 2],
                                   atol=1e-12)
        assert beads.get_masses()[m] == pytest.approx(masses[3 * m:3 * m + 3].sum())
    assert beads.get_chemical_symbols() == ["O", "O"] and beads.pbc.all() and beads.info["note"] == "kept"

    free = Atoms("OHHOHH", positions=whole, masses=masses)  # no cell: no wrapping, plain centres of mass
    free.arrays["forces"] = forces
    np.testing.assert_allclose(cg_water.coarse_grain(free).positions[0],
                               (masses[:3, None] * whole[:3]).sum(0) / masses[:3].sum(), atol=1e-12)
    with pytest.raises(ValueError, match="do not split into molecules"):
        cg_water.coarse_grain(frame[:5])


def test_cg_frames_are_beads_with_forces_and_no_energy(cg_frames, tmp_path):
    p = _params("cg_water")
    length = cg_water.box_length(p.n_molecules, p.density)
    assert length == pytest.approx(15.66, abs=0.01)
    assert len(cg_frames) == p.n_frames
    for atoms in cg_frames:
        assert len(atoms) == 128 and set(atoms.numbers) == {8} and atoms.pbc.all()
        np.testing.assert_allclose(atoms.cell.lengths(), length)
        assert "energy" not in atoms.info
        assert "coarse-grained" in atoms.info["bead"] and "not that element" in atoms.info["bead"]
        assert atoms.info["reference_method"].startswith("SPC/E classical")
        assert (atoms.info["energy_unit"], atoms.info["force_unit"]) == ("none", "eV/A")
        np.testing.assert_allclose(atoms.get_masses(), 15.99943 + 2 * 1.007947, atol=1e-3)  # H2O, amu
        scaled = atoms.get_scaled_positions(wrap=False)
        assert scaled.min() >= 0 and scaled.max() < 1
    back = read_frames(write_frames(cg_frames, tmp_path / "cg.extxyz"), energy_key=None, periodic=True)
    np.testing.assert_allclose(back[0].get_masses(), cg_frames[0].get_masses())


def test_cg_forces_are_in_ev_per_angstrom_and_internal(cg_frames):
    forces = np.array([a.arrays["forces"] for a in cg_frames])  # (frames, beads, 3)
    rms = np.sqrt((forces**2).mean())
    # molecular forces in liquid water are O(1) eV/A; kJ/mol/nm would be ~1000 times larger
    assert 0.05 < rms < 5.0
    # internal forces: the net force on the box vanishes up to PME's error (relative tolerance 5e-4 per atom;
    # about 1e-3 eV/A here), a hundred times below the sqrt(N) rms of N independent bead forces
    net = np.linalg.norm(forces.sum(axis=1), axis=1)
    assert net.max() < 1e-2 * np.sqrt(forces.shape[1]) * rms


def test_cg_all_atom_file_is_coarse_grained_on_prepare(rng):
    p = _params("cg_water")
    frames = []
    for _ in range(p.n_frames):
        positions = np.concatenate([c + rng.normal(scale=0.5, size=(3, 3)) for c in rng.uniform(0, 9, size=(4, 3))])
        atoms = Atoms("OHH" * 4, positions=positions, cell=np.eye(3) * 9.0, pbc=True)
        atoms.arrays["forces"] = rng.normal(size=(12, 3))
        frames.append(atoms)
    out = cg_water.prepare(frames, p, 0)
    assert all(len(a) == 4 and "subset" in a.info for a in out)
    np.testing.assert_allclose(out[0].arrays["forces"], frames[0].arrays["forces"].reshape(4, 3, 3).sum(1))


# --------------------------------------------------------------------------- splits


def test_paper_split_reproduces_the_papers_shuffle():
    n = 50000
    subset, shuffled_index = cg_water.assign_subsets(n, 20240406, 0.8, 0.02, 0.02)
    state = random.getstate()
    try:  # the paper's own procedure: seed the global generator, shuffle the list of frames
        random.seed(20240406)
        frames = list(range(n))
        random.shuffle(frames)
    finally:
        random.setstate(state)
    assert set(np.flatnonzero(subset == "validation")) == set(frames[40000:41000])
    assert set(np.flatnonzero(subset == "test")) == set(frames[41000:42000])
    assert (subset == "train").sum() == n - 2000
    assert np.array_equal(np.argsort(shuffled_index), frames)

    pseudo = [Atoms(info={"subset": s, "shuffled_index": int(k), "frame": i})
              for i, (s, k) in enumerate(zip(subset, shuffled_index))]
    for size in (50, 1000):
        subsets = [[a.info["frame"] for a in cg_water.train_subset(pseudo, size, k)] for k in range(4)]
        for k in range(4):
            assert subsets[k] == frames[k * size:(k + 1) * size]  # CG_water_train_<size>_<k>
        assert len(set().union(*map(set, subsets))) == 4 * size  # disjoint
    with pytest.raises(ValueError, match="training subset"):
        cg_water.train_subset(pseudo, 10000, 5)
    # the workflow's run keys n<size>-b<k> (dataset.training of config/dataset/cg_water.yaml) are these subsets
    from experiments.runs import select

    training = compose(["dataset=cg_water", "scale=paper"]).dataset.training
    for size in (50, 1000):
        for k in range(4):
            rows = select(pseudo, training, f"n{size}-b{k}", "cg_water")
            assert sorted(rows.tolist()) == sorted(frames[k * size:(k + 1) * size])


def test_cg_subsets_disjoint_and_sized(cg_frames):
    p = _params("cg_water")
    subsets = np.array([a.info["subset"] for a in cg_frames])
    n = len(cg_frames)
    assert (subsets == "validation").sum() == round(p.validation_fraction * n)
    assert (subsets == "test").sum() == round(p.test_fraction * n)
    assert (subsets == "train").sum() == n - round(p.validation_fraction * n) - round(p.test_fraction * n)
    assert sorted(a.info["shuffled_index"] for a in cg_frames) == list(range(n))
    assert [a.info["frame_index"] for a in cg_frames] == list(range(n))


def test_split_fractions_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="run past"):
        cg_water.assign_subsets(100, 1, 0.9, 0.1, 0.1)
    with pytest.raises(ValueError, match="cutoff"):
        cg_water._check(cg_water.Params(cutoff=8.0))
