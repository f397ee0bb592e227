"""Thin numpy / torch dispatch.

The library computes with whichever array kind it stores (numpy on the CPU by
default, torch when asked for a device or fed tensors) and hands results back
in the kind of each call's input. Only the few operations the library needs
are wrapped here; the hot paths use ``@`` and elementwise operators, which both
kinds share.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import scipy.linalg

__all__ = ["is_torch", "bad_rows", "Ops"]


def is_torch(x: Any) -> bool:
    """True if ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def bad_rows(x: Any) -> np.ndarray:
    """Indices of rows (along the first axis) of an array or tensor holding NaN or inf."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))


def _torch():
    import torch

    return torch


def _dtype_name(dtype: Any) -> str:
    """Canonical name ("float64" or "float32") of a numpy or torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name in ("float64", "double", "<class 'numpy.float64'>"):
        return "float64"
    if name in ("float32", "float", "<class 'numpy.float32'>"):
        return "float32"
    try:
        name = np.dtype(dtype).name
    except TypeError:
        pass
    if name not in ("float64", "float32"):
        raise ValueError(f"dtype {dtype!r} is not supported: use float64 (default) or float32")
    return name


class Ops:
    """Array operations of one kind (numpy or torch) at one dtype and device."""

    def __init__(self, kind: str, dtype: Any = "float64", device: Any = None):
        if kind not in ("numpy", "torch"):
            raise ValueError(f"array kind {kind!r} is not 'numpy' or 'torch'")
        self.kind = kind
        self.dtype_name = _dtype_name(dtype)
        if kind == "torch":
            torch = _torch()
            self.dtype = getattr(torch, self.dtype_name)
            self.device = torch.device("cpu" if device is None else device)
        else:
            self.dtype = np.dtype(self.dtype_name)
            self.device = None
        self.eps = float(np.finfo(self.dtype_name).eps)

    # -- conversion -------------------------------------------------------
    def asarray(self, x: Any) -> Any:
        """``x`` as an array of this kind, dtype and device (no copy when it already is)."""
        if self.kind == "numpy":
            if is_torch(x):
                x = x.detach().cpu().numpy()
            return np.asarray(x, dtype=self.dtype)
        torch = _torch()
        if is_torch(x):
            return x.detach().to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)

    def like(self, x: Any, template: Any) -> Any:
        """``x`` (of this kind) converted to the kind, device and dtype of ``template``."""
        if is_torch(template):
            torch = _torch()
            if self.kind == "numpy":
                x = torch.from_numpy(np.ascontiguousarray(x))
            return x.to(device=template.device, dtype=template.dtype if template.is_floating_point() else x.dtype)
        if self.kind == "torch":
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    def to_numpy(self, x: Any) -> np.ndarray:
        if self.kind == "torch":
            return x.detach().cpu().numpy()
        return np.asarray(x)

    # -- constructors -----------------------------------------------------
    def zeros(self, shape) -> Any:
        if self.kind == "numpy":
            return np.zeros(shape, dtype=self.dtype)
        return _torch().zeros(shape, dtype=self.dtype, device=self.device)

    def empty(self, shape) -> Any:
        if self.kind == "numpy":
            return np.empty(shape, dtype=self.dtype)
        return _torch().empty(shape, dtype=self.dtype, device=self.device)

    def eye(self, n: int) -> Any:
        if self.kind == "numpy":
            return np.eye(n, dtype=self.dtype)
        return _torch().eye(n, dtype=self.dtype, device=self.device)

    # -- reductions and elementwise ----------------------------------------
    def rowsum_sq(self, z: Any) -> Any:
        """Sum of squares of each row of a 2-D array."""
        if self.kind == "numpy":
            return np.einsum("ij,ij->i", z, z)
        return (z * z).sum(dim=1)

    def all_finite(self, x: Any) -> bool:
        if self.kind == "numpy":
            return bool(np.isfinite(x).all())
        return bool(_torch().isfinite(x).all())


    def copy(self, x: Any) -> Any:
        return x.copy() if self.kind == "numpy" else x.clone()

    def concat(self, xs: list) -> Any:
        xs = [self.asarray(x) for x in xs]
        return np.concatenate(xs) if self.kind == "numpy" else _torch().cat(xs)

    def index(self, idx: np.ndarray) -> Any:
        """Integer index array usable on arrays of this kind."""
        if self.kind == "numpy":
            return idx
        return _torch().as_tensor(idx, dtype=_torch().long, device=self.device)

    def contiguous(self, x: Any) -> Any:
        if self.kind == "numpy":
            return np.ascontiguousarray(x)
        return x.contiguous()

    def transpose(self, x: Any) -> Any:
        return np.swapaxes(x, -1, -2) if self.kind == "numpy" else x.mT

    # -- linear algebra ----------------------------------------------------
    def cholesky(self, a: Any) -> Any | None:
        """Lower Cholesky factor, or None when ``a`` is not numerically positive definite."""
        if self.kind == "numpy":
            try:
                return np.linalg.cholesky(a)
            except np.linalg.LinAlgError:
                return None
        torch = _torch()
        factor, info = torch.linalg.cholesky_ex(a)
        if bool((info != 0).any()):
            return None
        return factor

    def inv_lower(self, lower: Any) -> Any:
        """Inverse of a lower-triangular matrix by a triangular solve against the identity."""
        n = lower.shape[0]
        if self.kind == "numpy":
            return scipy.linalg.solve_triangular(lower, np.eye(n, dtype=self.dtype), lower=True, check_finite=False)
        return _torch().linalg.solve_triangular(lower, self.eye(n), upper=False)

    def eigvalsh(self, a: Any) -> np.ndarray:
        return np.linalg.eigvalsh(self.to_numpy(a).astype(np.float64))

    def eigh(self, a: Any):
        if self.kind == "numpy":
            return np.linalg.eigh(a)
        return _torch().linalg.eigh(a)

    def qr(self, a: Any):
        if self.kind == "numpy":
            return np.linalg.qr(a, mode="reduced")
        return _torch().linalg.qr(a, mode="reduced")

    def solve_spd_batched(self, m: Any, b: Any) -> Any:
        """Solve a batch of small symmetric positive-definite systems ``m @ x = b``."""
        if self.kind == "numpy":
            return np.linalg.solve(m, b)
        torch = _torch()
        return torch.cholesky_solve(b, torch.linalg.cholesky(m))

    def sqrt(self, x: Any) -> Any:
        return np.sqrt(x) if self.kind == "numpy" else x.sqrt()
