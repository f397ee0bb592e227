"""Rebuild data/qm9/qm9_sample_985.extxyz from librascal's small_molecules-1000.xyz.

    python data/qm9/build_sample.py small_molecules-1000.xyz data/qm9/qm9_sample_985.extxyz \
        [--check qm9_with_U0.xyz]

Source: lab-cosmo/librascal, reference_data/inputs/small_molecules-1000.xyz
(LGPL-2.1): 985 QM9 molecules (C, H, N, O), each with
``dft_formation_energy_per_atom_in_eV`` = (U0 - sum of QM9's isolated-atom U0) / n_atoms.

This script undoes that subtraction with QM9's atomref.txt values
(:data:`experiments.datasets.qm9.ATOM_U0_HARTREE`, Hartree, times
:data:`~experiments.datasets.qm9.HARTREE_TO_EV`), so that ``info["energy"]`` is
U0 in eV, the target of the paper and of ``source=download``:

    U0 = n_atoms * e_formation + sum_atoms U0_atom(element) * HARTREE_TO_EV

The cell (a 14 A box with pbc False) is dropped; positions are kept as in the
file. ``info["formation_energy_per_atom"]`` keeps the original value (eV) and
``info["sample_index"]`` the position in the original file.

``--check FILE`` compares the rebuilt U0 with an extxyz of QM9 molecules carrying
U0 in Hartree under ``info["U0"]`` (e.g. metatrain's qm9 test file), matching
molecules by formula and sorted interatomic distances (0.1 mA).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.datasets.io import write_frames  # noqa: E402
from experiments.datasets.qm9 import ATOM_U0_HARTREE, HARTREE_TO_EV  # noqa: E402

KEY = "dft_formation_energy_per_atom_in_eV"


def rebuild(frames: list[Atoms]) -> list[Atoms]:
    out = []
    for i, atoms in enumerate(frames):
        if KEY not in atoms.info:
            raise ValueError(f"frame {i}: no {KEY!r} (info keys: {sorted(atoms.info)})")
        symbols = atoms.get_chemical_symbols()
        e_form = float(atoms.info[KEY])
        u0 = len(atoms) * e_form + HARTREE_TO_EV * sum(ATOM_U0_HARTREE[s] for s in symbols)
        mol = Atoms(symbols=symbols, positions=atoms.get_positions())
        mol.info["energy"] = u0
        mol.info["formation_energy_per_atom"] = e_form
        mol.info["sample_index"] = i
        out.append(mol)
    return out


def _fingerprint(atoms: Atoms) -> np.ndarray:
    return np.sort(atoms.get_all_distances().ravel())


def check(rebuilt: list[Atoms], path: str) -> None:
    """Print U0 (rebuilt) - U0 (file) for the molecules present in both."""
    reference = ase.io.read(path, ":")
    by_formula: dict[str, list[Atoms]] = {}
    for atoms in reference:
        by_formula.setdefault(atoms.get_chemical_formula(), []).append(atoms)
    n = 0
    for mol in rebuilt:
        for ref in by_formula.get(mol.get_chemical_formula(), []):
            if np.allclose(_fingerprint(mol), _fingerprint(ref), atol=1e-4):
                diff = mol.info["energy"] - float(ref.info["U0"]) * HARTREE_TO_EV
                print(f"sample {mol.info['sample_index']} {mol.get_chemical_formula()}: U0 difference {diff:+.2e} eV")
                n += 1
    print(f"{n} molecules in common")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="librascal's small_molecules-1000.xyz")
    parser.add_argument("output", help="extxyz to write")
    parser.add_argument("--check", help="extxyz of QM9 molecules with U0 (Hartree) in info['U0']")
    args = parser.parse_args()
    rebuilt = rebuild(ase.io.read(args.source, ":"))
    write_frames(rebuilt, args.output)
    print(f"wrote {len(rebuilt)} molecules to {args.output}")
    if args.check:
        check(rebuilt, args.check)


if __name__ == "__main__":
    main()
