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


@pytest.fixture
def shipped_root(tmp_path, monkeypatch):
    """An empty stand-in for checkpoints/, selected through TIMBRE_CHECKPOINTS."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    monkeypatch.setenv("TIMBRE_CHECKPOINTS", str(root))
    return root
