"""QM9 molecules with their B3LYP internal energy at 0 K (U0): Figs 1-3 (Section III).

The paper trains PaiNN, MACE and SOAP-BPNN models on QM9 (Ramakrishnan, Dral,
Rupp, von Lilienfeld, *Sci. Data* 1, 140022 (2014); figshare collection 978904).
Its preparation (the paper's ``prepare_qm9.ipynb``), reproduced here:

1. every molecule of ``dsgdb9nsd.xyz.tar.bz2`` in QM9 index order (the sorted,
   zero-padded file names), minus the 3,054 molecules of ``uncharacterized.txt``
   (they failed QM9's geometry consistency check);
2. Python's ``random.seed(20240412)`` then ``random.shuffle`` of that list;
3. nested training subsets = the first 100 / 500 / 1000 / 2233 / 5000 / 10000
   molecules, validation = molecules [10000:11000], test = [11000:12000];
4. target: U0, Hartree in the file, converted here to eV with
   :data:`HARTREE_TO_EV` (CODATA 2018).

Sources
-------
``download`` (paper scale)
    the figshare archive, converted by :func:`from_download`, which also fetches
    ``uncharacterized.txt`` (``Params.uncharacterized_url``) into the same folder.
``file`` (smoke and quick scales, the default)
    ``data/qm9/qm9_sample_985.extxyz``: 985 real QM9 molecules shipped with the
    project (LGPL-2.1, from librascal; see ``data/README.md``), with U0 in eV;
    or any extxyz the user names.

Either way :func:`prepare` shuffles the molecules and assigns the split. There is
no generator: QM9 is real DFT data and no offline stand-in is made for it.

Reference
---------
B3LYP/6-31G(2df,p) (QM9): this one **is** DFT. Molecules record it in
``info["reference_method"]``; ``info["energy"]`` is U0 in eV; there are no forces
(QM9 geometries are minima and QM9 publishes none).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from ase import Atoms

from .download import fetch
from .io import DatasetError, Reference, annotate

__all__ = [
    "Params",
    "generate",
    "from_download",
    "prepare",
    "parse_qm9_xyz",
    "parse_uncharacterized",
    "subset",
    "committee_subset",
    "HARTREE_TO_EV",
    "REFERENCE_METHOD",
    "ATOM_U0_HARTREE",
]

log = logging.getLogger(__name__)

#: eV per Hartree (CODATA 2018 recommended value, 27.211386245988(53) eV)
HARTREE_TO_EV = 27.211386245988

#: the method written on every QM9 molecule (and on the figures)
REFERENCE_METHOD = "B3LYP/6-31G(2df,p) (QM9)"

#: program and source of the QM9 labels
REFERENCE_PROGRAM = "Gaussian 09 (QM9: Ramakrishnan et al., Sci. Data 1, 140022 (2014))"

#: U0 of the isolated atoms at B3LYP/6-31G(2df,p) (Hartree), QM9's atomref.txt (figshare file 3195395)
ATOM_U0_HARTREE = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730}

#: the 15 properties of line 2 of a QM9 xyz file, after "gdb" and the index
#: (rotational constants A, B, C in GHz; mu in D; alpha in bohr^3; homo, lumo, gap in Hartree;
#: r2 in bohr^2; zpve, U0, U, H, G in Hartree; Cv in cal/(mol K))
PROPERTY_NAMES = ("A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv")

#: split names in the order they are written (info["subset"])
SUBSETS = ("train", "validation", "test")


@dataclasses.dataclass
class Params:
    # --- split (prepare), the paper's values ---
    train_sizes: list[int] = dataclasses.field(
        default_factory=lambda: [100, 500, 1000, 2233, 5000, 10000]
    )  # nested training subsets: the first n molecules of the shuffled list (molecules)
    validation: list[int] = dataclasses.field(
        default_factory=lambda: [10000, 11000]
    )  # [start, stop) of the validation molecules in the shuffled list (positions)
    test: list[int] = dataclasses.field(
        default_factory=lambda: [11000, 12000]
    )  # [start, stop) of the test molecules in the shuffled list (positions)
    split_seed: int | None = 20240412  # Python random.seed of the shuffle (paper: 20240412); null: the run's seed
    # --- download: the second file, the list of molecules to drop ---
    uncharacterized_url: str | None = "https://ndownloader.figshare.com/files/3195404"  # QM9 uncharacterized.txt
    uncharacterized_sha256: str | None = (
        "3aa5115d540b356de94791d4a74c3bf1ed91c469ecf52a4f5d7cc0506fe02e24"
    )  # its SHA-256
    uncharacterized_filename: str = "uncharacterized.txt"  # name beside the archive in raw_dir
    uncharacterized_count: int | None = 3054  # molecules the list must hold (null: no check)


# ----------------------------------------------------------------------------- checks


def _interval(name: str, value: Iterable[int]) -> tuple[int, int]:
    pair = [int(v) for v in value]
    if len(pair) != 2 or not 0 <= pair[0] < pair[1]:
        raise ValueError(f"{name} = {list(value)} must be [start, stop) with 0 <= start < stop (positions)")
    return pair[0], pair[1]


def _split_ranges(params: Params) -> dict[str, tuple[int, int]]:
    """The [start, stop) range of each subset in the shuffled list; checks that they do not overlap."""
    sizes = [int(n) for n in params.train_sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"train_sizes = {list(params.train_sizes)} must be a non-empty list of positive sizes")
    ranges = {
        "train": (0, max(sizes)),
        "validation": _interval("validation", params.validation),
        "test": _interval("test", params.test),
    }
    names = list(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (a0, a1), (b0, b1) = ranges[a], ranges[b]
            if a0 < b1 and b0 < a1:
                raise ValueError(f"{a} molecules [{a0}, {a1}) and {b} molecules [{b0}, {b1}) overlap")
    return ranges


# ----------------------------------------------------------------------------- parsing


def _float(token: str) -> float:
    """A QM9 number; some use Mathematica's exponent, e.g. ``2.1997*^-6`` = 2.1997e-6."""
    return float(token.replace("*^", "e"))


def parse_qm9_xyz(text: str, where: str = "<string>") -> Atoms:
    """One molecule of QM9's xyz format, with U0 (eV) under ``info["energy"]``.

    The format (QM9's readme.txt): line 1, the number of atoms n; line 2,
    ``gdb <index> A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv``; then n lines
    ``<element> x y z <Mulliken charge>`` (A, e); then frequencies, SMILES and InChI.

    Parameters
    ----------
    text : str
        The whole file.
    where : str
        Name used in error messages (file or archive member).

    Returns
    -------
    ase.Atoms
        No cell; ``info["energy"]`` = U0 (eV, U0 in Hartree x :data:`HARTREE_TO_EV`),
        ``info["qm9_index"]`` (int), no reference recorded yet.
    """
    lines = text.splitlines()
    try:
        n_atoms = int(lines[0])
    except (IndexError, ValueError):
        raise DatasetError(f"{where}: line 1 should be the number of atoms, got {lines[:1]!r}") from None
    if n_atoms < 1 or len(lines) < n_atoms + 2:
        raise DatasetError(f"{where}: {n_atoms} atoms announced but the file has {len(lines)} lines")
    props = lines[1].split()
    if len(props) != 2 + len(PROPERTY_NAMES) or props[0] != "gdb":
        raise DatasetError(
            f"{where}: line 2 should be 'gdb <index>' and {len(PROPERTY_NAMES)} properties, got {lines[1][:80]!r}"
        )
    try:
        index = int(props[1])
        values = dict(zip(PROPERTY_NAMES, (_float(t) for t in props[2:])))
    except ValueError as err:
        raise DatasetError(f"{where}: line 2 holds a value that is not a number ({err})") from None
    symbols, positions = [], []
    for k in range(2, 2 + n_atoms):
        tokens = lines[k].split()
        if len(tokens) < 4:
            raise DatasetError(f"{where}, line {k + 1}: expected '<element> x y z charge', got {lines[k]!r}")
        symbols.append(tokens[0])
        try:
            positions.append([_float(t) for t in tokens[1:4]])
        except ValueError:
            raise DatasetError(f"{where}, line {k + 1}: coordinates {tokens[1:4]} are not numbers") from None
    unknown = sorted(set(symbols) - set(ATOM_U0_HARTREE))
    if unknown:
        raise DatasetError(f"{where}: elements {unknown} are not QM9's (H, C, N, O, F)")
    if not np.isfinite(values["U0"]):
        raise DatasetError(f"{where}: U0 = {values['U0']} is not finite")
    atoms = Atoms(symbols=symbols, positions=np.asarray(positions, dtype=float))
    atoms.info["energy"] = values["U0"] * HARTREE_TO_EV
    atoms.info["qm9_index"] = index
    return atoms


def parse_uncharacterized(text: str, where: str = "uncharacterized.txt") -> set[int]:
    """QM9 indices listed in ``uncharacterized.txt``: every line whose first field is an integer.

    The file has a few header and footer lines and one line per molecule
    (``<index> <SMILES> ...``); header lines start with text, so they are skipped.
    """
    indices = set()
    for line in text.splitlines():
        tokens = line.split()
        if tokens and tokens[0].isdigit():
            indices.add(int(tokens[0]))
    if not indices:
        raise DatasetError(f"{where}: no QM9 index found (expected lines starting with an integer)")
    return indices


_MEMBER_INDEX = re.compile(r"_(\d+)\.xyz$")


def _iter_archive(path: Path) -> Iterator[tuple[str, str]]:
    """(member name, text) of every .xyz file of a tar archive, read as a stream."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".xyz"):
                    yield member.name, tar.extractfile(member).read().decode()
    except tarfile.TarError as err:
        raise DatasetError(f"{path}: not a readable tar archive ({err})") from None


# ----------------------------------------------------------------------------- sources


def generate(params: Params, seed: int) -> list[Atoms]:
    """No generator: QM9 is real DFT data. Use source=file (the shipped sample) or source=download."""
    raise DatasetError(
        "dataset qm9 has no offline generator: use source=file (default: the shipped sample "
        "data/qm9/qm9_sample_985.extxyz) or source=download (the figshare archive)"
    )


def from_download(path, params: Params, seed: int) -> list[Atoms]:
    """Convert QM9's ``dsgdb9nsd.xyz.tar.bz2`` minus its uncharacterized molecules.

    ``uncharacterized.txt`` is fetched (``params.uncharacterized_url``, checked
    against ``params.uncharacterized_sha256``) into the archive's folder.

    Parameters
    ----------
    path : str or os.PathLike
        The archive (tar, any compression), one QM9 xyz file per molecule.
    params : Params
        The uncharacterized list's URL, checksum and expected count.
    seed : int
        Unused (the split is :func:`prepare`'s).

    Returns
    -------
    list of ase.Atoms
        In QM9 index order, the order the paper shuffles; ``info["energy"]`` = U0 (eV),
        ``info["qm9_index"]``, and the reference recorded.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    listing = fetch(
        params.uncharacterized_url, params.uncharacterized_sha256, path.parent, params.uncharacterized_filename
    )
    dropped = parse_uncharacterized(Path(listing).read_text(), str(listing))
    if params.uncharacterized_count is not None and len(dropped) != params.uncharacterized_count:
        raise DatasetError(
            f"{listing}: lists {len(dropped)} molecules, "
            f"expected uncharacterized_count = {params.uncharacterized_count}"
        )
    reference = Reference(
        REFERENCE_METHOD,
        REFERENCE_PROGRAM,
        {"property": "U0", "hartree_to_ev": HARTREE_TO_EV, "archive": path.name, "dropped": listing.name},
    )
    kept: dict[int, Atoms] = {}
    n_read = 0
    for name, text in _iter_archive(path):
        atoms = parse_qm9_xyz(text, f"{path}:{name}")
        index = atoms.info["qm9_index"]
        match = _MEMBER_INDEX.search(name)
        if match and int(match.group(1)) != index:
            raise DatasetError(f"{path}:{name}: file number {int(match.group(1))} but line 2 says index {index}")
        n_read += 1
        if n_read % 20000 == 0:
            log.info("read %d QM9 molecules", n_read)
        if index in dropped:
            continue
        if index in kept:
            raise DatasetError(f"{path}:{name}: QM9 index {index} appears twice")
        kept[index] = annotate(atoms, reference)
    if not kept:
        raise DatasetError(f"{path}: no QM9 molecule left ({n_read} read, {len(dropped)} listed as uncharacterized)")
    log.info("QM9: %d molecules read, %d kept after dropping the uncharacterized", n_read, len(kept))
    return [kept[i] for i in sorted(kept)]


def prepare(frames: list[Atoms], params: Params, seed: int) -> list[Atoms]:
    """Shuffle as the paper did and keep the training, validation and test molecules.

    The input order is the order before the shuffle (QM9 index order for the
    download; the file's order for a file). ``random.Random(s).shuffle`` draws
    the same permutation as ``random.seed(s); random.shuffle(...)`` on a list of
    the same length.

    Parameters
    ----------
    frames : list of ase.Atoms
        Molecules with ``info["energy"]`` (eV).
    params : Params
        Training sizes and the validation and test ranges (positions in the shuffled list).
    seed : int
        The run's master seed, used when ``params.split_seed`` is null.

    Returns
    -------
    list of ase.Atoms
        The molecules at positions [0, max(train_sizes)), ``validation`` and ``test``
        of the shuffled list, in shuffled order, each with ``info["subset"]``
        ("train", "validation" or "test") and ``info["rank"]`` (its position). The
        training subset of size n is the first n "train" molecules.
    """
    ranges = _split_ranges(params)
    needed = max(stop for _, stop in ranges.values())
    if len(frames) < needed:
        raise DatasetError(
            f"qm9: the split needs {needed} molecules (train_sizes {list(params.train_sizes)}, validation "
            f"{list(params.validation)}, test {list(params.test)}) but only {len(frames)} were given; "
            "the shipped sample is for scale=smoke and scale=quick: at scale=paper use dataset.source=download"
        )
    split_seed = seed if params.split_seed is None else int(params.split_seed)
    order = list(range(len(frames)))
    random.Random(split_seed).shuffle(order)
    out = []
    for rank in range(needed):
        name = next((n for n, (start, stop) in ranges.items() if start <= rank < stop), None)
        if name is None:
            continue
        atoms = frames[order[rank]]
        atoms.info.update(subset=name, rank=rank, split_seed=split_seed)
        out.append(atoms)
    return out


# ----------------------------------------------------------------------------- subsets for later stages


def subset(frames: list[Atoms], name: str, n: int | None = None) -> list[Atoms]:
    """Molecules of one split, in shuffled order; ``n``: the first n of them (the nested training subsets).

    Parameters
    ----------
    frames : list of ase.Atoms
        Output of :func:`prepare` (or the data stage's extxyz).
    name : str
        "train", "validation" or "test".
    n : int, optional
        Number of molecules to keep (all when None).
    """
    if name not in SUBSETS:
        raise ValueError(f"subset {name!r} is not one of {SUBSETS}")
    chosen = sorted((a for a in frames if a.info.get("subset") == name), key=lambda a: a.info["rank"])
    if n is not None:
        if not 0 < n <= len(chosen):
            raise ValueError(f"{name} subset of {n} molecules asked, but the dataset holds {len(chosen)}")
        chosen = chosen[:n]
    return chosen


def committee_subset(frames: list[Atoms], member: int, n_members: int = 10) -> list[Atoms]:
    """Training molecules of committee member ``member`` (Fig 2): all but its block.

    The training molecules (shuffled order) are cut into ``n_members`` blocks of
    ``n_train // n_members``; member i leaves out block i, as the paper's
    ``frames[:1000 * i] + frames[1000 * (i + 1):10000]``. The workflow's run key
    ``n<n_train>-x<member>of<n_members>`` selects the same molecules (experiments/runs.py).
    """
    train = subset(frames, "train")
    block = len(train) // n_members
    if block < 1 or not 0 <= member < n_members:
        raise ValueError(f"member {member} of {n_members}: "
                         f"need 0 <= member < n_members <= {len(train)} training molecules")
    return train[: block * member] + train[block * (member + 1) :]
