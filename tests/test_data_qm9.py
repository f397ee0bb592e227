"""Dataset qm9: QM9's xyz format, the uncharacterized list, the paper's shuffle and split, the shipped sample."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
from pathlib import Path

import pytest
from ase import Atoms
from conftest import compose

from experiments.data import dataset_config, generator_params, run
from experiments.datasets import qm9
from experiments.datasets.io import DatasetError, read_frames

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "qm9" / "qm9_sample_985.extxyz"
EV = 27.211386245988  # eV per Hartree, CODATA 2018, written out independently of the module

# Methane and ammonia as QM9 writes them (gdb 1 and 2), with a "*^" exponent in a coordinate
# of methane and in the dipole (mu) of ammonia; line 2 is tab-separated after "gdb <index>".
METHANE = (
    "5\n"
    "gdb 1\t157.7118\t157.70997\t157.70699\t0.\t13.21\t-0.3877\t0.1171\t0.5048\t35.3641\t0.044749\t"
    "-40.47893\t-40.476062\t-40.475117\t-40.498597\t6.469\t\n"
    "C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689\n"
    "H\t 0.002150416\t-0.0060313176\t 2.1997*^-6\t 0.133921\n"
    "H\t 1.0117308433\t 1.4637511618\t 0.0002765748\t 0.133922\n"
    "H\t-0.540815069\t 1.4475266138\t-0.8766437152\t 0.133923\n"
    "H\t-0.5238136345\t 1.4379326443\t 0.9063972942\t 0.133923\n"
    "1341.307\t1341.3284\t1341.365\t1562.6731\t1562.7453\t3038.3205\t3151.6034\t3151.6788\t3151.7078\n"
    "C\tC\n"
    "InChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4\n"
)
AMMONIA = (
    "4\n"
    "gdb 2\t293.60975\t293.54111\t191.39397\t1.6256*^0\t9.46\t-0.257\t0.0829\t0.3399\t26.1563\t0.034358\t"
    "-56.525887\t-56.523026\t-56.522082\t-56.544961\t6.316\t\n"
    "N\t-0.0404260543\t 1.0241077531\t 0.0625637998\t-0.707143\n"
    "H\t 0.0172574639\t 0.0125452063\t-0.0273771593\t 0.235712\n"
    "H\t 0.9157893661\t 1.3587451948\t-0.0287577581\t 0.235712\n"
    "H\t-0.5202777357\t 1.3435321258\t-0.7755426124\t 0.235719\n"
    "1132.7923\t1638.4387\t1638.4683\t3514.3289\t3629.5969\t3629.6339\n"
    "N\tN\n"
    "InChI=1S/H3N/h1H3\tInChI=1S/H3N/h1H3\n"
)


def qm9_text(index: int, u0_hartree: float, symbols: str = "OHH") -> str:
    """A QM9-format molecule with a chosen index and U0 (Hartree); other values are placeholders."""
    props = [1.0] * 10 + [u0_hartree] + [u0_hartree + 0.003] * 3 + [6.0]
    lines = [str(len(symbols)), f"gdb {index}\t" + "\t".join(repr(p) for p in props)]
    for k, s in enumerate(symbols):
        lines.append(f"{s}\t{0.1 * index:.6f}\t{0.9 * k:.6f}\t0.0\t0.0")
    lines += ["1000.0\t2000.0\t3000.0", "O\tO", "InChI=1S/H2O/h1H2\tInChI=1S/H2O/h1H2"]
    return "\n".join(lines) + "\n"


UNCHARACTERIZED = (
    " Molecules from the set that failed the geometry consistency check\n"
    " (relaxed geometry and GDB-17 SMILES disagree).\n"
    "\n"
    "   Index   SMILES (GDB-17)   SMILES (B3LYP)   Corina   Failed\n"
    " =============================================================\n"
    "       2   O   O   1   1\n"
    "       5   O   O   1   0\n"
    " =============================================================\n"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_archive(tmp_path: Path, n: int = 6) -> tuple[Path, Path]:
    """A QM9-like tar.bz2 of n molecules (U0 = -76 - index/1000 Hartree) and an uncharacterized list of 2 and 5."""
    src = tmp_path / "src"
    src.mkdir()
    archive = src / "dsgdb9nsd.xyz.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for index in range(n, 0, -1):  # stored out of order: the reader must sort by index
            data = qm9_text(index, -76.0 - index / 1000).encode()
            info = tarfile.TarInfo(f"dsgdb9nsd_{index:06d}.xyz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    listing = src / "uncharacterized.txt"
    listing.write_text(UNCHARACTERIZED)
    return archive, listing


# ----------------------------------------------------------------------------- parsing


def test_parser_reads_u0_in_ev_and_positions_with_mathematica_exponents():
    atoms = qm9.parse_qm9_xyz(METHANE, "gdb1.xyz")
    assert atoms.get_chemical_symbols() == ["C", "H", "H", "H", "H"]
    assert atoms.info["qm9_index"] == 1
    assert atoms.info["energy"] == pytest.approx(-40.47893 * EV, abs=1e-9)
    assert atoms.get_positions()[1] == pytest.approx([0.002150416, -0.0060313176, 2.1997e-6], abs=1e-12)
    assert atoms.get_positions()[4] == pytest.approx([-0.5238136345, 1.4379326443, 0.9063972942], abs=1e-12)
    assert not atoms.pbc.any() and "forces" not in atoms.arrays
    nh3 = qm9.parse_qm9_xyz(AMMONIA)
    assert nh3.info["energy"] == pytest.approx(-56.525887 * EV, abs=1e-9)
    assert nh3.get_chemical_formula() == "H3N"


@pytest.mark.parametrize(
    "bad, message",
    [
        (METHANE.replace("gdb 1", "xyz 1"), "line 2"),
        (METHANE.replace("-40.47893", "-40.4x7893"), "not a number"),
        (METHANE.replace("C\t-0.0126981359", "Si\t-0.0126981359"), "Si"),
        ("9\n" + METHANE.split("\n", 1)[1], "9 atoms announced"),
    ],
)
def test_parser_names_the_file_and_the_problem(bad, message):
    with pytest.raises(DatasetError, match="gdb1.xyz") as err:
        qm9.parse_qm9_xyz(bad, "gdb1.xyz")
    assert message in str(err.value)


def test_uncharacterized_list_skips_header_and_footer():
    assert qm9.parse_uncharacterized(UNCHARACTERIZED) == {2, 5}
    with pytest.raises(DatasetError, match="no QM9 index"):
        qm9.parse_uncharacterized("header only\n====\n")


# ----------------------------------------------------------------------------- split


def labelled(n: int) -> list[Atoms]:
    frames = []
    for i in range(n):
        atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
        atoms.info.update(energy=-float(i), tag=i)
        frames.append(atoms)
    return frames


def test_split_follows_random_seed_then_shuffle():
    params = qm9.Params(train_sizes=[5, 20, 40], validation=[40, 50], test=[50, 65], split_seed=20240412)
    frames = qm9.prepare(labelled(80), params, seed=0)

    state = random.getstate()  # the paper's code, on the global generator
    try:
        expected = list(range(80))
        random.seed(20240412)
        random.shuffle(expected)
    finally:
        random.setstate(state)

    tags = {name: [a.info["tag"] for a in qm9.subset(frames, name)] for name in qm9.SUBSETS}
    assert tags["train"] == expected[:40]
    assert tags["validation"] == expected[40:50]
    assert tags["test"] == expected[50:65]
    for n in params.train_sizes:  # nested training subsets: the first n of the shuffled list
        assert [a.info["tag"] for a in qm9.subset(frames, "train", n)] == expected[:n]
    assert len({a.info["tag"] for a in frames}) == len(frames) == 65  # disjoint
    assert [a.info["rank"] for a in frames] == list(range(65))
    # null split_seed: the run's master seed
    again = qm9.prepare(labelled(80),
                        qm9.Params(train_sizes=[40], validation=[40, 50], test=[50, 65], split_seed=None), 20240412)
    assert [a.info["tag"] for a in again] == expected[:65]


def test_split_leaves_gaps_out_and_checks_its_ranges():
    params = qm9.Params(train_sizes=[3], validation=[10, 12], test=[20, 22], split_seed=1)
    frames = qm9.prepare(labelled(30), params, seed=0)
    assert [a.info["rank"] for a in frames] == [0, 1, 2, 10, 11, 20, 21]
    with pytest.raises(DatasetError, match="needs 22 molecules .* only 21"):
        qm9.prepare(labelled(21), params, seed=0)
    with pytest.raises(ValueError, match="overlap"):
        qm9.prepare(labelled(30), qm9.Params(train_sizes=[11], validation=[10, 12], test=[20, 22]), 0)
    with pytest.raises(ValueError, match="validation"):
        qm9.prepare(labelled(30), qm9.Params(train_sizes=[3], validation=[12, 10], test=[20, 22]), 0)


def test_committee_subsets_leave_one_block_out():
    params = qm9.Params(train_sizes=[20], validation=[20, 22], test=[22, 24], split_seed=3)
    frames = qm9.prepare(labelled(30), params, seed=0)
    train = [a.info["tag"] for a in qm9.subset(frames, "train")]
    from experiments.runs import select

    training = compose(["dataset=qm9"]).dataset.training
    tags = [a.info["tag"] for a in frames]
    left_out = []
    for i in range(10):  # the paper: frames[:1000 * i] + frames[1000 * (i + 1):10000], here blocks of 2
        member = [a.info["tag"] for a in qm9.committee_subset(frames, i, 10)]
        assert member == train[: 2 * i] + train[2 * (i + 1) :]
        # the workflow's run key n<n_train>-x<i>of10 is the same committee member
        assert sorted(tags[r] for r in select(frames, training, f"n20-x{i}of10", "qm9")) == sorted(member)
        left_out.append(set(train) - set(member))
    # the left-out tenths are disjoint and together the whole training set: each molecule is missing from one member
    assert all(len(block) == 2 for block in left_out) and set().union(*left_out) == set(train)


# ----------------------------------------------------------------------------- download


def test_from_download_drops_uncharacterized_and_sorts_by_index(tmp_path):
    archive, listing = tiny_archive(tmp_path)
    params = qm9.Params(
        uncharacterized_url=listing.as_uri(), uncharacterized_sha256=sha256(listing), uncharacterized_count=2
    )
    frames = qm9.from_download(archive, params, seed=0)
    assert [a.info["qm9_index"] for a in frames] == [1, 3, 4, 6]
    for a in frames:
        assert a.info["energy"] == pytest.approx((-76.0 - a.info["qm9_index"] / 1000) * EV, abs=1e-9)
        assert a.info["reference_method"] == "B3LYP/6-31G(2df,p) (QM9)"
        assert a.get_chemical_symbols() == ["O", "H", "H"]
    assert (archive.parent / "uncharacterized.txt").is_file()  # fetched beside the archive
    wrong = qm9.Params(uncharacterized_url=listing.as_uri(), uncharacterized_sha256=sha256(listing))
    with pytest.raises(DatasetError, match="lists 2 molecules, expected uncharacterized_count = 3054"):
        qm9.from_download(archive, wrong, seed=0)


def test_download_source_runs_through_the_data_stage(tmp_path):
    archive, listing = tiny_archive(tmp_path, n=9)
    frames = run(compose([
        "dataset=qm9", "scale=paper", "dataset.source=download", f"raw_dir={tmp_path / 'raw'}",
        f"dataset.download.url={archive.as_uri()}", f"dataset.download.sha256={sha256(archive)}",
        f"dataset.generate.uncharacterized_url={listing.as_uri()}",
        f"dataset.generate.uncharacterized_sha256={sha256(listing)}",
        "dataset.generate.uncharacterized_count=2", "dataset.generate.train_sizes=[2,4]",
        "dataset.generate.validation=[4,5]", "dataset.generate.test=[5,7]",
    ]))
    kept = [1, 3, 4, 6, 7, 8, 9]
    random.Random(20240412).shuffle(kept)
    assert [a.info["qm9_index"] for a in frames] == kept
    assert [a.info["subset"] for a in frames] == ["train"] * 4 + ["validation"] + ["test"] * 2
    assert {a.info["source"] for a in frames} == {"download"}
    assert (tmp_path / "raw" / "uncharacterized.txt").is_file()


# ----------------------------------------------------------------------------- offline default


def test_offline_default_runs_on_the_shipped_sample(monkeypatch):
    monkeypatch.chdir(ROOT)  # the config names the sample relative to the repository root
    frames = run(compose(["dataset=qm9", "scale=smoke"]))
    assert [a.info["subset"] for a in frames] == ["train"] * 20 + ["validation"] * 10 + ["test"] * 10
    for a in frames:
        assert a.info["reference_method"] == "B3LYP/6-31G(2df,p) (QM9)"
        assert a.info["source"] == "file" and a.info["energy_unit"] == "eV"
        assert -2e4 < a.info["energy"] < -1e3  # U0 of a QM9 molecule, eV
    quick = run(compose(["dataset=qm9", "scale=quick"]))
    assert len(quick) == 985  # every shipped molecule: 500 train, 100 validation, 385 test
    # the smoke training set is the start of the quick one: the same shuffle of the same 985 molecules
    assert [a.info["sample_index"] for a in quick[:20]] == [a.info["sample_index"] for a in frames[:20]]


def test_shipped_sample_holds_u0_rebuilt_from_formation_energies():
    assert SAMPLE.stat().st_size < 1.5e6
    frames = read_frames(SAMPLE, forces_key=None)
    assert len(frames) == 985
    atom_u0 = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579}  # QM9 atomref.txt, Hartree
    for a in frames[::50]:
        expected = len(a) * a.info["formation_energy_per_atom"] + EV * sum(atom_u0[s] for s in a.get_chemical_symbols())
        assert a.info["energy"] == pytest.approx(expected, abs=1e-6)


def test_paper_scale_keeps_the_papers_settings():
    cfg = compose(["dataset=qm9", "scale=paper"])
    params = generator_params(dataset_config(cfg), qm9.Params)
    assert params.train_sizes == [100, 500, 1000, 2233, 5000, 10000]
    assert (params.validation, params.test, params.split_seed) == ([10000, 11000], [11000, 12000], 20240412)
    assert cfg.dataset.download.url == "https://ndownloader.figshare.com/files/3195389"
    assert len(cfg.dataset.download.sha256) == 64
    with pytest.raises(DatasetError, match="no offline generator"):
        qm9.generate(params, 0)
