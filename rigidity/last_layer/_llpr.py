r"""Last-layer prediction rigidities of a trained model in one object: :class:`LLPR`.

The Gauss-Newton Hessian of the model's training loss in its last-layer weights
(paper, eqs. 5-6),

.. math::

    \mathbf H = \lambda_E \sum_s \ell''_s \, \mathbf g_s \mathbf g_s^\top
        + \lambda_F \sum_{s, a\alpha} \ell''_{s a\alpha} \, \mathbf f_{s a\alpha} \mathbf f_{s a\alpha}^\top
        + \lambda_\sigma \sum_{s, c} \ell''_{s c} \, \boldsymbol\tau_{s c} \boldsymbol\tau_{s c}^\top
        + \sigma^2 \mathbf I,

is built over the training set in batches (``reduction="sum"``: the loss a sum over
training targets, eq. 5; ``"mean"``: each term the mean over its targets, the losses of
mace-torch, schnetpack and metatrain, whose weights are then lambda / (number of rows of
that term), stress off-diagonals counted twice as in a 3 x 3 loss), with energy rows
:math:`\mathbf g_s = \sum_{i \in s} \boldsymbol\phi_i` (or their mean, for a loss on
energies per atom, as mace-torch and the paper's SOAP-BPNN train), force rows
:math:`\mathbf f = -\partial \mathbf g_s / \partial r_{a\alpha}` and stress rows, each
with its loss weight. :math:`\ell'' = 1` for a squared error; for a Huber loss of width
:math:`\delta` it is the loss's second derivative at the training residual, 1 inside
:math:`|r| \le \delta` and 0 outside (the generalised Gauss-Newton weights; mace-torch's
``huber`` loss).

From H: the PR of a structure's energy :math:`1 / (\mathbf g^\top \mathbf H^{-1} \mathbf g)`
with the summed features (the prediction is the total energy), the LPR of every atom
:math:`1 / (\boldsymbol\phi_i^\top \mathbf H^{-1} \boldsymbol\phi_i)`, the CPR of each of
the adapter's feature blocks (each readout layer of a MACE model, each species of a
species-blocked model), and uncertainties :math:`\sqrt{\alpha / \mathrm{PR}}` with
:math:`\alpha` calibrated on a validation set (:meth:`LLPR.calibrate`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..calibration import calibrate as _calibrate
from ..hessian import Hessian
from ._base import LastLayer, check_frames

#: sigma of the paper's last-layer PR (SETTINGS.md): sigma^2 = 2.5e-11
PAPER_REGULARIZER = 2.5e-11
LOSSES = ("mse", "huber")
REDUCTIONS = ("sum", "mean")
#: weights of the Voigt rows xx, yy, zz, yz, xz, xy in a loss over the 9 components of the stress
VOIGT_MULTIPLICITY = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
FILE_KIND = "rigidity.LLPR"


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="structure", file=sys.stderr)


def _reference(atoms, key: str, kind: str, k: int):
    """A structure's reference energy or forces: ``info[key]`` / ``arrays[key]``, else its calculator's results."""
    store = atoms.info if kind == "energy" else atoms.arrays
    if key in store:
        value = np.asarray(store[key], dtype=float)
    elif key != kind:  # a key the user named: no fallback to whatever a calculator holds
        where = "info" if kind == "energy" else "arrays"
        raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has no reference {kind} {where}[{key!r}]")
    else:
        calc = getattr(atoms, "calc", None)
        results = getattr(calc, "results", {}) if calc is not None else {}
        if kind not in results:
            where = "info" if kind == "energy" else "arrays"
            raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has no reference {kind}: expected "
                             f"{where}[{key!r}] or a calculator's results")
        value = np.asarray(results[kind], dtype=float)
    if kind == "energy" and value.size != 1:
        raise ValueError(f"structure {k}: reference energy {key!r} has shape {value.shape}, expected a scalar")
    if kind == "forces" and value.shape != (len(atoms), 3):
        raise ValueError(f"structure {k}: reference forces {key!r} have shape {value.shape}, "
                         f"expected ({len(atoms)}, 3)")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"structure {k}: reference {kind} {key!r} is not finite")
    return value.reshape(-1) if kind == "forces" else float(value.reshape(()))


class LLPR:
    """Last-layer PR, LPR, CPR and calibrated uncertainties of a trained model.

    Parameters
    ----------
    last_layer : LastLayer
        An adapter (:class:`~rigidity.last_layer.MACELastLayer`, ...) of the trained model.
    regularizer : float
        :math:`\\sigma^2` on the diagonal of H (default: the paper's 2.5e-11).
    energy_weight, force_weight, stress_weight : float
        The loss weights the model was trained with (only their ratios matter once
        calibrated). With ``force_weight=0`` no force rows are computed.
    per_atom_energy : bool
        The energy term of the loss is on energies per atom (mace-torch's weighted loss,
        the paper's SOAP-BPNN and MACE): energy rows are the mean of the features.
    reduction : "sum" or "mean"
        How the training loss combines its terms: "sum" over every energy, force
        component and stress component (the paper's eq. 5), or "mean" of each term over
        its targets (mace-torch, schnetpack, metatrain: energies over structures, forces
        over the 3 N force components, stress over 9 components per structure). With
        "mean", a force weight of 100 weighs force rows 3 N-bar times less than with "sum";
        the whole training set goes into one :meth:`fit` call. (mace-torch averages per
        batch, which multiplies every term by S / batch size: the same ratios.)
    loss : "mse" or "huber"
        With "huber", rows whose training residual exceeds ``huber_delta`` get weight 0
        (the loss's second derivative); the training set then needs reference labels.
    huber_delta : float
        Width of the Huber loss (mace-torch's default 0.01), in the units of each term
        (eV or eV/atom, eV/A, eV/A^3).
    energy_key, forces_key : str
        Where the reference labels are: ``atoms.info[energy_key]``,
        ``atoms.arrays[forces_key]``, else the structure's calculator results.
    batch_size : int
        Structures per forward/backward pass of the model.
    mode : "auto", "reverse" or "forward"
        How force rows are differentiated (:mod:`rigidity.last_layer._autograd`).
    progress : bool
        Show a progress bar (tqdm) while building H.
    """

    def __init__(self, last_layer: LastLayer, regularizer: float = PAPER_REGULARIZER, energy_weight: float = 1.0,
                 force_weight: float = 0.0, stress_weight: float = 0.0, per_atom_energy: bool = False,
                 reduction: str = "sum", loss: str = "mse", huber_delta: float = 0.01, energy_key: str = "energy",
                 forces_key: str = "forces", batch_size: int = 16, mode: str = "auto", progress: bool = False):
        if not isinstance(last_layer, LastLayer):
            raise TypeError(f"expected a rigidity.last_layer adapter (LastLayer), got {type(last_layer).__name__}")
        for name, value in (("regularizer", regularizer), ("energy_weight", energy_weight),
                            ("force_weight", force_weight), ("stress_weight", stress_weight),
                            ("huber_delta", huber_delta)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if energy_weight == 0 and force_weight == 0 and stress_weight == 0:
            raise ValueError("energy_weight, force_weight and stress_weight are all 0: the loss has no terms")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        if loss == "huber" and stress_weight > 0:
            raise ValueError("a Huber loss with stress_weight > 0 is not supported (no Huber weights for stress "
                             "rows): use loss='mse' or stress_weight=0")
        if per_atom_energy and getattr(last_layer, "aggregation", "sum") == "avg":
            raise ValueError("the model averages its energy over atoms (aggregation 'avg'): its features are per "
                             "atom already; per_atom_energy=True would divide them twice")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        if loss == "huber" and huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0 for a Huber loss, got {huber_delta!r}")
        self.last_layer = last_layer
        self.settings = dict(regularizer=float(regularizer), energy_weight=float(energy_weight),
                             force_weight=float(force_weight), stress_weight=float(stress_weight),
                             per_atom_energy=bool(per_atom_energy), reduction=reduction, loss=loss,
                             huber_delta=float(huber_delta))
        self.energy_key, self.forces_key = energy_key, forces_key
        self.batch_size, self.mode, self.progress = batch_size, mode, progress
        self.hessian = Hessian(last_layer.n_features, regularizer=float(regularizer))
        self.n_train = 0
        #: calibration factors alpha of energy and force variances (1 until calibrated)
        self.alpha = {"energy": 1.0, "forces": 1.0}

    # -- rows -----------------------------------------------------------------------------
    def training_rows(self, frames: Sequence[Any], totals: tuple[int, int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``(G, weights)``: the rows of H for these training structures, with their loss (and Huber) weights.

        With ``reduction="mean"`` the weights are divided by the row counts of the whole
        training set, ``totals`` = (structures, atoms) (default: these structures').
        """
        frames = check_frames(frames)
        if totals is None:
            totals = (len(frames), sum(len(a) for a in frames))
        n_structures, n_atoms = totals
        mean = self.settings["reduction"] == "mean"
        s = self.settings
        ll = self.last_layer
        forces = s["force_weight"] > 0
        stress = s["stress_weight"] > 0
        out = ll.compute(frames, forces=forces, stress=stress, reduce="sum", batch_size=self.batch_size,
                         mode=self.mode)
        n = len(frames)
        counts = np.bincount(out["structure"], minlength=n).astype(float)
        Phi = np.zeros((n, ll.n_features))
        np.add.at(Phi, out["structure"], out["phi"])
        energy_rows = Phi / counts[:, None] if s["per_atom_energy"] else Phi
        parts, weights = [], []
        huber = s["loss"] == "huber"
        if s["energy_weight"] > 0:
            w = np.full(n, s["energy_weight"] / (n_structures if mean else 1))
            if huber:
                reference = np.array([_reference(a, self.energy_key, "energy", k) for k, a in enumerate(frames)])
                residual = out["energy"] - reference
                if s["per_atom_energy"]:
                    residual = residual / counts
                w = w * (np.abs(residual) <= s["huber_delta"])
            parts.append(energy_rows)
            weights.append(w)
        if forces:
            rows = out["force_rows"]
            w = np.full(len(rows), s["force_weight"] / (3 * n_atoms if mean else 1))
            if huber:
                reference = np.concatenate([_reference(a, self.forces_key, "forces", k)
                                            for k, a in enumerate(frames)])
                predicted = rows @ ll.weights + out.get("constant_forces", np.zeros((len(rows) // 3, 3))).reshape(-1)
                w = w * (np.abs(predicted - reference) <= s["huber_delta"])
            parts.append(rows)
            weights.append(w)
        if stress:
            if huber:
                raise NotImplementedError("Huber weights of stress rows: use loss='mse' with stress_weight > 0")
            parts.append(out["stress_rows"])
            w = np.full(len(out["stress_rows"]), s["stress_weight"])
            if mean:
                w = w * np.tile(VOIGT_MULTIPLICITY, n) / (9 * n_structures)
            weights.append(w)
        return np.concatenate(parts), np.concatenate(weights)

    def fit(self, frames: Sequence[Any]) -> LLPR:
        """Add the training structures to H (in batches of ``batch_size``; call again to add more). Returns self."""
        frames = check_frames(frames)
        if self.settings["reduction"] == "mean" and self.n_train:
            raise ValueError("with reduction='mean' the loss weights are divided by the size of the whole training "
                             "set: give it to one fit() call")
        totals = (len(frames), sum(len(a) for a in frames))
        step = max(self.batch_size, 1) * 4
        chunks = range(0, len(frames), step)
        for start in _progress(chunks, len(chunks), "LLPR Hessian", self.progress):
            G, w = self.training_rows(frames[start:start + step], totals)
            self.hessian.add(G, weights=w)
            self.n_train += len(frames[start:start + step])
        return self

    def _features(self, frames):
        out = self.last_layer.compute(check_frames(frames), batch_size=self.batch_size)
        n = int(out["structure"].max()) + 1
        Phi = np.zeros((n, self.last_layer.n_features))
        np.add.at(Phi, out["structure"], out["phi"])
        return out, Phi

    def _check_fitted(self):
        if self.n_train == 0:
            raise ValueError("the LLPR has no training structures: call fit(training_frames) first")

    # -- rigidities -----------------------------------------------------------------------
    def predict(self, frames: Sequence[Any]) -> dict[str, np.ndarray]:
        """Everything per structure and per atom in one pass over the model.

        Keys: ``energy`` (the model's), ``pr`` and ``energy_uncertainty``
        (:math:`\\sqrt{\\alpha_E / \\mathrm{PR}}`) per structure, ``lpr`` and ``structure`` per atom.
        """
        self._check_fitted()
        out, Phi = self._features(frames)
        variance = self.hessian.variance(Phi)
        local = out["phi"]
        if getattr(self.last_layer, "aggregation", "sum") == "avg":
            # the adapter divides an averaging model's features by the atom count; the local prediction of an
            # atom is its own readout, independent of the size of the structure around it
            local = local * np.bincount(out["structure"])[out["structure"], None]
        return dict(energy=out["energy"], pr=1.0 / variance,
                    energy_uncertainty=np.sqrt(self.alpha["energy"] * variance),
                    lpr=self.hessian.lpr(local), structure=out["structure"])

    def pr(self, frames) -> np.ndarray:
        """(n_structures,) PR of each structure's energy."""
        return self.predict(frames)["pr"]

    def lpr(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """``(lpr, structure)``: the LPR of every atom (n_atoms,) and its structure."""
        p = self.predict(frames)
        return p["lpr"], p["structure"]

    def energy_uncertainty(self, frames) -> np.ndarray:
        """(n_structures,) calibrated standard deviation of each structure's energy."""
        return self.predict(frames)["energy_uncertainty"]

    def force_uncertainty(self, frames) -> np.ndarray:
        """(n_atoms, 3) calibrated standard deviation of every force component."""
        self._check_fitted()
        rows, _ = self.last_layer.force_rows(check_frames(frames), batch_size=self.batch_size, mode=self.mode)
        return np.sqrt(self.alpha["forces"] * self.hessian.variance(rows)).reshape(-1, 3)

    def cpr(self, frames, blocks: dict | None = None) -> dict[str, np.ndarray]:
        """Block -> (n_structures,) CPR of each structure's energy for the adapter's feature blocks (or ``blocks``)."""
        self._check_fitted()
        _, Phi = self._features(frames)
        return self.hessian.cpr(Phi, self.last_layer.blocks if blocks is None else blocks)

    def with_added(self, frames, weight: float | None = None) -> LLPR:
        """A copy whose H also holds these structures' energy rows (no force rows), by the library's low-rank update.

        ``weight`` defaults to the energy loss weight (not divided by any count). The PR of the prediction a row stands
        for rises by exactly its weight when one structure is added (paper, Appendix B): with
        summed rows the total energy's (:meth:`pr`); with ``per_atom_energy`` the energy per
        atom's, whose PR is N^2 times the total energy's.
        """
        self._check_fitted()
        out, Phi = self._features(frames)
        if self.settings["per_atom_energy"]:
            Phi = Phi / np.bincount(out["structure"])[:, None]
        w = self.settings["energy_weight"] if weight is None else float(weight)
        new = LLPR.__new__(LLPR)
        new.__dict__.update(self.__dict__)
        new.alpha = dict(self.alpha)
        new.hessian = self.hessian.updated(Phi, weights=np.full(len(Phi), w))
        new.n_train = self.n_train + len(Phi)
        return new

    # -- calibration ------------------------------------------------------------------------
    def calibrate(self, frames, target: str = "energy", method: str = "nll", min_structures: int = 2) -> float:
        """Calibrate alpha on validation structures with reference labels; returns alpha (also kept).

        ``target`` "energy": residuals of the model's energies against ``info[energy_key]``
        (or the calculator's); "forces": of its force components. ``method`` as
        :func:`rigidity.calibrate` ("nll" or "ratio").
        """
        self._check_fitted()
        frames = check_frames(frames)
        if len(frames) < min_structures:
            raise ValueError(f"{len(frames)} validation structure(s): at least {min_structures} are needed to "
                             "calibrate")
        if target == "energy":
            reference = np.array([_reference(a, self.energy_key, "energy", k) for k, a in enumerate(frames)])
            out, Phi = self._features(frames)
            variance = self.hessian.variance(Phi)
            residual = out["energy"] - reference
        elif target == "forces":
            reference = np.concatenate([_reference(a, self.forces_key, "forces", k) for k, a in enumerate(frames)])
            out = self.last_layer.compute(frames, forces=True, batch_size=self.batch_size, mode=self.mode)
            rows = out["force_rows"]
            predicted = rows @ self.last_layer.weights
            if "constant_forces" in out:
                predicted = predicted + out["constant_forces"].reshape(-1)
            variance = self.hessian.variance(rows)
            residual = predicted - reference
        else:
            raise ValueError(f"target must be 'energy' or 'forces', got {target!r}")
        alpha = _calibrate(variance, residual, method=method)
        self.alpha[target] = alpha
        return alpha

    # -- persistence --------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write H, the loss settings, alpha and the model's identity to an .npz file (atomically)."""
        meta = dict(kind=FILE_KIND, settings=json.dumps(self.settings, sort_keys=True),
                    alpha=json.dumps(self.alpha, sort_keys=True), n_train=int(self.n_train),
                    model=json.dumps(model_identity(self.last_layer), sort_keys=True))
        return self.hessian.save(path, **meta)

    @classmethod
    def load(cls, path, last_layer: LastLayer, **kwargs) -> LLPR:
        """Read an LLPR written by :meth:`save` for this model; refuses a file written for another model."""
        h = Hessian.load(path)
        meta = h.metadata
        if meta.get("kind") != FILE_KIND:
            raise ValueError(f"{os.fspath(path)} is not an LLPR file (kind {meta.get('kind')!r})")
        saved = json.loads(meta["model"])
        own = model_identity(last_layer)
        if saved != own:
            differ = sorted(k for k in set(saved) | set(own) if saved.get(k) != own.get(k))
            raise ValueError(f"{os.fspath(path)} was written for another model: {', '.join(differ)} differ "
                             f"(saved {[saved.get(k) for k in differ]}, this model {[own.get(k) for k in differ]})")
        settings = json.loads(meta["settings"])
        new = cls(last_layer, **settings, **kwargs)
        new.hessian = h
        new.alpha = json.loads(meta["alpha"])
        new.n_train = int(meta["n_train"])
        return new


def model_identity(last_layer: LastLayer) -> dict[str, Any]:
    """The adapter's class, feature count and a digest of its readout weights and of the model's parameters."""
    digest = hashlib.sha256()
    model = getattr(last_layer, "model", None)
    if model is not None and hasattr(model, "state_dict"):
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            if hasattr(tensor, "detach"):
                digest.update(np.ascontiguousarray(tensor.detach().cpu().double().numpy()).tobytes())
    weights = hashlib.sha256(np.ascontiguousarray(last_layer.weights, dtype=np.float64).tobytes()).hexdigest()
    return dict(adapter=type(last_layer).__name__, n_features=int(last_layer.n_features),
                weights_sha256=weights, parameters_sha256=digest.hexdigest())
