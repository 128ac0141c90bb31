"""Pieces every training recipe shares (vocoder, speech tokenizer, flow refiner, and the recipes to come).

- `Augmentation` and `augment_waveform`: what user audio looks like (gain, noise, band limits of 8-22 kHz
  sources), applied to training audio; `lowpass` band-limits a 24 kHz signal.
- `learning_rate`: linear warm-up then cosine decay, over steps or (`Budget`) over the wall-clock time a run has.
- `Budget`: a run's length in steps and, optionally, minutes: its progress fraction drives the schedule, and
  the run ends when it reaches 1 (agreed by every process, like `save_due`).
- `configure_process`: CPU threads and CUDA matmul precision of a training process; `data_workers` and
  `BatchPrefetcher`: batches made ahead by threads while an accelerator computes, in a fixed order.
- `Progress`: the counters saved with a run's resumable state; `split_validation`: the held-out items of a run.
- `save_due`: when to save, agreed by every process (a disagreement would deadlock the save's barriers);
  `append_metrics`: one JSON line per logged step; `TrainLog`: a recipe's running means between log records
  and their emission (metrics file, log line, callback).
- `save_state` / `resumable_state`: an accelerate state folder replaced atomically, so a run killed at any
  moment resumes from its last complete save.
- `STATE_DIR`, `EXPORT_DIR`, `METRICS_FILE`: the layout of every recipe's run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from tts.audio import SAMPLE_RATE, resample
from tts.errors import TimbreError

logger = logging.getLogger(__name__)

STATE_DIR = "state"
"""A run folder's resumable state (`save_state`)."""
EXPORT_DIR = "export"
"""A run folder's trained model, as a checkpoint folder the studio loads."""
METRICS_FILE = "metrics.jsonl"
"""A run folder's log: one JSON line per logged step (`append_metrics`)."""


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
    speed_probability: float = 0.0
    """How often the clip is played faster or slower (`change_speed`): pitch, formants and tempo move together."""
    speed_range: tuple[float, float] = (0.88, 1.14)
    band_warp_probability: float = 0.0
    """How often the mel's frequency axis is scaled (`tts.audio.warp_mel_bands`), by a factor in
    `band_warp_range`: the formants of a longer or shorter vocal tract at the same pitch contour. Applied by
    the recipe to the mel, after `augment_waveform`."""
    band_warp_range: tuple[float, float] = (0.86, 1.16)


def lowpass(samples: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """`samples` at 24 kHz as if recorded at ``2 * cutoff_hz``: resampled down and back up."""
    rate = int(round(2 * cutoff_hz))
    down = resample(samples, SAMPLE_RATE, rate)
    up = resample(down, rate, SAMPLE_RATE)
    out = np.zeros_like(samples)
    out[: min(len(up), len(samples))] = up[: len(samples)]
    return out


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """`samples` at 24 kHz played `factor` times faster (shorter by that factor, pitch and formants up by it)."""
    return resample(samples, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)


def augment_waveform(samples: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Sometimes a speed change, then a random gain, and sometimes stationary noise and a low-pass (the audio as
    if recorded at 8-22 kHz)."""
    if augmentation.speed_probability > 0 and rng.random() < augmentation.speed_probability:
        samples = change_speed(samples, rng.uniform(*augmentation.speed_range))
    out = samples * np.float32(10 ** (rng.uniform(*augmentation.gain_db) / 20))
    if rng.random() < augmentation.noise_probability:
        rms = float(np.sqrt(np.mean(out**2))) if len(out) else 0.0
        if rms > 1e-6:
            snr = rng.uniform(*augmentation.noise_snr_db)
            out = out + rng.standard_normal(len(out)).astype(np.float32) * np.float32(rms * 10 ** (-snr / 20))
    if rng.random() < augmentation.lowpass_probability:
        out = lowpass(out, rng.uniform(*augmentation.lowpass_hz))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def band_warp_factors(count: int, augmentation: Augmentation, rng: np.random.Generator) -> list[float | None]:
    """For each of `count` clips, a `tts.audio.warp_mel_bands` factor, or None where its mel stays as it is."""
    if augmentation.band_warp_probability <= 0:
        return [None] * count
    return [float(rng.uniform(*augmentation.band_warp_range)) if rng.random() < augmentation.band_warp_probability
            else None for _ in range(count)]


def learning_rate(config: ScheduleConfig, step: int, max_steps: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up to ``learning_rate`` over ``warmup_steps``, then cosine decay to ``final_lr_fraction`` of it.

    The decay's progress is the larger of the steps done after warm-up over those planned, and `time_fraction`
    (the share of a run's wall-clock budget spent, see `Budget`), so a time-limited run anneals by its deadline.
    """
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(1, max_steps - config.warmup_steps)
    progress = min(1.0, max((step - config.warmup_steps) / span, time_fraction))
    floor = config.final_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Budget:
    """How long a training session may run: `max_steps` (counted over resumes) and optionally `max_minutes` of
    wall-clock time for this session, counted from the budget's creation (data loading included) to the end
    of the last step; the final save and export come after it.

    The time share is measured over the part of the budget left when the loop starts (`start_loop`), so the
    learning-rate schedule spans the training itself. `tick` reads the clock after each step and agrees on it
    across processes (the largest share wins), so every process uses the same learning rate and stops at the
    same step; it must be called by every process at every step. A session always runs at least one step.
    """

    max_steps: int
    max_minutes: float | None = None
    clock: Callable[[], float] = time.monotonic
    """Seconds on a monotonic clock (replaceable in tests)."""
    created: float | None = None
    """`clock` time the session started (default: now)."""
    loop_start: float | None = None
    time_fraction: float = 0.0
    """The agreed share of the training time spent, as of the last `tick` (may exceed 1)."""

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise TimbreError("--max-steps must be positive")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise TimbreError("--max-minutes must be positive")
        if self.created is None:
            self.created = self.clock()

    @property
    def deadline(self) -> float | None:
        """`clock` time at which training must stop (None: no time limit)."""
        return None if self.max_minutes is None else self.created + self.max_minutes * 60

    def start_loop(self) -> None:
        """Mark the start of the training loop (the schedule's time axis starts here)."""
        self.loop_start = self.clock()
        self.time_fraction = 0.0

    def _local_time_fraction(self) -> float:
        if self.deadline is None:
            return 0.0
        start = self.loop_start if self.loop_start is not None else self.created
        available = self.deadline - start
        return math.inf if available <= 0 else (self.clock() - start) / available

    def tick(self, accelerator: Any = None) -> float:
        """Read the clock, agreed over `accelerator`'s processes; returns the new `time_fraction`."""
        if self.deadline is None:
            return 0.0
        share = min(self._local_time_fraction(), 1e6)
        if accelerator is not None and accelerator.num_processes > 1:
            import torch

            share = float(accelerator.reduce(torch.tensor(share, device=accelerator.device), reduction="max").item())
        self.time_fraction = share
        return share

    def fraction(self, step: int) -> float:
        """The run's progress in [0, 1]: the larger of ``step / max_steps`` and the agreed time share."""
        return min(1.0, max(step / self.max_steps, self.time_fraction))

    def done(self, step: int) -> bool:
        """Whether the run is over: `max_steps` reached or the time spent (as of the last `tick`)."""
        return self.fraction(step) >= 1.0

    def learning_rate(self, config: ScheduleConfig, step: int) -> float:
        """`learning_rate` at `step`, with the decay driven by the time share too."""
        return learning_rate(config, step, self.max_steps, min(1.0, self.time_fraction))


def configure_process(accelerator: Any) -> int:
    """Set up one training process: its CPU threads (``TIMBRE_THREADS`` when set, else on CPU the cores shared
    among the processes, else torch's default) and, on CUDA, TF32 matmuls (several times faster than full
    float32 on Ampere and later; these models train in float32 and lose nothing measurable). Returns the threads."""
    import torch

    from tts.device import configure_threads

    if os.environ.get("TIMBRE_THREADS"):
        threads = configure_threads()
    elif accelerator.device.type == "cpu":
        # Processes share the cores; oversubscription would slow every one of them.
        threads = configure_threads(max(1, (os.cpu_count() or 1) // accelerator.num_processes))
    else:
        threads = torch.get_num_threads()
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return threads


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


class StepConfig(ScheduleConfig, Protocol):
    """What `train_steps` reads from a recipe's training config: the schedule and the gradient clip."""

    grad_clip: float


def train_steps(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    config: StepConfig,
    budget: Budget,
    progress: Progress,
    options: Any,
    log: "TrainLog",
    next_batch: Callable[[], Any],
    step: Callable[[Any], tuple[Any, dict]],
    save: Callable[[], None],
) -> None:
    """The optimisation loop the single-optimizer recipes share, run until `budget` is spent.

    Each step sets the scheduled learning rate, draws ``next_batch()`` and moves it to the accelerator's device,
    takes ``loss, logged = step(batch)``, back-propagates, clips the gradient norm to ``config.grad_clip`` and
    steps the optimizer; then counts the step in `progress`, logs `logged` with the gradient norm
    (``options.log_every``), and calls `save` when `save_due` says so (``options.max_steps``,
    ``options.save_every_minutes``, ``options.save_every_steps``) and after the last step.
    """
    last_save = time.monotonic()
    budget.start_loop()
    while not budget.done(progress.step):
        step_start = time.monotonic()
        lr = budget.learning_rate(config, progress.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, logged = step(next_batch().to(accelerator.device))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

        progress.step += 1
        progress.train_seconds += time.monotonic() - step_start
        log.add(**logged, grad_norm=float(grad_norm))
        budget.tick(accelerator)
        last = budget.done(progress.step)
        if progress.step % options.log_every == 0 or last:
            log.emit(progress.step, lr)
        if last or save_due(accelerator, progress.step, options.max_steps, last_save, options.save_every_minutes,
                            options.save_every_steps):
            save()
            last_save = time.monotonic()


def training_card(progress: "Progress", options: Any, preset: Any, last: Sequence[dict],
                  details: dict | None = None) -> dict:
    """The "Training" section of a recipe's model card: steps and the run's limits (`options`), batch size, hours
    trained, the optimizer (`preset`), then the recipe's own `details`, then the last logged record (`last`: the
    metrics file's records, newest first)."""
    return {
        "steps": progress.step,
        "max steps": options.max_steps,
        "max minutes": options.max_minutes,
        "batch size per process": options.batch_size,
        "train hours": round(progress.train_seconds / 3600, 3),
        "optimizer": f"AdamW lr {preset.learning_rate} betas {preset.betas}, warm-up {preset.warmup_steps}, cosine",
        **(details or {}),
        "last logged": last[0] if last else {},
    }


def append_metrics(path: Path, record: dict) -> None:
    """Append one JSON line to a run's metrics file (created with its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


class TrainLog:
    """A recipe's per-step values, averaged between log records, and the records' emission.

    `add` accumulates one step's values; `emit` turns them into a record (``step``, ``lr``, the means,
    ``steps_per_s`` and ``<key>_per_s`` rates of the `per_second` counts over all processes), appends it to
    `history` and, on the main process, to the metrics file, the log and `on_log`.
    """

    def __init__(
        self,
        metrics_path: Path,
        main: bool = True,
        on_log: Callable[[dict], None] | None = None,
        processes: int = 1,
        per_second: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics_path = Path(metrics_path)
        self.main = main
        self.on_log = on_log
        self.processes = processes
        self.per_second = tuple(per_second)
        self.clock = clock
        self.history: list[dict] = []
        self._sums: dict[str, float] = {}
        self._count = 0
        self._start = clock()

    @property
    def pending(self) -> int:
        """Steps added since the last record."""
        return self._count

    @property
    def last(self) -> list[dict]:
        """The last record in a one-item list (``[{}]`` before the first), for model cards."""
        return self.history[-1:] or [{}]

    def add(self, **values: float) -> None:
        """One step's values (losses, norms, counts to turn into rates)."""
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
        self._count += 1

    def emit(self, step: int, lr: float, **extra: float) -> dict:
        """The record of the steps added since the last one (which must exist), with `extra` fields; resets the
        window."""
        if not self._count:
            raise ValueError("TrainLog.emit before any step was added")
        elapsed = max(1e-9, self.clock() - self._start)
        record: dict = {"step": step, "lr": lr}
        for key, total in self._sums.items():
            if key in self.per_second:
                record[f"{key}_per_s"] = total * self.processes / elapsed
            else:
                record[key] = total / self._count
        record["steps_per_s"] = self._count / elapsed
        record.update(extra)
        self._sums, self._count, self._start = {}, 0, self.clock()
        self.history.append(record)
        if self.main:
            append_metrics(self.metrics_path, record)
            logger.info("step %d %s", step, {k: round(v, 4) for k, v in record.items() if k != "step"})
            if self.on_log is not None:
                self.on_log(record)
        return record


def split_validation(items: int, count: int, seed: int, divisor: int,
                     voices: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """``(training, validation)`` indices of `items` items, a reproducible choice of `count` for validation, at most
    ``items // divisor``.

    Without `voices`: at least one item is held out, and a single item serves both. With `voices` (each item's
    voice id): validation items come from voices with at least three items, never a voice's first, so every
    voice keeps training material (prompts, references); when none qualify, every item trains.
    """
    rng = np.random.default_rng(seed)
    if voices is None:
        order = rng.permutation(items).tolist()
        if items == 1:
            return [0], [0]
        count = max(1, min(count, items // divisor or 1))
        return sorted(order[count:]), sorted(order[:count])
    if len(voices) != items:
        raise ValueError(f"{len(voices)} voice ids for {items} items")
    by_voice: dict[str, list[int]] = {}
    for index, voice in enumerate(voices):
        by_voice.setdefault(voice, []).append(index)
    candidates = [i for members in by_voice.values() if len(members) >= 3 for i in members[1:]]
    count = min(count, items // divisor, len(candidates))
    validation = sorted(rng.permutation(candidates)[:count].tolist()) if count > 0 else []
    chosen = set(validation)
    return [i for i in range(items) if i not in chosen], validation


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


# ---------------------------------------------------------------------------------------------------------
# Batches made ahead

T = TypeVar("T")


def data_workers(accelerator: Any) -> int:
    """Threads that make batches ahead of the loop: ``TIMBRE_DATA_WORKERS`` when set; else none on a CPU (the
    cores already train) and, on an accelerator, up to 4 of the process's CPU threads (decoding and augmenting
    audio for a large batch takes longer than a GPU step)."""
    env = os.environ.get("TIMBRE_DATA_WORKERS")
    if env:
        return max(0, int(env))
    if accelerator.device.type == "cpu":
        return 0
    import torch

    return max(1, min(4, torch.get_num_threads() - 1))


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class BatchPrefetcher(Generic[T]):
    """Batches made ahead of the training loop by one thread per maker, taken in turn.

    Maker ``w`` (a sampler with its own random generator) makes batches ``w, w + W, w + 2W, ...``, so the
    sequence does not depend on thread timing. It overlaps the CPU's data work with the accelerator's compute,
    and the work of the makers with each other (audio decoders, resamplers, numpy's generators and torch
    kernels release the GIL). An error in a maker is raised by the call that would have returned its batch.
    Use as a context manager, or call `close`.
    """

    def __init__(self, makers: Sequence[Callable[[], T]], depth: int = 2) -> None:
        if not makers:
            raise ValueError("give at least one batch maker")
        self._stop = threading.Event()
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=max(1, depth)) for _ in makers]
        self._threads = [
            threading.Thread(target=self._work, args=(make, q), name=f"batches-{index}", daemon=True)
            for index, (make, q) in enumerate(zip(makers, self._queues))
        ]
        self._turn = 0
        for thread in self._threads:
            thread.start()

    def _work(self, make: Callable[[], T], out: queue.Queue) -> None:
        while not self._stop.is_set():
            try:
                item: Any = make()
            except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
                item = _Failure(error)
            while not self._stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return

    def __call__(self) -> T:
        """The next batch."""
        out = self._queues[self._turn]
        self._turn = (self._turn + 1) % len(self._queues)
        while True:
            try:
                item = out.get(timeout=1.0)
                break
            except queue.Empty:
                if self._stop.is_set():
                    raise RuntimeError("the batch prefetcher is closed") from None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        """Stop the threads (a batch being made is finished first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def __enter__(self) -> BatchPrefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_source(
    maker: Callable[[np.random.Generator], Callable[[], T]], seed: Sequence[int], workers: int
) -> tuple[Callable[[], T], Callable[[], None]]:
    """``(next_batch, close)`` of batches from ``maker(rng)``: without `workers`, one maker seeded with `seed`,
    called in the loop; else a `BatchPrefetcher` of `workers` makers seeded with ``(*seed, w)``."""
    if workers <= 0:
        return maker(np.random.default_rng(list(seed))), lambda: None
    prefetcher = BatchPrefetcher([maker(np.random.default_rng([*seed, w])) for w in range(workers)])
    return prefetcher, prefetcher.close


def with_overrides(preset: T, **overrides: Any) -> T:
    """`preset` (a frozen dataclass) with the fields of `overrides` that are not None replaced: a run's options
    (``--learning-rate``, ``--warmup-steps``, ...) over its recipe's preset."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(preset, **given) if given else preset


def add_run_arguments(parser: Any, defaults: Any, save_every_steps: bool = True) -> None:
    """Add the options every recipe shares, with the recipe's `TrainOptions` class as `defaults`:
    ``--max-steps``, ``--max-minutes`` (`Budget`), ``--save-every-minutes`` (and ``--save-every-steps``),
    ``--log-every`` and ``--seed``."""
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget of this session; the schedule anneals by then (default: none)")
    parser.add_argument("--save-every-minutes", type=float, default=defaults.save_every_minutes)
    if save_every_steps:
        parser.add_argument("--save-every-steps", type=int, default=None, help="overrides --save-every-minutes")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--seed", type=int, default=defaults.seed)
