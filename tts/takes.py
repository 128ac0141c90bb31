"""Several takes of one text, the best kept by the ASR check: `best_take` (speech), `pick_take` (any renderer).

Each take is a whole `tts.synthesis.synthesize` run with its own seed (the run's seed, then the next ones), so
any take can be made again alone. The offline ASR (Whisper tiny.en, `tts.evaluation.asr`) transcribes every take
and the one with the lowest word error rate against the text (its style tags removed) is kept; on a tie, the
earlier take. This is what a voice actor's "give me three, I'll pick one" looks like when a machine listens:
the sampled token LM sometimes slurs or skips a word, and another seed usually does not.

`synthesize(..., verify=True)` is the finer-grained relative: it regenerates single sentences while their WER
is above a threshold. Takes compare whole renditions and always return the best of exactly `takes` of them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable

from tts.audio import Audio
from tts.errors import TimbreError

MAX_TAKES = 8
"""Most takes one call makes (each is a full synthesis)."""


@dataclass(frozen=True)
class Take:
    """One rendition: its seed, audio, what the ASR heard and the word error rate against the text."""

    seed: int
    audio: Audio
    transcript: str
    wer: float


@dataclass(frozen=True)
class Takes:
    """Every take of a `best_take` call, in the order made, and which one was kept."""

    takes: tuple[Take, ...]
    best_index: int

    @property
    def best(self) -> Take:
        """The kept take: the lowest WER, the earliest on a tie."""
        return self.takes[self.best_index]


def spoken_text(text: str, tags: bool = True) -> str:
    """What `text` asks to be said: its inline style tags removed (`tts.style.parse_style_tags`) when `tags`."""
    if not tags:
        return text
    from tts.style import parse_style_tags

    return "".join(segment for segment, _ in parse_style_tags(text))


def best_take(text: str, voice, *, takes: int = 3, seed: int | None = None, tags: bool = True,
              asr_model: str | None = None, on_take: Callable[[int, int, Take], None] | None = None,
              **options) -> Takes:
    """Say `text` in `voice` `takes` times (seeds `seed`, `seed + 1`, ...) and keep the take the ASR hears best.

    Args:
        text, voice, tags: as for `tts.synthesis.synthesize`.
        takes: how many renditions, 1 to `MAX_TAKES` (1: one take, still transcribed and scored).
        seed: the first take's seed (None: a random one); take ``i`` uses ``seed + i``.
        asr_model: the Whisper model that listens (default: the evaluation harness's, tiny.en).
        on_take: called as ``on_take(done, takes, take)`` after each take, for progress.
        **options: everything else `synthesize` takes (engine, emotion, speed, models, watermark, ...);
            not ``stream``: takes are compared whole.

    Returns:
        `Takes`: every take with its transcript and WER, and the index of the kept one.

    Raises:
        TimbreError: `takes` out of range, ``stream`` asked for, or a text with no words to check against.
        The errors of `synthesize` (bad text, voice, settings or checkpoints), before the first take ends.
    """
    from tts.synthesis import synthesize

    if options.get("stream"):
        raise TimbreError("takes are compared whole: ask for takes or for a stream, not both")
    return pick_take(lambda take_seed: synthesize(text, voice, seed=take_seed, tags=tags, **options),
                     spoken_text(text, tags), takes=takes, seed=seed, asr_model=asr_model, on_take=on_take)


def pick_take(render: Callable[[int], Audio], reference: str, *, takes: int = 3, seed: int | None = None,
              asr_model: str | None = None, on_take: Callable[[int, int, Take], None] | None = None) -> Takes:
    """`render` (a seed -> the audio of one rendition) run `takes` times with seeds `seed`, `seed + 1`, ...; the
    rendition in which the ASR hears `reference` best is kept (`best_take` for speech; word edits use it too).

    Raises:
        TimbreError: `takes` out of range, or a reference with no words to compare on.
    """
    from tts.evaluation.asr import DEFAULT_ASR_MODEL, transcribe
    from tts.evaluation.wer import normalize_words, wer

    if isinstance(takes, bool) or not isinstance(takes, int) or not 1 <= takes <= MAX_TAKES:
        raise TimbreError(f"takes must be a whole number from 1 to {MAX_TAKES}, got {takes!r}")
    if not normalize_words(reference):
        raise TimbreError("the text has no words the ASR check could compare takes on")
    first = secrets.randbelow(2**31) if seed is None else int(seed)
    made: list[Take] = []
    for index in range(takes):
        audio = render(first + index)
        heard = transcribe(audio, asr_model or DEFAULT_ASR_MODEL)
        made.append(Take(first + index, audio, heard, wer(reference, heard)))
        if on_take is not None:
            on_take(index + 1, takes, made[-1])
    best = min(range(len(made)), key=lambda i: (made[i].wer, i))
    return Takes(tuple(made), best)
