"""An ASE calculator that reports the PR, the energy uncertainty and the LPR of every atom at every step."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._llpr import LLPR

RIGIDITY_KEYS = ("energy_uncertainty", "pr", "lpr")


def _calculator_base():
    from ase.calculators.calculator import Calculator, all_changes

    return Calculator, all_changes


class RigidityCalculator(_calculator_base()[0]):
    """Energies and forces of a trained model, with its last-layer rigidities at every step.

    Parameters
    ----------
    llpr : LLPR
        Built over the model's training set (and calibrated, for uncertainties in eV).
    calculator : ase Calculator, optional
        The model's own ASE calculator (mace's ``MACECalculator``, schnetpack's
        ``SpkCalculator``, metatomic's): energy, forces and stress come from it (its energy
        must be the adapter's model's, to 1e-6 relative + 1 meV: a calculator of another model
        or head is refused). Without it
        they come from the adapter (:meth:`LastLayer.evaluate`: the model's energy and
        forces, one forward and one backward pass where the adapter supports it).

    Beside ``energy``, ``free_energy`` and ``forces``, ``results`` holds
    ``energy_uncertainty`` (eV, calibrated), ``pr`` (the structure's energy PR) and ``lpr``
    (per atom). They are also written into the Atoms being computed, ``info["pr"]``,
    ``info["energy_uncertainty"]`` and ``arrays["lpr"]``, so a trajectory written with
    ``ase.io.write(..., format="extxyz")`` keeps them (ASE's extxyz writer keeps only the
    calculator results it knows) and OVITO or the ASE GUI can colour atoms by LPR.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", *RIGIDITY_KEYS]

    def __init__(self, llpr: LLPR, calculator: Any = None, **kwargs):
        if not isinstance(llpr, LLPR):
            raise TypeError(f"expected a rigidity.last_layer.LLPR, got {type(llpr).__name__}")
        llpr._check_fitted()
        super().__init__(**kwargs)
        self.llpr = llpr
        self.calculator = calculator

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        Calculator, all_changes = _calculator_base()
        Calculator.calculate(self, atoms, properties, all_changes if system_changes is None else system_changes)
        atoms = self.atoms if atoms is None else atoms
        llpr = self.llpr
        if self.calculator is not None:
            inner = atoms.copy()
            inner.calc = self.calculator
            energy = float(inner.get_potential_energy())
            forces = np.asarray(inner.get_forces())
            if "stress" in properties:
                self.results["stress"] = np.asarray(inner.get_stress())
            out = llpr.last_layer.compute([atoms], batch_size=1)
            own = float(out["energy"][0])
            if abs(own - energy) > 1e-6 * abs(own) + 1e-3:
                raise ValueError(f"the calculator's energy {energy!r} eV is not the model's {own!r} eV: is it a "
                                 "calculator of another model (or head) than the LLPR's?")
        else:
            if "stress" in properties:
                raise NotImplementedError("stress needs the model's own calculator: RigidityCalculator(llpr, calc)")
            out = llpr.last_layer.evaluate([atoms], batch_size=1)
            energy, forces = float(out["energy"][0]), out["forces"]
        phi = out["phi"]
        variance = float(llpr.hessian.variance(phi.sum(axis=0, keepdims=True))[0])
        lpr = np.asarray(llpr.hessian.lpr(phi))
        uncertainty = float(np.sqrt(llpr.alpha["energy"] * variance))
        self.results.update(energy=energy, free_energy=energy, forces=forces, energy_uncertainty=uncertainty,
                            pr=1.0 / variance, lpr=lpr)
        atoms.info["energy_uncertainty"] = uncertainty
        atoms.info["pr"] = 1.0 / variance
        atoms.arrays["lpr"] = lpr
