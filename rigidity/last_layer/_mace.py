r"""Last-layer features of mace-torch models (``MACE``, ``ScaleShiftMACE``), read through forward hooks.

A MACE model sums one readout per interaction layer: a linear readout of the
invariant (0e) node features for every layer but the last, and a non-linear readout
(linear, activation, linear) for the last. Its energy per atom is

.. math::

    E_i = E^0_{Z_i} + s \Big( p_i + \sum_{t < T} \mathbf w_t \cdot \mathbf h^{(t)}_{i, 0e}
          + \mathbf w_T \cdot \sigma(\mathbf W \mathbf h^{(T)}_i) \Big) + \mu

(``ScaleShiftMACE``: scale s, shift mu; ``MACE``: s = 1, mu = 0; p_i the optional ZBL
pair repulsion). It is linear in the readout vectors, so the last-layer features are the
invariant node features of every linear readout and the hidden activations of the final
one, concatenated layer by layer (the paper's 128 + 16 = 144 for its Si model), with
weights s w_t, and the constants E^0 + s p_i + mu. The weights are read off the model's
own ``Linear`` modules (applied to unit vectors, so e3nn's path normalisation is
included), and the features through forward pre-hooks on them: no edit to mace.

Blocks: ``layer<t>`` per readout, for the CPR of each layer's energy contribution.
Multi-head models are read for one head (``head``); models with extra embeddings
(``joint_embedding``) are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import LastLayer


def _import_mace():
    import mace  # noqa: F401  (sets torch.load's weights_only default that e3nn's import needs)
    import torch

    return torch


class MACELastLayer(LastLayer):
    """Last-layer view of a mace-torch ``MACE`` or ``ScaleShiftMACE`` model.

    Parameters
    ----------
    model : mace.modules.models.MACE
        The model as mace-torch trains and saves it (``ScaleShiftMACE`` included).
    head : str, optional
        Head to read for multi-head models (default: the model's only head).
    device : str
        Torch device of the computations (the model is not moved).
    """

    def __init__(self, model: Any, head: str | None = None, device: str | None = None):
        torch = _import_mace()
        from mace.modules.blocks import LinearReadoutBlock, NonLinearReadoutBlock

        if not hasattr(model, "readouts") or not hasattr(model, "atomic_energies_fn"):
            raise TypeError(f"expected a mace-torch MACE model, got {type(model).__name__}")
        for attr in ("joint_embedding", "embedding_readout"):
            if hasattr(model, attr):
                raise ValueError(f"MACE models with {attr} are not supported: their energy has a term outside "
                                 "the readouts that depends on extra inputs")
        self.model = model
        heads = list(getattr(model, "heads", ["Default"]))
        if head is None:
            if len(heads) != 1:
                raise ValueError(f"the model has heads {heads}: choose one with head=")
            head = heads[0]
        if head not in heads:
            raise ValueError(f"head {head!r} is not one of the model's heads {heads}")
        self.head = head
        self.head_index = heads.index(head)
        self.heads = heads
        param = next(model.parameters())
        self.dtype = param.dtype
        self.device = torch.device(device) if device is not None else param.device
        self.r_max = float(model.r_max)
        self.atomic_numbers = [int(z) for z in model.atomic_numbers]

        scale_shift = getattr(model, "scale_shift", None)
        if scale_shift is not None:
            self.scale = float(torch.atleast_1d(scale_shift.scale)[self.head_index])
            self.shift = float(torch.atleast_1d(scale_shift.shift)[self.head_index])
        else:
            self.scale, self.shift = 1.0, 0.0

        self._taps = []  # (module whose input is tapped, column indices of that input)
        weights, blocks, start = [], {}, 0
        with torch.no_grad():
            for t, readout in enumerate(model.readouts):
                if isinstance(readout, NonLinearReadoutBlock):
                    linear = readout.linear_2
                    dim = linear.irreps_in.dim
                    columns = np.arange(dim)
                elif isinstance(readout, LinearReadoutBlock):
                    linear = readout.linear
                    columns = np.concatenate([np.arange(s.start, s.stop) for (mul, ir), s
                                              in zip(linear.irreps_in, linear.irreps_in.slices())
                                              if ir.l == 0 and ir.p == 1])
                    dim = linear.irreps_in.dim
                else:
                    raise TypeError(f"readout {t} is a {type(readout).__name__}: only mace's linear and "
                                    "non-linear readout blocks are supported")
                eye = torch.eye(dim, dtype=self.dtype, device=param.device)
                w = linear(eye)[:, self.head_index].detach().cpu().double().numpy()
                rest = np.setdiff1d(np.arange(dim), columns)
                if rest.size and np.abs(w[rest]).max() > 0:
                    raise RuntimeError(f"readout {t} reads non-scalar inputs: not a last layer this adapter knows")
                weights.append(self.scale * w[columns])
                blocks[f"layer{t}"] = slice(start, start + len(columns))
                start += len(columns)
                self._taps.append((linear, columns))
        self.weights = np.concatenate(weights)
        self.blocks = blocks

    # -- data -----------------------------------------------------------------------
    def _batches(self, frames: list, batch_size: int):
        """(batch, first structure index) pairs of mace AtomicData batches."""
        _import_mace()
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools, utils

        z_table = utils.AtomicNumberTable(self.atomic_numbers)
        known = set(self.atomic_numbers)
        graphs = []
        with torch_tools.default_dtype(self.dtype):
            for k, atoms in enumerate(frames):
                unknown = sorted(set(int(z) for z in atoms.numbers) - known)
                if unknown:
                    raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has atomic numbers {unknown} "
                                     f"the model does not know (it knows {sorted(known)})")
                config = mace_data.config_from_atoms(atoms, head_name=self.head)
                graphs.append(mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=self.r_max,
                                                               heads=self.heads))
        loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=batch_size, shuffle=False, drop_last=False)
        first = 0
        for batch in loader:
            yield batch.to(self.device), first
            first += int(batch.num_graphs)

    # -- features -------------------------------------------------------------------
    def _forward(self, batch, positions_grad: bool, model_forces: bool = False):
        """phi (n_atoms, d), constants (n_atoms,), energy (n_graphs,) of one batch, as torch tensors."""
        torch = _import_mace()
        model = self.model
        tapped: list = [None] * len(self._taps)
        pair: list = [None]

        def tap(t, columns):
            def hook(module, args):
                tapped[t] = args[0][:, columns]
            return hook

        handles = [linear.register_forward_pre_hook(tap(t, torch.as_tensor(columns, device=self.device)))
                   for t, (linear, columns) in enumerate(self._taps)]
        edges: list = [None]
        if positions_grad and not model_forces:
            # the edge vectors r_j - r_i + shift: every dependence of the model on positions and cell
            handles.append(model.spherical_harmonics.register_forward_pre_hook(
                lambda module, args: edges.__setitem__(0, args[0])))
        if hasattr(model, "pair_repulsion_fn"):
            handles.append(model.pair_repulsion_fn.register_forward_hook(
                lambda module, args, out: pair.__setitem__(0, out)))
        data = batch.to_dict()
        if positions_grad:
            data["positions"].requires_grad_(True)
        try:
            with torch.set_grad_enabled(positions_grad or model_forces):
                out = model(data, training=False, compute_force=model_forces, compute_stress=False)
        finally:
            for h in handles:
                h.remove()
        phi = torch.cat(tapped, dim=1)
        e0 = model.atomic_energies_fn(data["node_attrs"])[:, self.head_index]
        constants = e0 + self.shift
        if pair[0] is not None:
            constants = constants + self.scale * pair[0]
        energy = out["energy"]
        if energy.ndim > 1:
            energy = energy[:, self.head_index]
        if model_forces:
            return phi, constants, energy, data, out["forces"]
        return phi, constants, energy, data, edges[0]

    def evaluate(self, frames, batch_size: int = 16) -> dict[str, np.ndarray]:
        """The model's energies and forces (mace's own, one backward pass), with phi, structure and constants."""
        from ._base import Parts, check_frames

        parts = Parts()
        for batch, first in self._batches(check_frames(frames), batch_size):
            phi, constants, energy, data, forces = self._forward(batch, positions_grad=False, model_forces=True)
            parts.add(phi=phi, constants=constants, energy=energy, forces=forces, structure=data["batch"] + first)
        return parts.result()

    def _compute(self, frames, forces, stress, reduce, batch_size, mode):
        torch = _import_mace()
        from ._base import Parts

        parts = Parts()
        for batch, first in self._batches(frames, batch_size):
            phi, constants, energy, data, vectors = self._forward(batch, positions_grad=forces or stress)
            index = data["batch"]
            n_graphs = int(batch.num_graphs)
            if forces or stress:
                Phi = torch.zeros(n_graphs, phi.shape[1], dtype=phi.dtype, device=phi.device).index_add(0, index, phi)
                if reduce == "mean":
                    counts = torch.bincount(index, minlength=n_graphs).to(phi.dtype)
                    Phi = Phi / counts[:, None]
                volumes = None
                if stress:
                    cells = data["cell"].reshape(-1, 3, 3)
                    volumes = torch.linalg.det(cells).abs()
                if forces and constants.requires_grad:
                    # the ZBL pair repulsion: constants that depend on positions, with forces of their own
                    (g,) = torch.autograd.grad(constants.sum(), vectors, retain_graph=True)
                    sender, receiver = data["edge_index"]
                    f = torch.zeros_like(data["positions"]).index_add(0, receiver, -g).index_add(0, sender, g)
                    parts.add(constant_forces=f)
                force, strain = edge_rows(Phi, vectors, data["edge_index"], index, mode, volumes, forces, stress)
                if forces:
                    parts.add(force_rows=force)
                if stress:
                    parts.add(stress_rows=strain)
            parts.add(phi=phi, constants=constants, energy=energy, structure=index + first)
        return parts.result()


def edge_rows(Phi, vectors, edge_index, structure, mode, volumes, forces=True, stress=False):
    r"""Force rows (3 n_atoms, d) and stress rows (6 n_structures, d) from derivatives along the edge vectors.

    A MACE model sees positions and cell only through the edge vectors
    :math:`\mathbf v_e = \mathbf r_{j} - \mathbf r_{i} + \text{shift}_e` (sender i, receiver j),
    so with :math:`G_e = \partial \Phi / \partial \mathbf v_e` the force rows are
    :math:`-\sum_{e: j = a} G_e + \sum_{e: i = a} G_e` and the strain derivative is
    :math:`\frac12 \sum_e (v_{e,a} G_{e,b} + v_{e,b} G_{e,a})` (the positions and the cell
    strained together by a symmetric displacement), the virial of the edge forces.
    """
    import torch

    from ._autograd import VOIGT, atom_tangents, jacobian_rows

    n_graphs, d = Phi.shape
    n_atoms = len(structure)
    sender, receiver = edge_index[0], edge_index[1]
    edge_structure = structure[receiver]
    v = vectors.detach()

    def to_atoms(G):  # (..., n_edges, 3) -> (..., n_atoms, 3): d Phi / d r_a
        lead = G.shape[:-2]
        out = torch.zeros(lead + (n_atoms, 3), dtype=G.dtype, device=G.device)
        out = out.index_add(len(lead), receiver, G)
        return out.index_add(len(lead), sender, -G)

    tangents, gather = [], None
    if forces:
        atom_t, gather = atom_tangents(structure, torch.zeros(n_atoms, 3, dtype=v.dtype, device=v.device))
        # a tangent on positions moves the edge vectors by t[receiver] - t[sender]; the model sees only edge
        # vectors, so moving every atom at once changes nothing and the first atom's rows are minus the sum of
        # the others': its three tangents are skipped (for structures of one atom they vanish anyway)
        tangents += [(t[receiver] - t[sender],) for t in atom_t[3:]]
    n_pos = len(tangents)
    if stress:
        for a, b in VOIGT:
            t = torch.zeros_like(v)
            t[:, b] += 0.5 * v[:, a]
            t[:, a] += 0.5 * v[:, b]
            tangents.append((t,))

    def reverse_map(grads):
        G = grads[0]  # (d, n_edges, 3)
        force = strain = None
        if forces:
            force = -to_atoms(G).permute(1, 2, 0).reshape(-1, d)
        if stress:
            outer = 0.5 * (v[None, :, :, None] * G[:, :, None, :] + G[:, :, :, None] * v[None, :, None, :])
            per_graph = torch.zeros((d, n_graphs, 3, 3), dtype=G.dtype, device=G.device).index_add(
                1, edge_structure, outer)
            strain = torch.stack([per_graph[:, :, a, b] for a, b in VOIGT], dim=2) / volumes[None, :, None]
            strain = strain.permute(1, 2, 0).reshape(-1, d)
        return force, strain

    def forward_map(jv):
        force = strain = None
        if forces:
            zero = torch.zeros((3,) + tuple(jv.shape[1:]), dtype=jv.dtype, device=jv.device)
            rows = -gather(torch.cat([zero, jv[:n_pos]]))  # (n_atoms, 3, d), the first atoms' rows still 0
            first = torch.ones(n_atoms, dtype=torch.bool, device=rows.device)
            first[1:] = structure[1:] != structure[:-1]
            per_structure = torch.zeros((n_graphs, 3, d), dtype=rows.dtype, device=rows.device).index_add(
                0, structure, rows)
            rows[first] = -per_structure[structure[first]]
            force = rows.reshape(-1, d)
        if stress:
            strain = (jv[n_pos:].permute(1, 0, 2) / volumes[:, None, None]).reshape(-1, d)
        return force, strain

    return jacobian_rows(Phi, [vectors], reverse_map, tangents, forward_map, mode)
