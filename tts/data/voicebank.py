"""The voice bank: a few hundred pseudo-speakers built from the base speakers, each with a stable id and a
recorded recipe from which it is rebuilt exactly.

    from tts.data.voicebank import synthesize, voice_bank
    out = synthesize("pk0042", "Where did you put the keys?", style="surprised", intensity=0.7)

Two families:

* ``pkNNNN``: Kokoro style blends. A convex mixture of 2 or 3 of Kokoro's style tables, plus a small
  perturbation drawn within the spread of the tables (per dimension), and for most of them a mild timbre
  warp on top. The model takes the blended ``(510, 256)`` table directly (`KokoroSpeaker.style_table`).
* ``pwNNNN``: timbre warps of a base speaker (Kokoro, flite, festival, Piper): formant (vocal-tract length)
  scaling, F0 scaling and F0 range, in one PSOLA pass (`tts.data.styles.psola`, Praat through
  ``praat-parselmouth``). The ranges are bounded per source (a female voice is not pushed far upwards)
  where the ASR word error rate stayed near the source's (docs/corpus.md).

The bank is generated from a fixed seed with ``random.Random.random`` only (the one stream Python promises
to keep), and its recipes are rounded, so every machine builds the same voices; `bank_digest` pins it.
`BANK_VERSION` changes whenever a recipe would change.

Held-out voices. A pseudo-speaker derived from a voice in
`tts.evaluation.testsets.TRAINING_EXCLUDED_VOICES` is held out; so is every tenth voice derived from
training voices (`RESERVED_EVERY`), kept unseen to measure zero-shot cloning on in-domain voices. No
corpus recipe uses a held-out voice (`training_voice_ids`).

`synthesize` speaks with a base voice id (``"kokoro:jf_alpha"``) or a pseudo-speaker id, in a rendered
style (`tts.data.styles`), and returns a `SpeakerOutput`; `render` also returns the parameters used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tts.data.speakers import SpeakerOutput, check_speed, get_speaker, parse_voice_id
from tts.data.styles import STYLE_VERSION, apply_style, check_intensity, check_style, style_params
from tts.errors import TimbreError

BANK_VERSION = 1
BANK_SEED = 20_240_611

KOKORO_TRAINING_TABLES: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro")
"""Kokoro style tables that training voices may blend."""

KOKORO_HELDOUT_TABLES: tuple[str, ...] = ("jm_kumo",)
"""Kokoro style tables of held-out voices; blends that contain them are held out."""

TRAINING_BLENDS = 150
HELDOUT_BLENDS = 30

WARP_SOURCES: tuple[tuple[str, int], ...] = (
    ("flite:rms", 20),
    ("flite:kal16", 20),
    ("festival:kal_diphone", 20),
    ("kokoro:jf_alpha", 10),
    ("kokoro:jf_gongitsune", 10),
    ("kokoro:jf_nezumi", 10),
    ("kokoro:jf_tebukuro", 10),
    # Sources held out for evaluation: their warps are held-out voices too.
    ("piper:joe", 4),
    ("flite:slt", 4),
    ("flite:awb", 4),
    ("festival:cmu_us_slt_arctic_hts", 4),
    ("kokoro:jm_kumo", 4),
)
"""Base voices that pseudo-speakers are warped from, with how many warps each."""

SOURCE_IS_FEMALE: dict[str, bool] = {
    "kokoro:jf_alpha": True,
    "kokoro:jf_gongitsune": True,
    "kokoro:jf_nezumi": True,
    "kokoro:jf_tebukuro": True,
    "kokoro:jm_kumo": False,
    "flite:rms": False,
    "flite:kal16": False,
    "flite:awb": False,
    "flite:slt": True,
    "festival:kal_diphone": False,
    "festival:cmu_us_slt_arctic_hts": True,
    "piper:joe": False,
}

RESERVED_EVERY = 10
"""Every tenth pseudo-speaker of each family derived from training voices is reserved for evaluation."""

CORPUS_ENGINES: tuple[str, ...] = ("kokoro", "flite", "festival")
"""Engines whose base voices go into training corpora (espeak-ng's own voice is too hard to understand)."""

# Warp bounds, measured (docs/corpus.md): Whisper's WER stays near the source's inside them. The "vocal
# tract" coordinate v in [-1, 1] sets the formant ratio FORMANT_BASE ** v; F0 follows it more steeply
# (PITCH_EXPONENT), as it does between people, with some independent spread.
FORMANT_BASE = 1.15
PITCH_EXPONENT = 2.7
PITCH_SPREAD = 0.12
"""Half-width of the uniform jitter of log(pitch ratio) around its formant-coupled value."""
FEMALE_SOURCE_V = (-1.0, 0.5)
MALE_SOURCE_V = (-0.5, 1.0)
PITCH_RATIO_BOUNDS = {True: (0.58, 1.22), False: (0.8, 1.5)}
"""F0 ratio limits by source sex (female sources lose intelligibility above about x1.25)."""
RANGE_BOUNDS = (0.8, 1.3)
MIN_WARP_V = 0.3
"""Warps of a base voice keep at least this far from the identity, so they sound like another person."""
BLEND_WARP_SHARE = 0.85
BLEND_V = (-1.0, 0.45)
MIN_BLEND_WARP_V = 0.25
PERTURBATION_SCALE = (0.3, 0.9)
"""Blend perturbation: this many (uniform) times the per-dimension spread of the training tables. Blends of
four similar tables sit close together (Resemblyzer 0.91 between blends at 0.35, 0.87 at 0.8, on one
sentence); perturbation and a warp on most blends spread them out at no measurable WER cost."""

_PSEUDO_ID = re.compile(r"^p[kw]\d{4}$")


@dataclass(frozen=True)
class PseudoSpeaker:
    """One voice of the bank.

    Attributes:
        voice_id: stable id, ``pkNNNN`` (Kokoro blend) or ``pwNNNN`` (warp of a base voice).
        recipe: everything needed to rebuild the voice (JSON-able); see the module docstring.
        heldout: reserved for evaluation; never used in a training corpus.
        heldout_reason: why it is held out (None for training voices).
    """

    voice_id: str
    recipe: dict = field(hash=False)
    heldout: bool = False
    heldout_reason: str | None = None

    @property
    def kind(self) -> str:
        """``"blend"`` or ``"warp"``."""
        return self.recipe["kind"]

    @property
    def engine(self) -> str:
        """The base speaker engine that renders it."""
        return "kokoro" if self.kind == "blend" else self.recipe["source"].split(":")[0]

    @property
    def sources(self) -> tuple[str, ...]:
        """The base voice ids it is derived from."""
        if self.kind == "blend":
            return tuple(f"kokoro:{name}" for name in self.recipe["weights"])
        return (self.recipe["source"],)

    @property
    def warp(self) -> dict | None:
        """``{"formant_ratio", "pitch_ratio", "pitch_range"}`` or None."""
        return self.recipe.get("warp")

    def describe(self) -> str:
        """One line for listings."""
        if self.kind == "blend":
            mix = " + ".join(f"{weight:.2f} {name}" for name, weight in self.recipe["weights"].items())
            text = f"blend {mix}, perturbation {self.recipe['perturbation']['scale']:.2f}"
        else:
            text = f"warp of {self.recipe['source']}"
        warp = self.warp
        if warp:
            text += (f", formants x{warp['formant_ratio']:.3f}, F0 x{warp['pitch_ratio']:.3f}, "
                     f"F0 range x{warp['pitch_range']:.2f}")
        return text

    def to_dict(self) -> dict:
        """JSON-able record (for listings and corpus metadata)."""
        return {"voice_id": self.voice_id, "recipe": self.recipe, "heldout": self.heldout,
                "heldout_reason": self.heldout_reason, "engine": self.engine, "sources": list(self.sources)}


# ---------------------------------------------------------------------------------------------------------
# Generating the bank (deterministic: only Random.random() is used)


def _uniform(rng: random.Random, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


def _sample(rng: random.Random, items: tuple[str, ...], k: int) -> list[str]:
    pool = list(items)
    chosen = []
    for _ in range(k):
        chosen.append(pool.pop(int(rng.random() * len(pool))))
    return chosen


def _warp_from_v(rng: random.Random, v: float, female: bool) -> dict:
    formant = FORMANT_BASE**v
    pitch = formant**PITCH_EXPONENT * math.exp(_uniform(rng, -PITCH_SPREAD, PITCH_SPREAD))
    low, high = PITCH_RATIO_BOUNDS[female]
    return {
        "formant_ratio": round(formant, 4),
        "pitch_ratio": round(min(high, max(low, pitch)), 4),
        "pitch_range": round(_uniform(rng, *RANGE_BOUNDS), 3),
    }


def _base_warp(rng: random.Random, source: str) -> dict:
    female = SOURCE_IS_FEMALE[source]
    low, high = FEMALE_SOURCE_V if female else MALE_SOURCE_V
    v = _uniform(rng, low, high)
    if abs(v) < MIN_WARP_V:
        v = math.copysign(MIN_WARP_V, v)
    return _warp_from_v(rng, v, female)


def _blend_recipe(rng: random.Random, tables: tuple[str, ...], required: str | None) -> dict:
    """2 or 3 tables (always including `required` when given) with random convex weights."""
    count = 2 if rng.random() < 0.5 else 3
    pool = tuple(t for t in tables if t != required)
    names = ([required] if required else []) + _sample(rng, pool, count - (1 if required else 0))
    raw = [0.2 + rng.random() for _ in names]  # no component below about 1/7 of the mix
    total = sum(raw)
    weights = [round(value / total, 3) for value in raw]
    weights[-1] = round(1.0 - sum(weights[:-1]), 3)
    recipe: dict[str, Any] = {
        "kind": "blend",
        "weights": dict(sorted(zip(names, weights))),
        "perturbation": {"seed": int(rng.random() * 2**31), "scale": round(_uniform(rng, *PERTURBATION_SCALE), 3)},
        "warp": None,
    }
    if rng.random() < BLEND_WARP_SHARE:
        v = _uniform(rng, *BLEND_V)
        if abs(v) < MIN_BLEND_WARP_V:
            v = math.copysign(MIN_BLEND_WARP_V, v)
        recipe["warp"] = _warp_from_v(rng, v, female=True)
    return recipe


def _excluded_voices() -> frozenset[str]:
    from tts.evaluation.testsets import TRAINING_EXCLUDED_VOICES

    return frozenset(TRAINING_EXCLUDED_VOICES)


@functools.lru_cache(maxsize=1)
def _bank() -> tuple[PseudoSpeaker, ...]:
    rng = random.Random(BANK_SEED)
    excluded = _excluded_voices()
    recipes: list[tuple[str, dict]] = []
    for index in range(TRAINING_BLENDS + HELDOUT_BLENDS):
        required = KOKORO_HELDOUT_TABLES[0] if index >= TRAINING_BLENDS else None
        recipes.append((f"pk{index:04d}", _blend_recipe(rng, KOKORO_TRAINING_TABLES, required)))
    number = 0
    for source, count in WARP_SOURCES:
        for _ in range(count):
            recipes.append((f"pw{number:04d}", {"kind": "warp", "source": source, "warp": _base_warp(rng, source)}))
            number += 1
    voices = []
    training_rank = {"pk": 0, "pw": 0}
    for voice_id, recipe in recipes:
        recipe = {"version": BANK_VERSION, **recipe}
        speaker = PseudoSpeaker(voice_id, recipe)
        held = sorted(set(speaker.sources) & excluded)
        if held:
            reason = f"derived from the held-out voice {', '.join(held)}"
        else:
            family = voice_id[:2]
            training_rank[family] += 1
            reason = "reserved for evaluation (unseen in-domain voice)" if training_rank[family] % RESERVED_EVERY == 0 else None
        voices.append(PseudoSpeaker(voice_id, recipe, heldout=reason is not None, heldout_reason=reason))
    return tuple(voices)


def voice_bank() -> list[PseudoSpeaker]:
    """Every pseudo-speaker, training and held-out, in id order (``pk`` first)."""
    return list(_bank())


@functools.lru_cache(maxsize=1)
def _by_id() -> dict[str, PseudoSpeaker]:
    return {speaker.voice_id: speaker for speaker in _bank()}


def is_pseudo_id(voice_id: object) -> bool:
    """True for strings shaped like a pseudo-speaker id (``pk0001``, ``pw0042``), known or not."""
    return isinstance(voice_id, str) and bool(_PSEUDO_ID.match(voice_id))


def get_voice(voice_id: str) -> PseudoSpeaker:
    """The pseudo-speaker `voice_id`; `TimbreError` if there is none."""
    speaker = _by_id().get(voice_id) if isinstance(voice_id, str) else None
    if speaker is None:
        bank = _bank()
        raise TimbreError(
            f"unknown pseudo-speaker {voice_id!r}: the voice bank v{BANK_VERSION} has {bank[0].voice_id}..pk"
            f"{sum(s.kind == 'blend' for s in bank) - 1:04d} and pw0000..pw{sum(s.kind == 'warp' for s in bank) - 1:04d} "
            "(list them with `timbre voices list`)"
        )
    return speaker


def bank_digest() -> str:
    """sha256 of every id, recipe and held-out flag: changes whenever any voice would change."""
    records = [[s.voice_id, s.recipe, s.heldout] for s in _bank()]
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()


def heldout_voice_ids() -> list[str]:
    """Pseudo-speakers reserved for evaluation."""
    return [s.voice_id for s in _bank() if s.heldout]


def training_base_voice_ids() -> list[str]:
    """Base voices a training corpus may use: the `CORPUS_ENGINES`' voices, minus the held-out ones."""
    excluded = _excluded_voices()
    ids = []
    for engine in CORPUS_ENGINES:
        ids.extend(f"{engine}:{voice}" for voice in get_speaker(engine).voices() if f"{engine}:{voice}" not in excluded)
    return ids


def training_voice_ids() -> list[str]:
    """Every voice a training corpus may use: the training base voices and pseudo-speakers."""
    return training_base_voice_ids() + [s.voice_id for s in _bank() if not s.heldout]


# ---------------------------------------------------------------------------------------------------------
# Rebuilding and speaking


def _standard_normals(seed: int, count: int) -> np.ndarray:
    """`count` standard normal numbers from ``Random(seed).random()`` by Box-Muller (stable everywhere)."""
    rng = random.Random(seed)
    values = []
    while len(values) < count:
        u1, u2 = 1.0 - rng.random(), rng.random()
        radius = math.sqrt(-2.0 * math.log(u1))
        values.extend((radius * math.cos(2 * math.pi * u2), radius * math.sin(2 * math.pi * u2)))
    return np.array(values[:count], dtype=np.float64)


def blend_style_table(recipe: dict) -> np.ndarray:
    """The ``(510, 256)`` Kokoro style table of a blend recipe: the weighted tables plus the perturbation
    (the same offset on every row), scaled by the per-dimension spread of the training tables."""
    if recipe.get("kind") != "blend":
        raise ValueError("blend_style_table needs a blend recipe")
    kokoro = get_speaker("kokoro")
    table = sum(float(weight) * kokoro.style_table(name).astype(np.float64) for name, weight in recipe["weights"].items())
    means = np.stack([kokoro.style_table(name).mean(axis=0) for name in KOKORO_TRAINING_TABLES]).astype(np.float64)
    spread = means.std(axis=0)
    offset = _standard_normals(int(recipe["perturbation"]["seed"]), spread.size) * spread * float(recipe["perturbation"]["scale"])
    return (table + offset[None, :]).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _blend_table_cached(voice_id: str) -> np.ndarray:
    table = blend_style_table(get_voice(voice_id).recipe)
    table.setflags(write=False)
    return table


@dataclass
class Rendering:
    """A synthesis with everything that made it.

    Attributes:
        output: the speech (``voice`` is the requested voice id's voice part, ``speed`` the engine speed).
        voice_id: the requested voice (base id or pseudo-speaker id).
        parameters: JSON-able record: style and its settings, intensity, engine speed, the voice recipe.
    """

    output: SpeakerOutput
    voice_id: str
    parameters: dict


def voice_unavailable_reason(voice_id: str) -> str | None:
    """Why the synthesizer that speaks `voice_id` (a base voice or a pseudo-speaker) cannot run here, as a sentence,
    or None when it can; `TimbreError` for a voice that does not exist. Cheap: nothing is loaded."""
    if is_pseudo_id(voice_id):
        source = get_voice(voice_id).sources[0]
        engine = source.split(":")[0]
    elif isinstance(voice_id, str) and ":" in voice_id:
        engine, _ = parse_voice_id(voice_id)
    else:
        raise TimbreError(
            f"unknown voice {voice_id!r}: use a base voice 'ENGINE:VOICE' (e.g. 'kokoro:jf_alpha', 'flite:rms') "
            "or a pseudo-speaker id such as 'pk0001' (see `timbre voices list`)"
        )
    reason = get_speaker(engine).unavailable_reason()
    return None if reason is None else f"the {engine} speaker that voice {voice_id!r} needs is not available: {reason}"


def check_voice_id(voice_id: str) -> str:
    """`voice_id` if it names a known base voice whose engine runs here, or a pseudo-speaker; else
    `TimbreError` saying why. Cheap: nothing is loaded."""
    reason = voice_unavailable_reason(voice_id)
    if reason is not None:
        raise TimbreError(reason)
    return voice_id


def resolve_voice(voice_id: str) -> tuple[str, Any, dict | None, PseudoSpeaker | None]:
    """``(engine, engine voice, warp or None, pseudo-speaker or None)`` for a base or pseudo-speaker id.

    Raises `TimbreError` for an unknown voice. Kokoro blends return their style table as the engine voice.
    """
    if is_pseudo_id(voice_id):
        speaker = get_voice(voice_id)
        if speaker.kind == "blend":
            return "kokoro", _blend_table_cached(voice_id), speaker.warp, speaker
        engine, voice = parse_voice_id(speaker.recipe["source"])
        return engine, voice, speaker.warp, speaker
    if isinstance(voice_id, str) and ":" in voice_id:
        engine, voice = parse_voice_id(voice_id)
        return engine, voice, None, None
    raise TimbreError(
        f"unknown voice {voice_id!r}: use a base voice 'ENGINE:VOICE' (e.g. 'kokoro:jf_alpha', 'flite:rms') "
        "or a pseudo-speaker id such as 'pk0001' (see `timbre voices list`)"
    )


def render(
    voice_id: str, text: str, speed: float = 1.0, style: str = "neutral", intensity: float = 0.0, seed: int = 0,
    noise_seed: int | None = None,
) -> Rendering:
    """Speak `text` with `voice_id` in `style` at `intensity`; see `synthesize`."""
    style = check_style(style)
    intensity = check_intensity(intensity)
    speed = check_speed(speed)
    params = style_params(style, intensity)
    engine_speed = float(speed * params.rate)
    try:
        check_speed(engine_speed)
    except TimbreError:
        raise TimbreError(
            f"speed {speed} with the {style} style's rate x{params.rate:.2f} gives {engine_speed:.2f}, outside (0.25, 4]"
        ) from None
    engine, engine_voice, warp, speaker = resolve_voice(voice_id)
    base = get_speaker(engine).synthesize(text, engine_voice, speed=engine_speed, noise_seed=noise_seed)
    warp_args = {"pitch_ratio": warp["pitch_ratio"], "pitch_range": warp["pitch_range"],
                 "formant_ratio": warp["formant_ratio"]} if warp else {}
    audio = apply_style(base.audio, params, seed=int(seed), **warp_args)
    voice_name = speaker.voice_id if speaker else base.voice
    output = SpeakerOutput(audio, base.words, base.durations, base.engine, voice_name, engine_speed, base.text)
    parameters = {
        "style": style,
        "intensity": round(intensity, 4),
        "style_params": params.to_dict(),
        "engine_speed": round(engine_speed, 4),
        "seed": int(seed),
        **({"noise_seed": int(noise_seed)} if noise_seed is not None else {}),
        "voice_recipe": speaker.recipe if speaker else None,
        "versions": {"voicebank": BANK_VERSION, "styles": STYLE_VERSION},
    }
    return Rendering(output, voice_id, parameters)


def synthesize(
    voice_id: str, text: str, speed: float = 1.0, style: str = "neutral", intensity: float = 0.0, seed: int = 0,
    noise_seed: int | None = None,
) -> SpeakerOutput:
    """Speak `text` with a base voice (``"kokoro:jf_alpha"``) or a pseudo-speaker (``"pk0042"``).

    Args:
        voice_id: base voice id or pseudo-speaker id.
        text: what to say.
        speed: speaking-rate factor (the style's own rate multiplies it).
        style: one of `tts.data.styles.STYLES`.
        intensity: 0 (neutral) to 1 (the full style).
        seed: seeds the random parts (the whisper noise, Praat's overlap-add); the same inputs and seed
            give the same audio.
        noise_seed: seeds the base engine's own sampling noise (Piper's VITS noise: how it says the words);
            None: the engine's configured seed, as every rendering of the bank, its corpora and test sets.

    Returns:
        24 kHz speech at the style's level; ``engine`` is the base engine that spoke, ``voice`` the
        pseudo-speaker id (or the base voice name), ``speed`` the engine speed.

    Raises:
        TimbreError: unknown voice or style, intensity outside [0, 1], speed out of range, engine missing.
        TextError: nothing to say.
    """
    return render(voice_id, text, speed=speed, style=style, intensity=intensity, seed=seed,
                  noise_seed=noise_seed).output
