"""Training recipe of the tone-color converter (OpenVoice), through `accelerate`.

    python -m converter.train --corpus CORPUS --out runs/converter --max-minutes 60
    accelerate launch --num_processes 2 -m converter.train --corpus CORPUS --out runs/converter

As OpenVoice trains it, without its waveform discriminators (the shipped default decodes to the studio's mel,
which the studio vocoder renders):

- Reconstruction: the posterior encoder (``enc_q``) encodes an utterance's linear spectrogram into latent
  frames ``z``; the decoder must give back the utterance's studio log-mel (L1, weight ``mel_weight``).
- Timbre removal: the flow, conditioned on the tone color, maps ``z`` to ``z_p``, which is pulled (KL, weight
  ``kl_weight``) toward a timbre-free content representation of the same utterance: its phonemes through a
  small transformer (`converter.modules.ContentPrior`), one Gaussian per phoneme, aligned to the frames by
  monotonic alignment search (`converter.align`). The prior has no speaker, style or language input, so what
  the flow must remove is what the phonemes cannot predict: timbre.
- Tone color: the reference encoder reads a crop of *another* utterance of the same voice (its length drawn
  per batch), so it learns the voice, not the utterance.

Data: the corpus (`tts.data.corpus` format; items' spoken phonemes from their metadata). Audio is read once
and kept in memory (about 1.3 GB per 4 hours). Batches group items of similar length. Validation: a fixed
set of held-out items, its reconstruction L1 and KL in every export's model card.

Length, saving and resuming as in the other recipes (`tts.training`): ``--max-steps``, ``--max-minutes``,
state saved atomically every ``--save-every-minutes`` into ``OUT/state`` (picked up by the next run with the
same ``--out``), each save exporting the converter alone (fp16 + config + model card) to ``OUT/export``.

Shapes: ``B`` batch, ``K`` spectrogram bins, ``M`` mel bands, ``F`` frames, ``N`` phonemes, ``C`` latent channels.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from converter.align import align_batch
from converter.modules import ContentPrior, sequence_mask
from converter.openvoice import ConverterConfig, ToneColorConverter
from converter.spectrogram import SpectrogramConfig, linear_spectrogram
from tts.audio import SAMPLE_RATE, STUDIO_MEL, load_audio, log_mel
from tts.checkpoints import config_to_dict
from tts.errors import TimbreError
from tts.training import (
    EXPORT_DIR,
    METRICS_FILE,
    STATE_DIR,
    Budget,
    Progress,
    TrainLog,
    add_run_arguments,
    append_metrics,
    batch_source,
    configure_process,
    data_workers,
    resume_progress,
    save_state,
    split_validation,
    train_steps,
    training_card,
    with_overrides,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorConfig:
    """The content prior (training only): phoneme embeddings through a small transformer."""

    hidden_channels: int = 128
    layers: int = 3
    heads: int = 2
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """Everything a converter run is made of besides its data and length."""

    model: ConverterConfig
    prior: PriorConfig = field(default_factory=PriorConfig)
    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    final_lr_fraction: float = 0.1
    grad_clip: float = 5.0
    mel_weight: float = 45.0
    kl_weight: float = 1.0
    max_item_seconds: float = 9.0
    reference_frames: tuple[int, int] = (96, 288)
    """Range of the tone-color reference crop (frames at 93.75 Hz: about 1-3 s), drawn per batch."""


_STUDIO_SPECTROGRAM = SpectrogramConfig(sample_rate=SAMPLE_RATE, n_fft=1024, hop_length=STUDIO_MEL.hop_length, win_length=1024)

PRESETS: dict[str, TrainConfig] = {
    # The shipped default: ~4M parameters, 24 kHz, decodes to the studio mel.
    "small": TrainConfig(
        model=ConverterConfig(
            spectrogram=_STUDIO_SPECTROGRAM, decoder="mel", inter_channels=96, hidden_channels=96,
            posterior_layers=6, flow_layers=3, n_flows=4, gin_channels=128, mel_decoder_layers=6,
            ref_enc_filters=(32, 32, 64, 64, 128, 128), ref_enc_gru_channels=128,
        ),
    ),
    # For tests only.
    "tiny": TrainConfig(
        model=ConverterConfig(
            spectrogram=_STUDIO_SPECTROGRAM, decoder="mel", inter_channels=8, hidden_channels=16,
            posterior_layers=2, flow_layers=1, n_flows=2, gin_channels=8, mel_decoder_layers=2,
            ref_enc_filters=(4, 4), ref_enc_gru_channels=8,
        ),
        prior=PriorConfig(hidden_channels=16, layers=1, heads=2, dropout=0.0),
        learning_rate=2e-3,
        warmup_steps=2,
        reference_frames=(16, 32),
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    """One run: where the corpus and outputs are, how long, and how often to save."""

    corpus: Path
    out: Path
    config: str = "small"
    max_steps: int = 50_000
    max_minutes: float | None = None
    batch_size: int = 6
    save_every_minutes: float = 5.0
    save_every_steps: int | None = None
    log_every: int = 25
    validation_items: int = 24
    seed: int = 0
    learning_rate: float | None = None
    """Peak learning rate instead of the preset's (e.g. to resume a run faster)."""
    kl_weight: float | None = None
    """Weight of the KL term instead of the preset's (lower: sharper reconstructions, weaker timbre removal)."""


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Utterance:
    """One corpus item as the recipe uses it."""

    audio: np.ndarray
    """24 kHz samples."""
    phoneme_ids: tuple[int, ...]
    voice_id: str

    @property
    def frames(self) -> int:
        return len(self.audio) // STUDIO_MEL.hop_length


def load_utterances(corpus: Path, max_seconds: float) -> list[Utterance]:
    """The corpus items short enough to train on, with audio in memory; items with no phonemes or with more
    phonemes than frames (nothing to align) are left out."""
    from tts.data.corpus import read_metadata
    from tts.text import PHONEME_TABLE

    items = read_metadata(corpus)
    if not items:
        raise TimbreError(f"{corpus} has no corpus items (metadata.jsonl)")
    utterances, skipped = [], 0
    for item in items:
        if item.duration and item.duration > max_seconds:
            skipped += 1
            continue
        ids = tuple(PHONEME_TABLE.encode(item.words())) if item.phonemes else ()
        audio = load_audio(Path(corpus) / item.file_name).resample(SAMPLE_RATE).samples
        utterance = Utterance(audio, ids, item.voice_id)
        if not ids or len(ids) > utterance.frames or len(audio) > max_seconds * SAMPLE_RATE:
            skipped += 1
            continue
        utterances.append(utterance)
    logger.info("%d utterances to train on (%d skipped: too long, no phonemes or too many)", len(utterances), skipped)
    if len(utterances) < 2:
        raise TimbreError(f"{corpus}: fewer than 2 usable items (each needs phonemes and at most {max_seconds} s)")
    return utterances


@dataclass
class ConverterBatch:
    """Padded tensors of one batch."""

    spec: torch.Tensor  # (B, K, F)
    mel: torch.Tensor  # (B, M, F)
    frame_lengths: torch.Tensor  # (B,)
    phonemes: torch.Tensor  # (B, N)
    phoneme_lengths: torch.Tensor  # (B,)
    reference: torch.Tensor  # (B, K, R): crops of another utterance of each item's voice

    def to(self, device: torch.device | str) -> "ConverterBatch":
        return ConverterBatch(**{k: v.to(device) for k, v in asdict(self).items()})


class BatchMaker:
    """Batches of utterances of similar length, each with a reference crop from another utterance of its voice."""

    def __init__(self, utterances: Sequence[Utterance], indices: Sequence[int], config: TrainConfig,
                 rng: np.random.Generator) -> None:
        self.utterances = utterances
        self.order = sorted(indices, key=lambda i: utterances[i].frames)
        self.config = config
        self.rng = rng
        self.by_voice: dict[str, list[int]] = {}
        for index in indices:
            self.by_voice.setdefault(utterances[index].voice_id, []).append(index)

    def batch(self, size: int) -> ConverterBatch:
        """A random batch: `size` items drawn from a window of similar lengths."""
        size = min(size, len(self.order))
        window = min(len(self.order), 3 * size)
        start = int(self.rng.integers(0, len(self.order) - window + 1))
        chosen = self.rng.choice(self.order[start : start + window], size=size, replace=False)
        return self.collate([int(i) for i in chosen])

    def collate(self, indices: Sequence[int]) -> ConverterBatch:
        """The batch of these utterances (references drawn with this maker's generator)."""
        spectrogram = self.config.model.spectrogram
        hop = spectrogram.hop_length
        utterances = [self.utterances[i] for i in indices]
        frames = [u.frames for u in utterances]
        samples = max(frames) * hop
        waves = torch.zeros(len(utterances), samples)
        for row, u in enumerate(utterances):
            waves[row, : frames[row] * hop] = torch.from_numpy(u.audio[: frames[row] * hop])
        spec = linear_spectrogram(waves, spectrogram) * sequence_mask(torch.tensor(frames), max(frames))
        mel = log_mel(waves)[:, :, : max(frames)]
        ids = torch.full((len(utterances), max(len(u.phoneme_ids) for u in utterances)), 0, dtype=torch.long)
        for row, u in enumerate(utterances):
            ids[row, : len(u.phoneme_ids)] = torch.tensor(u.phoneme_ids)
        return ConverterBatch(
            spec=spec,
            mel=mel,
            frame_lengths=torch.tensor(frames),
            phonemes=ids,
            phoneme_lengths=torch.tensor([len(u.phoneme_ids) for u in utterances]),
            reference=self.references(indices),
        )

    def references(self, indices: Sequence[int]) -> torch.Tensor:
        """``(B, K, R)`` spectrogram crops of one length, each from another utterance of the item's voice
        (the item itself when its voice has no other)."""
        sources = []
        for index in indices:
            others = [i for i in self.by_voice[self.utterances[index].voice_id] if i != index] or [index]
            sources.append(self.utterances[int(self.rng.choice(others))])
        low, high = self.config.reference_frames
        length = min(int(self.rng.integers(low, high + 1)), min(u.frames for u in sources))
        hop = self.config.model.spectrogram.hop_length
        crops = []
        for source in sources:
            start = int(self.rng.integers(0, source.frames - length + 1))
            crops.append(torch.from_numpy(source.audio[start * hop : (start + length) * hop].copy()))
        return linear_spectrogram(torch.stack(crops), self.config.model.spectrogram)


# ---------------------------------------------------------------------------------------------------------
# Objective


class ConverterTrainer(nn.Module):
    """The converter and its training-only content prior, as one module for the optimizer and the state."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        from tts.text import PHONEME_TABLE

        self.converter = ToneColorConverter(config.model)
        self.prior = ContentPrior(
            len(PHONEME_TABLE), config.model.inter_channels, config.prior.hidden_channels, config.prior.layers,
            config.prior.heads, dropout=config.prior.dropout, pad_id=0,
        )
        self.mel_weight = config.mel_weight
        self.kl_weight = config.kl_weight

    def forward(self, batch: ConverterBatch, tau: float = 1.0) -> dict[str, torch.Tensor]:
        """Losses of a batch: ``loss`` (weighted sum), ``mel_l1`` and ``kl`` (per frame). ``tau`` scales the
        posterior's sampling noise (1 to train; 0 decodes its mean)."""
        converter = self.converter
        tone = converter.extract_tone_color(batch.reference)
        mask = sequence_mask(batch.frame_lengths, batch.spec.shape[-1])
        z, m_q, logs_q = converter.enc_q(batch.spec, mask, g=converter._encoder_decoder_condition(tone), tau=tau)
        mel = converter.decode(z, mask, tone)
        mel_l1 = ((mel - batch.mel).abs() * mask).sum() / (mask.sum() * mel.shape[1])

        z_p = converter.flow(z, mask, g=tone)
        m_p, logs_p = self.prior(batch.phonemes, batch.phoneme_lengths)
        path = align_batch(z_p, m_p, logs_p, batch.phoneme_lengths, batch.frame_lengths)  # (B, N, F)
        m_f, logs_f = torch.bmm(m_p, path), torch.bmm(logs_p, path)
        kl = logs_f - logs_q - 0.5 + 0.5 * (z_p - m_f).square() * torch.exp(-2 * logs_f)
        kl = (kl * mask).sum() / mask.sum()
        return {"loss": self.mel_weight * mel_l1 + self.kl_weight * kl, "mel_l1": mel_l1, "kl": kl}


@torch.no_grad()
def validation_losses(trainer: ConverterTrainer, batches: Sequence[ConverterBatch]) -> dict[str, float]:
    """Mean reconstruction L1 and KL over fixed batches (posterior samples drawn with a fixed seed: the KL
    is only an estimate of the divergence when the latent is sampled)."""
    was_training = trainer.training
    trainer.eval()
    device = next(trainer.parameters()).device
    torch.manual_seed(0)
    totals: dict[str, list[float]] = {"mel_l1": [], "kl": []}
    for batch in batches:
        losses = trainer(batch.to(device))
        for key in totals:
            totals[key].append(float(losses[key]))
    trainer.train(was_training)
    return {key: round(float(np.mean(values)), 4) for key, values in totals.items() if values}


# ---------------------------------------------------------------------------------------------------------
# The loop


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) one training run; returns a summary (steps, history, validation)."""
    from accelerate import Accelerator

    if options.config not in PRESETS:
        raise TimbreError(f"unknown config {options.config!r}; choose one of {', '.join(PRESETS)}")
    if options.batch_size < 1:
        raise TimbreError("--batch-size must be positive")
    budget = Budget(options.max_steps, options.max_minutes)
    preset = preset_for(options)
    accelerator = Accelerator()
    configure_process(accelerator)
    out = Path(options.out)
    main = accelerator.is_main_process

    utterances = load_utterances(Path(options.corpus), preset.max_item_seconds)
    train_idx, val_idx = split_validation(len(utterances), options.validation_items, options.seed, 10,
                                          [u.voice_id for u in utterances])
    torch.manual_seed(options.seed)
    trainer = ConverterTrainer(preset)
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=preset.learning_rate, betas=preset.betas,
                                  weight_decay=preset.weight_decay)
    trainer, optimizer = accelerator.prepare(trainer, optimizer)
    state_dir = out / STATE_DIR
    progress = resume_progress(accelerator, state_dir, options.config)
    recipe = {
        "corpus": str(Path(options.corpus).resolve()),
        "items": len(utterances),
        "voices": len({u.voice_id for u in utterances}),
        "hours": round(sum(len(u.audio) for u in utterances) / SAMPLE_RATE / 3600, 3),
        "validation items": len(val_idx),
        "max item seconds": preset.max_item_seconds,
        "reference crop frames": list(preset.reference_frames),
    }
    next_batch, close_batches = batch_source(
        lambda rng: partial(BatchMaker(utterances, train_idx, preset, rng).batch, options.batch_size),
        (options.seed, accelerator.process_index, progress.step), data_workers(accelerator),
    )
    validation_batches = []
    if val_idx and main:
        maker = BatchMaker(utterances, train_idx + val_idx, preset, np.random.default_rng(options.seed))
        size = options.batch_size
        validation_batches = [maker.collate(val_idx[i : i + size]) for i in range(0, len(val_idx), size)]
    log = TrainLog(out / METRICS_FILE, main, on_log, accelerator.num_processes, per_second=("frames",))
    validation: dict = {}

    def save_and_export() -> None:
        nonlocal validation
        save_state(accelerator, state_dir)
        if main:
            unwrapped: ConverterTrainer = accelerator.unwrap_model(trainer)
            validation = {"step": progress.step, **validation_losses(unwrapped, validation_batches)}
            export(unwrapped.converter, out / EXPORT_DIR, options, recipe, progress, validation, log.last)
            append_metrics(out / METRICS_FILE, {"event": "validation", **validation})
        accelerator.wait_for_everyone()

    def step(batch: ConverterBatch) -> tuple[torch.Tensor, dict]:
        losses = trainer(batch)
        return losses["loss"], {"loss": losses["loss"].item(), "mel_l1": losses["mel_l1"].item(),
                                "kl": losses["kl"].item(), "frames": int(batch.frame_lengths.sum())}

    trainer.train()
    train_steps(accelerator, trainer, optimizer, preset, budget, progress, options, log, next_batch, step,
                save_and_export)

    close_batches()
    accelerator.wait_for_everyone()
    parameters = sum(p.numel() for p in accelerator.unwrap_model(trainer).converter.parameters())
    return {"step": progress.step, "history": log.history, "validation": validation, "parameters": parameters}


def preset_for(options: TrainOptions) -> TrainConfig:
    """The run's preset, with the options' overrides (learning rate, KL weight)."""
    return with_overrides(PRESETS[options.config], learning_rate=options.learning_rate, kl_weight=options.kl_weight)


def export(converter: ToneColorConverter, folder: Path, options: TrainOptions, recipe: dict, progress: Progress,
           validation: dict, last: list[dict]) -> Path:
    """Save the converter (without the training-only prior) in fp16 with a model card."""
    preset = preset_for(options)
    card = {
        "Model": {
            "architecture": "OpenVoice tone-color converter: posterior encoder -> tone-color-conditioned "
                            "mean-only coupling flow -> WaveNet mel decoder (studio vocoder renders it)",
            "preset": options.config,
            "parameters": sum(p.numel() for p in converter.parameters()),
            "input": "24 kHz linear spectrogram (n_fft 1024, hop 256) + source and target tone colors",
            "output": "studio log-mel (tts.audio.log_mel), one frame per spectrogram frame",
        },
        "Config": config_to_dict(converter.config),
        "Data": recipe,
        "Training": training_card(progress, options, preset, last, {
            "objective": (f"{preset.mel_weight} x mel L1 (reconstruction) + {preset.kl_weight} x KL(posterior -> "
                          "flow -> phoneme content prior, monotonic alignment)"),
            "prior": asdict(preset.prior),
        }),
        "Metrics": validation,
    }
    return converter.save_pretrained(folder, model_card=card, dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m converter.train``."""
    parser = argparse.ArgumentParser(prog="python -m converter.train", description="Train the tone-color converter (resumable).")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (metadata.jsonl + audio)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: state/, export/, metrics.jsonl")
    parser.add_argument("--config", choices=sorted(PRESETS), default=TrainOptions.config)
    add_run_arguments(parser, TrainOptions)
    parser.add_argument("--batch-size", type=int, default=TrainOptions.batch_size, help="per process")
    parser.add_argument("--validation-items", type=int, default=TrainOptions.validation_items)
    parser.add_argument("--learning-rate", type=float, help="peak learning rate instead of the preset's")
    parser.add_argument("--kl-weight", type=float, help="weight of the KL term instead of the preset's")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m converter.train``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        summary = train(TrainOptions(
            corpus=args.corpus, out=args.out, config=args.config, max_steps=args.max_steps,
            max_minutes=args.max_minutes, batch_size=args.batch_size, save_every_minutes=args.save_every_minutes,
            save_every_steps=args.save_every_steps, log_every=args.log_every,
            validation_items=args.validation_items, seed=args.seed, learning_rate=args.learning_rate,
            kl_weight=args.kl_weight,
        ))
    except TimbreError as error:
        print(f"converter.train: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
