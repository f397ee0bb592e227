"""Carbon datasets of Figs 4-5: GAP-17-like bulk and surfaces (GFN1-xTB stand-in), one liquid frame (Tersoff).

Checked against independent calculations: densities from the atom count and
the cell determinant, the vacuum gap from sorted z coordinates, pair distances
from ASE's minimum-image distances, the paper's split done the paper's way
(``random.seed(20240403)``, ``random.shuffle`` of bulk then surfaces, density
thresholds), labels recomputed with fresh calculators, and the GAP-17 reader
on a hand-written file in GAP-17's format.
"""

from __future__ import annotations

import hashlib
import random
import tarfile

import numpy as np
import pytest
from ase import Atoms
from conftest import compose

from experiments import data
from experiments.datasets import carbon, carbon_liquid
from experiments.datasets.io import DatasetError, check_frames
from experiments.datasets.references import calculator

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # matscipy's np.where(..., where=) warning

AMU_G = 1.66e-24  # the paper's grams per amu
C_MASS = 12.011  # amu, ASE's carbon mass


def _run(name: str, *extra: str) -> list[Atoms]:
    return data.run(compose([f"dataset={name}", "scale=smoke", *extra]))


def _params(name: str = "carbon", scale: str = "smoke", module=carbon):
    cfg = compose([f"dataset={name}", f"scale={scale}"])
    return data.generator_params(data.dataset_config(cfg), module.Params)


@pytest.fixture(scope="module")
def smoke() -> list[Atoms]:
    return _run("carbon")


def _density(atoms: Atoms) -> float:
    """g/cm3 from the atom count and the cell determinant (A^3 = 1e-24 cm3)."""
    return len(atoms) * C_MASS * AMU_G / (abs(np.linalg.det(np.asarray(atoms.cell))) * 1e-24)


# ----------------------------------------------------------------------------- generate


@pytest.mark.slow
def test_generation_is_deterministic_under_the_seed(smoke):
    again = _run("carbon")
    other = _run("carbon", "seed=7")
    assert len(again) == len(smoke)
    for a, b in zip(smoke, again):
        assert np.array_equal(a.positions, b.positions)
        # the reference's threaded reductions may differ in the last bits between runs
        assert a.info["energy"] == pytest.approx(b.info["energy"], rel=0, abs=1e-9)
        np.testing.assert_allclose(a.arrays["forces"], b.arrays["forces"], rtol=0, atol=1e-9)
        assert a.info["split"] == b.info["split"]
    assert not np.allclose(smoke[0].positions, other[0].positions)
    assert smoke[0].info["energy"] != other[0].info["energy"]


def test_smoke_has_bulk_and_surfaces_with_the_configured_sizes(smoke):
    p = _params()
    n_bulk = len(p.densities) * p.runs_per_density * p.snapshots_per_run
    subsets = [a.info["subset"] for a in smoke]
    assert subsets.count("bulk") == n_bulk
    assert subsets.count("surface") == p.n_surfaces
    assert all(len(a) == p.n_atoms for a in smoke)
    assert all(a.info["dataset"] == "carbon" and a.info["source"] == "generate" for a in smoke)


def test_bulk_densities_match_the_targets(smoke):
    targets = _params().densities
    bulk = [a for a in smoke if a.info["subset"] == "bulk"]
    assert {round(_density(a), 9) for a in bulk} == {round(t, 9) for t in targets}
    for a in bulk:
        assert a.info["density"] == pytest.approx(_density(a), rel=1e-12)
        assert a.pbc.all()
        assert np.allclose(np.asarray(a.cell), np.eye(3) * a.cell[0, 0])  # cubic


def _min_distance(atoms: Atoms) -> float:
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def test_slabs_have_a_vacuum_gap_along_z_and_no_close_pairs(smoke):
    p = _params()
    slabs = [a for a in smoke if a.info["subset"] == "surface"]
    assert slabs
    lengths = {round(b.cell[0, 0], 9): b.info["density"] for b in smoke if b.info["subset"] == "bulk"}
    for s in slabs:
        assert s.pbc.all()  # periodic in z too, the gap separates the images
        a, c = s.cell[0, 0], s.cell[2, 2]
        assert c == pytest.approx(a + p.vacuum)  # cut from a cube of edge a
        assert s.info["density"] == pytest.approx(lengths[round(a, 9)])  # the density of that cube
        z = np.sort(np.mod(s.positions[:, 2], c))
        widest = max(np.max(np.diff(z)), z[0] + c - z[-1])
        assert widest >= 0.75 * p.vacuum
        assert _min_distance(s) > 1.0
    assert min(_min_distance(b) for b in smoke if b.info["subset"] == "bulk") > 1.0


def _xy_nearest(slab: Atoms, bulk: Atoms) -> np.ndarray:
    """Per slab atom, the distance (A) in the xy plane to the nearest bulk atom, periodic in the shared a, b."""
    a = bulk.cell[0, 0]
    d = slab.positions[:, None, :2] - bulk.positions[None, :, :2]
    d -= a * np.round(d / a)
    return np.sqrt((d**2).sum(-1)).min(axis=1)


def test_every_surface_comes_from_an_md_run_of_its_own():
    """No target slab shares an MD run with a bulk structure (fit, validation or candidate) or another slab.

    By the recorded run ids, and by the atoms: a cut keeps every atom's x and y, so without the anneal a
    slab cut from the cell of a bulk frame would put each of its atoms on one of that frame's in the xy
    plane (distance 0); an independent melt leaves the nearest ones ~0.5 A away (16 atoms on a ~5.5 A
    square). Tersoff labels and 8-step runs: a second.
    """
    frames = _run("carbon", "dataset.generate.reference=tersoff", "dataset.generate.surface_anneal_steps=0",
                  "dataset.generate.melt_steps=4", "dataset.generate.quench_steps=4")
    bulk = [a for a in frames if a.info["subset"] == "bulk"]
    slabs = [a for a in frames if a.info["subset"] == "surface"]
    assert len(slabs) == _params().n_surfaces and all(a.info["split"] == "target" for a in slabs)
    slab_runs = [a.info["run"] for a in slabs]
    assert len(set(slab_runs)) == len(slab_runs)
    assert not set(slab_runs) & {a.info["run"] for a in bulk}
    for s in slabs:
        same_cell = [b for b in bulk if b.cell[0, 0] == pytest.approx(s.cell[0, 0], rel=1e-12)]
        assert same_cell  # the slabs' densities are among the bulk runs'
        for b in same_cell:
            assert np.median(_xy_nearest(s, b)) > 0.1, (s.info["slab"], b.info["run"], b.info["md_step"])


def test_reference_is_recorded_on_every_frame_and_is_not_dft(smoke):
    for a in smoke:
        assert a.info["reference_method"] == "GFN1-xTB"
        assert a.info["reference_program"].startswith("tblite")
        assert "DFT" in a.info["stand_in_for"] and "DFT" not in a.info["reference_method"]
        assert a.info["energy_unit"] == "eV" and a.info["force_unit"] == "eV/A"


def test_labels_are_those_of_a_fresh_gfn1_calculation(smoke):
    a = smoke[-1].copy()  # a surface slab
    a.calc = calculator("gfn1-xtb", electronic_temperature=_params().electronic_temperature)
    # SCF-level tolerance (the generator reuses one calculator); 300 K smearing would be off by ~0.2 eV
    assert a.get_potential_energy() == pytest.approx(smoke[-1].info["energy"], abs=1e-5)
    np.testing.assert_allclose(a.get_forces(), smoke[-1].arrays["forces"], atol=1e-4)


def test_a_density_on_a_split_threshold_is_refused():
    p = _params()
    p.densities = [1.8, 3.0]
    with pytest.raises(ValueError, match=r"density 3.0 g/cm3 sits on the split threshold train_density"):
        carbon.generate(p, 0)


def test_periodic_check_refuses_a_bulk_frame_without_a_cell(smoke):
    a = smoke[0]
    bare = Atoms(a.symbols, positions=a.positions, info=dict(a.info))
    bare.arrays["forces"] = a.arrays["forces"].copy()
    with pytest.raises(DatasetError, match=r"frame 0: the dataset is periodic but this structure has no cell"):
        check_frames([bare], "carbon", periodic=True)


# ----------------------------------------------------------------------------- splits


def _expected_splits(frames, p):
    """The paper's prepare_carbon_dataset, written out: shuffle, then density thresholds and caps."""
    bulk = [a for a in frames if a.info["subset"] == "bulk"]
    surf = [a for a in frames if a.info["subset"] == "surface"]
    random.seed(p.split_seed)
    random.shuffle(bulk)
    random.shuffle(surf)
    rho = [len(a) * C_MASS * AMU_G / (a.get_volume() * 1e-24) for a in bulk]
    high = [a for a, r in zip(bulk, rho) if r > 3.0]
    rest = [a for a, r in zip(bulk, rho) if r <= 3.0]
    low = [a for a, r in zip(bulk, rho) if r < 2.0]
    return high, rest[: p.max_candidates], low, surf[: p.max_targets]


def test_generated_frames_carry_the_papers_splits(smoke):
    p = _params()
    bulk = sorted((a for a in smoke if a.info["subset"] == "bulk"), key=lambda a: (a.info["run"], a.info["md_step"]))
    surf = sorted((a for a in smoke if a.info["subset"] == "surface"), key=lambda a: a.info["slab"])
    high, cand, low, targets = _expected_splits(bulk + surf, p)  # from the order of generation
    by = {s: [a for a in smoke if a.info["split"] == s] for s in ("train", "candidate", "target")}
    assert [id(a) for a in by["train"]] == [id(a) for a in high]
    assert [id(a) for a in by["candidate"]] == [id(a) for a in cand]
    assert [id(a) for a in by["target"]] == [id(a) for a in targets]
    assert [id(a) for a in smoke if a.info["low_density"]] == [id(a) for a in low]
    assert by["train"] and by["candidate"] and by["target"]


def _cube(rho: float, tag: int, n: int = 8) -> Atoms:
    length = (n * C_MASS * AMU_G / (rho * 1e-24)) ** (1 / 3)
    rng = np.random.default_rng(tag)
    return Atoms(numbers=[6] * n, positions=rng.uniform(0, length, (n, 3)), cell=np.eye(3) * length, pbc=True,
                 info={"tag": tag})


def test_prepare_splits_by_density_with_the_papers_shuffle_and_caps():
    densities = [1.5, 1.99, 2.0, 2.5, 2.9999, 3.0001, 3.2, 3.5, 1.7, 2.8, 3.4, 1.9, 2.2, 3.1]
    frames = [_cube(r, i) for i, r in enumerate(densities)]
    for a in frames:
        a.info["subset"] = "bulk"
    for k in range(5):
        s = _cube(2.5, 100 + k)
        s.info.update(subset="surface", density=2.5)
        frames.append(s)
    p = carbon.Params(max_candidates=4, max_targets=2)
    out = carbon.prepare([a.copy() for a in frames], p, seed=0)
    high, cand, low, targets = _expected_splits(frames, p)
    tags = lambda fs: [a.info["tag"] for a in fs]  # noqa: E731
    assert tags(a for a in out if a.info["split"] == "train") == tags(high)
    assert tags(a for a in out if a.info["split"] == "candidate") == tags(cand)
    assert tags(a for a in out if a.info["low_density"]) == tags(low)
    assert tags(a for a in out if a.info["split"] == "target") == tags(targets)
    assert len([a for a in out if a.info["split"] == "unused"]) == (9 - 4) + (5 - 2)
    by_tag = {a.info["tag"]: a for a in out}
    assert by_tag[5].info["split"] == "train" and by_tag[4].info["split"] != "train"  # 3.0001 | 2.9999
    assert by_tag[2].info["low_density"] is False and by_tag[1].info["low_density"] is True  # 2.0 | 1.99


# ----------------------------------------------------------------------------- download


def _gap17_text(rng) -> str:
    """Three frames in GAP-17's extended XYZ layout: bulk_amo, surf_amo and bulk_cryst."""
    blocks = []
    for ct, length, cz in (("bulk_amo", 4.0, 4.0), ("surf_amo", 4.0, 14.0), ("bulk_cryst", 3.0, 3.0)):
        n = 4
        pos = rng.uniform(0, 3.0, (n, 3))
        frac = pos / np.array([length, length, cz])
        force = rng.normal(size=(n, 3))
        energy = -157.0 * n + rng.normal()
        lines = [
            str(n),
            f'Lattice="{length} 0.0 0.0 0.0 {length} 0.0 0.0 0.0 {cz}" '
            "Properties=species:S:1:pos:R:3:frac_pos:R:3:force:R:3 "
            f'energy={energy:.6f} config_type={ct} detailed_ct=test xc_functional=LDA smearing_width="0.1 eV" '
            'virial="1.0 0.0 0.0 0.0 1.0 0.0 0.0 0.0 1.0" pbc="T T T"',
        ]
        for p, f, F in zip(pos, frac, force):
            lines.append("C " + " ".join(f"{x:.8f}" for x in (*p, *f, *F)))
        blocks.append(("\n".join(lines) + "\n", ct, length, cz, energy, pos, force))
    return blocks


def test_from_download_reads_a_gap17_like_file(tmp_path):
    blocks = _gap17_text(np.random.default_rng(3))
    path = tmp_path / "gap17.xyz"
    path.write_text("".join(b[0] for b in blocks))
    frames = carbon.from_download(path, carbon.Params(), seed=0)
    assert [a.info["subset"] for a in frames] == ["bulk", "surface"]  # bulk_cryst dropped
    for a, (_, ct, length, cz, energy, pos, force) in zip(frames, blocks[:2]):
        assert a.info["config_type"] == ct
        assert a.info["energy"] == pytest.approx(energy, abs=1e-6)
        np.testing.assert_allclose(a.positions, pos, atol=1e-8)
        np.testing.assert_allclose(a.arrays["forces"], force, atol=1e-8)
        assert "force" not in a.arrays and "frac_pos" not in a.arrays
        assert a.info["density"] == pytest.approx(4 * C_MASS * AMU_G / (length * length * cz * 1e-24), rel=1e-9)
        assert a.info["reference_method"] == "DFT (LDA, CASTEP), GAP-17 training set"
    everything = carbon.from_download(path, carbon.Params(keep_config_types=None), seed=0)
    assert [a.info["subset"] for a in everything] == ["bulk", "surface", "bulk_cryst"]


def test_from_download_reads_a_tar_archive_in_member_order(tmp_path):
    blocks = _gap17_text(np.random.default_rng(4))
    (tmp_path / "train.xyz").write_text(blocks[0][0])
    (tmp_path / "test.xyz").write_text(blocks[1][0])
    archive = tmp_path / "gap17.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "train.xyz", arcname="gap17/train.xyz")
        tar.add(tmp_path / "test.xyz", arcname="gap17/test.xyz")
    frames = carbon.from_download(archive, carbon.Params(), seed=0)
    assert [a.info["config_type"] for a in frames] == ["bulk_amo", "surf_amo"]
    picked = carbon.from_download(archive, carbon.Params(archive_members=["test.xyz"]), seed=0)
    assert [a.info["config_type"] for a in picked] == ["surf_amo"]
    with pytest.raises(DatasetError, match=r"archive_members \['valid.xyz'\] not in the archive"):
        carbon.from_download(archive, carbon.Params(archive_members=["valid.xyz"]), seed=0)


def test_download_source_end_to_end_with_a_local_archive(tmp_path):
    blocks = _gap17_text(np.random.default_rng(5))
    path = tmp_path / "gap17.xyz"
    path.write_text("".join(b[0] for b in blocks))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    frames = _run(
        "carbon",
        "dataset.source=download",
        f"dataset.download.url=file://{path}",
        f"dataset.download.sha256={sha}",
        "dataset.download.filename=gap17.xyz",
        f"raw_dir={tmp_path / 'raw'}",
    )
    assert [a.info["split"] for a in frames] == ["candidate", "target"]  # 4 C in a 4 A cube: 1.25 g/cm3
    assert [a.info["low_density"] for a in frames] == [True, False]
    assert all(a.info["source"] == "download" and a.info["reference_method"].startswith("DFT") for a in frames)


# ----------------------------------------------------------------------------- liquid


@pytest.fixture(scope="module")
def liquid() -> list[Atoms]:
    return _run("carbon_liquid")


def test_liquid_frame_has_the_configured_size_density_and_tersoff_labels(liquid):
    p = _params("carbon_liquid", module=carbon_liquid)
    assert len(liquid) == 1
    (a,) = liquid
    assert len(a) == p.n_atoms and a.pbc.all()
    assert _density(a) == pytest.approx(p.density, rel=1e-12)
    assert a.info["reference_method"].startswith("Tersoff") and a.info["reference_program"].startswith("matscipy")
    b = a.copy()
    b.calc = calculator("tersoff")
    assert b.get_potential_energy() == pytest.approx(a.info["energy"], abs=1e-9)
    np.testing.assert_allclose(b.get_forces(), a.arrays["forces"], atol=1e-9)
    assert _min_distance(a) > 1.0


def test_liquid_is_deterministic_under_the_seed(liquid):
    assert np.array_equal(_run("carbon_liquid")[0].positions, liquid[0].positions)
    assert not np.allclose(_run("carbon_liquid", "seed=7")[0].positions, liquid[0].positions)


def test_liquid_from_a_positions_only_file(tmp_path, liquid):
    frame = Atoms(liquid[0].symbols, positions=liquid[0].positions, cell=liquid[0].cell, pbc=True)
    path = tmp_path / "md.xyz"
    frame.write(path, format="extxyz")
    frames = _run(
        "carbon_liquid", "dataset.source=file", f"dataset.file.path={path}",
        "dataset.file.reference_method='none (positions only)'",
    )
    assert frames[0].info["subset"] == "liquid" and "energy" not in frames[0].info
    assert frames[0].info["density"] == pytest.approx(_density(frame), rel=1e-9)
    Atoms(frame.symbols, positions=frame.positions).write(tmp_path / "nocell.xyz", format="extxyz")
    with pytest.raises(DatasetError, match=r"nocell.xyz, frame 0: the dataset is periodic"):
        _run("carbon_liquid", "dataset.source=file", f"dataset.file.path={tmp_path / 'nocell.xyz'}",
             "dataset.file.reference_method=none")
