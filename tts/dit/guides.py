"""Guide starts of a corpus: what the `dit` engine starts its flow from, made for training items.

At inference the engine does not start from noise: a base speaker (the guide voice) says the text, moved toward the
voice asked for (`DitEngine._guide_estimate`: its F0 median, its spectrum unit by unit), and the flow runs from
that first estimate at a late time (0.8 for speech and conversion, 0.9 for word edits). The DiT was trained only
from noise, so it never learnt what a guide gets wrong. `extract_guides` makes the same start for each aligned
corpus item: a training voice says the item's transcript, moved toward the item's voice by *another* utterance of
that voice (the reference, as a user's clip would be), and laid out unit by unit at the item's own aligned timing;
the DiT can then learn to take that start to the item's real mel (`tts.dit.train`, ``--guides``).

The sidecar (``guides.safetensors`` beside the features, one or several shards) holds, per item, a guide mel of the
item's frame count:

- ``mel`` ``(M, sum F)`` float16, items concatenated; ``frames`` ``(I,)``: 0 for an item without a guide;
- metadata: format and version, the items' file names (the feature cache's order), and the guide voice that said
  each (null where none).

Shapes: ``M`` mel bands, ``F`` frames of an item, ``I`` items.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from tts.errors import AudioError, TextError, TimbreError
from tts.files import atomic_write_bytes, read_tensor_file, run_bounds

logger = logging.getLogger(__name__)

GUIDES_FORMAT = "timbre-dit-guides"
GUIDES_VERSION = 1
GUIDES_FILE = "guides.safetensors"
TRAINING_GUIDE_VOICES: tuple[str, ...] = ("flite:rms", "flite:kal16", "festival:kal_diphone")
"""Training voices that say the guides (never a held-out voice, so no evaluation prompt is heard in training);
an item made of one of them gets another."""


def extract_guides(features: str | os.PathLike, alignments: str | os.PathLike, engine, out: str | os.PathLike,
                   voices: Sequence[str] = TRAINING_GUIDE_VOICES, shard: tuple[int, int] = (0, 1),
                   limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the guide start of every aligned item of the feature cache `features` (alignment sidecar
    `alignments`) whose position among them is `shard[0]` modulo `shard[1]` (at most `limit` of them), made by
    `engine` (a `DitEngine`: its aligner, guide moving and mel), to `out`. Items of a voice with no other aligned
    utterance, or whose guide cannot be made, get none (logged). Returns `out`.

    Raises:
        TimbreError: a bad shard, a held-out guide voice, no guide voice installed, or no guide made at all.
    """
    from tts.data.corpus import read_metadata
    from tts.data.voicebank import voice_unavailable_reason
    from tts.dit.data import AlignedCorpus
    from tts.dit.engine import _warped_positions
    from tts.audio import interpolate_frames, load_audio
    from tts.evaluation.testsets import TRAINING_EXCLUDED_VOICES, speakers_behind
    from tts.voice import Voice

    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise TimbreError(f"shard must be k of n with 0 <= k < n, got {index} of {count}")
    held_out = [voice for voice in voices if speakers_behind(voice) & set(TRAINING_EXCLUDED_VOICES)]
    if held_out:
        raise TimbreError(f"{', '.join(held_out)}: held out for evaluation; guides are said by training voices")
    installed = [voice for voice in voices if voice_unavailable_reason(voice) is None]
    if not installed:
        raise TimbreError(f"none of the guide voices {', '.join(voices)} is installed (`make voices`)")
    corpus = AlignedCorpus(features, alignments)
    items = corpus.cache.items
    metadata = {item.file_name: item for item in read_metadata(corpus.cache.corpus)}
    by_voice: dict[str, list[int]] = {}
    for position in corpus.usable:
        by_voice.setdefault(items[position].voice_id, []).append(position)
    chosen = [position for n, position in enumerate(corpus.usable) if n % count == index][:limit]
    voices_of: dict[int, tuple[Voice, torch.Tensor]] = {}
    mels: list[torch.Tensor] = []
    frames = [0] * len(items)
    said_by: list[str | None] = [None] * len(items)
    made = 0
    for number, position in enumerate(chosen, 1):
        item = items[position]
        others = [other for other in by_voice[item.voice_id] if other != position]
        try:
            if not others:
                raise TextError("no other utterance of its voice to take the voice from")
            record = metadata[item.file_name]
            if others[0] not in voices_of:  # the reference: the voice's first other utterance
                reference = metadata[items[others[0]].file_name]
                voice = Voice(load_audio(reference.audio_path(corpus.cache.corpus)), reference.text)
                voices_of[others[0]] = (voice, engine.prompt_mel(voice))
            voice, prompt = voices_of[others[0]]
            behind = speakers_behind(item.voice_id)
            candidates = [v for v in installed if not speakers_behind(v) & behind]
            if not candidates:
                raise TextError("every guide voice is the item's own")
            guide_voice = candidates[position % len(candidates)]
            words = record.words()
            estimate = engine._guide_estimate(record.text, words, guide_voice, position, prompt,
                                              engine.voice_pitch(voice), engine._voice_frame_ids(voice))
            ids, counts = corpus.units(position)
            if estimate is None or list(estimate.ids) != ids.tolist():
                raise TextError("the guide's units differ from the item's")
            positions = torch.tensor(_warped_positions(estimate.counts, counts.tolist()), dtype=torch.float64)
            mel = interpolate_frames(estimate.mel, positions)
        except (AudioError, TextError, TimbreError, KeyError, ValueError) as error:
            logger.warning("no guide for %s (%s)", item.file_name, error)
        else:
            mels.append(mel.to(torch.float16))
            frames[position], said_by[position] = mel.shape[1], guide_voice
            made += 1
        if progress is not None:
            progress(number, len(chosen))
    if not made:
        raise TimbreError(f"{features}: no guide could be made for the {len(chosen)} items of this shard")
    from safetensors.torch import save

    tensors = {"mel": torch.cat(mels, dim=1).contiguous(), "frames": torch.tensor(frames, dtype=torch.int64)}
    meta = {"format": GUIDES_FORMAT, "version": str(GUIDES_VERSION), "guide_voices": json.dumps(said_by),
            "items": json.dumps([item.file_name for item in items], ensure_ascii=False)}
    out = atomic_write_bytes(out, save(tensors, metadata=meta))
    logger.info("wrote %s: guides for %d of %d items", out, made, len(chosen))
    return out


class GuideStarts:
    """The guide starts of a feature cache's items, from one or several sidecar shards (`extract_guides`)."""

    def __init__(self, paths: Sequence[str | os.PathLike], file_names: Sequence[str]) -> None:
        self._mels: dict[int, torch.Tensor] = {}
        self.guide_voices: dict[int, str] = {}
        """The guide voice that said each item's start."""
        for path in paths:
            tensors, meta = read_tensor_file(path, GUIDES_FORMAT, GUIDES_VERSION,
                                             "make the guides with `python -m tts.dit.train guides`")
            if json.loads(meta["items"]) != list(file_names):
                raise TimbreError(f"{path} was written for another feature cache; make the guides again")
            said_by = json.loads(meta["guide_voices"])
            for position, (start, end) in enumerate(run_bounds(tensors["frames"])):
                if end > start:
                    self._mels[position] = tensors["mel"][:, start:end]
                    self.guide_voices[position] = said_by[position]

    def __contains__(self, position: int) -> bool:
        return position in self._mels

    def __len__(self) -> int:
        return len(self._mels)

    def mel(self, position: int, start: int, end: int) -> torch.Tensor:
        """``(M, end - start)`` float32: item `position`'s guide start over those frames."""
        return self._mels[position][:, start:end].float()
