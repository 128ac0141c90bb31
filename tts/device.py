"""The one place that chooses the device and CPU threads. Default: CPU."""

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


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (``TIMBRE_THREADS`` or all cores by default); returns the count used."""
    if num_threads is None:
        env = os.environ.get("TIMBRE_THREADS")
        num_threads = int(env) if env else (os.cpu_count() or 1)
    num_threads = max(1, int(num_threads))
    torch.set_num_threads(num_threads)
    return num_threads
