r"""Last-layer features of metatomic models (metatrain's SOAP-BPNN and others), read through the model's own outputs.

metatrain's architectures export the per-atom inputs of their energy readout as the
auxiliary output ``mtt::aux::energy_last_layer_features`` (the features its ``llpr``
wrapper uses) and list the readout's weight tensors, in the order of those features, in
``last_layer_parameter_names["energy"]``. At evaluation the model's energy per atom is

.. math::

    E_i = s_{Z_i} \, \boldsymbol\phi_i \cdot \mathbf w + \sum_m c^{(m)}_i ,

s the scaler's energy scale (one number for a per-structure energy target) and
:math:`c^{(m)}_i` the per-atom energies of its additive models: the composition model
(per-species reference energies) and, when the model has one, the ZBL repulsion. So the
adapter takes phi from the model's own forward (``sample_kind="atom"``), the weights
:math:`s \mathbf w` from the listed tensors and the scaler, and the constants from the
additive models' own per-atom outputs (ZBL included: a position-dependent constant, like
MACE's pair repulsion, whose forces are not in ``force_rows @ weights``).

For the legacy SOAP-BPNN (the paper's, one network per species) the features are
species-blocked, d = (neurons of the last layer) x (species): blocks are named by
element ("H", "C", ...); for other models one block per listed weight tensor.

Evaluation follows metatomic's engines: ``ase.Atoms`` become ``System`` s in the model's
dtype, the neighbour lists the model requests are computed by vesin and registered with
autograd (``register_autograd_neighbors``), so that derivatives with respect to positions
(and to a symmetric strain of positions and cell, as metatomic's ASE calculator computes
the stress) are exact. Energies and constants are in the model's energy unit, lengths in
angstrom.

Refused, with the reason: models without an energy output or without the last-layer
feature output, models that do not list their last-layer weights, readouts with a
(non-zero) bias (PET: its edge biases add :math:`b \sum_j f_c(r_{ij})`, a term outside
the exported features), per-species scales on features that are not species-blocked,
models needing extra inputs, and structures with elements the model does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._base import LastLayer

FEATURES = "mtt::aux::energy_last_layer_features"
ENERGY = "energy"


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z)


def _load_extensions() -> None:
    """The TorchScript operators exported models may call (sphericart's, for metatrain's SOAP-BPNN): loaded before a
    model file is read, or a fresh process cannot load it."""
    import importlib

    for name in ("sphericart.torch", "featomic.torch"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _to_atomistic(model: Any):
    """An ``AtomisticModel`` from a model, a metatrain model (``.export()``) or a file (.pt or .ckpt)."""
    from metatomic.torch import AtomisticModel, is_atomistic_model

    if isinstance(model, (str, Path)):
        path = str(model)
        _load_extensions()
        try:
            from metatrain.utils.io import load_model
        except ImportError:  # without metatrain: exported models only
            from metatomic.torch import load_atomistic_model

            model = load_atomistic_model(path)
        else:
            model = load_model(path)
    if isinstance(model, AtomisticModel) or is_atomistic_model(model):
        return model
    if hasattr(model, "export") and hasattr(model, "supported_outputs"):  # metatrain's ModelInterface
        return model.export()
    raise TypeError(f"expected a metatomic AtomisticModel, a metatrain model or a path to one, "
                    f"got {type(model).__name__}")


def _core(module: Any):
    """The module holding the energy readout (metatrain's llpr wraps it as ``.model``)."""
    if not hasattr(module, "last_layer_parameter_names") and hasattr(module, "model") and \
            hasattr(module.model, "last_layer_parameter_names"):
        return module.model
    return module


class MetatomicLastLayer(LastLayer):
    """Last-layer view of a metatomic ``AtomisticModel`` exporting ``mtt::aux::energy_last_layer_features``.

    Parameters
    ----------
    model : metatomic.torch.AtomisticModel, metatrain model, or path
        An exported model (``metatomic.torch.load_atomistic_model("model.pt")``, as
        ``mtt export`` writes it), a metatrain model (a checkpoint loaded with
        ``metatrain.utils.io.load_model("model.ckpt")``, exported here), or the path of
        either file (metatrain's ``load_model``; TorchScript extensions must be loadable).
    device : str, optional
        Torch device of the computations; the model is moved there (default: where its
        parameters are).
    optimize : bool
        Let TorchScript's profiling executor optimise the model's graph (default False).
        It re-profiles for every new input shape, and structures of varying size are new
        shapes: on 100 QM9 molecules in batches of 16 (SOAP-BPNN, one CPU thread) the
        features and H of a 500-molecule training set took 10.2 s with it and 3.8 s without.
        The results are the same either way.
    """

    def __init__(self, model: Any, device: str | None = None, optimize: bool = False):
        import torch

        self.optimize = bool(optimize)

        model = _to_atomistic(model)
        capabilities = model.capabilities()
        outputs = list(capabilities.outputs.keys())
        if ENERGY not in outputs:
            raise ValueError(f"the model has no {ENERGY!r} output (its outputs: {outputs}): "
                             "MetatomicLastLayer reads energy models")
        if FEATURES not in outputs:
            raise ValueError(f"the model does not export {FEATURES!r} (its outputs: {outputs}): no last-layer "
                             "features to read")
        inputs = dict(model.requested_inputs(use_new_names=True)) if hasattr(model, "requested_inputs") else {}
        if inputs:
            raise ValueError(f"the model needs extra inputs {sorted(inputs)}: not supported")
        dtypes = {"float64": torch.float64, "float32": torch.float32}
        if capabilities.dtype not in dtypes:
            raise ValueError(f"model dtype {capabilities.dtype!r} is not supported (float64 or float32)")
        self.dtype = dtypes[capabilities.dtype]
        tensors = list(model.parameters()) + list(model.buffers())
        if device is not None:
            self.device = torch.device(device)
            model = model.to(device=self.device)
        else:
            self.device = tensors[0].device if tensors else torch.device("cpu")
        self.model = model
        self.energy_unit = capabilities.outputs[ENERGY].unit
        self.length_unit = capabilities.length_unit
        self.atomic_numbers = [int(z) for z in capabilities.atomic_types]

        core = _core(model.module)
        self.core = core
        names_by_target = getattr(core, "last_layer_parameter_names", None)
        if not names_by_target or ENERGY not in dict(names_by_target):
            raise ValueError(f"the model ({type(core).__name__}) does not list the weights of its energy last layer "
                             "(last_layer_parameter_names['energy'], as metatrain's architectures do)")
        names = list(dict(names_by_target)[ENERGY])
        state = core.state_dict()
        missing = [n for n in names if n not in state]
        if missing:
            raise ValueError(f"last-layer weights {missing} are not in the model's parameters")
        for n in names:
            bias = n[:-len("weight")] + "bias" if n.endswith("weight") else None
            if bias in state and torch.any(state[bias] != 0):
                raise ValueError(f"the energy last layer {n[:-len('.weight')]!r} has a bias: its energy has terms "
                                 "outside phi . w (PET's edge biases depend on the positions); not supported")
        pieces = [state[n].detach().to("cpu", torch.float64) for n in names]
        if any(p.ndim != 2 or p.shape[0] != 1 for p in pieces):
            raise ValueError(f"the energy last layer has weights of shapes {[tuple(p.shape) for p in pieces]}: "
                             "expected one output (a single-property energy)")
        raw = torch.cat(pieces, dim=1)[0].numpy()

        # blocks: per species for the legacy SOAP-BPNN (one readout per species), else per weight tensor
        sizes = [p.shape[1] for p in pieces]
        edges = np.concatenate([[0], np.cumsum(sizes)])
        species_blocked = bool(getattr(core, "legacy", False)) and len(names) == len(self.atomic_numbers) and all(
            n.endswith(f"module_list.{k}.weight") for k, n in enumerate(names))
        if species_blocked:
            labels = [_symbol(z) for z in self.atomic_numbers]
        else:
            labels = [n[:-len(".weight")] if n.endswith(".weight") else n for n in names]
        self.blocks = {label: slice(int(a), int(b)) for label, a, b in zip(labels, edges[:-1], edges[1:])}
        self.species_blocked = species_blocked

        # the scaler's energy scale, per species (one atom of each in a probe system)
        scales = self._species_scales()
        if np.allclose(scales, scales[0], rtol=1e-14, atol=0):
            self.weights = scales[0] * raw
        elif species_blocked:
            self.weights = raw.copy()
            for s, block in zip(scales, self.blocks.values()):
                self.weights[block] *= s
        else:
            raise ValueError(f"the model scales its energy per species ({dict(zip(self.atomic_numbers, scales))}) "
                             "on features shared by all species: not phi . w")
        self.scales = dict(zip(self.atomic_numbers, scales.tolist()))
        # additive models (composition, ZBL) are called directly, without the unit conversion of the AtomisticModel
        self.additive_models = list(core.additive_models.children()) if hasattr(core, "additive_models") else []
        self.additive_names = [getattr(m, "original_name", type(m).__name__) for m in self.additive_models]
        positional = [n for n in self.additive_names if n != "CompositionModel"]
        if positional and self.length_unit.lower() not in ("angstrom", "a"):
            raise ValueError(f"additive models {positional} of a model with lengths in {self.length_unit!r}: only "
                             "angstrom models are supported")
        import vesin.metatomic

        self._neighbors = vesin.metatomic.neighbor_lists_for_model("angstrom", model)

    # -- model calls ------------------------------------------------------------------
    def _species_scales(self) -> np.ndarray:
        """The scaler's per-atom energy scale for each species (ones without a scaler)."""
        import torch
        from metatomic.torch import ModelOutput, System

        scaler = getattr(self.core, "scaler", None)
        n = len(self.atomic_numbers)
        if scaler is None:
            return np.ones(n)
        positions = 10.0 * torch.arange(3 * n, dtype=self.dtype).reshape(n, 3)
        probe = System(types=torch.tensor(self.atomic_numbers, dtype=torch.int32), positions=positions,
                       cell=torch.zeros(3, 3, dtype=self.dtype), pbc=torch.zeros(3, dtype=torch.bool))
        probe = probe.to(device=self.device)
        with torch.no_grad():
            block = scaler([probe], {ENERGY: ModelOutput(sample_kind="atom")}, None)[ENERGY].block()
        order = block.samples.column("atom").cpu().numpy()
        values = block.values.detach().reshape(-1).cpu().double().numpy()
        out = np.empty(n)
        out[order] = values
        return out

    def _check_elements(self, frames: list):
        known = set(self.atomic_numbers)
        for k, atoms in enumerate(frames):
            unknown = sorted(set(int(z) for z in atoms.numbers) - known)
            if unknown:
                raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has atomic numbers {unknown} "
                                 f"the model does not know (it knows {sorted(known)})")

    def _systems(self, frames: list, grad: bool, stress: bool):
        """Systems of a batch with neighbour lists; the leaf positions (n_atoms, 3) and strain (n, 3, 3)."""
        import torch
        from metatomic.torch import System

        kw = dict(dtype=self.dtype, device=self.device)
        positions = torch.tensor(np.concatenate([a.positions for a in frames]), **kw)
        positions.requires_grad_(grad)
        strain = None
        if stress:
            strain = torch.zeros((len(frames), 3, 3), **kw, requires_grad=True)
            deform = torch.eye(3, **kw) + 0.5 * (strain + strain.transpose(1, 2))
        systems, start = [], 0
        for s, atoms in enumerate(frames):
            pbc = torch.tensor(np.asarray(atoms.pbc, dtype=bool), device=self.device)
            cell = torch.zeros((3, 3), **kw)
            cell[pbc] = torch.tensor(atoms.cell.array[np.asarray(atoms.pbc, dtype=bool)], **kw)
            pos = positions[start:start + len(atoms)]
            if stress:
                pos = pos @ deform[s]
                cell = cell @ deform[s]
            types = torch.tensor(atoms.numbers, dtype=torch.int32, device=self.device)
            systems.append(System(types=types, positions=pos, cell=cell, pbc=pbc))
            start += len(atoms)
        for calculator in self._neighbors:
            calculator.add_neighbor_list(systems)
        return systems, positions, strain

    @staticmethod
    def _per_atom(block, offsets, n_atoms):
        """The rows of a (system, atom) block in the order of the atoms of the batch."""
        import torch

        samples = block.samples
        index = offsets[samples.column("system").long()] + samples.column("atom").long()
        values = block.values.reshape(len(samples), -1)
        out = torch.zeros((n_atoms, values.shape[1]), dtype=values.dtype, device=values.device)
        return out.index_copy(0, index, values)

    def _forward(self, frames: list, grad: bool, stress: bool):
        import torch
        from metatomic.torch import ModelEvaluationOptions, ModelOutput

        systems, positions, strain = self._systems(frames, grad, stress)
        sizes = torch.tensor([len(a) for a in frames], device=self.device)
        offsets = torch.cumsum(sizes, 0) - sizes
        n_atoms = int(sizes.sum())
        options = ModelEvaluationOptions(length_unit="angstrom", outputs={
            ENERGY: ModelOutput(unit=self.energy_unit, sample_kind="system"),
            FEATURES: ModelOutput(sample_kind="atom"),
        })
        with torch.set_grad_enabled(grad):
            out = self.model(systems, options, False)
        phi = self._per_atom(out[FEATURES].block(), offsets, n_atoms)
        if phi.shape[1] != len(self.weights):
            raise RuntimeError(f"the model's last-layer features have {phi.shape[1]} columns, its listed last-layer "
                               f"weights {len(self.weights)}")
        block = out[ENERGY].block()
        energy = torch.zeros(len(frames), dtype=block.values.dtype, device=block.values.device).index_copy(
            0, block.samples.column("system").long(), block.values.reshape(-1))
        constants = torch.zeros(n_atoms, dtype=self.dtype, device=self.device)
        # position-dependent constants (ZBL) keep their graph when positions are differentiated: their forces
        positional = grad and any(n != "CompositionModel" for n in self.additive_names)
        with torch.set_grad_enabled(positional):
            for additive in self.additive_models:
                if ENERGY not in dict(additive.outputs):
                    continue
                contribution = additive(systems, {ENERGY: ModelOutput(sample_kind="atom")}, None)
                if ENERGY not in contribution:
                    continue
                for b in contribution[ENERGY].blocks():
                    constants = constants + self._per_atom(b, offsets, n_atoms)[:, 0].to(constants.dtype)
        structure = torch.repeat_interleave(torch.arange(len(frames), device=self.device), sizes)
        return phi, constants, energy, structure, positions, strain, systems

    def _compute(self, frames, forces, stress, reduce, batch_size, mode):
        import torch

        self._check_elements(frames)
        with torch.jit.optimized_execution(self.optimize):
            return self._compute_batches(frames, forces, stress, reduce, batch_size, mode)

    def _compute_batches(self, frames, forces, stress, reduce, batch_size, mode):
        import torch

        from ._autograd import position_rows
        from ._base import Parts

        grad = forces or stress
        parts = Parts()
        for first in range(0, len(frames), batch_size):
            batch = frames[first:first + batch_size]
            phi, constants, energy, structure, positions, strain, systems = self._forward(batch, grad, stress)
            if grad:
                n = len(batch)
                Phi = torch.zeros(n, phi.shape[1], dtype=phi.dtype, device=phi.device).index_add(0, structure, phi)
                if reduce == "mean":
                    counts = torch.bincount(structure, minlength=n).to(phi.dtype)
                    Phi = Phi / counts[:, None]
                volumes = None
                if stress:
                    volumes = torch.tensor([abs(a.cell.volume) for a in batch], dtype=phi.dtype, device=phi.device)
                if forces and constants.requires_grad:
                    (g,) = torch.autograd.grad(constants.sum(), positions, retain_graph=True)
                    parts.add(constant_forces=-g)
                force, strained = position_rows(Phi, positions, structure, mode, strain, volumes)
                if forces:
                    parts.add(force_rows=force)
                if stress:
                    parts.add(stress_rows=strained)
            parts.add(phi=phi, constants=constants, energy=energy, structure=structure + first)
        return parts.result()

    def evaluate(self, frames, batch_size: int = 16) -> dict[str, np.ndarray]:
        """The model's energies and forces (one backward pass of its energy), with phi, structure and constants."""
        import torch

        from ._base import Parts, check_frames

        frames = check_frames(frames)
        self._check_elements(frames)
        parts = Parts()
        with torch.jit.optimized_execution(self.optimize):
            for first in range(0, len(frames), batch_size):
                batch = frames[first:first + batch_size]
                phi, constants, energy, structure, positions, _, _ = self._forward(batch, True, False)
                (g,) = torch.autograd.grad(energy.sum(), positions)
                parts.add(phi=phi, constants=constants, energy=energy, forces=-g, structure=structure + first)
        return parts.result()
