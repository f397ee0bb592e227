"""Result tables and figures (the analyses and plots): written atomically, with their provenance.

Result tables carry their provenance in columns (``scale``, ``reference_method``) so
that a table read on its own still says where its numbers came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._results import atomic_path

__all__ = ["Table", "write_table", "read_table", "save_figure"]


@dataclass
class Table:
    """A result table (pandas DataFrame) and the reference method of its numbers."""

    data: Any
    reference_method: str


def write_table(table: Table, path: str | os.PathLike, scale: str) -> Path:
    """Write a :class:`Table` as csv with ``scale`` and ``reference_method`` columns first."""
    data = table.data.copy()
    for column in ("reference_method", "scale"):
        if column in data.columns:
            data = data.drop(columns=column)
    data.insert(0, "reference_method", table.reference_method)
    data.insert(0, "scale", scale)
    with atomic_path(path) as tmp:
        data.to_csv(tmp, index=False, float_format="%.10g")
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
