"""The versioned phoneme table: symbols <-> ids, and the tokenizer of IPA strings into its symbols.

A table is a JSON file ``{"version": N, "symbols": [...]}`` in ``tts/text/data``; an id is a symbol's
position. The special symbols come first at fixed ids, then the punctuation that carries prosody, then
the IPA inventory. Trained models depend on the ids, so a shipped version is never edited: a changed
table is a new file (``phonemes_v2.json``) and a new `PhonemeTable`.

An IPA string is tokenized by longest match over the table's IPA symbols, so "tʃ", "aɪ" and "iː" are one
symbol each while the stress marks "ˈ" and "ˌ" stay symbols of their own, where espeak-ng put them.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

logger = logging.getLogger(__name__)

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
EOS = "<eos>"
WORD_BOUNDARY = "<wb>"
PAUSE = "<pause>"
SPECIAL_SYMBOLS = (PAD, UNK, BOS, EOS, WORD_BOUNDARY)
PUNCTUATION = (".", ",", "?", "!", ";", ":", "...")
STRESS_MARKS = ("ˈ", "ˌ")


@dataclass(frozen=True)
class Word:
    """One word of the text with its phonemes, or one punctuation mark (then `phonemes` is empty).

    `phonemes` holds table symbols: espeak-ng IPA for en-us, one symbol per element, stress marks as
    elements of their own (``Word("cat", ("k", "ˈ", "æ", "t"))``).
    """

    text: str
    phonemes: tuple[str, ...]

    @property
    def is_punctuation(self) -> bool:
        """True for a punctuation mark, which reaches the models as a prosody cue."""
        return not self.phonemes


@dataclass(frozen=True)
class _TableData:
    version: int
    symbols: tuple[str, ...]
    ids: dict[str, int]
    ipa_by_first_char: dict[str, tuple[str, ...]]  # longest first


class PhonemeTable:
    """One versioned mapping between phoneme symbols and ids.

    ``PhonemeTable(path)`` reads its JSON file at first use, not when constructed;
    ``PhonemeTable.from_symbols(symbols, version)`` builds one in memory (tests, conversions).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._data: _TableData | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    @classmethod
    def from_symbols(cls, symbols: Sequence[str], version: int) -> PhonemeTable:
        """A table from its symbol list (ids are positions); validated like a file."""
        table = cls(Path("<memory>"))
        table._data = _build(list(symbols), version, source="<memory>")
        return table

    def _loaded(self) -> _TableData:
        if self._data is None:
            with self._lock:
                if self._data is None:
                    self._data = _read_table(self._path)
        return self._data

    @property
    def version(self) -> int:
        """The table's version; models record it and refuse a table of another version."""
        return self._loaded().version

    @property
    def symbols(self) -> tuple[str, ...]:
        """All symbols, in id order."""
        return self._loaded().symbols

    def __len__(self) -> int:
        return len(self._loaded().symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._loaded().ids

    def __repr__(self) -> str:
        state = f"v{self.version}, {len(self)} symbols" if self._data is not None else "not loaded"
        return f"PhonemeTable({str(self._path)!r}, {state})"

    def id(self, symbol: str) -> int:
        """The id of `symbol`; KeyError naming it when the table does not have it."""
        try:
            return self._loaded().ids[symbol]
        except KeyError:
            raise KeyError(f"symbol {symbol!r} is not in phoneme table v{self.version}") from None

    @property
    def pad_id(self) -> int:
        """Id of the padding symbol (always 0)."""
        return self.id(PAD)

    @property
    def unk_id(self) -> int:
        """Id of the unknown-symbol placeholder."""
        return self.id(UNK)

    @property
    def bos_id(self) -> int:
        """Id of the begin-of-sequence symbol."""
        return self.id(BOS)

    @property
    def eos_id(self) -> int:
        """Id of the end-of-sequence symbol."""
        return self.id(EOS)

    @property
    def word_boundary_id(self) -> int:
        """Id of the word-boundary symbol that `encode` puts between words."""
        return self.id(WORD_BOUNDARY)

    def tokenize(self, ipa: str) -> list[str]:
        """Split an IPA string into table symbols by longest match; white space separates symbols.

        A character that starts no symbol comes back alone (``unknown_symbols`` finds those), so
        nothing is dropped silently.
        """
        data = self._loaded()
        ipa = unicodedata.normalize("NFC", ipa)
        out: list[str] = []
        position = 0
        while position < len(ipa):
            char = ipa[position]
            if char.isspace():
                position += 1
                continue
            for symbol in data.ipa_by_first_char.get(char, ()):
                if ipa.startswith(symbol, position):
                    out.append(symbol)
                    position += len(symbol)
                    break
            else:
                out.append(char)
                position += 1
        return out

    def is_phoneme(self, symbol: str) -> bool:
        """True for a phoneme of the table (not a special symbol, not punctuation)."""
        return symbol in self._loaded().ids and not symbol.startswith("<") and symbol not in PUNCTUATION

    def unknown_symbols(self, symbols: Iterable[str]) -> list[str]:
        """The symbols (in order, without repeats) that the table does not have."""
        ids = self._loaded().ids
        return list(dict.fromkeys(s for s in symbols if s not in ids))

    def _word_ids(self, word: Word) -> list[int]:
        ids = self._loaded().ids
        if word.is_punctuation:
            return [ids.get(word.text, ids[PAUSE]) if word.text in PUNCTUATION else ids[PAUSE]]
        out = []
        for symbol in word.phonemes:
            if symbol not in ids:
                if symbol not in self._warned:
                    self._warned.add(symbol)
                    logger.warning("phoneme %r (in %r) is not in phoneme table v%d; encoded as %s",
                                   symbol, word.text, self.version, UNK)
                out.append(ids[UNK])
            else:
                out.append(ids[symbol])
        return out

    def encode(self, words: Sequence[Word]) -> list[int]:
        """Ids of `words`: each word's phoneme ids, a word-boundary id between consecutive words.

        Punctuation words encode as their mark (any other mark as ``<pause>``). Unknown phonemes become
        ``<unk>`` with a logged warning. No ``<bos>``/``<eos>``: models add those.
        """
        ids: list[int] = []
        boundary = self.word_boundary_id
        for index, word in enumerate(words):
            if index:
                ids.append(boundary)
            ids.extend(self._word_ids(word))
        return ids

    def word_spans(self, words: Sequence[Word]) -> list[tuple[int, int]]:
        """Each word's ``[start, end)`` in ``encode(words)``, so alignment and editing can address words."""
        spans = []
        position = 0
        for index, word in enumerate(words):
            if index:
                position += 1  # the word boundary
            length = len(word.phonemes) if word.phonemes else 1
            spans.append((position, position + length))
            position += length
        return spans

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The symbols of `ids`; ValueError for an id outside the table."""
        symbols = self._loaded().symbols
        out = []
        for value in ids:
            index = int(value)
            if not 0 <= index < len(symbols):
                raise ValueError(f"id {index} is outside phoneme table v{self.version} (0..{len(symbols) - 1})")
            out.append(symbols[index])
        return out


def _build(symbols: list[str], version: int, source: str) -> _TableData:
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{source}: version must be a positive integer, not {version!r}")
    if not all(isinstance(s, str) and s for s in symbols):
        raise ValueError(f"{source}: every symbol must be a non-empty string")
    if tuple(symbols[: len(SPECIAL_SYMBOLS)]) != SPECIAL_SYMBOLS or PAUSE not in symbols:
        raise ValueError(f"{source}: a phoneme table starts with {', '.join(SPECIAL_SYMBOLS)} and has {PAUSE}")
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise ValueError(f"{source}: duplicate symbols {duplicates}")
    if any(unicodedata.normalize("NFC", s) != s for s in symbols):
        raise ValueError(f"{source}: symbols must be NFC-normalized")
    ipa = [s for s in symbols if not s.startswith("<") and s not in PUNCTUATION]
    by_first: dict[str, list[str]] = {}
    for symbol in sorted(ipa, key=len, reverse=True):
        by_first.setdefault(symbol[0], []).append(symbol)
    return _TableData(
        version=version,
        symbols=tuple(symbols),
        ids={s: i for i, s in enumerate(symbols)},
        ipa_by_first_char={c: tuple(v) for c, v in by_first.items()},
    )


def _read_table(path: Path) -> _TableData:
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict) or not isinstance(raw.get("symbols"), list):
        raise ValueError(f"{path}: expected a JSON object with a 'symbols' list")
    return _build(raw["symbols"], raw.get("version"), source=str(path))


def table_path(version: int) -> Path:
    """Path of the shipped table file of `version` (it may not exist)."""
    return Path(__file__).resolve().parent / "data" / f"phonemes_v{version}.json"


# The one table the studio uses. Loaded at first use; importing this module reads nothing.
PHONEME_TABLE = PhonemeTable(table_path(1))
