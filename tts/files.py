"""Where the studio keeps files: the cache folder, and atomic writes, the one way the studio writes a file a crash must never leave half-written.

Data goes to a hidden temporary file in the same folder, is flushed and fsynced, then renamed over the
target (an atomic step on POSIX and Windows). Used by audio saves, checkpoints, voices and batch outputs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose contents replace `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # unique per writer
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` with `data` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace `path` with UTF-8 `text` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def cache_root() -> Path:
    """The studio's cache folder: ``$TIMBRE_CACHE`` or ``~/.cache/timbre`` (test sets, corpora, models' assets)."""
    configured = os.environ.get("TIMBRE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "timbre"
