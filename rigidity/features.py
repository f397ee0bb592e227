r"""Gradient rows g of energy, force and stress targets for linear and last-layer models.

For a model whose energy is a sum of atomic terms linear in the weights,

.. math::

    E = \sum_j \mathbf w^\top \boldsymbol\phi_j, \qquad
    f_{k\alpha} = -\frac{\partial E}{\partial r_{k\alpha}}, \qquad
    s_{\alpha\beta} = \frac{1}{V} \frac{\partial E}{\partial \varepsilon_{\alpha\beta}},

the rows entering the Gauss-Newton Hessian (paper, eq. 6) are

.. math::

    \mathbf g_E = \sum_j \boldsymbol\phi_j, \qquad
    \mathbf g_{f_{k\alpha}} = -\sum_j \frac{\partial \boldsymbol\phi_j}{\partial r_{k\alpha}}, \qquad
    \mathbf g_{s_{\alpha\beta}} = \frac{1}{V} \sum_j
    \frac{\partial \boldsymbol\phi_j}{\partial \varepsilon_{\alpha\beta}}.

For a last-layer model, :math:`\boldsymbol\phi_j` are the last-layer features and the
derivatives are taken through the rest of the network. The stress follows ASE's
sign convention (positive under tension) and Voigt order xx, yy, zz, yz, xz, xy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse

from ._backend import is_torch
from ._validation import as_weights

__all__ = ["structure_features", "force_rows", "stress_rows", "loss_rows", "VOIGT"]

#: (row, column) of each Voigt component, in ASE's order
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _index_array(index: Any, n: int, name: str) -> np.ndarray:
    if is_torch(index):
        index = index.detach().cpu().numpy()
    index = np.asarray(index)
    if index.shape != (n,):
        raise ValueError(f"{name} of shape {index.shape} does not match the {n} rows it indexes: expected ({n},)")
    if n and not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {index.dtype}")
    if n and index.min() < 0:
        raise ValueError(f"{name} holds negative entries, e.g. {int(index.min())}")
    return index.astype(np.int64)


def _sum_rows(values: Any, index: np.ndarray, n_out: int) -> Any:
    """out[i] = sum of values[r] over rows r with index[r] == i; values (n, ...) -> (n_out, ...)."""
    if is_torch(values):
        import torch

        out = torch.zeros((n_out,) + tuple(values.shape[1:]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, torch.as_tensor(index, device=values.device), values)
    values = np.asarray(values)
    flat = values.reshape(len(values), -1)
    summer = scipy.sparse.csr_matrix(
        (np.ones(len(index), dtype=flat.dtype), (index, np.arange(len(index)))), shape=(n_out, len(index))
    )
    return np.asarray(summer @ flat).reshape((n_out,) + values.shape[1:])


def structure_features(
    atom_features: Any, structure_index: Any, reduce: str = "sum", n_structures: int | None = None
) -> Any:
    r"""Per-structure rows from per-atom features.

    Parameters
    ----------
    atom_features : (n_atoms, d) per-atom (last-layer) features :math:`\boldsymbol\phi_j`.
    structure_index : (n_atoms,) index of the structure each atom belongs to.
    reduce : "sum" (:math:`\sum_j \boldsymbol\phi_j`, the gradient of a total energy) or
        "mean" (divided by the atom count, the gradient of an energy per atom).
    n_structures : number of structures (default: ``max(structure_index) + 1``).

    Returns
    -------
    (n_structures, d) array or tensor, of the kind given.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if atom_features.ndim != 2:
        raise ValueError(f"atom_features of shape {tuple(atom_features.shape)} must be 2-D (n_atoms, d)")
    n_atoms = atom_features.shape[0]
    index = _index_array(structure_index, n_atoms, "structure_index")
    n_out = int(index.max()) + 1 if n_structures is None and n_atoms else int(n_structures or 0)
    if n_atoms and index.max() >= n_out:
        raise ValueError(f"structure_index holds {int(index.max())}, beyond n_structures={n_out}")
    out = _sum_rows(atom_features, index, n_out)
    if reduce == "mean":
        counts = np.bincount(index, minlength=n_out)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"structures {empty[:5].tolist()} have no atoms: their mean is undefined")
        scale = 1.0 / counts
        out = out * (_like(scale, out))[:, None]
    return out


def _like(x: np.ndarray, template: Any) -> Any:
    if is_torch(template):
        import torch

        return torch.as_tensor(x, dtype=template.dtype, device=template.device)
    return x


def force_rows(position_gradients: Any, atom_index: Any, n_atoms: int | None = None) -> Any:
    r"""Rows of force targets:
    :math:`\mathbf g_{f_{k\alpha}} = -\sum_j \partial\boldsymbol\phi_j / \partial r_{k\alpha}`.

    Parameters
    ----------
    position_gradients : (n_pairs, 3, d)
        :math:`\partial\boldsymbol\phi_j / \partial \mathbf r_k` for each (centre j, atom k)
        pair with a non-zero derivative (the layout of featomic's "positions" gradients),
        in feature units per length unit.
    atom_index : (n_pairs,)
        Global index k of the atom each derivative is taken with respect to.
    n_atoms : total number of atoms (default ``max(atom_index) + 1``).

    Returns
    -------
    (3 n_atoms, d) rows ordered atom by atom (x, y, z), so that ``rows @ w`` is the
    flattened (n_atoms, 3) force array of a linear model with weights w.
    """
    if position_gradients.ndim != 3 or position_gradients.shape[1] != 3:
        raise ValueError(
            f"position_gradients of shape {tuple(position_gradients.shape)} must be (n_pairs, 3, d)"
        )
    n_pairs, _, d = position_gradients.shape
    index = _index_array(atom_index, n_pairs, "atom_index")
    n_out = int(index.max()) + 1 if n_atoms is None and n_pairs else int(n_atoms or 0)
    if n_pairs and index.max() >= n_out:
        raise ValueError(f"atom_index holds {int(index.max())}, beyond n_atoms={n_out}")
    summed = _sum_rows(position_gradients, index, n_out)  # (n_atoms, 3, d)
    return -summed.reshape(3 * n_out, d)


def stress_rows(strain_gradients: Any, volumes: Any, voigt: bool = True) -> Any:
    r"""Rows of stress targets:
    :math:`\mathbf g_{s_{\alpha\beta}} = V^{-1} \sum_j \partial\boldsymbol\phi_j / \partial\varepsilon_{\alpha\beta}`.

    Parameters
    ----------
    strain_gradients : (n_structures, 3, 3, d)
        Derivatives of the summed features of each structure with respect to a
        homogeneous strain :math:`\mathbf r \to (\mathbf I + \boldsymbol\varepsilon)\mathbf r`
        (cell included), in feature units.
    volumes : (n_structures,) cell volumes.
    voigt : return the 6 Voigt components (symmetrised off-diagonal derivative) per
        structure, or all 9 components when False.

    Returns
    -------
    (6 n_structures, d) or (9 n_structures, d) rows, structure by structure.
    """
    if strain_gradients.ndim != 4 or tuple(strain_gradients.shape[1:3]) != (3, 3):
        raise ValueError(f"strain_gradients of shape {tuple(strain_gradients.shape)} must be (n_structures, 3, 3, d)")
    n, _, _, d = strain_gradients.shape
    vol = np.asarray(volumes.detach().cpu().numpy() if is_torch(volumes) else volumes, dtype=np.float64).reshape(-1)
    if vol.shape != (n,):
        raise ValueError(f"volumes of shape {vol.shape} do not match {n} structures")
    if not (np.isfinite(vol).all() and (vol > 0).all()):
        bad = np.flatnonzero(~(np.isfinite(vol) & (vol > 0)))
        raise ValueError(f"volumes must be finite and > 0; structures {bad[:5].tolist()} have {vol[bad[:5]].tolist()}")
    scaled = strain_gradients / _like(vol, strain_gradients)[:, None, None, None]
    if not voigt:
        return scaled.reshape(9 * n, d)
    rows = [(scaled[:, a, b] + scaled[:, b, a]) / 2 for a, b in VOIGT]
    if is_torch(scaled):
        import torch

        return torch.stack(rows, dim=1).reshape(6 * n, d)
    return np.stack(rows, axis=1).reshape(6 * n, d)


def loss_rows(
    energy: Any = None,
    forces: Any = None,
    stress: Any = None,
    lambda_energy: float = 1.0,
    lambda_forces: float = 1.0,
    lambda_stress: float = 1.0,
):
    r"""Stack energy, force and stress rows with their loss weights (paper, eqs. 5-6).

    Returns ``(G, weights)`` ready for :meth:`rigidity.Hessian.add`, so that

    .. math::

        \mathbf H = \lambda_E \sum \mathbf g_E \mathbf g_E^\top
            + \lambda_f \sum \mathbf g_f \mathbf g_f^\top
            + \lambda_s \sum \mathbf g_s \mathbf g_s^\top .

    Any of the three blocks may be omitted; all given blocks must share d and kind.
    """
    parts, weights = [], []
    for name, rows, lam in (("energy", energy, lambda_energy), ("forces", forces, lambda_forces),
                             ("stress", stress, lambda_stress)):
        if rows is None:
            continue
        if rows.ndim != 2:
            raise ValueError(f"{name} rows of shape {tuple(rows.shape)} must be 2-D (n, d)")
        lam_arr = as_weights(lam, rows.shape[0], f"lambda_{name}")
        parts.append(rows)
        weights.append(lam_arr)
    if not parts:
        raise ValueError("loss_rows needs at least one of energy, forces, stress")
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
        raise ValueError(f"energy, force and stress rows have different feature counts {sorted(widths)}")
    if any(is_torch(p) for p in parts):
        import torch

        G = torch.cat([p if is_torch(p) else torch.as_tensor(p) for p in parts])
    else:
        G = np.concatenate(parts)
    return G, np.concatenate(weights)
