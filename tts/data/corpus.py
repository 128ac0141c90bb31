"""The corpus format every training recipe reads and `timbre batch` / `timbre corpus build` write.

A corpus is a folder in Hugging Face ``audiofolder`` layout: audio files plus ``metadata.jsonl``, one JSON
object per line with at least ``file_name`` (relative to the folder), ``text`` and ``voice_id``. The other
fields (`CorpusItem`) describe how the sample was made, so any subset can be rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from tts.errors import ManifestError

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.jsonl"


@dataclass(frozen=True)
class CorpusItem:
    """One sample of a corpus (one line of ``metadata.jsonl``).

    Attributes:
        file_name: audio path relative to the corpus folder.
        text: the normalized text that was spoken.
        voice_id: stable id of the voice (a base speaker voice ``engine:voice`` or a pseudo-speaker id).
        phonemes: the spoken phonemes: symbols joined by spaces, words joined by `` | ``.
        style: style label (``neutral``, ``happy``, ...), with `intensity` in [0, 1].
        speed: speaking-rate factor the sample was rendered at.
        duration: seconds.
        sample_rate: Hz of the audio file.
        engine: what made it (``kokoro``, ``piper``, ``flite``, ``ar``, ...).
        seed: the generation seed.
        synthetic: always true for generated data (responsible-use record).
        extra: any further recipe fields (pseudo-speaker recipe, style parameters, versions).
    """

    file_name: str
    text: str
    voice_id: str
    phonemes: str = ""
    style: str = "neutral"
    intensity: float = 0.0
    speed: float = 1.0
    duration: float = 0.0
    sample_rate: int = 24_000
    engine: str = ""
    seed: int = 0
    synthetic: bool = True
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """One ``metadata.jsonl`` line (``extra`` fields are flattened into the object)."""
        record = asdict(self)
        extra = record.pop("extra")
        clash = set(extra) & set(record)
        if clash:
            raise ValueError(f"extra fields {sorted(clash)} clash with standard corpus fields")
        record.update(extra)
        return json.dumps(record, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_record(cls, record: dict) -> "CorpusItem":
        """Parse one metadata object; unknown fields go to ``extra``."""
        if not isinstance(record, dict):
            raise ManifestError(f"expected a JSON object, got {type(record).__name__}")
        for required in ("file_name", "text", "voice_id"):
            if not isinstance(record.get(required), str) or not record[required]:
                raise ManifestError(f"missing or empty field '{required}'")
        known = {name for name in cls.__dataclass_fields__ if name != "extra"}
        kwargs = {key: record[key] for key in known if key in record}
        kwargs["extra"] = {key: value for key, value in record.items() if key not in known}
        return cls(**kwargs)

    def words(self) -> list:
        """The spoken phonemes as `tts.text.Word` values (punctuation marks as words without phonemes), read
        from `phonemes` without running the G2P (training machines need no espeak-ng); empty if there are none."""
        from tts.text.phonemes import PUNCTUATION, Word

        words = []
        for symbols in split_phoneme_string(self.phonemes):
            if len(symbols) == 1 and symbols[0] in PUNCTUATION:
                words.append(Word(symbols[0], ()))
            else:
                words.append(Word("", tuple(symbols)))
        return words

    def audio_path(self, folder: str | os.PathLike) -> Path:
        """Absolute path of the audio file; refuses names that escape the corpus folder."""
        root = Path(folder).resolve()
        path = (root / self.file_name).resolve()
        if root not in path.parents:
            raise ManifestError(f"file_name {self.file_name!r} points outside the corpus folder")
        return path


def read_metadata(folder: str | os.PathLike, strict: bool = False) -> list[CorpusItem]:
    """All items of a corpus folder. Bad lines are skipped with a warning (or raise when `strict`)."""
    return list(iter_metadata(folder, strict=strict))


def iter_metadata(folder: str | os.PathLike, strict: bool = False) -> Iterator[CorpusItem]:
    """Items of ``folder/metadata.jsonl`` in file order."""
    path = Path(folder) / METADATA_NAME
    if not path.is_file():
        raise ManifestError(f"{folder}: no {METADATA_NAME}; build a corpus with `timbre corpus build` or `timbre batch`")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield CorpusItem.from_record(json.loads(line))
            except (json.JSONDecodeError, ManifestError, TypeError) as error:
                if strict:
                    raise ManifestError(f"{path}:{number}: {error}") from error
                logger.warning("%s:%d skipped: %s", path, number, error)


def split_phoneme_string(phonemes: str) -> list[list[str]]:
    """``"h ə | w ɜː"`` -> ``[["h", "ə"], ["w", "ɜː"]]``."""
    return [word.split() for word in phonemes.split("|") if word.strip()]


def join_phoneme_string(words: list[list[str]] | list) -> str:
    """Inverse of `split_phoneme_string`; accepts `tts.text.Word` values (punctuation keeps its mark)."""
    parts = []
    for word in words:
        symbols = list(getattr(word, "phonemes", word)) or [getattr(word, "text", "")]
        parts.append(" ".join(s for s in symbols if s))
    return " | ".join(p for p in parts if p)


PACK_QUALITY = 0.7
"""Default `pack_corpus` setting (libsndfile's Opus compression level): about 85 kbit/s, 38 MB per hour of
speech, log-mel mean absolute difference to the FLAC original ~0.05 (the 0.9 level, ~34 kbit/s, gives ~0.3)."""


def pack_corpus(source: str | os.PathLike, target: str | os.PathLike, quality: float = PACK_QUALITY,
                parts: int = 1) -> dict:
    """Copy a corpus with its audio re-encoded as Ogg Opus, to move it to a training machine in pieces.

    ``target/metadata.jsonl`` lists every item of `source` with ``file_name`` pointing at
    ``audio/ID.ogg``; with ``parts > 1`` the audio files are spread over ``target/part1..N/audio`` of
    similar size, to be merged (moved into ``target/audio``) on the other machine. Resumable: files already
    encoded are kept. Returns ``{"items", "seconds", "bytes"}``.
    """
    import soundfile

    from tts.audio import load_audio
    from tts.files import atomic_write_text

    source, target = Path(source), Path(target)
    items = read_metadata(source)
    if not items:
        raise ManifestError(f"{source}: the corpus has no items")
    lines, total_bytes, seconds = [], 0, 0.0
    for index, item in enumerate(items):
        name = f"audio/{Path(item.file_name).stem}.ogg"
        folder = target / f"part{index % parts + 1}" if parts > 1 else target
        path = folder / name
        if not path.is_file():
            audio = load_audio(item.audio_path(source))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            soundfile.write(partial, audio.samples, audio.sample_rate, format="OGG", subtype="OPUS",
                            compression_level=quality)
            os.replace(partial, path)
        total_bytes += path.stat().st_size
        seconds += item.duration
        record = json.loads(item.to_json())
        record["file_name"] = name
        lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    atomic_write_text(target / METADATA_NAME, "\n".join(lines) + "\n")
    return {"items": len(items), "seconds": round(seconds, 1), "bytes": total_bytes}
