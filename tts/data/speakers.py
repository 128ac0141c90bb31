"""Base speakers: the offline synthesizers behind one interface, and the registry that names them.

A base speaker turns text into 24 kHz mono speech in one of its voices. The studio uses them for the
bootstrap corpus (many voices, rendered styles) and as the first stage of the ``base+convert`` engine.
Every engine speaks the same normalized text (``tts.text.normalize_text``) and reports the words and
espeak-ng phonemes of that text (``tts.text.phonemize``), so their outputs line up with the studio's own
text front end.

A voice is named ``"ENGINE:VOICE"`` (``"kokoro:jf_alpha"``, ``"piper:joe"``, ``"flite:slt"``), see
`parse_voice_id` and `synthesize_voice_id`.

Shapes: ``T`` samples.
"""

from __future__ import annotations

import abc
import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tts.audio import SAMPLE_RATE, Audio, resample
from tts.errors import TimbreError

if TYPE_CHECKING:
    from tts.text import Word

logger = logging.getLogger(__name__)

MIN_SPEED = 0.25
"""Exclusive lower bound of `speed` (a quarter of normal speed is not allowed, anything above is)."""

MAX_SPEED = 4.0
"""Inclusive upper bound of `speed`."""

PEAK_LEVEL = 0.9
"""Every engine's output is scaled to this peak, so voices from different engines mix at one level."""


@dataclass
class SpeakerOutput:
    """What a base speaker returns for one text.

    Attributes:
        audio: the speech, always 24 kHz mono float32, peak `PEAK_LEVEL`.
        words: the words of the normalized text and their espeak-ng phonemes (``tts.text.phonemize``);
            punctuation words have no phonemes. Engines with their own G2P (flite, festival, espeak's
            own voice) may pronounce a word differently from these phonemes.
        durations: seconds per phoneme of ``words`` (all words' phonemes in order) where the engine
            reports them, else None.
        engine: the engine's registry name (``"kokoro"``).
        voice: the voice name within the engine; ``"style-<digest>"`` for a raw Kokoro style array.
        speed: the speaking-rate factor used (> 1 is faster).
        text: the normalized text that was spoken (the transcript of `audio`).
    """

    audio: Audio
    words: list[Word]
    durations: list[float] | None
    engine: str
    voice: str
    speed: float
    text: str = ""

    @property
    def voice_id(self) -> str:
        """The canonical ``"ENGINE:VOICE"`` id of the voice that spoke."""
        return format_voice_id(self.engine, self.voice)


def check_speed(speed: float) -> float:
    """Return `speed` as a float, or raise `TimbreError` unless it lies in (0.25, 4.0]."""
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise TimbreError(f"speed must be a number in ({MIN_SPEED}, {MAX_SPEED}], got {speed!r}") from None
    if not (MIN_SPEED < value <= MAX_SPEED):
        raise TimbreError(
            f"speed must be in ({MIN_SPEED}, {MAX_SPEED}] (1.0 is normal, 2.0 twice as fast), got {speed}"
        )
    return value


class BaseSpeaker(abc.ABC):
    """An offline text-to-speech engine with a fixed set of voices.

    Subclasses set `name` and `native_sample_rate`, list their `voices`, and implement `_render`;
    `synthesize` does the shared work: checks, text normalization, phonemes, resampling to 24 kHz and
    level. Speakers hold no per-request state, so one instance may serve several threads.
    """

    name: str = ""
    """Registry name of the engine (``"kokoro"``)."""

    native_sample_rate: int = SAMPLE_RATE
    """The rate the engine synthesizes at, before resampling to 24 kHz."""

    @abc.abstractmethod
    def voices(self) -> list[str]:
        """Names of the voices this engine speaks with."""

    def unavailable_reason(self) -> str | None:
        """None when the engine can run here, else what is missing and how to install it."""
        return None

    def synthesize(self, text: str, voice: str, speed: float = 1.0, noise_seed: int | None = None) -> SpeakerOutput:
        """Speak `text` in `voice` at `speed` (1.0 normal, 2.0 twice as fast); `noise_seed` seeds the engine's
        own sampling noise (Piper's VITS noise; None: its configured seed; engines without noise ignore it).

        Raises:
            TextError: empty text, or text with nothing speakable.
            TimbreError: an unknown voice (the message lists the valid ones), a speed outside
                (0.25, 4.0], or an engine that is missing or fails.
        """
        speed = check_speed(speed)
        voice_name = self._check_voice(voice)
        reason = self.unavailable_reason()
        if reason is not None:
            raise TimbreError(f"the {self.name} speaker is not available: {reason}")
        from tts.text import prepare_text

        prepared = prepare_text(text)  # validates, normalizes, phonemizes; TextError if nothing to say
        normalized, words = prepared.normalized, list(prepared.words)
        samples, sample_rate, durations = self._render(normalized, words, voice, speed, noise_seed)
        audio = finish_audio(samples, sample_rate)
        if durations is not None:
            durations = [float(d) for d in durations]
        return SpeakerOutput(audio, words, durations, self.name, voice_name, speed, normalized)

    def _check_voice(self, voice: str) -> str:
        """The voice's name for `SpeakerOutput.voice`; raise `TimbreError` for an unknown voice."""
        if isinstance(voice, str) and voice in self.voices():
            return voice
        raise TimbreError(
            f"unknown {self.name} voice {voice!r}; choose one of: {', '.join(self.voices())}"
        )

    @abc.abstractmethod
    def _render(
        self, text: str, words: list[Word], voice: str, speed: float, noise_seed: int | None = None
    ) -> tuple[np.ndarray, int, Sequence[float] | None]:
        """Synthesize checked input: ``(samples (T,), sample_rate, per-phoneme durations or None)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(voices={self.voices()})"


def finish_audio(samples: np.ndarray, sample_rate: int) -> Audio:
    """Mono float32 at 24 kHz with peak `PEAK_LEVEL`; raise `TimbreError` for empty or silent output."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        raise TimbreError("the speaker produced no audio (empty or invalid output)")
    samples = resample(samples, sample_rate, SAMPLE_RATE)
    peak = float(np.max(np.abs(samples)))
    if peak < 1e-4:
        raise TimbreError("the speaker produced silence")
    return Audio((samples * (PEAK_LEVEL / peak)).astype(np.float32), SAMPLE_RATE)


# ---------------------------------------------------------------------------------------------------------
# Command-line synthesizers


def _install_hint(binary: str, apt_package: str) -> str:
    return f"'{binary}' is not installed: install it with apt-get install -y {apt_package}"


def missing_binary(binary: str, apt_package: str) -> str | None:
    """None when `binary` is on the PATH, else what to install (for `BaseSpeaker.unavailable_reason`)."""
    return None if shutil.which(binary) else _install_hint(binary, apt_package)


def find_binary(binary: str, apt_package: str) -> str:
    """The path of `binary`, or a `TimbreError` that says which apt package provides it."""
    path = shutil.which(binary)
    if path is None:
        raise TimbreError(_install_hint(binary, apt_package))
    return path


def run_binary(args: list[str], *, apt_package: str, timeout: float, cwd: Path | None = None) -> None:
    """Run a synthesizer (no shell) and raise a `TimbreError` with its message when it fails."""
    args = [find_binary(args[0], apt_package), *args[1:]]
    try:
        result = subprocess.run(args, capture_output=True, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise TimbreError(f"'{Path(args[0]).name}' took longer than {timeout:.0f} s and was stopped") from None
    except OSError as error:
        raise TimbreError(f"'{args[0]}' could not run: {error}") from error
    if result.returncode != 0:
        message = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-500:]
        raise TimbreError(f"'{Path(args[0]).name}' failed (exit code {result.returncode}): {message or 'no message'}")


def command_timeout(text: str) -> float:
    """A generous time limit for one synthesizer call on `text` (they run at RTF well below 1)."""
    return 30.0 + 0.1 * len(text)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """``(samples (T,), sample_rate)`` of a wav written by a synthesizer; `TimbreError` if absent."""
    import soundfile as sf

    if not path.exists() or path.stat().st_size == 0:
        raise TimbreError("the synthesizer wrote no audio file")
    samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(sample_rate)


def ascii_text(text: str) -> str:
    """`text` in plain ASCII for the C synthesizers (accents dropped: "café" -> "cafe")."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii")


# ---------------------------------------------------------------------------------------------------------
# Voice ids and the registry


SPEAKER_NAMES = ("kokoro", "piper", "flite", "festival", "espeak")
"""Registry names of the base speakers, best first."""

_registry: dict[str, BaseSpeaker] = {}
_registry_lock = threading.Lock()


def _build_speaker(name: str) -> BaseSpeaker:
    if name == "kokoro":
        from tts.data.kokoro import KokoroSpeaker

        return KokoroSpeaker()
    if name == "piper":
        from tts.data.piper import PiperSpeaker

        return PiperSpeaker()
    from tts.data import system_voices

    return {
        "flite": system_voices.FliteSpeaker,
        "festival": system_voices.FestivalSpeaker,
        "espeak": system_voices.EspeakSpeaker,
    }[name]()


def list_speakers() -> dict[str, BaseSpeaker]:
    """Every base speaker by registry name, available or not (see `speaker_status`).

    The instances are shared: engines load their models once per process.
    """
    with _registry_lock:
        for name in SPEAKER_NAMES:
            if name not in _registry:
                _registry[name] = _build_speaker(name)
        return {name: _registry[name] for name in SPEAKER_NAMES}


def get_speaker(name: str) -> BaseSpeaker:
    """The base speaker called `name`; `TimbreError` listing the valid names otherwise."""
    if name not in SPEAKER_NAMES:
        raise TimbreError(f"unknown speaker engine {name!r}; choose one of: {', '.join(SPEAKER_NAMES)}")
    return list_speakers()[name]


def speaker_status() -> dict[str, str | None]:
    """Each engine's name -> None when it can run here, else the reason (and how to fix it)."""
    return {name: speaker.unavailable_reason() for name, speaker in list_speakers().items()}


def format_voice_id(engine: str, voice: str) -> str:
    """The canonical voice id ``"ENGINE:VOICE"``."""
    return f"{engine}:{voice}"


def parse_voice_id(voice_id: str) -> tuple[str, str]:
    """Split ``"ENGINE:VOICE"`` into ``(engine, voice)`` and check both exist.

    Raises:
        TimbreError: malformed id, unknown engine or unknown voice, with the valid choices.
    """
    if not isinstance(voice_id, str) or voice_id.count(":") != 1:
        raise TimbreError(
            f"a voice id looks like 'ENGINE:VOICE' (e.g. 'kokoro:jf_alpha', 'flite:slt'), got {voice_id!r}"
        )
    engine, voice = (part.strip() for part in voice_id.split(":"))
    speaker = get_speaker(engine)
    if voice not in speaker.voices():
        raise TimbreError(f"unknown {engine} voice {voice!r}; choose one of: {', '.join(speaker.voices())}")
    return engine, voice


def all_voice_ids(available_only: bool = True) -> list[str]:
    """Every ``"ENGINE:VOICE"`` id, of the engines that can run here unless `available_only` is False."""
    ids = []
    for name, speaker in list_speakers().items():
        if available_only and speaker.unavailable_reason() is not None:
            continue
        ids.extend(format_voice_id(name, voice) for voice in speaker.voices())
    return ids


def synthesize_voice_id(voice_id: str, text: str, speed: float = 1.0) -> SpeakerOutput:
    """Speak `text` with the voice named ``"ENGINE:VOICE"`` (see `BaseSpeaker.synthesize`)."""
    engine, voice = parse_voice_id(voice_id)
    return get_speaker(engine).synthesize(text, voice, speed=speed)
