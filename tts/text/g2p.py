"""Grapheme to phoneme: normalized English -> `Word`s with espeak-ng IPA (en-us), and the user lexicon.

espeak-ng runs through the `phonemizer` package. Its backend is created once, at first use, and every
call into it holds one lock: the espeak library is a single global state machine and is not safe to
call from two threads at once. Results are cached per run of words between punctuation marks.

Word boundaries: each run of words goes to espeak as one line, so words are pronounced in context
(reduced "the", "to", "a"), and the output's word count is checked against the input's. espeak
sometimes merges words ("on the" -> "ɔnðə") or splits them; such a run is phonemized again in halves,
down to single words, so every output word maps to exactly one input word.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from tts.errors import TextError, TimbreError
from tts.text.normalize import normalize_text
from tts.text.phonemes import PHONEME_TABLE, PUNCTUATION, Word

logger = logging.getLogger(__name__)

LANGUAGE = "en-us"
_TOKEN = re.compile(r"\.\.\.|[.,?!;:]|[^\s.,?!;:]+")
_BACKEND_LOCK = threading.Lock()
_backend: Any = None
_separator: Any = None


def _espeak_backend() -> tuple[Any, Any]:
    """The phonemizer espeak backend and separator, created once."""
    global _backend, _separator
    if _backend is None:
        try:
            from phonemizer.backend import EspeakBackend
            from phonemizer.separator import Separator
        except ImportError as error:  # pragma: no cover - phonemizer is a project dependency
            raise TimbreError("The phonemizer package is missing: install the project with `make setup`.") from error
        try:
            backend = EspeakBackend(
                LANGUAGE,
                preserve_punctuation=True,
                with_stress=True,
                language_switch="remove-flags",
                words_mismatch="ignore",
                logger=logging.getLogger("phonemizer"),
            )
        except RuntimeError as error:
            raise TimbreError(
                f"espeak-ng is not usable ({error}). Install it: `apt-get install espeak-ng` (or `make setup`)."
            ) from error
        _separator = Separator(phone="", syllable="", word=" ")
        _backend = backend
    return _backend, _separator


def _espeak(lines: list[str]) -> list[str]:
    """espeak IPA of each line (words separated by single spaces). Thread-safe."""
    with _BACKEND_LOCK:
        backend, separator = _espeak_backend()
        return backend.phonemize(lines, separator=separator, strip=True, njobs=1)


@functools.lru_cache(maxsize=8192)
def _run_phonemes(
    words: tuple[str, ...], left: tuple[str, ...] = (), right: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], ...]:
    """Phonemes of each word of a run of words between punctuation marks, pronounced in context.

    When espeak's words do not line up with ours (it merged "on the" into one word, or split one),
    each half of the run is phonemized again with one neighbouring word of the other half as context
    (`left`/`right`, phonemized but not returned), down to single words, so only the words at the merge
    lose some context. Context matters: "a" alone is the letter name, "a box" is a weak vowel.
    """
    (ipa,) = _espeak([" ".join(left + words + right)])
    pieces = ipa.split()
    if len(pieces) == len(left) + len(words) + len(right):
        return tuple(tuple(PHONEME_TABLE.tokenize(piece)) for piece in pieces[len(left) : len(left) + len(words)])
    if left or right:
        return _run_phonemes(words)  # the context word itself merged: do without it
    if len(words) == 1:
        return (tuple(PHONEME_TABLE.tokenize("".join(pieces))),)  # a word espeak split in two
    logger.debug("espeak gave %d words for the %d of %r; splitting the run", len(pieces), len(words), words)
    middle = len(words) // 2
    return _run_phonemes(words[:middle], right=words[middle : middle + 1]) + _run_phonemes(
        words[middle:], left=words[middle - 1 : middle]
    )


def clear_cache() -> None:
    """Forget cached pronunciations (after changing espeak's data, or in benchmarks)."""
    _run_phonemes.cache_clear()


class Lexicon:
    """User pronunciations that override espeak's, matched case-insensitively on whole spoken words
    (the words of the normalized text: an entry for "Doctor" also applies to "Dr.").

    ``Lexicon({"Nguyen": "ˈŋ w ɪ n"})``: each pronunciation is IPA, with symbols separated by spaces
    or run together (then split by the phoneme table's longest match, as espeak output is). Symbols the
    phoneme table does not have are refused with a `TextError` that names them.
    """

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, tuple[str, ...]] = {}
        for word, pronunciation in (entries or {}).items():
            self._entries[_lexicon_key(word)] = _parse_pronunciation(word, pronunciation)

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        """Read a lexicon file: JSON (``{"word": "ipa"}``) or text with one ``word<TAB>ipa`` a line.

        In text files, blank lines and lines starting with ``#`` are skipped; a line without a tab is
        split at its first run of spaces.
        """
        path = Path(path)
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TextError(f"Cannot read the lexicon {path}: {error}. Give a UTF-8 text or JSON file.") from error
        if path.suffix.lower() == ".json":
            try:
                entries = json.loads(content)
            except json.JSONDecodeError as error:
                raise TextError(f"Lexicon {path} is not valid JSON ({error}).") from error
            if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
                raise TextError(f'Lexicon {path} must be a JSON object of "word": "ipa" strings.')
            return cls(entries)
        entries = {}
        for number, line in enumerate(content.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            word, _, pronunciation = line.partition("\t") if "\t" in line else line.partition(" ")
            if not pronunciation.strip():
                raise TextError(f"Lexicon {path}, line {number}: expected 'word<TAB>ipa', got {line!r}.")
            entries[word.strip()] = pronunciation.strip()
        return cls(entries)

    def get(self, word: str) -> tuple[str, ...] | None:
        """The phonemes of `word` (any case), or None when the lexicon does not have it."""
        return self._entries.get(_lexicon_key(word))

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and _lexicon_key(word) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Lexicon({len(self)} words)"

    def items(self) -> Iterable[tuple[str, tuple[str, ...]]]:
        """(lower-cased word, phonemes) pairs."""
        return self._entries.items()


def _lexicon_key(word: str) -> str:
    if not isinstance(word, str) or not _TOKEN.fullmatch(word.strip()) or word.strip() in PUNCTUATION:
        raise TextError(f"Lexicon word {word!r} must be a single word without spaces or punctuation.")
    return word.strip().casefold()


def _parse_pronunciation(word: str, pronunciation: str) -> tuple[str, ...]:
    if not isinstance(pronunciation, str):
        raise TextError(f"The pronunciation of {word!r} must be a string of IPA symbols.")
    symbols = PHONEME_TABLE.tokenize(pronunciation)
    bad = list(dict.fromkeys(s for s in symbols if not PHONEME_TABLE.is_phoneme(s)))
    if bad:
        raise TextError(
            f"The pronunciation of {word!r} ({pronunciation!r}) uses symbols that phoneme table "
            f"v{PHONEME_TABLE.version} does not have: {' '.join(bad)}. Use espeak-ng en-us IPA symbols."
        )
    if not symbols:
        raise TextError(f"The pronunciation of {word!r} is empty: give its IPA, e.g. 'k ˈæ t'.")
    return tuple(symbols)


def tokens(normalized: str) -> list[str]:
    """Split normalized text into word and punctuation tokens (the units `phonemize` returns)."""
    return _TOKEN.findall(normalized)


def phonemize_normalized(normalized: str, lexicon: Lexicon | None = None) -> list[Word]:
    """`phonemize` for text that `normalize_text` already produced."""
    words: list[Word] = []
    run: list[str] = []

    def flush() -> None:
        if not run:
            return
        for text, phonemes in zip(run, _run_phonemes(tuple(run))):
            override = lexicon.get(text) if lexicon is not None else None
            if override is not None:
                phonemes = override
            if phonemes:
                words.append(Word(text, phonemes))
            else:
                logger.debug("espeak has no pronunciation for %r; skipped", text)
        run.clear()

    for token in tokens(normalized):
        if token in PUNCTUATION:
            flush()
            words.append(Word(token, ()))
        else:
            run.append(token)
    flush()
    return words


def phonemize(text: str, lexicon: Lexicon | None = None) -> list[Word]:
    """Normalize `text` and convert it to words with espeak-ng en-us IPA phonemes (stress kept).

    Punctuation marks come back as words of their own with no phonemes. Words in `lexicon` take its
    pronunciation. Results are cached, so repeated sentences cost almost nothing.
    """
    return phonemize_normalized(normalize_text(text), lexicon)
