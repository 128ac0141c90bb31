"""The one place that chooses the device, dtype and CPU threads. Default: CPU, float32."""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)


def select_device(preference: str | None = None) -> torch.device:
    """The torch device to run on.

    `preference` (or the ``TIMBRE_DEVICE`` environment variable) may be ``cpu``, ``cuda``, ``cuda:N``, ``mps``
    or ``auto``; unset means CPU. ``auto`` takes CUDA, then MPS, when present.
    """
    choice = (preference or os.environ.get("TIMBRE_DEVICE") or "cpu").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{choice}' was asked for but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(choice)


def select_dtype(device: torch.device, preference: str | None = None) -> torch.dtype:
    """float32 unless ``float16``/``bfloat16`` is asked for (reduced precision only off the CPU)."""
    name = (preference or os.environ.get("TIMBRE_DTYPE") or "float32").lower()
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"unknown dtype '{name}'; choose one of {', '.join(dtypes)}")
    if device.type == "cpu" and name == "float16":
        logger.warning("float16 is slow or unsupported on CPU; using float32")
        return torch.float32
    return dtypes[name]


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (``TIMBRE_THREADS`` or all cores by default); returns the count used."""
    if num_threads is None:
        env = os.environ.get("TIMBRE_THREADS")
        num_threads = int(env) if env else (os.cpu_count() or 1)
    num_threads = max(1, int(num_threads))
    torch.set_num_threads(num_threads)
    return num_threads
