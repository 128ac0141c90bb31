"""Training recipe of the flow refiner, through `accelerate` (2 CPU processes here, many GPUs elsewhere).

    python -m tts.refiner.train extract-tokens --corpus CORPUS --tokenizer NAME_OR_PATH --out FEATURES.safetensors
    accelerate launch --num_processes 2 -m tts.refiner.train --corpus CORPUS --tokenizer NAME_OR_PATH --out runs/refiner
    python -m tts.refiner.train --corpus CORPUS --features FEATURES.safetensors --out runs/refiner --max-steps 2000
    python -m tts.refiner.train --corpus CORPUS --features F.safetensors --out R --max-steps 1000000 --max-minutes 14

- Data: the corpus (`tts.data.corpus` format) and its feature cache (`tts.refiner.data`): studio mels and the
  frozen tokenizer's tokens, extracted once (``OUT/features.safetensors`` unless ``--features`` names one).
  Pairs of (voice prompt, target) with prompt augmentation (band limits, noise), see `BatchSampler`; it decodes
  the prompt's audio again for every pair (~20-50 ms of CPU each), which a GPU may wait for: there, threads make
  the batches ahead (`tts.training.data_workers`; ``TIMBRE_DATA_WORKERS``), and ``--no-prompt-augmentation``
  takes the cached mels instead. ``extract-tokens`` runs the tokenizer on the GPU when there is one.
- Fine-tuning: ``--init-from NAME_OR_PATH`` starts from a trained refiner (its config and mel statistics too),
  usually with a lower ``--learning-rate`` and short ``--warmup-steps``. ``--distill-pairs DIR`` adds Seed-TTS
  self-distillation (`tts.refiner.distill`): for ``--distill-probability`` of the targets the tokens are those of
  the utterance re-rendered in another voice, the prompt and target stay the speaker's own; the validation then
  also reports ``distill_flow_loss`` (the validation pairs with those tokens).
- Styles: ``--styles`` gives every target its corpus style label and intensity as the style condition (the
  model's ``styles`` become `tts.data.styles.STYLES`), so synthesis can ask the refiner for a style; a refiner
  fine-tuned from a neutral-only one trains the unused rows of its style table.
- Objective: rectified flow. ``x_t = (1 - t) x0 + t x1`` between noise ``x0`` and the normalised target mel ``x1``,
  the model predicts ``x1 - x0``; mean squared error over the real target frames only (never the prompt).
  ``t`` is uniform or logit-normal. Classifier-free guidance dropout per item: everything (tokens, prompt,
  speaker) with ``drop_all_probability``, and the prompt, the speaker embedding or the tokens alone.
- AdamW, linear warm-up then cosine decay, gradient clipping.
- Length: ``--max-steps`` and optionally ``--max-minutes`` of wall-clock time for this session (loading
  included; the final save and export come after it). The cosine decay follows whichever runs out first
  (`tts.training.Budget`), so a time-limited run reaches the final learning rate at its deadline, then saves
  and exports as if it had reached ``--max-steps``. Warm-up stays in steps.
- Resumable: ``accelerator.save_state`` into ``OUT/state`` every ``--save-every-minutes`` (5) of wall time,
  written to a temporary folder and renamed, and picked up automatically by the next run with the same ``--out``.
  Each save also exports the model to ``OUT/export`` (fp16 safetensors + config + a model card with the config,
  data recipe, steps and metrics, including the validation flow loss).

Shapes: ``B`` batch, ``M`` mel bands, ``T`` target frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tts.checkpoints import config_to_dict
from tts.data.styles import STYLES
from tts.device import select_device
from tts.errors import TimbreError
from tts.refiner.data import (
    BatchRecipe,
    BatchSampler,
    FeatureCache,
    RefinerBatch,
    corpus_styles,
    extract_features,
)
from tts.refiner.model import FlowRefiner, FlowRefinerConfig, count_parameters
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

FEATURES_FILE = "features.safetensors"
VALIDATION_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Flow times at which the validation loss is measured (fixed, so runs compare)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is made of besides its data and length.

    ``model``'s tokenizer fields (codebook size, frames per token, mel) and mel statistics are replaced by the
    feature cache's when the run starts.
    """

    model: FlowRefinerConfig
    batch: BatchRecipe = field(default_factory=BatchRecipe)
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 500
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    time_sampling: str = "uniform"
    drop_all_probability: float = 0.15
    drop_prompt_probability: float = 0.1
    drop_speaker_probability: float = 0.1
    drop_tokens_probability: float = 0.0

    def __post_init__(self) -> None:
        if self.time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"time_sampling must be 'uniform' or 'logit_normal', got {self.time_sampling!r}")


PRESETS: dict[str, TrainConfig] = {
    # 6.55M parameters (3.0M of them run per frame; the rest is adaLN and the encoders): the shipped default.
    # Estimated ~1,500 target frames/s on 2 idle cores (1 thread of the loaded dev box measured 470-680), so
    # about 2,500 steps of 2 x 8 pairs in 1.5 h.
    "small": TrainConfig(model=FlowRefinerConfig(dim=256, depth=6, heads=4, dim_head=64, ff_mult=2.0)),
    # 8.4M: the same at depth 8, for a longer run or a faster machine.
    "medium": TrainConfig(model=FlowRefinerConfig(dim=256, depth=8, heads=4, dim_head=64, ff_mult=2.0)),
    # 61M: for GPUs and real corpora.
    "base": TrainConfig(
        model=FlowRefinerConfig(
            dim=512, depth=12, heads=8, dim_head=64, ff_mult=4.0, token_dim=256, speaker_dim=192,
            speaker_encoder_dim=256, speaker_encoder_layers=4, dropout=0.1,
        ),
        batch=BatchRecipe(target_frames=564, prompt_frames=(188, 564)),
        learning_rate=2e-4,
        warmup_steps=2000,
    ),
    # For tests only: seconds per hundred steps.
    "tiny": TrainConfig(
        model=FlowRefinerConfig(
            dim=32, depth=2, heads=2, dim_head=16, token_dim=16, speaker_dim=16, speaker_encoder_dim=16,
            speaker_encoder_layers=1, style_dim=8, time_freq_dim=32, chunk_size=6, lookahead=3,
        ),
        batch=BatchRecipe(target_frames=48, prompt_frames=(24, 48)),
        learning_rate=1e-3,
        warmup_steps=2,
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    """One run: where the corpus, features and outputs are, how long, and how often to save."""

    corpus: Path
    out: Path
    tokenizer: str | None = None
    features: Path | None = None
    config: str = "small"
    max_steps: int = 20_000
    max_minutes: float | None = None
    """Wall-clock budget of this session (None: none); see `tts.training.Budget`."""
    batch_size: int = 8
    save_every_minutes: float = 5.0
    save_every_steps: int | None = None
    log_every: int = 50
    validation_items: int = 16
    seed: int = 0
    prompt_augmentation: bool = True
    """Augment prompts from their audio (see `BatchSampler`); off: the cached mels, no audio decoding."""
    init_from: str | None = None
    """A trained refiner (name or folder) to fine-tune: its weights and config (mel statistics included)."""
    distill_pairs: Path | None = None
    """Self-distillation pairs (`tts.refiner.distill`) for the feature cache."""
    distill_probability: float = 0.5
    """Share of targets given their distillation tokens (when they have them)."""
    learning_rate: float | None = None
    """Peak learning rate (None: the preset's)."""
    warmup_steps: int | None = None
    """Warm-up steps (None: the preset's)."""
    styles: bool = False
    """Condition each target on its corpus style label and intensity (`corpus_styles`); off: all neutral."""

    @property
    def features_path(self) -> Path:
        """The feature cache of this run."""
        return Path(self.features) if self.features is not None else Path(self.out) / FEATURES_FILE


# ---------------------------------------------------------------------------------------------------------
# Objective


def sample_times(kind: str, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B,)`` flow times: ``"uniform"`` on [0, 1] or ``"logit_normal"`` (sigmoid of a standard normal)."""
    if kind == "uniform":
        return torch.rand(batch, generator=generator)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(batch, generator=generator))
    raise ValueError(f"unknown time sampling {kind!r}")


def guidance_drops(config: TrainConfig, batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-item guidance dropout: ``drop_tokens``, ``drop_prompt``, ``drop_speaker`` ``(B,)`` bool."""
    everything = torch.rand(batch, generator=generator) < config.drop_all_probability

    def one(probability: float) -> torch.Tensor:
        return everything | (torch.rand(batch, generator=generator) < probability)

    return {
        "drop_tokens": one(config.drop_tokens_probability),
        "drop_prompt": one(config.drop_prompt_probability),
        "drop_speaker": one(config.drop_speaker_probability),
    }


def flow_matching_loss(
    model: nn.Module,
    batch: RefinerBatch,
    time: torch.Tensor,
    noise: torch.Tensor,
    drops: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Rectified-flow loss of a batch: MSE between the predicted and true velocity on real target frames.

    Args:
        model: a `FlowRefiner`, or a wrapper of one (DDP) exposing it as ``.module``.
        batch: the batch (on the model's device).
        time: ``(B,)`` flow times; noise: ``(B, M, T)`` standard normal.
        drops: guidance dropout masks from `guidance_drops` (None: no dropout).
    """
    refiner: FlowRefiner = getattr(model, "module", model)
    data = refiner.normalize_mel(batch.target_mel)
    t = time.to(data.dtype)[:, None, None]
    state = (1 - t) * noise + t * data
    predicted = model(
        state, time, batch.tokens, batch.prompt_mel, batch.prompt_tokens, style_ids=batch.style_ids,
        style_intensity=batch.style_intensity, token_lengths=batch.token_lengths, prompt_lengths=batch.prompt_lengths,
        **(drops or {}),
    )
    frames = torch.arange(data.shape[-1], device=data.device)[None]
    real = (frames < (batch.token_lengths * refiner.config.frames_per_token)[:, None]).to(data.dtype)[:, None]
    error = (predicted - (data - noise)).pow(2) * real
    return error.sum() / (real.sum() * data.shape[1])


@torch.no_grad()
def validation_loss(model: FlowRefiner, batches: Sequence[RefinerBatch], seed: int = 0) -> float:
    """Mean flow loss over `batches` at the fixed `VALIDATION_TIMES`, with fixed noise and no dropout."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for batch in batches:
        batch = batch.to(device)
        for value in VALIDATION_TIMES:
            noise = torch.randn(batch.target_mel.shape, generator=generator).to(device)
            time = torch.full((batch.tokens.shape[0],), value, device=device)
            losses.append(float(flow_matching_loss(model, batch, time, noise)))
    model.train(was_training)
    return float(np.mean(losses)) if losses else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Data


def ensure_features(options: TrainOptions) -> Path:
    """The run's feature cache, extracted with ``options.tokenizer`` when it does not exist yet."""
    path = options.features_path
    if path.is_file():
        cache = FeatureCache(path)
        if options.tokenizer is not None and cache.tokenizer != options.tokenizer:
            raise TimbreError(
                f"{path} holds tokens of tokenizer {cache.tokenizer!r}, not {options.tokenizer!r}; "
                "give another --features path or delete it to extract again"
            )
        return path
    if options.tokenizer is None:
        raise TimbreError(f"{path} does not exist; give --tokenizer to extract the tokens, or --features")
    return extract_features(options.corpus, load_tokenizer(options.tokenizer), path, tokenizer_name=options.tokenizer)


class DeviceTokenizer:
    """A speech tokenizer run on `device` for `extract_features`: mels go there, tokens come back to the CPU."""

    def __init__(self, tokenizer: nn.Module, device: torch.device) -> None:
        self.tokenizer = tokenizer.to(device)
        self.config = tokenizer.config
        self.device = device

    @property
    def training(self) -> bool:
        return self.tokenizer.training

    def eval(self) -> "DeviceTokenizer":
        self.tokenizer.eval()
        return self

    def train(self, mode: bool = True) -> "DeviceTokenizer":
        self.tokenizer.train(mode)
        return self

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, M, F)`` mels -> (``(B, N)`` token ids, ``(B,)`` token counts), on the CPU."""
        lengths = None if mel_lengths is None else mel_lengths.to(self.device)
        ids, token_lengths = self.tokenizer.encode(mel.to(self.device), lengths)
        return ids.cpu(), token_lengths.cpu()


def load_tokenizer(name_or_path: str) -> DeviceTokenizer:
    """The speech tokenizer `name_or_path` on the training device (``TIMBRE_DEVICE``, else CUDA when present)."""
    from tts.tokenizer import SpeechTokenizer

    device = select_device(os.environ.get("TIMBRE_DEVICE") or "auto")
    return DeviceTokenizer(SpeechTokenizer.from_pretrained(name_or_path), device)


def preset_for(options: TrainOptions) -> TrainConfig:
    """The run's preset with its learning-rate and warm-up overrides."""
    return with_overrides(PRESETS[options.config], learning_rate=options.learning_rate,
                          warmup_steps=options.warmup_steps)


def initial_model(options: TrainOptions, preset: TrainConfig, cache: FeatureCache) -> FlowRefiner:
    """A new refiner of the preset's shape, or the ``init_from`` refiner to fine-tune (checked against the cache)."""
    if not options.init_from:
        config = model_config_for(preset, cache)
        return FlowRefiner(replace(config, styles=STYLES) if options.styles else config)
    model = FlowRefiner.from_pretrained(options.init_from).float()
    config = model.config
    if (config.codebook_size, config.frames_per_token, config.mel) != (cache.codebook_size, cache.frames_per_token,
                                                                       cache.mel_config):
        raise TimbreError(f"--init-from {options.init_from}: trained on other tokens or mels than {cache.path}'s")
    if options.styles and config.styles != STYLES:
        if config.styles != STYLES[: len(config.styles)] or config.num_styles < len(STYLES):
            raise TimbreError(f"--init-from {options.init_from}: its style table {config.styles} cannot take "
                              f"the corpus styles {STYLES}")
        model.config = replace(config, styles=STYLES)  # the unused rows of the table get trained
    return model


def model_config_for(preset: TrainConfig, cache: FeatureCache) -> FlowRefinerConfig:
    """The preset's model config with the tokenizer's constants and the corpus mel statistics."""
    return replace(
        preset.model,
        codebook_size=cache.codebook_size,
        frames_per_token=cache.frames_per_token,
        tokenizer=cache.tokenizer,
        mel=cache.mel_config,
        mel_mean=round(cache.mel_mean, 4),
        mel_std=round(cache.mel_std, 4),
    )


def validation_sets(cache: FeatureCache, indices: Sequence[int], recipe: BatchRecipe, batch_size: int, seed: int,
                    alt_tokens: dict[int, torch.Tensor] | None = None,
                    styles: Sequence[tuple[int, float]] | None = None) -> dict[str, list[RefinerBatch]]:
    """Fixed validation batches of the items `indices` by metric: ``flow_loss`` (their own tokens) and, for the
    items with self-distillation tokens, ``distill_flow_loss`` (the same pairs given those tokens: how well the
    refiner rebuilds the recording from another voice's rendering of it). Empty without items."""
    sets = {}
    alt = {i: alt_tokens[i] for i in indices if i in (alt_tokens or {})}
    for name, share in (("flow_loss", 0.0), ("distill_flow_loss", 1.0)):
        members = list(indices) if share == 0.0 else sorted(alt)
        if members:  # same members, same seed: the same pairs, told apart only by their tokens
            sampler = BatchSampler(cache, members, recipe, np.random.default_rng(seed), alt_tokens=alt,
                                   alt_probability=share, styles=styles)
            sets[name] = sampler.fixed_batches(count=max(1, len(members) // batch_size),
                                               size=min(batch_size, len(members)), seed=seed)
    return sets


# ---------------------------------------------------------------------------------------------------------
# The loop


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) one training run; returns a summary (steps, last losses, validation loss)."""
    from accelerate import Accelerator

    if options.config not in PRESETS:
        raise TimbreError(f"unknown config {options.config!r}; choose one of {', '.join(PRESETS)}")
    if options.max_steps < 1 or options.batch_size < 1:
        raise TimbreError("--max-steps and --batch-size must be positive")
    budget = Budget(options.max_steps, options.max_minutes)
    preset = preset_for(options)
    accelerator = Accelerator()
    configure_process(accelerator)
    out = Path(options.out)
    main = accelerator.is_main_process

    with accelerator.main_process_first():
        features = ensure_features(options) if main else options.features_path
    cache = FeatureCache(features)
    train_idx, val_idx = split_validation(len(cache), options.validation_items, options.seed, 10,
                                          [item.voice_id for item in cache.items])
    alt_tokens = {}
    if options.distill_pairs is not None:
        from tts.refiner.distill import load_pairs

        alt_tokens = load_pairs(options.distill_pairs, cache)

    torch.manual_seed(options.seed)
    model = initial_model(options, preset, cache)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=preset.learning_rate, betas=preset.betas, weight_decay=preset.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    state_dir = out / STATE_DIR
    progress = resume_progress(accelerator, state_dir, options.config)

    recipe = {
        "corpus": str(Path(options.corpus).resolve()),
        "features": str(Path(features).resolve()),
        "tokenizer": cache.tokenizer,
        "items": len(cache),
        "voices": len({item.voice_id for item in cache.items}),
        "hours": round(cache.hours(), 3),
        "validation items": len(val_idx),
        "mel mean / std": f"{cache.mel_mean:.4f} / {cache.mel_std:.4f}",
        "pairs": asdict(preset.batch),
    }
    if options.init_from:
        recipe["fine-tuned from"] = options.init_from
    item_styles = corpus_styles(cache, options.corpus, STYLES) if options.styles else None
    if item_styles is not None:
        recipe["styles"] = {label: sum(1 for i in train_idx if item_styles[i][0] == n) for n, label in enumerate(STYLES)}
    if alt_tokens:
        recipe["self-distillation"] = {"pairs": str(Path(options.distill_pairs).resolve()), "utterances": len(alt_tokens),
                                       "probability": options.distill_probability}
    prompt_audio = options.corpus if options.prompt_augmentation else None
    next_batch, close_batches = batch_source(
        lambda rng: partial(BatchSampler(cache, train_idx, preset.batch, rng, corpus=prompt_audio, alt_tokens=alt_tokens,
                                         alt_probability=options.distill_probability, styles=item_styles).batch,
                        options.batch_size),
        (options.seed, accelerator.process_index, progress.step), data_workers(accelerator),
    )

    validation_batches = (validation_sets(cache, val_idx, preset.batch, options.batch_size, options.seed, alt_tokens,
                                          item_styles) if main else {})
    generator = torch.Generator().manual_seed(options.seed * 1000 + accelerator.process_index + 7919 * progress.step)
    device = accelerator.device
    log = TrainLog(out / METRICS_FILE, main, on_log, accelerator.num_processes, per_second=("target_frames",))
    validation: dict[str, float] = {}

    def save_and_export() -> None:
        nonlocal validation
        save_state(accelerator, state_dir)
        if main:
            refiner = accelerator.unwrap_model(model)
            validation = {"step": progress.step, "flow_loss": None}
            validation.update({name: validation_loss(refiner, batches) for name, batches in validation_batches.items()})
            export(refiner, out / EXPORT_DIR, options, recipe, progress, validation, log.last)
            append_metrics(out / METRICS_FILE, {"event": "validation", **validation})
        accelerator.wait_for_everyone()

    def step(batch) -> tuple[torch.Tensor, dict]:
        size = batch.tokens.shape[0]
        noise = torch.randn(batch.target_mel.shape, generator=generator).to(device)
        times = sample_times(preset.time_sampling, size, generator).to(device)
        drops = {key: value.to(device) for key, value in guidance_drops(preset, size, generator).items()}
        loss = flow_matching_loss(model, batch, times, noise, drops)
        return loss, {"loss": loss.item(), "target_frames": int(batch.token_lengths.sum()) * cache.frames_per_token}

    model.train()
    train_steps(accelerator, model, optimizer, preset, budget, progress, options, log, next_batch, step, save_and_export)

    close_batches()
    accelerator.wait_for_everyone()
    return {
        "step": progress.step,
        "history": log.history,
        "validation": validation,
        "parameters": count_parameters(accelerator.unwrap_model(model)),
    }


def export(
    model: FlowRefiner,
    folder: Path,
    options: TrainOptions,
    recipe: dict,
    progress: Progress,
    validation: dict[str, float],
    last: list[dict],
) -> Path:
    """Save the model in fp16 with a model card (config, data recipe, training, metrics)."""
    preset = preset_for(options)
    config = model.config
    frame_ms = 1000 / config.mel.frame_rate
    card = {
        "Model": {
            "architecture": "causal flow-matching refiner: DiT estimator, chunk-causal attention, prompt prefix",
            "preset": options.config,
            "parameters": count_parameters(model),
            "input": f"speech tokens of {config.tokenizer!r} ({config.frames_per_token} mel frames each) + voice prompt",
            "output": "studio log-mel (tts.audio.log_mel): 24 kHz, hop 256, 100 HTK bands",
            "streaming": (
                f"chunks of {config.chunk_size} frames ({config.chunk_size * frame_ms:.0f} ms), token lookahead "
                f"{config.lookahead} frames ({config.lookahead * frame_ms:.0f} ms)"
            ),
        },
        "Config": config_to_dict(config),
        "Data": recipe,
        "Training": training_card(progress, options, preset, last, {
            "prompt augmentation": options.prompt_augmentation,
            "objective": f"rectified flow, velocity MSE on target frames, t {preset.time_sampling}",
            "guidance dropout": (
                f"all {preset.drop_all_probability}, prompt {preset.drop_prompt_probability}, speaker "
                f"{preset.drop_speaker_probability}, tokens {preset.drop_tokens_probability}"
            ),
        }),
        "Metrics": validation,
    }
    return model.save_pretrained(folder, model_card=card, dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.refiner.train`` (training)."""
    parser = argparse.ArgumentParser(prog="python -m tts.refiner.train", description="Train the flow refiner (resumable).")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (metadata.jsonl + audio)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: state/, export/, metrics.jsonl")
    parser.add_argument("--tokenizer", help="speech tokenizer (folder, shipped name or hub id) to extract tokens with")
    parser.add_argument("--features", type=Path, help=f"feature cache (default OUT/{FEATURES_FILE})")
    parser.add_argument("--config", choices=sorted(PRESETS), default=TrainOptions.config)
    add_run_arguments(parser, TrainOptions)
    parser.add_argument("--batch-size", type=int, default=TrainOptions.batch_size, help="per process")
    parser.add_argument("--no-prompt-augmentation", dest="prompt_augmentation", action="store_false",
                        help="train on the cached prompt mels (no audio decoding per pair: faster, less robust)")
    parser.add_argument("--validation-items", type=int, default=TrainOptions.validation_items)
    parser.add_argument("--init-from", metavar="NAME_OR_PATH", help="fine-tune this trained refiner (e.g. flow_refiner)")
    parser.add_argument("--distill-pairs", type=Path, metavar="DIR",
                        help="self-distillation pairs (python -m tts.refiner.distill) of the feature cache")
    parser.add_argument("--distill-probability", type=float, default=TrainOptions.distill_probability,
                        help="share of targets given their distillation tokens")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (default: the preset's)")
    parser.add_argument("--warmup-steps", type=int, help="warm-up steps (default: the preset's)")
    parser.add_argument("--styles", action="store_true",
                        help="condition each target on its corpus style label and intensity (default: all neutral)")
    return parser


def build_extract_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.refiner.train extract-tokens``."""
    parser = argparse.ArgumentParser(
        prog="python -m tts.refiner.train extract-tokens", description="Write a corpus's feature cache (mels + tokens)."
    )
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--tokenizer", required=True, help="speech tokenizer: folder, shipped name or hub id")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tts.refiner.train``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if argv[:1] == ["extract-tokens"]:
            args = build_extract_parser().parse_args(argv[1:])
            path = extract_features(args.corpus, load_tokenizer(args.tokenizer), args.out, args.tokenizer)
            print(json.dumps({"features": str(path), "items": len(FeatureCache(path))}))
            return 0
        args = build_parser().parse_args(argv)
        options = TrainOptions(
            corpus=args.corpus, out=args.out, tokenizer=args.tokenizer, features=args.features, config=args.config,
            max_steps=args.max_steps, max_minutes=args.max_minutes, batch_size=args.batch_size,
            prompt_augmentation=args.prompt_augmentation, save_every_minutes=args.save_every_minutes,
            save_every_steps=args.save_every_steps, log_every=args.log_every,
            validation_items=args.validation_items, seed=args.seed, init_from=args.init_from,
            distill_pairs=args.distill_pairs, distill_probability=args.distill_probability,
            learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, styles=args.styles,
        )
        summary = train(options)
    except TimbreError as error:
        print(f"tts.refiner.train: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
