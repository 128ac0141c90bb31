"""Training recipe of the token LM, through `accelerate` (CPU processes here, GPUs elsewhere).

    python -m tts.lm.train extract-units --corpus CORPUS --tokenizer TOKENIZER --features FEATURES --out UNITS
    python -m tts.lm.train --corpus CORPUS --features FEATURES --units UNITS --out runs/lm --config small

- Data: the refiner's feature cache (`tts.refiner.data`: the frozen tokenizer's speech tokens of every corpus
  item) and the LM unit file (`tts.lm.data`: each item's text units and how many tokens each one owns, from
  forced alignment with the same tokenizer). Rows are (same-voice prompt, target) streams (`StreamSampler`).
- Objective: next-id cross-entropy over the interleaved part of the stream (speech tokens, the moves to the next
  unit, ``<eos>``); the text prefix and style ids are given, not predicted.
- AdamW, linear warm-up then cosine decay, gradient clipping. Length: ``--max-steps`` and optionally
  ``--max-minutes`` of wall-clock time for this session (`tts.training.Budget`: the decay follows whichever runs
  out first, then the run saves and exports as if it had reached ``--max-steps``).
- Resumable: ``accelerator.save_state`` into ``OUT/state`` every ``--save-every-minutes`` and at the end; each
  save exports the model to ``OUT/export_last``, and to ``OUT/export`` when its validation loss is the run's
  lowest (fp16 safetensors + config + model card with the recipe, steps and validation loss / speech-token
  accuracy): a small corpus is memorized quickly, so the last model is rarely the best.

Shapes: ``B`` batch, ``L`` stream length, ``V`` vocabulary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tts.checkpoints import config_to_dict
from tts.errors import TimbreError
from tts.lm.data import IGNORE_INDEX, StreamBatch, StreamSampler, extract_units, read_units
from tts.lm.model import SpeechTokenLM, SpeechTokenLMConfig, count_parameters
from tts.refiner.data import FeatureCache
from tts.training import (
    EXPORT_DIR,
    METRICS_FILE,
    STATE_DIR,
    Budget,
    Progress,
    TrainLog,
    add_run_arguments,
    append_metrics,
    configure_process,
    resume_progress,
    save_state,
    split_validation,
    train_steps,
    training_card,
)

logger = logging.getLogger(__name__)

LAST_EXPORT_DIR = "export_last"
BEST_FILE = "best_validation.json"


@dataclass(frozen=True)
class TrainConfig:
    """Model and optimizer of a run (the tokenizer fields of ``model`` come from the feature cache)."""

    model: SpeechTokenLMConfig
    learning_rate: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    warmup_steps: int = 300
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    prompt_probability: float = 0.8
    max_length: int = 1536


PRESETS: dict[str, TrainConfig] = {
    # 10.3M parameters: the shipped default (a few hundred tokens per second on 2 CPU cores).
    "small": TrainConfig(model=SpeechTokenLMConfig()),
    # 32.7M: for GPUs and longer runs.
    "base": TrainConfig(model=SpeechTokenLMConfig(dim=512, layers=10, heads=8, kv_heads=4, ff_dim=1536), learning_rate=3e-4),
    # For tests only.
    "tiny": TrainConfig(
        model=SpeechTokenLMConfig(dim=32, layers=2, heads=2, kv_heads=1, ff_dim=64, max_positions=2048),
        learning_rate=2e-3, warmup_steps=2, max_length=512,
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    """One run: data, outputs, length, saving."""

    corpus: Path
    features: Path
    units: Path
    out: Path
    config: str = "small"
    max_steps: int = 20_000
    max_minutes: float | None = None
    batch_size: int = 16
    save_every_minutes: float = 5.0
    save_every_steps: int | None = None
    log_every: int = 50
    validation_items: int = 32
    seed: int = 0


def lm_loss(model, batch: StreamBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean next-id cross-entropy over the labelled positions, and the speech-token accuracy."""
    logits = model(batch.ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    labels = batch.labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    with torch.no_grad():
        config = getattr(model, "module", model).config
        speech = labels >= config.speech_offset
        correct = (logits.argmax(-1) == labels) & speech
        accuracy = float(correct.sum()) / max(1, int(speech.sum()))
    return loss, {"speech_accuracy": accuracy}


@torch.no_grad()
def validate(model: SpeechTokenLM, batches: Sequence[StreamBatch]) -> dict[str, float]:
    """Validation loss and speech-token accuracy over fixed batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses, accuracies = [], []
    for batch in batches:
        loss, extra = lm_loss(model, batch.to(device))
        losses.append(float(loss))
        accuracies.append(extra["speech_accuracy"])
    model.train(was_training)
    return {"loss": float(np.mean(losses)), "speech_accuracy": float(np.mean(accuracies))} if losses else {}


def is_best(path: Path, validation: dict[str, float]) -> bool:
    """Whether `validation` has the lowest loss of the run so far (recorded in `path`, which survives resumes).

    The LM memorizes a small corpus fast (on 1.6 h its validation loss was lowest after ~240 steps of 64 and
    rose past chance by 2,000 while the training loss fell to 0.002), so ``export/`` keeps the best model and
    ``export_last/`` the latest."""
    loss = validation.get("loss")
    if loss is None or loss != loss:
        return False
    if path.is_file():
        best = json.loads(path.read_text(encoding="utf-8"))
        if best.get("loss", float("inf")) <= loss:
            return False
    from tts.files import atomic_write_text

    atomic_write_text(path, json.dumps(validation))
    return True


def model_config_for(preset: TrainConfig, cache: FeatureCache) -> SpeechTokenLMConfig:
    """The preset's model config with the feature cache's tokenizer (codebook, rate)."""
    rate = cache.mel_config.frame_rate / cache.frames_per_token
    return replace(preset.model, codebook_size=cache.codebook_size, token_rate=rate, tokenizer=cache.tokenizer)


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) one training run; returns a summary (steps, history, validation)."""
    from accelerate import Accelerator

    if options.config not in PRESETS:
        raise TimbreError(f"unknown config {options.config!r}; choose one of {', '.join(PRESETS)}")
    if options.max_steps < 1 or options.batch_size < 1:
        raise TimbreError("--max-steps and --batch-size must be positive")
    preset = PRESETS[options.config]
    budget = Budget(options.max_steps, options.max_minutes)
    accelerator = Accelerator()
    configure_process(accelerator)
    out = Path(options.out)
    main = accelerator.is_main_process

    cache = FeatureCache(options.features)
    items, meta = read_units(options.units)
    if meta.get("tokenizer") != cache.tokenizer:
        raise TimbreError(f"{options.units} was aligned for tokenizer {meta.get('tokenizer')!r}, the features hold "
                          f"{cache.tokenizer!r}: run extract-units again")
    train_idx, val_idx = split_validation(len(items), options.validation_items, options.seed, 5)
    config = model_config_for(preset, cache)

    torch.manual_seed(options.seed)
    model = SpeechTokenLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.learning_rate, betas=preset.betas,
                                  weight_decay=preset.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    state_dir = out / STATE_DIR
    progress = resume_progress(accelerator, state_dir, options.config)

    training_items = [items[i] for i in train_idx]
    sampler = StreamSampler(
        cache, training_items[accelerator.process_index :: accelerator.num_processes] or training_items, config,
        np.random.default_rng([options.seed, accelerator.process_index, progress.step]),
        preset.prompt_probability, preset.max_length,
    )
    validation_batches = (
        StreamSampler(cache, [items[i] for i in val_idx], config, np.random.default_rng(options.seed),
                      preset.prompt_probability, preset.max_length).fixed_batches(
            max(1, len(val_idx) // options.batch_size), min(options.batch_size, len(val_idx)))
        if main else []
    )
    recipe = {
        "corpus": str(Path(options.corpus).resolve()),
        "features": str(Path(options.features).resolve()),
        "units": str(Path(options.units).resolve()),
        "tokenizer": cache.tokenizer,
        "items": len(items),
        "voices": len({item.voice_id for item in items}),
        "skipped at alignment": json.loads(meta.get("skipped", "{}")),
        "validation items": len(val_idx),
        "prompt probability": preset.prompt_probability,
    }
    log = TrainLog(out / METRICS_FILE, main, on_log, accelerator.num_processes, per_second=("tokens",))
    validation: dict[str, float] = {}

    def save_and_export() -> None:
        nonlocal validation
        save_state(accelerator, state_dir)
        if main:
            lm = accelerator.unwrap_model(model)
            validation = {"step": progress.step, **validate(lm, validation_batches)}
            export(lm, out / LAST_EXPORT_DIR, options, recipe, progress, validation, log.last)
            if is_best(out / BEST_FILE, validation):
                export(lm, out / EXPORT_DIR, options, recipe, progress, validation, log.last)
            append_metrics(out / METRICS_FILE, {"event": "validation", **validation})
        accelerator.wait_for_everyone()

    def step(batch) -> tuple[torch.Tensor, dict]:
        loss, extra = lm_loss(model, batch)
        return loss, {"loss": loss.item(), "speech_accuracy": extra["speech_accuracy"],
                      "tokens": int(batch.attention_mask.sum())}

    model.train()
    train_steps(accelerator, model, optimizer, preset, budget, progress, options, log,
                partial(sampler.batch, options.batch_size), step, save_and_export)

    accelerator.wait_for_everyone()
    return {"step": progress.step, "history": log.history, "validation": validation,
            "parameters": count_parameters(accelerator.unwrap_model(model))}


def export(model: SpeechTokenLM, folder: Path, options: TrainOptions, recipe: dict, progress: Progress,
           validation: dict[str, float], last: list[dict]) -> Path:
    """Save the model in fp16 with a model card (config, data recipe, training, metrics)."""
    preset = PRESETS[options.config]
    card = {
        "Model": {
            "architecture": "decoder-only transformer (transformers Llama) over phoneme-interleaved speech tokens",
            "preset": options.config,
            "parameters": count_parameters(model),
            "speech tokens": f"{model.config.tokenizer!r}: {model.config.codebook_size} codes at {model.config.token_rate:g} Hz",
            "alignment": "text forced unit by unit at inference (tts.lm.generate): no skipped or repeated words",
        },
        "Config": config_to_dict(model.config),
        "Data": recipe,
        "Training": training_card(progress, options, preset, last),
        "Metrics": validation,
    }
    return model.save_pretrained(folder, model_card=card, dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tts.lm.train", description="Train the speech-token LM.")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (metadata.jsonl + audio)")
    parser.add_argument("--features", type=Path, required=True, help="feature cache (tts.refiner.train extract-tokens)")
    parser.add_argument("--units", type=Path, required=True, help="LM unit file (extract-units)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: state/, export/, metrics.jsonl")
    parser.add_argument("--config", choices=sorted(PRESETS), default=TrainOptions.config)
    add_run_arguments(parser, TrainOptions)
    parser.add_argument("--batch-size", type=int, default=TrainOptions.batch_size, help="per process")
    parser.add_argument("--validation-items", type=int, default=TrainOptions.validation_items)
    return parser


def build_extract_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tts.lm.train extract-units",
                                     description="Align every corpus item's phonemes with its speech tokens.")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--tokenizer", required=True, help="speech tokenizer: folder, shipped name or hub id")
    parser.add_argument("--features", type=Path, required=True, help="feature cache made with that tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors unit file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tts.lm.train``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if argv[:1] == ["extract-units"]:
            from tts.device import select_device
            from tts.tokenizer.model import SpeechTokenizer

            args = build_extract_parser().parse_args(argv[1:])
            device = select_device(os.environ.get("TIMBRE_DEVICE") or "auto")
            tokenizer = SpeechTokenizer.from_pretrained(args.tokenizer, device=device)
            extract_units(args.corpus, args.features, tokenizer, args.out)
            return 0
        args = build_parser().parse_args(argv)
        options = TrainOptions(**{k: v for k, v in vars(args).items()})
        summary = train(options)
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
        return 0
    except TimbreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
