"""Training recipe of the vocoder, through `accelerate` (2 CPU processes here, many GPUs elsewhere).

    accelerate launch --multi_gpu --num_processes 2 -m vocoder.train --data CORPUS --out runs/vocoder --config small
    python -m vocoder.train --data CORPUS --out runs/vocoder --config small --max-steps 2000   # one process
    python -m vocoder.train --data CORPUS/audio --out runs/vocoder --max-steps 1000000 --max-minutes 23 --batch-size 64

(``--multi_gpu`` is what makes ``accelerate launch`` start several processes through torchrun; on a machine
without GPUs they form a CPU (gloo) group. Plain ``accelerate launch --num_processes 2`` starts ONE process on
a CPU-only machine. ``torchrun --nproc_per_node 2 -m vocoder.train ...`` works too.)

- Data: every wav/flac/ogg/opus/mp3 file under ``--data``, in subfolders too (any rate, loaded through
  `tts.audio.load_audio` by several threads and held in memory as 24 kHz int16: ~170 MB per hour per process),
  random segments of ``--segment-seconds``. Augmentation covers what users upload: random gain and light noise
  on the audio, and a random low-pass (4-11 kHz, i.e. an 8-22 kHz source, by resampling down and up) on the
  audio the INPUT mel is computed from only, so the vocoder learns to render full-band speech from band-limited
  mels. On a GPU, threads make the batches ahead (`tts.training.data_workers`; ``TIMBRE_DATA_WORKERS``).
- Losses: studio mel L1 and multi-resolution STFT; with ``--phase-weight`` also the group-delay and
  instantaneous-frequency errors (`vocoder.losses.phase_derivative_loss`); after ``--gan-start-step`` also hinge
  adversarial losses of a multi-period and a multi-resolution discriminator, with feature matching (weights
  ``--adversarial-weight``, ``--feature-weight``). ``--discriminator-warmup-steps`` lets the discriminators learn
  alone first: fine-tuning a trained generator against fresh discriminators cost it SIM and PESQ here before
  they had learned anything (docs/benchmarks.md).
- AdamW, linear warm-up then cosine decay, gradient clipping.
- Length: ``--max-steps`` and optionally ``--max-minutes`` of wall-clock time for this session (data loading
  included; the final save and export come after it). The cosine decay follows whichever runs out first
  (`tts.training.Budget`), so a time-limited run reaches the final learning rate at its deadline, then saves
  and exports as if it had reached ``--max-steps``. Warm-up and ``--gan-start-step`` stay in steps.
- Resumable: ``accelerator.save_state`` into ``OUT/state`` every ``--save-every-minutes`` (5) of wall time,
  written to a temporary folder and renamed, and picked up automatically by the next run with the same ``--out``.
  Each save also exports the generator to ``OUT/export`` (fp16 safetensors + config + a model card with the
  config, data recipe, steps and validation mel L1).

Shapes: ``B`` batch, ``T`` samples, ``M`` mel bands, ``F`` frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tts.audio import SAMPLE_RATE, STUDIO_MEL, load_audio, log_mel
from tts.checkpoints import config_to_dict
from tts.device import select_device
from tts.errors import AudioError, TimbreError
from tts.training import (
    EXPORT_DIR,
    METRICS_FILE,
    STATE_DIR,
    Augmentation,
    Budget,
    Progress,
    TrainLog,
    add_run_arguments,
    batch_source,
    configure_process,
    data_workers,
    lowpass,
    resume_progress,
    save_due,
    save_state,
    split_validation,
    training_card,
    with_overrides,
)
from vocoder.discriminators import (
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
)
from vocoder.losses import (
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    mel_l1,
    multi_resolution_stft_loss,
    phase_derivative_loss,
)
from vocoder.vocos import Vocos, VocosConfig, count_parameters

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
VALIDATION_SECONDS = 10.0
"""Each validation clip is scored on at most this many seconds."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is made of besides its data and length."""

    generator: VocosConfig
    discriminator: DiscriminatorConfig
    augmentation: Augmentation = Augmentation()
    learning_rate: float = 5e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    mel_weight: float = 45.0
    stft_weight: float = 1.0
    phase_weight: float = 0.0
    """Weight of `vocoder.losses.phase_derivative_loss` (0: not computed)."""
    adversarial_weight: float = 1.0
    feature_weight: float = 2.0


PRESETS: dict[str, TrainConfig] = {
    # ~2.8M-parameter generator and small discriminators: trains on 2 CPU cores.
    "small": TrainConfig(
        generator=VocosConfig(dim=256, intermediate_dim=768, num_layers=6),
        discriminator=DiscriminatorConfig(
            period_channels=(16, 32, 64, 64),
            resolution_channels=8,
            resolution_strides=((2, 1), (2, 2), (2, 2), (2, 2)),
        ),
    ),
    # The published size (13.5M) with customary discriminators: for GPUs.
    "base": TrainConfig(
        generator=VocosConfig(),
        discriminator=DiscriminatorConfig(),
        learning_rate=5e-4,
    ),
    # For tests only: seconds per hundred steps.
    "tiny": TrainConfig(
        generator=VocosConfig(dim=32, intermediate_dim=64, num_layers=2),
        discriminator=DiscriminatorConfig(periods=(2, 3), period_channels=(4, 8), resolutions=((512, 128),), resolution_channels=4),
        warmup_steps=2,
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    """One run: where the data and outputs are, how long, and how often to save."""

    data: Path
    out: Path
    config: str = "small"
    max_steps: int = 20_000
    max_minutes: float | None = None
    """Wall-clock budget of this session (None: none); see `tts.training.Budget`."""
    batch_size: int = 8
    segment_seconds: float = 1.0
    gan_start_step: int = 2_000
    discriminator_warmup_steps: int = 0
    """Steps after ``gan_start_step`` in which only the discriminators learn (the generator does not yet hear them),
    so a generator fine-tuned from a trained one meets discriminators that already tell its output from speech."""
    save_every_minutes: float = 5.0
    save_every_steps: int | None = None
    log_every: int = 50
    validation_files: int = 8
    seed: int = 0
    learning_rate: float | None = None
    warmup_steps: int | None = None
    init_generator: Path | None = None
    """A trained vocoder folder whose weights start a new run (fine-tuning; ignored when resuming a state)."""
    phase_weight: float | None = None
    """Override of the preset's `TrainConfig.phase_weight` (None: the preset's)."""
    adversarial_weight: float | None = None
    """Override of the preset's `TrainConfig.adversarial_weight` (None: the preset's)."""
    feature_weight: float | None = None
    """Override of the preset's `TrainConfig.feature_weight` (None: the preset's)."""

    def train_config(self) -> TrainConfig:
        """The preset named by ``config`` with this run's overrides."""
        if self.config not in PRESETS:
            raise TimbreError(f"unknown config {self.config!r}; choose one of {', '.join(PRESETS)}")
        return with_overrides(PRESETS[self.config], learning_rate=self.learning_rate, warmup_steps=self.warmup_steps,
                              phase_weight=self.phase_weight, adversarial_weight=self.adversarial_weight,
                              feature_weight=self.feature_weight)


# ---------------------------------------------------------------------------------------------------------
# Data


def find_audio_files(folder: Path) -> list[Path]:
    """Every audio file (`AUDIO_SUFFIXES`) under `folder` and its subfolders, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TimbreError(f"{folder}: not a folder of audio files")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise TimbreError(f"{folder}: no {', '.join(AUDIO_SUFFIXES)} files found")
    return files


def _load_clip(path: Path) -> np.ndarray | None:
    try:
        samples = load_audio(path).samples
    except AudioError as error:
        logger.warning("skipping %s: %s", path, error)
        return None
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def load_clips(files: Sequence[Path], workers: int = 1) -> tuple[list[np.ndarray], list[Path]]:
    """24 kHz int16 clips (half the memory of float32) of the readable files; unreadable ones are skipped.

    `workers` threads decode in parallel (the decoders release the GIL), in order."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        loaded = list(pool.map(_load_clip, files))
    clips = [clip for clip in loaded if clip is not None]
    kept = [path for path, clip in zip(files, loaded) if clip is not None]
    if not clips:
        raise TimbreError("none of the audio files could be read")
    return clips, kept


class SegmentSampler:
    """Random augmented training segments: ``batch(B)`` -> (mel source audio ``(B, T)``, target audio ``(B, T)``)."""

    def __init__(self, clips: Sequence[np.ndarray], segment_samples: int, augmentation: Augmentation, rng: np.random.Generator) -> None:
        self.clips = list(clips)
        self.segment_samples = segment_samples
        self.augmentation = augmentation
        self.rng = rng
        lengths = np.array([len(c) for c in self.clips], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # uniform over time, not over files

    def _segment(self) -> np.ndarray:
        clip = self.clips[self.rng.choice(len(self.clips), p=self.weights)]
        n = self.segment_samples
        if len(clip) <= n:
            out = np.zeros(n, dtype=np.float32)
            out[: len(clip)] = clip / 32767.0
            return out
        start = int(self.rng.integers(0, len(clip) - n + 1))
        return clip[start : start + n].astype(np.float32) / 32767.0

    def example(self) -> tuple[np.ndarray, np.ndarray]:
        """One (mel source, target) pair."""
        aug, rng = self.augmentation, self.rng
        target = self._segment() * 10 ** (rng.uniform(*aug.gain_db) / 20)
        peak = np.abs(target).max()
        if peak > 0.99:
            target *= 0.99 / peak
        if rng.random() < aug.noise_probability:
            rms = np.sqrt(np.mean(target**2))
            if rms > 1e-5:
                snr = rng.uniform(*aug.noise_snr_db)
                target = target + rng.standard_normal(len(target)).astype(np.float32) * rms * 10 ** (-snr / 20)
        source = target
        if rng.random() < aug.lowpass_probability:
            source = lowpass(target, rng.uniform(*aug.lowpass_hz))
        return source.astype(np.float32), target.astype(np.float32)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` mel source audio and ``(B, T)`` target audio."""
        pairs = [self.example() for _ in range(batch_size)]
        return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))


# ---------------------------------------------------------------------------------------------------------
# Schedule, progress, validation


@torch.no_grad()
def validate(generator: Vocos, clips: Sequence[np.ndarray]) -> dict[str, float]:
    """Copy-synthesis mel L1 on the validation clips, from full-band and from 16 kHz-limited sources."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    limit = int(VALIDATION_SECONDS * SAMPLE_RATE) // STUDIO_MEL.hop_length * STUDIO_MEL.hop_length
    full, narrow = [], []
    for clip in clips:
        audio = clip[:limit].astype(np.float32) / 32767.0
        audio = audio[: len(audio) // STUDIO_MEL.hop_length * STUDIO_MEL.hop_length]
        if len(audio) < 4 * STUDIO_MEL.hop_length:
            continue
        reference = log_mel(torch.from_numpy(audio))[None]
        for source, scores in ((audio, full), (lowpass(audio, 8000.0), narrow)):
            generated = generator(log_mel(torch.from_numpy(source))[None].to(device)).float().cpu()
            scores.append((log_mel(generated) - reference).abs().mean().item())
    generator.train(was_training)
    return {
        "mel_l1": float(np.mean(full)) if full else float("nan"),
        "mel_l1_16khz_source": float(np.mean(narrow)) if narrow else float("nan"),
    }


# ---------------------------------------------------------------------------------------------------------
# The loop


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) one training run; returns a summary (steps, last losses, validation)."""
    from accelerate import Accelerator

    if options.max_steps < 1 or options.batch_size < 1 or options.segment_seconds <= 0:
        raise TimbreError("--max-steps, --batch-size and --segment-seconds must be positive")
    budget = Budget(options.max_steps, options.max_minutes)
    preset = options.train_config()
    # cpu=True on a machine without an accelerator is what makes several launched processes one gloo group;
    # without it each process would silently train alone.
    wanted = select_device(os.environ.get("TIMBRE_DEVICE") or "auto")
    accelerator = Accelerator(cpu=wanted.type == "cpu")
    configure_process(accelerator)
    out = Path(options.out)
    main = accelerator.is_main_process
    if main:
        logger.info("%d process(es) on %s, %d thread(s) each", accelerator.num_processes, accelerator.device, torch.get_num_threads())

    files = find_audio_files(options.data)
    clips, files = load_clips(files, workers=torch.get_num_threads())
    train_idx, val_idx = split_validation(len(files), options.validation_files, options.seed, 10)
    train_clips = [clips[i] for i in train_idx]
    val_clips = [clips[i] for i in val_idx]
    hours = sum(len(c) for c in clips) / SAMPLE_RATE / 3600
    hop = preset.generator.hop_length
    segment_samples = max(4, round(options.segment_seconds * SAMPLE_RATE / hop)) * hop

    torch.manual_seed(options.seed)
    generator = Vocos(preset.generator)
    if options.init_generator is not None:
        start = Vocos.from_pretrained(options.init_generator)
        if start.config != generator.config:
            raise TimbreError(f"{options.init_generator} is a {start.config}, not the {options.config!r} preset's generator")
        generator.load_state_dict({k: v.float() for k, v in start.state_dict().items()})
    period_disc = MultiPeriodDiscriminator(preset.discriminator)
    resolution_disc = MultiResolutionDiscriminator(preset.discriminator)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=preset.learning_rate, betas=preset.betas, weight_decay=preset.weight_decay)
    opt_d = torch.optim.AdamW(
        list(period_disc.parameters()) + list(resolution_disc.parameters()),
        lr=preset.learning_rate, betas=preset.betas, weight_decay=preset.weight_decay,
    )
    generator, period_disc, resolution_disc, opt_g, opt_d = accelerator.prepare(
        generator, period_disc, resolution_disc, opt_g, opt_d
    )
    state_dir = out / STATE_DIR
    progress = resume_progress(accelerator, state_dir, options.config)

    recipe = {
        "folder": str(Path(options.data).resolve()),
        "files": len(files),
        "hours": round(hours, 3),
        "validation files": [files[i].name for i in val_idx],
        "segment seconds": segment_samples / SAMPLE_RATE,
        "augmentation": asdict(preset.augmentation),
    }
    next_batch, close_batches = batch_source(
        lambda rng: partial(SegmentSampler(train_clips, segment_samples, preset.augmentation, rng).batch, options.batch_size),
        (options.seed, accelerator.process_index, progress.step), data_workers(accelerator),
    )
    device = accelerator.device
    last_save = time.monotonic()
    session_start, session_steps = time.monotonic(), 0
    log = TrainLog(out / METRICS_FILE, main, on_log)
    validation: dict[str, float] = {}

    def save_and_export() -> None:
        nonlocal validation
        save_state(accelerator, state_dir)
        if main:
            validation = validate(accelerator.unwrap_model(generator), val_clips)
            export(
                accelerator.unwrap_model(generator), out / EXPORT_DIR, options, recipe, progress, validation,
                log.last, accelerator.num_processes,
            )
        accelerator.wait_for_everyone()

    generator.train()
    budget.start_loop()
    while not budget.done(progress.step):
        step_start = time.monotonic()
        lr = budget.learning_rate(preset, progress.step)
        for group in opt_g.param_groups + opt_d.param_groups:
            group["lr"] = lr
        source, target = (t.to(device) for t in next_batch())
        with torch.no_grad():
            mel = log_mel(source)
        generated = generator(mel)
        use_gan = progress.step >= options.gan_start_step
        generator_hears = progress.step >= options.gan_start_step + options.discriminator_warmup_steps
        losses: dict[str, float] = {}
        batch = len(target)
        if use_gan:
            opt_d.zero_grad(set_to_none=True)
            both = torch.cat([target, generated.detach()])  # one forward per discriminator, as DDP wants
            d_loss = 0.0
            for disc in (period_disc, resolution_disc):
                logits, _ = disc(both)
                d_loss = d_loss + discriminator_hinge_loss([l[:batch] for l in logits], [l[batch:] for l in logits])
            accelerator.backward(d_loss)
            accelerator.clip_grad_norm_(list(period_disc.parameters()) + list(resolution_disc.parameters()), preset.grad_clip)
            opt_d.step()
            losses["d"] = d_loss.item()

        opt_g.zero_grad(set_to_none=True)
        with accelerator.no_sync(period_disc), accelerator.no_sync(resolution_disc):
            # Discriminator gradients from this backward are discarded (zeroed before the next D step).
            mel_loss = mel_l1(generated, target)
            stft_loss = multi_resolution_stft_loss(generated, target)
            g_loss = preset.mel_weight * mel_loss + preset.stft_weight * stft_loss
            if preset.phase_weight:
                phase_loss = phase_derivative_loss(generated, target)
                g_loss = g_loss + preset.phase_weight * phase_loss
                losses["phase"] = float(phase_loss.detach())
            if generator_hears:
                adv, fm = 0.0, 0.0
                for disc in (period_disc, resolution_disc):
                    # Real and generated audio through the discriminator as it is after this step's update, so
                    # feature matching compares maps of the same network.
                    logits, features = disc(torch.cat([target, generated]))
                    adv = adv + generator_hinge_loss([l[batch:] for l in logits])
                    fm = fm + feature_matching_loss([[f[:batch] for f in maps] for maps in features],
                                                    [[f[batch:] for f in maps] for maps in features])
                g_loss = g_loss + preset.adversarial_weight * adv + preset.feature_weight * fm
                losses["g_adv"], losses["fm"] = float(adv.detach()), float(fm.detach())
            accelerator.backward(g_loss)
        accelerator.clip_grad_norm_(generator.parameters(), preset.grad_clip)
        opt_g.step()
        losses.update(mel=mel_loss.item(), stft=stft_loss.item(), g=g_loss.item())

        progress.step += 1
        progress.train_seconds += time.monotonic() - step_start
        session_steps += 1
        log.add(**losses)
        budget.tick(accelerator)
        last = budget.done(progress.step)
        if progress.step % options.log_every == 0 or last:
            log.emit(progress.step, lr)

        if last or save_due(
            accelerator, progress.step, options.max_steps, last_save, options.save_every_minutes, options.save_every_steps
        ):
            save_and_export()
            last_save = time.monotonic()

    close_batches()
    if session_steps == 0 and main and not validation:
        validation = validate(accelerator.unwrap_model(generator), val_clips)
    accelerator.wait_for_everyone()
    return {
        "step": progress.step,
        "session_steps": session_steps,
        "steps_per_s": session_steps / max(1e-9, time.monotonic() - session_start),
        "history": log.history,
        "validation": validation,
        "parameters": count_parameters(accelerator.unwrap_model(generator)),
    }


def export(
    generator: Vocos,
    folder: Path,
    options: TrainOptions,
    recipe: dict,
    progress: Progress,
    validation: dict[str, float],
    last: list[dict],
    processes: int = 1,
) -> Path:
    """Save the generator in fp16 with a model card (config, data recipe, training, validation)."""
    preset = options.train_config()
    card = {
        "Model": {
            "architecture": "Vocos (ConvNeXt backbone + inverse-STFT head)",
            "preset": options.config,
            "parameters": count_parameters(generator),
            "input": "studio log-mel (tts.audio.log_mel): 24 kHz, n_fft 1024, hop 256, 100 HTK bands",
            "streaming lookahead frames": generator.lookahead_frames,
        },
        "Config": config_to_dict(generator.config),
        "Data": recipe,
        "Training": training_card(progress, options, preset, last, {
            "processes": processes,
            "gan start step": options.gan_start_step,
            "discriminator warm-up steps": options.discriminator_warmup_steps,
            "initialised from": str(options.init_generator) if options.init_generator else "random",
            "losses": (
                f"{preset.mel_weight} x mel L1 + {preset.stft_weight} x MR-STFT"
                + (f" + {preset.phase_weight} x phase derivatives" if preset.phase_weight else "")
                + "; after the GAN start "
                f"+ {preset.adversarial_weight} x hinge (MPD + MRD) + {preset.feature_weight} x feature matching"
            ),
            "discriminator": config_to_dict(preset.discriminator),
        }),
        "Validation": {"step": progress.step, **validation},
    }
    return generator.save_pretrained(folder, model_card=card, dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m vocoder.train``."""
    parser = argparse.ArgumentParser(prog="python -m vocoder.train", description="Train the Vocos vocoder (resumable).")
    parser.add_argument("--data", type=Path, required=True, help="folder of wav/flac files (any rate)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: state/, export/, metrics.jsonl")
    parser.add_argument("--config", choices=sorted(PRESETS), default="small")
    add_run_arguments(parser, TrainOptions)
    parser.add_argument("--batch-size", type=int, default=TrainOptions.batch_size, help="per process")
    parser.add_argument("--segment-seconds", type=float, default=TrainOptions.segment_seconds)
    parser.add_argument("--gan-start-step", type=int, default=TrainOptions.gan_start_step)
    parser.add_argument("--discriminator-warmup-steps", type=int, default=TrainOptions.discriminator_warmup_steps,
                        help="after the GAN start, steps in which only the discriminators learn")
    parser.add_argument("--validation-files", type=int, default=TrainOptions.validation_files)
    parser.add_argument("--learning-rate", type=float, default=None, help="override the preset's peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=None, help="override the preset's warm-up")
    parser.add_argument("--phase-weight", type=float, default=None,
                        help="weight of the group-delay and instantaneous-frequency loss (default: the preset's, 0)")
    parser.add_argument("--adversarial-weight", type=float, default=None,
                        help="weight of the generator's hinge losses, summed over sub-discriminators (default: the preset's, 1)")
    parser.add_argument("--feature-weight", type=float, default=None,
                        help="weight of the feature-matching loss (default: the preset's, 2)")
    parser.add_argument("--init-generator", type=Path, default=None,
                        help="start a new run from this trained vocoder folder's weights (fine-tuning)")
    return parser


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    """`TrainOptions` from parsed arguments."""
    return TrainOptions(
        data=args.data, out=args.out, config=args.config, max_steps=args.max_steps, max_minutes=args.max_minutes, batch_size=args.batch_size,
        segment_seconds=args.segment_seconds, gan_start_step=args.gan_start_step,
        discriminator_warmup_steps=args.discriminator_warmup_steps,
        save_every_minutes=args.save_every_minutes, save_every_steps=args.save_every_steps,
        log_every=args.log_every, validation_files=args.validation_files, seed=args.seed,
        learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, init_generator=args.init_generator,
        phase_weight=args.phase_weight, adversarial_weight=args.adversarial_weight, feature_weight=args.feature_weight,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vocoder.train``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = train(options_from_args(args))
    except TimbreError as error:
        print(f"vocoder.train: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
