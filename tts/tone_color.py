"""The tone-color path (OpenVoice): any speech re-voiced with a voice's timbre, and the `base+convert` engine.

    from tts import convert, synthesize
    out = convert("me_reading.wav", target=voice, engine="tone-color", tau=0.3)
    out = synthesize("Hello there.", voice, engine="base+convert", base="piper:joe", emotion="happy")

Data flow::

    source speech --linear spectrogram--> posterior encoder --> z --flow(source tone color)--> timbre-free z_p
    z_p --flow reversed(target tone color)--> z_hat --mel decoder--> studio mel --vocoder--> 24 kHz audio

The source's tone color comes from the source itself, the target's from the voice's reference clip (both
averaged over voiced speech, `converter.openvoice.ToneColorConverter.tone_color`). Timing, words, intonation
and style are the source's: with `base+convert` a base speaker (`tts.data.voicebank`: Kokoro, Piper, flite,
festival, espeak-ng voices, pseudo-speakers, with the studio's rendered styles) or the `ar` engine decides
them, and the converter changes only who it sounds like (OpenVoice's decoupling). What a base speaker cannot
render itself (emotion mixtures, intensity above 1, pitch, range, energy) is rendered on the converted audio by
`tts.synthesis` (`tts.style.apply_conditioning`).

Models are loaded once per set of checkpoints and shared read-only; calls are stateless.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from tts.audio import Audio
from tts.errors import CheckpointError, VoiceError
from tts.memo import LruCache
from tts.voice import Voice

if TYPE_CHECKING:
    from tts.style import EngineConditioning

TONE_COLOR_CHECKPOINTS = {"converter": "converter", "vocoder": "vocoder"}
"""Shipped checkpoint names of the tone-color path."""

DEFAULT_BASE = "piper:joe"
"""The base speaker of `base+convert` when none is named (Piper `en_US-joe-medium`: WER 4.9 % on heldout-en,
three times faster than Kokoro here)."""

DEFAULT_TAU = 0.3
"""OpenVoice's default posterior temperature."""

MIN_SOURCE_SECONDS = 0.3


@dataclass(frozen=True)
class ToneColorEngine:
    """The converter and the vocoder that renders its mels (read-only once built)."""

    converter: torch.nn.Module
    vocoder: torch.nn.Module
    _tones: LruCache = field(default_factory=lambda: LruCache(_TONE_CACHE_SIZE), init=False, repr=False,
                             compare=False)
    """Tone colors of voices by content digest (at most `_TONE_CACHE_SIZE`)."""

    def __post_init__(self) -> None:
        if self.converter.config.decoder == "mel" and self.vocoder.sample_rate != self.converter.config.sample_rate:
            raise CheckpointError(
                f"the converter makes {self.converter.config.sample_rate} Hz mels but the vocoder renders "
                f"{self.vocoder.sample_rate} Hz"
            )

    @classmethod
    def from_pretrained(cls, converter: str = TONE_COLOR_CHECKPOINTS["converter"],
                        vocoder: str = TONE_COLOR_CHECKPOINTS["vocoder"],
                        local_files_only: bool = False) -> "ToneColorEngine":
        """Load both parts (shipped names, local folders or hub ids) in float32 on the CPU."""
        from converter.openvoice import ToneColorConverter
        from vocoder.vocos import Vocos

        return cls(
            ToneColorConverter.from_pretrained(converter, local_files_only=local_files_only).float().eval(),
            Vocos.from_pretrained(vocoder, local_files_only=local_files_only).float().eval(),
        )

    def tone_color(self, audio: Audio) -> torch.Tensor:
        """The ``(G,)`` tone color of a clip (see `ToneColorConverter.tone_color`)."""
        return self.converter.tone_color(audio)

    def voice_tone_color(self, voice: Voice) -> torch.Tensor:
        """The tone color of a voice's reference clip, computed once per voice (by its content digest)."""
        return self._tones.get_or_make(voice.digest, lambda: self.tone_color(voice.audio))

    def convert(self, source: Audio, target: Voice | Audio, tau: float = DEFAULT_TAU, seed: int = 0) -> Audio:
        """`source` speech in the timbre of `target` (a voice, or a reference clip), 24 kHz, as long as the source."""
        if source.duration < MIN_SOURCE_SECONDS:
            raise VoiceError(
                f"the source is {source.duration:.2f} s long; the converter needs at least {MIN_SOURCE_SECONDS} s "
                "of speech to read its tone color"
            )
        generator = torch.Generator().manual_seed(int(seed) % 2**63)
        return self.converter.convert_audio(
            source, self.tone_color(source),
            self.voice_tone_color(target) if isinstance(target, Voice) else self.tone_color(target),
            tau=tau, generator=generator,
            vocoder=self.vocoder.decode,
        )


_TONE_CACHE_SIZE = 64
_ENGINES: dict[tuple, ToneColorEngine] = {}
_ENGINES_LOCK = threading.Lock()


def load_tone_color_engine(**checkpoints: str) -> ToneColorEngine:
    """The tone-color path for these checkpoints (default: the shipped ones), loaded once per process."""
    names = {**TONE_COLOR_CHECKPOINTS, **checkpoints}
    if names == TONE_COLOR_CHECKPOINTS:
        from tts.engines import engine_status

        status = next(s for s in engine_status() if s.name == "base+convert")
        if not status.available:
            raise CheckpointError(
                f"the tone-color converter is unavailable: {status.reason}. Until it ships, convert with the DiT: "
                "engine 'dit' (`timbre convert --engine dit`, convert(..., engine='dit'))"
            )
    key = tuple(sorted(names.items()))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = ToneColorEngine.from_pretrained(**names)
        return _ENGINES[key]


def base_speech(text: str, base: str, voice: Voice, *, style: str, intensity: float, speed: float,
                seed: int) -> Audio:
    """What the base speaker says for `text`, before conversion.

    `base` is a voice of `tts.data.voicebank` (``"kokoro:jf_alpha"``, ``"piper:joe"``, a pseudo-speaker id)
    with the studio's rendered styles, or ``"ar"``: the `ar` engine cloning `voice` itself (unwatermarked:
    the final output is marked once). `style` is one label and `intensity` in [0, 1] (what an engine renders
    itself; `tts.style.engine_conditioning` turns a full style into these and a residual); `text` is spoken
    as it is (no style tags).
    """
    if base == "ar":
        from tts.synthesis import synthesize

        return synthesize(text, voice, engine="ar", emotion=style, intensity=intensity, speed=speed, seed=seed,
                          watermark=False, tags=False)
    from tts.data.voicebank import synthesize as render_base

    return render_base(base, text, speed=speed, style=style, intensity=intensity, seed=seed, noise_seed=seed).audio


def base_convert_renderer(voice: Voice, *, base: str | None, tau: float,
                          engine: ToneColorEngine | None) -> Callable[[str, "EngineConditioning", int], Audio]:
    """``render(text, conditioning, seed)``: one chunk of text (with its engine conditioning) said by the base
    speaker `base` (default `DEFAULT_BASE`) and converted to `voice`. The conditioning's residual is left to the
    caller (`tts.style.apply_conditioning`). Loads the engine and refuses an unusable reference at once."""
    parts = engine if engine is not None else load_tone_color_engine()
    parts.voice_tone_color(voice)  # refuse an unusable reference before any base speech is made

    def render(text: str, conditioning: "EngineConditioning", seed: int) -> Audio:
        speech = base_speech(text, base or DEFAULT_BASE, voice, style=conditioning.emotion,
                             intensity=conditioning.intensity, speed=conditioning.speed, seed=seed)
        return parts.convert(speech, voice, tau=tau, seed=seed)

    return render


def base_convert_engine_fn(base: str | None = None, seed: int = 0):
    """The evaluation harness function of `base+convert` (`tts.evaluation.adapters`): each prompt cloned, the
    target text said by `base` (default `DEFAULT_BASE`) and converted with `seed`."""
    from tts.synthesis import synthesize
    from tts.voice import clone_voice

    engine = load_tone_color_engine()

    def engine_fn(target_text: str, prompt_audio: Audio, prompt_text: str, *, style=None, style_ref=None) -> Audio:
        return synthesize(target_text, clone_voice(prompt_audio, prompt_text), engine="base+convert", base=base,
                          emotion=style, style_ref=style_ref, seed=seed, models=engine)

    engine_fn.heard_voices = (base or DEFAULT_BASE,)
    return engine_fn
