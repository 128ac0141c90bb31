"""Batch manifests: one utterance a line, in JSON lines or CSV/TSV, parsed and validated line by line.

Fields (`MANIFEST_FIELDS`): ``id`` (a plain file name, unique case-insensitively), ``text`` (at most
`MAX_TEXT_CHARS` characters), ``voice`` (a base voice ``ENGINE:VOICE``, a pseudo-speaker id ``pkNNNN`` /
``pwNNNN``, or a reference clip path, cloned and said by a studio engine, `CLIP_ENGINES`; it is stored resolved to
an absolute path), and optionally ``style`` (default
neutral), ``intensity`` (0..1; default 1 for a style other than neutral), ``speed`` (default 1) and ``seed``
(default: a hash of the id). A bad line becomes a `LineError` with its line number and reason; the other
lines are unaffected. Used by `tts.data.batch` (``timbre batch``) and `tts.data.corpus_build`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tts.errors import ManifestError, TimbreError

MANIFEST_FIELDS = ("id", "text", "voice", "style", "intensity", "speed", "seed")
REQUIRED_FIELDS = ("id", "text", "voice")

MAX_TEXT_CHARS = 1000
"""Longest text of one manifest line (about a minute of speech); split longer texts into several lines."""

MAX_LINE_CHARS = 64 * 1024
"""Longest manifest line (JSON lines) read at all: a valid line is far shorter (its text is at most
`MAX_TEXT_CHARS`), and a longer one is refused before it is parsed."""

MAX_SEED = 2**63 - 1
AUDIO_DIR = "audio"
AUDIO_FORMAT = "flac"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aac")
"""A voice ending in one of these (or containing a slash) is taken for a reference clip."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ManifestEntry:
    """One valid manifest line.

    Attributes:
        id: file-name-safe identifier, unique in the manifest (case-insensitively).
        text, voice, style, intensity, speed, seed: what to synthesize (see the module docstring).
        line: 1-based line number in the manifest file (for messages).
        index: position among the manifest's records (blank lines and the CSV header not counted); shards
            are taken by ``index % num_shards``.
    """

    id: str
    text: str
    voice: str
    style: str = "neutral"
    intensity: float = 0.0
    speed: float = 1.0
    seed: int = 0
    line: int = 0
    index: int = 0

    def __post_init__(self) -> None:
        # The id becomes a file name in the output folder; an entry made in code obeys the manifest's rule too.
        if not isinstance(self.id, str) or _check_id(self.id) != self.id:
            raise ManifestError(f"id {str(self.id)[:60]!r} is not a plain file name (see tts.data.manifest)")

    def request(self) -> dict:
        """The fields that determine the audio."""
        return {"id": self.id, "text": self.text, "voice": self.voice, "style": self.style,
                "intensity": self.intensity, "speed": self.speed, "seed": self.seed}

    @property
    def file_name(self) -> str:
        """Audio path relative to the output folder."""
        return f"{AUDIO_DIR}/{self.id}.{AUDIO_FORMAT}"

    def to_json(self) -> str:
        """A manifest line for this entry."""
        return json.dumps(self.request(), ensure_ascii=False)


@dataclass(frozen=True)
class LineError:
    """A manifest line that produced no sample, and why."""

    line: int
    id: str | None
    reason: str
    stage: str = "manifest"
    """``manifest`` (the line is invalid), ``synthesis`` (the engine refused it) or ``quality`` (the gate)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class Manifest:
    """Parsed manifest: the valid entries in order and the errors of the invalid lines."""

    entries: list[ManifestEntry] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    base_dir: Path | None = None
    """Folder that relative reference-clip paths are resolved against."""


def default_seed(entry_id: str) -> int:
    """The seed of a line that gives none: a stable hash of its id."""
    return int.from_bytes(hashlib.sha256(entry_id.encode("utf-8")).digest()[:4], "big")


def _number(record: dict, name: str, default: float) -> float:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise ManifestError(f"'{name}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise ManifestError(f"'{name}' must be a number, got {_preview(value)}") from None
    if not math.isfinite(number):
        raise ManifestError(f"'{name}' must be a finite number, got {_preview(value)}")
    return number


def _preview(value: Any) -> str:
    """`repr` of a field's value for a message, shortened: a line may hold a megabyte in one field."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _seed(value: Any, entry_id: str) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default_seed(entry_id)
    seed = None
    if isinstance(value, int) and not isinstance(value, bool):
        seed = value
    elif isinstance(value, float) and value.is_integer():
        seed = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        seed = int(value)
    if seed is None or not 0 <= seed <= MAX_SEED:
        raise ManifestError(f"'seed' must be a whole number from 0 to 2**63-1, got {_preview(value)}")
    return seed


def _check_id(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ManifestError("missing 'id'")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ManifestError("missing or empty 'id'")
    value = value.strip()
    if not _ID.match(value) or ".." in value:
        raise ManifestError(
            f"id {value[:60]!r} is not a plain file name: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (no '/', '..' or spaces)"
        )
    return value


CLIP_ENGINES = ("dit", "ar")
"""The engines that can say a line in a reference clip's voice (`tts.synthesis.synthesize`)."""


def clip_engine(engine: str | None = None) -> str:
    """`engine` checked against `CLIP_ENGINES`; None: `tts.synthesis.DEFAULT_ENGINE`."""
    if engine is None:
        from tts.synthesis import DEFAULT_ENGINE

        engine = DEFAULT_ENGINE
    if engine not in CLIP_ENGINES:
        raise ValueError(f"reference-clip voices are said by one of {', '.join(CLIP_ENGINES)}, not {engine!r}")
    return engine


@functools.lru_cache(maxsize=4)
def clip_engine_unavailable(engine: str) -> str | None:
    """Why reference-clip voices cannot be rendered here with `engine` (None when it is available); checked
    once per process and engine (it verifies the checkpoints' hashes)."""
    from tts.engines import engine_status

    status = next(s for s in engine_status() if s.name == engine)
    return None if status.available else status.reason


def is_clip_voice(voice: str) -> bool:
    """True for a validated reference-clip voice (an absolute path), False for base and pseudo-speaker ids."""
    return Path(voice).is_absolute()


CLIPS_REFUSED = (
    "reference-clip voices (file paths) are not accepted here, because reading them would open files on this "
    "server; use a base voice or pseudo-speaker id, or run `timbre batch` on your own machine for clip voices"
)


def _check_voice(voice: Any, base_dir: Path | None, allow_clips: bool = True, engine: str | None = None) -> str:
    from tts.data.voicebank import check_voice_id

    if not isinstance(voice, str) or not voice.strip():
        raise ManifestError("missing or empty 'voice'")
    voice = voice.strip()
    looks_like_path = "/" in voice or "\\" in voice or voice.lower().endswith(AUDIO_SUFFIXES)
    if looks_like_path and not allow_clips:
        raise ManifestError(CLIPS_REFUSED)  # before touching the file system: not even its existence is told
    if looks_like_path:
        path = Path(voice) if Path(voice).is_absolute() or base_dir is None else base_dir / voice
        try:
            found = path.is_file()
        except OSError as error:  # a name too long for the file system, say
            raise ManifestError(
                f"voice {voice[:60]!r} looks like a reference clip, but it cannot be opened ({error.strerror})"
            ) from None
        if not found:
            raise ManifestError(f"voice {voice[:60]!r} looks like a reference clip, but {str(path)[:80]} was not found")
        engine = clip_engine(engine)
        reason = clip_engine_unavailable(engine)
        if reason:
            raise ManifestError(
                f"voice {voice!r} is a reference clip: cloning from a clip needs the {engine!r} engine, which is "
                f"unavailable ({reason}); use a base voice such as 'kokoro:jf_alpha' or a pseudo-speaker id "
                "(see `timbre voices list`)"
            )
        return str(path.resolve())
    try:
        return check_voice_id(voice)
    except TimbreError as error:
        raise ManifestError(str(error)) from None


def validate_record(record: Any, line: int = 0, index: int = 0, base_dir: Path | None = None,
                    allow_clips: bool = True, engine: str | None = None) -> ManifestEntry:
    """A `ManifestEntry` from one parsed line, or `ManifestError` saying what is wrong with it (with
    `allow_clips` False, a reference-clip voice is refused without looking at the file system; otherwise it
    needs the `clip_engine` `engine` to be available)."""
    from tts.data.speakers import check_speed
    from tts.data.styles import check_intensity, check_style

    if not isinstance(record, dict):
        raise ManifestError(f"expected a JSON object, got {type(record).__name__}")
    unknown = sorted(str(key) for key in record if key not in MANIFEST_FIELDS)
    if unknown:
        raise ManifestError(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(MANIFEST_FIELDS)}")
    entry_id = _check_id(record.get("id"))
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ManifestError("missing or empty 'text'")
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise ManifestError(f"text has {len(text):,} characters; at most {MAX_TEXT_CHARS:,} per line (split it)")
    voice = _check_voice(record.get("voice"), base_dir, allow_clips, engine)
    style_value = record.get("style")
    style = "neutral" if style_value is None or style_value == "" else style_value
    try:
        style = check_style(style)
        intensity = check_intensity(_number(record, "intensity", 0.0 if style == "neutral" else 1.0))
        speed = check_speed(_number(record, "speed", 1.0))
    except TimbreError as error:
        raise ManifestError(str(error)) from None
    seed = _seed(record.get("seed"), entry_id)
    return ManifestEntry(entry_id, text, voice, style, round(intensity, 4), round(speed, 4), seed, line, index)


def _format_of(path: Path | None, text: str) -> str:
    suffix = path.suffix.lower() if path is not None else ""
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.startswith("{") else "csv"


@dataclass(frozen=True)
class LineDefaults:
    """What a manifest line that leaves out its ``voice`` or ``style`` gets: `voices` and `styles` in turn (the
    line's position among the manifest's lines, modulo their number), so a list of texts becomes a corpus spread
    over chosen voices and styles. An empty tuple gives nothing (a line without a voice is then a bad line)."""

    voices: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse an unknown voice or style at once, not as a bad line each time it comes round."""
        from tts.data.styles import check_style

        voices = tuple(_check_voice(voice, None, allow_clips=False) for voice in self.voices)
        try:
            styles = tuple(check_style(style) for style in self.styles)
        except TimbreError as error:
            raise ManifestError(str(error)) from None
        object.__setattr__(self, "voices", voices)
        object.__setattr__(self, "styles", styles)

    @classmethod
    def from_lists(cls, voices: str | Iterable[str] | None, styles: str | Iterable[str] | None) -> LineDefaults:
        """From comma-separated text (``"flite:slt,pk0001"``) or lists; blanks are dropped."""
        def items(value) -> tuple[str, ...]:
            parts = value.split(",") if isinstance(value, str) else (value or ())
            return tuple(part.strip() for part in parts if part and part.strip())

        return cls(items(voices), items(styles))

    def fill(self, record: Any, index: int) -> Any:
        """`record` with the fields it lacks (absent or empty) filled for line `index`; anything else unchanged."""
        if not isinstance(record, dict):
            return record
        filled = dict(record)
        for name, choices in (("voice", self.voices), ("style", self.styles)):
            if choices and filled.get(name) in (None, ""):
                filled[name] = choices[index % len(choices)]
        return filled


def _records(text: str, fmt: str, defaults: LineDefaults | None = None) -> Iterable[tuple[int, Any, str | None]]:
    """``(line number, record or None, parse error or None)`` for every non-blank line (a CSV may leave out the
    ``voice`` column when `defaults` gives voices)."""
    if fmt == "jsonl":
        # Lines end at "\n" only, as in an editor: str.splitlines() also splits at U+2028, U+0085 and other
        # characters that a JSON string may hold, which broke valid lines and shifted the numbers after them.
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            if len(line) > MAX_LINE_CHARS:
                yield number, None, f"the line has {len(line):,} characters; a line holds at most {MAX_LINE_CHARS:,}"
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as error:
                yield number, None, f"broken JSON: {error.msg} at column {error.colno}"
            except RecursionError:
                yield number, None, "broken JSON: nested too deeply"
            except ValueError:  # json.loads' int() refuses more digits than this
                yield number, None, f"unreadable JSON: a number of more than {sys.get_int_max_str_digits():,} digits"
        return
    reader = csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")
    header: list[str] | None = None
    end = 0
    while True:
        number = end + 1  # a quoted field may span lines: a record is reported at its first line
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # a field over csv.field_size_limit(): no valid field is that long
            yield number, None, f"unreadable CSV ({error}); the lines after it were not read"
            return
        end = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            given = {"voice"} if defaults is not None and defaults.voices else set()
            missing = [name for name in REQUIRED_FIELDS if name not in header and name not in given]
            if missing:
                raise ManifestError(f"the CSV header must name the columns {', '.join(REQUIRED_FIELDS)} (missing: {', '.join(missing)})")
            continue
        if len(row) != len(header):
            yield number, None, f"{len(row)} columns where the header has {len(header)} (quote texts that contain commas)"
            continue
        yield number, {name: cell for name, cell in zip(header, row) if cell != ""}, None


def _unwritable(record: Any) -> str | None:
    """Why `record` could not be written back as UTF-8 JSON, or None. JSON's escapes can spell a lone surrogate,
    which would crash the writing of ``errors.jsonl`` or ``metadata.jsonl`` long after parsing."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return r"a value holds a lone UTF-16 surrogate (\ud800 without its pair), which is not text"
    except RecursionError:
        return "broken JSON: nested too deeply"
    return None


def parse_manifest_text(text: str, fmt: str = "jsonl", base_dir: Path | None = None,
                        allow_clips: bool = True, defaults: LineDefaults | None = None,
                        engine: str | None = None) -> Manifest:
    """Parse manifest contents in `fmt` (``jsonl``, ``csv`` or ``tsv``); see `parse_manifest`."""
    manifest = Manifest(base_dir=base_dir)
    seen: dict[str, int] = {}
    for index, (number, record, problem) in enumerate(_records(text, fmt, defaults)):
        if defaults is not None:
            record = defaults.fill(record, index)
        if problem is None and (unwritable := _unwritable(record)):
            record, problem = None, unwritable
        record_id = record.get("id") if isinstance(record, dict) else None
        record_id = str(record_id) if isinstance(record_id, (str, int)) and not isinstance(record_id, bool) else None
        if problem is not None:
            manifest.errors.append(LineError(number, record_id, problem))
            continue
        try:
            entry = validate_record(record, number, index, base_dir, allow_clips, engine)
        except ManifestError as error:
            manifest.errors.append(LineError(number, record_id, str(error)))
            continue
        key = entry.id.lower()  # case-insensitive: "A" and "a" would collide on some file systems
        if key in seen:
            manifest.errors.append(LineError(number, entry.id, f"duplicate id {entry.id!r} (first on line {seen[key]})"))
            continue
        seen[key] = number
        manifest.entries.append(entry)
    return manifest


def parse_manifest(path: str | os.PathLike, allow_clips: bool = True, defaults: LineDefaults | None = None,
                   engine: str | None = None) -> Manifest:
    """Read and validate a manifest file (JSON lines, or CSV/TSV with a header row).

    Bad lines become `Manifest.errors`; only an unreadable file or a CSV without the required columns
    raises `ManifestError`. With `allow_clips` False (a server taking manifests from strangers), lines whose
    voice is a reference-clip path are bad lines, refused without touching the file system; otherwise such
    lines need `engine` (`clip_engine`: ``"dit"`` or ``"ar"``, default `tts.synthesis.DEFAULT_ENGINE`) to be
    available. `defaults` fills in the voice and style of lines that leave them out (`LineDefaults`).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} not found") from None
    except UnicodeDecodeError as error:
        raise ManifestError(f"manifest {path} is not UTF-8 text: {error}") from None
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error}") from None
    return parse_manifest_text(text, _format_of(path, text), base_dir=path.parent, allow_clips=allow_clips,
                               defaults=defaults, engine=engine)
