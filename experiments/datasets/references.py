"""Reference calculators that label generated structures, each with its provenance.

None of these is DFT: GFN1/GFN2-xTB (tblite) are semi-empirical tight binding,
Stillinger-Weber and Tersoff (matscipy) are empirical potentials, and the
coarse-grained water reference is a classical water model (OpenMM). Every
structure records which one labelled it (see :mod:`experiments.datasets.io`).
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
from ase import Atoms

from .io import Reference, annotate

__all__ = ["xtb_calculator", "stillinger_weber_calculator", "tersoff_calculator", "label", "REFERENCES"]

#: name used in configs -> (method as written on figures, program)
REFERENCES = {
    "gfn2-xtb": ("GFN2-xTB", "tblite"),
    "gfn1-xtb": ("GFN1-xTB", "tblite"),
    "stillinger-weber": ("Stillinger-Weber (PRB 31, 5262, Si)", "matscipy"),
    "tersoff": ("Tersoff (PRB 39, 5566, C)", "matscipy"),
}


def reference(name: str, **settings) -> Reference:
    """The :class:`Reference` record of a reference calculator by config name."""
    if name not in REFERENCES:
        raise ValueError(f"reference {name!r} is not one of {sorted(REFERENCES)}")
    method, program = REFERENCES[name]
    return Reference(method, f"{program} {version(program)}", settings)


def xtb_calculator(method: str = "GFN2-xTB", electronic_temperature: float = 300.0, accuracy: float = 1.0):
    """tblite's ASE calculator (energies in eV, forces in eV/A); periodic cells are supported."""
    from tblite.ase import TBLite

    # cache_api=False: reset() drops the previous structure's wavefunction, so every SCF
    # starts afresh (a restart from another structure can land on a wrong SCF state)
    return TBLite(
        method=method, electronic_temperature=electronic_temperature, accuracy=accuracy, verbosity=0, cache_api=False
    )


def stillinger_weber_calculator(three_body: bool = True):
    """Stillinger-Weber silicon (PRB 31, 5262); ``three_body=False`` keeps the two-body part only."""
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody.explicit_forms import StillingerWeber
    from matscipy.calculators.manybody.explicit_forms.stillinger_weber import Stillinger_Weber_PRB_31_5262_Si

    params = dict(Stillinger_Weber_PRB_31_5262_Si)
    if not three_body:
        params["lambda1"] = 0.0
    return Manybody(**StillingerWeber(params))


def tersoff_calculator():
    """Tersoff carbon (PRB 39, 5566) through matscipy's many-body calculator."""
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody.explicit_forms import TersoffBrenner
    from matscipy.calculators.manybody.explicit_forms.tersoff_brenner import Tersoff_PRB_39_5566_Si_C

    params = dict(Tersoff_PRB_39_5566_Si_C)
    return Manybody(**TersoffBrenner(params))


def calculator(name: str, **settings):
    if name in ("gfn2-xtb", "gfn1-xtb"):
        return xtb_calculator(REFERENCES[name][0], **settings)
    if name == "stillinger-weber":
        return stillinger_weber_calculator(**settings)
    if name == "tersoff":
        return tersoff_calculator()
    raise ValueError(f"reference {name!r} is not one of {sorted(REFERENCES)}")


def label(atoms: Atoms, name: str, calc=None, **settings) -> Atoms:
    """Compute energy (eV) and forces (eV/A) of ``atoms`` with a reference; store them with provenance.

    A calculator may be passed in to reuse it across structures.
    """
    calc = calc if calc is not None else calculator(name, **settings)
    calc.reset()  # never start from another structure's results
    atoms = atoms.copy()
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    forces = np.asarray(atoms.get_forces(), dtype=float)
    atoms.calc = None
    atoms.info["energy"] = energy
    atoms.arrays["forces"] = forces
    return annotate(atoms, reference(name, **settings))
