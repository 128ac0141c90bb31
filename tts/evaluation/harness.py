"""`evaluate`: synthesize a test set with an engine, score every utterance, write the run folder.

Per utterance: WER (Whisper tiny.en by default), SIM of the output against its prompt (Resemblyzer by
default), DNSMOS, prosody (F0, energy, speaking rate), style (the label the style classifier hears,
`tts.evaluation.style_classifier`, against the one asked for) and the real-time factor.

Styled runs (`EvalConfig.styles`, ``timbre eval --styles happy,sad --intensities 0.5,1``): every item is spoken
once per style and intensity (utterance ids ``UTT~happy@0.5``), the engine getting ``style=`` (a `tts.style.Style`).
The classifier reads absolute level as the renderings have it (neutral at -26 dBFS); when neutral is among the
styles (it is then asked first), each item's outputs are moved onto that scale by the item's neutral output before
they are classified (``details["style"]["level_offset_db"]``), so an engine's own output level is not read as a style;
after the run, the paired classifier (`EvalConfig.paired_style_classifier`) hears each output against the engine's
neutral outputs of the *other* items spoken with the same prompt clip (``style_paired_correct``; items whose prompt
no other item shares get no paired score);
with `EvalConfig.style_ref_voice` the engine gets no emotion but ``style_ref=``: a held-out voice's clip of another
text rendered in that style, and the style metric checks that the output is heard in the clip's style. The report
then adds accuracy and prosody statistics per style and intensity, and WER and SIM against the neutral requests
(`tts.evaluation.report.style_summary`).

A broken input or output never stops the run; it is recorded on its utterance:

* ``failed``: nothing could be scored. Stage ``prompt`` (missing, unreadable, silent or too short
  prompt clip), ``engine`` (the engine raised) or ``output`` (not audio, silent or too short).
* ``flagged``: scored, but suspicious: WER above 50 % (wrong language, garbled or hallucinated speech),
  Whisper looping, or a metric that could not be computed. Flagged utterances count in the means, as in
  Seed-TTS-eval.

The run folder holds ``report.json``, ``report.md``, ``wavs/`` (the outputs) and ``plots/``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tts.audio import Audio, load_audio
from tts.data.styles import NEUTRAL_LEVEL_DBFS
from tts.evaluation import asr as asr_module
from tts.evaluation import similarity as sim_module
from tts.evaluation.adapters import EngineFn, heard_voices
from tts.evaluation.testsets import TestItem, TestSet
from tts.evaluation.wer import UNINTELLIGIBLE_WER, wer_details

logger = logging.getLogger(__name__)

MIN_PROMPT_SECONDS = 1.0
"""A prompt shorter than this cannot carry a voice."""
MIN_OUTPUT_SECONDS = 0.3
SILENCE_PEAK = 1e-3
"""A clip whose peak is below this (-60 dBFS) is silent."""
LOOPING_COMPRESSION_RATIO = 2.4
"""Whisper's own threshold: a transcript that compresses this well is repeating itself."""

METRICS = ("wer", "sim", "dnsmos", "prosody", "style")
DEFAULT_METRICS = ("wer", "sim", "dnsmos", "prosody")
"""What a run measures unless told otherwise (``style`` is added when styles are requested)."""

Progress = Callable[[int, int, "UtteranceResult"], None]


@dataclass
class UtteranceResult:
    """Everything measured (or what went wrong) for one test item."""

    utt: str
    target_text: str
    prompt_wav: str
    status: str = "ok"
    """``ok``, ``flagged`` (scored, with `flags`) or ``failed`` (see `failure`)."""
    failure_stage: str | None = None
    failure: str | None = None
    flags: list[str] = field(default_factory=list)
    output_wav: str | None = None
    duration_seconds: float | None = None
    synthesis_seconds: float | None = None
    rtf: float | None = None
    transcript: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    style: dict | None = None
    """In a styled run, what was asked (`StyleRequest.record`): emotion, intensity, expected label, style clip."""

    @property
    def item(self) -> str:
        """The test item's id: `utt` without a styled run's ``~style@intensity`` suffix."""
        return self.utt.split("~", 1)[0]

    def fail(self, stage: str, reason: str) -> "UtteranceResult":
        self.status, self.failure_stage, self.failure = "failed", stage, reason
        return self

    def flag(self, reason: str) -> None:
        self.flags.append(reason)
        if self.status == "ok":
            self.status = "flagged"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` measures and with which models."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    asr_model: str = asr_module.DEFAULT_ASR_MODEL
    sim_model: str = sim_module.DEFAULT_SIM_MODEL
    plots: bool = True
    plot_samples: int = 3
    """Utterances whose F0 contours and spectrograms are drawn."""
    styles: tuple[str, ...] = ()
    """Emotion labels to ask for (empty: the engine's default, no ``style=``); each item is spoken in each."""
    intensities: tuple[float, ...] = (1.0,)
    """Intensities of each styled request (``neutral`` is asked once, at 0)."""
    style_ref_voice: str | None = None
    """With `styles`: give the engine the style as a clip of this held-out voice (``style_ref=``) instead."""
    style_classifier: str = "style_classifier"
    """Checkpoint of the ``style`` metric (folder or shipped name)."""
    paired_style_classifier: str | None = "style_classifier_paired"
    """Checkpoint of the ``style`` metric's paired score (``style_paired_correct``); None: none."""

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(sorted(unknown))}; choose from {', '.join(METRICS)}")
        from tts.style import Style, check_control

        for label in self.styles:
            if len(Style(label).emotion) != 1:
                raise ValueError(f"--styles takes single labels, got {label!r}")
        if not self.intensities:
            raise ValueError("give at least one intensity")
        for value in self.intensities:
            check_control("intensity", value)
        if self.style_ref_voice is not None:
            if not self.styles:
                raise ValueError("a style reference voice needs styles to render its clips in (--styles)")
            if any(value > 1 for value in self.intensities):
                raise ValueError("style reference clips are rendered at intensities from 0 to 1")


@dataclass(frozen=True)
class StyleRequest:
    """One style an item is spoken in: the engine's keywords and the label the output should be heard in."""

    suffix: str
    """Appended to the utterance id: ``~happy@0.5``."""
    style: object = None
    """A `tts.style.Style`, passed as ``style=`` (None with a style clip)."""
    style_ref: Audio | None = None
    expected: str = "neutral"
    record: dict = field(default_factory=dict)

    def engine_kwargs(self) -> dict:
        return {"style": self.style, **({"style_ref": self.style_ref} if self.style_ref is not None else {})}


def style_requests(config: EvalConfig, item_index: int = 0) -> list[StyleRequest | None]:
    """What each item is spoken in: ``[None]`` (the engine's default) for an unstyled run, else one request per
    style and intensity (neutral once). With a style reference voice, each request carries a clip of that voice
    reading a held-out prompt text (chosen by `item_index`) in the style (`tts.evaluation.stages.heldout_clip`)."""
    if not config.styles:
        return [None]
    from tts.style import Style

    requests: list[StyleRequest | None] = []
    for label in sorted(dict.fromkeys(config.styles), key=lambda name: name != "neutral"):  # neutral first
        for intensity in ([0.0] if Style(label).dominant == "neutral" else config.intensities):
            expected = label if intensity > 0 else "neutral"
            record = {"emotion": label, "intensity": float(intensity), "expected": expected}
            suffix = f"~{label}@{intensity:g}"
            if config.style_ref_voice is None:
                requests.append(StyleRequest(suffix, Style(label, intensity=intensity), None, expected, record))
                continue
            from tts.evaluation.stages import heldout_clip
            from tts.evaluation.testsets import heldout_prompt_texts

            texts = heldout_prompt_texts()
            text = texts[item_index % len(texts)]
            clip = heldout_clip(config.style_ref_voice, text, style=label, intensity=float(intensity))
            record.update({"style_ref_voice": config.style_ref_voice, "style_ref_text": text})
            requests.append(StyleRequest(suffix, None, clip.audio, expected, record))
    return requests


def _silence_reason(audio: Audio, what: str, min_seconds: float) -> str | None:
    if len(audio) == 0:
        return f"{what} is empty"
    if not np.all(np.isfinite(audio.samples)):
        return f"{what} contains NaN or infinite samples"
    if audio.duration < min_seconds:
        return f"{what} is {audio.duration:.2f} s long; at least {min_seconds:.1f} s is needed"
    peak = float(np.max(np.abs(audio.samples)))
    if peak < SILENCE_PEAK:
        return f"{what} is silent (peak {20 * math.log10(max(peak, 1e-12)):.0f} dBFS)"
    return None


class _PromptCache:
    """Prompt clips, their embeddings and F0 statistics, each computed once per run (prompts repeat)."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self._classifier = None
        self.neutral_level: dict[str, float] = {}
        """Active level (dBFS) of each item's neutral output in a styled run, by item id (`_score`'s style)."""
        self._audio: dict[Path, Audio | str] = {}
        self._embedding: dict[Path, np.ndarray] = {}
        self._prosody: dict[Path, object] = {}

    def audio(self, path: Path) -> Audio | str:
        """The prompt clip, or why it cannot be used."""
        if path not in self._audio:
            try:
                audio = load_audio(path)
                self._audio[path] = _silence_reason(audio, "the prompt clip", MIN_PROMPT_SECONDS) or audio
            except (ValueError, OSError) as error:
                self._audio[path] = str(error)
        return self._audio[path]

    def style_classifier(self):
        """The ``style`` metric's classifier, loaded on first use."""
        if self._classifier is None:
            from tts.evaluation.style_classifier import load_style_classifier

            self._classifier = load_style_classifier(self.config.style_classifier)
        return self._classifier

    def embedding(self, path: Path, audio: Audio) -> np.ndarray:
        if path not in self._embedding:
            self._embedding[path] = sim_module.speaker_embedding(audio, self.config.sim_model)
        return self._embedding[path]

    def prosody(self, path: Path, audio: Audio, text: str):
        from tts.evaluation.prosody import f0_track, prosody_stats

        if path not in self._prosody:
            track = f0_track(audio, method="praat")
            self._prosody[path] = (track, prosody_stats(audio, text, track))
        return self._prosody[path]


def _safe_name(utt: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", utt)[:120] or "utt"


def _score(result: UtteranceResult, item: TestItem, output: Audio, prompt: Audio, prompts: _PromptCache,
           config: EvalConfig, keep: dict) -> None:
    """Fill `result.metrics`; a metric that raises becomes a flag, the others still run."""
    metrics = result.metrics

    def attempt(name: str, compute: Callable[[], None]) -> None:
        try:
            compute()
        except Exception as error:  # noqa: BLE001 - one metric failing must not lose the others
            logger.warning("%s: %s failed: %s", item.utt, name, error)
            result.flag(f"{name} failed: {type(error).__name__}: {error}")

    def intelligibility() -> None:
        recognizer = asr_module.get_asr(config.asr_model)
        transcript = recognizer.transcribe_detailed(output)
        result.transcript = transcript.text
        counts = wer_details(item.target_text, transcript.text)
        metrics[recognizer.metric_key] = counts.wer
        result.details["asr"] = transcript.to_dict()
        result.details["wer_counts"] = counts.to_dict()
        if counts.wer > UNINTELLIGIBLE_WER:
            result.flag(
                f"unintelligible: WER {counts.wer:.0%} > {UNINTELLIGIBLE_WER:.0%} "
                "(wrong language, garbled or hallucinated speech)"
            )
        if transcript.compression_ratio is not None and transcript.compression_ratio > LOOPING_COMPRESSION_RATIO:
            result.flag(f"Whisper looped (compression ratio {transcript.compression_ratio:.1f}): likely a hallucination")

    def speaker_similarity() -> None:
        reference = prompts.embedding(item.prompt_wav, prompt)
        embedding = sim_module.speaker_embedding(output, config.sim_model)
        metrics[sim_module.metric_key(config.sim_model)] = sim_module.cosine(embedding, reference)

    def signal_quality() -> None:
        from tts.evaluation.quality import dnsmos

        score = dnsmos(output)
        metrics.update({"dnsmos_ovrl": score.ovrl, "dnsmos_sig": score.sig, "dnsmos_bak": score.bak})

    def prosody() -> None:
        from tts.evaluation.prosody import f0_track, hz_to_semitones, prosody_stats

        track = f0_track(output, method="praat")
        stats = prosody_stats(output, item.target_text, track)
        prompt_track, prompt_stats = prompts.prosody(item.prompt_wav, prompt, item.prompt_text)
        metrics.update(
            {
                "f0_mean_hz": stats.f0_mean_hz,
                "f0_range_semitones": stats.f0_range_semitones,
                "f0_spread_semitones": stats.f0_spread_semitones,
                "voiced_fraction": stats.voiced_fraction,
                "energy_mean_db": stats.energy_mean_db,
                "energy_std_db": stats.energy_std_db,
                "speaking_rate": stats.speaking_rate,
            }
        )
        if stats.f0_mean_hz and prompt_stats.f0_mean_hz:
            metrics["f0_mean_diff_semitones"] = float(
                hz_to_semitones(stats.f0_mean_hz) - hz_to_semitones(prompt_stats.f0_mean_hz)
            )
        result.details["prosody"] = stats.to_dict()
        result.details["prompt_prosody"] = prompt_stats.to_dict()
        if len(keep) < config.plot_samples:
            keep[item.utt] = (output, track, prompt_track)

    def style() -> None:
        from tts.evaluation.prosody import MIN_VOICED_FRAMES, f0_track, hz_to_semitones
        from tts.evaluation.style_features import FEATURE_NAMES, style_features

        track = f0_track(output, method="praat")
        features = style_features(output, track)
        named = dict(zip(FEATURE_NAMES, features.tolist()))
        # The classifier reads absolute level on the renderings' scale (neutral at NEUTRAL_LEVEL_DBFS); an engine
        # has its own output level, so a styled run that asks for neutral puts each item's outputs on that scale
        # by the item's neutral output (neutral is asked first).
        level = FEATURE_NAMES.index("level_dbfs")
        if result.style and result.style["expected"] == "neutral":
            prompts.neutral_level[item.utt] = float(features[level])
        offset = NEUTRAL_LEVEL_DBFS - prompts.neutral_level[item.utt] if item.utt in prompts.neutral_level else 0.0
        calibrated = features.copy()
        calibrated[level] += offset
        prediction = prompts.style_classifier().predict_features(calibrated)
        expected = result.style["expected"] if result.style else "neutral"
        voiced = hz_to_semitones(track.f0[np.isfinite(track.f0)])
        enough = named["has_f0"] and len(voiced) >= MIN_VOICED_FRAMES
        if result.style and "style_ref_heard" in result.style:
            metrics["style_ref_match"] = float(prediction.label == result.style["style_ref_heard"])
        metrics.update({
            "style_correct": float(prediction.label == expected),
            "style_confidence": prediction.probabilities.get(expected, 0.0),
            "style_f0_median_st": float(np.median(voiced)) if enough else None,
            "style_f0_range_st": named["f0_range_st"] if named["has_f0"] else None,
            "style_f0_spread_st": float(np.subtract(*np.percentile(voiced, [75, 25]))) if enough else None,
            "style_level_dbfs": named["level_dbfs"],
        })
        result.details["style"] = {**prediction.to_dict(), "expected": expected, "level_offset_db": offset,
                                   "features": features.tolist()}

    timing = result.details.setdefault("metric_seconds", {})
    for name, compute in (("wer", intelligibility), ("sim", speaker_similarity), ("dnsmos", signal_quality),
                          ("prosody", prosody), ("style", style)):
        if name in config.metrics:
            start = time.perf_counter()
            attempt(name, compute)
            timing[name] = time.perf_counter() - start


def score_paired_styles(results: list[UtteranceResult], classifier) -> None:
    """Add ``style_paired_correct`` to the styled results: `classifier` (a paired style classifier) hears each
    output against the mean style features of the neutral outputs of the other items that share its prompt clip
    (the engine's own neutral speech of other texts in that voice). Results without such a partner are left
    without the score."""
    def features(result: UtteranceResult):
        style = result.details.get("style") or {}
        return None if result.status == "failed" or "features" not in style else np.asarray(style["features"])

    neutral = [r for r in results if r.style and r.style["expected"] == "neutral" and features(r) is not None]
    for result in results:
        own = features(result)
        if own is None or not result.style:
            continue
        partners = [r for r in neutral if r.prompt_wav == result.prompt_wav and r.item != result.item]
        if not partners:
            continue
        baseline = np.mean([features(r) for r in partners], axis=0)
        prediction = classifier.predict_features(own, baseline)
        expected = result.style["expected"]
        result.metrics["style_paired_correct"] = float(prediction.label == expected)
        result.details["style"]["paired"] = {**prediction.to_dict(), "neutral_items": [r.item for r in partners]}


def evaluate_item(
    engine_fn: EngineFn,
    item: TestItem,
    wav_dir: Path,
    config: EvalConfig,
    prompts: _PromptCache,
    keep: dict,
    request: StyleRequest | None = None,
) -> UtteranceResult:
    """Synthesize and score one item (in `request`'s style); never raises for bad input or a failing engine."""
    utt = item.utt + (request.suffix if request is not None else "")
    result = UtteranceResult(utt, item.target_text, str(item.prompt_wav),
                             style=dict(request.record) if request is not None else None)
    prompt = prompts.audio(item.prompt_wav)
    if isinstance(prompt, str):
        return result.fail("prompt", prompt)
    if request is not None and request.style_ref is not None and "style" in config.metrics:
        # The match rate compares the output with what the classifier hears in the clip itself.
        result.style["style_ref_heard"] = prompts.style_classifier().classify(request.style_ref).label
    start = time.perf_counter()
    try:
        kwargs = request.engine_kwargs() if request is not None else {}
        output = engine_fn(item.target_text, prompt, item.prompt_text, **kwargs)
    except Exception as error:  # noqa: BLE001 - the engine under test may fail in any way
        logger.warning("%s: the engine raised %s: %s", item.utt, type(error).__name__, error)
        return result.fail("engine", f"{type(error).__name__}: {error}")
    result.synthesis_seconds = time.perf_counter() - start
    if not isinstance(output, Audio):
        return result.fail("output", f"the engine returned {type(output).__name__}, not Audio")
    result.duration_seconds = output.duration
    reason = _silence_reason(output, "the output", MIN_OUTPUT_SECONDS)
    if reason is not None:
        return result.fail("output", reason)
    result.rtf = result.synthesis_seconds / output.duration
    result.output_wav = str(output.save(wav_dir / f"{_safe_name(utt)}.wav"))
    _score(result, item, output, prompt, prompts, config, keep)
    return result


@dataclass
class EvalReport:
    """A finished run: settings, per-utterance results and the summary."""

    engine: str
    testset: str
    out_dir: Path
    config: EvalConfig
    results: list[UtteranceResult]
    parse_errors: list[str]
    summary: dict
    labels: dict[str, str]
    started: str
    wall_seconds: float

    machine: dict = field(default_factory=dict)
    left_out: list[dict] = field(default_factory=list)
    """Items not evaluated because their prompt is in a voice the engine speaks with itself (`left_out_items`)."""

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "machine": self.machine,
            "testset": self.testset,
            "started": self.started,
            "wall_seconds": self.wall_seconds,
            "config": asdict(self.config),
            "labels": self.labels,
            "summary": self.summary,
            "parse_errors": self.parse_errors,
            "left_out": self.left_out,
            "utterances": [result.to_dict() for result in self.results],
        }


def left_out_items(items: list[TestItem], heard: Sequence[str]) -> tuple[list[TestItem], list[dict]]:
    """`items` without those whose prompt voice (where the set names it) is made of a voice in `heard`, the voices
    the engine speaks with itself (`tts.evaluation.adapters.heard_voices`), and a record of each left out."""
    from tts.evaluation.testsets import split_heard

    kept, left = split_heard(items, lambda item: item.prompt_voice, heard)
    why = f"the engine speaks with {', '.join(heard)} itself"
    return kept, [{"utt": item.utt, "prompt_voice": item.prompt_voice, "why": why} for item in left]


def evaluate(
    engine_fn: EngineFn,
    testset: TestSet,
    out_dir: str | Path,
    engine_name: str = "engine",
    limit: int | None = None,
    config: EvalConfig | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Synthesize every item of `testset` with `engine_fn`, score it, and write the run folder.

    Args:
        engine_fn: ``(target_text, prompt_audio, prompt_text) -> Audio``; in a styled run (`EvalConfig.styles`)
            it must take the keywords ``style=`` and ``style_ref=`` (`tts.evaluation.adapters.accepts_style`).
        out_dir: the run folder (made if missing).
        engine_name: how the report names the engine.
        limit: evaluate only the first `limit` items.
        progress: called after each utterance with (done, total, result).
    """
    from tts.evaluation.bench import machine_info
    from tts.evaluation.report import labels_for, summarize, write_report

    config = config or EvalConfig()
    if config.styles:
        from tts.errors import TimbreError
        from tts.evaluation.adapters import accepts_style

        if not accepts_style(engine_fn):
            raise TimbreError(f"engine {engine_name!r} takes no style= keyword, so it cannot be asked for styles")
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    items, left_out = left_out_items(testset.limit(limit).items, heard_voices(engine_fn))
    prompts = _PromptCache(config)
    keep: dict = {}
    results = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    clock = time.perf_counter()
    jobs = [(item, request) for index, item in enumerate(items) for request in style_requests(config, index)]
    for done, (item, request) in enumerate(jobs, start=1):
        result = evaluate_item(engine_fn, item, wav_dir, config, prompts, keep, request)
        results.append(result)
        if progress is not None:
            progress(done, len(jobs), result)
    if config.styles and "style" in config.metrics and config.paired_style_classifier:
        from tts.errors import CheckpointError
        from tts.evaluation.style_classifier import load_style_classifier

        try:  # a missing or refused checkpoint costs the paired score, not the run
            score_paired_styles(results, load_style_classifier(config.paired_style_classifier))
        except CheckpointError as error:
            logger.warning("no paired style score: %s", error)
    report = EvalReport(
        engine=engine_name,
        testset=testset.name,
        out_dir=out_dir,
        config=config,
        results=results,
        parse_errors=[str(error) for error in testset.errors],
        summary=summarize(results),
        labels=labels_for(config),
        started=started,
        wall_seconds=time.perf_counter() - clock,
        machine=machine_info(),
        left_out=left_out,
    )
    write_report(report, plot_samples=keep if config.plots else None)
    return report
