"""Style from a separate reference clip: timbre from the voice, style from the clip (OpenVoice's decoupling).

    reading = read_style_reference("angry_take.wav", voice)     # StyleReference(style, prediction, measured)
    audio = synthesize("Hello.", voice, style_ref="angry_take.wav")

What is taken from the clip (`read_style_reference`):

1. Its emotion, by the style classifier (`tts.evaluation.style_classifier`, shipped as
   ``checkpoints/style_classifier``): the label it hears, at an intensity from its confidence ``p`` over the
   ``C`` labels: ``(p - 1/C) / (FULL_INTENSITY_CONFIDENCE - 1/C)``, capped at 1 (a clip heard at 75 % or more
   is the full style; one barely above chance is close to neutral).
2. With ``prosody=True`` only (off by default, and not used by ``synthesize(style_ref=...)``): its prosody
   relative to the voice's own (neutral) reference, beyond what that emotion already does: the ratio of the F0
   spreads (semitones) becomes `pitch_range`, the ratio of the syllable rates `speed`, the level difference
   `energy`, each divided by (or minus) the emotion's own setting at that intensity (`tts.data.styles.STYLE_TABLE`)
   and kept within `PITCH_RANGE_LIMITS`, `SPEED_LIMITS` and ``±ENERGY_LIMIT_DB``. Pitch (the register) stays the
   voice's: it is timbre. Off by default because, measured (docs/styles.md), these ratios between two speakers
   reading different texts mostly measure the speakers and the recording gain: on 20 clips of a held-out voice
   against the four heldout-en prompts, `energy` sat at its -4 dB limit 20 times and `pitch_range` at a limit 11
   times, whatever the clip's style.

Explicit controls given with the clip act on top (`speed` multiplies, `pitch` and `energy` add, `pitch_range`
multiplies; `intensity` replaces the one read from the clip). A clip that cannot be read (missing, unreadable,
shorter than `MIN_STYLE_REF_SECONDS` of sound, silent) raises `tts.errors.AudioError` saying so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tts.audio import SAMPLE_RATE, Audio, load_audio
from tts.data.styles import STYLE_TABLE
from tts.errors import AudioError, TimbreError
from tts.style import CONTROL_RANGES, Style, check_control

if TYPE_CHECKING:
    from tts.evaluation.style_classifier import StyleClassifier, StylePrediction
    from tts.voice import Voice

MIN_STYLE_REF_SECONDS = 1.0
"""Shortest style clip read (a few words): shorter ones hold too little prosody to classify."""

MAX_STYLE_REF_SECONDS = 60.0

FULL_INTENSITY_CONFIDENCE = 0.75
"""A clip the classifier hears with this probability or more gives intensity 1."""

PITCH_RANGE_LIMITS = (0.7, 1.5)
SPEED_LIMITS = (0.8, 1.25)
ENERGY_LIMIT_DB = 4.0

StyleRefSource = Audio | str | os.PathLike | tuple
"""A style clip: an `Audio`, a path (any format `tts.audio.load_audio` reads) or ``(samples, sample_rate)``."""


@dataclass(frozen=True)
class StyleReference:
    """What was read from a style clip.

    Attributes:
        style: the `Style` to speak in (emotion and intensity from the classifier, prosody controls from the clip).
        prediction: the classifier's reading (label, confidence, every label's probability).
        measured: the clip's and the voice's features that set the controls (JSON-able, for logs).
    """

    style: Style
    prediction: "StylePrediction"
    measured: dict = field(default_factory=dict)


def load_style_clip(source: StyleRefSource) -> Audio:
    """The style clip as 24 kHz `Audio`; `AudioError` for a missing, unreadable, too short or silent clip."""
    try:
        if isinstance(source, Audio):
            audio = source.resample(SAMPLE_RATE) if source.sample_rate != SAMPLE_RATE else source
        elif isinstance(source, tuple):
            if len(source) != 2:
                raise AudioError("a style clip given as a tuple is (samples, sample_rate)")
            audio = Audio(np.asarray(source[0], dtype=np.float32), int(source[1])).resample(SAMPLE_RATE)
        elif isinstance(source, (str, os.PathLike)):
            audio = load_audio(source, max_seconds=MAX_STYLE_REF_SECONDS)
        else:
            raise AudioError(f"a style clip is an Audio, a path or (samples, sample_rate), got {type(source).__name__}")
    except (ValueError, OSError) as error:  # the loader's AudioError (a ValueError) and Audio's own checks
        raise AudioError(f"the style reference clip cannot be used: {error}") from error
    if len(audio) == 0 or not np.all(np.isfinite(audio.samples)):
        raise AudioError("the style reference clip is empty or holds NaN/infinite samples")
    if audio.duration < MIN_STYLE_REF_SECONDS:
        raise AudioError(f"the style reference clip is {audio.duration:.2f} s long; give at least "
                         f"{MIN_STYLE_REF_SECONDS:g} s of speech in the style you want")
    peak = float(np.max(np.abs(audio.samples)))
    if peak < 1e-3:
        raise AudioError("the style reference clip is silent; give a recording of speech in the style you want")
    return audio


def _features(audio: Audio, what: str) -> dict[str, float]:
    from tts.evaluation.style_features import FEATURE_NAMES, style_features

    try:
        return dict(zip(FEATURE_NAMES, style_features(audio).tolist()))
    except AudioError as error:
        raise AudioError(f"{what} cannot be used: {error}") from error


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def intensity_from_confidence(confidence: float, labels: int) -> float:
    """Intensity 0 to 1 from the classifier's probability of its label (see the module docstring)."""
    chance = 1.0 / labels
    return _clamp((confidence - chance) / (FULL_INTENSITY_CONFIDENCE - chance), 0.0, 1.0)


def prosody_controls(clip: dict[str, float], voice: dict[str, float], label: str, intensity: float) -> dict[str, float]:
    """`pitch_range`, `speed` and `energy` that bring the voice's prosody to the clip's, beyond what `label` at
    `intensity` does, within the module's limits. Features as `tts.evaluation.style_features` names them."""
    params = STYLE_TABLE[label]
    controls = {"pitch_range": 1.0, "speed": 1.0, "energy": 0.0}
    if clip["has_f0"] and voice["has_f0"] and clip["f0_std_st"] > 0 and voice["f0_std_st"] > 0:
        ratio = clip["f0_std_st"] / voice["f0_std_st"] / params.pitch_range ** intensity
        controls["pitch_range"] = _clamp(ratio, *PITCH_RANGE_LIMITS)
    if clip["peak_rate"] > 0 and voice["peak_rate"] > 0:
        ratio = clip["peak_rate"] / voice["peak_rate"] / params.rate ** intensity
        controls["speed"] = _clamp(ratio, *SPEED_LIMITS)
    difference = clip["level_dbfs"] - voice["level_dbfs"] - params.energy_db * intensity
    controls["energy"] = _clamp(difference, -ENERGY_LIMIT_DB, ENERGY_LIMIT_DB)
    return {name: round(value, 4) for name, value in controls.items()}


def _combine(derived: dict[str, float], given: dict[str, float | None]) -> dict[str, float]:
    """The clip's controls with the caller's on top, kept inside `tts.style.CONTROL_RANGES`."""
    out = {
        "speed": derived["speed"] * (given.get("speed") or 1.0),
        "pitch": given.get("pitch") or 0.0,
        "pitch_range": derived["pitch_range"] * (given.get("pitch_range") or 1.0),
        "energy": derived["energy"] + (given.get("energy") or 0.0),
    }
    return {name: _clamp(value, *CONTROL_RANGES[name]) for name, value in out.items()}


def read_style_reference(
    source: StyleRefSource,
    voice: "Voice | None" = None,
    *,
    classifier: "StyleClassifier | None" = None,
    intensity: float | None = None,
    speed: float | None = None,
    pitch: float | None = None,
    pitch_range: float | None = None,
    energy: float | None = None,
    prosody: bool = False,
) -> StyleReference:
    """The `Style` of a style clip (see the module docstring): the emotion and intensity the classifier hears,
    and with `prosody` the clip's pitch range, rate and level relative to `voice`'s reference (the voice that will
    speak; needed for `prosody`). The other arguments are the caller's explicit controls, applied on top.

    Raises:
        AudioError: the clip (or the voice's reference) is missing, unreadable, too short or silent.
        TimbreError: a control out of its range. CheckpointError: the style classifier is missing.
    """
    from tts.evaluation.style_classifier import load_style_classifier
    from tts.evaluation.style_features import FEATURE_NAMES

    audio = load_style_clip(source)
    clip = _features(audio, "the style reference clip")
    model = classifier if classifier is not None else load_style_classifier()
    prediction = model.predict_features(np.array([clip[name] for name in FEATURE_NAMES]))
    label = prediction.label
    read_intensity = 0.0 if label == "neutral" else intensity_from_confidence(prediction.confidence,
                                                                               len(model.config.labels))
    if intensity is not None:
        read_intensity = check_control("intensity", intensity)
    measured: dict = {"clip": {k: round(v, 4) for k, v in clip.items()}}
    derived = {"pitch_range": 1.0, "speed": 1.0, "energy": 0.0}
    if prosody:
        if voice is None:
            raise TimbreError("reading a style clip's prosody needs the voice that will speak (voice=)")
        reference = _features(voice.audio, "the voice's reference recording")
        measured["voice"] = {k: round(v, 4) for k, v in reference.items()}
        derived = prosody_controls(clip, reference, label, min(1.0, read_intensity))
    measured["derived_controls"] = derived
    given = {"speed": speed, "pitch": pitch, "pitch_range": pitch_range, "energy": energy}
    for name, value in given.items():
        if value is not None:
            check_control(name, value)
    controls = _combine(derived, given)
    if not all(math.isfinite(value) for value in controls.values()):
        raise TimbreError("the style reference clip gave non-finite prosody controls")
    style = Style(label, intensity=read_intensity, **controls)
    return StyleReference(style, prediction, measured)
