"""Utterance-level prosody and spectral features of one clip, the input of the style classifier.

    features = style_features(audio)          # (D,) float64, in `FEATURE_NAMES` order

One clip, no reference: the classifier must also read a style clip of an unknown speaker (`style_ref`), so every
feature is a statistic of the clip alone, chosen to move with the rendered styles of `tts.data.styles` (pitch
shift and range, rate, level, spectral tilt, aperiodicity, final rise) more than between speakers:

* F0 (Praat's autocorrelation pitch on `tts.evaluation.prosody`'s 10 ms grid): spread (standard deviation and
  5th-95th percentile range, semitones), the rise over the last voiced 0.5 s, the mean frame-to-frame change,
  the median (semitones above 55 Hz; 0 without voicing);
  voiced fraction of the active frames and mean pitch strength (whisper has none).
* Level (`tts.evaluation.prosody.frame_energy_db`): active level in dBFS, its spread, the share of pauses.
* Rate without the text: level peaks (syllable nuclei) and voiced runs per active second.
* Spectrum (THE studio mel, `tts.audio.log_mel`, over the active frames): the slope of the mean log-mel against
  log frequency (tilt), spectral flatness (noise-like whisper is flat) and the spread of the log-mel over time.

The F0 median (version 3) mostly says who is speaking: a classifier trained on 14 voices learned the voices with
it (leave-two-voices-out accuracy on its training voices rose from 0.69 to 0.76 without it, version 2), so a
classifier hears it only as a difference from the same voice's neutral speech (`SPEAKER_FEATURES`; the paired
classifier of `tts.evaluation.style_classifier`). The mel spectrum's shape is left out for the same reason.

Shapes: ``D`` features, ``M`` mel bands, ``F`` frames.
"""

from __future__ import annotations

import numpy as np
import torch

from tts.audio import STUDIO_MEL, Audio, log_mel
from tts.errors import AudioError
from tts.evaluation.prosody import (HOP_LENGTH, PROSODY_SAMPLE_RATE, F0Track, active_span, f0_track, frame_energy_db,
                                    hz_to_semitones)

FEATURE_VERSION = 3
"""Changes whenever a feature's definition changes (a classifier records the version it was trained on)."""

MIN_STYLE_SECONDS = 0.5
"""Shortest clip whose style can be read (a few syllables)."""

FINAL_SECONDS = 0.5
"""The final rise is measured over the last this many seconds of voicing."""

PEAK_MIN_PROMINENCE_DB = 3.0
PEAK_MIN_DISTANCE_SECONDS = 0.1
"""Level peaks closer than this are one syllable nucleus."""

_FRAME_SECONDS = HOP_LENGTH / PROSODY_SAMPLE_RATE

FEATURE_NAMES: tuple[str, ...] = (
    "f0_std_st", "f0_range_st", "f0_final_rise_st", "f0_delta_st", "f0_median_st", "voiced_fraction",
    "pitch_strength", "has_f0",
    "level_dbfs", "level_std_db", "pause_fraction",
    "peak_rate", "voiced_run_rate",
    "spectral_tilt", "spectral_flatness", "mel_time_std",
)
"""What `style_features` returns, in order."""

SPEAKER_FEATURES: tuple[str, ...] = ("f0_median_st",)
"""Features that mostly say who is speaking: a style classifier hears them only against the same voice's neutral
speech, never on their own."""


def _f0_features(track, start: int, end: int) -> list[float]:
    f0 = track.f0[start:end]
    voiced = np.isfinite(f0)
    count = int(voiced.sum())
    strength = float(np.mean(track.voiced_probability[start:end])) if end > start else 0.0
    fraction = count / max(1, end - start)
    if count < 10:  # whispered or nearly so: no pitch to describe
        return [0.0, 0.0, 0.0, 0.0, 0.0, fraction, strength, 0.0]
    semitones = hz_to_semitones(f0[voiced])
    median = float(np.median(semitones))
    p5, p95 = np.percentile(semitones, [5, 95])
    final_frames = max(3, int(FINAL_SECONDS / _FRAME_SECONDS))
    final = float(np.median(semitones[-final_frames:]) - median)
    contour = hz_to_semitones(f0)
    steps = np.abs(np.diff(contour))
    steps = steps[np.isfinite(steps)]
    delta = float(np.mean(np.minimum(steps, 3.0))) if len(steps) else 0.0  # octave jumps are pitch errors
    return [float(np.std(semitones)), float(p95 - p5), final, delta, median, fraction, strength, 1.0]


def _runs(mask: np.ndarray) -> int:
    """Number of runs of True in `mask`."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    return int(np.sum(np.diff(padded) == 1))


def _rate_features(energy_db: np.ndarray, start: int, end: int, voiced: np.ndarray) -> list[float]:
    from scipy.signal import find_peaks

    seconds = max((end - start) * _FRAME_SECONDS, 1e-3)
    smooth = np.convolve(energy_db[start:end], np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(smooth, prominence=PEAK_MIN_PROMINENCE_DB,
                          distance=max(1, int(PEAK_MIN_DISTANCE_SECONDS / _FRAME_SECONDS)))
    return [len(peaks) / seconds, _runs(voiced) / seconds]


def _spectral_features(audio: Audio, start_seconds: float, end_seconds: float) -> list[float]:
    samples = audio.resample(STUDIO_MEL.sample_rate).samples
    with torch.inference_mode():
        mel = log_mel(torch.from_numpy(np.ascontiguousarray(samples)), STUDIO_MEL).numpy().astype(np.float64)
    first = int(start_seconds * STUDIO_MEL.frame_rate)
    last = max(first + 1, int(np.ceil(end_seconds * STUDIO_MEL.frame_rate)))
    mel = mel[:, first:last]
    frame_level = mel.mean(axis=0)
    loud = mel[:, frame_level > frame_level.max() - 4.6]  # frames within 40 dB (natural log of amplitude) of the loudest
    mean = loud.mean(axis=1)  # (M,)
    centers = np.arange(1, len(mean) + 1, dtype=np.float64)  # mel bands are evenly spaced on the mel scale
    slope = float(np.polyfit(np.log(centers), mean, 1)[0])
    magnitude = np.exp(loud)
    flatness = float(np.mean(np.log(np.exp(np.mean(np.log(magnitude), axis=0)) / np.mean(magnitude, axis=0))))
    time_std = float(np.mean(np.std(loud, axis=1)))
    return [slope, flatness, time_std]


def style_features(audio: Audio, track: F0Track | None = None) -> np.ndarray:
    """``(D,)`` features of `audio` in `FEATURE_NAMES` order (see the module docstring); `track` is its Praat F0
    track (``f0_track(audio, method="praat")``) where the caller has made it already.

    Raises:
        AudioError: a clip shorter than `MIN_STYLE_SECONDS`, silent, or with NaN / infinite samples.
    """
    if not isinstance(audio, Audio):
        raise ValueError(f"style_features needs an Audio value, got {type(audio).__name__}")
    if not np.all(np.isfinite(audio.samples)):
        raise AudioError("the clip contains NaN or infinite samples")
    if audio.duration < MIN_STYLE_SECONDS:
        raise AudioError(f"the clip is {audio.duration:.2f} s long; reading a style needs at least "
                         f"{MIN_STYLE_SECONDS:g} s of speech")
    energy = frame_energy_db(audio)  # raises AudioError for a silent clip
    start, end = active_span(energy)
    if (end - start) * _FRAME_SECONDS < MIN_STYLE_SECONDS:
        raise AudioError(f"the clip has {(end - start) * _FRAME_SECONDS:.2f} s of sound; reading a style needs at "
                         f"least {MIN_STYLE_SECONDS:g} s of speech")
    track = f0_track(audio, method="praat") if track is None else track
    f0 = _f0_features(track, start, end)
    track_voiced = np.isfinite(track.f0[start:end])
    active = energy[start:end]
    level = float(10 * np.log10(np.mean(10 ** (active[active > active.max() - 40] / 10))))
    pauses = float(np.mean(active < active.max() - 30))
    values = [
        *f0,
        level, float(np.std(active)), pauses,
        *_rate_features(energy, start, end, track_voiced),
        *_spectral_features(audio, start * _FRAME_SECONDS, end * _FRAME_SECONDS),
    ]
    features = np.asarray(values, dtype=np.float64)
    assert features.shape == (len(FEATURE_NAMES),) and np.all(np.isfinite(features)), features
    return features
