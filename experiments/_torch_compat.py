"""Loading pickled torch objects with torch >= 2.6, where ``torch.load`` defaults to ``weights_only=True``.

- e3nn 0.4.4 (pinned by mace-torch 0.3.16) loads its own constants file at import
  time with the default, which fails on a pickled ``slice``: :func:`allow_e3nn_import`
  allow-lists exactly that type before e3nn is imported. (mace itself sets
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` on import, which turns the check off for
  the whole process; importing e3nn first, or alone, needs this instead.)
- schnetpack and mace checkpoints are whole pickled modules: load the ones this
  workflow wrote with :func:`load_trusted_checkpoint`, never files from elsewhere.
"""

from __future__ import annotations

import os

import torch

__all__ = ["allow_e3nn_import", "load_trusted_checkpoint"]


def allow_e3nn_import() -> None:
    """Allow-list the one non-tensor type e3nn's bundled constants need."""
    torch.serialization.add_safe_globals([slice])


def load_trusted_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``torch.load`` of a whole pickled model that this workflow wrote itself (runs arbitrary code)."""
    return torch.load(path, map_location=map_location, weights_only=False)
