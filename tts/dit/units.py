"""The text condition of the studio's DiT: units (phonemes, punctuation, word boundaries) laid out on mel frames.

F5-TTS pads the character sequence to the mel length and lets the network discover where each character is
spoken. A small model trained on two CPU cores does not (../shared/DESIGN.md, Training), so the studio's default
DiT (``DiTConfig.text_condition = "frames"``) reads the text already laid out in time: every frame to generate
carries the id of the unit spoken there. Training takes the layout from the speech tokenizer's forced
alignment; inference has only a total duration and spreads it over the units in proportion to the DiT's own
duration predictor (`fit_durations`), so the user still gives just the text and how long it should last.

Units of a transcript (`text_units`), in order: a word boundary, then for each word its phonemes (a stressed
vowel is a unit of its own, ``stress`` marks folded in) or its punctuation mark, each followed by a word
boundary. Boundaries hold the silence between words (often zero frames); punctuation holds the pause it stands
in. Stress marks and symbols outside the phoneme table are not units (they are not sounds of their own, the
same rule as the aligner's CTC targets).

Shapes: ``U`` units, ``F`` mel frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from tts.errors import TextError
from tts.text import PHONEME_TABLE, Word
from tts.text.phonemes import PUNCTUATION, STRESS_MARKS, WORD_BOUNDARY

STRESS_LEVELS = {"ˈ": 1, "ˌ": 2}
"""A vowel after a primary (secondary) stress mark is unit ``id + 1 * len(table)`` (``+ 2 * len(table)``)."""

NUM_UNITS = len(PHONEME_TABLE) * (1 + len(STRESS_LEVELS))
"""Size of the unit vocabulary (`DiTConfig.text_num_embeds` of a frames-conditioned DiT)."""

BOUNDARY = -2
"""`UnitSequence.words` entry of a word boundary (it belongs to no word)."""


@dataclass(frozen=True)
class UnitSequence:
    """The units of a transcript and, for each, the index of its word in the `words` it came from.

    Attributes:
        ids: unit ids in ``[0, NUM_UNITS)``.
        words: the word index of each unit (`BOUNDARY` for word boundaries).
    """

    ids: tuple[int, ...]
    words: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def word_units(self, first: int, last: int) -> tuple[int, int]:
        """``[start, end)`` unit span of words ``first .. last - 1`` with the boundaries between them (not the
        boundaries around them); an empty span at the boundary before `first` when ``first == last``."""
        indices = [index for index, word in enumerate(self.words) if first <= word < last]
        if not indices:
            before = [index for index, word in enumerate(self.words) if 0 <= word < first]
            position = before[-1] + 1 if before else 0
            return position, position
        return indices[0], indices[-1] + 1


def _word_units(word: Word) -> list[int]:
    if word.is_punctuation:
        symbol = word.text if word.text in PUNCTUATION else ","
        return [PHONEME_TABLE.id(symbol)]
    units, stress = [], 0
    for symbol in word.phonemes:
        if symbol in STRESS_LEVELS:
            stress = STRESS_LEVELS[symbol]
        elif PHONEME_TABLE.is_phoneme(symbol) and symbol not in STRESS_MARKS:
            units.append(PHONEME_TABLE.id(symbol) + stress * len(PHONEME_TABLE))
            stress = 0
    return units


def text_units(words: Sequence[Word]) -> UnitSequence:
    """The units of `words` (from `tts.text.phonemize`).

    Raises:
        TextError: no word has a sound (nothing to say).
    """
    boundary = PHONEME_TABLE.id(WORD_BOUNDARY)
    ids, owners = [boundary], [BOUNDARY]
    for index, word in enumerate(words):
        units = _word_units(word)
        ids += units + [boundary]
        owners += [index] * len(units) + [BOUNDARY]
    if not any(owner >= 0 and not words[owner].is_punctuation for owner in owners):
        raise TextError("the text has no words to speak")
    return UnitSequence(tuple(ids), tuple(owners))


def aligned_unit_frames(timings: Sequence, frames: int, hop_seconds: float) -> tuple[UnitSequence, list[int]]:
    """Units of an aligned transcript and the mel frames each covers (summing to `frames`).

    Args:
        timings: `tts.tokenizer.align.WordTiming` list (words in transcript order, seconds).
        frames: mel frames of the recording.
        hop_seconds: seconds per mel frame; frame ``f`` is centered at ``f * hop_seconds`` and belongs to the
            unit whose span holds its center.

    Returns:
        ``(units, counts)``: a word boundary takes the frames between its neighbours (leading and trailing
        silence included).
    """
    words = [Word(t.word, tuple(p.phoneme for p in t.phonemes)) for t in timings]
    units = text_units(words)
    ends: list[float] = []
    for timing in timings:
        ends.append(timing.start)  # the boundary before this word ends where the word starts
        if not timing.phonemes:
            ends.append(timing.end)
        else:
            ends += [p.end for p in timing.phonemes if PHONEME_TABLE.is_phoneme(p.phoneme) and p.phoneme not in STRESS_MARKS]
    ends.append(math.inf)  # the final boundary takes the rest
    if len(ends) != len(units):
        raise ValueError(f"{len(ends)} unit spans for {len(units)} units: the timings do not match their words")
    cumulative = np.clip(np.ceil(np.asarray(ends[:-1]) / hop_seconds - 1e-9), 0, frames)
    cumulative = np.append(np.maximum.accumulate(cumulative), frames)
    counts = np.diff(np.concatenate(([0], cumulative))).astype(int).tolist()
    return units, counts


def expand(ids: Sequence[int], counts: Sequence[int]) -> torch.Tensor:
    """Frame-level ids ``(F,)``: unit ``i`` repeated ``counts[i]`` times."""
    return torch.repeat_interleave(torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(counts, dtype=torch.long))


def fit_durations(frames: Sequence[float] | np.ndarray, total: int, words: Sequence[int] | None = None) -> list[int]:
    """Whole frame counts in proportion to `frames` (predicted, any positive scale) that sum to `total`.

    Rounds the cumulative sum, so rounding errors do not pile up at the end. With `words` (a
    `UnitSequence.words`), every unit of a word gets at least one frame when `total` leaves room for it.

    Raises:
        ValueError: empty `frames` or a negative `total`.
    """
    weights = np.maximum(np.asarray(frames, dtype=np.float64), 0.0)
    if weights.size == 0:
        raise ValueError("no units to lay out")
    if total < 0:
        raise ValueError(f"total frames must be non-negative, got {total}")
    if words is not None:
        spoken = np.asarray([word != BOUNDARY for word in words])
        floor = spoken.astype(np.float64)
        if floor.sum() <= total:
            # Give each spoken unit its one frame first, spread the rest by weight.
            rest = fit_durations(weights, total - int(floor.sum())) if total > floor.sum() else [0] * weights.size
            return (np.asarray(rest) + floor.astype(int)).tolist()
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    cumulative = np.round(np.cumsum(weights) / weights.sum() * total).astype(int)
    cumulative[-1] = total
    return np.diff(np.concatenate(([0], cumulative))).tolist()
