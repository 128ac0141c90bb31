"""Engine names -> synthesis functions for the harness.

The harness calls ``engine_fn(target_text, prompt_audio, prompt_text) -> Audio``; when a run asks for styles
(``timbre eval --styles``) it adds the keyword ``style=`` (a `tts.style.Style`) and, with a style reference, also
``style_ref=`` (an `Audio`), which the studio's engines and the base speakers take (`accepts_style`). Names:

* ``base:ENGINE:VOICE`` (``base:kokoro:jf_alpha``, ``base:piper:joe``, ``base:flite:slt``): a base speaker.
  It ignores the prompt, so its SIM against the prompts is the no-cloning floor of a test set.
* the studio's engines (``ar``, ``dit``, ``base+convert``; see `tts.engines`): available once their
  checkpoints are shipped and the issue that builds them adds a line to `ENGINE_BUILDERS` (or calls
  `register_engine`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from tts.audio import Audio
from tts.errors import TimbreError

EngineFn = Callable[..., Audio]
"""``(target_text, prompt_audio, prompt_text) -> Audio``, optionally with the keywords ``style=`` and ``style_ref=``."""

BASE_PREFIX = "base:"
BASE_CONVERT_PREFIX = "base+convert:"
"""``base+convert:ENGINE:VOICE``: the `base+convert` engine with that base speaker (default `tts.tone_color.DEFAULT_BASE`)."""


@dataclass(frozen=True)
class EngineAdapter:
    """How to build the harness function of a studio engine."""

    name: str
    build: Callable[..., EngineFn]
    """``build(seed=...)`` loads the engine (once) and returns its harness function, which synthesizes with that
    seed."""


ENGINE_BUILDERS: dict[str, str] = {
    "ar": "tts.evaluation.stages:ar_engine_fn",
    "dit": "tts.dit.engine:dit_engine_fn",
    "base+convert": "tts.tone_color:base_convert_engine_fn",
}
"""Studio engine name -> ``"module:function"``; the function (keyword ``seed``) loads the engine and returns its
``engine_fn``. Imported only when that engine is evaluated."""

_adapters: dict[str, EngineAdapter] = {}


def register_engine(name: str, build: Callable[..., EngineFn]) -> None:
    """Make studio engine `name` evaluable: ``build(seed=...)`` loads it and returns ``engine_fn``.

    Example (in the module of the issue that adds the engine)::

        register_engine("ar", lambda seed=0: ar_engine_fn(load_ar_pipeline(), seed=seed))
    """
    _adapters[name] = EngineAdapter(name, build)


def heard_voices(engine) -> tuple[str, ...]:
    """The voice ids an engine (or its harness function) speaks with itself, e.g. the `dit` engine's guide voice or
    a base speaker: its ``heard_voices`` attribute, none without one. Items in those voices are not held out from
    it (`tts.evaluation.testsets.heard_by`)."""
    return tuple(getattr(engine, "heard_voices", ()))


def accepts_style(engine_fn: Callable) -> bool:
    """Whether `engine_fn` takes the ``style=`` keyword (and ``style_ref=``) of styled evaluation runs."""
    import inspect

    try:
        parameters = inspect.signature(engine_fn).parameters
    except (TypeError, ValueError):
        return False
    return "style" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def base_speaker_engine(voice_id: str) -> EngineFn:
    """The harness function of base-speaker voice `voice_id` (``"kokoro:jf_alpha"``); ignores the prompt. A
    `style` is rendered as the voice bank renders it (the dominant label at up to intensity 1, the rest by
    `tts.style.apply_conditioning`); a base speaker cannot take a `style_ref` (there is no voice to keep)."""
    from tts.data.speakers import parse_voice_id, synthesize_voice_id

    parse_voice_id(voice_id)  # fail now, with the valid choices, rather than once per utterance

    def engine_fn(target_text: str, prompt_audio: Audio, prompt_text: str, *, style=None, style_ref=None) -> Audio:
        if style_ref is not None:
            raise TimbreError("a base speaker takes no style reference; evaluate a studio engine with --style-ref-voice")
        if style is None:
            return synthesize_voice_id(voice_id, target_text).audio
        from tts.data.voicebank import synthesize as bank_synthesize
        from tts.style import apply_conditioning, engine_conditioning

        conditioning = engine_conditioning(style)
        spoken = bank_synthesize(voice_id, target_text, speed=conditioning.speed, style=conditioning.emotion,
                                 intensity=conditioning.intensity)
        return apply_conditioning(spoken.audio, conditioning)

    engine_fn.heard_voices = (voice_id,)
    return engine_fn


def resolve_engine(name: str, seed: int = 0) -> EngineFn:
    """The harness function for engine `name`, synthesizing with `seed` (a base speaker's rendering is fixed: it
    takes no seed).

    Raises:
        TimbreError: unknown name, or an engine that cannot run here (with the reason).
    """
    if name.startswith(BASE_PREFIX):
        return base_speaker_engine(name[len(BASE_PREFIX) :])
    from tts.engines import engine_status

    statuses = {status.name: status for status in engine_status("synthesis")}
    if name.startswith(BASE_CONVERT_PREFIX):
        from tts.data.voicebank import resolve_voice
        from tts.tone_color import base_convert_engine_fn

        if not statuses["base+convert"].available:
            raise TimbreError(f"engine 'base+convert' cannot run here: {statuses['base+convert'].reason}")
        base = name[len(BASE_CONVERT_PREFIX) :]
        resolve_voice(base)  # refuse an unknown base speaker now, not once per utterance
        return base_convert_engine_fn(base, seed=seed)
    if name not in statuses:
        raise TimbreError(
            f"unknown engine {name!r}: use one of {', '.join(statuses)} or a base speaker as "
            "base:ENGINE:VOICE (e.g. base:kokoro:jf_alpha, base:piper:joe, base:flite:slt), or base+convert:ENGINE:VOICE "
            "for the tone-color converter over that base speaker"
        )
    if not statuses[name].available:
        raise TimbreError(f"engine {name!r} cannot run here: {statuses[name].reason}")
    if name not in _adapters and name in ENGINE_BUILDERS:
        module_name, _, function_name = ENGINE_BUILDERS[name].partition(":")
        register_engine(name, getattr(importlib.import_module(module_name), function_name))
    if name not in _adapters:
        raise TimbreError(f"engine {name!r} is ready but has no evaluation adapter yet (see register_engine)")
    return _adapters[name].build(seed=seed)
