r"""Derivatives of the structure features with respect to positions and strain: the force and stress rows.

The rows are a Jacobian, :math:`\partial \Phi_{s,k} / \partial x`, of d outputs per structure
with respect to an input x in the autograd graph (positions, or the edge vectors of a
message-passing model). Two ways to get it, chosen per batch by their cost:

- **reverse**: one backward pass per feature k, on the whole batch at once (the
  structures of a batch do not interact, so the gradient of :math:`\sum_s \Phi_{s,k}` with
  respect to structure s's inputs is structure s's row): d passes whatever the batch size;
- **forward**: Jacobian-vector products along m tangent directions shared by all the
  structures of the batch ("move atom a of every structure along x"), by the double-vjp
  identity :math:`J v = \partial_u \left[ (J^\top u) \cdot v \right]`: the vjp :math:`J^\top u`
  is built once with ``create_graph=True`` and each jvp is one backward pass through it.
  m = 3 x (atoms of the largest structure) (+ 6 strain directions), independent of d and
  of the batch size: the cheaper way for small structures and many features.

(torch's own forward mode, ``torch.func.jvp`` or ``torch.autograd.forward_ad``, does not
run through mace-torch 0.3.16 models: the first fails on ``requires_grad_`` inside the
model, the second loses tangents in e3nn's code-generated modules.)
"""

from __future__ import annotations

MODES = ("auto", "reverse", "forward")

# a jvp through the double graph costs about this many backward passes of the model (measured
# on MACE: 2-2.6); "auto" takes forward mode when m * cost < d
FORWARD_COST = 2.5


def choose_mode(mode: str, n_features: int, n_tangents: int) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "auto":
        return "forward" if FORWARD_COST * n_tangents < n_features else "reverse"
    return mode


VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def jacobian_rows(Phi, inputs, reverse_map, tangents, forward_map, mode="auto"):
    r"""Rows of :math:`\partial \Phi / \partial x` for the tensors ``inputs`` of Phi's graph, by either mode.

    - ``reverse_map(grads)``: the rows from ``grads``, one (d, \*x.shape) tensor per input,
      the gradients of :math:`\sum_s \Phi_{s,k}` (one backward pass per feature k);
    - ``tangents``: m tuples, one tangent per input (or None), and ``forward_map(jv)``: the
      rows from ``jv`` (m, n_structures, d), the jvps along them (one pass per tangent).

    Both maps are linear; ``mode`` "auto" takes the cheaper (see ``FORWARD_COST``).
    """
    import torch

    n_graphs, d = Phi.shape
    if choose_mode(mode, d, len(tangents)) == "reverse":
        total = Phi.sum(dim=0)
        per_k = []
        for k in range(d):
            g = torch.autograd.grad(total[k], inputs, retain_graph=True, allow_unused=True)
            per_k.append([torch.zeros_like(x) if gi is None else gi for x, gi in zip(inputs, g)])
        return reverse_map([torch.stack([g[i] for g in per_k]) for i in range(len(inputs))])
    u = torch.zeros_like(Phi, requires_grad=True)
    vjp = torch.autograd.grad(Phi, inputs, grad_outputs=u, create_graph=True, allow_unused=True)
    jv = []
    for tangent in tangents:
        total = None
        for g, t in zip(vjp, tangent):
            if g is not None and t is not None and g.requires_grad:
                term = (g * t).sum()
                total = term if total is None else total + term
        if total is None:
            jv.append(torch.zeros_like(Phi))
            continue
        (j,) = torch.autograd.grad(total, u, retain_graph=True, allow_unused=True)
        jv.append(torch.zeros_like(Phi) if j is None else j)
    return forward_map(torch.stack(jv) if jv else Phi.new_zeros((0,) + tuple(Phi.shape)))


def local_atom_index(structure):
    """(n_atoms,) position of each atom within its structure, and the size of the largest structure."""
    import torch

    n_graphs = int(structure.max()) + 1
    counts = torch.bincount(structure, minlength=n_graphs)
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(len(structure), device=structure.device) - first[structure], int(counts.max())


def atom_tangents(structure, like):
    """3 n_max tangents on positions (n_atoms, 3), 3a + alpha moving the a-th atom of every structure along alpha,
    and ``gather(jv)`` -> (n_atoms, 3, d): each atom's own jvps out of (3 n_max, n_structures, d)."""
    import torch

    local, n_max = local_atom_index(structure)
    atoms = torch.arange(len(structure), device=structure.device)
    tangents = []
    for a in range(n_max):
        for alpha in range(3):
            t = torch.zeros_like(like)
            t[atoms[local == a], alpha] = 1.0
            tangents.append(t)
    offsets = torch.arange(3, device=structure.device)

    def gather(jv):
        return jv[3 * local[:, None] + offsets[None, :], structure[:, None]]

    return tangents, gather


def position_rows(Phi, positions, structure, mode="auto", strain=None, volumes=None):
    r"""Force rows (3 n_atoms, d) and, with ``strain``, stress rows (6 n_structures, d), as torch tensors.

    Phi (n_structures, d) are the reduced features of a batch, in the graph of
    ``positions`` (n_atoms, 3) and, if given, of ``strain`` (n_structures, 3, 3): a
    displacement whose symmetric part S the positions and cells were multiplied by,
    (I + S), so that the stress rows are :math:`\frac{1}{V_s} \partial \Phi_s / \partial \epsilon`
    in Voigt order xx, yy, zz, yz, xz, xy (ASE's stress convention). Force rows are
    :math:`-\partial \Phi_s / \partial r_{a\alpha}`, row 3a + alpha.
    """
    import torch

    n_graphs, d = Phi.shape
    inputs = [positions] if strain is None else [positions, strain]
    pos_tangents, gather = atom_tangents(structure, positions)
    tangents = [(t, None) for t in pos_tangents]
    if strain is not None:
        for a, b in VOIGT:
            t = torch.zeros_like(strain)
            t[:, a, b] = 1.0
            tangents.append((None, t))

    def reverse_map(grads):
        force = -grads[0].permute(1, 2, 0).reshape(-1, d)
        if strain is None:
            return force, None
        g = grads[1]  # (d, n_graphs, 3, 3)
        stress = torch.stack([g[:, :, a, b] for a, b in VOIGT], dim=2) / volumes[None, :, None]
        return force, stress.permute(1, 2, 0).reshape(-1, d)

    def forward_map(jv):
        n_pos = len(pos_tangents)
        force = -gather(jv[:n_pos]).reshape(-1, d)
        if strain is None:
            return force, None
        stress = jv[n_pos:].permute(1, 0, 2) / volumes[:, None, None]  # (n_graphs, 6, d)
        return force, stress.reshape(-1, d)

    return jacobian_rows(Phi, inputs, reverse_map, tangents, forward_map, mode)
