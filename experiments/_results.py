"""Files the stages exchange: features, trained linear models, the structures' fingerprints.

Every writer goes through a temporary name in the destination folder and a rename,
so an interrupted stage leaves either the old file or the new one, never half of one.
Stage functions return the objects defined here; the entry points write them. (Result
tables and figures, which only the analyses and plots write, are in ``_tables``: a
change of how a figure is saved is not a change of the features.)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "write_json",
    "read_json",
    "save_arrays",
    "load_arrays",
    "FeatureSet",
    "save_features",
    "load_features",
    "TrainedModel",
    "save_model",
    "load_model",
    "frames_fingerprint",
    "reference_methods",
]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_arrays(path: str | os.PathLike, meta: dict | None = None, **arrays: Any) -> Path:
    """``np.savez`` atomically; ``meta`` (JSON) is stored beside the arrays. No pickled objects."""
    if meta is not None:
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, default=_jsonable))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def load_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a file written by :func:`save_arrays`; a missing or damaged file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile.BadZipFile, EOFError, CRC errors of a truncated file
        raise ValueError(f"{path}: not a complete npz file ({type(err).__name__}: {err}); "
                         f"rerun the rule that writes it") from None
    meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    return arrays, meta


def frames_fingerprint(frames: Sequence[Any]) -> str:
    """SHA-256 (16 hex digits) of the structures' numbers, positions, cells and energies."""
    h = hashlib.sha256()
    for a in frames:
        h.update(np.ascontiguousarray(a.numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(a.positions, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(a.cell.array, dtype=np.float64).tobytes())
        h.update(np.float64(a.info.get("energy", np.nan)).tobytes())
    return h.hexdigest()[:16]


def reference_methods(frames: Sequence[Any]) -> str:
    """The reference methods of a set of structures, joined with " + " (e.g. "Stillinger-Weber")."""
    methods = sorted({str(a.info.get("reference_method", "unknown")) for a in frames})
    return " + ".join(methods)


# ----------------------------------------------------------------------------------------------
# features


@dataclass
class FeatureSet:
    """Descriptor features of a dataset (rule compute_features).

    ``X`` is (n_structures, d) summed rows (kind "structures") or (n_atoms, d) per-atom
    rows (kind "atoms", with ``structure`` the structure of each row). ``blocks`` maps a
    block name to its [start, stop) columns. ``meta`` records the model config, the
    dataset, the kind, the descriptor, the frames' fingerprint and reference method.
    """

    X: np.ndarray
    n_atoms: np.ndarray
    blocks: dict[str, tuple[int, int]]
    meta: dict = field(default_factory=dict)
    structure: np.ndarray | None = None

    @property
    def slices(self) -> dict[str, slice]:
        return {k: slice(int(a), int(b)) for k, (a, b) in self.blocks.items()}

    def check_frames(self, frames: Sequence[Any], path: Any = "features") -> None:
        """Refuse structures other than those the features were computed from."""
        got = frames_fingerprint(frames)
        if self.meta.get("fingerprint") != got:
            raise ValueError(
                f"{path}: these features were computed from other structures than the {len(frames)} given "
                f"(fingerprint {self.meta.get('fingerprint')} != {got}): rerun compute_features"
            )


def save_features(features: FeatureSet, path: str | os.PathLike) -> Path:
    arrays = dict(X=features.X, n_atoms=features.n_atoms)
    if features.structure is not None:
        arrays["structure"] = features.structure
    meta = dict(features.meta, blocks={k: [int(a), int(b)] for k, (a, b) in features.blocks.items()})
    return save_arrays(path, meta=meta, **arrays)


def load_features(path: str | os.PathLike, frames: Sequence[Any] | None = None) -> FeatureSet:
    """Features written by :func:`save_features`; with ``frames``, checked to come from them."""
    arrays, meta = load_arrays(path)
    blocks = {k: (int(a), int(b)) for k, (a, b) in meta.pop("blocks").items()}
    fs = FeatureSet(arrays["X"], arrays["n_atoms"], blocks, meta, arrays.get("structure"))
    if frames is not None:
        fs.check_frames(frames, path)
    return fs


# ----------------------------------------------------------------------------------------------
# trained linear models


@dataclass
class TrainedModel:
    """A fitted linear model (rule fit_model): its arrays (weights, training rows, ...) and metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)


def save_model(model: TrainedModel, path: str | os.PathLike) -> Path:
    return save_arrays(path, meta=model.meta, **model.arrays)


def load_model(path: str | os.PathLike, fingerprint: str | None = None) -> TrainedModel:
    """A model written by :func:`save_model`; with ``fingerprint``, checked to be fitted on those structures."""
    arrays, meta = load_arrays(path)
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} was fitted on other structures than those given (fingerprint "
                         f"{meta.get('fingerprint')} != {fingerprint}): rerun fit_model")
    return TrainedModel(arrays, meta)
