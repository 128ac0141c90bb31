"""Shared test fixtures: deterministic seeds, small synthetic audio, an isolated checkpoint folder."""

from __future__ import annotations

import numpy as np
import pytest

from tts.audio import SAMPLE_RATE, Audio


@pytest.fixture
def tone() -> Audio:
    """1 s of a 220 Hz tone with a little harmonic content at 24 kHz."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    return Audio(samples.astype(np.float32), SAMPLE_RATE)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny-model tests: they gain nothing from threads, and extra threads
    only spin when the machine is shared. Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shipped_root(tmp_path, monkeypatch):
    """An empty stand-in for checkpoints/, selected through TIMBRE_CHECKPOINTS."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    monkeypatch.setenv("TIMBRE_CHECKPOINTS", str(root))
    return root


COMPAT_DIR = __import__("pathlib").Path(__file__).resolve().parent / "data" / "compat"
"""Copy of the steering repo's compat data (published manifests, tiny golden weights and outputs)."""
