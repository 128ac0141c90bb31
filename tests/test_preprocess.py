"""Edge cleaning: loudness, silero-vad segments and trimming, DeepFilterNet3 denoising."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tts.audio import Audio, load_audio
from tts.preprocess import (
    active_rms_dbfs,
    clipping_fraction,
    denoise,
    normalize_loudness,
    rms_dbfs,
    trim_silence,
    voiced_audio,
    voiced_segments,
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Audio:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; `make setup` installs it")
    path = tmp_path_factory.mktemp("speech") / "s.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "Voice activity detection keeps only the speech."], check=True)
    return load_audio(path)


def padded(speech: Audio, seconds: float = 1.0) -> Audio:
    pad = np.zeros(int(seconds * speech.sample_rate), dtype=np.float32)
    return Audio(np.concatenate([pad, speech.samples, pad]), speech.sample_rate)


def test_loudness_normalization_hits_target_and_limits_peaks(tone):
    quiet = Audio(tone.samples * 0.01, tone.sample_rate)
    out = normalize_loudness(quiet, target_dbfs=-20.0)
    assert active_rms_dbfs(out) == pytest.approx(-20.0, abs=0.1)
    loud = normalize_loudness(quiet, target_dbfs=0.0, peak_limit=0.5)
    assert np.max(np.abs(loud.samples)) <= 0.5 + 1e-6
    silence = Audio(np.zeros(2400, dtype=np.float32))
    assert normalize_loudness(silence) is silence
    assert rms_dbfs(silence) == float("-inf")


def test_clipping_fraction():
    clipped = Audio(np.clip(np.sin(np.linspace(0, 200, 24000)) * 3, -1, 1))
    assert clipping_fraction(clipped) > 0.3
    assert clipping_fraction(Audio(np.zeros(100))) == 0.0


def test_vad_finds_speech_between_silences(speech):
    clip = padded(speech, 1.0)
    segments = voiced_segments(clip)
    assert segments, "no speech found"
    assert 0.8 < segments[0].start < 1.3
    assert abs(segments[-1].end - (1.0 + speech.duration)) < 0.5
    trimmed = trim_silence(clip, keep_seconds=0.1, segments=segments)
    assert trimmed.duration < clip.duration - 1.4
    assert voiced_audio(clip, segments).duration <= trimmed.duration


def test_vad_on_silence_and_noise_finds_nothing():
    rng = np.random.default_rng(0)
    assert voiced_segments(Audio(np.zeros(48000, dtype=np.float32))) == []
    noise = Audio((0.01 * rng.standard_normal(48000)).astype(np.float32))
    assert voiced_segments(noise) == []
    assert trim_silence(noise).duration == noise.duration  # nothing found: unchanged


def test_denoise_improves_snr_and_keeps_alignment(speech):
    clean = padded(speech, 0.5)
    rng = np.random.default_rng(1)
    noisy = Audio(clean.samples + (0.02 * rng.standard_normal(len(clean))).astype(np.float32))
    out = denoise(noisy)
    assert len(out) == len(noisy) and out.sample_rate == noisy.sample_rate

    def snr(test: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(clean.samples**2) / np.sum((test - clean.samples) ** 2)))

    assert snr(out.samples) > snr(noisy.samples) + 4.0  # misaligned output would score far worse than the input
    assert rms_dbfs(Audio(out.samples[:9000])) < rms_dbfs(Audio(noisy.samples[:9000])) - 25
