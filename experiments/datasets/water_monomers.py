"""Isolated, distorted water molecules: Fig 7's extrapolation set (Section V.2).

Models of Fig 7 are trained on water dimers only and then predict the energies
of isolated monomers. Each monomer here is one H2O (atoms O, H, H) with both
O-H bond lengths drawn independently and uniformly in ``[bond_min, bond_max]``
(A), the H-O-H angle uniformly in ``[angle_min, angle_max]`` (degrees), a
uniformly random orientation and the oxygen at the origin (see
:mod:`.water_geometry`). The defaults bracket the GFN2-xTB equilibrium
(0.959 A, 107.2 degrees) by about -0.1/+0.14 A and +-15 degrees, and
:mod:`.water_dimers` draws its molecules from the same ranges, so that the
monomers lie inside the distribution of distortions the models were trained on.

The structures are not periodic (no cell): the feature stage of Fig 7 places
them in boxes itself. The paper's text uses 100 monomers.

Reference
---------
The paper's energies are DFT; this offline generator labels with **GFN2-xTB
(tblite)**, a semi-empirical tight-binding method, *not* DFT: total energy
(eV) in ``info["energy"]``, forces (eV/A) in ``arrays["forces"]``, and the
method in ``info["reference_method"]``.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from ase import Atoms

from .water_geometry import check_xtb_reference, label_drawn, sample_water

__all__ = ["Params", "generate"]

log = logging.getLogger(__name__)

#: stream tag mixed into the seed: monomers differ from the dimers' molecules under one master seed
_STREAM = 7401


@dataclasses.dataclass
class Params:
    n_monomers: int = 100  # number of molecules (paper text: 100)
    bond_min: float = 0.86  # shortest O-H bond length drawn (A); GFN2-xTB equilibrium 0.959 A
    bond_max: float = 1.10  # longest O-H bond length drawn (A)
    angle_min: float = 92.0  # smallest H-O-H angle drawn (degrees); GFN2-xTB equilibrium 107.2
    angle_max: float = 122.0  # largest H-O-H angle drawn (degrees)
    reference: str = "gfn2-xtb"  # labels: gfn2-xtb | gfn1-xtb (tblite); the paper's were DFT
    electronic_temperature: float = 300.0  # tblite electronic temperature (K)
    accuracy: float = 1.0  # tblite numerical accuracy (1 = default; smaller is tighter)
    max_redraws: int = 100  # SCF failures tolerated (each failed molecule is redrawn) before giving up


def _check(params: Params) -> None:
    if params.n_monomers < 1:
        raise ValueError(f"n_monomers = {params.n_monomers} must be at least 1")
    check_xtb_reference(params.reference)


def generate(params: Params, seed: int) -> list[Atoms]:
    """``params.n_monomers`` distorted water molecules with GFN2-xTB energies and forces.

    Parameters
    ----------
    params : Params
        Sizes, sampling ranges and reference (units in :class:`Params`).
    seed : int
        Master seed; the same seed gives the same molecules and labels.

    Returns
    -------
    list of ase.Atoms
        Each O, H, H (no cell), with ``info["energy"]`` (eV), ``arrays["forces"]``
        (eV/A), the drawn ``info["r_oh1"]``, ``info["r_oh2"]`` (A),
        ``info["angle_hoh"]`` (degrees), ``info["subset"] = "test"`` (Fig 7 only
        predicts them) and the reference's provenance.
    """
    _check(params)
    rng = np.random.default_rng([int(seed), _STREAM])

    def draw():
        positions, (r1, r2, angle) = sample_water(rng, params.bond_min, params.bond_max, params.angle_min,
                                                  params.angle_max)
        atoms = Atoms("OH2", positions=positions, pbc=False)
        info = dict(r_oh1=r1, r_oh2=r2, angle_hoh=angle, subset="test")
        return atoms, info, f"a monomer (r = {r1:.3f}, {r2:.3f} A, angle {angle:.1f} deg)"

    frames = label_drawn(params.n_monomers, draw, params, "water monomers")
    return frames
