"""Word error rate, Seed-TTS-eval style: Whisper's English normalizer on both sides, then word edit distance.

The normalizer (``whisper_normalizer.english.EnglishTextNormalizer``, the one OpenAI's Whisper evaluation
uses) spells numbers, currency and common abbreviations one way, so "forty-two" and "42" or "Mr." and
"mister" match. Punctuation left after it is stripped; currency and percent signs stay, because "$42" and
"42" are not the same words.

Aggregation follows Seed-TTS-eval: the mean of per-utterance WERs (not the corpus-level ratio) and the
number of utterances whose WER is above 50 %.
"""

from __future__ import annotations

import statistics
import threading
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

UNINTELLIGIBLE_WER = 0.5
"""An utterance above this WER counts as unintelligible (wrong language, garbled or hallucinated)."""

_KEPT_MARKS = frozenset("%")

_normalizer_lock = threading.Lock()
_normalizer = None


def _english_normalizer():
    global _normalizer
    with _normalizer_lock:
        if _normalizer is None:
            from whisper_normalizer.english import EnglishTextNormalizer

            _normalizer = EnglishTextNormalizer()
        return _normalizer


def normalize_words(text: str) -> list[str]:
    """`text` as the list of words WER compares: Whisper-normalized, punctuation stripped."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    normalized = _english_normalizer()(text)
    # Unicode category P* is punctuation. Currency (category Sc) stays, and so does "%", which the
    # normalizer writes for "percent": "50%" and "50" are different words.
    cleaned = "".join(
        " " if unicodedata.category(ch).startswith("P") and ch not in _KEPT_MARKS else ch for ch in normalized
    )
    return cleaned.split()


@dataclass(frozen=True)
class EditCounts:
    """Word-level alignment counts between a reference and a hypothesis."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    hypothesis_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors / reference words (may exceed 1 when the hypothesis has many extra words)."""
        if self.reference_words == 0:
            return 0.0 if self.hypothesis_words == 0 else float(self.hypothesis_words)
        return self.errors / self.reference_words

    def to_dict(self) -> dict:
        return {**asdict(self), "wer": self.wer}


def edit_counts(reference: Sequence[str], hypothesis: Sequence[str]) -> EditCounts:
    """Levenshtein alignment of two word sequences: substitutions, deletions and insertions.

    Among alignments with the fewest errors, ties are broken toward substitutions, then deletions (the
    same order as the usual dynamic-programming backtrace), so the counts are deterministic.
    """
    n, m = len(reference), len(hypothesis)
    # cost[i][j] = (errors, subs, dels, ins) for reference[:i] vs hypothesis[:j]; rows kept one at a time.
    previous = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        current = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            diag = previous[j - 1]
            if reference[i - 1] == hypothesis[j - 1]:
                best = diag
            else:
                best = (diag[0] + 1, diag[1] + 1, diag[2], diag[3])
            up = previous[j]
            deletion = (up[0] + 1, up[1], up[2] + 1, up[3])
            left = current[j - 1]
            insertion = (left[0] + 1, left[1], left[2], left[3] + 1)
            for candidate in (deletion, insertion):
                if candidate[0] < best[0]:
                    best = candidate
            current.append(best)
        previous = current
    _, subs, dels, ins = previous[m]
    return EditCounts(subs, dels, ins, n, m)


def wer_details(reference: str, hypothesis: str) -> EditCounts:
    """Edit counts of `hypothesis` against `reference` after normalization."""
    return edit_counts(normalize_words(reference), normalize_words(hypothesis))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference` (0.0 is perfect; can exceed 1.0).

    Raises:
        ValueError: the reference has no words after normalization (WER is undefined).
    """
    counts = wer_details(reference, hypothesis)
    if counts.reference_words == 0:
        raise ValueError(f"the reference text {reference!r} has no words to score against")
    return counts.wer


@dataclass(frozen=True)
class WerSummary:
    """Seed-TTS-eval's aggregation of per-utterance WERs."""

    count: int
    mean: float | None
    """Mean of per-utterance WERs (None when there are none)."""
    median: float | None
    above_50: int
    """Utterances with WER > 50 %."""

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_wer(values: Iterable[float]) -> WerSummary:
    """Mean and median per-utterance WER, and how many utterances are above 50 %."""
    scores = [float(v) for v in values]
    if not scores:
        return WerSummary(0, None, None, 0)
    return WerSummary(
        len(scores),
        statistics.fmean(scores),
        statistics.median(scores),
        sum(score > UNINTELLIGIBLE_WER for score in scores),
    )
