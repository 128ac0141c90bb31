"""Pieces every training recipe shares (vocoder, speech tokenizer, flow refiner, and the recipes to come).

- `Augmentation` and `augment_waveform`: what user audio looks like (gain, noise, band limits of 8-22 kHz
  sources), applied to training audio; `lowpass` band-limits a 24 kHz signal.
- `learning_rate`: linear warm-up then cosine decay.
- `Progress`: the counters saved with a run's resumable state.
- `save_due`: when to save, agreed by every process (a disagreement would deadlock the save's barriers);
  `append_metrics`: one JSON line per logged step.
- `save_state` / `resumable_state`: an accelerate state folder replaced atomically, so a run killed at any
  moment resumes from its last complete save.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from tts.audio import SAMPLE_RATE, resample
from tts.errors import TimbreError

logger = logging.getLogger(__name__)


class ScheduleConfig(Protocol):
    """What `learning_rate` reads from a recipe's training config."""

    learning_rate: float
    warmup_steps: int
    final_lr_fraction: float


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to training audio: gain, noise at an SNR, and a band limit (see `augment_waveform`)."""

    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_probability: float = 0.3
    noise_snr_db: tuple[float, float] = (30.0, 50.0)
    lowpass_probability: float = 0.3
    lowpass_hz: tuple[float, float] = (4000.0, 11000.0)


def lowpass(samples: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """`samples` at 24 kHz as if recorded at ``2 * cutoff_hz``: resampled down and back up."""
    rate = int(round(2 * cutoff_hz))
    down = resample(samples, SAMPLE_RATE, rate)
    up = resample(down, rate, SAMPLE_RATE)
    out = np.zeros_like(samples)
    out[: min(len(up), len(samples))] = up[: len(samples)]
    return out


def augment_waveform(samples: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """A random gain, and sometimes stationary noise and a low-pass (the audio as if recorded at 8-22 kHz)."""
    out = samples * np.float32(10 ** (rng.uniform(*augmentation.gain_db) / 20))
    if rng.random() < augmentation.noise_probability:
        rms = float(np.sqrt(np.mean(out**2))) if len(out) else 0.0
        if rms > 1e-6:
            snr = rng.uniform(*augmentation.noise_snr_db)
            out = out + rng.standard_normal(len(out)).astype(np.float32) * np.float32(rms * 10 ** (-snr / 20))
    if rng.random() < augmentation.lowpass_probability:
        out = lowpass(out, rng.uniform(*augmentation.lowpass_hz))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def learning_rate(config: ScheduleConfig, step: int, max_steps: int) -> float:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``final_lr_fraction`` of it at `max_steps`."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(1, max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.final_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Progress:
    """Counters saved with the training state (plain values, so they load with ``weights_only``)."""

    step: int = 0
    train_seconds: float = 0.0
    preset: str = ""

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.preset = str(state["preset"])




def _sibling(state_dir: Path, suffix: str) -> Path:
    return state_dir.with_name(f"{state_dir.name}.{suffix}")


def save_state(accelerator: Any, state_dir: Path, before_swap: Callable[[Path], None] | None = None) -> None:
    """Save the accelerate state of every process into `state_dir`, replacing the previous save atomically.

    The new state is written to ``STATE.tmp`` and swapped in by renames on the main process; `before_swap`
    may add files to the temporary folder first. Every process must call this.
    """
    tmp, old = _sibling(state_dir, "tmp"), _sibling(state_dir, "old")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if before_swap is not None:
            before_swap(tmp)
        if state_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            state_dir.rename(old)
        tmp.rename(state_dir)
        if old.exists():
            shutil.rmtree(old)


def resumable_state(state_dir: Path) -> Path | None:
    """The last complete save to resume from: `state_dir`, or its ``.old`` copy when a run died mid-swap."""
    if state_dir.is_dir():
        return state_dir
    old = _sibling(state_dir, "old")
    return old if old.is_dir() else None


def save_due(
    accelerator: Any,
    step: int,
    max_steps: int,
    last_save: float,
    save_every_minutes: float,
    save_every_steps: int | None = None,
    check_every: int = 10,
) -> bool:
    """Whether to save now: on the last step, every `save_every_steps`, or once `save_every_minutes` have
    passed. The clock is read every `check_every` steps and reduced over processes, so all agree."""
    if step >= max_steps:
        return True
    if save_every_steps:
        return step % save_every_steps == 0
    if step % check_every:
        return False
    import torch

    elapsed = float(time.monotonic() - last_save >= save_every_minutes * 60)
    flag = torch.tensor(elapsed, device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="max").item())


def append_metrics(path: Path, record: dict) -> None:
    """Append one JSON line to a run's metrics file (created with its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def resume_progress(accelerator: Any, state_dir: Path, preset: str) -> Progress:
    """Register a `Progress` for checkpointing and load the last complete save, if any.

    Refuses a state folder written by a run of another preset (its tensors would not fit).
    """
    progress = Progress(preset=preset)
    accelerator.register_for_checkpointing(progress)
    resume_from = resumable_state(state_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        if progress.preset != preset:
            raise TimbreError(
                f"{state_dir} holds a {progress.preset!r} run, not {preset!r}; use another --out or the same --config"
            )
        if accelerator.is_main_process:
            logger.info("resumed from %s at step %d", state_dir, progress.step)
    return progress
