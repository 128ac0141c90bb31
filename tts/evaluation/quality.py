"""Signal-quality proxies: DNSMOS (reference-free), PESQ-wb and STOI (paired with a clean reference).

All three were built for telephony and speech enhancement, not for judging synthetic speech: DNSMOS scores
noise and distortion, not naturalness. They are CPU proxies and are reported under their own names
(``dnsmos_ovrl`` ...), never as MOS or UTMOS. All run at 16 kHz.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from tts.audio import Audio
from tts.errors import AudioError, TimbreError

logger = logging.getLogger(__name__)

QUALITY_SAMPLE_RATE = 16_000

DNSMOS_WINDOW_SECONDS = 9.01
"""DNSMOS scores 9.01 s windows (hop 1 s); shorter clips are tiled to one window."""

DNSMOS_LABEL = "DNSMOS P.835 (speechmos ONNX; signal-quality proxy, not a naturalness MOS)"
PESQ_LABEL = "PESQ wide-band (ITU-T P.862.2, paired; enhancement metric used as a proxy)"
STOI_LABEL = "STOI (paired intelligibility index; proxy)"


@dataclass(frozen=True)
class DnsmosScore:
    """DNSMOS P.835 sub-scores on a 1-5 scale, and the P.808 overall estimate."""

    ovrl: float
    """Overall quality."""
    sig: float
    """Speech signal (distortion)."""
    bak: float
    """Background (noise)."""
    p808: float

    def to_dict(self) -> dict:
        return asdict(self)


_dnsmos_lock = threading.Lock()
_dnsmos_model = None


def _dnsmos():
    global _dnsmos_model
    if _dnsmos_model is None:
        try:
            from speechmos import dnsmos as speechmos_dnsmos
        except ImportError:
            raise TimbreError("DNSMOS needs the speechmos package: pip install speechmos (or run `make setup`)") from None
        folder = os.path.join(os.path.dirname(os.path.abspath(speechmos_dnsmos.__file__)), "dnsmos_models")
        _dnsmos_model = speechmos_dnsmos.DNSMOS(
            os.path.join(folder, "sig_bak_ovr.onnx"), os.path.join(folder, "model_v8.onnx")
        )
    return _dnsmos_model


def _at_16k(audio: Audio, what: str) -> np.ndarray:
    if not isinstance(audio, Audio):
        raise ValueError(f"{what} must be an Audio value, got {type(audio).__name__}")
    if len(audio) == 0:
        raise AudioError(f"{what} is empty")
    return np.clip(audio.resample(QUALITY_SAMPLE_RATE).samples, -1.0, 1.0).astype(np.float32)


def dnsmos(audio: Audio) -> DnsmosScore:
    """DNSMOS P.835 of `audio` (non-personalized model).

    Clips shorter than one 9.01 s window are tiled to exactly one window. The reference script doubles
    them and slides over the copies; its first window is this one, and scoring the others (up to 6x the
    time for a 4 s clip) repeats the same content.
    """
    samples = _at_16k(audio, "the audio")
    if float(np.max(np.abs(samples))) < 1e-4:
        raise AudioError("the audio is silent; DNSMOS is undefined")
    window = int(DNSMOS_WINDOW_SECONDS * QUALITY_SAMPLE_RATE)
    if len(samples) < window:
        samples = np.tile(samples, window // len(samples) + 1)[:window]
    with _dnsmos_lock:
        scores = _dnsmos()(samples, QUALITY_SAMPLE_RATE, False)
    return DnsmosScore(
        float(scores["ovrl_mos"]), float(scores["sig_mos"]), float(scores["bak_mos"]), float(scores["p808_mos"])
    )


def pesq_wb(reference: Audio, degraded: Audio) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0-4.64) of `degraded` against the clean `reference`.

    Raises:
        AudioError: PESQ finds no speech in one of the clips.
    """
    from pesq import PesqError, pesq

    ref, deg = _at_16k(reference, "the reference"), _at_16k(degraded, "the degraded clip")
    try:
        return float(pesq(QUALITY_SAMPLE_RATE, ref, deg, "wb"))
    except PesqError as error:
        raise AudioError(f"PESQ could not score the pair: {type(error).__name__} {error}") from error


def stoi(reference: Audio, degraded: Audio, extended: bool = False) -> float:
    """STOI (0-1; ESTOI when `extended`) of `degraded` against `reference`, over their common length."""
    from pystoi import stoi as pystoi_stoi

    ref, deg = _at_16k(reference, "the reference"), _at_16k(degraded, "the degraded clip")
    length = min(len(ref), len(deg))
    if length < QUALITY_SAMPLE_RATE // 2:
        raise AudioError(f"STOI needs at least 0.5 s of paired audio, got {length / QUALITY_SAMPLE_RATE:.2f} s")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(pystoi_stoi(ref[:length], deg[:length], QUALITY_SAMPLE_RATE, extended=extended))
    if not np.isfinite(value):
        raise AudioError("STOI is undefined for this pair (no speech frames)")
    return value
