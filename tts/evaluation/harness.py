"""`evaluate`: synthesize a test set with an engine, score every utterance, write the run folder.

Per utterance: WER (Whisper tiny.en by default), SIM of the output against its prompt (Resemblyzer by
default), DNSMOS, prosody (F0, energy, speaking rate) and the real-time factor. A broken input or output
never stops the run; it is recorded on its utterance:

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
from typing import Callable

import numpy as np

from tts.audio import Audio, load_audio
from tts.evaluation import asr as asr_module
from tts.evaluation import similarity as sim_module
from tts.evaluation.adapters import EngineFn
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

METRICS = ("wer", "sim", "dnsmos", "prosody")

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

    metrics: tuple[str, ...] = METRICS
    asr_model: str = asr_module.DEFAULT_ASR_MODEL
    sim_model: str = sim_module.DEFAULT_SIM_MODEL
    plots: bool = True
    plot_samples: int = 3
    """Utterances whose F0 contours and spectrograms are drawn."""

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(sorted(unknown))}; choose from {', '.join(METRICS)}")


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

    def embedding(self, path: Path, audio: Audio) -> np.ndarray:
        if path not in self._embedding:
            self._embedding[path] = sim_module.speaker_embedding(audio, self.config.sim_model)
        return self._embedding[path]

    def prosody(self, path: Path, audio: Audio, text: str):
        from tts.evaluation.prosody import f0_track, prosody_stats

        if path not in self._prosody:
            track = f0_track(audio)
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

        track = f0_track(output)
        stats = prosody_stats(output, item.target_text, track)
        prompt_track, prompt_stats = prompts.prosody(item.prompt_wav, prompt, item.prompt_text)
        metrics.update(
            {
                "f0_mean_hz": stats.f0_mean_hz,
                "f0_range_semitones": stats.f0_range_semitones,
                "voiced_fraction": stats.voiced_fraction,
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

    timing = result.details.setdefault("metric_seconds", {})
    for name, compute in (("wer", intelligibility), ("sim", speaker_similarity), ("dnsmos", signal_quality),
                          ("prosody", prosody)):
        if name in config.metrics:
            start = time.perf_counter()
            attempt(name, compute)
            timing[name] = time.perf_counter() - start


def evaluate_item(
    engine_fn: EngineFn,
    item: TestItem,
    wav_dir: Path,
    config: EvalConfig,
    prompts: _PromptCache,
    keep: dict,
) -> UtteranceResult:
    """Synthesize and score one item; never raises for bad input or a failing engine."""
    result = UtteranceResult(item.utt, item.target_text, str(item.prompt_wav))
    prompt = prompts.audio(item.prompt_wav)
    if isinstance(prompt, str):
        return result.fail("prompt", prompt)
    start = time.perf_counter()
    try:
        output = engine_fn(item.target_text, prompt, item.prompt_text)
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
    result.output_wav = str(output.save(wav_dir / f"{_safe_name(item.utt)}.wav"))
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
            "utterances": [result.to_dict() for result in self.results],
        }


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
        engine_fn: ``(target_text, prompt_audio, prompt_text) -> Audio``.
        out_dir: the run folder (made if missing).
        engine_name: how the report names the engine.
        limit: evaluate only the first `limit` items.
        progress: called after each utterance with (done, total, result).
    """
    from tts.evaluation.bench import machine_info
    from tts.evaluation.report import labels_for, summarize, write_report

    config = config or EvalConfig()
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    items = testset.limit(limit).items
    prompts = _PromptCache(config)
    keep: dict = {}
    results = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    clock = time.perf_counter()
    for done, item in enumerate(items, start=1):
        result = evaluate_item(engine_fn, item, wav_dir, config, prompts, keep)
        results.append(result)
        if progress is not None:
            progress(done, len(items), result)
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
    )
    write_report(report, plot_samples=keep if config.plots else None)
    return report
