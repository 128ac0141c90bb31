"""The audio contract: loading every format, bad inputs, saving, and THE log-mel definition."""

from __future__ import annotations

import time

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from tts.audio import STUDIO_MEL, Audio, MelConfig, load_audio, log_mel, save_audio
from tts.errors import AudioError


def reference_log_mel(samples: np.ndarray) -> np.ndarray:
    """An independent float64 computation of the Vocos 24 kHz feature: numpy framing + librosa's HTK filters."""
    n_fft, hop = 1024, 256
    padded = np.pad(samples.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(n_frames)])
    magnitude = np.abs(np.fft.rfft(frames, axis=1)).T
    filters = librosa.filters.mel(sr=24000, n_fft=n_fft, n_mels=100, fmin=0.0, fmax=12000.0, htk=True, norm=None)
    return np.log(np.maximum(filters @ magnitude, 1e-7))


def test_log_mel_matches_independent_definition():
    rng = np.random.default_rng(0)
    t = np.arange(24000 + 123) / 24000
    samples = (0.4 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    ours = log_mel(torch.from_numpy(samples)).numpy()
    ref = reference_log_mel(samples)
    assert ours.shape == ref.shape == (100, STUDIO_MEL.num_frames(len(samples)))
    assert np.max(np.abs(ours - ref)) < 1e-3


def test_log_mel_batch_and_constants():
    assert STUDIO_MEL.frame_rate == 93.75
    wave = torch.randn(3, 5000)
    batch = log_mel(wave)
    assert batch.shape == (3, 100, 5000 // 256 + 1)
    assert torch.allclose(batch[1], log_mel(wave[1]), atol=1e-5)
    silent = log_mel(torch.zeros(2400))
    assert torch.allclose(silent, torch.full_like(silent, float(np.log(1e-7))))


def test_log_mel_tiny_input_does_not_crash():
    assert log_mel(torch.randn(100)).shape[0] == 100


def test_mel_config_other_rate():
    config = MelConfig(sample_rate=16000, n_mels=80)
    assert log_mel(torch.randn(16000), config).shape == (80, 16000 // 256 + 1)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_load_every_format_any_rate_and_channels(tmp_path, fmt):
    rate = 44100 if fmt != "mp3" else 8000
    t = np.arange(int(rate * 1.5)) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 300 * t)], axis=1)
    path = tmp_path / f"clip.{fmt}"
    sf.write(path, stereo.astype(np.float32), rate)
    audio = load_audio(path)
    assert audio.sample_rate == 24000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration - 1.5) < 0.1
    spectrum = np.abs(np.fft.rfft(audio.samples[2400:26400]))
    assert abs(np.argmax(spectrum) * 24000 / 24000 - 300) < 5  # 1 s window: bins are 1 Hz


def test_load_m4a_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.m4a"
    rate = 16000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        t = np.arange(rate) / rate
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    audio = load_audio(path)
    assert 0.9 < audio.duration < 1.2 and audio.sample_rate == 24000


def test_load_from_bytes_and_file_object(tmp_path, tone):
    data = tone.to_bytes("flac")
    assert abs(load_audio(data).duration - 1.0) < 1e-3
    path = tmp_path / "t.wav"
    tone.save(path)
    with open(path, "rb") as handle:
        assert abs(load_audio(handle).duration - 1.0) < 1e-3


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_save_round_trip(tmp_path, tone, fmt):
    path = tone.save(tmp_path / f"out.{fmt}")
    back = load_audio(path)
    assert abs(back.duration - tone.duration) < 0.06
    if fmt in ("wav", "flac"):
        assert np.max(np.abs(back.samples - tone.samples)) < 1e-3
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_refuses_unknown_format(tmp_path, tone):
    with pytest.raises(AudioError, match="wav, flac, mp3, ogg"):
        tone.save(tmp_path / "out.xyz")


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my shopping notes, not audio\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(fake)
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)


def test_short_clip_loads(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.full(1600, 0.1, dtype=np.float32), 16000)
    audio = load_audio(path)
    assert abs(audio.duration - 0.1) < 1e-3


def test_two_hour_file_is_refused_quickly(tmp_path):
    path = tmp_path / "long.flac"
    rate = 8000
    block = np.zeros(rate * 60, dtype=np.int16)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16", format="FLAC") as handle:
        for _ in range(120):
            handle.write(block)
    start = time.perf_counter()
    with pytest.raises(AudioError, match=r"2\.0 h long; the limit is 20\.0 min"):
        load_audio(path)
    assert time.perf_counter() - start < 2.0  # refused from the header, not after decoding two hours
    assert load_audio(path, max_seconds=None, sample_rate=8000).duration == pytest.approx(7200, abs=0.1)


def test_audio_value():
    with pytest.raises(AudioError):
        Audio(np.zeros((2, 10)))
    audio = Audio(np.zeros(48000, dtype=np.float64), 48000)
    assert audio.samples.dtype == np.float32
    assert len(audio.resample(24000)) == 24000
    assert "1.00 s" in repr(audio)


def test_save_audio_is_atomic_on_failure(tmp_path, tone, monkeypatch):
    import tts.audio as audio_module

    target = tmp_path / "out.wav"
    tone.save(target)
    before = target.read_bytes()

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(audio_module, "_write", broken_write)
    with pytest.raises(OSError):
        save_audio(tone, target)
    assert target.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
