"""Prosody statistics and paired prosody distances.

* F0 at 16 kHz, 10 ms hop, 50-600 Hz, by Praat's autocorrelation pitch for the statistics (mean and median in
  Hz; range as the 5th-95th percentile spread in semitones; spread as the interquartile range in semitones;
  voiced fraction) and by probabilistic YIN (``librosa.pyin``) for the paired contour correlation. pyin loses
  the voicing of much of the studio's vocoded speech, and of speech whose spectrum is tilted up (an angry
  style): of 105 styled `dit` outputs (whispers left out), it found fewer than 20 voiced frames in 19, Praat in 2
  (docs/styles.md, "Session 19").
* Energy: frame RMS level in dBFS over the active frames.
* Speaking rate: phones per second when the studio's phonemizer is importable, else syllables per second
  from vowel groups of the text; over the active span (leading and trailing silence excluded).
* Paired tasks (conversion, editing): F0-contour correlation (aligned by DTW on MFCCs, or by time
  normalization) and mel-cepstral distortion with DTW.

The MCD here uses a mel cepstrum computed from a log-mel spectrum by a DCT (coefficients 1-24), not
SPTK's all-pass mel-cepstrum, so its values are comparable with each other, not with published MCDs.

Shapes: ``F`` analysis frames (10 ms), ``C`` cepstral coefficients.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from tts.audio import Audio
from tts.errors import AudioError

PROSODY_SAMPLE_RATE = 16_000
HOP_LENGTH = 160
"""10 ms at 16 kHz."""
FRAME_LENGTH = 1024
F0_MIN_HZ = 50.0
F0_MAX_HZ = 600.0
ACTIVE_GATE_DB = 40.0
"""Frames more than this far below the loudest frame count as silence."""
SEMITONE_REFERENCE_HZ = 55.0
MCD_COEFFICIENTS = 24
MIN_PAIRED_FRAMES = 10
MIN_VOICED_FRAMES = 20
"""F0 statistics need at least this many voiced frames (0.2 s); fewer gives None, not a noisy number."""

_VOWEL_GROUP = re.compile(r"[aeiouy]+")


@dataclass(frozen=True)
class F0Track:
    """An F0 contour: ``f0`` ``(F,)`` in Hz with NaN where unvoiced, and pyin's voicing probability."""

    f0: np.ndarray
    voiced_probability: np.ndarray
    hop_seconds: float

    @property
    def times(self) -> np.ndarray:
        """``(F,)`` frame centers in seconds."""
        return np.arange(len(self.f0)) * self.hop_seconds

    @property
    def voiced(self) -> np.ndarray:
        """``(F,)`` bool."""
        return np.isfinite(self.f0)


def _samples(audio: Audio, what: str = "the audio") -> np.ndarray:
    if not isinstance(audio, Audio):
        raise ValueError(f"{what} must be an Audio value, got {type(audio).__name__}")
    samples = audio.resample(PROSODY_SAMPLE_RATE).samples.astype(np.float32)
    if len(samples) < FRAME_LENGTH:
        raise AudioError(f"{what} is {audio.duration:.2f} s; prosody needs at least {FRAME_LENGTH / PROSODY_SAMPLE_RATE:.2f} s")
    if float(np.max(np.abs(samples))) < 1e-4:
        raise AudioError(f"{what} is silent")
    return samples


F0_METHODS = ("pyin", "praat")


def f0_track(audio: Audio, fmin: float = F0_MIN_HZ, fmax: float = F0_MAX_HZ, method: str = "pyin") -> F0Track:
    """The F0 contour of `audio` (10 ms frames): by pyin (`method` ``"pyin"``, the contour correlation), or by
    Praat's autocorrelation pitch (``"praat"``, about 50 times faster: the statistics and the style features),
    put on the same frame grid."""
    import librosa

    if method not in F0_METHODS:
        raise ValueError(f"unknown F0 method {method!r}; choose one of {', '.join(F0_METHODS)}")
    samples = _samples(audio)
    if method == "praat":
        return _praat_f0_track(samples, fmin, fmax)
    f0, voiced_flag, voiced_probability = librosa.pyin(
        samples, fmin=fmin, fmax=fmax, sr=PROSODY_SAMPLE_RATE, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH
    )
    f0 = np.where(voiced_flag, f0, np.nan).astype(np.float64)
    return F0Track(f0, np.asarray(voiced_probability, dtype=np.float64), HOP_LENGTH / PROSODY_SAMPLE_RATE)


def _praat_f0_track(samples: np.ndarray, fmin: float, fmax: float) -> F0Track:
    """Praat's "To Pitch (ac)" contour interpolated onto pyin's frame grid (frame ``i`` at ``i * hop``); the
    voicing probability is Praat's pitch strength, 0 where unvoiced."""
    from tts.data.styles import _praat

    parselmouth, _ = _praat()
    hop_seconds = HOP_LENGTH / PROSODY_SAMPLE_RATE
    sound = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=PROSODY_SAMPLE_RATE)
    pitch = sound.to_pitch_ac(time_step=hop_seconds, pitch_floor=fmin, pitch_ceiling=fmax)
    times = np.asarray(pitch.xs(), dtype=np.float64)
    frequency = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    strength = np.asarray(pitch.selected_array["strength"], dtype=np.float64)
    grid = np.arange(1 + len(samples) // HOP_LENGTH) * hop_seconds
    nearest = np.clip(np.searchsorted(times, grid), 0, max(len(times) - 1, 0))
    if len(times) == 0:
        return F0Track(np.full(len(grid), np.nan), np.zeros(len(grid)), hop_seconds)
    previous = np.clip(nearest - 1, 0, len(times) - 1)
    closer = np.where(np.abs(times[previous] - grid) < np.abs(times[nearest] - grid), previous, nearest)
    inside = (grid >= times[0] - hop_seconds) & (grid <= times[-1] + hop_seconds)
    f0 = np.where(inside & (frequency[closer] > 0), frequency[closer], np.nan)
    voiced_probability = np.where(np.isfinite(f0), strength[closer], 0.0)
    return F0Track(f0, voiced_probability, hop_seconds)


def hz_to_semitones(hz: np.ndarray, reference_hz: float = SEMITONE_REFERENCE_HZ) -> np.ndarray:
    """Semitones above `reference_hz` (NaN stays NaN)."""
    return 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / reference_hz)


def frame_energy_db(audio: Audio) -> np.ndarray:
    """``(F,)`` frame RMS level in dBFS (10 ms hop, 1024-sample frames at 16 kHz, centered: the signal padded with
    half a frame of zeros each side, as `librosa.feature.rms` frames it). Plain numpy: importing librosa's feature
    module cost the first `synthesize()` of a process 1.5-3 s (the `dit` engine measures its voices' pitch with
    these levels)."""
    samples = _samples(audio).astype(np.float64)
    padded = np.pad(samples, FRAME_LENGTH // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, FRAME_LENGTH)[::HOP_LENGTH]  # a view: no copy
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / FRAME_LENGTH)  # sums of squares, never the squared frames
    return 20.0 * np.log10(np.maximum(rms, 1e-8))


def active_span(energy_db: np.ndarray, gate_db: float = ACTIVE_GATE_DB) -> tuple[int, int]:
    """First and one-past-last frame within `gate_db` of the loudest frame."""
    active = np.flatnonzero(energy_db > energy_db.max() - gate_db)
    return int(active[0]), int(active[-1]) + 1


def count_syllables(text: str) -> int:
    """A syllable estimate: vowel groups per word (silent final e dropped), at least one per word."""
    total = 0
    for word in re.findall(r"[a-z]+", text.lower()):
        groups = len(_VOWEL_GROUP.findall(word))
        if word.endswith("e") and groups > 1 and not word.endswith(("le", "ee")):
            groups -= 1
        total += max(1, groups)
    return total


def count_phones(text: str) -> int | None:
    """Phones of `text` by the studio's text front end, or None when it is not importable."""
    try:
        from tts.text import normalize_text, phonemize
    except ImportError:
        return None
    words = phonemize(normalize_text(text))
    return sum(len(word.phonemes) for word in words)


def speaking_rate(text: str, seconds: float) -> tuple[float, str]:
    """(units per second, unit): phones/s from the phonemizer, else syllables/s from the text."""
    if seconds <= 0:
        raise AudioError("no active speech to measure a speaking rate over")
    phones = count_phones(text)
    if phones:
        return phones / seconds, "phones/s"
    return count_syllables(text) / seconds, "syllables/s"


@dataclass(frozen=True)
class ProsodyStats:
    """Prosody of one clip."""

    duration_seconds: float
    active_seconds: float
    """From the first to the last frame within 40 dB of the loudest."""
    f0_mean_hz: float | None
    f0_median_hz: float | None
    f0_range_semitones: float | None
    """5th to 95th percentile of voiced F0."""
    f0_spread_semitones: float | None
    """25th to 75th percentile of voiced F0: unlike the range, not moved by octave errors of the tracker on
    fewer than a quarter of the frames."""
    f0_std_semitones: float | None
    voiced_fraction: float
    """Voiced frames / active frames."""
    energy_mean_db: float
    energy_std_db: float
    speaking_rate: float | None
    speaking_rate_unit: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def prosody_stats(audio: Audio, text: str | None = None, track: F0Track | None = None) -> ProsodyStats:
    """F0, energy and (when `text` is given) speaking-rate statistics of `audio`; F0 from `track` (default:
    Praat's, see the module docstring)."""
    track = f0_track(audio, method="praat") if track is None else track
    energy = frame_energy_db(audio)
    start, end = active_span(energy)
    active_seconds = (end - start) * HOP_LENGTH / PROSODY_SAMPLE_RATE
    voiced_hz = track.f0[start:end][track.voiced[start:end]]
    if len(voiced_hz) >= MIN_VOICED_FRAMES:
        semitones = hz_to_semitones(voiced_hz)
        p5, p25, p75, p95 = np.percentile(semitones, [5, 25, 75, 95])
        f0 = (float(np.mean(voiced_hz)), float(np.median(voiced_hz)), float(p95 - p5), float(p75 - p25),
              float(np.std(semitones)))
    else:
        f0 = (None, None, None, None, None)
    rate, unit = speaking_rate(text, active_seconds) if text else (None, None)
    active_energy = energy[start:end]
    return ProsodyStats(
        duration_seconds=audio.duration,
        active_seconds=active_seconds,
        f0_mean_hz=f0[0],
        f0_median_hz=f0[1],
        f0_range_semitones=f0[2],
        f0_spread_semitones=f0[3],
        f0_std_semitones=f0[4],
        voiced_fraction=float(len(voiced_hz) / max(1, end - start)),
        energy_mean_db=float(np.mean(active_energy)),
        energy_std_db=float(np.std(active_energy)),
        speaking_rate=rate,
        speaking_rate_unit=unit,
    )


# ---------------------------------------------------------------------------------------------------------
# Paired measures


def _mfcc(samples: np.ndarray) -> np.ndarray:
    """``(20, F)`` MFCCs on the F0 track's frame grid, for DTW alignment."""
    import librosa

    return librosa.feature.mfcc(
        y=samples, sr=PROSODY_SAMPLE_RATE, n_mfcc=20, n_fft=FRAME_LENGTH, hop_length=HOP_LENGTH, center=True
    )


def _dtw_path(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(P, 2)`` DTW path (frame of x, frame of y), start to end."""
    import librosa

    _, path = librosa.sequence.dtw(X=x, Y=y, metric="euclidean")
    return path[::-1]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < MIN_PAIRED_FRAMES:
        raise AudioError(f"only {len(x)} frames are voiced in both clips; at least {MIN_PAIRED_FRAMES} needed")
    if np.std(x) == 0 or np.std(y) == 0:
        raise AudioError("an F0 contour is flat; correlation is undefined")
    return float(np.corrcoef(x, y)[0, 1])


def _interpolate_unvoiced(semitones: np.ndarray) -> np.ndarray:
    voiced = np.isfinite(semitones)
    if voiced.sum() < 2:
        raise AudioError("fewer than two voiced frames")
    index = np.arange(len(semitones))
    return np.interp(index, index[voiced], semitones[voiced])


def f0_correlation(
    a: Audio,
    b: Audio,
    align: str = "dtw",
    track_a: F0Track | None = None,
    track_b: F0Track | None = None,
) -> float:
    """Pearson correlation of the F0 contours (in semitones) of two clips of the same content.

    Args:
        align: ``"dtw"`` pairs frames along a DTW path on MFCCs and keeps pairs voiced in both;
            ``"time"`` stretches both contours (unvoiced gaps interpolated) to a common length.
    """
    if align not in ("dtw", "time"):
        raise ValueError(f"align must be 'dtw' or 'time', got {align!r}")
    track_a = f0_track(a) if track_a is None else track_a
    track_b = f0_track(b) if track_b is None else track_b
    semis_a, semis_b = hz_to_semitones(track_a.f0), hz_to_semitones(track_b.f0)
    if align == "time":
        filled_a, filled_b = _interpolate_unvoiced(semis_a), _interpolate_unvoiced(semis_b)
        grid = np.linspace(0.0, 1.0, max(len(filled_a), len(filled_b)))
        stretched_a = np.interp(grid, np.linspace(0.0, 1.0, len(filled_a)), filled_a)
        stretched_b = np.interp(grid, np.linspace(0.0, 1.0, len(filled_b)), filled_b)
        return _pearson(stretched_a, stretched_b)
    path = _dtw_path(_mfcc(_samples(a, "the first clip")), _mfcc(_samples(b, "the second clip")))
    i = np.minimum(path[:, 0], len(semis_a) - 1)
    j = np.minimum(path[:, 1], len(semis_b) - 1)
    both = np.isfinite(semis_a[i]) & np.isfinite(semis_b[j])
    return _pearson(semis_a[i][both], semis_b[j][both])


def mel_cepstrum(audio: Audio, n_coefficients: int = MCD_COEFFICIENTS) -> np.ndarray:
    """``(C, F)`` mel cepstrum (coefficients 1..C of the DCT of the natural-log mel amplitude), active span only."""
    import librosa
    import scipy.fft

    samples = _samples(audio)
    power = librosa.feature.melspectrogram(
        y=samples, sr=PROSODY_SAMPLE_RATE, n_fft=FRAME_LENGTH, hop_length=HOP_LENGTH, n_mels=80, power=2.0
    )
    log_amplitude = 0.5 * np.log(np.maximum(power, 1e-10))
    cepstrum = scipy.fft.dct(log_amplitude, type=2, axis=0, norm="ortho")[1 : n_coefficients + 1]
    energy = 10.0 * np.log10(np.maximum(power.sum(axis=0), 1e-10))
    start, end = active_span(energy)
    return cepstrum[:, start:end]


def mel_cepstral_distortion(reference: Audio, synthesized: Audio) -> float:
    """MCD in dB between two clips of the same content, frames paired by DTW (0 for identical clips)."""
    x, y = mel_cepstrum(reference), mel_cepstrum(synthesized)
    path = _dtw_path(x, y)
    diff = x[:, path[:, 0]] - y[:, path[:, 1]]
    per_frame = np.sqrt(2.0 * np.sum(diff**2, axis=0))
    return float(10.0 / np.log(10.0) * np.mean(per_frame))
