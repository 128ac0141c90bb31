"""Long text, checked sentence by sentence: is every sentence of a paragraph said once, none skipped or repeated?

    timbre eval-long --chars 2000 --voice flite:awb --out runs/eval/long

The paragraph is the held-out texts (`heldout_texts`, never trained on) joined in order until it is at least
`--chars` characters long. The engine says it in one call (chunked inside, as `synthesize` always does), Whisper
transcribes the whole recording, and `sentence_coverage` aligns the transcript's words with the paragraph's
(both Whisper-normalized, as for WER; a word-level edit alignment) to judge each sentence:

* **skipped**: more than `SKIPPED_ABOVE` of its words have no transcript word at all where they belong (the
  alignment deletes them): a dropped sentence leaves a gap, while a sentence said badly is still heard as about
  as many (wrong) words, which the alignment substitutes; the share of its words heard right is reported too;
* **repeated**: after the alignment, the transcript's unmatched words hold a run that says the sentence again:
  at least `REPEAT_MIN_WORDS` words of which at least `REPEAT_MATCH` are, in order, the sentence's own
  (longest common subsequence).

A sentence with no words after normalization (a lone number in words is still words) counts as said.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tts.audio import Audio

SKIPPED_ABOVE = 0.66
"""A sentence with a larger share of its words missing from the transcript (deleted) is judged skipped."""
REPEAT_MIN_WORDS = 4
REPEAT_MATCH = 0.6
DEFAULT_CHARS = 2000
DEFAULT_VOICE = "flite:awb"
"""The held-out voice the shipped-model gates prompt with (no training recipe uses flite:awb)."""
DEFAULT_PROMPT_TEXT = "Please call Stella and ask her to bring these things with her from the store."


def paragraph(chars: int = DEFAULT_CHARS) -> str:
    """The held-out texts joined in order until at least `chars` characters (cycling if they run out)."""
    from tts.evaluation.testsets import heldout_texts

    if chars < 1:
        raise ValueError(f"chars must be at least 1, got {chars}")
    texts, parts, length, index = heldout_texts(), [], 0, 0
    while length < chars:
        parts.append(texts[index % len(texts)])
        length += len(parts[-1]) + (1 if len(parts) > 1 else 0)
        index += 1
    return " ".join(parts)


@dataclass(frozen=True)
class SentenceResult:
    """One sentence of the paragraph as heard: the share of its words found in place, and the verdicts."""

    index: int
    text: str
    words: int
    heard: float
    """Share of its words heard right, in place."""
    missing: float
    """Share of its words with no transcript word where they belong."""
    skipped: bool
    repeated: bool


@dataclass
class LongTextReport:
    """The paragraph, the transcript, every sentence's result and the run's figures."""

    text: str
    transcript: str
    sentences: list[SentenceResult]
    wer: float
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def skipped(self) -> list[SentenceResult]:
        return [s for s in self.sentences if s.skipped]

    @property
    def repeated(self) -> list[SentenceResult]:
        return [s for s in self.sentences if s.repeated]

    @property
    def verdict(self) -> str:
        """PASS when no sentence was skipped or repeated."""
        return "PASS" if not self.skipped and not self.repeated else "FAIL"

    def to_markdown(self) -> str:
        lines = [f"# Long text: {len(self.text):,} characters, {len(self.sentences)} sentences: {self.verdict}", "",
                 f"- skipped sentences: {len(self.skipped)}; repeated sentences: {len(self.repeated)}",
                 f"- WER of the whole paragraph: {self.wer:.3f}",
                 f"- audio {self.audio_seconds:.1f} s in {self.compute_seconds:.1f} s of synthesis",
                 f"- settings: {json.dumps(self.settings, sort_keys=True)}", "",
                 "| # | words | heard right | missing | verdict | sentence |", "| --- | --- | --- | --- | --- | --- |"]
        for s in self.sentences:
            verdict = "skipped" if s.skipped else "repeated" if s.repeated else "said"
            lines.append(f"| {s.index + 1} | {s.words} | {s.heard:.2f} | {s.missing:.2f} | {verdict} | {s.text} |")
        return "\n".join(lines + ["", "## Transcript", "", self.transcript, ""])

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"verdict": self.verdict}
        (folder / "report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        return folder


def _alignment(reference: list[str], hypothesis: list[str]) -> list[tuple[int | None, int | None]]:
    """A minimum-edit alignment as ``(reference index or None, hypothesis index or None)`` pairs, in order."""
    n, m = len(reference), len(hypothesis)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i
    for j in range(1, m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, above = cost[i], cost[i - 1]
        for j in range(1, m + 1):
            row[j] = min(above[j - 1] + (reference[i - 1] != hypothesis[j - 1]), above[j] + 1, row[j - 1] + 1)
    pairs, i, j = [], n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def _common_subsequence(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def sentence_coverage(text: str, transcript: str) -> tuple[list[SentenceResult], float]:
    """Judge every sentence of `text` in `transcript` (see the module docstring): ``(results, WER)``."""
    from tts.evaluation.wer import normalize_words
    from tts.text.chunking import split_sentences

    sentences = split_sentences(text)
    words = [normalize_words(sentence) for sentence in sentences]
    reference = [w for sentence in words for w in sentence]
    owner = [index for index, sentence in enumerate(words) for _ in sentence]
    hypothesis = normalize_words(transcript)
    pairs = _alignment(reference, hypothesis)
    errors = sum(1 for r, h in pairs if r is None or h is None or reference[r] != hypothesis[h])
    wer = errors / max(len(reference), 1)
    hits, gaps = [0] * len(sentences), [0] * len(sentences)
    for r, h in pairs:
        if r is not None and h is None:
            gaps[owner[r]] += 1
        elif r is not None and reference[r] == hypothesis[h]:
            hits[owner[r]] += 1
    # Runs of transcript words that the alignment left over (insertions): where a repeat would be.
    runs, run = [], []
    for r, h in pairs:
        if r is None:
            run.append(hypothesis[h])
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    results = []
    for index, (sentence, sentence_words) in enumerate(zip(sentences, words)):
        count = len(sentence_words)
        heard = hits[index] / count if count else 1.0
        missing = gaps[index] / count if count else 0.0
        repeated = count >= REPEAT_MIN_WORDS and any(
            len(extra) >= REPEAT_MIN_WORDS and _common_subsequence(sentence_words, extra) >= REPEAT_MATCH * count
            for extra in runs)
        results.append(SentenceResult(index, sentence, count, round(heard, 4), round(missing, 4),
                                      missing > SKIPPED_ABOVE, repeated))
    return results, wer


def evaluate_long_text(say: Callable[[str], Audio], chars: int = DEFAULT_CHARS, asr_model: str | None = None,
                       settings: dict | None = None) -> tuple[LongTextReport, Audio]:
    """Say `paragraph(chars)` with `say` (text -> `Audio`), transcribe it whole and judge every sentence."""
    from tts.evaluation.asr import DEFAULT_ASR_MODEL, transcribe

    text = paragraph(chars)
    started = time.perf_counter()
    audio = say(text)
    elapsed = time.perf_counter() - started
    transcript = transcribe(audio, asr_model or DEFAULT_ASR_MODEL)
    sentences, wer = sentence_coverage(text, transcript)
    return LongTextReport(text, transcript, sentences, round(wer, 4), round(audio.duration, 2), round(elapsed, 2),
                          dict(settings or {}, asr=asr_model or DEFAULT_ASR_MODEL)), audio
