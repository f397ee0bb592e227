"""Fetching a public archive once, checked against its recorded SHA-256."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .io import DatasetError

__all__ = ["sha256sum", "fetch"]


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, sha256: str, dest_dir: str | os.PathLike, filename: str | None = None,
          timeout: float = 60.0) -> Path:
    """Download ``url`` into ``dest_dir`` unless a file with the right checksum is already there.

    The download goes to a temporary name and is renamed only once its SHA-256
    matches; a wrong checksum raises :class:`DatasetError` and keeps nothing.
    ``file://`` URLs work the same way (used by the tests and for local mirrors).
    """
    if not url:
        raise DatasetError("no download URL is configured for this dataset: use source=file or source=generate")
    if not sha256 or len(sha256) != 64:
        raise DatasetError(f"{url}: a 64-character SHA-256 checksum is required, got {sha256!r}")
    dest_dir = Path(dest_dir)
    dest = dest_dir / (filename or Path(urllib.request.urlparse(url).path).name or "download")
    if dest.is_file():
        found = sha256sum(dest)
        if found == sha256:
            return dest
        raise DatasetError(f"{dest}: checksum {found} does not match the expected {sha256}; "
                           f"delete it to download again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        found = sha256sum(tmp)
        if found != sha256:
            raise DatasetError(f"{url}: downloaded file has SHA-256 {found}, expected {sha256}; nothing was kept")
        os.replace(tmp, dest)
    except OSError as err:
        raise DatasetError(f"{url}: download failed ({err}); "
                           f"with no network, use source=file or source=generate") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
