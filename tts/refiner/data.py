"""Training data of the flow refiner: the feature cache of a corpus, and (prompt, target) batches drawn from it.

Feature cache: one safetensors file per (corpus, tokenizer), written once by `extract_features`
(``python -m tts.refiner.train extract-tokens``) and read lazily by `FeatureCache`:

- ``mels`` ``(sum F, M)`` float16: every item's studio log-mel, frames concatenated (a frame span is one
  contiguous read); ``mel_lengths`` ``(U,)``;
- ``tokens`` ``(sum N,)`` int32 from the frozen tokenizer, ``N = ceil(F / frames_per_token)``; ``token_lengths``;
- metadata (strings): format and version, the tokenizer name, its codebook size, frames per token and mel config,
  the corpus folder, the items' file names and voice ids, and the corpus mel mean and standard deviation (the
  refiner's flow-space normalisation).

Batches (`BatchSampler`): for each target utterance a voice prompt is either another utterance of the same
``voice_id`` (a random span of it) or, with ``same_utterance_probability`` (and always for a voice with one
utterance), the utterance's own prefix, the target then being cut from the rest. Every span starts and ends on a
token boundary. Prompts are augmented the way users' recordings differ from the corpus, with the studio's
waveform augmentation (`tts.training.augment_waveform`): a random gain, background noise and a random
low-pass (4-11 kHz, as from an 8-22 kHz recording), applied to the audio before the mel, so the refiner learns to
give full-band output at a steady level from band-limited, noisy prompts. Prompt tokens stay those of the clean
audio.
With style labels (`corpus_styles`), every target carries its utterance's style id and intensity from the corpus
metadata, while its prompt (another utterance of the voice, often in another style) gives the timbre: the refiner
learns to take the style from the label rather than from the prompt.
With self-distillation pairs (`tts.refiner.distill`), a share of the targets get the tokens of their
utterance as re-rendered in another voice, so the refiner learns to take the timbre from the prompt only.

Shapes: ``B`` batch, ``M`` mel bands, ``F`` frames of an item, ``T`` target frames, ``P`` prompt frames,
``N``/``Np`` their tokens, ``U`` items.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from tts.audio import MelConfig, load_audio, log_mel
from tts.checkpoints import config_from_dict, config_to_dict
from tts.data.corpus import read_metadata
from tts.errors import AudioError, TimbreError
from tts.files import atomic_write_bytes, run_bounds
from tts.training import Augmentation, augment_waveform

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "TokenizerLike",
    "extract_features",
    "FeatureCache",
    "PROMPT_AUGMENTATION",
    "BatchRecipe",
    "RefinerBatch",
    "BatchSampler",
    "corpus_styles",
]

CACHE_FORMAT = "timbre-refiner-features"
CACHE_VERSION = 1


class TokenizerLike(Protocol):
    """What the cache needs of a speech tokenizer (`tts.tokenizer.SpeechTokenizer` is one).

    ``config`` has ``frames_per_token``, ``codebook_size`` and ``mel`` (a `MelConfig`).
    """

    config: Any

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, M, F)`` log-mel -> tokens ``(B, N)``, token lengths ``(B,)``."""
        ...


# ---------------------------------------------------------------------------------------------------------
# The feature cache


def extract_features(
    corpus: str | os.PathLike,
    tokenizer: TokenizerLike,
    out: str | os.PathLike,
    tokenizer_name: str,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Tokenize every readable item of `corpus` with the frozen `tokenizer`; write the feature cache to `out`.

    Unreadable audio is skipped with a warning. Returns `out`.

    Raises:
        TimbreError: no usable item, or a tokenizer whose token count is not ``ceil(F / frames_per_token)``.
    """
    corpus, out = Path(corpus), Path(out)
    config = tokenizer.config
    mel_config: MelConfig = config.mel
    frames_per_token = int(config.frames_per_token)
    items = read_metadata(corpus)
    mels, tokens, kept = [], [], []
    total, total_sq, count = 0.0, 0.0, 0
    was_training = getattr(tokenizer, "training", False)
    if hasattr(tokenizer, "eval"):
        tokenizer.eval()
    with torch.no_grad():
        for number, item in enumerate(items, 1):
            try:
                samples = load_audio(item.audio_path(corpus), sample_rate=mel_config.sample_rate).samples
            except (AudioError, TimbreError) as error:
                logger.warning("skipping %s: %s", item.file_name, error)
                continue
            mel = log_mel(torch.from_numpy(samples), mel_config)  # (M, F)
            frames = mel.shape[-1]
            ids, lengths = tokenizer.encode(mel[None], torch.tensor([frames]))
            expected = -(-frames // frames_per_token)
            if int(lengths[0]) != expected:
                raise TimbreError(
                    f"the tokenizer gave {int(lengths[0])} tokens for {frames} mel frames of {item.file_name}; the "
                    f"refiner needs ceil(frames / {frames_per_token}) = {expected}"
                )
            mels.append(mel.T.to(torch.float16))
            tokens.append(ids[0, :expected].to(torch.int32))
            kept.append({"file_name": item.file_name, "voice_id": item.voice_id})
            total += float(mel.double().sum())
            total_sq += float(mel.double().pow(2).sum())
            count += mel.numel()
            if progress is not None:
                progress(number, len(items))
    if hasattr(tokenizer, "train"):
        tokenizer.train(was_training)
    if not kept:
        raise TimbreError(f"{corpus}: none of the {len(items)} corpus items could be read")
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 1e-12))
    tensors = {
        "mels": torch.cat(mels).contiguous(),
        "mel_lengths": torch.tensor([m.shape[0] for m in mels], dtype=torch.int64),
        "tokens": torch.cat(tokens).contiguous(),
        "token_lengths": torch.tensor([t.shape[0] for t in tokens], dtype=torch.int64),
    }
    metadata = {
        "format": CACHE_FORMAT,
        "version": str(CACHE_VERSION),
        "tokenizer": tokenizer_name,
        "codebook_size": str(int(config.codebook_size)),
        "frames_per_token": str(frames_per_token),
        "mel": json.dumps(config_to_dict(mel_config)),
        "mel_mean": repr(mean),
        "mel_std": repr(std),
        "corpus": str(corpus.resolve()),
        "items": json.dumps(kept, ensure_ascii=False),
    }
    from safetensors.torch import save

    out = atomic_write_bytes(out, save(tensors, metadata=metadata))
    logger.info("wrote %s: %d items, %.2f h", out, len(kept), count / mel_config.n_mels / mel_config.frame_rate / 3600)
    return out


@dataclass(frozen=True)
class CacheItem:
    """One item of a `FeatureCache`: where its frames and tokens are in the concatenated tensors."""

    file_name: str
    voice_id: str
    mel_offset: int
    frames: int
    token_offset: int
    num_tokens: int


class FeatureCache:
    """A feature cache written by `extract_features`; mels are read lazily (memory-mapped), tokens kept in memory.

    Attributes:
        items: the `CacheItem` list.
        tokenizer, codebook_size, frames_per_token, mel_config, mel_mean, mel_std, corpus: from the metadata.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = Path(path)
        if not self.path.is_file():
            raise TimbreError(f"{self.path}: no feature cache; write one with `python -m tts.refiner.train extract-tokens`")
        try:
            self._handle = safe_open(str(self.path), framework="pt")
        except (SafetensorError, OSError) as error:
            raise TimbreError(f"{self.path}: not a feature cache ({error})") from error
        meta = self._handle.metadata() or {}
        if meta.get("format") != CACHE_FORMAT or meta.get("version") != str(CACHE_VERSION):
            raise TimbreError(
                f"{self.path}: not a version-{CACHE_VERSION} refiner feature cache (format {meta.get('format')!r}, "
                f"version {meta.get('version')!r}); extract the tokens again"
            )
        self.tokenizer = meta["tokenizer"]
        self.codebook_size = int(meta["codebook_size"])
        self.frames_per_token = int(meta["frames_per_token"])
        self.mel_config = config_from_dict(MelConfig, json.loads(meta["mel"]), where=f"{self.path} mel")
        self.mel_mean = float(meta["mel_mean"])
        self.mel_std = float(meta["mel_std"])
        self.corpus = meta["corpus"]
        records = json.loads(meta["items"])
        mel_lengths = self._handle.get_tensor("mel_lengths").tolist()
        token_lengths = self._handle.get_tensor("token_lengths").tolist()
        self._tokens = self._handle.get_tensor("tokens")
        self.items = [
            CacheItem(r["file_name"], r["voice_id"], mel_start, mel_end - mel_start, token_start, token_end - token_start)
            for r, (mel_start, mel_end), (token_start, token_end)
            in zip(records, run_bounds(mel_lengths), run_bounds(token_lengths))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def mel(self, index: int, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Frames ``start .. end - 1`` of item `index`'s log-mel, ``(M, frames)`` float32."""
        item = self.items[index]
        end = item.frames if end is None else end
        rows = self._handle.get_slice("mels")[item.mel_offset + start : item.mel_offset + end]
        return rows.float().T.contiguous()

    def tokens(self, index: int, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Tokens ``start .. end - 1`` of item `index`, ``(n,)`` int64."""
        item = self.items[index]
        end = item.num_tokens if end is None else end
        return self._tokens[item.token_offset + start : item.token_offset + end].long()

    def hours(self) -> float:
        """Hours of audio in the cache."""
        return sum(item.frames for item in self.items) / self.mel_config.frame_rate / 3600


# ---------------------------------------------------------------------------------------------------------
# Batches


PROMPT_AUGMENTATION = Augmentation(
    gain_db=(-6.0, 6.0),
    noise_probability=0.3,
    noise_snr_db=(15.0, 40.0),
    lowpass_probability=0.4,
    lowpass_hz=(4000.0, 11000.0),
)
"""Prompts: phone and laptop recordings are often band-limited and noisier than the corpus."""


@dataclass(frozen=True)
class BatchRecipe:
    """How (prompt, target) pairs are cut.

    Attributes:
        target_frames: longest target span (frames; rounded down to whole tokens).
        prompt_frames: range of prompt lengths (frames).
        same_utterance_probability: chance that the prompt is the target utterance's own prefix.
        augmentation: prompt augmentation (applied when the sampler has the corpus audio).
    """

    target_frames: int = 282
    prompt_frames: tuple[int, int] = (141, 282)
    same_utterance_probability: float = 0.3
    augmentation: Augmentation = PROMPT_AUGMENTATION


@dataclass
class RefinerBatch:
    """A padded batch for `FlowRefiner.forward`.

    Attributes:
        target_mel: ``(B, M, T)`` log-mel (padding: silence); tokens ``(B, N)``; token_lengths ``(B,)``.
        prompt_mel: ``(B, M, P)``; prompt_tokens ``(B, Np)``; prompt_lengths ``(B,)`` frames.
        style_ids: ``(B,)`` the targets' style ids (0 = neutral); style_intensity ``(B,)`` their intensities.
    """

    target_mel: torch.Tensor
    tokens: torch.Tensor
    token_lengths: torch.Tensor
    prompt_mel: torch.Tensor
    prompt_tokens: torch.Tensor
    prompt_lengths: torch.Tensor
    style_ids: torch.Tensor
    style_intensity: torch.Tensor

    def to(self, device: torch.device | str) -> "RefinerBatch":
        """The batch on `device`."""
        return RefinerBatch(**{name: value.to(device) for name, value in vars(self).items()})


@dataclass(frozen=True)
class _Example:
    target_mel: torch.Tensor  # (M, T)
    tokens: torch.Tensor  # (N,)
    prompt_mel: torch.Tensor  # (M, P)
    prompt_tokens: torch.Tensor  # (Np,)
    style_id: int = 0
    style_intensity: float = 0.0


def corpus_styles(cache: "FeatureCache", corpus: str | os.PathLike, styles: Sequence[str]) -> list[tuple[int, float]]:
    """``(style id, intensity)`` of every cache item from the corpus metadata: the label's place in `styles`
    (``styles[0]`` neutral; neutral items get intensity 0). Raises `TimbreError` for an item the metadata lacks or
    a label outside `styles`."""
    by_file = {item.file_name: item for item in read_metadata(corpus)}
    found = []
    for cached in cache.items:
        item = by_file.get(cached.file_name)
        if item is None:
            raise TimbreError(f"{cached.file_name} of the feature cache is not in {corpus}'s metadata")
        if item.style not in styles:
            raise TimbreError(f"{cached.file_name}: style {item.style!r} is not one of {', '.join(styles)}")
        style_id = styles.index(item.style)
        found.append((style_id, 0.0 if style_id == 0 else float(item.intensity)))
    return found


class BatchSampler:
    """Random (prompt, target) batches from the cache items `indices` (see the module docstring).

    Args:
        cache: the feature cache.
        indices: the items to draw targets (and other-utterance prompts) from.
        recipe: span lengths and augmentation.
        rng: the random generator (seed it per process).
        corpus: the corpus folder, to read audio for prompt augmentation (None: no augmentation).
        alt_tokens: self-distillation tokens by item (`tts.refiner.distill.load_pairs`): with probability
            `alt_probability` a target that has them is given those instead of its own (prompt unchanged).
        alt_probability: the share of such targets.
        styles: ``(style id, intensity)`` of every cache item (`corpus_styles`), given to its targets as their
            style condition (None: all neutral).
    """

    def __init__(
        self,
        cache: FeatureCache,
        indices: Sequence[int],
        recipe: BatchRecipe,
        rng: np.random.Generator,
        corpus: str | os.PathLike | None = None,
        alt_tokens: Mapping[int, torch.Tensor] | None = None,
        alt_probability: float = 0.0,
        styles: Sequence[tuple[int, float]] | None = None,
    ) -> None:
        if styles is not None and len(styles) != len(cache):
            raise ValueError(f"styles has {len(styles)} entries for {len(cache)} cache items")
        self.styles = styles
        if not 0.0 <= alt_probability <= 1.0:
            raise ValueError(f"alt_probability must be in [0, 1], got {alt_probability}")
        self.cache, self.recipe, self.rng = cache, recipe, rng
        self.alt_tokens, self.alt_probability = alt_tokens or {}, alt_probability
        self.corpus = None if corpus is None else Path(corpus)
        step = cache.frames_per_token
        self.indices = [i for i in indices if cache.items[i].frames >= 2 * step]
        if not self.indices:
            raise TimbreError("no corpus item is long enough to train on")
        self.by_voice: dict[str, list[int]] = {}
        for index in self.indices:
            self.by_voice.setdefault(cache.items[index].voice_id, []).append(index)

    def _tokens_floor(self, frames: int) -> int:
        return frames // self.cache.frames_per_token

    def _span(self, available_tokens: int, wanted_tokens: int) -> tuple[int, int]:
        """A random ``[start, end)`` token span of at most `wanted_tokens` inside `available_tokens`."""
        length = max(1, min(wanted_tokens, available_tokens))
        start = int(self.rng.integers(0, available_tokens - length + 1))
        return start, start + length

    def example(self, index: int, augment: bool = True) -> _Example:
        """One (prompt, target) pair with target utterance `index`."""
        cache, recipe, step = self.cache, self.recipe, self.cache.frames_per_token
        item = cache.items[index]
        usable = self._tokens_floor(item.frames)  # whole tokens only
        low, high = recipe.prompt_frames
        prompt_tokens_wanted = max(1, int(self.rng.integers(low, high + 1)) // step)
        target_tokens_wanted = max(1, recipe.target_frames // step)
        others = [i for i in self.by_voice[item.voice_id] if i != index]
        if not others or self.rng.random() < recipe.same_utterance_probability:
            source = index
            prompt_span = (0, max(1, min(prompt_tokens_wanted, usable // 2)))
            rest = usable - prompt_span[1]
            offset, end = self._span(rest, target_tokens_wanted)
            target_span = (prompt_span[1] + offset, prompt_span[1] + end)
        else:
            source = others[int(self.rng.integers(len(others)))]
            prompt_span = self._span(self._tokens_floor(cache.items[source].frames), prompt_tokens_wanted)
            target_span = self._span(usable, target_tokens_wanted)
        prompt_mel = self._prompt_mel(source, prompt_span[0] * step, prompt_span[1] * step, augment)
        alt = self.alt_tokens.get(index)
        if alt is not None and self.rng.random() < self.alt_probability:  # drawn even at 0: streams stay comparable
            tokens = alt[target_span[0] : target_span[1]]
        else:
            tokens = cache.tokens(index, *target_span)
        style_id, intensity = (0, 0.0) if self.styles is None else self.styles[index]
        return _Example(
            target_mel=cache.mel(index, target_span[0] * step, target_span[1] * step),
            tokens=tokens,
            prompt_mel=prompt_mel,
            prompt_tokens=cache.tokens(source, *prompt_span),
            style_id=style_id,
            style_intensity=intensity,
        )

    def _prompt_mel(self, index: int, start: int, end: int, augment: bool) -> torch.Tensor:
        """Frames ``start .. end - 1`` of item `index`'s mel; with `augment`, of its augmented audio."""
        if self.corpus is None or not augment:
            return self.cache.mel(index, start, end)
        item = self.cache.items[index]
        mel_config = self.cache.mel_config
        try:
            samples = load_audio(self.corpus / item.file_name, sample_rate=mel_config.sample_rate).samples
        except (AudioError, TimbreError) as error:
            logger.warning("prompt augmentation skipped for %s: %s", item.file_name, error)
            return self.cache.mel(index, start, end)
        samples = augment_waveform(samples, self.recipe.augmentation, self.rng)
        mel = log_mel(torch.from_numpy(samples), mel_config)
        if mel.shape[-1] != item.frames:  # the audio changed since extraction: keep the cached frames
            return self.cache.mel(index, start, end)
        return mel[:, start:end].contiguous()

    def batch(self, size: int, augment: bool = True) -> RefinerBatch:
        """`size` random examples, padded."""
        picks = self.rng.integers(len(self.indices), size=size)
        return collate([self.example(self.indices[int(i)], augment) for i in picks], self.cache)

    def fixed_batches(self, count: int, size: int, seed: int) -> list[RefinerBatch]:
        """`count` reproducible batches without augmentation (validation)."""
        saved, self.rng = self.rng, np.random.default_rng(seed)
        try:
            return [self.batch(size, augment=False) for _ in range(count)]
        finally:
            self.rng = saved


def collate(examples: Sequence[_Example], cache: FeatureCache) -> RefinerBatch:
    """Pad examples into a `RefinerBatch` (mel padding is silence, token padding the first id: both masked)."""
    silence = math.log(cache.mel_config.log_floor)
    step = cache.frames_per_token

    def pad_mels(mels: list[torch.Tensor], frames: int) -> torch.Tensor:
        return torch.stack([torch.nn.functional.pad(m, (0, frames - m.shape[-1]), value=silence) for m in mels])

    def pad_ids(ids: list[torch.Tensor], length: int) -> torch.Tensor:
        return torch.stack([torch.nn.functional.pad(t, (0, length - t.shape[0])) for t in ids])

    max_tokens = max(e.tokens.shape[0] for e in examples)
    max_prompt = max(e.prompt_mel.shape[-1] for e in examples)
    return RefinerBatch(
        target_mel=pad_mels([e.target_mel for e in examples], max_tokens * step),
        tokens=pad_ids([e.tokens for e in examples], max_tokens),
        token_lengths=torch.tensor([e.tokens.shape[0] for e in examples]),
        prompt_mel=pad_mels([e.prompt_mel for e in examples], max_prompt),
        prompt_tokens=pad_ids([e.prompt_tokens for e in examples], -(-max_prompt // step)),
        prompt_lengths=torch.tensor([e.prompt_mel.shape[-1] for e in examples]),
        style_ids=torch.tensor([e.style_id for e in examples], dtype=torch.long),
        style_intensity=torch.tensor([e.style_intensity for e in examples], dtype=torch.float32),
    )
