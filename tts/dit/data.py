"""Training data of the studio's DiT: forced alignments of a corpus, and infilling batches.

Features: the corpus's mels come from the refiner's feature cache (`tts.refiner.data.FeatureCache`, written by
``python -m tts.refiner.train extract-tokens``); `extract_alignments` adds a sidecar file holding, for each of its
items, the units of the spoken transcript (`tts.dit.units`) and the mel frames each covers, from the speech
tokenizer's forced alignment:

- ``units`` ``(sum U,)`` int16 and ``unit_frames`` ``(sum U,)`` int32, items concatenated; ``unit_lengths`` ``(I,)``;
- metadata: format and version, the items' file names (in the feature cache's order; an item that could not be
  aligned has no units and is not trained on), the aligner's name.

Batches (`InfillSampler`): each example is a crop of an item (at most ``max_frames``) with some frames to
generate (the rest is given as audio), in one of three layouts, mirroring how the engine uses the model:

- ``prompt``: a crop of *another* utterance of the same voice, then the item's crop, all of it generated
  (zero-shot TTS from a reference recording);
- ``span``: one span of 70-100 % of the crop generated, the rest kept (F5-TTS's training masks);
- ``edit``: one short span (5-30 %) generated inside the crop (word replacement).

The text condition is the frame-level unit ids on the generated frames, and the filler (-1) on kept frames:
what is already audio needs no text, so neither a reference transcript nor an alignment of the kept audio is
needed at inference.

Shapes: ``B`` batch, ``T`` frames of a padded example, ``M`` mel bands, ``U`` units of an item.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np
import torch

from tts.audio import load_audio
from tts.errors import AudioError, TextError, TimbreError
from tts.files import atomic_write_bytes, read_tensor_file, run_bounds
from tts.refiner.data import FeatureCache

if TYPE_CHECKING:
    from tts.dit.guides import GuideStarts

logger = logging.getLogger(__name__)

ALIGNMENT_FORMAT = "timbre-dit-alignments"
ALIGNMENT_VERSION = 1
LAYOUTS = ("prompt", "span", "edit")


def extract_alignments(
    features: str | os.PathLike,
    aligner,
    out: str | os.PathLike,
    aligner_name: str,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Align every item of the feature cache `features` with its spoken phonemes; write the sidecar to `out`.

    Items whose audio cannot be read or aligned are left without units (logged). Returns `out`.

    Raises:
        TimbreError: no item could be aligned.
    """
    from tts.data.corpus import read_metadata
    from tts.dit.units import aligned_unit_frames
    from tts.tokenizer.align import align

    cache = FeatureCache(features)
    corpus = Path(cache.corpus)
    metadata = {item.file_name: item for item in read_metadata(corpus)}
    hop_seconds = cache.mel_config.hop_length / cache.mel_config.sample_rate
    units, frames, lengths, failed = [], [], [], 0
    for number, item in enumerate(cache.items, 1):
        record = metadata.get(item.file_name)
        ids: list[int] = []
        counts: list[int] = []
        try:
            if record is None or not record.phonemes:
                raise TextError("no spoken phonemes in the metadata")
            audio = load_audio(record.audio_path(corpus))
            ids_seq, counts = aligned_unit_frames(align(audio, record.words(), aligner), item.frames, hop_seconds)
            ids = list(ids_seq.ids)
        except (AudioError, TextError, TimbreError, ValueError) as error:
            logger.warning("not aligned: %s (%s)", item.file_name, error)
            failed += 1
            ids, counts = [], []
        units += ids
        frames += counts
        lengths.append(len(ids))
        if progress is not None:
            progress(number, len(cache.items))
    if failed == len(cache.items):
        raise TimbreError(f"{features}: none of the {failed} items could be aligned")
    tensors = {
        "units": torch.tensor(units, dtype=torch.int16),
        "unit_frames": torch.tensor(frames, dtype=torch.int32),
        "unit_lengths": torch.tensor(lengths, dtype=torch.int64),
    }
    meta = {
        "format": ALIGNMENT_FORMAT,
        "version": str(ALIGNMENT_VERSION),
        "aligner": aligner_name,
        "items": json.dumps([item.file_name for item in cache.items], ensure_ascii=False),
    }
    from safetensors.torch import save

    out = atomic_write_bytes(out, save(tensors, metadata=meta))
    logger.info("wrote %s: %d items aligned, %d not", out, len(cache.items) - failed, failed)
    return out


class AlignedCorpus:
    """A feature cache with its alignment sidecar: per item, its mel (lazily) and its units with frame counts.

    Attributes:
        cache: the `FeatureCache`.
        usable: indices of the items that have units.
    """

    def __init__(self, features: str | os.PathLike, alignments: str | os.PathLike) -> None:
        self.cache = FeatureCache(features)
        path = Path(alignments)
        tensors, meta = read_tensor_file(path, ALIGNMENT_FORMAT, ALIGNMENT_VERSION,
                                         "write the alignments with `python -m tts.dit.train extract`")
        names = json.loads(meta["items"])
        if names != [item.file_name for item in self.cache.items]:
            raise TimbreError(f"{path} was written for another feature cache than {features}; extract it again")
        self.aligner = meta.get("aligner", "")
        bounds = run_bounds(tensors["unit_lengths"])
        units, frames = tensors["units"].long(), tensors["unit_frames"].long()
        self._units = [units[a:b] for a, b in bounds]
        self._frames = [frames[a:b] for a, b in bounds]
        self.usable = [i for i, (a, b) in enumerate(bounds) if b > a and int(self._frames[i].sum()) == self.cache.items[i].frames]

    def units(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item `index`'s unit ids ``(U,)`` and frames per unit ``(U,)``."""
        return self._units[index], self._frames[index]

    def frame_units(self, index: int) -> torch.Tensor:
        """``(F,)`` the unit id of every mel frame of item `index`."""
        ids, counts = self.units(index)
        return torch.repeat_interleave(ids, counts)


@dataclass
class InfillBatch:
    """Padded tensors of one batch (frames first, as the DiT takes them)."""

    mel: torch.Tensor  # (B, T, M) log-mel, zeros on padding
    text: torch.Tensor  # (B, T) unit ids on generated frames, -1 elsewhere
    generate: torch.Tensor  # (B, T) bool: frames to generate (the loss's frames)
    mask: torch.Tensor  # (B, T) bool: real frames
    units: torch.Tensor  # (B, U) whole items' unit ids, -1 padding (duration predictor)
    unit_frames: torch.Tensor  # (B, U) their frame counts
    start: torch.Tensor | None = None  # (B, T, M) guide starts (log-mel; the mel itself on kept frames)
    start_time: torch.Tensor | None = None  # (B,) flow time each row starts from its guide at; 0: from noise

    def to(self, device: torch.device | str) -> "InfillBatch":
        return InfillBatch(**{key: None if value is None else value.to(device) for key, value in vars(self).items()})


@dataclass(frozen=True)
class InfillRecipe:
    """How examples are cut: crop lengths and the layouts' probabilities."""

    max_frames: int = 360
    prompt_frames: tuple[int, int] = (96, 192)
    layout_weights: tuple[float, float, float] = (0.4, 0.3, 0.3)
    span_fraction: tuple[float, float] = (0.7, 1.0)
    edit_fraction: tuple[float, float] = (0.05, 0.3)
    guided_share: float = 0.0
    """With guide starts (`tts.dit.guides`), the share of examples whose generated frames start from their guide
    as the engine's do, rather than from noise."""
    guide_times: tuple[float, float, float] = (0.8, 0.8, 0.9)
    """The flow time a guided example starts at, per layout (prompt, span, edit): the engine's speech and
    conversion start at 0.8, its word edits at 0.9."""


class InfillSampler:
    """Random infilling batches from an `AlignedCorpus` (`indices`: the items to draw from)."""

    def __init__(self, corpus: AlignedCorpus, indices: Sequence[int], recipe: InfillRecipe,
                 rng: np.random.Generator, guides: "GuideStarts | None" = None) -> None:
        if not indices:
            raise TimbreError("no aligned items to train on")
        self.corpus, self.indices, self.recipe, self.rng, self.guides = corpus, list(indices), recipe, rng, guides
        self.by_voice: dict[str, list[int]] = {}
        for index in self.indices:
            self.by_voice.setdefault(corpus.cache.items[index].voice_id, []).append(index)

    def batch(self, size: int) -> InfillBatch:
        """A batch of `size` random examples."""
        chosen = self.rng.choice(self.indices, size=min(size, len(self.indices)), replace=False)
        layouts = self.rng.choice(len(LAYOUTS), size=len(chosen), p=np.asarray(self.recipe.layout_weights) / sum(self.recipe.layout_weights))
        return self.collate([int(i) for i in chosen], [LAYOUTS[int(k)] for k in layouts])

    def collate(self, indices: Sequence[int], layouts: Sequence[str]) -> InfillBatch:
        """The batch of these items in these layouts (crops drawn with this sampler's generator)."""
        examples = [self.example(index, layout) for index, layout in zip(indices, layouts)]
        width = max(example.mel.shape[0] for example in examples)
        batch, bands = len(examples), examples[0].mel.shape[1]
        mel = torch.zeros(batch, width, bands)
        text = torch.full((batch, width), -1, dtype=torch.long)
        generate = torch.zeros(batch, width, dtype=torch.bool)
        mask = torch.zeros(batch, width, dtype=torch.bool)
        start = torch.zeros(batch, width, bands) if self.guides is not None else None
        start_time = torch.zeros(batch) if self.guides is not None else None
        for row, example in enumerate(examples):
            frames = example.mel.shape[0]
            mel[row, :frames], text[row, :frames], generate[row, :frames], mask[row, :frames] = example[:3] + (True,)
            if start is not None and start_time is not None:
                start[row, :frames] = example.mel if example.start is None else example.start
                start_time[row] = example.start_time
        unit_width = max(len(self.corpus.units(i)[0]) for i in indices)
        units = torch.full((batch, unit_width), -1, dtype=torch.long)
        unit_frames = torch.zeros(batch, unit_width, dtype=torch.long)
        for row, index in enumerate(indices):
            ids, counts = self.corpus.units(index)
            units[row, : len(ids)], unit_frames[row, : len(ids)] = ids, counts
        return InfillBatch(mel, text, generate, mask, units, unit_frames, start, start_time)

    def _crop(self, index: int, length: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        frames = self.corpus.cache.items[index].frames
        length = min(length, frames)
        start = int(self.rng.integers(0, frames - length + 1))
        mel = self.corpus.cache.mel(index, start, start + length).T  # (L, M)
        return mel, self.corpus.frame_units(index)[start : start + length], start

    def _guided(self, index: int) -> bool:
        """Whether this example of item `index` starts from its guide (drawn only where it has one)."""
        share = self.recipe.guided_share
        return self.guides is not None and share > 0 and index in self.guides and bool(self.rng.random() < share)

    def example(self, index: int, layout: str) -> "Example":
        """One example: its mel, text and frames to generate, and (guided) the start and its flow time."""
        recipe = self.recipe
        guided = self._guided(index)
        if layout == "prompt":
            others = [i for i in self.by_voice[self.corpus.cache.items[index].voice_id] if i != index]
            if others:
                low, high = recipe.prompt_frames
                prompt, _, _ = self._crop(int(self.rng.choice(others)), int(self.rng.integers(low, high + 1)))
                target, units, first = self._crop(index, recipe.max_frames)
                mel = torch.cat((prompt, target))
                generate = torch.cat((torch.zeros(len(prompt), dtype=torch.bool), torch.ones(len(target), dtype=torch.bool)))
                text = torch.cat((torch.full((len(prompt),), -1, dtype=torch.long), units))
                if not guided:
                    return Example(mel, text, generate)
                start = torch.cat((prompt, self.guides.mel(index, first, first + len(target)).T))
                return Example(mel, text, generate, start, recipe.guide_times[0])
            layout = "span"  # a voice with one utterance: no other clip to prompt with
        mel, units, first = self._crop(index, recipe.max_frames)
        frames = len(mel)
        low, high = recipe.span_fraction if layout == "span" else recipe.edit_fraction
        span = max(1, min(frames, int(round(frames * self.rng.uniform(low, high)))))
        start = int(self.rng.integers(0, frames - span + 1))
        generate = torch.zeros(frames, dtype=torch.bool)
        generate[start : start + span] = True
        text = torch.where(generate, units, torch.full_like(units, -1))
        if not guided:
            return Example(mel, text, generate)
        guide = self.guides.mel(index, first, first + frames).T
        return Example(mel, text, generate, torch.where(generate[:, None], guide, mel),
                       recipe.guide_times[LAYOUTS.index(layout)])


class Example(NamedTuple):
    """One training example: ``mel`` ``(T, M)``, ``text`` ``(T,)``, ``generate`` ``(T,)``, and for a guided one its
    ``start`` ``(T, M)`` (the guide on generated frames) and the flow time ``start_time`` it starts at."""

    mel: torch.Tensor
    text: torch.Tensor
    generate: torch.Tensor
    start: torch.Tensor | None = None
    start_time: float = 0.0
