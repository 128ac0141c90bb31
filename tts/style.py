"""The style of a request: an emotion mixture with an intensity, explicit prosody controls, inline tags.

    style = Style.parse("happy:0.7+sad:0.3", intensity=1.4, pitch=2)
    segments = parse_style_tags("[whisper] keep it down [/whisper] Thanks!", style)
    conditioning = engine_conditioning(style)   # what the engine is asked for, and what is added afterwards
    audio = apply_conditioning(engine_audio, conditioning, seed=0)

One value, `Style`, serves every engine (``synthesize(emotion=..., intensity=..., pitch=...)``):

* emotion: a mixture of labels of `tts.data.styles.STYLES` with weights (normalized to sum 1); one label is a
  mixture of one.
* intensity: 0 (neutral) to 2; 1 is the full rendered style of `tts.data.styles.STYLE_TABLE`, above 1
  exaggerates (every setting's departure from neutral grows on the same line, in its natural scale).
* speed, pitch (semitones), pitch_range (factor on F0 excursions), energy (dB): explicit controls that act
  on top of the emotion.

How an engine realises a style (`engine_conditioning`): the engines were trained on (`ar`) or render
(`base+convert`'s base speakers) one label at an intensity from 0 to 1, with the settings of `STYLE_TABLE`.
So the engine is asked for the *dominant* label (the heaviest non-neutral one; neutral in a mixture only
dilutes) at ``min(1, intensity * weight)``, and everything it cannot express (the other labels' share, the
intensity above 1, pitch, range and energy) is the *residual*: a `StyleParams` rendered on the engine's audio
by one PSOLA pass, spectral tilt, whisper mixing and a level change (`tts.data.styles.apply_style`). Speed
and the residual's rate go to the engine's own speed input instead of stretching audio. A plain label at
intensity <= 1 without controls has no residual: the engine's output is returned untouched.

Inline tags (`parse_style_tags`) split a text into segments that each have their own `Style`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from tts.audio import Audio
from tts.data.styles import NEUTRAL, STYLE_TABLE, STYLES, StyleParams, apply_style, combine_params
from tts.errors import TextError, TimbreError

MIN_INTENSITY, MAX_INTENSITY = 0.0, 2.0
MIN_SPEED, MAX_SPEED = 0.5, 2.0
MIN_PITCH, MAX_PITCH = -12.0, 12.0
"""Pitch shift in semitones (an octave either way)."""
MIN_PITCH_RANGE, MAX_PITCH_RANGE = 0.25, 3.0
"""Factor on F0 excursions around the median: < 1 flatter, > 1 more expressive."""
MIN_ENERGY, MAX_ENERGY = -12.0, 12.0
"""Level change in dB."""

CONTROL_RANGES: dict[str, tuple[float, float]] = {
    "intensity": (MIN_INTENSITY, MAX_INTENSITY),
    "speed": (MIN_SPEED, MAX_SPEED),
    "pitch": (MIN_PITCH, MAX_PITCH),
    "pitch_range": (MIN_PITCH_RANGE, MAX_PITCH_RANGE),
    "energy": (MIN_ENERGY, MAX_ENERGY),
}
"""Accepted range of each numeric control, inclusive."""

_TOLERANCE = 1e-6

EmotionSpec = str | Mapping[str, float] | Sequence[tuple[str, float]]
"""What `Style` takes as an emotion: ``"happy"``, ``"happy:0.7+sad:0.3"``, ``{"happy": 0.7, "sad": 0.3}`` or
pairs."""


class UnknownEmotionError(TimbreError):
    """An emotion label that is not one of `tts.data.styles.STYLES`."""


def _unknown_emotion(label: object) -> UnknownEmotionError:
    # "unknown style": the words of `tts.data.styles.check_style`, which callers of style= already match.
    return UnknownEmotionError(f"unknown style label {label!r}; the emotions are: {', '.join(STYLES)}")


def _weight(value: object, label: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise TimbreError(f"the weight of {label!r} must be a number, got {value!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise TimbreError(f"the weight of {label!r} must be a number >= 0, got {value!r}")
    return weight


def _label(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() in STYLE_TABLE:
        return value.strip().lower()
    raise _unknown_emotion(value)


def parse_emotion(spec: EmotionSpec) -> tuple[tuple[str, float], ...]:
    """An emotion mixture as normalized ``(label, weight)`` pairs, heaviest first (ties in `STYLES` order).

    Strings: ``"happy"``; ``"happy:0.7+sad:0.3"`` (``,`` also separates; a label without ``:weight`` has
    weight 1; labels are case-insensitive; a label given twice adds up). Weights must be >= 0 with a
    positive sum; zero weights are dropped. Raises `TimbreError` (a `ValueError`) naming the valid labels for an unknown one.
    """
    pairs: list[tuple[str, float]] = []
    if isinstance(spec, str):
        parts = [part.strip() for part in re.split(r"[+,]", spec)]
        if not spec.strip() or any(not part for part in parts):
            raise TimbreError(f"empty emotion in {spec!r}; write e.g. 'happy' or 'happy:0.7+sad:0.3'")
        for part in parts:
            label, sep, weight = part.partition(":")
            name = _label(label)
            pairs.append((name, _weight(weight.strip(), name) if sep else 1.0))
    elif isinstance(spec, Mapping):
        pairs = [(_label(label), _weight(weight, str(label))) for label, weight in spec.items()]
    elif isinstance(spec, (list, tuple)):
        for item in spec:
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise TimbreError(f"an emotion mixture is (label, weight) pairs, got {item!r}")
            pairs.append((_label(item[0]), _weight(item[1], str(item[0]))))
    else:
        raise _unknown_emotion(spec)
    totals: dict[str, float] = {}
    scale = 1.0
    if not math.isfinite(sum(weight for _, weight in pairs)):
        scale = max(weight for _, weight in pairs)  # 1e308 + 1e308 is inf, and inf / inf made NaN weights
    for label, weight in pairs:
        totals[label] = totals.get(label, 0.0) + weight / scale
    total = sum(totals.values())
    if not pairs or total <= 0:
        raise TimbreError(f"the emotion weights of {spec!r} sum to 0; give at least one positive weight")
    shares = ((label, weight / total) for label, weight in totals.items())
    # Dropped after dividing: 5e-324 next to 2.0 is a positive weight but a share of 0.
    ordered = sorted(((label, share) for label, share in shares if share > 0),
                     key=lambda pair: (-pair[1], STYLES.index(pair[0])))
    return tuple(ordered)


def check_control(name: str, value: object) -> float:
    """`value` as a float inside `CONTROL_RANGES[name]`, else `TimbreError` (a `ValueError`) naming the range."""
    low, high = CONTROL_RANGES[name]
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TimbreError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}") from None
    if not low <= number <= high:  # NaN fails too
        raise TimbreError(f"{name} must be from {low:g} to {high:g}, got {value!r}")
    return number


@dataclass(frozen=True)
class Style:
    """How to say something: an emotion mixture at an intensity, plus explicit prosody controls.

    Attributes:
        emotion: normalized ``(label, weight)`` pairs, heaviest first; the constructor also takes a label, a
            mixture string (``"happy:0.7+sad:0.3"``) or a mapping (`parse_emotion`).
        intensity: 0 (neutral) to 2; 1 is the full style, above 1 exaggerates.
        speed: speaking-rate factor, 0.5 to 2 (the emotion's own rate multiplies it).
        pitch: F0 shift in semitones, -12 to 12.
        pitch_range: factor on F0 excursions around the median, 0.25 to 3 (< 1 flatter).
        energy: level change in dB, -12 to 12.

    Out-of-range values and unknown labels raise `TimbreError` (a `ValueError`) on construction; `dataclasses.replace` checks
    again. Hashable and comparable (equal mixtures compare equal however they were written).
    """

    emotion: tuple[tuple[str, float], ...] = (("neutral", 1.0),)
    intensity: float = 1.0
    speed: float = 1.0
    pitch: float = 0.0
    pitch_range: float = 1.0
    energy: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "emotion", parse_emotion(self.emotion))
        for name in CONTROL_RANGES:
            object.__setattr__(self, name, check_control(name, getattr(self, name)))

    @classmethod
    def parse(cls, emotion: EmotionSpec = "neutral", **controls: float) -> Style:
        """A style from an emotion spec (``"happy"``, ``"happy:0.7+sad:0.3"``, a mapping) and controls."""
        unknown = set(controls) - set(CONTROL_RANGES)
        if unknown:
            raise TimbreError(f"unknown style control(s) {', '.join(sorted(unknown))}; "
                             f"controls are: {', '.join(CONTROL_RANGES)}")
        return cls(emotion, **controls)

    @property
    def mixture(self) -> dict[str, float]:
        """The emotion as ``{label: weight}`` (weights sum to 1)."""
        return dict(self.emotion)

    @property
    def dominant(self) -> str:
        """The heaviest non-neutral label (ties in `STYLES` order), or ``"neutral"`` when there is none."""
        return next((label for label, _ in self.emotion if label != "neutral"), "neutral")

    @property
    def emotion_spec(self) -> str:
        """The emotion written back as a string: ``"happy"`` or ``"happy:0.7+sad:0.3"``."""
        if len(self.emotion) == 1:
            return self.emotion[0][0]
        return "+".join(f"{label}:{weight:.4g}" for label, weight in self.emotion)

    def target_params(self) -> StyleParams:
        """The rendered-style settings this style asks for, explicit controls included (rate: the emotion's
        only; `speed` stays separate): the mixture of each label's `STYLE_TABLE` entry scaled by `intensity`,
        in natural scales, aperiodicity capped at 1."""
        mixed = combine_params((STYLE_TABLE[label], self.intensity * weight) for label, weight in self.emotion)
        return replace(
            mixed,
            pitch_shift=mixed.pitch_shift + self.pitch,
            pitch_range=mixed.pitch_range * self.pitch_range,
            energy_db=mixed.energy_db + self.energy,
            aperiodicity=min(1.0, max(0.0, mixed.aperiodicity)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record of the style (for logs and sample metadata)."""
        record = asdict(self)
        record["emotion"] = {label: round(weight, 6) for label, weight in self.emotion}
        return record


NEUTRAL_STYLE = Style()


def style_from_options(
    emotion: EmotionSpec | Style | None = None,
    *,
    style: EmotionSpec | Style | None = None,
    intensity: float | None = None,
    speed: float | None = None,
    pitch: float | None = None,
    pitch_range: float | None = None,
    energy: float | None = None,
) -> Style:
    """The `Style` of ``synthesize()``'s keyword arguments.

    `style` is the older name of `emotion` (give one of them). Either may be a whole `Style`; the other
    controls, when given, then replace its values. Controls left as None keep their defaults.
    """
    if emotion is not None and style is not None:
        raise TimbreError("emotion= and style= are the same setting (style= is its older name); give one")
    spec = emotion if emotion is not None else style
    controls = {name: value for name, value in (("intensity", intensity), ("speed", speed), ("pitch", pitch),
                                                ("pitch_range", pitch_range), ("energy", energy))
                if value is not None}
    if isinstance(spec, Style):
        return replace(spec, **controls)
    return Style("neutral" if spec is None else spec, **controls)


# ---------------------------------------------------------------------------------------------------------
# Engine conditioning


@dataclass(frozen=True)
class EngineConditioning:
    """What an engine is asked for to speak one segment, and what is rendered on its audio afterwards.

    Attributes:
        emotion: the one label the engine is conditioned on (the style's dominant label).
        intensity: the engine's intensity for it, in [0, 1].
        speed: the engine's speed input (the style's speed times the residual rate, clamped to 0.5-2).
        residual: settings rendered on the engine's audio (`apply_conditioning`); `NEUTRAL` when none.
    """

    emotion: str
    intensity: float
    speed: float
    residual: StyleParams = NEUTRAL

    @property
    def has_residual(self) -> bool:
        """Whether the engine's audio is post-processed (PSOLA, tilt, whisper, level)."""
        return self.residual != NEUTRAL


SIGNAL_RENDERED: frozenset[str] = frozenset({"whisper"})
"""Labels no engine renders itself, even one trained with them: they are always rendered on its audio
(`apply_conditioning`). A whisper has no voicing, which only the signal rendering guarantees: the `ar` refiner,
trained on mels of whispered speech, spoke its whisper with 62 % of its frames voiced (its neutral speech 34 %),
which the style classifier retrained on `STYLE_VERSION` 2's whispers hears as sad (docs/styles.md, session 19)."""


def engine_conditioning(style: Style, labels: Collection[str] = STYLES, native_rate: bool = True) -> EngineConditioning:
    """How an engine realises `style` (see the module docstring).

    The engine speaks the dominant label at ``min(1, intensity * weight)``; the residual is the style's
    `Style.target_params` minus what the engine renders for that label, in natural scales. Its rate goes to
    the engine's speed; the rest is post-processing. `labels` are the ones the engine renders itself (never
    `SIGNAL_RENDERED`): for any other (all of them for `dit`, whose style is its reference's) it speaks neutrally
    and the whole style is residual. With `native_rate` False the engine's rendering of a label leaves out the
    label's rate, which then goes to its speed (the `ar` engine, whose token LM does not slow down or speed up for
    a label).
    """
    rendered = style.dominant in labels and style.dominant not in SIGNAL_RENDERED
    label = style.dominant if rendered else "neutral"
    weight = style.mixture.get(label, 0.0)
    engine_intensity = 0.0 if label == "neutral" else min(1.0, style.intensity * weight)
    engine_params = combine_params([(STYLE_TABLE[label], engine_intensity)])
    if not native_rate:
        engine_params = replace(engine_params, rate=1.0)
    residual = combine_params([(style.target_params(), 1.0), (engine_params, -1.0)])
    speed = min(MAX_SPEED, max(MIN_SPEED, style.speed * residual.rate))
    residual = replace(residual, rate=1.0, aperiodicity=max(0.0, residual.aperiodicity))
    residual = _snap(residual)
    return EngineConditioning(label, engine_intensity, speed, residual)


def _snap(params: StyleParams) -> StyleParams:
    """Settings within rounding of neutral become exactly neutral (so a plain style costs no resynthesis)."""
    values = {}
    for name, value in asdict(params).items():
        neutral = getattr(NEUTRAL, name)
        values[name] = neutral if abs(value - neutral) < _TOLERANCE else value
    return StyleParams(**values)


def apply_conditioning(audio: Audio, conditioning: EngineConditioning, seed: int = 0) -> Audio:
    """`audio` (an engine's output for `conditioning`) with the residual rendered on it: pitch shift, range,
    formants and final rise by one PSOLA pass, spectral tilt, whisper mixing, then its own active level
    changed by the residual's dB. Returned unchanged when there is no residual. Seeded (PSOLA, whisper)."""
    if not conditioning.has_residual:
        return audio
    return apply_style(audio, conditioning.residual, seed=int(seed) % 2**31, relative_level=True)


# ---------------------------------------------------------------------------------------------------------
# Inline tags


class StyleTagError(TextError):
    """A style tag in the text that cannot be used; `position` is its 0-based character offset (messages
    count characters from 1)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


_ESCAPABLE = "[]\\"

TAG_ATTRIBUTES = tuple(CONTROL_RANGES)
"""Controls a tag may set: ``[happy intensity=1.5 pitch=2]``."""


@dataclass(frozen=True)
class _OpenTag:
    labels: frozenset[str]
    style: Style
    """The style in force before the tag (restored when it closes)."""


def _tag_help() -> str:
    return (f"tags are [label] ... [/label] with a label from {', '.join(STYLES)}, a mixture such as "
            f"[happy:0.7+sad:0.3], optional settings ({', '.join(f'{n}=...' for n in TAG_ATTRIBUTES)}), "
            r"and [/] to close the last one; write \[ for a literal bracket")


def _open_tag(body: str, current: Style, position: int) -> tuple[Style, frozenset[str]]:
    """The style an opening tag's `body` sets on top of `current`, and the labels it names."""
    words = body.split()
    emotion = None
    if words and "=" not in words[0]:
        emotion = words.pop(0)
    controls: dict[str, float] = {}
    for word in words:
        name, sep, value = word.partition("=")
        name = name.lower().replace("-", "_")
        if not sep or name not in TAG_ATTRIBUTES:
            raise StyleTagError(f"unknown setting {word!r} in the tag [{body}] at character {position + 1}; "
                                + _tag_help(), position)
        try:
            controls[name] = float(value)
        except ValueError:
            raise StyleTagError(f"{name} in the tag [{body}] at character {position + 1} must be a number, "
                                f"got {value!r}", position) from None
    try:
        if emotion is None:
            return replace(current, **controls), frozenset()
        style = replace(current, emotion=parse_emotion(emotion), **controls)
    except UnknownEmotionError:
        raise StyleTagError(f"unknown tag [{body}] at character {position + 1}; " + _tag_help(), position) from None
    except ValueError as error:
        raise StyleTagError(f"bad tag [{body}] at character {position + 1}: {error}", position) from None
    return style, frozenset(label for label, _ in style.emotion)


def parse_style_tags(text: str, default: Style = NEUTRAL_STYLE) -> list[tuple[str, Style]]:
    """Split `text` at its inline style tags into ``(segment, style)`` pairs, in order.

    Syntax:

    * ``[label]`` (a label of `STYLES`, case-insensitive) or a mixture ``[happy:0.7+sad:0.3]`` switches the
      emotion; settings may follow: ``[happy intensity=1.5 pitch=2]``, or alone: ``[pitch=-3]`` (keeps the
      emotion). Controls not named in a tag are inherited from the style in force.
    * ``[/label]`` closes the innermost open tag that names `label`, together with every tag opened after it
      (like HTML's implied end tags), and restores the style in force before it; ``[/]`` closes the
      innermost open tag. Closing a tag that is not open is an error.
    * An opening tag without its closing tag applies until the end (or until an enclosing tag closes): so
      ``[happy] a [sad] b`` is "a" happy and "b" sad.
    * ``\\[``, ``\\]`` and ``\\\\`` are a literal ``[``, ``]`` and ``\\``; a backslash before anything else is
      kept as it is. A ``]`` outside a tag is literal text.

    Segment texts are the text between tags, unchanged (spaces kept) except for escapes, so joining them
    gives the text without its tags. Empty segments are dropped, and neighbours with equal styles merged.

    Raises:
        StyleTagError (a `TextError`): an unknown label or setting, a ``[`` without ``]``, a closing tag
            that closes nothing; the message and `position` give the character offset.
    """
    segments: list[tuple[str, Style]] = []
    stack: list[_OpenTag] = []
    current = default
    buffer: list[str] = []

    def flush() -> None:
        piece = "".join(buffer)
        buffer.clear()
        if not piece:
            return
        if segments and segments[-1][1] == current:
            segments[-1] = (segments[-1][0] + piece, current)
        else:
            segments.append((piece, current))

    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPABLE:
            buffer.append(text[index + 1])
            index += 2
            continue
        if char != "[":
            buffer.append(char)
            index += 1
            continue
        end = text.find("]", index + 1)
        nested = text.find("[", index + 1)
        if end < 0 or 0 <= nested < end:
            raise StyleTagError(f"'[' at character {index + 1} starts a tag that is never closed with ']'; "
                                + _tag_help(), index)
        body = text[index + 1:end].strip()
        flush()
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if name:
                found = next((i for i in range(len(stack) - 1, -1, -1) if name in stack[i].labels), None)
            else:
                found = len(stack) - 1 if stack else None
            if found is None:
                what = f"[/{name}]" if name else "[/]"
                if name and name not in STYLE_TABLE:
                    raise StyleTagError(f"unknown tag {what} at character {index + 1}; " + _tag_help(), index)
                raise StyleTagError(f"{what} at character {index + 1} closes no open tag", index)
            current = stack[found].style
            del stack[found:]
        elif not body:
            raise StyleTagError(f"empty tag [] at character {index + 1}; " + _tag_help(), index)
        else:
            style, labels = _open_tag(body, current, index)
            stack.append(_OpenTag(labels, current))
            current = style
        index = end + 1
    flush()
    return segments


def escape_style_text(text: str) -> str:
    """`text` with its brackets and backslashes escaped, so `parse_style_tags` reads it as plain text."""
    return "".join("\\" + char if char in _ESCAPABLE else char for char in text)


def strip_style_tags(text: str) -> str:
    """`text` without its style tags and escapes: what is spoken (checks the tags as `parse_style_tags`)."""
    return "".join(segment for segment, _ in parse_style_tags(text))
