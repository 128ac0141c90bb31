"""Forced alignment with the speech tokenizer's CTC head: word and phoneme start/end times of a transcript.

The posteriors come from the tokenizer's alignment head (CTC at the token rate on the encoder's output before
quantization) when it has one, else from its token CTC head.

1. The transcript is phonemized by the studio's front end (`tts.text.phonemize`), which keeps words and
   punctuation apart. The CTC targets are the phonemes proper: stress marks, punctuation and phonemes the table
   lacks are not sounds of their own.
2. `ctc_viterbi` finds the most probable CTC path that spells exactly those targets (blank between, repeats
   separated by a blank), with phonemes made unlikely on silent frames (`SILENCE_PENALTY`); each phoneme gets the
   frames where the path emits it.
3. CTC emissions are peaky (a phoneme often fires on one or two frames, the rest is blank), so the blank frames
   are handed out: inside a word, between phonemes, the gap is split at its middle; between words, a run of
   at least `MIN_PAUSE_SECONDS` of silent frames (energy more than `SILENCE_DB` below the loud frames) is a
   pause, the sound before it belongs to the previous word and the sound after it to the next; without such a
   pause the gap is split at its middle. Before the first and after the last phoneme, sounding frames next to it
   extend it and silence stays out (leading and trailing silence).
4. Punctuation marks come back as words with no phonemes: they span the pause they stand in, or are
   zero-length at the end of the previous word when there is none. Stress marks come back as zero-length
   phonemes at the start of the phoneme they stress, so a word's phoneme timings match ``Word.phonemes`` one to
   one.

Times: posterior ``j`` covers mel frames ``j*s .. j*s + s - 1`` (``s`` = `mel_frames_per_alignment_frame`, 3 at
the token rate); mel frame ``f`` is centered at ``f * hop / sample_rate``, so frame ``j`` starts at
``(j*s - 0.5) * hop / sample_rate`` (clamped to the clip).

Why the token rate (32 ms) and not the mel rate (10.7 ms): measured on 24 clips of words synthesized one by one
and joined with known gaps (three voices, one unseen in training; 354 word boundaries), with one model trained
for 9 minutes on 14 minutes of speech, the token-rate alignment head put boundaries at a median error of 26 ms
(mean 42 ms, 80 % within 50 ms, 93 % within 100 ms) while the mel-rate head of the same model (3 posteriors per
token, on the quantized tokens) was at 126 ms (mean 233 ms, 36 % within 50 ms), both through this module: with
about 8 frames per phoneme, CTC's emissions drift freely inside the blanks. Finer frames do not help when the
spikes are not where the sounds are.

Shapes: ``T`` CTC frames, ``V`` phoneme vocabulary, ``L`` CTC targets, ``M`` mel bands, ``F`` mel frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from tts.audio import Audio
from tts.errors import AudioError, TextError
from tts.text import PHONEME_TABLE, Word, phonemize
from tts.text.phonemes import STRESS_MARKS
from tts.tokenizer.model import CTC_BLANK_ID, SpeechTokenizer, SpeechTokenizerConfig

SILENCE_DB = 45.0
"""A frame whose energy is this far below the loud frames (95th percentile) counts as silence."""

SILENCE_PENALTY = 1000.0
"""Log-probability taken from every phoneme on silent frames before the Viterbi search, so no phoneme is placed
where there is no sound unless the clip has no room elsewhere (a CTC head sometimes fires a clip's first phoneme
in its leading silence, or a word's first phoneme in the pause before it)."""

MIN_PAUSE_SECONDS = 0.04
"""Shorter silent runs between words (stop closures, brief dips) are not pauses."""

MAX_ALIGN_CELLS = 400_000_000
"""Frames x alignment states the Viterbi back-pointers may hold (one byte each)."""


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme of a word (or a zero-length stress mark) with its span in seconds."""

    phoneme: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class WordTiming:
    """One word (or punctuation mark) of the transcript with its span in seconds and its phonemes' spans.

    Punctuation marks have no phonemes; they span the pause they stand in, or have zero length.
    """

    word: str
    start: float
    end: float
    phonemes: list[PhonemeTiming] = field(default_factory=list)

    @property
    def is_punctuation(self) -> bool:
        return not self.phonemes

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        """JSON-able form (what ``timbre align --json`` prints)."""
        return {"word": self.word, "start": round(self.start, 4), "end": round(self.end, 4),
                "phonemes": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(p).items()}
                             for p in self.phonemes]}


def is_ctc_target(symbol: str) -> bool:
    """True for a table phoneme that is a sound of its own (not a stress mark, not punctuation or special)."""
    return PHONEME_TABLE.is_phoneme(symbol) and symbol not in STRESS_MARKS


def ctc_targets(words: Sequence[Word]) -> list[int]:
    """CTC target ids of `words`: their phonemes without stress marks, word boundaries or punctuation."""
    return [PHONEME_TABLE.id(symbol) for word in words for symbol in word.phonemes if is_ctc_target(symbol)]


def min_ctc_frames(targets: Sequence[int]) -> int:
    """Fewest CTC frames that can spell `targets`: one per target plus a blank between equal neighbours."""
    return len(targets) + sum(1 for a, b in zip(targets, targets[1:]) if a == b)


# ---------------------------------------------------------------------------------------------------------
# Viterbi


def ctc_viterbi(log_probs: np.ndarray | torch.Tensor, targets: Sequence[int], blank: int = CTC_BLANK_ID) -> np.ndarray:
    """The most probable CTC path through `targets`: each target's ``[first, last + 1)`` frame span.

    Args:
        log_probs: ``(T, V)`` frame log-probabilities (log-softmax of CTC logits).
        targets: ``L`` target ids (no blanks), ``L >= 1``.
        blank: the blank id.

    Returns:
        ``(L, 2)`` int64 spans of the frames that emit each target, in order and non-overlapping.

    Raises:
        ValueError: fewer frames than `min_ctc_frames` (the targets cannot fit), or no targets.
    """
    scores = log_probs.detach().float().cpu().numpy() if isinstance(log_probs, torch.Tensor) else np.asarray(log_probs, np.float32)
    num_frames = scores.shape[0]
    labels = np.asarray(targets, dtype=np.int64)
    if labels.size == 0:
        raise ValueError("nothing to align: no CTC targets")
    if num_frames < min_ctc_frames(labels):
        raise ValueError(f"{len(labels)} targets need at least {min_ctc_frames(labels)} frames, got {num_frames}")
    extended = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    extended[1::2] = labels
    num_states = extended.size
    if num_frames * num_states > MAX_ALIGN_CELLS:
        raise ValueError(f"{num_frames} frames x {num_states} states is too large to align in one piece")
    # A label state may be entered from two states back (skipping the blank) unless it repeats that label.
    can_skip = np.zeros(num_states, dtype=bool)
    can_skip[3::2] = labels[1:] != labels[:-1]
    emit = scores[:, extended]  # (T, S)
    neg_inf = np.float32(-np.inf)
    score = np.full(num_states, neg_inf, dtype=np.float32)
    score[0], score[1] = emit[0, 0], emit[0, 1]
    back = np.zeros((num_frames, num_states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    shifted1 = np.empty_like(score)
    shifted2 = np.empty_like(score)
    for t in range(1, num_frames):
        shifted1[0] = neg_inf
        shifted1[1:] = score[:-1]
        shifted2[:2] = neg_inf
        shifted2[2:] = score[:-2]
        shifted2[~can_skip] = neg_inf
        candidates = np.stack((score, shifted1, shifted2))
        choice = np.argmax(candidates, axis=0)
        back[t] = choice
        score = candidates[choice, np.arange(num_states)] + emit[t]
    state = num_states - 1 if score[-1] >= score[-2] else num_states - 2
    path = np.empty(num_frames, dtype=np.int64)
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    spans = np.zeros((len(labels), 2), dtype=np.int64)
    emitted = path % 2 == 1
    frames = np.flatnonzero(emitted)
    target_of = (path[frames] - 1) // 2
    # The path visits every label state exactly once, in order, so each target's frames are one run.
    first = np.searchsorted(target_of, np.arange(len(labels)), side="left")
    last = np.searchsorted(target_of, np.arange(len(labels)), side="right")
    spans[:, 0] = frames[first]
    spans[:, 1] = frames[last - 1] + 1
    return spans


# ---------------------------------------------------------------------------------------------------------
# From emission spans to word timings


def frame_energy_db(mel: torch.Tensor, config: SpeechTokenizerConfig) -> np.ndarray:
    """``(M, F)`` log-mel -> ``(T,)`` energy in dB of each alignment frame (the loudest mel frame it covers)."""
    magnitude = torch.exp(mel.float()).mean(dim=0)  # (F,) mean mel magnitude
    energy = 20.0 * torch.log10(magnitude.clamp(min=config.mel.log_floor))
    step = config.mel_frames_per_alignment_frame
    padded = torch.nn.functional.pad(energy, (0, (-len(energy)) % step), value=float(energy.min()))
    return padded.reshape(-1, step).max(dim=1).values.cpu().numpy()


def silent_frames(energy_db: np.ndarray, silence_db: float = SILENCE_DB) -> np.ndarray:
    """``(T,)`` bool: frames more than `silence_db` below the loud (95th percentile) frames."""
    loud = float(np.percentile(energy_db, 95)) if len(energy_db) else 0.0
    return energy_db < loud - silence_db


def _split_gap(start: int, end: int, silent: np.ndarray, min_pause: int, between_words: bool) -> tuple[int, int]:
    """Where the previous sound ends and the next begins in the blank gap ``[start, end)``.

    Returns ``(previous_end, next_start)``; they differ when the gap holds a pause.
    """
    if between_words and end - start >= min_pause:
        quiet = silent[start:end]
        runs = _runs(quiet)
        pauses = [(a, b) for a, b in runs if b - a >= min_pause]
        if pauses:
            return start + pauses[0][0], start + pauses[-1][1]
    middle = (start + end + 1) // 2
    return middle, middle


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in `flags`."""
    padded = np.concatenate(([False], flags.astype(bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def phoneme_frame_spans(
    emission: np.ndarray, word_of_target: Sequence[int], silent: np.ndarray, min_pause: int
) -> np.ndarray:
    """Grow CTC emission spans ``(L, 2)`` over the blank frames around them (rule 3 of the module docstring).

    Returns ``(L, 2)`` frame spans; consecutive phonemes touch unless a pause or the clip's edge lies between.
    """
    spans = emission.copy()
    num_frames = len(silent)
    # Leading and trailing: extend over sounding blank frames only.
    start = int(spans[0, 0])
    while start > 0 and not silent[start - 1]:
        start -= 1
    spans[0, 0] = start
    end = int(spans[-1, 1])
    while end < num_frames and not silent[end]:
        end += 1
    spans[-1, 1] = end
    for index in range(len(spans) - 1):
        gap_start, gap_end = int(emission[index, 1]), int(emission[index + 1, 0])
        if gap_end <= gap_start:
            continue
        between_words = word_of_target[index] != word_of_target[index + 1]
        previous_end, next_start = _split_gap(gap_start, gap_end, silent, min_pause, between_words)
        spans[index, 1] = previous_end
        spans[index + 1, 0] = next_start
    return spans


def align_log_probs(
    log_probs: np.ndarray | torch.Tensor,
    words: Sequence[Word],
    energy_db: np.ndarray,
    config: SpeechTokenizerConfig,
    duration: float | None = None,
) -> list[WordTiming]:
    """Word timings from CTC log-probabilities (the core of `align`, for callers that batch the model).

    Args:
        log_probs: ``(T, V)`` log-softmax of `SpeechTokenizer.alignment_logits` of one clip (valid frames only).
        words: the transcript from `tts.text.phonemize`.
        energy_db: ``(T,)`` CTC-frame energies (`frame_energy_db`).
        config: the tokenizer's config (alignment frame rate and hop).
        duration: the clip's length in seconds (times are clamped to it); default from `T`.

    Raises:
        TextError: the transcript has no phonemes, or more than the clip can hold at the CTC rate.
    """
    targets: list[int] = []
    word_of_target: list[int] = []
    for index, word in enumerate(words):
        for symbol in word.phonemes:
            if is_ctc_target(symbol):
                targets.append(PHONEME_TABLE.id(symbol))
                word_of_target.append(index)
    if not targets:
        raise TextError("the transcript has no phonemes to align: give the words that are spoken")
    num_frames = len(energy_db)
    needed = min_ctc_frames(targets)
    if num_frames < needed:
        frame_seconds = 1.0 / config.alignment_rate
        raise TextError(
            f"the transcript is longer than the audio allows: its {len(targets)} phonemes need at least "
            f"{needed * frame_seconds:.2f} s of speech, the clip has {num_frames * frame_seconds:.2f} s. "
            "Check that the text matches the recording (or trim the text to what is said)."
        )
    silent = silent_frames(energy_db)
    scores = torch.as_tensor(log_probs[:num_frames]).detach().float().cpu().clone()
    penalty = torch.full((scores.shape[1],), SILENCE_PENALTY)
    penalty[CTC_BLANK_ID] = 0.0
    scores[torch.from_numpy(silent)] -= penalty
    emission = ctc_viterbi(scores, targets)
    min_pause = max(1, math.ceil(MIN_PAUSE_SECONDS * config.alignment_rate))
    spans = phoneme_frame_spans(emission, word_of_target, silent, min_pause)

    hop_seconds = config.mel.hop_length / config.mel.sample_rate
    step = config.mel_frames_per_alignment_frame
    limit = duration if duration is not None else num_frames * step * hop_seconds

    def seconds(frame: int) -> float:
        return float(min(limit, max(0.0, (frame * step - 0.5) * hop_seconds)))

    timings: list[WordTiming] = []
    target = 0
    for index, word in enumerate(words):
        if word.is_punctuation:
            timings.append(WordTiming(word.text, 0.0, 0.0))  # placed below, once its neighbours are known
            continue
        phonemes: list[PhonemeTiming] = []
        pending_zero: list[str] = []  # stress marks and unknown symbols wait for the next sound
        for symbol in word.phonemes:
            if not is_ctc_target(symbol):
                pending_zero.append(symbol)
                continue
            start, end = seconds(int(spans[target, 0])), seconds(int(spans[target, 1]))
            phonemes.extend(PhonemeTiming(mark, start, start) for mark in pending_zero)
            pending_zero.clear()
            phonemes.append(PhonemeTiming(symbol, start, end))
            target += 1
        if pending_zero:
            at = phonemes[-1].end if phonemes else (timings[-1].end if timings else 0.0)
            phonemes.extend(PhonemeTiming(mark, at, at) for mark in pending_zero)
        sounding = [p for p in phonemes if p.end > p.start] or phonemes
        timings.append(WordTiming(word.text, sounding[0].start, sounding[-1].end, phonemes))
    _place_punctuation(timings)
    return timings


def _place_punctuation(timings: list[WordTiming]) -> None:
    """Punctuation spans the gap between the spoken words around it (zero-length when they touch)."""
    for index, timing in enumerate(timings):
        if not timing.is_punctuation:
            continue
        previous = next((t for t in reversed(timings[:index]) if not t.is_punctuation), None)
        following = next((t for t in timings[index + 1:] if not t.is_punctuation), None)
        start = previous.end if previous is not None else 0.0
        end = following.start if following is not None else start
        # Several marks in one gap: the first takes the pause, the others are zero-length after it.
        earlier = timings[index - 1] if index else None
        if earlier is not None and earlier.is_punctuation:
            start = end = earlier.end
        timing.start, timing.end = start, max(start, end)


def align(
    audio: Audio,
    text: str | Sequence[Word],
    model: SpeechTokenizer,
) -> list[WordTiming]:
    """Word and phoneme timings of `text` in `audio`, from the tokenizer's CTC head.

    Args:
        audio: the recording (any rate; resampled to the model's).
        text: its transcript, as text or as the words of `tts.text.phonemize`.
        model: a trained `SpeechTokenizer`.

    Returns:
        One `WordTiming` per word and punctuation mark of the transcript, in order, not overlapping.

    Raises:
        TextError: empty transcript, or one longer than the audio can hold.
        AudioError: empty audio.
    """
    model.config.check_phoneme_table(PHONEME_TABLE)
    words = phonemize(text) if isinstance(text, str) else list(text)
    if not any(word.phonemes for word in words):
        raise TextError("the transcript has no words to align: give the words that are spoken")
    if audio.duration <= 0:
        raise AudioError("the audio is empty")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mel = model.mel_of(audio)
            logits, lengths = model.alignment_logits(mel[None])
    finally:
        model.train(was_training)
    log_probs = torch.log_softmax(logits[0, : int(lengths[0])].float(), dim=-1)
    energy = frame_energy_db(mel, model.config)[: int(lengths[0])]
    return align_log_probs(log_probs, words, energy, model.config, duration=audio.duration)
