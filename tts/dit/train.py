"""Training recipe of the studio's DiT (infilling flow matching over mels), through `accelerate`.

    python -m tts.refiner.train extract-tokens --corpus CORPUS --tokenizer speech_tokenizer --out RUN/features.safetensors
    python -m tts.dit.train extract --features RUN/features.safetensors --aligner speech_tokenizer
    python -m tts.dit.train --features RUN/features.safetensors --out RUN --max-minutes 90 [--init-from flow_refiner]

The objective is F5-TTS's: rectified flow from Gaussian noise (t = 0) to the normalised mel (t = 1), velocity MSE
on the frames to generate, the kept frames given as the audio condition; the audio condition is dropped from a
batch with probability ``audio_drop`` and audio and text together with ``cond_drop`` (classifier-free guidance).
What differs is the text condition (`tts.dit.units`): unit ids laid out on the frames by the aligner's
durations, on the generated frames only (`tts.dit.data`), and a unit duration predictor trained beside it
(MSE of ``log(1 + frames)``), which spreads a total duration over the units at inference.

``--init-from`` warm-starts from a trained flow refiner (`tts.refiner.model.FlowRefiner` of the same width and
depth): its transformer blocks, time embedding, output layers and the mel columns of its input projection are
copied, and its flow-space normalisation is kept. The refiner already turns noise into this voice-conditioned
mel space; the DiT then has to learn its text condition and full attention.

Length, saving and resuming as in the other recipes (`tts.training`); each save exports the DiT in fp16 with a
model card to ``OUT/export`` (validation: flow loss at fixed times and noise, and duration error, on held-out
items).

Shapes: ``B`` batch, ``T`` frames, ``M`` mel bands, ``U`` units.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tts.audio import STUDIO_MEL
from tts.checkpoints import config_to_dict
from tts.dit.data import LAYOUTS, AlignedCorpus, InfillBatch, InfillRecipe, InfillSampler, extract_alignments
from tts.dit.model import DiT, DiTConfig
from tts.dit.units import NUM_UNITS
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

ALIGNMENTS_FILE = "alignments.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a DiT run is made of besides its data and length."""

    model: DiTConfig
    recipe: InfillRecipe = field(default_factory=InfillRecipe)
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 300
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    audio_drop: float = 0.3
    cond_drop: float = 0.2
    duration_weight: float = 1.0


_STUDIO = dict(mel=STUDIO_MEL, mel_dim=STUDIO_MEL.n_mels, text_condition="frames", text_num_embeds=NUM_UNITS,
               attn_mask_enabled=True, qk_norm="rms_norm")

PRESETS: dict[str, TrainConfig] = {
    # The shipped default: ~7M parameters; blocks shaped like the shipped flow refiner's (warm start).
    "small": TrainConfig(
        model=DiTConfig(dim=256, depth=6, heads=4, dim_head=64, ff_mult=2, text_dim=128, conv_layers=2,
                        dropout=0.0, duration_layers=3, duration_dim=192, **_STUDIO),
    ),
    # For tests only.
    "tiny": TrainConfig(
        model=DiTConfig(dim=32, depth=2, heads=2, dim_head=16, ff_mult=2, text_dim=16, conv_layers=1,
                        dropout=0.0, duration_layers=1, duration_dim=16, conv_pos_kernel=7, conv_pos_groups=4,
                        time_freq_dim=32,
                        **_STUDIO),
        recipe=InfillRecipe(max_frames=48, prompt_frames=(16, 32)),
        learning_rate=1e-3,
        warmup_steps=2,
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    """One run: where the features and outputs are, how long, and how often to save."""

    features: Path
    out: Path
    alignments: Path | None = None
    """Default: ``alignments.safetensors`` beside the features."""
    config: str = "small"
    init_from: str | None = None
    max_steps: int = 100_000
    max_minutes: float | None = None
    batch_size: int = 8
    save_every_minutes: float = 5.0
    save_every_steps: int | None = None
    log_every: int = 25
    validation_items: int = 16
    seed: int = 0
    learning_rate: float | None = None
    warmup_steps: int | None = None
    guides: tuple[Path, ...] = ()
    """Guide-start sidecars (`tts.dit.guides`, ``python -m tts.dit.train guides``); none: every example from noise."""
    guided_share: float = 0.5
    """With `guides`: the share of training examples (of items that have a guide) that start from it."""

    @property
    def alignments_path(self) -> Path:
        return self.alignments or Path(self.features).with_name(ALIGNMENTS_FILE)


# ---------------------------------------------------------------------------------------------------------
# Objective


class DiTTrainer(nn.Module):
    """The DiT with its flow-matching and duration losses."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.model = DiT(config.model)
        self.config = config

    def forward(self, batch: InfillBatch, generator: torch.Generator | None = None,
                drops: tuple[bool, bool] | None = None) -> dict[str, torch.Tensor]:
        """Losses of a batch: ``loss``, ``flow`` (velocity MSE per generated value) and ``duration``.

        `generator` draws the noise and times (on the CPU; validation fixes it); `drops` forces
        ``(drop_audio, drop_text)`` instead of drawing them.
        """
        model = self.model
        device = batch.mel.device
        x1 = model.normalize_mel(batch.mel)
        noise = torch.randn(x1.shape, generator=generator).to(device)
        time = torch.rand(x1.shape[0], generator=generator).to(device)
        row_weight = torch.ones(())
        if batch.start is None or batch.start_time is None:
            xt = (1 - time[:, None, None]) * noise + time[:, None, None] * x1
            target = x1 - noise
        else:
            # A guided row starts at its start time t0 from (1 - t0) noise + t0 guide, as the engine's flow does,
            # and goes straight to the data from there; t0 = 0 is the plain path from noise. Its velocity is
            # 1 / (1 - t0) times larger, so its error is weighted by (1 - t0)^2 (the error of where it ends):
            # unweighted, the guided rows' errors swamped the rest (the plain flow loss 0.24 -> 0.62 in 210 steps).
            t0 = batch.start_time.to(x1.dtype)[:, None, None]
            x0 = (1 - t0) * noise + t0 * model.normalize_mel(batch.start)
            xt = x0 + time[:, None, None] * (x1 - x0)
            target = (x1 - x0) / (1 - t0)
            time = t0[:, 0, 0] + (1 - t0[:, 0, 0]) * time
            row_weight = (1 - t0).square()
        keep = (batch.mask & ~batch.generate)[..., None]
        cond = torch.where(keep, x1, torch.zeros_like(x1))
        if drops is None:
            drop_audio = bool(torch.rand(()) < self.config.audio_drop)
            drop_text = bool(torch.rand(()) < self.config.cond_drop)
            drop_audio = drop_audio or drop_text
        else:
            drop_audio, drop_text = drops
        velocity = model(xt, cond, batch.text, time, mask=batch.mask, drop_audio_cond=drop_audio, drop_text=drop_text)
        weight = batch.generate[..., None].to(x1.dtype)
        flow = ((velocity - target).square() * weight * row_weight).sum() / (weight.sum() * x1.shape[-1]).clamp(min=1)
        real = batch.units >= 0
        predicted = model.duration_predictor(batch.units)
        duration = ((predicted - torch.log1p(batch.unit_frames.to(predicted.dtype))).square() * real).sum() / real.sum().clamp(min=1)
        return {"loss": flow + self.config.duration_weight * duration, "flow": flow, "duration": duration}


@torch.no_grad()
def validation_losses(trainer: DiTTrainer, batches: Sequence[InfillBatch]) -> dict[str, float]:
    """Mean flow and duration losses over fixed batches, with fixed noise and times and no condition dropped."""
    was_training = trainer.training
    trainer.eval()
    device = next(trainer.parameters()).device
    generator = torch.Generator().manual_seed(0)
    flows, durations = [], []
    for batch in batches:
        losses = trainer(batch.to(device), generator=generator, drops=(False, False))
        flows.append(float(losses["flow"]))
        durations.append(float(losses["duration"]))
    trainer.train(was_training)
    return {"flow": round(float(np.mean(flows)), 4), "duration": round(float(np.mean(durations)), 4)} if flows else {}


def warm_start(model: DiT, refiner_path: str) -> tuple[list[str], dict]:
    """Copy a flow refiner's blocks, time embedding, output layers and mel input columns into `model`; or, from
    a trained studio DiT of the same configuration (e.g. the shipped ``dit``: fine-tuning), all of it.

    Returns the copied `model` keys and the source's normalisation ``{"mel_mean", "mel_std"}``.

    Raises:
        TimbreError: the refiner's width, depth or head layout differs from the DiT's, or the DiT's configuration
            does.
    """
    from tts.checkpoints import resolve_checkpoint, stored_model_class
    from tts.refiner.model import FlowRefiner

    folder = resolve_checkpoint(refiner_path)
    if stored_model_class(folder) == DiT.__name__:
        trained = DiT.from_pretrained(folder)
        normalisation = {"mel_mean": trained.config.mel_mean, "mel_std": trained.config.mel_std}
        if replace(trained.config, mel_mean=model.config.mel_mean, mel_std=model.config.mel_std) != model.config:
            raise TimbreError(f"{refiner_path}: a DiT of another configuration than the {model.config.dim}-wide preset's")
        model.load_state_dict({k: v.float() for k, v in trained.state_dict().items()})
        return sorted(model.state_dict()), normalisation
    refiner = FlowRefiner.from_pretrained(refiner_path)
    source = refiner.state_dict()
    config = model.config
    if (refiner.config.dim, refiner.config.depth, refiner.config.heads, refiner.config.dim_head) != (
            config.dim, config.depth, config.heads, config.dim_head):
        raise TimbreError(f"{refiner_path}: the refiner's width/depth/heads differ from the DiT's; cannot warm-start")
    target = model.state_dict()
    copied = {}
    for key, value in source.items():
        for prefix, new in (("blocks.", "transformer_blocks."), ("time_embed.", "time_embed."),
                            ("norm_out.", "norm_out."), ("proj_out.", "proj_out.")):
            if key.startswith(prefix):
                name = new + key[len(prefix):]
                if name in target and target[name].shape == value.shape:
                    copied[name] = value
    mel_dim = config.mel_dim
    weight = target["input_embed.proj.weight"].clone()
    weight[:, : 2 * mel_dim] = source["input_proj.weight"][:, : 2 * mel_dim]
    copied["input_embed.proj.weight"] = weight
    copied["input_embed.proj.bias"] = source["input_proj.bias"]
    model.load_state_dict(copied, strict=False)
    return sorted(copied), {"mel_mean": refiner.config.mel_mean, "mel_std": refiner.config.mel_std}


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
    accelerator = Accelerator()
    configure_process(accelerator)
    out = Path(options.out)
    main = accelerator.is_main_process

    corpus = AlignedCorpus(options.features, options.alignments_path)
    voices = [corpus.cache.items[i].voice_id for i in corpus.usable]
    train_pos, val_pos = split_validation(len(corpus.usable), options.validation_items, options.seed, 5, voices)
    train_idx = [corpus.usable[i] for i in train_pos]
    val_idx = [corpus.usable[i] for i in val_pos]

    preset = preset_for(options)
    guides = None
    if options.guides:
        from tts.dit.guides import GuideStarts

        if not 0.0 < options.guided_share <= 1.0:
            raise TimbreError(f"--guided-share must be in (0, 1], got {options.guided_share}")
        guides = GuideStarts(options.guides, [item.file_name for item in corpus.cache.items])
        preset = replace(preset, recipe=replace(preset.recipe, guided_share=options.guided_share))
    normalisation = {"mel_mean": round(corpus.cache.mel_mean, 4), "mel_std": round(corpus.cache.mel_std, 4)}
    torch.manual_seed(options.seed)
    warm: list[str] = []
    if options.init_from:
        probe = DiT(preset.model)
        warm, normalisation = warm_start(probe, options.init_from)
    preset = replace(preset, model=replace(preset.model, **normalisation))
    trainer = DiTTrainer(preset)
    if options.init_from:
        trainer.model.load_state_dict(probe.state_dict())
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=preset.learning_rate, betas=preset.betas,
                                  weight_decay=preset.weight_decay)
    trainer, optimizer = accelerator.prepare(trainer, optimizer)
    state_dir = out / STATE_DIR
    progress = resume_progress(accelerator, state_dir, options.config)
    recipe = {
        "features": str(Path(options.features).resolve()),
        "corpus": corpus.cache.corpus,
        "aligner": corpus.aligner,
        "items": len(corpus.usable),
        "items not aligned": len(corpus.cache.items) - len(corpus.usable),
        "voices": len(set(voices)),
        "hours": round(sum(corpus.cache.items[i].frames for i in corpus.usable) / STUDIO_MEL.frame_rate / 3600, 3),
        "validation items": len(val_idx),
        "examples": asdict(preset.recipe),
        "warm start": {"from": options.init_from, "tensors": len(warm)} if options.init_from else None,
        "guide starts": ({"files": [str(Path(path).resolve()) for path in options.guides], "items": len(guides),
                          "share": options.guided_share} if guides is not None else None),
    }
    next_batch, close_batches = batch_source(
        lambda rng: partial(InfillSampler(corpus, train_idx, preset.recipe, rng, guides).batch, options.batch_size),
        (options.seed, accelerator.process_index, progress.step), data_workers(accelerator),
    )
    validation_batches = []
    if val_idx and main:
        sampler = InfillSampler(corpus, train_idx + val_idx, preset.recipe, np.random.default_rng(options.seed))
        size = options.batch_size
        validation_batches = [
            sampler.collate(val_idx[i : i + size], [LAYOUTS[(i + k) % len(LAYOUTS)] for k in range(len(val_idx[i : i + size]))])
            for i in range(0, len(val_idx), size)
        ]
    log = TrainLog(out / METRICS_FILE, main, on_log, accelerator.num_processes, per_second=("frames",))
    validation: dict = {}

    def save_and_export() -> None:
        nonlocal validation
        save_state(accelerator, state_dir)
        if main:
            unwrapped: DiTTrainer = accelerator.unwrap_model(trainer)
            validation = {"step": progress.step, **validation_losses(unwrapped, validation_batches)}
            export(unwrapped.model, out / EXPORT_DIR, options, preset, recipe, progress, validation, log.last)
            append_metrics(out / METRICS_FILE, {"event": "validation", **validation})
        accelerator.wait_for_everyone()

    def step(batch: InfillBatch) -> tuple[torch.Tensor, dict]:
        losses = trainer(batch)
        return losses["loss"], {"loss": losses["loss"].item(), "flow": losses["flow"].item(),
                                "duration": losses["duration"].item(), "frames": int(batch.mask.sum())}

    trainer.train()
    train_steps(accelerator, trainer, optimizer, preset, budget, progress, options, log, next_batch, step,
                save_and_export)

    close_batches()
    accelerator.wait_for_everyone()
    parameters = sum(p.numel() for p in accelerator.unwrap_model(trainer).model.parameters())
    return {"step": progress.step, "history": log.history, "validation": validation, "parameters": parameters}


def preset_for(options: TrainOptions) -> TrainConfig:
    """The run's preset, with the options' overrides (learning rate, warm-up)."""
    return with_overrides(PRESETS[options.config], learning_rate=options.learning_rate,
                          warmup_steps=options.warmup_steps)


def export(model: DiT, folder: Path, options: TrainOptions, preset: TrainConfig, recipe: dict, progress: Progress,
           validation: dict, last: list[dict]) -> Path:
    """Save the DiT (duration predictor included) in fp16 with a model card."""
    card = {
        "Model": {
            "architecture": "F5-TTS-style DiT (flow matching over mels, infilling) with a frame-level unit text "
                            "condition and a unit duration predictor",
            "preset": options.config,
            "parameters": sum(p.numel() for p in model.parameters()),
            "input": "unit ids per generated frame (tts.dit.units) + the kept mel frames + flow time",
            "output": "studio log-mel (tts.audio.log_mel): 24 kHz, hop 256, 100 HTK bands",
        },
        "Config": config_to_dict(model.config),
        "Data": recipe,
        "Training": training_card(progress, options, preset, last, {
            "objective": ("rectified flow, velocity MSE on generated frames, t uniform; guidance dropout audio "
                          f"{preset.audio_drop}, audio+text {preset.cond_drop}; + {preset.duration_weight} x "
                          "duration MSE of log(1 + frames)"
                          + (f"; {preset.recipe.guided_share:.0%} of the examples with a guide start from it at t0 "
                             f"{preset.recipe.guide_times} (prompt, span, edit)" if recipe.get("guide starts") else "")),
        }),
        "Metrics": validation,
    }
    return model.save_pretrained(folder, model_card=card, dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.dit.train``."""
    parser = argparse.ArgumentParser(prog="python -m tts.dit.train", description="Train the studio's DiT (resumable).")
    parser.add_argument("--features", type=Path, required=True,
                        help="refiner feature cache of the corpus (python -m tts.refiner.train extract-tokens)")
    parser.add_argument("--alignments", type=Path, help=f"alignment sidecar (default: {ALIGNMENTS_FILE} beside --features)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: state/, export/, metrics.jsonl")
    parser.add_argument("--config", choices=sorted(PRESETS), default=TrainOptions.config)
    parser.add_argument("--init-from", help="flow refiner checkpoint to warm-start from (e.g. flow_refiner), or a "
                        "trained DiT of the same preset to fine-tune (e.g. dit)")
    add_run_arguments(parser, TrainOptions)
    parser.add_argument("--batch-size", type=int, default=TrainOptions.batch_size, help="per process")
    parser.add_argument("--validation-items", type=int, default=TrainOptions.validation_items)
    parser.add_argument("--learning-rate", type=float, help="peak learning rate instead of the preset's")
    parser.add_argument("--warmup-steps", type=int, help="warm-up steps instead of the preset's (short to fine-tune)")
    parser.add_argument("--guides", type=Path, nargs="+", default=(),
                        help="guide-start sidecars (python -m tts.dit.train guides): train from the engine's starts too")
    parser.add_argument("--guided-share", type=float, default=TrainOptions.guided_share,
                        help="share of the examples with a guide that start from it")
    return parser


def build_extract_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.dit.train extract``."""
    parser = argparse.ArgumentParser(prog="python -m tts.dit.train extract",
                                     description="Align a feature cache's items and write the DiT's alignment sidecar.")
    parser.add_argument("--features", type=Path, required=True, help="refiner feature cache of the corpus")
    parser.add_argument("--aligner", default="speech_tokenizer", help="speech tokenizer with a CTC head (folder or shipped name)")
    parser.add_argument("--out", type=Path, help=f"default: {ALIGNMENTS_FILE} beside --features")
    return parser


def build_guides_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.dit.train guides``."""
    from tts.dit.guides import GUIDES_FILE, TRAINING_GUIDE_VOICES

    parser = argparse.ArgumentParser(prog="python -m tts.dit.train guides",
                                     description="Make the engine's guide start of each aligned item (tts.dit.guides).")
    parser.add_argument("--features", type=Path, required=True, help="refiner feature cache of the corpus")
    parser.add_argument("--alignments", type=Path, help=f"alignment sidecar (default: {ALIGNMENTS_FILE} beside --features)")
    parser.add_argument("--out", type=Path, help=f"default: {GUIDES_FILE} beside --features")
    parser.add_argument("--shard", default="0/1", help="K/N: the items at positions K modulo N (one process each)")
    parser.add_argument("--limit", type=int, help="at most this many items of the shard")
    parser.add_argument("--voices", nargs="+", default=list(TRAINING_GUIDE_VOICES), help="guide voices (training voices)")
    parser.add_argument("--dit", default="dit", help="the DiT whose engine makes the starts (its aligner and mel)")
    return parser


def _guides_command(argv: Sequence[str]) -> int:
    from tts.dit.engine import load_dit_engine
    from tts.dit.guides import GUIDES_FILE, extract_guides

    args = build_guides_parser().parse_args(argv)
    try:
        index, count = (int(part) for part in args.shard.split("/"))
    except ValueError:
        raise TimbreError(f"--shard must be K/N (e.g. 0/2), got {args.shard!r}") from None
    out = args.out or args.features.with_name(GUIDES_FILE)
    alignments = args.alignments or args.features.with_name(ALIGNMENTS_FILE)
    path = extract_guides(args.features, alignments, load_dit_engine(dit=args.dit), out, args.voices,
                          (index, count), args.limit)
    print(json.dumps({"guides": str(path)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tts.dit.train``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["extract"]:
            from tts.tokenizer.model import SpeechTokenizer

            args = build_extract_parser().parse_args(argv[1:])
            out = args.out or args.features.with_name(ALIGNMENTS_FILE)
            path = extract_alignments(args.features, SpeechTokenizer.from_pretrained(args.aligner), out, args.aligner)
            print(json.dumps({"alignments": str(path)}))
            return 0
        if argv[:1] == ["guides"]:
            return _guides_command(argv[1:])
        args = build_parser().parse_args(argv)
        summary = train(TrainOptions(
            features=args.features, out=args.out, alignments=args.alignments, config=args.config,
            init_from=args.init_from, max_steps=args.max_steps, max_minutes=args.max_minutes,
            batch_size=args.batch_size, save_every_minutes=args.save_every_minutes,
            save_every_steps=args.save_every_steps, log_every=args.log_every,
            validation_items=args.validation_items, seed=args.seed, learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps, guides=tuple(args.guides), guided_share=args.guided_share,
        ))
    except TimbreError as error:
        print(f"tts.dit.train: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
