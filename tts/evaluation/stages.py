"""Stage evaluations: the trained parts of the `ar` engine measured one stage at a time against their done-criteria.

    timbre eval-stage vocoder --vocoder PATH --limit 12 --out runs/eval/vocoder
    timbre eval-stage reconstruction --tokenizer PATH --refiner PATH --vocoder PATH
    timbre eval-stage conversion --tokenizer PATH --refiner PATH --vocoder PATH
    timbre eval-stage tone-color --converter PATH --vocoder PATH --tau 0.3
    timbre eval-stage dit-conversion --dit PATH --tokenizer PATH --vocoder PATH
    timbre eval-stage distillation --before flow_refiner --refiner PATH --limit 24

* ``vocoder`` (copy synthesis): clip -> studio log-mel -> vocoder, beside Griffin-Lim (32 iterations) from the same
  mel and the original clip: PESQ-wb and STOI against the original, DNSMOS OVRL, Whisper WER, and SIM to the
  original, for 24 kHz and 16 kHz sources separately.
* ``reconstruction`` (tokenizer + refiner + vocoder): the tokens of one utterance, another utterance of the same
  voice as the prompt: WER against the original's, SIM to the prompt.
* ``conversion``: the tokens of an utterance of voice A, a prompt of voice B: SIM to B and to A, WER against the
  source's, F0-contour correlation with the source.
* ``tone-color`` (the OpenVoice converter, `tts.tone_color`): the same pairs as ``conversion``, the source clip
  converted to the prompt's tone color: SIM to B against the source's own SIM to B, WER against the source's,
  F0-contour correlation with the source (style and prosody must survive).
* ``dit-conversion`` (the `dit` engine's conversion, `tts.dit.engine.DitEngine.convert`): the same pairs, the
  source clip (its transcript from the offline ASR) said again in the prompt's voice: SIM to B and to A, WER
  against the source's, F0-contour correlation with the source.
* ``distillation`` (self-distilled timbre swapping, `tts.refiner.distill`): the ``conversion`` pairs through the
  refiner before (``--before``) and after self-distillation (``--refiner``), same noise: SIM to B up, SIM to A
  down, WER and F0-contour correlation kept.

Every clip is a held-out voice (`HELDOUT_VOICES`, ``flite:slt``, held-out pseudo-speakers) reading held-out texts
(`heldout_texts`, `heldout_prompt_texts`), so no training recipe saw either. Clips are rendered once by the base
speakers (seed 0) and cached beside the built-in test sets, in ``$TIMBRE_CACHE/testsets/stage-clips-v1``. A voice
written ``VOICE@16k`` is rendered, then band-limited through 16 kHz and back. 16 kHz sources are those clips and
the voices whose synthesizer runs at 16 kHz (flite, festival's diphone voice, their warps); the others (Kokoro 24,
Piper 22.05, festival's HTS voice 32 kHz) are 24 kHz sources. Each item also records the share of its energy above
8 kHz, as measured (Piper's joe has little: 4e-6 to 2e-4 against 1e-4 to 4e-3 for Kokoro and HTS).

Each evaluation returns a `StageReport`: means per source group, the done-criteria with PASS / FAIL (`Criterion`)
and every item's numbers; `StageReport.write` puts ``report.json``, ``report.md`` and the wavs into a run folder.
Metrics are the CPU proxies of `tts.evaluation` (Whisper tiny.en, Resemblyzer, DNSMOS), named by their models.
Deterministic: fixed clips, Griffin-Lim seed 0, refiner noise from ``--seed``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import torch

from tts.audio import STUDIO_MEL, Audio, load_audio, log_mel
from tts.errors import AudioError, CheckpointError, TimbreError
from tts.evaluation import asr as asr_module
from tts.evaluation import similarity as sim_module
from tts.evaluation.adapters import heard_voices
from tts.evaluation.testsets import (
    TRAINING_EXCLUDED_VOICES,
    _voice_slug,
    heldout_edits,
    heldout_prompt_texts,
    heldout_texts,
    person_of,
)
from tts.files import atomic_write_text, cache_root

if TYPE_CHECKING:
    from tts.evaluation.adapters import EngineFn

logger = logging.getLogger(__name__)

STAGES = ("vocoder", "reconstruction", "conversion", "tone-color", "dit-conversion", "edit", "distillation")
PAIRED_STAGES = ("conversion", "tone-color", "dit-conversion", "distillation")
"""Stages whose prompt is another speaker's voice."""

FULL_BAND, NARROW_BAND, ALL = "24k", "16k", "all"
GROUP_LABELS = {ALL: "all sources", FULL_BAND: "24 kHz sources (22.05-32 kHz synthesizers)",
                NARROW_BAND: "16 kHz sources (16 kHz synthesizers and clips band-limited through 16 kHz)"}
NARROW_BAND_RATE = 16_000
BAND_LIMIT_SUFFIX = "@16k"
NATIVE_RATE_EXCEPTIONS = {"festival:cmu_us_slt_arctic_hts": 32_000}
"""Voices that render at another rate than their engine's `native_sample_rate` (festival's is kal_diphone's)."""

CLIP_VERSION = 1
CLIP_SEED = 0

STAGE_VOICES: tuple[str, ...] = (
    "kokoro:jm_kumo", "flite:awb", "festival:cmu_us_slt_arctic_hts", "pw0108", "piper:joe", "flite:slt",
    "pk0150", "pw0009", "pk0009", "pw0116",
)
"""Held-out voices of the refiner stages: five synthesizers' own voices, blends and warps of held-out voices
(``pk0150``, ``pw0108``, ``pw0116``) and reserved in-domain voices (``pk0009``, ``pw0009``); 24 kHz and 16 kHz
sources alternate, so a short ``--limit`` still covers both."""

VOCODER_VOICES: tuple[str, ...] = (
    "kokoro:jm_kumo", "flite:awb", "festival:cmu_us_slt_arctic_hts", "kokoro:jm_kumo@16k", "piper:joe", "pw0108",
    "pk0150", "festival:cmu_us_slt_arctic_hts@16k", "pw0116", "flite:slt", "pk0009", "piper:joe@16k", "pw0112",
    "pw0009",
)
"""The vocoder's clips: natively 16 kHz voices and 24 kHz voices band-limited through 16 kHz, alternating with
24 kHz sources."""

DEFAULT_LIMIT = 12
GRIFFIN_LIM_ITERATIONS = 32

# The done-criteria (WER is a fraction: 0.02 is 2 points).
VOCODER_MIN_PESQ = 3.2
VOCODER_MAX_DNSMOS_DROP = 0.3
VOCODER_MAX_WER_INCREASE = 0.02
VOCODER_MIN_SIM = 0.93
RECONSTRUCTION_MAX_WER_INCREASE = 0.03
RECONSTRUCTION_MIN_SIM = 0.80
CONVERSION_MIN_SIM = 0.75
CONVERSION_MIN_SIM_GAP = 0.15
CONVERSION_MAX_WER_INCREASE = 0.05
TONE_COLOR_MIN_SIM = 0.75
TONE_COLOR_MIN_SIM_GAIN = 0.15
"""SIM(output, target) minus SIM(source, target), on average (issue #9)."""
TONE_COLOR_MAX_WER_INCREASE = 0.03
EDIT_MAX_WER = 0.10
EDIT_MIN_SIM = 0.85
SPEED_MAX_WER_INCREASE = 0.02
SPEED_FACTORS = (0.7, 1.3)
EDIT_REPLACEMENTS = ("garden", "yellow", "morning", "window", "silver", "river", "candle", "market", "pocket",
                     "winter", "doctor", "basket")
"""Words put in place of the held-out texts' words by the edit stage's nonsense edits (common, easy to hear, none
in the texts)."""
EDIT_WORD_SETS = ("plausible", "nonsense")
"""The edit stage's two kinds of new words: ``plausible``, an editor's change that reads as English there
(`heldout_edits`; subjects ``edit1``/``edit3``, what issue #10's criteria judge), and ``nonsense``, words that make
no sense there (`EDIT_REPLACEMENTS`; subjects ``nonsense1``/``nonsense3``, a stress test: Whisper tiny's language
model rewrites some of them even from a clean TTS voice saying the whole text)."""
TONE_COLOR_MIN_F0_CORRELATION = 0.8
DISTILLATION_MIN_SIM_GAIN = 0.05
"""SIM(output, target) after self-distillation minus before, on the same pairs (issue #11)."""
DISTILLATION_MAX_WER_INCREASE = 0.01
DISTILLATION_MIN_F0_CORRELATION = 0.8
_TOLERANCE = 1e-9
"""Float slack on thresholds, so 0.13 - 0.11 counts as the 0.02 it is."""

DEFAULT_WER_KEY = asr_module.metric_key(asr_module.DEFAULT_ASR_MODEL)
DEFAULT_SIM_KEY = sim_module.metric_key(sim_module.DEFAULT_SIM_MODEL)


# ---------------------------------------------------------------------------------------------------------
# Held-out clips


def parse_voice_spec(spec: str) -> tuple[str, bool]:
    """``"VOICE"`` or ``"VOICE@16k"`` -> (voice id, band-limited); refuses voices that training may use.

    Raises:
        TimbreError: an unknown voice, or one that is not held out.
    """
    from tts.data.voicebank import check_voice_id, get_voice, heldout_voice_ids, is_pseudo_id

    spec = spec.strip()
    band_limited = spec.endswith(BAND_LIMIT_SUFFIX)
    voice_id = spec[: -len(BAND_LIMIT_SUFFIX)] if band_limited else spec
    check_voice_id(voice_id)
    held = get_voice(voice_id).heldout if is_pseudo_id(voice_id) else voice_id in TRAINING_EXCLUDED_VOICES
    if not held:
        raise TimbreError(
            f"{voice_id} is a training voice; stage evaluations use held-out voices only: "
            f"{', '.join(TRAINING_EXCLUDED_VOICES)} or a held-out pseudo-speaker ({', '.join(heldout_voice_ids()[:4])}, "
            "... see `timbre voices list --heldout`), optionally with @16k"
        )
    return voice_id, band_limited


def native_rate(voice_id: str) -> int:
    """The rate `voice_id`'s synthesizer renders at (a pseudo-speaker's is its first source's)."""
    from tts.data.speakers import get_speaker
    from tts.data.voicebank import get_voice, is_pseudo_id

    source = get_voice(voice_id).sources[0] if is_pseudo_id(voice_id) else voice_id
    return NATIVE_RATE_EXCEPTIONS.get(source, get_speaker(source.split(":")[0]).native_sample_rate)


def source_band(spec: str) -> str:
    """`NARROW_BAND` for a ``VOICE@16k`` spec or a voice rendered at 16 kHz or less, else `FULL_BAND`."""
    voice_id, band_limited = parse_voice_spec(spec)
    return NARROW_BAND if band_limited or native_rate(voice_id) <= NARROW_BAND_RATE else FULL_BAND


def high_band_fraction(audio: Audio) -> float:
    """The share of `audio`'s energy above 8 kHz (half of `NARROW_BAND_RATE`)."""
    power = np.abs(np.fft.rfft(audio.samples.astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(len(audio.samples), 1.0 / audio.sample_rate)
    total = float(power.sum())
    return float(power[frequencies > NARROW_BAND_RATE / 2].sum() / total) if total > 0 else 0.0


def band_limit(audio: Audio) -> Audio:
    """`audio` resampled to 16 kHz and back: what a 16 kHz recording of it would be."""
    return audio.resample(NARROW_BAND_RATE).resample(audio.sample_rate)


@dataclass(frozen=True)
class HeldoutClip:
    """A held-out voice reading a held-out text."""

    voice: str
    """The voice spec (``"kokoro:jm_kumo"``, ``"kokoro:jm_kumo@16k"``)."""
    text: str
    audio: Audio
    band: str
    """`NARROW_BAND` or `FULL_BAND` (`source_band`)."""
    high_band_fraction: float
    """Measured share of the energy above 8 kHz."""


def clips_dir(cache_dir: str | Path | None = None) -> Path:
    """Where rendered clips are cached (beside the built-in test sets)."""
    return (Path(cache_dir) if cache_dir is not None else cache_root() / "testsets") / f"stage-clips-v{CLIP_VERSION}"


def heldout_clip(spec: str, text: str, cache_dir: str | Path | None = None, style: str = "neutral",
                 intensity: float = 0.0) -> HeldoutClip:
    """`text` spoken by the held-out voice `spec` (rendered with seed 0 on first use, then read from the cache), in
    a rendered style of `tts.data.styles` at `intensity` (0 to 1; the voice bank's `synthesize`)."""
    from tts.data.styles import STYLE_VERSION, check_intensity, check_style
    from tts.data.voicebank import bank_digest, is_pseudo_id, synthesize

    voice_id, band_limited = parse_voice_spec(spec)
    style, intensity = check_style(style), check_intensity(intensity)
    definition = [CLIP_VERSION, voice_id, text, CLIP_SEED, bank_digest() if is_pseudo_id(voice_id) else None]
    if style != "neutral" and intensity > 0:  # neutral clips keep the keys they were cached under
        definition += [style, round(intensity, 4), STYLE_VERSION]
    digest = hashlib.sha256(json.dumps(definition).encode()).hexdigest()[:12]
    path = clips_dir(cache_dir) / f"{_voice_slug(voice_id)}-{digest}.wav"
    if path.is_file():
        audio = load_audio(path)
    else:
        logger.info("rendering %s (%s %.2f): %s", voice_id, style, intensity, text)
        audio = synthesize(voice_id, text, style=style, intensity=intensity, seed=CLIP_SEED).audio
        audio.save(path)
    if band_limited:
        audio = band_limit(audio)
    return HeldoutClip(spec, text, audio, source_band(spec), high_band_fraction(audio))


@dataclass(frozen=True)
class PlannedItem:
    """What one item of a stage will use (nothing rendered yet)."""

    item_id: str
    source_voice: str
    source_text: str
    prompt_voice: str | None = None
    prompt_text: str | None = None


def plan_items(stage: str, limit: int = DEFAULT_LIMIT, voices: Sequence[str] | None = None) -> list[PlannedItem]:
    """The first `limit` items of `stage`: item ``k`` reads held-out text ``k`` in voice ``k`` (voices cycle).

    Reconstruction prompts are the same voice reading a prompt text; conversion prompts are another voice of the
    list (a different one for each round through it).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    voices = list(voices or (VOCODER_VOICES if stage == "vocoder" else STAGE_VOICES))
    if stage in PAIRED_STAGES and len({_speaker(v) for v in voices}) < 2:
        raise ValueError("conversion needs voices of at least two different speakers")
    texts, prompts = heldout_texts(), heldout_prompt_texts()
    count = len(voices)
    items = []
    for k in range(limit):
        voice, text = voices[k % count], texts[k % len(texts)]
        item_id = f"{'conversion' if stage in PAIRED_STAGES else stage}-{k:03d}"
        if stage in ("vocoder", "edit"):
            items.append(PlannedItem(item_id, voice, text))
            continue
        prompt_voice = voice
        if stage in PAIRED_STAGES:  # the next voice of another speaker, one further on each round through the list
            first = (k // count) % (count - 1)
            others = (voices[(k + 1 + (first + j) % (count - 1)) % count] for j in range(count - 1))
            prompt_voice = next(other for other in others if _speaker(other) != _speaker(voice))
        items.append(PlannedItem(item_id, voice, text, prompt_voice, prompts[k % len(prompts)]))
    return items


def _speaker(spec: str) -> str:
    """The person behind a voice spec: band limiting and another synthesizer of the same recordings do not count."""
    return person_of(spec.strip().removesuffix(BAND_LIMIT_SUFFIX))


@dataclass(frozen=True)
class StageItem:
    """One item, rendered: the source clip and (refiner stages) the prompt clip."""

    item_id: str
    source: HeldoutClip
    prompt: HeldoutClip | None = None


def load_items(plan: Sequence[PlannedItem], cache_dir: str | Path | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[StageItem]:
    """Render (or read from the cache) the clips of `plan`."""
    items = []
    for done, planned in enumerate(plan, start=1):
        source = heldout_clip(planned.source_voice, planned.source_text, cache_dir)
        prompt = heldout_clip(planned.prompt_voice, planned.prompt_text, cache_dir) if planned.prompt_voice else None
        items.append(StageItem(planned.item_id, source, prompt))
        if progress is not None:
            progress(done, len(plan))
    return items


# ---------------------------------------------------------------------------------------------------------
# Criteria


@dataclass(frozen=True)
class Criterion:
    """One done-criterion: a measured value against a threshold (None when it could not be measured)."""

    group: str
    name: str
    value: float | None
    comparison: str
    """``">="``, ``"<="`` or ``"<"``."""
    threshold: float

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL`` or ``N/A`` (nothing measured)."""
        if self.value is None or not math.isfinite(self.value):
            return "N/A"
        if self.comparison == ">=":
            return "PASS" if self.value >= self.threshold - _TOLERANCE else "FAIL"
        if self.comparison == "<":
            return "PASS" if self.value < self.threshold else "FAIL"
        return "PASS" if self.value <= self.threshold + _TOLERANCE else "FAIL"

    @property
    def target(self) -> str:
        return f"{self.comparison} {self.threshold:g}"

    def to_dict(self) -> dict:
        return {**asdict(self), "target": self.target, "status": self.status}


def verdict(criteria: Sequence[Criterion]) -> str:
    """``PASS`` when every criterion passes, ``FAIL`` when one fails, else ``INCOMPLETE``."""
    statuses = [criterion.status for criterion in criteria]
    if statuses and all(status == "PASS" for status in statuses):
        return "PASS"
    return "FAIL" if "FAIL" in statuses else "INCOMPLETE"


Means = Mapping[str, Mapping[str, "float | None"]]
"""metric -> subject -> mean over a group's items."""


def _mean(means: Means, metric: str, subject: str) -> float | None:
    return (means.get(metric) or {}).get(subject)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def vocoder_criteria(means: Means, group: str, wer_key: str = DEFAULT_WER_KEY,
                     sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The vocoder's done-criteria on one source group's means."""
    dnsmos = lambda subject: _mean(means, "dnsmos_ovrl", subject)  # noqa: E731
    return [
        Criterion(group, "PESQ-wb, vocoder vs original", _mean(means, "pesq_wb", "vocoder"), ">=", VOCODER_MIN_PESQ),
        Criterion(group, "DNSMOS OVRL, vocoder minus Griffin-Lim", _minus(dnsmos("vocoder"), dnsmos("griffin_lim")), ">=", 0.0),
        Criterion(group, "DNSMOS OVRL, original minus vocoder", _minus(dnsmos("original"), dnsmos("vocoder")), "<=",
                  VOCODER_MAX_DNSMOS_DROP),
        Criterion(group, "WER, vocoder minus original", _minus(_mean(means, wer_key, "vocoder"), _mean(means, wer_key, "original")),
                  "<=", VOCODER_MAX_WER_INCREASE),
        Criterion(group, "SIM(original, vocoder)", _mean(means, f"{sim_key}_to_original", "vocoder"), ">=", VOCODER_MIN_SIM),
    ]


def reconstruction_criteria(means: Means, group: str = ALL, wer_key: str = DEFAULT_WER_KEY,
                            sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The reconstruction done-criteria."""
    return [
        Criterion(group, "WER, reconstruction minus original", _minus(_mean(means, wer_key, "output"), _mean(means, wer_key, "original")),
                  "<=", RECONSTRUCTION_MAX_WER_INCREASE),
        Criterion(group, "SIM(reconstruction, prompt)", _mean(means, f"{sim_key}_to_prompt", "output"), ">=", RECONSTRUCTION_MIN_SIM),
    ]


def conversion_criteria(means: Means, group: str = ALL, wer_key: str = DEFAULT_WER_KEY,
                        sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The conversion done-criteria (F0 correlation is reported, not judged)."""
    return [
        Criterion(group, "SIM(output, target voice B)", _mean(means, f"{sim_key}_to_prompt", "output"), ">=", CONVERSION_MIN_SIM),
        Criterion(group, "SIM(output, B) minus SIM(output, source voice A)", _mean(means, f"{sim_key}_gap", "output"), ">=",
                  CONVERSION_MIN_SIM_GAP),
        Criterion(group, "WER, output minus source", _minus(_mean(means, wer_key, "output"), _mean(means, wer_key, "source")),
                  "<=", CONVERSION_MAX_WER_INCREASE),
    ]


def dit_conversion_criteria(means: Means, group: str = ALL, wer_key: str = DEFAULT_WER_KEY,
                            sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The `dit` engine's conversion: issue #6's conversion criteria, and the source's melody kept as issue #9
    asks of a converter."""
    return conversion_criteria(means, group, wer_key, sim_key) + [
        Criterion(group, "F0-contour correlation with the source", _mean(means, "f0_correlation", "output"), ">=",
                  TONE_COLOR_MIN_F0_CORRELATION),
    ]


def edit_criteria(means: Means, group: str = ALL, wer_key: str = DEFAULT_WER_KEY,
                  sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The editing done-criteria (issue #10): word edits intelligible and in the recording's voice, everything
    outside the regenerated spans kept exactly, speed edits as intelligible as the original."""
    to_original = f"{sim_key}_to_original"
    original_wer = _mean(means, wer_key, "original")
    criteria = []
    for subject, label in (("edit1", "one-word"), ("edit3", "three-word")):
        criteria += [
            Criterion(group, f"{label} edit WER vs new text", _mean(means, wer_key, subject), "<=", EDIT_MAX_WER),
            Criterion(group, f"{label} edit SIM to the original", _mean(means, to_original, subject), ">=", EDIT_MIN_SIM),
            Criterion(group, f"{label} edit: samples outside the spans kept", _mean(means, "kept_exact", subject), ">=", 1.0),
        ]
    for factor in SPEED_FACTORS:
        subject = f"speed{factor:g}"
        criteria.append(Criterion(group, f"speed x{factor:g} WER - original WER",
                                  _minus(_mean(means, wer_key, subject), original_wer), "<=", SPEED_MAX_WER_INCREASE))
    return criteria


def distillation_criteria(means: Means, group: str = ALL, wer_key: str = DEFAULT_WER_KEY,
                          sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The self-distillation done-criteria (issue #11): the same pairs through the refiner before and after."""
    return [
        Criterion(group, "SIM(after, target B) minus SIM(before, B)",
                  _minus(_mean(means, f"{sim_key}_to_prompt", "after"), _mean(means, f"{sim_key}_to_prompt", "before")),
                  ">=", DISTILLATION_MIN_SIM_GAIN),
        Criterion(group, "SIM(after, source A) minus SIM(before, A)",
                  _minus(_mean(means, f"{sim_key}_to_source", "after"), _mean(means, f"{sim_key}_to_source", "before")),
                  "<", 0.0),
        Criterion(group, "WER, after minus before", _minus(_mean(means, wer_key, "after"), _mean(means, wer_key, "before")),
                  "<=", DISTILLATION_MAX_WER_INCREASE),
        Criterion(group, "F0-contour correlation of the output (after) with the source",
                  _mean(means, "f0_correlation", "after"), ">=", DISTILLATION_MIN_F0_CORRELATION),
    ]


def tone_color_criteria(means: Means, group: str = ALL, wer_key: str = DEFAULT_WER_KEY,
                        sim_key: str = DEFAULT_SIM_KEY) -> list[Criterion]:
    """The tone-color converter's done-criteria (issue #9)."""
    return [
        Criterion(group, "SIM(output, target voice B)", _mean(means, f"{sim_key}_to_prompt", "output"), ">=", TONE_COLOR_MIN_SIM),
        Criterion(group, "SIM(output, B) minus SIM(source, B)", _mean(means, f"{sim_key}_gain", "output"), ">=",
                  TONE_COLOR_MIN_SIM_GAIN),
        Criterion(group, "WER, output minus source", _minus(_mean(means, wer_key, "output"), _mean(means, wer_key, "source")),
                  "<=", TONE_COLOR_MAX_WER_INCREASE),
        Criterion(group, "F0-contour correlation with the source", _mean(means, "f0_correlation", "output"), ">=",
                  TONE_COLOR_MIN_F0_CORRELATION),
    ]


# ---------------------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class StageConfig:
    """How a stage is measured."""

    asr_model: str = asr_module.DEFAULT_ASR_MODEL
    sim_model: str = sim_module.DEFAULT_SIM_MODEL
    seed: int = 0
    """Seeds the refiner's starting noise."""
    refiner_steps: int | None = None
    """ODE steps; None: `synthesize()`'s default (the refiner's), the engine's own for where its flow starts (the
    `dit` stages)."""
    cfg_strength: float | None = None
    """Classifier-free guidance; None as for `refiner_steps`."""
    griffin_lim_iterations: int = GRIFFIN_LIM_ITERATIONS
    tau: float = 0.3
    """The tone-color converter's posterior temperature."""
    edit_words: tuple[str, ...] = EDIT_WORD_SETS
    """Which of `EDIT_WORD_SETS` the edit stage puts in."""

    @property
    def wer_key(self) -> str:
        return asr_module.metric_key(self.asr_model)

    @property
    def sim_key(self) -> str:
        return sim_module.metric_key(self.sim_model)

    def resolved(self) -> "StageConfig":
        """This config with the refiner settings filled in from `tts.synthesis.SynthesisOptions`."""
        from tts.synthesis import SynthesisOptions

        defaults = SynthesisOptions()
        steps = defaults.refiner_steps if self.refiner_steps is None else self.refiner_steps
        cfg = defaults.cfg_strength if self.cfg_strength is None else self.cfg_strength
        return replace(self, refiner_steps=steps, cfg_strength=cfg)


@dataclass
class ItemResult:
    """Everything measured on one item: ``metrics[metric][subject]``, None where a metric failed (see `errors`)."""

    item_id: str
    voice: str
    text: str
    group: str
    high_band_fraction: float
    prompt_voice: str | None = None
    prompt_text: str | None = None
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failure: str | None = None
    """Why the model produced nothing to measure."""

    def to_dict(self) -> dict:
        return asdict(self)


class _Meter:
    """The metric calls of one item: a metric that raises leaves None and a line in `result.errors`."""

    def __init__(self, config: StageConfig, result: ItemResult) -> None:
        self.config, self.result = config, result
        self._embeddings: dict[int, np.ndarray] = {}

    def put(self, metric: str, subject: str, compute: Callable[[], float | None]) -> float | None:
        try:
            value = compute()
            if value is None or not math.isfinite(value):
                raise AudioError(f"no finite value ({value})")
            value = float(value)
        except Exception as error:  # noqa: BLE001 - one metric failing must not lose the others
            logger.warning("%s: %s (%s) failed: %s", self.result.item_id, metric, subject, error)
            self.result.errors.append(f"{metric} ({subject}): {type(error).__name__}: {error}")
            value = None
        self.result.metrics.setdefault(metric, {})[subject] = value
        return value

    def wer(self, subject: str, audio: Audio, text: str) -> float | None:
        from tts.evaluation.wer import wer

        def compute() -> float:
            transcript = asr_module.get_asr(self.config.asr_model).transcribe(audio)
            self.result.transcripts[subject] = transcript
            return wer(text, transcript)

        return self.put(self.config.wer_key, subject, compute)

    def embedding(self, audio: Audio) -> np.ndarray:
        if id(audio) not in self._embeddings:
            self._embeddings[id(audio)] = sim_module.speaker_embedding(audio, self.config.sim_model)
        return self._embeddings[id(audio)]

    def sim(self, metric: str, subject: str, a: Audio, b: Audio) -> float | None:
        return self.put(metric, subject, lambda: sim_module.cosine(self.embedding(a), self.embedding(b)))

    def dnsmos(self, subject: str, audio: Audio) -> float | None:
        from tts.evaluation.quality import dnsmos

        return self.put("dnsmos_ovrl", subject, lambda: dnsmos(audio).ovrl)


def _checked_output(audio: Audio, what: str) -> Audio:
    if len(audio) == 0 or not np.all(np.isfinite(audio.samples)):
        raise AudioError(f"the {what} is empty or not finite")
    return audio


def _pair(reference: Audio, degraded: Audio) -> tuple[Audio, Audio]:
    """Both clips cut to their common length (PESQ compares sample by sample)."""
    length = min(len(reference), len(degraded))
    return Audio(reference.samples[:length], reference.sample_rate), Audio(degraded.samples[:length], degraded.sample_rate)


def _new_result(item: StageItem) -> ItemResult:
    prompt = item.prompt
    return ItemResult(item.item_id, item.source.voice, item.source.text, item.source.band, item.source.high_band_fraction,
                      prompt.voice if prompt else None, prompt.text if prompt else None)


def _save(wav_dir: Path | None, item_id: str, audios: Mapping[str, Audio]) -> None:
    if wav_dir is None:
        return
    for subject, audio in audios.items():
        try:
            audio.save(wav_dir / f"{item_id}-{subject}.wav")
        except (ValueError, OSError) as error:
            logger.warning("could not save %s-%s: %s", item_id, subject, error)


def check_vocoder(vocoder: torch.nn.Module) -> None:
    """Refuse a vocoder whose signal settings are not the studio mel's (the one mel clips are analysed with)."""
    config = vocoder.config
    got = (config.input_channels, config.hop_length, config.n_fft, config.sample_rate)
    want = (STUDIO_MEL.n_mels, STUDIO_MEL.hop_length, STUDIO_MEL.n_fft, STUDIO_MEL.sample_rate)
    if got != want:
        raise CheckpointError(f"the vocoder takes (mels, hop, n_fft, rate) {got}, the studio mel is {want}")


def check_refiner_parts(tokenizer: torch.nn.Module, refiner: torch.nn.Module, vocoder: torch.nn.Module) -> None:
    """Refuse a tokenizer, refiner and vocoder that were not made to work together."""
    check_vocoder(vocoder)
    tok, ref = tokenizer.config, refiner.config
    if tok.codebook_size != ref.codebook_size or tok.frames_per_token != ref.frames_per_token:
        raise CheckpointError(
            f"the tokenizer ({tok.codebook_size} ids, {tok.frames_per_token} frames/token) and the refiner "
            f"({ref.codebook_size} ids, {ref.frames_per_token} frames/token) do not fit; use checkpoints trained together"
        )
    if tok.mel != ref.mel or ref.mel != STUDIO_MEL:
        raise CheckpointError("the tokenizer, the refiner and the vocoder must all use the studio mel")


def evaluate_vocoder(vocoder: torch.nn.Module, items: Sequence[StageItem], config: StageConfig = StageConfig(),
                     wav_dir: Path | None = None, progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """Copy synthesis: each clip's studio log-mel through `vocoder` and through Griffin-Lim, scored against the clip."""
    from tts.evaluation.quality import pesq_wb, stoi
    from vocoder.griffin_lim import griffin_lim_decode

    check_vocoder(vocoder)
    started, results = time.time(), []
    for item in items:
        result = _new_result(item)
        original = item.source.audio
        meter = _Meter(config, result)
        try:
            mel = log_mel(original.to_tensor(), STUDIO_MEL)
            with torch.inference_mode():
                vocoded = _checked_output(vocoder.decode(mel), "vocoder output")
            outputs = {"vocoder": vocoded, "griffin_lim": griffin_lim_decode(mel, config.griffin_lim_iterations)}
        except Exception as error:  # noqa: BLE001 - one item failing must not lose the others
            logger.exception("%s: the vocoder failed", item.item_id)
            result.failure = f"{type(error).__name__}: {error}"
        else:
            _save(wav_dir, item.item_id, {"original": original, **outputs})
            meter.wer("original", original, item.source.text)
            meter.wer("vocoder", vocoded, item.source.text)
            meter.dnsmos("original", original)
            for subject, audio in outputs.items():
                meter.put("pesq_wb", subject, lambda: pesq_wb(*_pair(original, audio)))
                meter.put("stoi", subject, lambda: stoi(original, audio))
                meter.dnsmos(subject, audio)
                meter.sim(f"{config.sim_key}_to_original", subject, original, audio)
        results.append(result)
        if progress is not None:
            progress(result)
    criteria_fn = lambda means, group: vocoder_criteria(means, group, config.wer_key, config.sim_key)  # noqa: E731
    return _report("vocoder", results, config, criteria_fn, (FULL_BAND, NARROW_BAND), started)


def _resynthesize(tokenizer, refiner, vocoder, source: Audio, prompt: Audio, config: StageConfig) -> Audio:
    """`source`'s tokens spoken in `prompt`'s voice: tokenizer -> refiner (prompted) -> vocoder."""
    from tts.refiner.sampling import generate

    with torch.inference_mode():
        tokens = tokenizer.tokenize(source)
        prompt_mel = tokenizer.mel_of(prompt)
        prompt_ids, prompt_lengths = tokenizer.encode(prompt_mel[None])
        mel = generate(refiner, tokens, prompt_mel, prompt_ids[0, : int(prompt_lengths[0])], steps=config.refiner_steps,
                       cfg_strength=config.cfg_strength, seed=config.seed)
        return vocoder.decode(mel[0])  # checked by _evaluate_pairs, like every renderer


def _evaluate_refiner(stage: str, tokenizer, refiner, vocoder, items: Sequence[StageItem], config: StageConfig,
                      wav_dir: Path | None, progress: Callable[[ItemResult], None] | None) -> "StageReport":
    check_refiner_parts(tokenizer, refiner, vocoder)
    config = config.resolved()
    rules = reconstruction_criteria if stage == "reconstruction" else conversion_criteria

    def render(item: StageItem) -> Audio:
        return _resynthesize(tokenizer, refiner, vocoder, item.source.audio, item.prompt.audio, config)

    return _evaluate_pairs(stage, {"output": render}, rules, items, config, wav_dir, progress)


Render = Callable[[StageItem], Audio]
"""``render(item) -> output`` of a stage with prompts: the item's source clip said in its prompt clip's voice."""


def _evaluate_pairs(stage: str, renders: Mapping[str, Render], rules: Callable[..., list[Criterion]],
                    items: Sequence[StageItem], config: StageConfig, wav_dir: Path | None,
                    progress: Callable[[ItemResult], None] | None, left_out: Sequence[dict] = ()) -> "StageReport":
    """Score each of `renders` (subject name -> ``render(item)``) on every item of a stage that has prompts, and
    judge the means with `rules` (`left_out`: the items' records that `_left_out` set aside)."""
    source_name = "original" if stage == "reconstruction" else "source"
    to_prompt, sim_key = f"{config.sim_key}_to_prompt", config.sim_key
    started, results = time.time(), []
    for item in items:
        if item.prompt is None:
            raise ValueError(f"{item.item_id}: the {stage} stage needs a prompt clip")
        result = _new_result(item)
        source, prompt = item.source.audio, item.prompt.audio
        meter = _Meter(config, result)
        try:
            outputs = {subject: _checked_output(render(item), subject) for subject, render in renders.items()}
        except Exception as error:  # noqa: BLE001 - one item failing must not lose the others
            logger.exception("%s: %s failed", item.item_id, stage)
            result.failure = f"{type(error).__name__}: {error}"
        else:
            _save(wav_dir, item.item_id, {source_name: source, "prompt": prompt, **outputs})
            meter.wer(source_name, source, item.source.text)
            sim_start = meter.sim(to_prompt, source_name, source, prompt)
            meter.dnsmos(source_name, source)
            for subject, output in outputs.items():
                meter.wer(subject, output, item.source.text)
                sim_prompt = meter.sim(to_prompt, subject, output, prompt)
                sim_source = meter.sim(f"{sim_key}_to_{source_name}", subject, output, source)
                meter.dnsmos(subject, output)
                if stage in PAIRED_STAGES:
                    meter.put(f"{sim_key}_gap", subject, lambda: _gap(sim_prompt, sim_source))
                    meter.put(f"{sim_key}_gain", subject, lambda: _gap(sim_prompt, sim_start))
                    meter.put("f0_correlation", subject, lambda: _f0_correlation(source, output))
        results.append(result)
        if progress is not None:
            progress(result)
    criteria_fn = lambda means, group: rules(means, group, config.wer_key, config.sim_key)  # noqa: E731
    return _report(stage, results, config, criteria_fn, (ALL,), started, left_out)


def _left_out(items: Sequence[StageItem], heard: Sequence[str], role: str) -> tuple[list[StageItem], list[dict]]:
    """`items` without those whose `role` clip (``"source"`` or ``"prompt"``) is in a voice made of one in
    `heard` (`tts.evaluation.adapters.heard_voices`: the voices the engine speaks with itself), and a record of
    each left out."""
    from tts.evaluation.testsets import split_heard

    def voice_of(item: StageItem) -> str | None:
        clip = getattr(item, role)
        return None if clip is None else clip.voice.removesuffix(BAND_LIMIT_SUFFIX)

    kept, left = split_heard(items, voice_of, heard)
    why = f"its {role} is in a voice the engine speaks with itself ({', '.join(heard)})"
    return kept, [{"item_id": item.item_id, "voice": voice_of(item), "why": why} for item in left]


def _gap(sim_a: float | None, sim_b: float | None) -> float:
    if sim_a is None or sim_b is None:
        raise AudioError("needs both similarities")
    return sim_a - sim_b


def _f0_correlation(source: Audio, output: Audio) -> float:
    from tts.evaluation.prosody import f0_correlation

    return f0_correlation(source, output)


def evaluate_reconstruction(tokenizer, refiner, vocoder, items: Sequence[StageItem], config: StageConfig = StageConfig(),
                            wav_dir: Path | None = None, progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """Each utterance's tokens, prompted by another utterance of the same voice, through the refiner and vocoder."""
    return _evaluate_refiner("reconstruction", tokenizer, refiner, vocoder, items, config, wav_dir, progress)


def evaluate_conversion(tokenizer, refiner, vocoder, items: Sequence[StageItem], config: StageConfig = StageConfig(),
                        wav_dir: Path | None = None, progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """Voice A's tokens prompted by voice B: does the output take B's timbre and keep A's words and melody?"""
    return _evaluate_refiner("conversion", tokenizer, refiner, vocoder, items, config, wav_dir, progress)


def evaluate_tone_color(engine, items: Sequence[StageItem], config: StageConfig = StageConfig(),
                        wav_dir: Path | None = None, progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """Voice A's clip converted to voice B's tone color (`tts.tone_color.ToneColorEngine`, ``config.tau``): does
    it sound like B, more than A did, with A's words and melody?"""

    def render(item: StageItem) -> Audio:
        return engine.convert(item.source.audio, item.prompt.audio, tau=config.tau, seed=config.seed)

    return _evaluate_pairs("tone-color", {"output": render}, tone_color_criteria, items, config, wav_dir, progress)


def evaluate_dit_conversion(engine, items: Sequence[StageItem], config: StageConfig = StageConfig(),
                            wav_dir: Path | None = None,
                            progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """Voice A's clip said again in voice B's by the `dit` engine (`tts.dit.engine.DitEngine.convert`), its
    transcript from the offline ASR as a user's would be: does it sound like B, more than like A, with A's words
    and melody?"""
    from tts.voice import clone_voice

    steps, cfg = config.refiner_steps, config.cfg_strength  # None: the engine's own for where its flow starts

    def render(item: StageItem) -> Audio:
        voice = clone_voice(item.prompt.audio, item.prompt.text)
        return engine.convert(item.source.audio, voice, seed=config.seed, steps=steps, cfg_strength=cfg)

    items, left_out = _left_out(items, heard_voices(engine), "prompt")
    return _evaluate_pairs("dit-conversion", {"output": render}, dit_conversion_criteria, items, config, wav_dir,
                           progress, left_out)


def evaluate_distillation(tokenizer, before, after, vocoder, items: Sequence[StageItem],
                          config: StageConfig = StageConfig(), wav_dir: Path | None = None,
                          progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """The conversion pairs (voice A's tokens, voice B's prompt) through the refiner `before` and `after`
    self-distillation, same noise: does the distilled one take more of B's timbre and less of A's, with the
    same words and melody? (Issue #11; `tts.refiner.distill`.)"""
    for refiner in (before, after):
        check_refiner_parts(tokenizer, refiner, vocoder)
    config = config.resolved()
    renders = {name: (lambda item, refiner=refiner: _resynthesize(tokenizer, refiner, vocoder, item.source.audio,
                                                                  item.prompt.audio, config))
               for name, refiner in (("before", before), ("after", after))}
    return _evaluate_pairs("distillation", renders, distillation_criteria, items, config, wav_dir, progress)


def edited_text(text: str, first: int, count: int, replacement_index: int) -> str:
    """`text` with its words ``first .. first + count - 1`` replaced by `EDIT_REPLACEMENTS` (from
    `replacement_index` on), punctuation kept."""
    tokens = text.split()
    if not 0 <= first or first + count > len(tokens):
        raise ValueError(f"words {first}..{first + count - 1} are not all in {text!r}")
    for offset in range(count):
        token = tokens[first + offset]
        core = token.strip(".,;:!?\"'")
        word = EDIT_REPLACEMENTS[(replacement_index + offset) % len(EDIT_REPLACEMENTS)]
        tokens[first + offset] = token.replace(core, word, 1) if core else word
    return " ".join(tokens)


def stage_edits(text: str, number: int, words: str) -> list[tuple[str, str]]:
    """The word edits the edit stage makes of held-out text `text` (item `number`) with `words`, one of
    `EDIT_WORD_SETS`: ``(subject, new text)`` with one word replaced, then three."""
    if words not in EDIT_WORD_SETS:
        raise ValueError(f"unknown edit words {words!r}; choose from {', '.join(EDIT_WORD_SETS)}")
    if words == "plausible":
        return [(f"edit{count}", new_text) for count, new_text in zip((1, 3), heldout_edits()[text])]
    return [(f"nonsense{count}", edited_text(text, _edit_position(text, count), count, number * 4))
            for count in (1, 3)]


def _edit_position(text: str, count: int) -> int:
    """Where to edit `count` words of `text`: the middle of the sentence, on words of at least 3 letters where
    there are such."""
    tokens = text.split()
    for shortest in (3, 1):
        candidates = [i for i in range(len(tokens) - count + 1)
                      if all(len(t.strip(".,;:!?\"'")) >= shortest for t in tokens[i : i + count])]
        if candidates:
            return min(candidates, key=lambda i: abs(i + count / 2 - len(tokens) / 2))
    raise ValueError(f"{text!r} has fewer than {count} words to edit")


def _kept_exact(original: Audio, edited: Audio, spans: Sequence[tuple[float, float]]) -> float:
    """1.0 when every sample before the first span and after the last is the original's (shifted by the change in
    length), and between spans is an exact run of the original, else 0.0."""
    rate = original.sample_rate
    a, b = original.samples, edited.samples
    shift = len(b) - len(a)
    first, last = int(spans[0][0] * rate), int(np.ceil(spans[-1][1] * rate))
    if not (np.array_equal(b[:first], a[:first]) and np.array_equal(b[last:], a[last - shift :])):
        return 0.0
    return 1.0


def evaluate_editing(engine, items: Sequence[StageItem], config: StageConfig = StageConfig(),
                     wav_dir: Path | None = None, progress: Callable[[ItemResult], None] | None = None) -> "StageReport":
    """Each held-out recording edited by the `dit` engine (`tts.dit.engine.DitEngine`): one word replaced, three
    words replaced (with each kind of new words of ``config.edit_words``, `stage_edits`), and the whole recording
    said at each of `SPEED_FACTORS`; WER against the new text, SIM to the original, and whether the samples outside
    the regenerated spans are the original's."""
    steps, cfg = config.refiner_steps, config.cfg_strength  # None: the engine's own for where its flow starts
    started, results = time.time(), []
    kept, left_out = _left_out(items, heard_voices(engine), "source")
    kept_ids = {item.item_id for item in kept}
    for number, item in enumerate(items):  # numbered before leaving any out: each item keeps its new words
        if item.item_id not in kept_ids:
            continue
        result = _new_result(item)
        original, text = item.source.audio, item.source.text
        meter = _Meter(config, result)
        meter.wer("original", original, text)
        outputs = {"original": original}
        edits = [edit for words in config.edit_words for edit in stage_edits(text, number, words)]
        for subject, new_text in edits:
            try:
                edit = engine.edit(original, text, new_text, seed=config.seed, steps=steps, cfg_strength=cfg)
                edited = _checked_output(edit.audio, f"{subject} output")
            except Exception as error:  # noqa: BLE001 - one edit failing must not lose the others
                logger.exception("%s: %s failed", item.item_id, subject)
                result.errors.append(f"{subject}: {type(error).__name__}: {error}")
                continue
            outputs[subject] = edited
            result.transcripts[f"{subject} text"] = new_text
            meter.wer(subject, edited, new_text)
            meter.sim(f"{config.sim_key}_to_original", subject, original, edited)
            meter.put("kept_exact", subject, lambda: _kept_exact(original, edited, edit.spans))
            meter.put("edited_seconds", subject, lambda: sum(b - a for a, b in edit.spans))
        for factor in SPEED_FACTORS:
            subject = f"speed{factor:g}"
            try:
                paced = _checked_output(engine.change_speed(original, text, factor, seed=config.seed, steps=steps,
                                                            cfg_strength=cfg).audio, f"{subject} output")
            except Exception as error:  # noqa: BLE001
                logger.exception("%s: %s failed", item.item_id, subject)
                result.errors.append(f"{subject}: {type(error).__name__}: {error}")
                continue
            outputs[subject] = paced
            meter.wer(subject, paced, text)
            meter.sim(f"{config.sim_key}_to_original", subject, original, paced)
            meter.put("duration_ratio", subject, lambda: paced.duration / original.duration)
        if len(outputs) == 1:
            result.failure = "; ".join(result.errors) or "no output"
        _save(wav_dir, item.item_id, outputs)
        results.append(result)
        if progress is not None:
            progress(result)
    criteria_fn = lambda means, group: edit_criteria(means, group, config.wer_key, config.sim_key)  # noqa: E731
    return _report("edit", results, config, criteria_fn, (ALL,), started, left_out)


# ---------------------------------------------------------------------------------------------------------
# Reports


def group_means(results: Sequence[ItemResult]) -> tuple[dict, dict]:
    """``(means, counts)``, each ``metric -> subject -> value`` over the items that have the number."""
    values: dict[str, dict[str, list[float]]] = {}
    for result in results:
        for metric, subjects in result.metrics.items():
            for subject, value in subjects.items():
                bucket = values.setdefault(metric, {}).setdefault(subject, [])
                if value is not None:
                    bucket.append(value)
    means = {m: {s: (float(np.mean(v)) if v else None) for s, v in subjects.items()} for m, subjects in values.items()}
    counts = {m: {s: len(v) for s, v in subjects.items()} for m, subjects in values.items()}
    return means, counts


def _labels(stage: str, config: StageConfig) -> dict[str, str]:
    from tts.evaluation.quality import DNSMOS_LABEL, PESQ_LABEL, STOI_LABEL

    sim = sim_module.label(config.sim_model)
    return {
        config.wer_key: f"WER of {asr_module.WhisperASR(config.asr_model).label} (Whisper English normalizer), mean per item",
        f"{config.sim_key}_to_original": f"SIM to the original clip: {sim}",
        f"{config.sim_key}_to_prompt": f"SIM to the prompt clip ({'same voice, other words' if stage == 'reconstruction' else 'voice B'}): {sim}",
        f"{config.sim_key}_to_source": f"SIM to the source clip (voice A): {sim}",
        f"{config.sim_key}_gap": "SIM to the prompt minus SIM to the source, per item",
        f"{config.sim_key}_gain": "SIM of the output to the prompt minus the source's own SIM to the prompt, per item",
        "dnsmos_ovrl": f"{DNSMOS_LABEL}: overall",
        "pesq_wb": f"{PESQ_LABEL}, against the original",
        "stoi": f"{STOI_LABEL}, against the original",
        "f0_correlation": "F0-contour correlation with the source (pyin, DTW-aligned on MFCCs)",
        "kept_exact": "1 when every sample outside the regenerated spans is the original's, else 0",
        "edited_seconds": "seconds regenerated (spans with their cross-fade margins)",
        "duration_ratio": "output duration over the original's",
    }


@dataclass
class StageReport:
    """The result of one stage evaluation."""

    stage: str
    results: list[ItemResult]
    groups: dict[str, dict]
    """group -> ``{"items": n, "means": {...}, "counts": {...}}``."""
    criteria: list[Criterion]
    settings: dict
    labels: dict[str, str]
    started: str
    wall_seconds: float
    models: dict[str, str] = field(default_factory=dict)
    command: str = ""
    left_out: list[dict] = field(default_factory=list)
    """Items not evaluated: in a voice the engine speaks with itself (`_left_out`)."""

    @property
    def verdict(self) -> str:
        return verdict(self.criteria)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "verdict": self.verdict, "command": self.command, "models": self.models,
            "settings": self.settings, "started": self.started, "wall_seconds": self.wall_seconds,
            "criteria": [c.to_dict() for c in self.criteria], "groups": self.groups, "labels": self.labels,
            "items": [r.to_dict() for r in self.results], "left_out": self.left_out,
        }

    def to_markdown(self) -> str:
        """The human-readable report: command, verdict, criteria, means per group, then every item."""
        passed = sum(c.status == "PASS" for c in self.criteria)
        failed = [r for r in self.results if r.failure]
        lines = [f"# Stage evaluation: {self.stage}", "", f"Command: `{self.command or '(library call)'}`", ""]
        lines += [f"- {part}: `{path}`" for part, path in self.models.items()]
        sizes = ", ".join(f"{group}: {data['items']}" for group, data in self.groups.items() if group != ALL)
        lines += [
            f"- items: {len(self.results)} ({sizes}), "
            f"{len(failed)} failed; started {self.started}, {self.wall_seconds:.0f} s",
            f"- settings: {', '.join(f'{k} {v}' for k, v in self.settings.items())}",
            *([f"- left out: {len(self.left_out)} ({', '.join(e['item_id'] for e in self.left_out)}): "
               f"{self.left_out[0]['why']}, so not held out from it"] if self.left_out else []),
            "",
            f"**Verdict: {self.verdict}** ({passed} of {len(self.criteria)} criteria pass). All numbers are CPU proxies "
            "(Whisper tiny.en, Resemblyzer, DNSMOS): compare them with each other, not with published figures.",
            "", "## Criteria", "", "| group | criterion | measured | target | result |", "|---|---|---|---|---|",
        ]
        lines += [f"| {c.group} | {c.name} | {_fmt(c.value)} | {c.target} | **{c.status}** |" for c in self.criteria]
        for group, data in self.groups.items():
            subjects = list(dict.fromkeys(s for metric in data["means"].values() for s in metric))
            lines += ["", f"## {GROUP_LABELS.get(group, group)} (n={data['items']})", "",
                      "| metric | " + " | ".join(subjects) + " |", "|---" * (len(subjects) + 1) + "|"]
            for metric, row in data["means"].items():
                lines.append(f"| `{metric}` | " + " | ".join(_mean_cell(data, metric, s) for s in subjects) + " |")
        lines += ["", "## Metrics", ""] + [f"- `{key}`: {text}" for key, text in self.labels.items()
                                           if any(key in d["means"] for d in self.groups.values())]
        lines += ["", "## Items", "", "| item | voice | prompt | group | numbers | problems |", "|---|---|---|---|---|---|"]
        for r in self.results:
            numbers = "; ".join(f"{m}: " + ", ".join(f"{s} {_fmt(v)}" for s, v in row.items()) for m, row in r.metrics.items())
            problems = r.failure or "; ".join(r.errors)
            lines.append(f"| {r.item_id} | {r.voice} | {r.prompt_voice or ''} | {r.group} | {numbers} | {_cell(problems)} |")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> Path:
        """Write ``report.json`` and ``report.md`` into `out`."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "report.json", json.dumps(self.to_dict(), indent=2))
        atomic_write_text(out / "report.md", self.to_markdown())
        return out


def _mean_cell(data: dict, metric: str, subject: str) -> str:
    """A mean, with its count when some items lack the number."""
    if subject not in data["means"][metric]:
        return ""
    count = data["counts"][metric][subject]
    return _fmt(data["means"][metric][subject]) + ("" if count == data["items"] else f" (n={count})")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell(text: str, width: int = 200) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _report(stage: str, results: list[ItemResult], config: StageConfig,
            criteria_fn: Callable[[Means, str], list[Criterion]], judged_groups: Sequence[str], started: float,
            left_out: Sequence[dict] = ()) -> StageReport:
    groups = {}
    for group in (ALL, FULL_BAND, NARROW_BAND):
        members = [r for r in results if group == ALL or r.group == group]
        if members:
            means, counts = group_means(members)
            groups[group] = {"items": len(members), "means": means, "counts": counts}
    criteria = [c for group in judged_groups for c in criteria_fn(groups.get(group, {}).get("means", {}), group)]
    settings = {"asr": config.asr_model, "sim": config.sim_model}
    if stage == "vocoder":
        settings["griffin_lim_iterations"] = config.griffin_lim_iterations
    elif stage == "tone-color":
        settings.update({"tau": config.tau, "seed": config.seed})
    elif stage in ("edit", "dit-conversion"):
        settings.update({"steps": config.refiner_steps, "cfg_strength": config.cfg_strength, "seed": config.seed})
    else:
        settings.update({"refiner_steps": config.refiner_steps, "cfg_strength": config.cfg_strength, "seed": config.seed})
    return StageReport(stage, results, groups, criteria, settings, _labels(stage, config),
                       time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)), time.time() - started,
                       left_out=list(left_out))


# ---------------------------------------------------------------------------------------------------------
# The `ar` engine for the full harness (`timbre eval --engine ar`)


def ar_engine_fn(seed: int = 0) -> "EngineFn":
    """Load the shipped `ar` engine once and return the harness function that clones each prompt and speaks with
    `seed`."""
    from tts.synthesis import load_engine, synthesize
    from tts.voice import clone_voice

    engine = load_engine()

    def engine_fn(target_text: str, prompt_audio: Audio, prompt_text: str, *, style=None, style_ref=None) -> Audio:
        return synthesize(target_text, clone_voice(prompt_audio, prompt_text), emotion=style, style_ref=style_ref,
                          seed=seed, models=engine)

    return engine_fn
