"""The studio's audio contract: the `Audio` value, loading/saving, resampling and THE log-mel function.

Everything inside the studio is mono float32 at 24 kHz. Inputs of any common format, rate and channel count
are converted here, at the edge. `vocoder/` and `converter/` import this module; it imports nothing from the
TTS engines and stays light (no librosa, no model loading).

Shapes: ``T`` samples, ``B`` batch, ``M`` mel bands, ``F`` mel frames.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch

from tts.errors import AudioError
from tts.files import atomic_open

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
"""The studio's internal sample rate (Hz)."""

DEFAULT_MAX_SECONDS = 20 * 60.0
"""Longest input `load_audio` decodes unless the caller asks for more (a 2-hour upload is refused)."""

MAX_FILE_BYTES = 512 * 1024 * 1024

MIN_NATIVE_SAMPLE_RATE = 1_000
MAX_NATIVE_SAMPLE_RATE = 768_000
"""Sample rates `load_audio` accepts in a file. No recording uses a rate outside them; a header that claims
one is damaged, and a claimed 1 Hz would turn a few kilobytes into hours of audio at 24 kHz."""

_DECODE_BLOCK_FRAMES = 1 << 16
_UNKNOWN_FRAMES = 2**62
"""libsndfile reports 2**63 - 1 frames for a stream of unknown length (a FLAC whose header says 0)."""

SAVE_FORMATS = ("wav", "flac", "mp3", "ogg")

AudioSource = Union[str, os.PathLike, bytes, BinaryIO]


@dataclass(frozen=True)
class MelConfig:
    """The one log-mel definition: exactly the published Vocos 24 kHz feature.

    torchaudio ``MelSpectrogram(power=1, center=True, norm=None, mel_scale="htk")`` at these settings, then
    ``log(clamp(x, 1e-7))``.
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 100
    f_min: float = 0.0
    f_max: float | None = None
    log_floor: float = 1e-7

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (93.75 for the studio's mel)."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames `log_mel` returns for a signal of `num_samples` samples (centered STFT)."""
        return num_samples // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)


STUDIO_MEL = MelConfig()


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 samples with their sample rate; what every public function returns.

    Attributes:
        samples: ``(T,)`` float32 in [-1, 1] (not clipped on creation).
        sample_rate: Hz.
    """

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"Audio samples must be 1-D (mono), got shape {samples.shape}")
        if int(self.sample_rate) <= 0:
            raise AudioError(f"sample_rate must be positive, got {self.sample_rate}")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"Audio({self.duration:.2f} s @ {self.sample_rate} Hz)"

    def resample(self, sample_rate: int) -> "Audio":
        """This audio at another rate (soxr high quality)."""
        return Audio(resample(self.samples, self.sample_rate, sample_rate), sample_rate)

    def to_tensor(self) -> torch.Tensor:
        """``(T,)`` float32 tensor sharing no memory with this value."""
        return torch.from_numpy(self.samples.copy())

    def save(self, path: str | os.PathLike, format: str | None = None) -> Path:
        """Write to `path` (wav, flac, mp3 or ogg, from the suffix unless `format` is given).

        The file is written to a temporary name and renamed, so a crash never leaves half a file.
        """
        return save_audio(self, path, format=format)

    def to_bytes(self, format: str = "wav") -> bytes:
        """Encoded file contents in `format`."""
        buffer = io.BytesIO()
        _write(buffer, self, format)
        return buffer.getvalue()


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``(T,)`` or ``(T, C)`` float samples from `orig_sr` to `target_sr`."""
    if orig_sr == target_sr:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(samples, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(np.float32)


def _read_source(source: AudioSource) -> tuple[bytes | None, str]:
    """Return (bytes or None when reading from a path, a name for messages)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "<bytes>"
    if hasattr(source, "read"):
        data = source.read()
        return data, getattr(source, "name", "<stream>")
    return None, os.fspath(source)


def _probe_duration(data: bytes | None, name: str) -> float | None:
    """Duration from the header without decoding, or None when the header does not say."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data) if data is not None else name)
        if 0 < info.frames < _UNKNOWN_FRAMES and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - not a soundfile format; PyAV below decides
        pass
    try:
        import av

        with av.open(io.BytesIO(data) if data is not None else name) as container:
            if container.duration:
                return container.duration / 1_000_000
    except Exception:  # noqa: BLE001
        return None
    return None


class _Collector:
    """Takes decoded blocks as they come: mixes them to mono, checks them, and resamples them at once.

    Memory holds only the output, whatever the file's header claims; decoding stops as soon as the audio
    passes `max_seconds` (a header may hide the length: a FLAC that says 0 samples, a damaged MP3).
    """

    def __init__(self, name: str, native_rate: int, sample_rate: int, max_seconds: float | None) -> None:
        if not MIN_NATIVE_SAMPLE_RATE <= native_rate <= MAX_NATIVE_SAMPLE_RATE:
            raise AudioError(
                f"{name}: the file claims a sample rate of {native_rate} Hz; audio files use "
                f"{MIN_NATIVE_SAMPLE_RATE} to {MAX_NATIVE_SAMPLE_RATE} Hz, so it is damaged. Export it again."
            )
        self.name, self.native_rate, self.max_seconds = name, native_rate, max_seconds
        self.frames = 0
        self.chunks: list[np.ndarray] = []
        self.stream = None
        if native_rate != sample_rate:
            import soxr

            # Streaming gives bit for bit what `resample` gives for the whole signal.
            self.stream = soxr.ResampleStream(native_rate, sample_rate, 1, dtype="float32", quality="HQ")

    def add(self, block: np.ndarray) -> None:
        """Append ``(T, C)`` or ``(T,)`` float32 samples at the native rate."""
        mono = block.mean(axis=1) if block.ndim == 2 else block
        self.frames += len(mono)
        if self.max_seconds is not None and self.frames / self.native_rate > self.max_seconds:
            raise AudioError(
                f"{self.name}: the audio is longer than the limit of {_fmt_seconds(self.max_seconds)}. "
                "Cut it to a shorter excerpt first."
            )
        if not np.all(np.isfinite(mono)):
            raise AudioError(f"{self.name}: the audio contains NaN or infinite samples")
        self.chunks.append(self.stream.resample_chunk(mono) if self.stream is not None else mono)

    def finish(self) -> np.ndarray:
        """The ``(T,)`` float32 output; `AudioError` when nothing was decoded or resampling overflowed."""
        if self.frames == 0:
            raise AudioError(f"{self.name}: the file holds no audio samples")
        if self.stream is not None:
            self.chunks.append(self.stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        samples = np.concatenate(self.chunks).astype(np.float32, copy=False)
        if samples.size == 0:
            raise AudioError(
                f"{self.name}: the audio is too short: {self.frames} sample(s) at {self.native_rate} Hz make no "
                "sample at the studio's rate"
            )
        if not np.all(np.isfinite(samples)):
            raise AudioError(
                f"{self.name}: the samples are so far outside [-1, 1] that resampling overflows; "
                "the file is damaged or not audio"
            )
        return samples


def _decode(data: bytes | None, name: str, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    """Decode to mono float32 at `sample_rate` with soundfile, falling back to PyAV, block by block."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data) if data is not None else name) as handle:
            collector = _Collector(name, int(handle.samplerate), sample_rate, max_seconds)
            handle.seek(0)  # as soundfile.read does: without it libsndfile's MP3 decoder rounds differently
            while True:
                block = handle.read(_DECODE_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                collector.add(block)
        return collector.finish()
    except AudioError:
        raise
    except Exception as sf_error:  # noqa: BLE001
        soundfile_error = sf_error
    try:
        import av

        with av.open(io.BytesIO(data) if data is not None else name) as container:
            if not container.streams.audio:
                raise AudioError(f"{name}: the file has no audio stream")
            stream = container.streams.audio[0]
            native_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            collector = _Collector(name, native_rate, sample_rate, max_seconds)
            # Planar float in the stream's own layout, mixed by `_Collector` like soundfile's output: FFmpeg's
            # mono downmix weights a stereo pair by 0.707, so the same clip came out 3 dB louder this way.
            resampler = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    collector.add(out.to_ndarray().T)
            for out in resampler.resample(None):
                collector.add(out.to_ndarray().T)
        return collector.finish()
    except AudioError:
        raise
    except Exception as av_error:  # noqa: BLE001
        raise AudioError(
            f"{name}: not a readable audio file ({soundfile_error}; {av_error}). "
            "Use wav, flac, ogg, mp3, m4a or another common audio format."
        ) from av_error


def load_audio(
    source: AudioSource,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> Audio:
    """Load any common audio format as mono float32 at `sample_rate` (24 kHz by default).

    Args:
        source: a path, the file's bytes, or a binary file object.
        sample_rate: rate of the returned audio.
        max_seconds: refuse longer inputs (checked from the header before decoding where possible, and
            while decoding, which stops at the limit); None for no limit.

    Raises:
        AudioError: missing, empty, unreadable, silent-length or over-long input, NaN or infinite samples, or
            a sample rate no audio file uses, with what to do about it.
    """
    data, name = _read_source(source)
    if data is None:
        path = Path(name)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name}: is a folder, not an audio file")
        size = path.stat().st_size
    else:
        size = len(data)
    if size == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise AudioError(f"{name}: the file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
    if max_seconds is not None:
        duration = _probe_duration(data, name)
        if duration is not None and duration > max_seconds:
            raise AudioError(
                f"{name}: the audio is {_fmt_seconds(duration)} long; the limit is {_fmt_seconds(max_seconds)}. "
                "Cut it to a shorter excerpt first."
            )
    return Audio(_decode(data, name, sample_rate, max_seconds), sample_rate)


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _format_for(path: Path, format: str | None) -> str:
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in SAVE_FORMATS:
        raise AudioError(f"cannot save as '{fmt or path.name}': choose one of {', '.join(SAVE_FORMATS)}")
    return fmt


def _write(target: str | BinaryIO, audio: Audio, fmt: str) -> None:
    import soundfile as sf

    samples = np.clip(audio.samples, -1.0, 1.0)
    subtype = {"wav": "PCM_16", "flac": "PCM_16", "mp3": "MPEG_LAYER_III", "ogg": "VORBIS"}[fmt]
    sf.write(target, samples, audio.sample_rate, format=fmt.upper() if fmt != "mp3" else "MP3", subtype=subtype)


def save_audio(audio: Audio, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write `audio` atomically to `path`; the format comes from `format` or the suffix.

    Encoded in memory first: soundfile writing to a file swallows the `OSError` of a full disk and fails later
    with an `AssertionError`; written as bytes, the disk's own error reaches the caller."""
    path = Path(path)
    data = audio.to_bytes(_format_for(path, format))
    with atomic_open(path) as handle:
        handle.write(data)
    return path


# ---------------------------------------------------------------------------------------------------------
# The log-mel feature


def _hz_to_mel_htk(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz_htk(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(config: MelConfig = STUDIO_MEL) -> torch.Tensor:
    """``(M, n_fft // 2 + 1)`` triangular HTK mel filters without area normalization."""
    n_freqs = config.n_fft // 2 + 1
    f_max = config.f_max if config.f_max is not None else config.sample_rate / 2
    all_freqs = np.linspace(0, config.sample_rate // 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel_htk(np.array(config.f_min)), _hz_to_mel_htk(np.array(f_max)), config.n_mels + 2)
    hz_points = _mel_to_hz_htk(mel_points)
    widths = np.diff(hz_points)
    ramps = hz_points[None, :] - all_freqs[:, None]
    rising = -ramps[:, :-2] / widths[:-1]
    falling = ramps[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return torch.from_numpy(filters.T.astype(np.float32))


def warp_mel_bands(mel: torch.Tensor, factor: float, config: MelConfig = STUDIO_MEL) -> torch.Tensor:
    """`mel` ``(..., M, F)`` with its frequency axis scaled by `factor`: what ``factor`` times the vocal-tract
    resonances would give (vocal tract length perturbation: above 1 a shorter tract, formants move up).

    Band ``m`` takes the log-energy the input had at ``f_m / factor`` (linear interpolation between bands on
    the mel scale); bands whose source lies beyond the top band repeat the top band. The pitch harmonics move
    with the formants, as they do in VTLP on filterbanks; the time axis is untouched.
    """
    if factor <= 0:
        raise ValueError(f"warp factor must be positive, got {factor}")
    f_max = config.f_max if config.f_max is not None else config.sample_rate / 2
    low, high = _hz_to_mel_htk(np.array(config.f_min)), _hz_to_mel_htk(np.array(f_max))
    centers = _mel_to_hz_htk(np.linspace(low, high, config.n_mels + 2)[1:-1])
    step = (high - low) / (config.n_mels + 1)
    source = (_hz_to_mel_htk(centers / factor) - low) / step - 1.0  # fractional band index of each source
    source = np.clip(source, 0.0, config.n_mels - 1.0)
    below = np.floor(source).astype(np.int64)
    above = np.minimum(below + 1, config.n_mels - 1)
    weight = torch.as_tensor(source - below, dtype=mel.dtype, device=mel.device)[:, None]
    index_below = torch.as_tensor(below, device=mel.device)
    index_above = torch.as_tensor(above, device=mel.device)
    lower = mel.index_select(-2, index_below)
    upper = mel.index_select(-2, index_above)
    return lower + (upper - lower) * weight


def interpolate_frames(mel: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``(M, len(positions))``: `mel` ``(M, F)`` read at fractional frame `positions` (linear between frames,
    clamped to the first and last frame). The one time-axis resampler of mels: speed changes of the `ar` engine
    (`tts.synthesis.MelStretcher`) and the stretched first estimate of a DiT speed edit."""
    where = positions.clamp(0, mel.shape[-1] - 1)
    left = where.floor().long()
    right = (left + 1).clamp(max=mel.shape[-1] - 1)
    weight = (where - left).to(mel.dtype)
    return mel[:, left] * (1 - weight) + mel[:, right] * weight


SPEECH_FLOOR = 4.0
"""Frames within this many natural-log units (35 dB) of a log-mel's loudest frame are its speech
(`speech_band_means`)."""


def speech_band_means(mel: torch.Tensor) -> torch.Tensor:
    """``(M, 1)``: each band's mean over the speech frames of the log-mel `mel` ``(M, F)`` (those within
    `SPEECH_FLOOR` of its loudest): its long-term spectrum, which the vocal tract and the recording channel set and
    the words barely move. Adding ``speech_band_means(a) - speech_band_means(b)`` to `b` gives it `a`'s."""
    energy = mel.mean(dim=0)
    return mel[:, energy >= energy.max() - SPEECH_FLOOR].mean(dim=1, keepdim=True)


def log_mel(samples: torch.Tensor | np.ndarray, config: MelConfig = STUDIO_MEL) -> torch.Tensor:
    """THE studio log-mel: ``(T,)`` -> ``(M, F)`` or ``(B, T)`` -> ``(B, M, F)``, with F = T // hop + 1.

    Samples must already be at ``config.sample_rate``.
    """
    wave = torch.as_tensor(samples, dtype=torch.float32) if isinstance(samples, np.ndarray) else samples
    squeeze = wave.dim() == 1
    if squeeze:
        wave = wave.unsqueeze(0)
    if wave.dim() != 2:
        raise ValueError(f"log_mel expects (T,) or (B, T) samples, got shape {tuple(wave.shape)}")
    if wave.shape[-1] <= config.n_fft // 2:
        # Reflect padding needs more than n_fft/2 samples; pad tiny clips with silence instead.
        wave = torch.nn.functional.pad(wave, (0, config.n_fft // 2 + 1 - wave.shape[-1]))
    window = torch.hann_window(config.win_length, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(
        wave,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    filters = mel_filterbank(config).to(device=wave.device, dtype=wave.dtype)
    mel = torch.matmul(filters, spec)
    mel = torch.log(torch.clamp(mel, min=config.log_floor))
    return mel.squeeze(0) if squeeze else mel
