"""Shared training pieces: atomic state saves that survive a crash, and save timing all processes agree on."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from tts.training import append_metrics, resumable_state, save_due, save_state


@pytest.fixture(scope="module")
def accelerator() -> Accelerator:
    return Accelerator(cpu=True)


def test_save_state_survives_a_crash_mid_swap(tmp_path, accelerator):
    """A run killed between the two renames resumes from the previous complete save."""
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    state_dir = tmp_path / "state"
    assert resumable_state(state_dir) is None
    save_state(accelerator, state_dir)
    assert resumable_state(state_dir) == state_dir
    with torch.no_grad():
        model.weight.fill_(3.0)
    save_state(accelerator, state_dir, before_swap=lambda tmp: (tmp / "marker").write_text("new"))
    assert (state_dir / "marker").read_text() == "new" and not (tmp_path / "state.tmp").exists()
    state_dir.rename(tmp_path / "state.old")  # killed after moving the old save aside, before the swap
    assert resumable_state(state_dir) == tmp_path / "state.old"


def test_save_due(accelerator):
    assert save_due(accelerator, 100, 100, last_save=0.0, save_every_minutes=60)  # the last step always saves
    assert save_due(accelerator, 40, 100, last_save=0.0, save_every_minutes=60, save_every_steps=20)
    assert not save_due(accelerator, 41, 100, last_save=0.0, save_every_minutes=0, save_every_steps=20)
    assert not save_due(accelerator, 15, 100, last_save=0.0, save_every_minutes=0)  # clock read every 10 steps
    assert save_due(accelerator, 20, 100, last_save=0.0, save_every_minutes=0)
    import time

    assert not save_due(accelerator, 20, 100, last_save=time.monotonic(), save_every_minutes=5)


def test_append_metrics(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    append_metrics(path, {"step": 1, "loss": 0.5})
    append_metrics(path, {"step": 2, "loss": 0.25})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
