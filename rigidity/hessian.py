r"""The Gauss-Newton Hessian of a squared loss and the prediction rigidities it defines.

Conventions. A model with weights :math:`\mathbf w` (a linear model, or the last
layer of a network) is trained with the loss

.. math::

    \mathcal L(\mathbf w) = \tfrac12 \sum_i \lambda_i \big(y_i(\mathbf w) - \tilde y_i\big)^2
        + \tfrac12 \sigma^2 \lVert \mathbf w \rVert^2 ,

whose generalised Gauss-Newton Hessian is

.. math::

    \mathbf H = \sum_i \lambda_i \mathbf g_i \mathbf g_i^\top + \sigma^2 \mathbf I,
    \qquad \mathbf g_i = \partial y_i / \partial \mathbf w .

The prediction rigidity of a prediction with gradient :math:`\mathbf g_\star` is
:math:`R_\star = (\mathbf g_\star^\top \mathbf H^{-1} \mathbf g_\star)^{-1}`: a
constrained change :math:`\Delta` of that prediction raises the minimum of the
loss by :math:`R_\star \Delta^2 / 2`. (The paper writes its loss without the
factor 1/2; that rescales H, and every R, by 2.)

Numerics. H is factorised once, :math:`\mathbf H = \mathbf L \mathbf L^\top`,
and quadratic forms are evaluated as :math:`\lVert \mathbf L^{-1}\mathbf g\rVert^2`
with the triangular :math:`\mathbf L^{-1}` applied by blocked GEMMs that skip its
zero half. Working with L (condition number :math:`\sqrt{\kappa(\mathbf H)}`)
rather than :math:`\mathbf H^{-1}` keeps accuracy on ill-conditioned Hessians.
Low-rank updates (new training rows) are folded in as a product of symmetric
factors :math:`(\mathbf I + \mathbf U^\top\mathbf U)^{-1/2}`, so the
factorisation is reused until the accumulated rank makes a new one cheaper.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ._backend import Ops, bad_rows, is_torch
from ._validation import as_rows, as_weights, block_indices, check_positive_int

__all__ = ["Hessian"]

PathLike = Union[str, "os.PathLike[str]"]

#: Version of the .npz layout written by :meth:`Hessian.save` (the ``version`` key).
FILE_VERSION = 1
_FILE_KEYS = ("version", "accumulator", "regularizer", "n_features", "n_rows", "dtype", "metadata")


def _rows_per_chunk(ops: Ops, n_features: int) -> int:
    """Rows processed at once: small enough to stay in cache on a CPU, large on a GPU."""
    if ops.kind == "torch" and ops.device.type != "cpu":
        return max(1024, (1 << 27) // max(n_features, 1))
    return max(1024 if ops.kind == "numpy" else 4096, (1 << 19) // max(n_features, 1))


@dataclass
class _Factor:
    """A whitening operator T with T H T^T = I, as W = L^{-1} followed by low-rank stages.

    ``whiten(g) = T g``; every stage maps ``z -> z + Q (c * (Q^T z))`` with
    orthonormal Q: the symmetric inverse square root of ``I + U^T U``.
    """

    ops: Ops
    W: Any  # (d, d) lower-triangular inverse Cholesky factor
    stages: list = field(default_factory=list)  # [(Q (d, r), c (r,))]
    rank: int = 0
    _blocks: list | None = None  # [(end, W[start:end, :end].T)] for the triangular GEMMs
    _WT: Any = None

    @property
    def n_features(self) -> int:
        return self.W.shape[0]

    @property
    def WT(self) -> Any:
        if self._WT is None:
            self._WT = self.ops.contiguous(self.ops.transpose(self.W))
        return self._WT

    def blocks(self) -> list:
        """Column blocks of W^T, each cut to the rows where W is non-zero.

        z[:, s:e] = g[:, :e] @ W[s:e, :e]^T: with 8 blocks the GEMMs do 56 % of a
        full product's work. (torch's CPU GEMM gains nothing from it: one block.)
        """
        if self._blocks is None:
            d = self.n_features
            ops = self.ops
            n_blocks = 1 if ops.kind == "torch" else min(8, max(1, d // 64))
            edges = np.linspace(0, d, n_blocks + 1).round().astype(int)
            self._blocks = [
                (int(e), ops.contiguous(ops.transpose(self.W[s:e, :e])))
                for s, e in zip(edges[:-1], edges[1:])
                if e > s
            ]
        return self._blocks

    def apply_stages(self, z: Any, first: int = 0) -> Any:
        for Q, c in self.stages[first:]:
            z = z + ((z @ Q) * c) @ self.ops.transpose(Q)
        return z

    def whiten(self, g: Any) -> Any:
        """T g for a chunk of rows g (n, d) -> (n, d)."""
        return self.apply_stages(g @ self.WT)

    def quad(self, g: Any) -> Any:
        """g^T H^{-1} g for a chunk of rows g (n, d) -> (n,)."""
        ops = self.ops
        if self.stages:
            return ops.rowsum_sq(self.whiten(g))
        acc = None
        for end, wt in self.blocks():
            z = g[:, :end] @ wt
            part = ops.rowsum_sq(z)
            acc = part if acc is None else acc + part
        return acc

    def with_rows(self, U: Any) -> _Factor:
        """The factor of H + V^T V, given the whitened rows U = T V (k, d)."""
        Q, c = _stage(self.ops, U)
        return _Factor(self.ops, self.W, self.stages + [(Q, c)], self.rank + Q.shape[1], self._blocks, self._WT)


def _stage(ops: Ops, U: Any):
    r"""Q, c with
    :math:`(\mathbf I + \mathbf U^\top \mathbf U)^{-1/2} = \mathbf I + \mathbf Q\,\mathrm{diag}(c)\,\mathbf Q^\top`."""
    Qr, R = ops.qr(ops.transpose(U))  # U^T = Qr R, Qr (d, k) orthonormal
    s2, B = ops.eigh(R @ ops.transpose(R))  # U^T U = (Qr B) diag(s2) (Qr B)^T
    s2 = s2 * (s2 > 0)
    root = ops.sqrt(1.0 + s2)
    c = -s2 / (root * (1.0 + root))  # 1/sqrt(1+s2) - 1, without cancellation
    return Qr @ B, c


def _variance_after(ops: Ops, Z: Any, var: Any, U: Any) -> Any:
    """Variances of whitened targets Z (t, d) after adding each whitened candidate.

    ``U`` is (c, d) for one row per candidate or (c, k, d) for k rows (zero rows pad
    smaller candidates). Returns (c, t):
    ``var - a^T (I + U_c U_c^T)^{-1} a`` with ``a = U_c z``.
    """
    if U.ndim == 2:
        A = U @ ops.transpose(Z)  # (c, t)
        return var[None, :] - A * A / (1.0 + ops.rowsum_sq(U))[:, None]
    A = U @ ops.transpose(Z)  # (c, k, t)
    M = U @ ops.transpose(U)  # (c, k, k)
    k = U.shape[1]
    M = M + ops.eye(k)[None]
    X = ops.solve_spd_batched(M, A)
    return var[None, :] - (A * X).sum(1)


class Hessian:
    r"""Streaming accumulator of the Gauss-Newton Hessian
    :math:`\mathbf H = \sum_i w_i \mathbf g_i \mathbf g_i^\top + \sigma^2 \mathbf I`.

    Parameters
    ----------
    n_features : int
        Number of weights d (length of every gradient row g).
    regularizer : float
        :math:`\sigma^2 \ge 0`, added once to the diagonal (the ridge term of the loss).
    dtype : numpy or torch dtype, or "float64" / "float32"
        Precision of the accumulation and of every result (float64 by default).
    device : torch device, optional
        Store and compute with torch on this device. Without it the Hessian uses
        numpy, switching to torch (on the tensor's device) when its first rows are
        torch tensors.

    Every method accepts numpy arrays and torch tensors and returns the kind (and
    device) it was given. Partial accumulators built over shards merge with ``+``;
    across jobs, shard files written by :meth:`save` are summed by :meth:`merged`.

    Examples
    --------
    >>> h = Hessian(4, regularizer=1e-8).add(np.eye(4), weights=[1, 2, 3, 4])
    >>> h.pr(np.eye(4)).round(6).tolist()
    [1.0, 2.0, 3.0, 4.0]
    """

    #: Largest total rank of low-rank updates applied on top of one factorisation
    #: before :meth:`updated` falls back to a fresh one (``None``: max(8, d // 4)).
    max_update_rank: int | None = None

    def __init__(self, n_features: int, regularizer: float = 0.0, dtype: Any = np.float64, device: Any = None):
        self._d = check_positive_int(n_features, "n_features")
        regularizer = float(regularizer)
        if not np.isfinite(regularizer) or regularizer < 0:
            raise ValueError(f"regularizer must be a finite number >= 0, got {regularizer!r}")
        self._regularizer = regularizer
        self._ops = Ops("torch", dtype, device) if device is not None else Ops("numpy", dtype)
        self._kind_fixed = device is not None
        self._acc = None  # sum_i w_i g_i g_i^T, allocated on the first add
        self._factor: _Factor | None = None
        self.n_rows = 0  #: number of rows added so far
        #: Descriptive str / int / float / bool values saved with the Hessian (e.g. ``feature_set``).
        self.metadata: dict[str, Any] = {}

    # -- properties ---------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self._d

    @property
    def regularizer(self) -> float:
        return self._regularizer

    @property
    def dtype(self):
        return self._ops.dtype

    @property
    def device(self):
        return self._ops.device

    @property
    def matrix(self) -> Any:
        """H as a (d, d) array of the kind the accumulator holds (numpy, or torch)."""
        ops = self._ops
        H = ops.zeros((self._d, self._d)) if self._acc is None else ops.copy(self._acc)
        if self._regularizer:
            H = H + self._regularizer * ops.eye(self._d)
        return H

    def __repr__(self) -> str:
        kind = self._ops.kind if self._ops.kind == "numpy" else f"torch on {self._ops.device}"
        return (
            f"Hessian(n_features={self._d}, regularizer={self._regularizer:g}, n_rows={self.n_rows}, "
            f"dtype={self._ops.dtype_name}, {kind})"
        )

    # -- accumulation ---------------------------------------------------------
    def add(self, G: Any, weights: Any = None) -> Hessian:
        r"""Add rows: :math:`\mathbf H \mathrel{+}= \sum_i w_i \mathbf g_i \mathbf g_i^\top`.

        Parameters
        ----------
        G : (n, d) array or tensor
            Gradients of n training targets with respect to the weights (energies,
            force components, stress components: see :func:`rigidity.loss_rows`).
        weights : (n,) array, scalar, optional
            Loss weights :math:`\lambda_i \ge 0` (1 by default).

        Returns
        -------
        self, so that calls chain. On bad input nothing is added.
        """
        G = as_rows(G, self._d, "G")
        n = G.shape[0]
        w = as_weights(weights, n)
        if self._acc is None and not self._kind_fixed and is_torch(G):
            self._ops = Ops("torch", self._ops.dtype_name, G.device)
        ops = self._ops
        delta = ops.zeros((self._d, self._d))
        step = 8192
        with np.errstate(all="ignore"):  # NaN or inf input is reported below, by row
            for s in range(0, n, step):
                g = ops.asarray(G[s : s + step])
                if w is not None:
                    g = g * ops.asarray(np.sqrt(w[s : s + step]))[:, None]
                delta += ops.transpose(g) @ g  # numpy dispatches A.T @ A to syrk
        if not ops.all_finite(delta):
            bad = bad_rows(G)
            where = f" in rows {bad[:5].tolist()}" if bad.size else " (overflow: rescale the features)"
            raise ValueError(f"G contains NaN or inf{where}; nothing was added")
        self._acc = delta if self._acc is None else self._acc + delta
        self.n_rows += n
        self._factor = None
        return self

    def copy(self) -> Hessian:
        new = Hessian.__new__(Hessian)
        new.__dict__.update(self.__dict__)
        new.metadata = dict(self.metadata)
        if self._acc is not None:
            new._acc = self._ops.copy(self._acc)
        return new

    def __add__(self, other: Hessian) -> Hessian:
        if not isinstance(other, Hessian):
            return NotImplemented
        if other._d != self._d:
            raise ValueError(f"cannot merge Hessians of {self._d} and {other._d} features")
        if other._regularizer != self._regularizer:
            raise ValueError(
                f"cannot merge Hessians with regularizers {self._regularizer!r} and {other._regularizer!r}: "
                "the regularizer is added once, so shards must share it"
            )
        if other._ops.dtype_name != self._ops.dtype_name:
            raise ValueError(f"cannot merge Hessians of dtypes {self._ops.dtype_name} and {other._ops.dtype_name}")
        fs, other_fs = self.metadata.get("feature_set"), other.metadata.get("feature_set")
        if fs is not None and other_fs is not None and fs != other_fs:
            raise ValueError(f"cannot merge Hessians of different feature sets: {fs!r} and {other_fs!r}")
        new = self.copy()
        if other._acc is not None:
            acc = new._ops.asarray(other._acc)
            new._acc = new._ops.copy(acc) if new._acc is None else new._acc + acc
        new.n_rows = self.n_rows + other.n_rows
        new._factor = None
        # the keys both sides share with equal values (per-shard digests drop out)
        new.metadata = {k: v for k, v in self.metadata.items() if k in other.metadata and other.metadata[k] == v}
        return new

    def __radd__(self, other: Any) -> Hessian:
        if isinstance(other, int) and other == 0:  # sum([h1, h2, ...])
            return self.copy()
        return NotImplemented

    # -- files ------------------------------------------------------------------
    def save(self, path: PathLike, **metadata: Any) -> str:
        r"""Write the Hessian to an .npz file at exactly ``path`` (no suffix is added).

        The file holds the accumulated :math:`\sum_i w_i \mathbf g_i \mathbf g_i^\top`
        without the regularizer, so that shards saved by separate jobs sum to the
        Hessian of all their rows (:meth:`merged`). It is written to a temporary file
        in the same folder and renamed over ``path``: an interrupted save leaves
        ``path`` as it was.

        Parameters
        ----------
        path : str or path-like
        **metadata : str, int, float or bool
            Saved with (and overriding) :attr:`metadata`, e.g. ``feature_set="le_ace r_c=3.7"``.

        Returns
        -------
        The path written, as a string.

        Notes
        -----
        Keys: ``version`` (int), ``accumulator`` (d, d) in the Hessian's dtype,
        ``regularizer`` (float64), ``n_features``, ``n_rows`` (int64), ``dtype``
        ("float64" / "float32") and ``metadata`` (a JSON object); readable with
        ``np.load(path, allow_pickle=False)``.
        """
        path = os.fspath(path)
        meta = _checked_metadata({**self.metadata, **metadata}, path)
        d = self._d
        acc = np.zeros((d, d), dtype=self._ops.dtype_name) if self._acc is None else self._ops.to_numpy(self._acc)
        arrays = {
            "version": np.int64(FILE_VERSION),
            "accumulator": np.ascontiguousarray(acc),
            "regularizer": np.float64(self._regularizer),
            "n_features": np.int64(d),
            "n_rows": np.int64(self.n_rows),
            "dtype": np.str_(self._ops.dtype_name),
            "metadata": np.str_(json.dumps(meta, sort_keys=True)),
        }
        folder, name = os.path.split(os.path.abspath(path))
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: PathLike, device: Any = None) -> Hessian:
        """Read a Hessian written by :meth:`save` (numpy, or torch on ``device`` if given).

        The file is checked whole before anything is built: a missing file raises
        FileNotFoundError, and a truncated or corrupt file, a missing key, a wrong
        shape, a non-finite or asymmetric accumulator or an unknown version raise
        ValueError naming the file. The saved metadata is in :attr:`metadata`.
        """
        path = os.fspath(path)
        a = _read_hessian_file(path)
        h = cls(a["n_features"], regularizer=a["regularizer"], dtype=a["dtype"], device=device)
        h._acc = None if a["n_rows"] == 0 and not a["accumulator"].any() else h._ops.asarray(a["accumulator"])
        h.n_rows = a["n_rows"]
        h.metadata = a["metadata"]
        return h

    @classmethod
    def merged(cls, shards: Iterable[PathLike | Hessian], device: Any = None) -> Hessian:
        """Sum of shard Hessians, given as files written by :meth:`save` (or as Hessians).

        The regularizer is counted once, as with ``+``. Shards must agree in
        n_features, regularizer, dtype and the ``feature_set`` metadata key (present
        in all or none); ``n_rows`` adds up. The result's metadata keeps the keys that
        every shard holds with the same value, and ``n_shards`` (summed when shards
        were themselves merged).

        Raises
        ------
        ValueError naming both shards and the values they differ in.
        """
        items = list(shards)
        if not items:
            raise ValueError("no shards to merge")
        total = first = None
        seen: dict[str, str] = {}
        n_shards = 0
        for i, item in enumerate(items):
            if isinstance(item, Hessian):
                label, h = f"shard {i} (a Hessian)", item
            else:
                label = os.fspath(item)
                key = os.path.realpath(label)
                if key in seen:
                    raise ValueError(f"shard file {label} is given twice (also as {seen[key]}): "
                                     f"its rows would count twice")
                seen[key] = label
                h = cls.load(label, device=device)
            if first is None:
                first, total = (label, h), h
            else:
                _check_same_shard(*first, label, h)
                total = total + h
            n_shards += int(h.metadata.get("n_shards", 1))
        total = total.copy() if len(items) == 1 else total  # never alter a Hessian passed in
        total.metadata["n_shards"] = n_shards
        return total

    # -- factorisation ----------------------------------------------------------
    def _get_factor(self) -> _Factor:
        if self._factor is None:
            self._factor = self._factorize()
        return self._factor

    def _factorize(self) -> _Factor:
        ops = self._ops
        d = self._d
        H = self.matrix
        if not ops.all_finite(H):
            raise ValueError("the Hessian holds NaN or inf")
        L = ops.cholesky(H)
        suspicious = L is None
        if L is not None and self._regularizer == 0.0:
            pivots = ops.to_numpy(L.diagonal()) ** 2
            diag_max = float(ops.to_numpy(H.diagonal()).max())
            suspicious = bool(pivots.min() <= d * ops.eps * diag_max)
        if suspicious:
            self._raise_if_singular(H, cholesky_failed=L is None)
        W = ops.inv_lower(L)
        if not ops.all_finite(W):
            self._raise_if_singular(H, cholesky_failed=True)
        return _Factor(ops, W)

    def _raise_if_singular(self, H: Any, cholesky_failed: bool) -> None:
        ops = self._ops
        d = self._d
        ev = ops.eigvalsh(H)
        top = max(float(ev.max()), 0.0)
        tol = d * ops.eps * top if top > 0 else np.inf
        n_free = int((ev <= tol).sum()) if top > 0 else d
        if n_free == 0 and not cholesky_failed:
            return
        mean_diag = float(np.trace(ops.to_numpy(H))) / d
        suggest = 1e-6 * mean_diag if mean_diag > 0 else 1e-8
        if self._regularizer == 0.0:
            raise ValueError(
                f"the Hessian is singular: {n_free} of {d} directions are unconstrained by the {self.n_rows} rows "
                f"added (eigenvalues <= {tol:.2e}, largest {top:.2e}), so rigidities of predictions touching them "
                f"are undefined. Pass a regularizer > 0, e.g. Hessian({d}, regularizer={suggest:.1e}) "
                "(1e-6 of the mean diagonal), or add rows that span those directions"
            )
        raise ValueError(
            f"the Hessian is not positive definite in {ops.dtype_name} with regularizer={self._regularizer:g} "
            f"({n_free} of {d} eigenvalues <= {tol:.2e}, largest {top:.2e}): raise the regularizer, e.g. to "
            f"{max(suggest, 10 * tol):.1e}, or use float64"
        )

    # -- evaluation -------------------------------------------------------------
    def _map_rows(self, G: Any, name: str, fn) -> Any:
        """Apply ``fn`` (chunk of rows in the accumulator's kind -> (m,)) over G in chunks."""
        ops = self._ops
        G = as_rows(G, self._d, name)
        n = G.shape[0]
        out = ops.empty((n,))
        step = _rows_per_chunk(ops, self._d)
        with np.errstate(all="ignore"):  # NaN or inf input is reported below, by row
            for s in range(0, n, step):
                out[s : s + step] = fn(ops.asarray(G[s : s + step]))
        if not ops.all_finite(out):
            bad = bad_rows(G)
            where = f" in rows {bad[:5].tolist()}" if bad.size else " (overflow: rescale the features)"
            raise ValueError(f"{name} contains NaN or inf{where}")
        return out

    def _out(self, values: Any, template: Any) -> Any:
        if not (isinstance(template, np.ndarray) or is_torch(template)):
            template = np.empty(0)
        return self._ops.like(values, template)

    def variance(self, G: Any) -> Any:
        r"""Quadratic forms :math:`\mathbf g^\top \mathbf H^{-1} \mathbf g` of rows G (n, d) -> (n,).

        Up to a calibration factor (:func:`rigidity.calibrate`), the variance of each
        prediction under the Laplace approximation; the inverse of the PR.
        """
        factor = self._get_factor()
        return self._out(self._map_rows(G, "G", factor.quad), G)

    def pr(self, G: Any) -> Any:
        r"""Prediction rigidities :math:`R = 1 / (\mathbf g^\top \mathbf H^{-1} \mathbf g)` of rows G (n, d) -> (n,).

        A zero row (a prediction that does not depend on the weights) has R = inf.
        """
        factor = self._get_factor()
        var = self._map_rows(G, "G", factor.quad)
        return self._out(_reciprocal(self._ops, var), G)

    def lpr(self, F: Any) -> Any:
        r"""Local prediction rigidities of atoms with per-atom features F (n_atoms, d) -> (n_atoms,).

        For a model whose prediction is a sum of local terms :math:`y_j = \mathbf w^\top \mathbf f_j`,
        :math:`\mathrm{LPR}_j = 1 / (\mathbf f_j^\top \mathbf H^{-1} \mathbf f_j)`.
        """
        factor = self._get_factor()
        var = self._map_rows(F, "F", factor.quad)
        return self._out(_reciprocal(self._ops, var), F)

    def whiten(self, G: Any) -> Any:
        r"""Whitened rows :math:`\mathbf T \mathbf g` (n, d) with
        :math:`\mathbf T \mathbf H \mathbf T^\top = \mathbf I`.

        Their squared norms are the variances; dot products between them are the
        covariances :math:`\mathbf g_a^\top \mathbf H^{-1} \mathbf g_b`.
        """
        factor = self._get_factor()
        ops = self._ops
        G = as_rows(G, self._d, "G")
        n = G.shape[0]
        out = ops.empty((n, self._d))
        step = _rows_per_chunk(ops, self._d)
        for s in range(0, n, step):
            out[s : s + step] = factor.whiten(ops.asarray(G[s : s + step]))
        return self._out(out, G)

    def cpr(self, G: Any, blocks: Mapping[str, Any]) -> dict[str, Any]:
        r"""Component-wise prediction rigidities.

        For each block C of features, :math:`\mathrm{CPR}_C = 1 / (\mathbf g_C^\top \mathbf H^{-1} \mathbf g_C)`,
        where :math:`\mathbf g_C` is g with every feature outside C set to zero.

        Parameters
        ----------
        G : (n, d) array or tensor
        blocks : mapping name -> slice, 1-D integer indices or boolean mask of length d

        Returns
        -------
        dict name -> (n,) rigidities, in the kind of G.
        """
        if not isinstance(blocks, Mapping) or not blocks:
            raise ValueError(f"blocks must be a non-empty mapping of name -> feature indices, got {blocks!r}")
        factor = self._get_factor()
        ops = self._ops
        d = self._d
        plans = {}
        for name, block in blocks.items():
            idx = block_indices(block, d, str(name))
            first = int(idx[0])
            # W is lower triangular: the whitened vector vanishes above the block's first feature.
            plans[name] = (idx, first, ops.contiguous(ops.transpose(factor.W[first:, idx])))
        result = {}
        for name, (idx, first, wt) in plans.items():
            idx_arr = ops.index(idx)

            def quad(g, idx_arr=idx_arr, first=first, wt=wt):
                z = g[:, idx_arr] @ wt
                if not factor.stages:
                    return ops.rowsum_sq(z)
                full = ops.zeros((g.shape[0], d))
                full[:, first:] = z
                return ops.rowsum_sq(factor.apply_stages(full))

            result[name] = self._out(_reciprocal(ops, self._map_rows(G, "G", quad)), G)
        return result

    # -- updates ----------------------------------------------------------------
    def _candidate_rows(self, G: Any, weights: Any, name: str):
        G = as_rows(G, self._d, name)
        w = as_weights(weights, G.shape[0], f"{name} weights")
        V = self._ops.asarray(G)
        if w is not None:
            V = V * self._ops.asarray(np.sqrt(w))[:, None]
        if not self._ops.all_finite(V):
            raise ValueError(f"{name} contains NaN or inf in rows {bad_rows(V)[:5].tolist()}")
        return V

    def updated(self, G_new: Any, weights: Any = None) -> Hessian:
        r"""The Hessian after adding rows G_new (k, d) with optional weights; self is unchanged.

        When a factorisation of self exists and the accumulated rank of updates stays
        below :attr:`max_update_rank`, the new factorisation reuses it through a rank-k
        symmetric update (O(k d^2) instead of O(d^3)).
        """
        V = self._candidate_rows(G_new, weights, "G_new")
        new = self.copy()
        ops = self._ops
        delta = ops.transpose(V) @ V
        new._acc = delta if new._acc is None else new._acc + delta
        new.n_rows = self.n_rows + V.shape[0]
        limit = self.max_update_rank if self.max_update_rank is not None else max(8, self._d // 4)
        if self._factor is not None and self._factor.rank + V.shape[0] <= limit:
            new._factor = self._factor.with_rows(self._factor.whiten(V))
        else:
            new._factor = None
        return new

    def pr_after_adding(self, G_targets: Any, candidates: Any, weights: Any = None) -> Any:
        r"""PR of each target after adding each candidate alone to the training set.

        By the Woodbury identity, adding candidate c with (weighted) rows
        :math:`\mathbf V_c` turns a target's variance into
        :math:`v - \mathbf a^\top (\mathbf I + \mathbf U_c \mathbf U_c^\top)^{-1} \mathbf a`
        with :math:`\mathbf U_c = \mathbf V_c \mathbf T^\top`, :math:`\mathbf a = \mathbf U_c \mathbf T \mathbf g`:
        all candidates are scored with GEMMs, without refactorising H.

        Parameters
        ----------
        G_targets : (t, d) rows of the target predictions.
        candidates : (c, d) one row per candidate; (c, k, d) k rows each; or a sequence
            of (k_c, d) arrays (e.g. the energy and force rows of one structure).
        weights : loss weights of the candidate rows, shaped like ``candidates`` without d.

        Returns
        -------
        (c, t) rigidities, in the kind of G_targets.
        """
        factor = self._get_factor()
        ops = self._ops
        Z = self.whiten(ops.asarray(as_rows(G_targets, self._d, "G_targets")))
        var = ops.rowsum_sq(Z)
        cands = _Candidates(self, candidates, weights)
        out = ops.empty((cands.n, Z.shape[0]))
        for s, e, U in cands.whitened_chunks(factor, Z.shape[0]):
            out[s:e] = _variance_after(ops, Z, var, U)
        return self._out(_reciprocal(ops, out), G_targets)


def _checked_metadata(metadata: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Metadata as JSON-safe python values; numpy scalars become python ones."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise ValueError(
                f"metadata for {path} must map names to str, int, float or bool, got {key!r}: {value!r} "
                f"({type(value).__name__})"
            )
        out[key] = value
    return out


def _read_hessian_file(path: str) -> dict[str, Any]:
    """The checked contents of a Hessian file, as python scalars and one (d, d) array."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Hessian file at {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path} is not an .npz file written by Hessian.save (it does not start like a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _FILE_KEYS if k not in npz.files]
            if missing:
                raise KeyError(missing)
            raw = {k: npz[k] for k in _FILE_KEYS}  # reads (and CRC-checks) every member
    except KeyError as err:
        raise ValueError(f"{path} is not a complete Hessian file: missing keys {err.args[0]}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a complete Hessian file (truncated or corrupt: {err})") from None
    for k in _FILE_KEYS:
        if k != "accumulator" and raw[k].shape != ():
            raise ValueError(f"{path}: key {k!r} should be a scalar, got shape {raw[k].shape}")
    try:
        version = int(raw["version"])
        d, n_rows = int(raw["n_features"]), int(raw["n_rows"])
        regularizer, dtype = float(raw["regularizer"]), str(raw["dtype"])
        metadata = json.loads(str(raw["metadata"]))
    except (TypeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: a scalar key has the wrong type ({err})") from None
    if version != FILE_VERSION:
        raise ValueError(f"{path}: file version {version} is unknown (this library reads version {FILE_VERSION})")
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: metadata should be a JSON object, got {metadata!r}")
    acc = raw["accumulator"]
    if d <= 0 or n_rows < 0 or not (np.isfinite(regularizer) and regularizer >= 0):
        raise ValueError(f"{path}: n_features={d}, n_rows={n_rows}, regularizer={regularizer!r} "
                         f"should be > 0, >= 0, >= 0")
    if dtype not in ("float64", "float32") or acc.dtype != np.dtype(dtype):
        raise ValueError(f"{path}: accumulator of dtype {acc.dtype} does not match the recorded dtype {dtype!r}")
    if acc.shape != (d, d):
        raise ValueError(f"{path}: accumulator of shape {acc.shape} does not match n_features={d}: expected ({d}, {d})")
    if not np.isfinite(acc).all():
        raise ValueError(f"{path}: the accumulator holds NaN or inf")
    scale = float(np.abs(acc).max(initial=0.0))
    asym = float(np.abs(acc - acc.T).max(initial=0.0))
    if asym > 1e4 * np.finfo(acc.dtype).eps * scale or (acc.diagonal() < 0).any():
        raise ValueError(
            f"{path}: the accumulator is not a sum of outer products (asymmetry {asym:.2e} of "
            f"largest entry {scale:.2e}, smallest diagonal {float(acc.diagonal().min()):.2e})"
        )
    return {"accumulator": acc, "regularizer": regularizer, "n_features": d, "n_rows": n_rows, "dtype": dtype,
            "metadata": metadata}


def _check_same_shard(label_a: str, a: Hessian, label_b: str, b: Hessian) -> None:
    """Raise ValueError naming both shards when they cannot be summed."""
    fs_a, fs_b = a.metadata.get("feature_set"), b.metadata.get("feature_set")
    for what, x, y in (
        ("n_features", a.n_features, b.n_features),
        ("regularizer", a.regularizer, b.regularizer),
        ("dtype", a._ops.dtype_name, b._ops.dtype_name),
        ("feature_set", fs_a, fs_b),
    ):
        if x != y:
            raise ValueError(f"cannot merge shards {label_a} and {label_b}: {what} {x!r} != {y!r}")


def _reciprocal(ops: Ops, var: Any) -> Any:
    if ops.kind == "numpy":
        with np.errstate(divide="ignore"):
            return 1.0 / var
    return 1.0 / var


class _Candidates:
    """Candidate rows (sqrt-weighted), with the candidate each row belongs to."""

    def __init__(self, h: Hessian, candidates: Any, weights: Any):
        d = h.n_features
        self.ops = ops = h._ops
        if isinstance(candidates, (list, tuple)):
            if not candidates:
                raise ValueError("candidates is empty")
            blocks = [as_rows(c, d, f"candidates[{i}]") for i, c in enumerate(candidates)]
            counts = np.array([b.shape[0] for b in blocks])
            if weights is not None:
                if not isinstance(weights, (list, tuple)) or len(weights) != len(blocks):
                    raise ValueError(f"weights must be a sequence of {len(blocks)} arrays, one per candidate")
                weights = np.concatenate(
                    [np.ones(k) if w is None else as_weights(w, k, f"weights[{i}]")
                     for i, (w, k) in enumerate(zip(weights, counts))]
                )
            G = ops.concat(blocks)
        else:
            G = candidates
            if not (isinstance(G, np.ndarray) or is_torch(G)):
                G = np.asarray(G, dtype=np.float64)
            if G.ndim == 3:
                c, k, dd = G.shape
                if dd != d:
                    raise ValueError(f"candidates of shape {tuple(G.shape)} do not match the Hessian's {d} features")
                if weights is not None:
                    weights = np.asarray(weights.detach().cpu().numpy() if is_torch(weights) else weights,
                                         dtype=np.float64)
                    if weights.shape != (c, k):
                        raise ValueError(f"weights of shape {weights.shape} "
                                         f"do not match candidates of shape {(c, k, d)}")
                    weights = weights.reshape(-1)
                G = G.reshape(c * k, d)
                counts = np.full(c, k)
            else:
                G = as_rows(G, d, "candidates")
                counts = np.ones(G.shape[0], dtype=int)
        if counts.min() == 0:
            raise ValueError(f"candidate {int(np.argmin(counts))} has no rows")
        self.rows = h._candidate_rows(G, weights, "candidates")
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.owner = np.repeat(np.arange(len(counts)), counts)
        self.position = np.arange(len(self.owner)) - self.offsets[self.owner]
        self.n = len(counts)
        self.kmax = int(counts.max())
        self.uniform = bool((counts == self.kmax).all())

    def padded(self, U: Any, start: int, stop: int) -> Any:
        """Rows U of candidates start..stop-1 as (c, kmax, d) with zero padding, or (c, d) when kmax == 1."""
        if self.kmax == 1:
            return U
        if self.uniform:
            return U.reshape(stop - start, self.kmax, U.shape[1])
        lo, hi = self.offsets[start], self.offsets[stop]
        out = self.ops.zeros((stop - start, self.kmax, U.shape[1]))
        out[self.ops.index(self.owner[lo:hi] - start), self.ops.index(self.position[lo:hi])] = U
        return out

    def chunk_bounds(self, n_targets: int):
        """Candidate ranges whose working arrays stay near 64 MB."""
        d = self.rows.shape[1]
        per = self.kmax * (d + n_targets + self.kmax) * 8
        step = max(1, (64 << 20) // per)
        for s in range(0, self.n, step):
            yield s, min(self.n, s + step)

    def whitened_chunks(self, factor: _Factor, n_targets: int):
        for s, e in self.chunk_bounds(n_targets):
            U = factor.whiten(self.rows[self.offsets[s] : self.offsets[e]])
            yield s, e, self.padded(U, s, e)
