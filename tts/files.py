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


def read_tensor_file(path: str | os.PathLike, file_format: str, version: int, remedy: str) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of one of the studio's safetensors data files (LM units, DiT alignments,
    distillation pairs), read whole; a missing or unreadable file, or one of another format or version, is refused
    with a `TimbreError` that ends with `remedy` (what to run to make it again)."""
    from safetensors import SafetensorError, safe_open

    from tts.errors import TimbreError

    path = Path(path)
    if not path.is_file():
        raise TimbreError(f"{path}: missing; {remedy}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise TimbreError(f"{path}: unreadable ({error}); {remedy}") from error
    if metadata.get("format") != file_format or metadata.get("version") != str(version):
        raise TimbreError(f"{path}: not a version-{version} {file_format} file; {remedy}")
    return tensors, metadata


def run_bounds(lengths) -> list[tuple[int, int]]:
    """``(start, end)`` of each run in a data file's concatenated tensor that holds runs of `lengths` (a list, an
    array or a 1-D tensor) one after the other, in order."""
    bounds, start = [], 0
    for length in (lengths.tolist() if hasattr(lengths, "tolist") else lengths):
        bounds.append((start, start + int(length)))
        start += int(length)
    return bounds


def cache_root() -> Path:
    """The studio's cache folder: ``$TIMBRE_CACHE`` or ``~/.cache/timbre`` (test sets, corpora, models' assets)."""
    configured = os.environ.get("TIMBRE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "timbre"
