"""Input checks shared by the library: clear errors naming the value and what was expected."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import is_torch

__all__ = ["as_rows", "as_weights", "as_vector", "block_indices", "check_positive_int"]


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def as_rows(G: Any, n_features: int, name: str) -> Any:
    """A 2-D (n, n_features) array or tensor view of ``G`` (a 1-D input is one row).

    The values are not converted here: callers convert chunk by chunk, so that a
    large input of another dtype is never copied whole.
    """
    if not (isinstance(G, np.ndarray) or is_torch(G)):
        try:
            G = np.asarray(G, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a numeric array of shape (n, {n_features}), "
                             f"got {type(G).__name__}: {err}") from None
    if G.ndim == 1:
        G = G.reshape(1, -1)
    if G.ndim != 2 or G.shape[1] != n_features:
        raise ValueError(
            f"{name} of shape {tuple(G.shape)} do not match the Hessian's {n_features} features: "
            f"expected shape (n, {n_features})"
        )
    if isinstance(G, np.ndarray) and not (np.issubdtype(G.dtype, np.floating) or np.issubdtype(G.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {G.dtype}")
    return G


def as_vector(x: Any, name: str) -> np.ndarray:
    """A finite 1-D float64 numpy copy of ``x``."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name} contains NaN or inf at positions {bad[:5].tolist()}")
    return x


def as_weights(weights: Any, n: int, name: str = "weights") -> np.ndarray | None:
    """Per-row loss weights as a float64 numpy array of shape (n,), or None for unit weights."""
    if weights is None:
        return None
    if is_torch(weights):
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"{name} of shape {w.shape} do not match the {n} rows given: expected shape ({n},)")
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(f"{name} contain NaN or inf at rows {bad[:5].tolist()}")
    neg = np.flatnonzero(w < 0)
    if neg.size:
        raise ValueError(
            f"{name} contain negative values at rows {neg[:5].tolist()} (e.g. {w[neg[0]]!r}): "
            "loss weights must be >= 0"
        )
    return w


def block_indices(block: Any, n_features: int, name: str) -> np.ndarray:
    """Sorted unique feature indices of a CPR block given as a slice, index array or boolean mask."""
    if isinstance(block, slice):
        idx = np.arange(n_features)[block]
    else:
        if is_torch(block):
            block = block.detach().cpu().numpy()
        idx = np.asarray(block)
        if idx.dtype == bool:
            if idx.shape != (n_features,):
                raise ValueError(f"block {name!r}: boolean mask of shape {idx.shape} "
                                 f"does not match {n_features} features")
            idx = np.flatnonzero(idx)
        elif idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"block {name!r} must be a slice, a 1-D integer index array "
                             f"or a boolean mask, got {idx!r}")
        out = idx[(idx < -n_features) | (idx >= n_features)]
        if out.size:
            raise ValueError(f"block {name!r} holds indices {out[:5].tolist()} outside the {n_features} features")
        idx = np.unique(np.where(idx < 0, idx + n_features, idx))
    if idx.size == 0:
        raise ValueError(f"block {name!r} selects no features")
    return idx
