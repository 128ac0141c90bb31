"""The text front end's entry points for engines: `prepare_text` for one chunk, `split_for_synthesis`
for a whole input."""

from __future__ import annotations

from dataclasses import dataclass

from tts.errors import TextError
from tts.text.chunking import chunk_text
from tts.text.g2p import Lexicon, phonemize_normalized
from tts.text.normalize import normalize_text
from tts.text.phonemes import PHONEME_TABLE, Word

MAX_TEXT_CHARS = 20_000
"""Longest text (in characters) that one synthesize call accepts."""


@dataclass(frozen=True)
class TextInput:
    """One chunk of text, ready for a model.

    `text` is the original, `normalized` what is spoken, `words` its words and punctuation with
    phonemes, `ids` their phoneme-table ids (``PHONEME_TABLE.encode(words)``), and `word_spans` each
    word's ``[start, end)`` in `ids`.
    """

    text: str
    normalized: str
    words: tuple[Word, ...]
    ids: tuple[int, ...]
    word_spans: tuple[tuple[int, int], ...]


def validate_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> None:
    """Raise `TextError` unless `text` is a non-blank string of at most `max_chars` characters.

    Cheap: nothing is normalized or phonemized, so a huge input is refused at once.
    """
    if not isinstance(text, str):
        raise TextError(f"Text must be a string, not {type(text).__name__}.")
    if len(text) > max_chars:
        raise TextError(
            f"The text is {len(text):,} characters long; one call accepts at most {max_chars:,}. "
            "Split it into parts (tts.text.split_for_synthesis does this) and synthesize them one by one."
        )
    if not text.strip():
        raise TextError("The text is empty: type the words the voice should say.")


def _nothing_speakable(text: str) -> TextError:
    preview = text.strip()[:40]
    return TextError(
        f"Nothing speakable in the text {preview!r}: it has no words or numbers (emoji and symbols are "
        "not read aloud). Write the words the voice should say."
    )


def prepare_text(text: str, lexicon: Lexicon | None = None, max_chars: int = MAX_TEXT_CHARS) -> TextInput:
    """Normalize, phonemize and encode one chunk of text; the one entry point engines call.

    Raises `TextError` for empty text, text over `max_chars` characters, or text with nothing
    speakable (emoji only, symbols only).
    """
    validate_text(text, max_chars)
    normalized = normalize_text(text)
    words = phonemize_normalized(normalized, lexicon)
    if not any(word.phonemes for word in words):
        raise _nothing_speakable(text)
    return TextInput(
        text=text,
        normalized=normalized,
        words=tuple(words),
        ids=tuple(PHONEME_TABLE.encode(words)),
        word_spans=tuple(PHONEME_TABLE.word_spans(words)),
    )


def split_for_synthesis(text: str, max_chars: int = 250) -> list[str]:
    """Validate a whole input and split it into chunks for `prepare_text` (see `chunk_text`).

    Chunks with nothing speakable (a lone emoji between sentences) are dropped; `TextError` when no
    chunk is left, when the text is empty, or longer than `MAX_TEXT_CHARS`.
    """
    validate_text(text)
    chunks = [chunk for chunk in chunk_text(text, max_chars) if normalize_text(chunk)]
    if not chunks:
        raise _nothing_speakable(text)
    return chunks
