"""Training data of the token LM: per-utterance text units and their token counts, and batches of streams.

Unit file (``python -m tts.lm.train extract-units``), one safetensors file per (corpus, tokenizer, feature cache):

- ``units`` ``(sum U,)`` int32: each item's `tts.lm.stream.text_units`; ``unit_lengths`` ``(I,)``;
- ``counts`` ``(sum U,)`` int32: speech tokens owned by each unit (forced alignment with the tokenizer's CTC head);
- ``cache_index`` ``(I,)`` int64: the item's index in the feature cache (whose tokens the counts divide);
- ``intensity`` ``(I,)`` float32; metadata: format, version, feature cache, styles and voice ids (JSON), and how
  many items were skipped and why.

Batches (`StreamSampler`): each row is one target utterance, with probability ``prompt_probability`` preceded by
another utterance of the same voice as its prompt (as at inference: a voice clip, then the new sentence), and
rows longer than ``max_length`` lose their prompt. Padded on the right; labels are ``-100`` on padding and on
everything before the first predicted id (`tts.lm.stream.build_stream`).

Shapes: ``B`` batch, ``L`` longest row, ``I`` items, ``U`` units of an item.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tts.data.corpus import read_metadata
from tts.errors import TextError, TimbreError
from tts.files import atomic_write_bytes, read_tensor_file, run_bounds
from tts.lm.stream import Utterance, build_stream, text_units, unit_start_times, unit_token_counts
from tts.refiner.data import FeatureCache

logger = logging.getLogger(__name__)

UNITS_FORMAT = "timbre-lm-units"
UNITS_VERSION = 1
IGNORE_INDEX = -100


def extract_units(
    corpus: str | os.PathLike,
    features: str | os.PathLike,
    tokenizer,
    out: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Align every item of the feature cache with its phonemes; write the unit file to `out`.

    The words come from the corpus metadata (``phonemes``, what the engine spoke; `tts.text.phonemize` of the
    text where there are none). Items the aligner refuses are skipped and counted. Returns `out`.
    """
    from tts.text import phonemize
    from tts.tokenizer.align import align_log_probs, frame_energy_db

    corpus, out = Path(corpus), Path(out)
    cache = FeatureCache(features)
    by_name = {item.file_name: item for item in read_metadata(corpus)}
    config = tokenizer.config
    device = next(tokenizer.parameters()).device
    units, counts, lengths, cache_index, styles, intensity, voices = [], [], [], [], [], [], []
    skipped = {"not in corpus": 0, "alignment failed": 0}
    tokenizer.eval()
    with torch.no_grad():
        for index, cached in enumerate(cache.items):
            item = by_name.get(cached.file_name)
            if item is None:
                skipped["not in corpus"] += 1
                continue
            words = item.words() if item.phonemes else phonemize(item.text)
            mel = cache.mel(index)
            logits, frames = tokenizer.alignment_logits(mel[None].to(device))
            log_probs = torch.log_softmax(logits[0, : int(frames[0])].float(), dim=-1).cpu()
            energy = frame_energy_db(mel, config)[: int(frames[0])]
            try:
                timings = align_log_probs(log_probs, words, energy, config, duration=cached.frames / cache.mel_config.frame_rate)
                item_units = text_units(words)
                item_counts = unit_token_counts(unit_start_times(words, timings), cached.num_tokens, config.token_rate)
            except (TextError, ValueError) as error:
                logger.debug("skipping %s: %s", cached.file_name, error)
                skipped["alignment failed"] += 1
                continue
            units.append(torch.tensor(item_units, dtype=torch.int32))
            counts.append(torch.tensor(item_counts, dtype=torch.int32))
            lengths.append(len(item_units))
            cache_index.append(index)
            styles.append(item.style)
            intensity.append(float(item.intensity))
            voices.append(item.voice_id)
            if progress is not None:
                progress(index + 1, len(cache.items))
    if not units:
        raise TimbreError(f"{corpus}: no item could be aligned ({skipped})")
    tensors = {
        "units": torch.cat(units),
        "counts": torch.cat(counts),
        "unit_lengths": torch.tensor(lengths, dtype=torch.int64),
        "cache_index": torch.tensor(cache_index, dtype=torch.int64),
        "intensity": torch.tensor(intensity, dtype=torch.float32),
    }
    metadata = {
        "format": UNITS_FORMAT,
        "version": str(UNITS_VERSION),
        "features": str(Path(features).resolve()),
        "tokenizer": cache.tokenizer,
        "styles": json.dumps(styles),
        "voices": json.dumps(voices),
        "skipped": json.dumps(skipped),
    }
    from safetensors.torch import save

    out = atomic_write_bytes(out, save(tensors, metadata=metadata))
    logger.info("wrote %s: %d items aligned, skipped %s", out, len(units), skipped)
    return out


@dataclass(frozen=True)
class UnitItem:
    """One aligned utterance of a unit file."""

    cache_index: int
    units: tuple[int, ...]
    counts: tuple[int, ...]
    style: str
    intensity: float
    voice_id: str


def read_units(path: str | os.PathLike) -> tuple[list[UnitItem], dict]:
    """The items of a unit file and its metadata; refuses other files and versions."""
    tensors, meta = read_tensor_file(path, UNITS_FORMAT, UNITS_VERSION, "run `extract-units` again")
    styles, voices = json.loads(meta["styles"]), json.loads(meta["voices"])
    units, counts = tensors["units"].tolist(), tensors["counts"].tolist()
    items = [
        UnitItem(int(tensors["cache_index"][i]), tuple(units[a:b]), tuple(counts[a:b]), styles[i],
                 float(tensors["intensity"][i]), voices[i])
        for i, (a, b) in enumerate(run_bounds(tensors["unit_lengths"]))
    ]
    return items, meta


@dataclass
class StreamBatch:
    """Padded streams: ``ids`` ``(B, L)``, ``attention_mask`` ``(B, L)``, ``labels`` ``(B, L)`` (already aligned
    with ``ids``: the loss compares ``logits[:, :-1]`` with ``labels[:, 1:]``)."""

    ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device) -> "StreamBatch":
        return StreamBatch(self.ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate(rows: Sequence[tuple[list[int], int]], pad_id: int) -> StreamBatch:
    """Right-pad ``(ids, first_predicted)`` rows into a `StreamBatch`."""
    length = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (stream, first) in enumerate(rows):
        ids[row, : len(stream)] = torch.tensor(stream)
        mask[row, : len(stream)] = 1
        labels[row, first : len(stream)] = ids[row, first : len(stream)]
    return StreamBatch(ids, mask, labels)


class StreamSampler:
    """Random (prompt, target) streams of a unit file's items (see the module docstring)."""

    def __init__(self, cache: FeatureCache, items: Sequence[UnitItem], config, rng: np.random.Generator,
                 prompt_probability: float = 0.8, max_length: int = 1536) -> None:
        self.cache, self.items, self.config, self.rng = cache, list(items), config, rng
        self.prompt_probability, self.max_length = prompt_probability, max_length
        self.by_voice: dict[str, list[int]] = {}
        for position, item in enumerate(self.items):
            self.by_voice.setdefault(item.voice_id, []).append(position)

    def utterance(self, item: UnitItem) -> Utterance:
        return Utterance(item.units, item.counts, tuple(self.cache.tokens(item.cache_index).tolist()))

    def row(self, position: int) -> tuple[list[int], int]:
        """One stream for item `position` (with a same-voice prompt when one is drawn and fits)."""
        item = self.items[position]
        target = self.utterance(item)
        prompt = None
        others = [p for p in self.by_voice[item.voice_id] if p != position]
        if others and self.rng.random() < self.prompt_probability:
            prompt = self.utterance(self.items[others[int(self.rng.integers(len(others)))]])
        stream = build_stream(self.config, item.style, item.intensity, target, prompt)
        if prompt is not None and len(stream[0]) > self.max_length:
            stream = build_stream(self.config, item.style, item.intensity, target)
        if len(stream[0]) > self.max_length:
            ids, first = stream
            stream = (ids[: self.max_length], first)
        return stream

    def batch(self, size: int) -> StreamBatch:
        positions = self.rng.integers(len(self.items), size=size)
        return collate([self.row(int(p)) for p in positions], self.config.pad_id)

    def fixed_batches(self, count: int, size: int) -> list[StreamBatch]:
        """Deterministic batches (validation): the sampler's own generator, drawn once."""
        return [self.batch(size) for _ in range(count)]
