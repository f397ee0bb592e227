"""Files the experiment stages write: manifests, arrays, result tables and figures.

Every writer goes through a temporary name in the destination folder and a rename,
so an interrupted stage leaves either the old file or the new one, never half of one.
Result tables carry their provenance in columns (``scale``, ``reference_method``) so
that a table read on its own still says where its numbers came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = [
    "atomic_path",
    "write_json",
    "read_json",
    "write_manifest",
    "read_manifest",
    "save_arrays",
    "load_arrays",
    "load_trained",
    "write_table",
    "read_table",
    "save_figure",
    "pick_input",
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


def write_json(path: str | os.PathLike, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_manifest(path: str | os.PathLike, files: dict[str, str | os.PathLike], **meta: Any) -> Path:
    """The training stage's output: what it wrote (paths relative to the manifest) and how.

    ``files`` maps a role ("features", "weights", ...) to a file beside the manifest.
    """
    path = Path(path)
    rel = {}
    for role, f in files.items():
        f = Path(f)
        if not f.is_file():
            raise FileNotFoundError(f"manifest {path}: {role} file {f} was not written")
        rel[role] = os.path.relpath(f, path.parent)
    return write_json(path, {"files": rel, **meta})


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, Path], dict[str, Any]]:
    """(role -> absolute file path, the other manifest entries)."""
    path = Path(path)
    data = read_json(path)
    files = {role: (path.parent / f).resolve() for role, f in data.pop("files").items()}
    for role, f in files.items():
        if not f.is_file():
            raise FileNotFoundError(f"manifest {path} lists {role} = {f}, which does not exist")
    return files, data


def load_trained(inputs: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """What a training stage wrote: (features arrays, model arrays, manifest entries), from the manifest in ``inputs``."""
    files, meta = read_manifest(pick_input(inputs, "manifest.json"))
    return load_arrays(files["features"]), load_arrays(files["models"]), meta


def save_arrays(path: str | os.PathLike, **arrays: Any) -> Path:
    """``np.savez`` atomically (no pickled objects: strings are stored as unicode arrays)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_table(table: Any, path: str | os.PathLike, scale: str, reference_method: str) -> Path:
    """Write a pandas DataFrame as csv with ``scale`` and ``reference_method`` columns first."""
    table = table.copy()
    for column in ("reference_method", "scale"):
        if column in table.columns:
            table = table.drop(columns=column)
    table.insert(0, "reference_method", reference_method)
    table.insert(0, "scale", scale)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)


def read_table(path: str | os.PathLike) -> Any:
    import pandas as pd

    table = pd.read_csv(path)
    for column in ("scale", "reference_method"):
        if column not in table.columns:
            raise ValueError(f"{path}: result table without a {column!r} column (columns: {list(table.columns)})")
    return table


def save_figure(fig: Any, pdf_path: str | os.PathLike, dpi: int = 200) -> tuple[Path, Path]:
    """Save a matplotlib figure as pdf and as png beside it."""
    pdf_path = Path(pdf_path)
    if pdf_path.suffix != ".pdf":
        raise ValueError(f"figure output must end in .pdf, got {pdf_path}")
    png_path = pdf_path.with_suffix(".png")
    for target, kwargs in ((pdf_path, {}), (png_path, {"dpi": dpi})):
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix[1:], bbox_inches="tight", **kwargs)
    return pdf_path, png_path


def pick_input(inputs: Sequence[str], name: str) -> Path:
    """The one input whose file name is ``name`` (e.g. "si_nmers.extxyz", "manifest.json")."""
    matches = [Path(p) for p in inputs if Path(p).name == name]
    if len(matches) != 1:
        raise ValueError(f"expected exactly one input named {name!r}, got {len(matches)} in inputs={list(inputs)}")
    return matches[0]


def reference_methods(frames: Sequence[Any]) -> str:
    """The reference methods of a set of structures, joined with " + " (e.g. "Stillinger-Weber")."""
    methods = sorted({str(a.info.get("reference_method", "unknown")) for a in frames})
    return " + ".join(methods)
