"""Speaker similarity (SIM): cosine similarity of speaker embeddings of two clips.

The default encoder is Resemblyzer's GE2E model (256-d, bundled, offline, fast on CPU). It is a CPU proxy
of the field's SIM (WavLM-large fine-tuned for speaker verification + ECAPA-TDNN, as in Seed-TTS-eval);
results are reported under ``sim_resemblyzer``. On these voices the same voice scores about 0.86-0.96 and
two different voices about 0.42-0.82, so read a result against the floor and ceiling that
``timbre eval --pairs`` measures, never against published SIM figures.

``model="wavlm-base-plus-sv"`` runs Microsoft's WavLM-base-plus x-vector model through ``transformers``
for users who can download it (reported under ``sim_wavlm_base_plus_sv``; still not the standard
WavLM-large ECAPA model, which has no ``transformers`` release).

Shapes: ``D`` embedding size.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings

import numpy as np

from tts.audio import Audio
from tts.errors import AudioError, TimbreError

logger = logging.getLogger(__name__)

SIM_SAMPLE_RATE = 16_000
"""Both encoders take 16 kHz input."""

DEFAULT_SIM_MODEL = "resemblyzer"
WAVLM_SV_MODEL = "wavlm-base-plus-sv"
WAVLM_SV_HUB_ID = "microsoft/wavlm-base-plus-sv"

MIN_SPEECH_SECONDS = 0.3
"""Less speech than this (after the encoder's own silence trimming) gives no usable embedding."""

SIM_MODELS = (DEFAULT_SIM_MODEL, WAVLM_SV_MODEL)


def metric_key(model: str = DEFAULT_SIM_MODEL) -> str:
    """The report key for SIM measured with `model` (``sim_resemblyzer``)."""
    _check_model(model)
    return "sim_" + model.replace("-", "_")


def _check_model(model: str) -> None:
    if model not in SIM_MODELS:
        raise ValueError(f"unknown speaker-similarity model {model!r}; choose one of: {', '.join(SIM_MODELS)}")


class _Resemblyzer:
    label = "Resemblyzer GE2E cosine (CPU proxy of WavLM-large ECAPA SIM)"

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # webrtcvad imports pkg_resources, which warns about its own deprecation.
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder, preprocess_wav
        self._preprocess = preprocess_wav
        self._encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, samples_16k: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            wav = self._preprocess(samples_16k)  # volume normalization and long-silence trimming
        if len(wav) < MIN_SPEECH_SECONDS * SIM_SAMPLE_RATE or not np.all(np.isfinite(wav)):
            raise AudioError(
                f"no usable speech for a speaker embedding ({len(wav) / SIM_SAMPLE_RATE:.2f} s of speech left "
                f"after trimming silence; at least {MIN_SPEECH_SECONDS} s needed)"
            )
        return np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)


class _WavLMSpeakerVerification:
    label = "WavLM-base-plus-sv x-vector cosine (not the standard WavLM-large ECAPA)"

    def __init__(self) -> None:
        try:
            import torch
            from transformers import AutoFeatureExtractor, WavLMForXVector
        except ImportError:
            raise TimbreError("the WavLM SIM needs transformers: pip install transformers") from None
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        try:
            self._features = AutoFeatureExtractor.from_pretrained(WAVLM_SV_HUB_ID, local_files_only=offline)
            self._model = WavLMForXVector.from_pretrained(WAVLM_SV_HUB_ID, local_files_only=offline).eval()
        except Exception as error:  # noqa: BLE001 - hub errors vary by version
            raise TimbreError(
                f"could not load {WAVLM_SV_HUB_ID}: {error}. It must be downloaded from the Hugging Face hub "
                "once; on an offline machine use the default Resemblyzer proxy."
            ) from error
        self._torch = torch

    def embed(self, samples_16k: np.ndarray) -> np.ndarray:
        if len(samples_16k) < MIN_SPEECH_SECONDS * SIM_SAMPLE_RATE:
            raise AudioError(f"the clip is {len(samples_16k) / SIM_SAMPLE_RATE:.2f} s; at least {MIN_SPEECH_SECONDS} s needed")
        inputs = self._features(samples_16k, sampling_rate=SIM_SAMPLE_RATE, return_tensors="pt")
        with self._torch.no_grad():
            embedding = self._model(**inputs).embeddings[0]
        return embedding.numpy().astype(np.float32)


_encoders: dict[str, object] = {}
_lock = threading.Lock()


def _encoder(model: str):
    _check_model(model)
    with _lock:
        if model not in _encoders:
            _encoders[model] = _Resemblyzer() if model == DEFAULT_SIM_MODEL else _WavLMSpeakerVerification()
        return _encoders[model]


def label(model: str = DEFAULT_SIM_MODEL) -> str:
    """A human-readable name of the SIM measured with `model`, saying whether it is a proxy."""
    _check_model(model)
    return _Resemblyzer.label if model == DEFAULT_SIM_MODEL else _WavLMSpeakerVerification.label


def speaker_embedding(audio: Audio, model: str = DEFAULT_SIM_MODEL) -> np.ndarray:
    """The ``(D,)`` speaker embedding of `audio` (any rate; resampled to 16 kHz).

    Raises:
        AudioError: too little speech in the clip.
    """
    if not isinstance(audio, Audio):
        raise ValueError(f"speaker_embedding expects an Audio value, got {type(audio).__name__}")
    samples = np.clip(audio.resample(SIM_SAMPLE_RATE).samples, -1.0, 1.0)
    encoder = _encoder(model)
    with _lock:  # the encoders are not documented as thread-safe
        return encoder.embed(samples)


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if u.shape != v.shape:
        raise ValueError(f"embeddings differ in size: {u.shape} vs {v.shape}")
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    if norm == 0.0:
        raise ValueError("cannot compare a zero embedding")
    return float(np.dot(u, v) / norm)


def similarity(a: Audio, b: Audio, model: str = DEFAULT_SIM_MODEL) -> float:
    """Speaker similarity of two clips: cosine of their embeddings (1.0 is the same clip)."""
    return cosine(speaker_embedding(a, model), speaker_embedding(b, model))
