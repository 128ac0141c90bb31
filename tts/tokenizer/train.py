"""Training recipe of the speech tokenizer, through `accelerate` (2 CPU processes here, many GPUs elsewhere).

    python -m tts.tokenizer.train --corpus CORPUS --out runs/tokenizer --config small --max-steps 20000
    accelerate launch --num_processes 2 -m tts.tokenizer.train --corpus CORPUS --out runs/tokenizer
    python -m tts.tokenizer.train --corpus CORPUS --out runs/tokenizer --max-steps 1000000 --max-minutes 6 --batch-frames 96000

- Data: a corpus folder (`tts.data.corpus`). Each item's audio is kept in memory (int16, 24 kHz); its text becomes
  CTC targets (its ``phonemes``, the ones the engine spoke, or `tts.text.phonemize` of its text where it has
  none -> `tts.tokenizer.align.ctc_targets`: phonemes without stress marks, word boundaries or punctuation); its ``voice_id`` a speaker label. Items longer
  than ``--max-seconds``, without phonemes, or with more phonemes than their CTC frames can hold are skipped
  and counted in the model card. With several processes each one trains on its own share of the items.
- Batches: items of similar length, up to ``--batch-frames`` padded mel frames per process and step; the mel
  is taken on the training device. On a GPU, threads make the batches ahead (`tts.training.data_workers`;
  ``TIMBRE_DATA_WORKERS``).
- Augmentation on the waveform, before the mel is taken (`augment_waveform`): random gain, stationary noise, and
  a random low-pass (4-11 kHz, i.e. audio recorded at 8-22 kHz and resampled, as phone and laptop recordings
  reach the studio), so tokens do not depend on level or bandwidth. (Doing it on the mel would be cheaper but
  is not faithful: a band-limited recording's empty bands sit at the resampler's floor, about -12, not at the
  log floor of -16.) Against the voice: half the clips play 0.88-1.14 times as fast (pitch, formants and tempo
  together) and half get their mel's frequency axis scaled by 0.86-1.16 (`tts.audio.warp_mel_bands`: formants
  without pitch), so the corpus's few source speakers stand for many more vocal tracts. The shipped tokenizer
  of 2026-11-22, trained without these two, read held-out synthesizers' phonemes at PER 0.33-0.53 against
  0.18-0.27 for unseen voices made from the training speakers.
- Fine-tuning: ``--init-from NAME_OR_PATH`` starts from a trained tokenizer of the preset's shape (e.g. the
  shipped ``speech_tokenizer``), usually with a lower ``--learning-rate``; the speaker adversary starts afresh.
- Loss: CTC on the quantized tokens' phoneme logits (FSQ needs no codebook loss, only `fsq_range_loss` to keep
  its inputs where tanh has slope); CTC on the alignment head, on the encoder's output before quantization
  (``alignment_ctc_weight``), which also keeps the encoder learning phonetic features while the narrow quantized
  path is still uninformative (in a first trial without it, every token of every clip was the same code after
  200 steps); and, when ``adversarial_weight > 0`` and the corpus has several voices, a speaker classifier on the
  FSQ codes behind gradient reversal: it learns to tell speakers apart while the encoder learns to leave it
  nothing to go on. Its reversed gradient only starts at ``adversarial_start_step``, once the tokens carry
  phonemes, and ramps up over ``adversarial_ramp_steps``. Only the tokenizer is exported; the adversary lives in
  the saved training state.
- AdamW, linear warm-up then cosine decay, gradient clipping.
- Length: ``--max-steps`` and optionally ``--max-minutes`` of wall-clock time for this session (data loading
  included; the final save, evaluation and export come after it). The cosine decay follows whichever runs out
  first (`tts.training.Budget`), so a time-limited run reaches the final learning rate at its deadline, then
  saves and exports as if it had reached ``--max-steps``. Warm-up and the adversary's start stay in steps.
- Resumable: ``accelerator.save_state`` into ``OUT/state`` every ``--save-every-minutes`` (5) and at the end,
  written to a temporary folder and renamed; a new run with the same ``--out`` resumes from it. Every save also
  exports the tokenizer to ``OUT/export`` (float16 safetensors + config + model card with the config, data
  recipe, steps and held-out metrics: PER, codebook usage, speaker leakage).

Shapes: ``B`` batch, ``M`` mel bands, ``F`` mel frames, ``N`` tokens, ``D`` width, ``S`` speakers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tts.audio import Audio, MelConfig, load_audio, log_mel, warp_mel_bands
from tts.checkpoints import config_to_dict
from tts.data.corpus import CorpusItem, read_metadata
from tts.errors import AudioError, TimbreError
from tts.text import phonemize
from tts.tokenizer.align import ctc_targets, min_ctc_frames
from tts.tokenizer.metrics import evaluate_tokenizer, heldout_phoneme_error_rates, heldout_summary
from tts.tokenizer.model import CTC_BLANK_ID, SpeechTokenizer, SpeechTokenizerConfig
from tts.training import (
    EXPORT_DIR,
    METRICS_FILE,
    STATE_DIR,
    Augmentation,
    Budget,
    TrainLog,
    add_run_arguments,
    append_metrics,
    augment_waveform,
    band_warp_factors,
    batch_source,
    configure_process,
    data_workers,
    resumable_state,
    save_due,
    save_state,
    split_validation,
    with_overrides,
)

logger = logging.getLogger(__name__)

RUN_INFO = "run.json"
"""Written into the state folder: the preset and model config, checked before a resume loads any weights."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is made of besides its data and length."""

    model: SpeechTokenizerConfig
    augmentation: Augmentation = Augmentation(gain_db=(-24.0, 6.0), noise_snr_db=(20.0, 50.0), lowpass_probability=0.4,
                                              speed_probability=0.5, band_warp_probability=0.5)
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 300
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    adversarial_weight: float = 0.1
    adversarial_start_step: int = 4000
    adversarial_ramp_steps: int = 2000
    adversary_hidden: int = 256
    alignment_ctc_weight: float = 0.5
    """Weight of the alignment head's CTC loss (used when the model has that head)."""
    fsq_range_weight: float = 1.0
    """Weight of `fsq_range_loss` (0 turns it off)."""


PRESETS: dict[str, TrainConfig] = {
    # ~5.2M parameters: the shipped default, ~2 h on 2 CPU cores.
    "small": TrainConfig(model=SpeechTokenizerConfig()),
    # ~2.1M parameters: short trials (minutes) on one core.
    "mini": TrainConfig(
        model=SpeechTokenizerConfig(dim=192, num_layers=2, heads=3, dim_head=64),
        learning_rate=2e-3,
        warmup_steps=100,
        adversarial_start_step=800,
        adversarial_ramp_steps=500,
        adversary_hidden=128,
    ),
    # ~34M parameters: for GPUs and real corpora.
    "base": TrainConfig(
        model=SpeechTokenizerConfig(dim=512, num_layers=8, heads=8, dim_head=64, head_layers=3, dropout=0.1),
        learning_rate=5e-4,
        warmup_steps=1000,
    ),
    # For tests only.
    "tiny": TrainConfig(
        model=SpeechTokenizerConfig(dim=32, num_layers=1, heads=2, dim_head=16, front_end_blocks=1, head_layers=1),
        warmup_steps=2,
        adversarial_start_step=1,
        adversarial_ramp_steps=2,
        adversary_hidden=16,
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    """One run: where the data and outputs are, how long, and how often to save."""

    corpus: Path
    out: Path
    config: str = "small"
    max_steps: int = 20_000
    max_minutes: float | None = None
    """Wall-clock budget of this session (None: none); see `tts.training.Budget`."""
    batch_frames: int = 12_000
    max_seconds: float = 20.0
    validation_items: int = 24
    probe_items: int = 160
    save_every_minutes: float = 5.0
    log_every: int = 25
    seed: int = 0
    adversarial_weight: float | None = None
    """Overrides the preset's `TrainConfig.adversarial_weight` (0 turns the speaker adversary off)."""
    adversarial_start_step: int | None = None
    """Overrides the preset's `TrainConfig.adversarial_start_step`."""
    learning_rate: float | None = None
    """Overrides the preset's peak learning rate."""
    warmup_steps: int | None = None
    """Overrides the preset's warm-up steps."""
    init_from: str | None = None
    """A trained tokenizer (name or folder) of the preset's shape to start from, instead of random weights."""
    heldout_clips: int = 4
    """Held-out texts per held-out voice for the final PER on voices no training recipe may use
    (`tts.tokenizer.metrics.heldout_phoneme_error_rates`; 0: not measured)."""


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclass
class CorpusData:
    """The usable items of a corpus, ready for batching."""

    waves: list[np.ndarray]
    """``(T,)`` int16 at the mel's sample rate (half the memory of float32)."""
    targets: list[list[int]]
    speakers: list[int]
    file_names: list[str]
    speaker_names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.waves)

    def subset(self, indices: Sequence[int]) -> "CorpusData":
        return CorpusData(
            [self.waves[i] for i in indices], [self.targets[i] for i in indices], [self.speakers[i] for i in indices],
            [self.file_names[i] for i in indices], self.speaker_names, dict(self.skipped),
        )

    def merged(self, other: "CorpusData") -> "CorpusData":
        return CorpusData(self.waves + other.waves, self.targets + other.targets, self.speakers + other.speakers,
                          self.file_names + other.file_names, self.speaker_names, dict(self.skipped))

    @property
    def samples(self) -> int:
        """Audio samples of all items."""
        return sum(len(w) for w in self.waves)

    def mels(self, config: MelConfig) -> list[torch.Tensor]:
        """``(M, F)`` log-mel of each item, without augmentation."""
        return [log_mel(_float(wave), config) for wave in self.waves]


def _float(wave: np.ndarray) -> np.ndarray:
    return wave.astype(np.float32) / 32767.0


def load_corpus(folder: Path, config: SpeechTokenizerConfig, max_seconds: float, workers: int = 1) -> CorpusData:
    """Audio, CTC targets and speaker labels of the usable items of a corpus folder (`workers` threads decode
    the audio in parallel; the decoders release the GIL)."""
    items = read_metadata(folder)
    if not items:
        raise TimbreError(f"{folder}: the corpus has no items")
    speaker_names = sorted({item.voice_id for item in items})
    speaker_index = {name: i for i, name in enumerate(speaker_names)}
    data = CorpusData([], [], [], [], speaker_names, {"too long": 0, "no phonemes": 0, "too fast": 0, "unreadable": 0})

    def read(item: CorpusItem) -> Audio | None:
        try:
            return load_audio(item.audio_path(folder), sample_rate=config.mel.sample_rate)
        except (AudioError, TimbreError) as error:
            logger.warning("skipping %s: %s", item.file_name, error)
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        loaded = pool.map(read, items)
        for item, audio in zip(items, loaded):
            if audio is None:
                data.skipped["unreadable"] += 1
                continue
            if audio.duration > max_seconds:
                data.skipped["too long"] += 1
                continue
            targets = ctc_targets(item.words() if item.phonemes else phonemize(item.text))
            if not targets:
                data.skipped["no phonemes"] += 1
                continue
            coarsest = max(config.mel_frames_per_ctc_frame, config.mel_frames_per_alignment_frame)
            ctc_frames = -(-config.mel.num_frames(len(audio)) // coarsest)
            if min_ctc_frames(targets) > ctc_frames:
                data.skipped["too fast"] += 1
                continue
            data.waves.append((np.clip(audio.samples, -1.0, 1.0) * 32767.0).astype(np.int16))
            data.targets.append(targets)
            data.speakers.append(speaker_index[item.voice_id])
            data.file_names.append(item.file_name)
    return data


class LengthBatcher:
    """Random batches of items of similar length, at most `batch_frames` padded frames each."""

    def __init__(self, lengths: Sequence[int], batch_frames: int, rng: np.random.Generator) -> None:
        self.order = np.argsort(np.asarray(lengths), kind="stable")
        self.lengths = np.asarray(lengths)[self.order]
        self.batch_frames = batch_frames
        self.rng = rng

    def __call__(self) -> list[int]:
        """Indices of one batch: a random item and its neighbours in length, longest first."""
        position = int(self.rng.integers(0, len(self.order)))
        end = position + 1
        # Grow towards the longer items while the padded size (count x longest) fits, then towards the shorter.
        while end < len(self.order) and (end - position + 1) * self.lengths[end] <= self.batch_frames:
            end += 1
        while position > 0 and (end - position + 1) * self.lengths[end - 1] <= self.batch_frames:
            position -= 1
        return self.order[position:end][::-1].tolist()


def make_batch(
    data: CorpusData, indices: Sequence[int], config: MelConfig,
    augmentation: Augmentation | None = None, rng: np.random.Generator | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """A padded batch: ``mel`` ``(B, M, F)`` of the (augmented) audio, taken on `device` (default CPU),
    ``mel_lengths``, concatenated ``targets``, ``target_lengths`` and ``speakers`` (on the CPU)."""
    waves = [_float(data.waves[i]) for i in indices]
    warps: list[float | None] = [None] * len(waves)
    if augmentation is not None:
        rng = rng or np.random.default_rng()
        waves = [augment_waveform(w, augmentation, rng) for w in waves]
        warps = band_warp_factors(len(waves), augmentation, rng)
    padded = np.zeros((len(waves), max(len(w) for w in waves)), dtype=np.float32)
    for row, wave in enumerate(waves):
        padded[row, : len(wave)] = wave
    mel = log_mel(torch.from_numpy(padded).to(device or "cpu"), config)
    for row, factor in enumerate(warps):
        if factor is not None:
            mel[row] = warp_mel_bands(mel[row], factor, config)
    return {
        "mel": mel,
        "mel_lengths": torch.tensor([config.num_frames(len(w)) for w in waves], dtype=torch.long),
        "targets": torch.tensor([t for i in indices for t in data.targets[i]], dtype=torch.long),
        "target_lengths": torch.tensor([len(data.targets[i]) for i in indices], dtype=torch.long),
        "speakers": torch.tensor([data.speakers[i] for i in indices], dtype=torch.long),
    }


# ---------------------------------------------------------------------------------------------------------
# Speaker adversary


class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return -ctx.scale * grad, None


class SpeakerAdversary(nn.Module):
    """Speaker classifier over the tokens' FSQ codes: a per-token MLP, a masked mean over tokens, a linear layer.

    ``(B, N, Q)`` codes and ``(B,)`` token lengths -> ``(B, S)`` logits. It reads the codes rather than their
    embeddings so that its reversed gradient reaches the encoder without passing through (and unlearning) the
    projection the CTC head reads.
    """

    def __init__(self, dim: int, num_speakers: int, hidden: int) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.out = nn.Linear(hidden, num_speakers)

    def forward(self, codes: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(codes.shape[1], device=codes.device)[None] < token_lengths[:, None]).float()
        h = self.frame(codes) * mask[..., None]
        return self.out(h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0))


class TrainingModel(nn.Module):
    """The tokenizer and, when on, the speaker adversary: one module, so data parallelism wraps both."""

    def __init__(self, tokenizer: SpeechTokenizer, adversary: SpeakerAdversary | None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.adversary = adversary

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor, reversal: float):
        """-> (`TokenizerOutput`, speaker logits ``(B, S)`` or None)."""
        output = self.tokenizer(mel, mel_lengths)
        if self.adversary is None:
            return output, None
        reversed_codes = GradientReversal.apply(output.codes, reversal)
        return output, self.adversary(reversed_codes, output.token_lengths)


# ---------------------------------------------------------------------------------------------------------
# Run state


@dataclass
class RunState:
    """Counters saved with the training state (plain values, so they load with ``weights_only``)."""

    step: int = 0
    train_seconds: float = 0.0
    frames: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.frames = int(state["frames"])


def initial_tokenizer(init_from: str | None, config: SpeechTokenizerConfig) -> SpeechTokenizer:
    """A new tokenizer of `config`, or the trained one `init_from` (refused unless it has exactly that config)."""
    if not init_from:
        return SpeechTokenizer(config)
    model = SpeechTokenizer.from_pretrained(init_from).float()
    if config_to_dict(model.config) != config_to_dict(config):
        raise TimbreError(f"--init-from {init_from}: its model config differs from the preset's; choose the "
                          "--config it was trained with")
    return model


def _probe_set(data: CorpusData, validation: CorpusData, probe_items: int, seed: int) -> CorpusData:
    """Held-out items plus up to `probe_items` training items, for the speaker probe (which needs several
    utterances per voice; it is trained and tested on different utterances either way)."""
    extra = np.random.default_rng(seed + 1).permutation(len(data))[: max(0, probe_items - len(validation))]
    return validation.merged(data.subset(sorted(extra.tolist())))


def export(
    model: SpeechTokenizer, folder: Path, options: TrainOptions, preset: TrainConfig, recipe: dict, state: RunState,
    metrics: dict, losses: dict,
) -> Path:
    """Write the tokenizer (float16) with a model card: config, data recipe, steps, held-out metrics."""
    card = {
        "Model": (
            "Speech tokenizer: log-mel -> FSQ tokens at "
            f"{model.config.token_rate:g} Hz ({model.config.codebook_size} codes), CTC phoneme head on the quantized "
            f"tokens at {model.config.ctc_rate:g} Hz"
            + (", alignment head at the token rate on the encoder output" if model.config.alignment_head else "")
            + f". {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters."
        ),
        "Training": {
            "preset": options.config,
            "steps": state.step,
            "max steps": options.max_steps,
            "max minutes": options.max_minutes,
            "train seconds": round(state.train_seconds, 1),
            "mel frames seen": state.frames,
            "frames per second": round(state.frames / max(state.train_seconds, 1e-9), 1),
            "last losses": json.dumps({k: round(v, 4) for k, v in losses.items()}),
        },
        "Training config": json.dumps(config_to_dict(replace(preset, model=model.config)), sort_keys=True),
        "Data recipe": recipe,
        "Held-out metrics": metrics,
    }
    return model.save_pretrained(folder, model_card=card, dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# The loop


def train(options: TrainOptions, on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) one training run; returns a summary (steps, start step, losses, metrics)."""
    from accelerate import Accelerator

    if options.config not in PRESETS:
        raise TimbreError(f"unknown config {options.config!r}; choose one of {', '.join(PRESETS)}")
    if options.max_steps < 1 or options.batch_frames < 1 or options.max_seconds <= 0:
        raise TimbreError("--max-steps, --batch-frames and --max-seconds must be positive")
    preset = with_overrides(PRESETS[options.config], adversarial_weight=options.adversarial_weight,
                            adversarial_start_step=options.adversarial_start_step,
                            learning_rate=options.learning_rate, warmup_steps=options.warmup_steps)
    config = preset.model
    budget = Budget(options.max_steps, options.max_minutes)
    accelerator = Accelerator()
    configure_process(accelerator)
    out = Path(options.out)
    is_main = accelerator.is_main_process
    run_info = {"preset": options.config, "model": config_to_dict(config)}
    state_dir = out / STATE_DIR
    saved_dir = resumable_state(state_dir)
    if saved_dir is not None:
        saved = json.loads((saved_dir / RUN_INFO).read_text(encoding="utf-8")) if (saved_dir / RUN_INFO).is_file() else {}
        if saved != run_info:
            raise TimbreError(
                f"{state_dir} holds a {saved.get('preset', 'different')!r} run with another model config; "
                "use another --out, or the same --config"
            )

    data = load_corpus(Path(options.corpus), config, options.max_seconds, workers=torch.get_num_threads())
    if len(data) == 0:
        raise TimbreError(f"{options.corpus}: no usable items (skipped: {data.skipped})")
    train_idx, val_idx = split_validation(len(data), options.validation_items, options.seed, 5)
    shard = train_idx[accelerator.process_index :: accelerator.num_processes] or train_idx
    train_data, validation = data.subset(shard), data.subset(val_idx)
    probe_data = _probe_set(data.subset(train_idx), validation, options.probe_items, options.seed)
    num_speakers = len(data.speaker_names)

    torch.manual_seed(options.seed)
    tokenizer = initial_tokenizer(options.init_from, config)
    use_adversary = preset.adversarial_weight > 0 and num_speakers > 1
    adversary = SpeakerAdversary(len(config.fsq_levels), num_speakers, preset.adversary_hidden) if use_adversary else None
    model = TrainingModel(tokenizer, adversary)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.learning_rate, betas=preset.betas, weight_decay=preset.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = RunState()
    accelerator.register_for_checkpointing(state)
    start_step = 0
    resume_from = resumable_state(state_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        start_step = state.step
        if is_main:
            logger.info("resumed from %s at step %d", state_dir, state.step)

    recipe = {
        "corpus": str(Path(options.corpus).resolve()),
        "items used": len(data),
        "items skipped": json.dumps(data.skipped),
        "hours": round(data.samples / config.mel.sample_rate / 3600, 3),
        "voices": json.dumps(data.speaker_names),
        "validation items": len(validation),
        "targets": "the item's spoken phonemes (tts.text.phonemize(item.text) where it has none), without stress marks, word boundaries or punctuation",
        "augmentation": json.dumps(asdict(preset.augmentation)),
        "initialized from": options.init_from or "random weights",
        "adversary": (f"weight {preset.adversarial_weight} from step {preset.adversarial_start_step}"
                      if use_adversary else "off"),
    }
    lengths = [config.mel.num_frames(len(w)) for w in train_data.waves]
    device = accelerator.device

    def batches(rng: np.random.Generator) -> Callable[[], dict[str, torch.Tensor]]:
        batcher = LengthBatcher(lengths, options.batch_frames, rng)
        return lambda: make_batch(train_data, batcher(), config.mel, preset.augmentation, rng, device=device)

    next_batch, close_batches = batch_source(
        batches, (options.seed, accelerator.process_index, state.step), data_workers(accelerator)
    )
    validation_mels, probe_mels = validation.mels(config.mel), probe_data.mels(config.mel)
    unwrap = lambda: accelerator.unwrap_model(model).tokenizer  # noqa: E731
    last_save = time.monotonic()
    log = TrainLog(out / METRICS_FILE, is_main, on_log)
    last_losses: dict[str, float] = {}
    metrics: dict = {}

    def evaluate(full: bool) -> dict:
        """PER and codebook usage on the held-out items; with `full`, speaker leakage on the probe set too."""
        metrics_dict = evaluate_tokenizer(unwrap(), validation_mels, validation.targets).to_dict()
        if full:
            probe = evaluate_tokenizer(unwrap(), probe_mels, probe_data.targets, probe_data.speakers, options.seed)
            for key in ("speaker_accuracy", "speaker_chance", "mel_speaker_accuracy"):
                metrics_dict[key] = probe.to_dict()[key]
            metrics_dict["probe_utterances"] = len(probe_data)
            if options.heldout_clips > 0:
                try:
                    rates = heldout_phoneme_error_rates(unwrap(), clips_per_voice=options.heldout_clips)
                except Exception as error:  # noqa: BLE001 - a missing base speaker must not lose the run
                    logger.warning("held-out voices not measured: %s", error)
                else:
                    metrics_dict.update({key: round(value, 4) for key, value in heldout_summary(rates).items()})
                    metrics_dict["heldout_per_by_voice"] = json.dumps({k: round(v, 4) for k, v in rates.items()})
        return metrics_dict

    def save(final: bool) -> None:
        nonlocal metrics
        save_state(
            accelerator,
            state_dir,
            before_swap=lambda tmp: (tmp / RUN_INFO).write_text(json.dumps(run_info, sort_keys=True), encoding="utf-8"),
        )
        if is_main:
            metrics = evaluate(full=final)
            export(unwrap(), out / EXPORT_DIR, options, preset, recipe, state, metrics, last_losses)
            append_metrics(out / METRICS_FILE, {"step": state.step, "event": "save", **metrics})
        accelerator.wait_for_everyone()

    model.train()
    budget.start_loop()
    while not budget.done(state.step):
        step_start = time.monotonic()
        lr = budget.learning_rate(preset, state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next_batch()
        mel = batch["mel"].to(device)
        ramp = min(1.0, max(0, state.step - preset.adversarial_start_step) / max(1, preset.adversarial_ramp_steps))
        output, speaker_logits = model(mel, batch["mel_lengths"].to(device), preset.adversarial_weight * ramp)
        targets, target_lengths = batch["targets"].to(device), batch["target_lengths"].to(device)
        ctc = ctc_loss(output.ctc_logits, output.ctc_lengths, targets, target_lengths)
        loss = ctc
        losses = {"ctc": ctc.item()}
        if preset.fsq_range_weight > 0:
            fsq_range = fsq_range_loss(output.unbounded, output.token_lengths)
            loss = loss + preset.fsq_range_weight * fsq_range
            losses["fsq_range"] = fsq_range.item()
        if output.alignment_logits is not None:
            alignment_ctc = ctc_loss(output.alignment_logits, output.token_lengths, targets, target_lengths)
            loss = loss + preset.alignment_ctc_weight * alignment_ctc
            losses["alignment_ctc"] = alignment_ctc.item()
        if speaker_logits is not None:
            speaker_ce = F.cross_entropy(speaker_logits, batch["speakers"].to(device))
            loss = loss + speaker_ce
            losses["speaker_ce"] = speaker_ce.item()
            losses["speaker_acc"] = float((speaker_logits.argmax(-1).cpu() == batch["speakers"]).float().mean())
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), preset.grad_clip)
        optimizer.step()

        frames = int(batch["mel_lengths"].sum()) * accelerator.num_processes
        state.step += 1
        state.frames += frames
        state.train_seconds += time.monotonic() - step_start
        log.add(**losses)
        last_losses = losses
        budget.tick(accelerator)
        last = budget.done(state.step)
        if state.step % options.log_every == 0 or last:
            log.emit(state.step, lr, frames_per_second=round(state.frames / max(state.train_seconds, 1e-9), 1))
        if not last and save_due(
            accelerator, state.step, options.max_steps, last_save, options.save_every_minutes
        ):
            save(final=False)
            last_save = time.monotonic()
    close_batches()
    save(final=True)
    return {
        "steps": state.step,
        "start_step": start_step,
        "losses": last_losses,
        "metrics": metrics,
        "frames_per_second": state.frames / max(state.train_seconds, 1e-9),
        "export": str(out / EXPORT_DIR),
    }


FSQ_RANGE = 2.0
"""FSQ inputs beyond +-2 sit where tanh is flat (slope below 0.07), and the rounding's gradient dies with it."""


def fsq_range_loss(unbounded: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared excess of the FSQ inputs ``(B, N, Q)`` beyond `FSQ_RANGE`, over real tokens.

    Without it most inputs drifted deep into tanh's flat tails (80 % of one dimension beyond +-2 after 1,800
    steps) and the tokens' CTC loss lagged far behind the encoder's (2.3 against 1.0 per phoneme).
    """
    mask = (torch.arange(unbounded.shape[1], device=unbounded.device)[None] < token_lengths[:, None])[..., None]
    excess = (unbounded.abs() - FSQ_RANGE).clamp(min=0).square() * mask
    return excess.sum() / (mask.sum() * unbounded.shape[-1]).clamp(min=1)


def ctc_loss(
    logits: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """CTC loss of ``(B, T, V)`` logits against concatenated targets, averaged per target phoneme then batch."""
    log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
    return F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=CTC_BLANK_ID, reduction="mean",
                      zero_infinity=True)


# ---------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.tokenizer.train``."""
    parser = argparse.ArgumentParser(prog="python -m tts.tokenizer.train", description="Train the speech tokenizer.")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (metadata.jsonl + audio)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: state/, export/, metrics.jsonl")
    parser.add_argument("--config", default="small", choices=sorted(PRESETS), help="model and optimizer preset")
    add_run_arguments(parser, TrainOptions, save_every_steps=False)
    parser.add_argument("--batch-frames", type=int, default=TrainOptions.batch_frames,
                        help="padded mel frames per batch and process")
    parser.add_argument("--max-seconds", type=float, default=TrainOptions.max_seconds, help="skip longer items")
    parser.add_argument("--validation-items", type=int, default=TrainOptions.validation_items)
    parser.add_argument("--heldout-clips", type=int, default=TrainOptions.heldout_clips,
                        help="held-out texts per held-out voice for the final PER on unseen voices (0: skip)")
    parser.add_argument("--adversarial-weight", type=float, default=None,
                        help="speaker adversary weight (0 turns it off; default: the preset's)")
    parser.add_argument("--adversarial-start-step", type=int, default=None,
                        help="step the adversary's reversed gradient starts at (default: the preset's)")
    parser.add_argument("--init-from", metavar="NAME_OR_PATH", help="fine-tune this trained tokenizer (e.g. speech_tokenizer)")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (default: the preset's)")
    parser.add_argument("--warmup-steps", type=int, help="warm-up steps (default: the preset's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tts.tokenizer.train``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = TrainOptions(
        corpus=args.corpus, out=args.out, config=args.config, max_steps=args.max_steps, max_minutes=args.max_minutes, batch_frames=args.batch_frames,
        max_seconds=args.max_seconds, validation_items=args.validation_items, heldout_clips=args.heldout_clips,
        save_every_minutes=args.save_every_minutes, log_every=args.log_every,
        adversarial_weight=args.adversarial_weight, adversarial_start_step=args.adversarial_start_step,
        learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, init_from=args.init_from, seed=args.seed,
    )
    try:
        summary = train(options)
    except TimbreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
