"""The token LM's stream: text units, how many speech tokens each unit owns, and the interleaved sequence.

One training or inference sequence (ids of `tts.lm.model.SpeechTokenLMConfig`)::

    <style> <level>  U(prompt) U(target)  <speech>  u1 s s  u2 s  u3 ...(prompt)  u1 s s s  u2 ...(target) <eos>

``U(x)`` is the utterance's whole unit sequence (the text, read before any speech: the model knows what comes
next, as in ELLA-V's phoneme prefix); after ``<speech>`` every unit is repeated, followed by the speech tokens
spoken while it sounds. A sequence without a prompt simply has none of the prompt parts.

Unit token counts come from forced alignment (`tts.tokenizer.align`): each unit starts at its aligned time and
owns the tokens up to the next unit's start, so a pause between words belongs to the word boundary (or the
punctuation mark) in it, the leading silence to the utterance start and the trailing silence to the last unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tts.text import PHONEME_TABLE, Word
from tts.text.phonemes import PUNCTUATION, STRESS_MARKS


def text_units(words: Sequence[Word]) -> list[int]:
    """Phoneme-table ids of an utterance's units: the utterance start (``<bos>``), then `PHONEME_TABLE.encode`."""
    return [PHONEME_TABLE.bos_id, *PHONEME_TABLE.encode(words)]


def zero_length_units() -> frozenset[int]:
    """Units that never own speech tokens (stress marks): the next unit follows at once."""
    return frozenset(PHONEME_TABLE.id(mark) for mark in STRESS_MARKS if mark in PHONEME_TABLE)


def pause_units() -> frozenset[int]:
    """Units that may own a pause (utterance start, word boundary, punctuation): they get a longer token cap."""
    ids = {PHONEME_TABLE.bos_id, PHONEME_TABLE.word_boundary_id, PHONEME_TABLE.id("<pause>")}
    ids.update(PHONEME_TABLE.id(mark) for mark in PUNCTUATION if mark in PHONEME_TABLE)
    return frozenset(ids)


def unit_start_times(words: Sequence[Word], timings: Sequence) -> list[float]:
    """Start time (seconds) of each unit of ``text_units(words)``, from the aligner's `WordTiming` list.

    A word boundary starts where the previous word (or mark) ends; a phoneme (or stress mark) at its aligned
    start; a punctuation mark at its start.
    """
    if len(words) != len(timings):
        raise ValueError(f"{len(words)} words but {len(timings)} timings")
    times = [0.0]
    for index, (word, timing) in enumerate(zip(words, timings)):
        if index:
            times.append(float(timings[index - 1].end))
        if word.is_punctuation:
            times.append(float(timing.start))
            continue
        if len(timing.phonemes) != len(word.phonemes):
            raise ValueError(f"word {word.text!r}: {len(word.phonemes)} phonemes but {len(timing.phonemes)} timings")
        times.extend(float(p.start) for p in timing.phonemes)
    return times


def unit_token_counts(start_times: Sequence[float], num_tokens: int, token_rate: float) -> list[int]:
    """Tokens owned by each unit: from its start (rounded to a token) to the next unit's start; the last unit
    takes the rest. Counts are non-negative and sum to `num_tokens`."""
    if not start_times:
        raise ValueError("no units")
    bounds = np.rint(np.asarray(start_times, dtype=np.float64) * token_rate).astype(np.int64)
    bounds = np.clip(np.maximum.accumulate(bounds), 0, num_tokens)
    bounds[0] = 0
    edges = np.append(bounds, num_tokens)
    return np.diff(edges).tolist()


@dataclass(frozen=True)
class Utterance:
    """One utterance of the stream: its units, each unit's token count, and its speech tokens (codes, not ids).

    ``counts`` and ``tokens`` are empty for a target still to be generated.
    """

    units: tuple[int, ...]
    counts: tuple[int, ...] = ()
    tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.counts and (len(self.counts) != len(self.units) or sum(self.counts) != len(self.tokens)):
            raise ValueError(
                f"{len(self.units)} units with {len(self.counts)} counts summing to {sum(self.counts)}, "
                f"but {len(self.tokens)} tokens"
            )


def interleave(utterance: Utterance, speech_offset: int) -> list[int]:
    """``u1 s s u2 s ...``: each unit followed by its speech tokens (as stream ids)."""
    ids: list[int] = []
    position = 0
    for unit, count in zip(utterance.units, utterance.counts):
        ids.append(unit)
        ids.extend(speech_offset + code for code in utterance.tokens[position : position + count])
        position += count
    return ids


def build_stream(config, style: str, intensity: float, target: Utterance, prompt: Utterance | None = None,
                 end: bool = True) -> tuple[list[int], int]:
    """The stream ids of (prompt, target) and the index of the first id the model is trained to predict
    (the first one after ``<speech>`` and the prompt's first unit, or the target's if there is no prompt).

    With ``end=False`` and a target without tokens, the stream stops after the target's first unit: the
    prefix that generation continues.
    """
    ids = [config.style_id(style), config.level_id(style, intensity)]
    if prompt is not None:
        ids.extend(prompt.units)
    ids.extend(target.units)
    ids.append(config.speech_start_id)
    first_predicted = len(ids) + 1
    if prompt is not None:
        ids.extend(interleave(prompt, config.speech_offset))
    if target.counts:
        ids.extend(interleave(target, config.speech_offset))
        if end:
            ids.append(config.eos_id)
    else:
        ids.append(target.units[0])
    return ids, first_predicted
