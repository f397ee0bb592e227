r"""Last-layer features of schnetpack 2.2 potentials (PaiNN and kin), read through a forward pre-hook.

A schnetpack ``NeuralNetworkPotential`` predicts its energy with an ``Atomwise``
output: an MLP on each atom's scalar representation whose last layer is linear
(a ``schnetpack.nn.Dense`` without activation), summed (``aggregation_mode="sum"``)
or averaged (``"avg"``) over the structure, possibly scaled by ``ScaleProperty``
output modules, and then post-processed (``CastTo64``, ``AddOffsets`` for the
training mean and atom references, ``ScaleProperty``):

.. math::

    E_s = a \sum_{i \in s} \frac{\mathbf w \cdot \mathbf h_i + b}{n_s}
          + a' \sum_{i \in s} \frac{\mu + E^0_{Z_i}}{m_s}

with :math:`n_s` = 1 for ``sum`` and the atom count for ``avg``, :math:`m_s` = 1 for
an extensive ``AddOffsets`` and the atom count otherwise (an intensive mean is added
once per structure), a the product of all the scales and a' that of the scales
applied after the offsets. The features are the inputs :math:`\mathbf h_i` of that
last layer (read with a forward pre-hook) divided by :math:`n_s`, the weights
:math:`a \mathbf w`, the constants the rest, so that
:math:`E_s = \sum_i (\boldsymbol\phi_i \cdot \mathbf w' + c_i)` holds in both
aggregation modes: for ``avg`` the force rows of ``reduce="sum"`` are then the
derivatives of the model's own (averaged) energy, and ``phi * n_s`` gives back the
raw layer inputs (``ll.aggregation`` says which mode the model uses).

schnetpack's ``Forces`` / ``Response`` run before the postprocessors, so a
``ScaleProperty`` postprocessor scales the energy but not the model's forces or
stress; the adapter then warns, and its rows are those of the energy the model
returns (``rows @ weights`` = scale x the model's forces). A ``ScaleProperty`` output
module before ``Forces`` (schnetpack's own configuration) scales both.

The structures go through schnetpack's own ``AtomsConverter`` with an ASE neighbour
list at the representation's cutoff; the model is called as it is (its input modules,
representation, outputs and postprocessors). Force rows differentiate the hooked
features with respect to the positions; stress rows with respect to a symmetric strain
applied to the positions, cell and periodic offsets before the model computes its
pair vectors (what schnetpack's ``Strain`` input module does), so both are exact.
During those calls the model's ``Forces`` / ``Response`` modules are put in training
mode (which only makes them keep the autograd graph) and restored afterwards. Inputs
and model are float64 by default (a float32 model is read through a float64 copy).

Accepted: any schnetpack representation with a cutoff that writes
``scalar_representation`` (PaiNN is what the tests cover; SchNet and SO3net read the
same way), energy from exactly one ``Atomwise``. Refused, naming what was found:
other model classes, no ``Atomwise`` writing the energy, an MLP whose last layer is
not a plain linear layer with one output, other modules writing the energy (e.g. ZBL
repulsion), post-processors that change the energy in ways not listed above, models
without ``PairwiseDistances`` and atomic numbers beyond the model's embedding or
atom-reference table. Every call also checks that the rebuilt energies are the
energies the model returned.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

from ._base import LastLayer

DTYPES = ("float64", "float32")


def _import_schnetpack():
    import schnetpack
    import torch

    return torch, schnetpack


class PaiNNLastLayer(LastLayer):
    """Last-layer view of a schnetpack ``NeuralNetworkPotential`` (PaiNN representation, ``Atomwise`` energy).

    Parameters
    ----------
    model : schnetpack.model.NeuralNetworkPotential
        The model as schnetpack trains and saves it. It is not modified: when its dtype
        or device differ from the ones asked for, a copy is used (``self.model``).
    device : str, optional
        Torch device of the computations (default: the model's).
    energy_key : str, optional
        The energy output (default: the energy key of the model's ``Forces`` or
        ``Response`` module, else its only ``Atomwise`` output).
    dtype : str
        "float64" (default) or "float32": the precision of inputs and model.
    neighbor_list : schnetpack.transform.Transform, optional
        Neighbour list for the ``AtomsConverter`` (default: ``ASENeighborList`` at the
        representation's cutoff).
    """

    def __init__(self, model: Any, device: str | None = None, energy_key: str | None = None,
                 dtype: str = "float64", neighbor_list: Any = None):
        torch, spk = _import_schnetpack()
        from schnetpack.atomistic import Atomwise, DipoleMoment, Forces, PairwiseDistances, Polarizability, Response
        from schnetpack.model import NeuralNetworkPotential

        if not isinstance(model, NeuralNetworkPotential):
            raise TypeError(f"expected a schnetpack NeuralNetworkPotential, got {type(model).__name__}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        torch_dtype = getattr(torch, dtype)
        param = next(model.parameters())
        self.device = torch.device(device) if device is not None else param.device
        if param.dtype != torch_dtype or param.device != self.device:
            model = copy.deepcopy(model).to(device=self.device, dtype=torch_dtype)
        self.model = model
        self.dtype = torch_dtype

        representation = model.representation
        cutoff = getattr(getattr(representation, "cutoff_fn", None), "cutoff", None)
        if cutoff is None:
            cutoff = getattr(representation, "cutoff", None)
        if cutoff is None:
            raise TypeError(f"the representation {type(representation).__name__} has no cutoff "
                            "(cutoff_fn.cutoff or cutoff): cannot build its neighbour list")
        self.cutoff = float(torch.as_tensor(cutoff).reshape(-1)[0])
        self.representation = type(representation).__name__
        if not any(isinstance(m, PairwiseDistances) for m in model.input_modules):
            found = [type(m).__name__ for m in model.input_modules]
            raise ValueError(f"the model's input modules {found} have no PairwiseDistances: its pair vectors "
                             "would not depend on the positions")

        # the energy key and its Atomwise output
        responses = [m for m in model.modules() if isinstance(m, (Forces, Response))]
        atomwise = [m for m in model.output_modules if isinstance(m, Atomwise)]
        if energy_key is None:
            if responses:
                energy_key = responses[0].energy_key
            elif len(atomwise) == 1:
                energy_key = atomwise[0].output_key
            else:
                raise ValueError(f"the model has Atomwise outputs {[m.output_key for m in atomwise]} and no "
                                 "Forces module: choose the energy with energy_key=")
        self.energy_key = energy_key
        energy_modules = [m for m in atomwise if m.output_key == energy_key]
        if len(energy_modules) != 1:
            found = {type(m).__name__: getattr(m, "output_key", None) for m in model.output_modules}
            raise ValueError(f"expected one Atomwise output writing {energy_key!r}, found output modules {found}")
        (readout,) = energy_modules
        self._responses = responses
        # the Atomwise energy, then an affine map: scale a (ScaleProperty output modules and postprocessors) and
        # per-atom offset terms (AddOffsets postprocessors)
        scale, force_scale, after_readout = 1.0, None, False
        for m in model.output_modules:
            if m is readout:
                after_readout = True
            elif isinstance(m, (Forces, Response)):
                force_scale = scale if force_scale is None else force_scale
            elif isinstance(m, spk.transform.ScaleProperty) and m.output_key == energy_key:
                if m.input_key != energy_key or not after_readout:
                    raise ValueError(f"output module ScaleProperty writes {energy_key!r} from {m.input_key!r} "
                                     f"{'before' if not after_readout else 'after'} the Atomwise: the energy would "
                                     "not be the Atomwise output")
                scale *= float(m.scale.reshape(-1)[0])
            elif isinstance(m, (spk.transform.CastMap, spk.transform.ScaleProperty)) or (
                    isinstance(m, (Atomwise, DipoleMoment, Polarizability))
                    and getattr(m, "output_key", None) != energy_key):
                continue
            else:
                raise ValueError(f"output module {type(m).__name__} may change the energy {energy_key!r}: only an "
                                 "Atomwise energy (with ScaleProperty, Forces/Response and other Atomwise "
                                 "properties) is supported")
        if readout.aggregation_mode not in ("sum", "avg"):
            raise ValueError(f"the energy Atomwise has aggregation_mode {readout.aggregation_mode!r}: expected "
                             "'sum' or 'avg'")
        self.aggregation = readout.aggregation_mode
        last = list(readout.outnet.children())[-1] if isinstance(readout.outnet, torch.nn.Sequential) \
            else readout.outnet
        activation = getattr(last, "activation", None)
        if not isinstance(last, torch.nn.Linear) or not (activation is None or isinstance(activation,
                                                                                         torch.nn.Identity)):
            raise TypeError(f"the energy Atomwise's last layer is {last!r}: expected a linear layer without "
                            "activation")
        if last.out_features != 1:
            raise ValueError(f"the energy Atomwise's last layer has {last.out_features} outputs, expected 1")
        self._last = last

        offsets = []  # [coefficient, kind, value, extensive]
        max_z = self._embedding_size(representation, torch)
        if model.do_postprocessing:
            for pp in model.postprocessors:
                name = type(pp).__name__
                if isinstance(pp, spk.transform.CastMap):
                    continue
                if isinstance(pp, spk.transform.AddOffsets):
                    if pp._property != energy_key:
                        continue
                    if pp.add_mean:
                        offsets.append([1.0, "mean", float(pp.mean.reshape(-1)[0]), bool(pp.is_extensive)])
                    if pp.add_atomrefs:
                        table = pp.atomref.detach().cpu().double().numpy().reshape(-1)
                        offsets.append([1.0, "atomref", table, bool(pp.is_extensive)])
                        max_z = min(max_z, len(table)) if max_z is not None else len(table)
                    continue
                if isinstance(pp, spk.transform.ScaleProperty):
                    if pp.output_key != energy_key:
                        continue
                    if pp.input_key != energy_key:
                        raise ValueError(f"postprocessor ScaleProperty writes {energy_key!r} from {pp.input_key!r}: "
                                         "the energy would not be the Atomwise output")
                    s = float(pp.scale.reshape(-1)[0])
                    scale *= s
                    for term in offsets:
                        term[0] *= s
                    continue
                raise ValueError(f"postprocessor {name} is not supported (known: CastTo32/CastTo64, AddOffsets, "
                                 "ScaleProperty)")
        if force_scale is not None and not np.isclose(force_scale, scale, rtol=1e-14, atol=0):
            warnings.warn(f"the model scales its energy by {scale / force_scale:g} after its Forces/Response module "
                          "(a ScaleProperty postprocessor): its forces and stress are those of the unscaled energy. "
                          "The rows here are the derivatives of the energy it returns (rows @ weights = "
                          f"{scale / force_scale:g} x its forces)", stacklevel=2)
        self.scale = scale
        self._offsets = offsets
        self.max_z = max_z

        with torch.no_grad():
            self.weights = scale * last.weight.detach().cpu().double().numpy().reshape(-1)
            self.bias = 0.0 if last.bias is None else float(last.bias.detach().reshape(-1)[0])
        self.blocks = {"readout": slice(0, len(self.weights))}

        if neighbor_list is None:
            neighbor_list = spk.transform.ASENeighborList(cutoff=self.cutoff)
        self.converter = spk.interfaces.AtomsConverter(neighbor_list=neighbor_list, device=self.device,
                                                       dtype=torch_dtype)

    @staticmethod
    def _embedding_size(representation, torch):
        """Number of atomic numbers the representation's nuclear embedding covers (Z < that), or None."""
        embedding = getattr(representation, "embedding", None)
        if isinstance(embedding, torch.nn.Embedding):
            return int(embedding.num_embeddings)
        table = getattr(embedding, "element_embedding", None)  # schnetpack.nn.NuclearEmbedding
        return None if table is None else int(table.shape[0])

    # -- one batch ------------------------------------------------------------------
    def _forward(self, inputs, grad: bool, stress: bool):
        """phi (n_atoms, d), energy (n_graphs,), positions, strain, volumes of one converted batch."""
        torch, spk = _import_schnetpack()
        props = spk.properties
        positions = inputs[props.R].detach().clone()
        if grad:
            positions.requires_grad_(True)
        inputs[props.R] = positions
        strain = volumes = None
        if stress:
            n_graphs = len(inputs[props.n_atoms])
            cell = inputs[props.cell]
            volumes = torch.linalg.det(cell.detach()).abs()
            strain = torch.zeros((n_graphs, 3, 3), dtype=positions.dtype, device=positions.device,
                                 requires_grad=True)
            sym = 0.5 * (strain + strain.transpose(1, 2))  # r -> r (I + S), rows of the cell and offsets alike
            idx_m = inputs[props.idx_m]
            inputs[props.R] = positions + torch.einsum("na,nab->nb", positions, sym[idx_m])
            inputs[props.cell] = cell + torch.matmul(cell, sym)
            pair = idx_m[inputs[props.idx_i].long()]
            inputs[props.offsets] = inputs[props.offsets] + torch.einsum("na,nab->nb", inputs[props.offsets],
                                                                         sym[pair])
        tapped: list = []
        handle = self._last.register_forward_pre_hook(lambda module, args: tapped.append(args[0]))
        # Forces/Response differentiate the energy inside the model; in eval mode they free the graph, which
        # the rows still need: keep it (their training flag only sets create_graph/retain_graph)
        states = [(m, m.training) for m in self._responses]
        try:
            if grad:
                for m, _ in states:
                    m.training = True
            with torch.set_grad_enabled(grad or bool(self._responses)):
                out = self.model(inputs)
        finally:
            handle.remove()
            for m, state in states:
                m.training = state
        if len(tapped) != 1:
            raise RuntimeError(f"the energy readout ran {len(tapped)} times in one call, expected once")
        phi = tapped[0]
        if self.aggregation == "avg":
            counts = inputs[props.n_atoms].to(phi.dtype)
            phi = phi / counts[inputs[props.idx_m]][:, None]
        energy = out[self.energy_key].reshape(-1)
        self._outputs = out  # the model's other outputs (its forces), for evaluate()
        return phi, energy, positions, strain, volumes

    def _constants(self, numbers: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(n_atoms,) constants from the atomic numbers and the atom count of each atom's structure."""
        share = 1.0 / counts if self.aggregation == "avg" else np.ones(len(numbers))
        constants = self.scale * self.bias * share
        for coefficient, kind, value, extensive in self._offsets:
            term = value[numbers] if kind == "atomref" else np.full(len(numbers), value)
            constants = constants + coefficient * (term if extensive else term / counts)
        return constants

    def _check_numbers(self, frames):
        if self.max_z is None:
            return
        for k, atoms in enumerate(frames):
            bad = sorted(set(int(z) for z in atoms.numbers if z < 0 or z >= self.max_z))
            if bad:
                raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has atomic numbers {bad} the model "
                                 f"cannot take (its embedding and atom references cover 0 <= Z < {self.max_z})")

    def _compute(self, frames, forces, stress, reduce, batch_size, mode):
        torch, spk = _import_schnetpack()
        from ._autograd import position_rows
        from ._base import Parts

        props = spk.properties
        self._check_numbers(frames)
        grad = forces or stress
        parts = Parts()
        for first in range(0, len(frames), batch_size):
            inputs = self.converter(list(frames[first:first + batch_size]))
            index = inputs[props.idx_m].clone()
            numbers = inputs[props.Z].cpu().numpy()
            n_atoms = inputs[props.n_atoms].cpu().numpy()
            phi, energy, positions, strain, volumes = self._forward(inputs, grad, stress)
            if grad:
                n_graphs = len(n_atoms)
                Phi = torch.zeros(n_graphs, phi.shape[1], dtype=phi.dtype, device=phi.device).index_add(0, index, phi)
                if reduce == "mean":
                    Phi = Phi / torch.as_tensor(n_atoms, dtype=phi.dtype, device=phi.device)[:, None]
                force, strain_rows = position_rows(Phi, positions, index, mode, strain=strain, volumes=volumes)
                if forces:
                    parts.add(force_rows=force)
                if stress:
                    parts.add(stress_rows=strain_rows)
            local = index.cpu().numpy()
            parts.add(phi=phi, constants=self._constants(numbers, n_atoms[local].astype(float)), energy=energy,
                      structure=local + first)
        out = parts.result()
        rebuilt = np.bincount(out["structure"], weights=out["phi"] @ self.weights + out["constants"],
                              minlength=len(frames))
        tol = (1e-8 if self.dtype == torch.float64 else 1e-3) * max(1.0, float(np.abs(out["energy"]).max()))
        mismatch = float(np.abs(rebuilt - out["energy"]).max())
        if not mismatch <= tol:
            raise RuntimeError(f"the energies rebuilt from phi . w + c differ from the model's by {mismatch:.3g} "
                               f"(tolerance {tol:.3g}): the model computes its energy in a way this adapter does "
                               "not know (was do_postprocessing or a postprocessor changed after construction?)")
        return out

    def evaluate(self, frames, batch_size: int = 16) -> dict[str, np.ndarray]:
        """The model's energies and its own forces (its ``Forces`` output, one backward pass), with phi, structure
        and constants; without a ``Forces`` output, from the force rows (:meth:`LastLayer.evaluate`)."""
        torch, spk = _import_schnetpack()
        from ._base import Parts, check_frames

        props = spk.properties
        frames = check_frames(frames)
        if not self._responses:
            return super().evaluate(frames, batch_size=batch_size)
        self._check_numbers(frames)
        parts = Parts()
        for first in range(0, len(frames), batch_size):
            inputs = self.converter(list(frames[first:first + batch_size]))
            index = inputs[props.idx_m].clone().cpu().numpy()
            numbers = inputs[props.Z].cpu().numpy()
            n_atoms = inputs[props.n_atoms].cpu().numpy()
            phi, energy, _, _, _ = self._forward(inputs, False, False)
            forces = self._outputs.get(props.forces)
            if forces is None:  # a Response without forces
                return super().evaluate(frames, batch_size=batch_size)
            parts.add(phi=phi, constants=self._constants(numbers, n_atoms[index].astype(float)), energy=energy,
                      forces=forces, structure=index + first)
        return parts.result()
