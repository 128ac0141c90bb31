"""A cloned voice: the studio's one voice value and file format, and `clone_voice`, which makes one.

A `Voice` holds a cleaned reference clip (24 kHz mono float32) and what it says. It is immutable, carries
no hidden state, and saves to ONE file (``.voice`` by convention): a safetensors file with a single
tensor and string metadata, never a pickle, because users share and load each other's voices.

File format, version 1 (``VOICE_FORMAT_VERSION``):
    tensor ``samples``: ``(T,)`` float32, the cleaned reference at ``sample_rate`` (stored exactly).
    metadata (all strings): ``format`` = ``"timbre-voice"``, ``format_version`` = ``"1"``,
    ``sample_rate``, ``transcript``, ``name``, ``source``, ``transcript_source`` (``"user"`` or
    ``"asr"``), ``created_with`` (the timbre version that wrote it) and ``samples_sha256`` (hex sha256 of
    the little-endian float32 samples), so a modified or damaged file is refused.
    Optional metadata: ``consent`` (the statement of the speaker's permission that the user confirmed) and
    ``created`` (ISO 8601 UTC time the voice was made); written only when set. Files without them load
    with both empty.

Later versions will add tensors (speech tokens, speaker embedding, tone-color vector); a reader refuses
any version it does not know and says to upgrade.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from tts import __version__, preprocess
from tts.audio import SAMPLE_RATE, Audio, load_audio
from tts.errors import AudioError, TimbreError, VoiceError
from tts.files import atomic_write_bytes

logger = logging.getLogger(__name__)

VOICE_FORMAT = "timbre-voice"
"""The ``format`` metadata value of every voice file."""

VOICE_FORMAT_VERSION = 1
"""The version `Voice.save` writes."""

READABLE_FORMAT_VERSIONS = (1,)
"""The versions `Voice.load` reads."""

VOICE_SUFFIX = ".voice"
"""The conventional extension of a voice file (not enforced)."""

MAX_VOICE_FILE_BYTES = 64 * 1024 * 1024
"""Larger files are refused before reading: about 11 minutes of float32 at 24 kHz, far beyond any voice."""

TRANSCRIPT_SOURCES = ("user", "asr")

MIN_SPEECH_SECONDS = 2.0
"""Least voiced speech (silero-vad segments, summed) a reference must hold: below it timbre is guesswork."""

DEFAULT_MAX_SECONDS = 12.0
"""Longest reference kept; zero-shot prompts gain little past ~10 s and cost attention on every step."""

MAX_CLIPPED_FRACTION = 0.01
"""Refuse a reference when more than 1% of its samples (between first and last speech) sit at full scale.

Occasional clipped peaks are tolerated; at 1% the distortion is audible on every loud syllable, and a clone
copies it faithfully.
"""

EDGE_MARGIN_SECONDS = 0.1
"""Silence kept before the first and after the last kept voiced segment (never past a neighbouring one)."""

_CUT_SEARCH_SECONDS = 1.0
_CUT_FRAME_SECONDS = 0.02

ReferenceInput = Union[str, os.PathLike, bytes, BinaryIO, Audio, "Voice", tuple, np.ndarray]


@dataclass(frozen=True, eq=False)
class Voice:
    """A cloned voice: the cleaned reference clip and its transcript, saved and loaded as one file.

    Compare voices field by field (``eq=False``, like `Audio`: array equality has no single meaning).

    Attributes:
        audio: the cleaned reference, 24 kHz mono float32, ``(T,)`` samples.
        transcript: what the reference says, normalized (``tts.text.normalize_text``).
        name: a display name; may be empty.
        source: where the reference came from (a file name); may be empty.
        transcript_source: ``"user"`` (given) or ``"asr"`` (recognized by Whisper).
        created_with: the timbre version that made the voice.
        consent: the statement of the speaker's permission that the user confirmed (empty: none recorded).
        created: when the voice was made, ISO 8601 UTC (empty: unknown).
    """

    audio: Audio
    transcript: str
    name: str = ""
    source: str = ""
    transcript_source: str = "user"
    created_with: str = __version__
    consent: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.audio, Audio):
            raise VoiceError(f"Voice.audio must be an Audio value, got {type(self.audio).__name__}; use clone_voice")
        if self.audio.sample_rate != SAMPLE_RATE:
            raise VoiceError(
                f"a voice's audio must be at {SAMPLE_RATE} Hz, got {self.audio.sample_rate} Hz; "
                "use clone_voice, which resamples and cleans the reference"
            )
        if len(self.audio) == 0:
            raise VoiceError("a voice's audio is empty; use clone_voice with a recording of speech")
        for field in ("transcript", "name", "source", "transcript_source", "created_with", "consent", "created"):
            if not isinstance(getattr(self, field), str):
                raise VoiceError(f"Voice.{field} must be a string, got {type(getattr(self, field)).__name__}")
        if not self.transcript.strip():
            raise VoiceError("a voice needs the transcript of its reference; it is empty")
        if self.transcript_source not in TRANSCRIPT_SOURCES:
            raise VoiceError(
                f"transcript_source must be one of {', '.join(TRANSCRIPT_SOURCES)}, got {self.transcript_source!r}"
            )

    @property
    def duration(self) -> float:
        """Length of the reference in seconds."""
        return self.audio.duration

    @property
    def digest(self) -> str:
        """sha256 of the reference samples: what caches of per-voice features are keyed by."""
        return _samples_sha256(self.audio.samples)

    @property
    def consent_note(self) -> str:
        """The consent stored with the voice, as shown wherever the voice is used (studio, CLI)."""
        return f"consent: “{self.consent}”" if self.consent else "no consent recorded"

    def __repr__(self) -> str:
        text = self.transcript if len(self.transcript) <= 40 else self.transcript[:39] + "\u2026"
        label = f"{self.name!r}, " if self.name else ""
        return f"Voice({label}{self.duration:.2f} s, {text!r}, transcript from {self.transcript_source})"

    def save(self, path: str | os.PathLike) -> Path:
        """Write this voice to `path` (``.voice`` by convention) atomically; returns the path."""
        samples = _stored_samples(self.audio.samples)
        metadata = {
            "format": VOICE_FORMAT,
            "format_version": str(VOICE_FORMAT_VERSION),
            "sample_rate": str(self.audio.sample_rate),
            "transcript": self.transcript,
            "name": self.name,
            "source": self.source,
            "transcript_source": self.transcript_source,
            "created_with": self.created_with,
            "samples_sha256": _samples_sha256(samples),
        }
        metadata.update({key: getattr(self, key) for key in _OPTIONAL_METADATA_KEYS if getattr(self, key)})
        from safetensors.numpy import save

        return atomic_write_bytes(path, save({"samples": samples}, metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Voice:
        """Read a voice file written by `save`.

        Raises:
            VoiceError: a missing or oversized file, one that is not a voice file, of a format version
                this studio does not read, with missing or unexpected entries, or whose samples do not
                match their stored checksum.
        """
        path = Path(path)
        if not path.is_file():
            raise VoiceError(f"{path}: no such voice file" if not path.exists() else f"{path}: is not a file")
        size = path.stat().st_size
        if size > MAX_VOICE_FILE_BYTES:
            raise VoiceError(
                f"{path}: {size / 2**20:.0f} MiB is too large for a voice file "
                f"(limit {MAX_VOICE_FILE_BYTES // 2**20} MiB); it is not one"
            )
        metadata, tensors = _read_safetensors(path)
        _check_format(path, metadata)
        missing = [key for key in _METADATA_KEYS if key not in metadata]
        if missing:
            raise VoiceError(f"{path}: the voice file lacks {', '.join(missing)}; it is damaged. Clone the voice again.")
        if set(tensors) != {"samples"}:
            problem = "lacks its 'samples'" if "samples" not in tensors else f"holds unexpected tensors {sorted(set(tensors) - {'samples'})}"
            raise VoiceError(f"{path}: the voice file {problem}; it is damaged or not a version 1 voice file")
        samples = tensors["samples"]
        if samples.dtype != np.float32 or samples.ndim != 1:
            raise VoiceError(f"{path}: 'samples' must be 1-D float32, got {samples.dtype} {samples.shape}; the file is damaged")
        if not np.all(np.isfinite(samples)):
            # The checksum cannot tell: a file made by hand can carry NaN samples and their matching checksum.
            raise VoiceError(f"{path}: the voice's samples include NaN or infinite values; the file is damaged")
        if _samples_sha256(samples) != metadata["samples_sha256"]:
            raise VoiceError(
                f"{path}: the samples do not match the checksum stored in the file, so it was modified or "
                "damaged. Clone the voice again from its reference recording."
            )
        if metadata["sample_rate"] != str(SAMPLE_RATE):
            raise VoiceError(f"{path}: sample rate {metadata['sample_rate'][:20]!r} is not {SAMPLE_RATE}; the file is damaged")
        try:
            return cls(
                Audio(samples, SAMPLE_RATE),
                metadata["transcript"],
                name=metadata["name"],
                source=metadata["source"],
                transcript_source=metadata["transcript_source"],
                created_with=metadata["created_with"],
                **{key: metadata.get(key, "") for key in _OPTIONAL_METADATA_KEYS},
            )
        except VoiceError as error:
            raise VoiceError(f"{path}: {error}") from None


_METADATA_KEYS = (
    "sample_rate", "transcript", "name", "source", "transcript_source", "created_with", "samples_sha256",
)
_OPTIONAL_METADATA_KEYS = ("consent", "created")


def _stored_samples(samples: np.ndarray) -> np.ndarray:
    """The samples exactly as a file stores them: contiguous little-endian float32."""
    return np.ascontiguousarray(samples, dtype="<f4")


def _samples_sha256(samples: np.ndarray) -> str:
    return hashlib.sha256(_stored_samples(samples).tobytes()).hexdigest()


def _read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, tensors) of a safetensors file; `VoiceError` for anything that is not one."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise VoiceError(
            f"{path}: not a voice file (it is not a safetensors file: {error}). "
            f"Voice files are written by Voice.save and end in {VOICE_SUFFIX}."
        ) from None
    return metadata, tensors


def _check_format(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != VOICE_FORMAT:
        found = f" (its format is {metadata['format'][:40]!r})" if "format" in metadata else ""
        raise VoiceError(
            f"{path}: a safetensors file but not a Timbre voice file{found}. "
            f"Voice files are written by Voice.save and end in {VOICE_SUFFIX}."
        )
    raw = metadata.get("format_version")
    # Exactly the digits `save` writes: int() would also take " 1", "01", "1_0", "١" or 5000 digits.
    if not isinstance(raw, str) or not re.fullmatch(r"0|[1-9][0-9]{0,8}", raw):
        shown = repr(raw) if raw is None or len(raw) <= 20 else repr(raw[:20]) + "..."
        raise VoiceError(f"{path}: the voice file has no valid format version ({shown}); it is damaged")
    version = int(raw)
    if version in READABLE_FORMAT_VERSIONS:
        return
    readable = ", ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
    if version > max(READABLE_FORMAT_VERSIONS):
        raise VoiceError(
            f"{path}: voice format version {version}, newer than this studio (timbre {__version__}) reads "
            f"(version {readable}). Upgrade timbre to load it."
        )
    raise VoiceError(f"{path}: voice format version {version} is not one this studio reads (version {readable})")


# ---------------------------------------------------------------------------------------------------------
# Cloning


def clone_voice(
    reference: ReferenceInput,
    transcript: str | None = None,
    *,
    sample_rate: int | None = None,
    denoise: bool = False,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    name: str = "",
) -> Voice:
    """Make a `Voice` from a recording of someone speaking.

    The reference is cleaned: optionally denoised (DeepFilterNet3), cut to its speech (silero-vad) with
    `EDGE_MARGIN_SECONDS` of silence kept at each end, shortened to at most `max_seconds`, and
    loudness-normalized. A reference longer than `max_seconds` keeps the run of whole voiced segments,
    cut at pauses, that holds the most speech; a single segment is cut only when no run of whole segments
    holds `MIN_SPEECH_SECONDS` (then at the quietest moment of its last second).

    Args:
        reference: a path, file bytes or binary file in any format `load_audio` reads; an `Audio`; a
            ``(samples, sample_rate)`` tuple (``(sample_rate, samples)``, Gradio's order, works too); a
            bare ``(T,)`` array with `sample_rate`; or a `Voice`, returned as is, with its transcript
            (and name) replaced when given. Integer arrays are scaled from their full range.
        transcript: what the reference says; normalized. When None, Whisper tiny.en transcribes the
            cleaned clip (offline).
        sample_rate: the rate of a bare array; only for bare arrays.
        denoise: remove background noise first.
        max_seconds: the longest clip kept.
        name: a display name for the voice.

    Raises:
        VoiceError: no speech, less than `MIN_SPEECH_SECONDS` of it, clipped audio, an empty transcript,
            a transcript given for a reference that had to be shortened, or no transcript recognized.
        AudioError: a file that is missing, unreadable, empty or over-long (from `load_audio`).
    """
    if transcript is not None:
        transcript = _normalized_transcript(transcript)
    if isinstance(reference, Voice):
        if sample_rate is not None:
            raise VoiceError("sample_rate= is only for a bare sample array, not a Voice")
        changes = {"name": name} if name else {}
        if transcript is not None:
            changes.update(transcript=transcript, transcript_source="user")
        return dataclasses.replace(reference, **changes) if changes else reference
    if not max_seconds > MIN_SPEECH_SECONDS:
        raise VoiceError(f"max_seconds must be more than {MIN_SPEECH_SECONDS} s, got {max_seconds}")

    raw, source = _reference_audio(reference, sample_rate)
    where = f" ({source})" if source else ""
    cleaned = preprocess.denoise(raw) if denoise else raw
    segments = preprocess.voiced_segments(cleaned)
    if not segments:
        raise VoiceError(
            f"no speech found in the reference{where}: it is silent or holds only noise. "
            f"Record 5 to {max_seconds:.0f} seconds of clear speech."
        )
    speech_span = raw.samples[int(segments[0].start * SAMPLE_RATE) : int(segments[-1].end * SAMPLE_RATE)]
    clipped = preprocess.clipping_fraction(Audio(speech_span, SAMPLE_RATE))
    if clipped > MAX_CLIPPED_FRACTION:
        raise VoiceError(
            f"the reference{where} is clipped: {clipped:.1%} of its samples sit at full scale (the limit is "
            f"{MAX_CLIPPED_FRACTION:.0%}). Record again with lower input gain or further from the microphone."
        )
    voiced = sum(segment.duration for segment in segments)
    if voiced < MIN_SPEECH_SECONDS:
        raise VoiceError(
            f"the reference{where} holds only {voiced:.1f} s of speech; a voice needs at least "
            f"{MIN_SPEECH_SECONDS:.0f} s. Record 5 to {max_seconds:.0f} seconds of clear speech."
        )

    start, end, shortened = _kept_span(cleaned, segments, max_seconds)
    clip = preprocess.normalize_loudness(Audio(cleaned.samples[start:end], SAMPLE_RATE))
    if shortened:
        logger.info("reference%s shortened from %.1f s to %.1f s", where, raw.duration, clip.duration)
        if transcript is not None:
            raise VoiceError(
                f"the reference{where} is {raw.duration:.1f} s long, so only {clip.duration:.1f} s of it are "
                f"kept (max_seconds={max_seconds:g}) and the transcript no longer matches. Pass a clip of at "
                "most that length, or leave out the transcript to have the kept part transcribed."
            )
    if transcript is not None:
        return Voice(clip, transcript, name=name, source=source, transcript_source="user")
    return Voice(clip, recognized_transcript(clip, f"the reference{where}"), name=name, source=source,
                 transcript_source="asr")


def _normalized_transcript(transcript: str) -> str:
    if not isinstance(transcript, str):
        raise VoiceError(f"the transcript must be a string, got {type(transcript).__name__}")
    from tts.text import normalize_text

    normalized = normalize_text(transcript).strip()
    if not normalized:
        raise VoiceError(
            "the transcript is empty or has nothing speakable; type what the reference says, "
            "or leave it out to have it transcribed"
        )
    return normalized


def recognized_transcript(clip: Audio, what: str = "the reference") -> str:
    """What `clip` (`what`, as messages name it) says, by the offline ASR, normalized; `VoiceError` when the ASR
    cannot run or hears no words."""
    from tts.evaluation import asr
    from tts.text import normalize_text

    try:
        text = asr.transcribe(clip)
    except TimbreError as error:
        raise VoiceError(
            f"no transcript was given and speech recognition could not run: {error}. "
            f"Pass the transcript of {what}."
        ) from error
    normalized = normalize_text(text).strip()
    if not normalized:
        raise VoiceError(
            f"no words were recognized in {what}; pass its transcript (what it says) yourself"
        )
    return normalized


def _reference_audio(reference: ReferenceInput, sample_rate: int | None) -> tuple[Audio, str]:
    """The reference as 24 kHz `Audio`, and a name for it (the file name, or "")."""
    if sample_rate is not None and not isinstance(reference, np.ndarray):
        raise VoiceError(
            f"sample_rate= is only for a bare sample array; a {type(reference).__name__} carries its own rate"
        )
    source = ""
    if isinstance(reference, Audio):
        audio = reference
    elif isinstance(reference, np.ndarray):
        if sample_rate is None:
            raise VoiceError("a bare sample array needs its rate: clone_voice(samples, sample_rate=16000)")
        audio = _array_audio(reference, sample_rate)
    elif isinstance(reference, tuple):
        audio = _array_audio(*_split_pair(reference))
    elif isinstance(reference, (str, os.PathLike, bytes, bytearray)) or hasattr(reference, "read"):
        if isinstance(reference, (str, os.PathLike)):
            source = Path(reference).name
        elif hasattr(reference, "name") and isinstance(reference.name, str):
            source = Path(reference.name).name
        audio = load_audio(reference)
    else:
        raise VoiceError(
            f"cannot clone a voice from a {type(reference).__name__}: pass a file path, an Audio, "
            "a (samples, sample_rate) tuple or a Voice"
        )
    if len(audio) == 0:
        raise VoiceError("the reference is empty; record 5 to 12 seconds of clear speech")
    if not np.all(np.isfinite(audio.samples)):
        raise AudioError("the reference contains NaN or infinite samples")
    return (audio if audio.sample_rate == SAMPLE_RATE else audio.resample(SAMPLE_RATE)), source


def _split_pair(pair: tuple) -> tuple[np.ndarray, int]:
    """``(samples, rate)`` from a pair in either order."""
    if len(pair) == 2:
        first, second = pair
        if isinstance(first, np.ndarray) and np.isscalar(second):
            return first, int(second)
        if isinstance(second, np.ndarray) and np.isscalar(first):
            return second, int(first)
    raise VoiceError("a tuple reference must be (samples, sample_rate): a numpy array and an integer rate")


def _array_audio(samples: np.ndarray, sample_rate: int) -> Audio:
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise VoiceError(f"reference samples must be mono (T,), got shape {samples.shape}; average the channels first")
    return Audio(samples, sample_rate)


def _kept_span(audio: Audio, segments: list[preprocess.Segment], max_seconds: float) -> tuple[int, int, bool]:
    """(start, end) in samples of the clip to keep, and whether any speech was left out."""
    n = len(segments)
    rate = audio.sample_rate

    def window(i: int, j: int) -> tuple[float, float]:
        # Margins reach into the pause around the run, never into the neighbouring segment.
        before = segments[i - 1].end if i > 0 else 0.0
        after = segments[j + 1].start if j + 1 < n else audio.duration
        return max(before, segments[i].start - EDGE_MARGIN_SECONDS), min(after, segments[j].end + EDGE_MARGIN_SECONDS)

    start, end = window(0, n - 1)
    if end - start <= max_seconds:
        return int(start * rate), int(end * rate), False

    # Two pointers over runs i..j of whole segments: the window's length grows with j and shrinks with i.
    voiced_before = np.concatenate([[0.0], np.cumsum([s.duration for s in segments])])
    best, best_voiced, i = None, 0.0, 0
    for j in range(n):
        while i <= j and window(i, j)[1] - window(i, j)[0] > max_seconds:
            i += 1
        if i <= j and voiced_before[j + 1] - voiced_before[i] > best_voiced:
            best, best_voiced = (i, j), voiced_before[j + 1] - voiced_before[i]
    if best is not None and best_voiced >= MIN_SPEECH_SECONDS:
        start, end = window(*best)
        return int(start * rate), int(end * rate), True

    # No run of whole segments holds enough speech: cut inside the longest segment, at its quietest moment.
    k = max(range(n), key=lambda index: segments[index].duration)
    start, end = window(k, k)
    if end - start <= max_seconds:
        raise VoiceError(
            f"the reference's speech is too spread out: no {max_seconds:g} s stretch of it holds "
            f"{MIN_SPEECH_SECONDS:.0f} s of speech. Pass a clip of continuous speech."
        )
    first, last = int(start * rate), int((start + max_seconds) * rate)
    lo = max(last - int(_CUT_SEARCH_SECONDS * rate), first + int((EDGE_MARGIN_SECONDS + MIN_SPEECH_SECONDS) * rate))
    return first, _quietest_point(audio.samples, lo, last, rate), True


def _quietest_point(samples: np.ndarray, lo: int, hi: int, rate: int) -> int:
    """The end of the quietest `_CUT_FRAME_SECONDS` frame within ``samples[lo:hi]``."""
    frame = max(1, int(_CUT_FRAME_SECONDS * rate))
    count = (hi - lo) // frame
    if count < 1:
        return hi
    power = np.mean(np.square(samples[lo : lo + count * frame].reshape(count, frame), dtype=np.float64), axis=1)
    return lo + (int(np.argmin(power)) + 1) * frame
