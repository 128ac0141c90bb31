"""The summary, labels and files of an evaluation run: ``report.json``, ``report.md``, ``plots/*.png``."""

from __future__ import annotations

import json
import logging
import os
import statistics
from typing import TYPE_CHECKING

from tts.evaluation import asr as asr_module
from tts.evaluation import similarity as sim_module
from tts.evaluation.quality import DNSMOS_LABEL
from tts.evaluation.wer import summarize_wer

if TYPE_CHECKING:
    from tts.evaluation.harness import EvalConfig, EvalReport, UtteranceResult

logger = logging.getLogger(__name__)

_PROSODY_LABELS = {
    "f0_mean_hz": "mean F0 of voiced frames, Hz (pyin)",
    "f0_range_semitones": "F0 range, 5th-95th percentile, semitones",
    "f0_mean_diff_semitones": "mean F0 of the output minus that of its prompt, semitones (0 = same pitch)",
    "voiced_fraction": "voiced frames / active frames",
    "energy_std_db": "spread of frame level over the active span, dB",
    "speaking_rate": "phones per second over the active span (syllables/s when the phonemizer is missing)",
}


def labels_for(config: EvalConfig) -> dict[str, str]:
    """What each reported number is, naming the model and saying it is a proxy."""
    labels = {
        asr_module.metric_key(config.asr_model): (
            f"WER of {asr_module.WhisperASR(config.asr_model).label}, Whisper English normalizer on both sides; "
            "mean of per-utterance WER, and the count above 50 %"
        ),
        sim_module.metric_key(config.sim_model): f"cosine similarity of the output to its prompt: {sim_module.label(config.sim_model)}",
        "dnsmos_ovrl": f"{DNSMOS_LABEL}: overall",
        "dnsmos_sig": f"{DNSMOS_LABEL}: speech signal",
        "dnsmos_bak": f"{DNSMOS_LABEL}: background",
        "rtf": "real-time factor: synthesis seconds / output seconds, on this machine (lower is faster)",
    }
    labels.update(_PROSODY_LABELS)
    return labels


def _stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "mean": None, "median": None, "min": None, "max": None}
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarize(results: list[UtteranceResult]) -> dict:
    """Counts by status and the aggregate of every metric over the scored (not failed) utterances."""
    scored = [r for r in results if r.status != "failed"]
    summary: dict = {
        "utterances": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "flagged": sum(r.status == "flagged" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "failed_by_stage": {},
    }
    for result in results:
        if result.status == "failed":
            stage = result.failure_stage or "unknown"
            summary["failed_by_stage"][stage] = summary["failed_by_stage"].get(stage, 0) + 1
    keys: list[str] = []
    for result in scored:
        keys.extend(key for key in result.metrics if key not in keys)
    for key in keys:
        values = [float(r.metrics[key]) for r in scored if r.metrics.get(key) is not None]
        summary[key] = summarize_wer(values).to_dict() if key.startswith("wer_") else _stats(values)
    timed = [r for r in scored if r.synthesis_seconds is not None and r.duration_seconds]
    audio_seconds = sum(r.duration_seconds for r in timed)
    summary["rtf"] = sum(r.synthesis_seconds for r in timed) / audio_seconds if audio_seconds else None
    summary["audio_seconds"] = audio_seconds
    return summary


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: str, width: int = 70) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_markdown(report: EvalReport, plot_files: list[str]) -> str:
    """The human-readable report."""
    summary, labels = report.summary, report.labels
    lines = [
        f"# Evaluation: `{report.engine}` on `{report.testset}`",
        "",
        f"Started {report.started}; {summary['utterances']} utterances in {report.wall_seconds:.0f} s: "
        f"{summary['ok']} ok, {summary['flagged']} flagged, {summary['failed']} failed. Machine: "
        f"{report.machine.get('cpu_count')} CPUs, load average {report.machine.get('load_average_1_5_15_min')} "
        "at the end (a busy machine inflates the RTF).",
        "",
        "All numbers are CPU proxies of the field's protocol (see the labels); do not compare them with "
        "published Seed-TTS-eval figures.",
        "",
        "## Summary",
        "",
        "| metric | value | what it is |",
        "|---|---|---|",
    ]
    for key, value in summary.items():
        if not isinstance(value, dict) or key == "failed_by_stage":
            continue
        if key.startswith("wer_"):
            shown = f"mean {_fmt(value['mean'])}, median {_fmt(value['median'])}, >50 %: {value['above_50']} of {value['count']}"
        else:
            shown = f"mean {_fmt(value['mean'])} (min {_fmt(value['min'])}, max {_fmt(value['max'])}, n={value['count']})"
        lines.append(f"| `{key}` | {shown} | {labels.get(key, '')} |")
    lines.append(f"| `rtf` | {_fmt(summary.get('rtf'))} | {labels['rtf']} |")
    problems = [r for r in report.results if r.status != "ok"]
    if problems or report.parse_errors:
        lines += ["", "## Failures and flags", ""]
        lines += [f"- test set: {error}" for error in report.parse_errors]
        for result in problems:
            reason = f"{result.failure_stage}: {result.failure}" if result.status == "failed" else "; ".join(result.flags)
            lines.append(f"- `{result.utt}` **{result.status}**: {_cell(reason, 300)}")
    wer_key = next((k for k in summary if k.startswith("wer_")), None)
    sim_key = next((k for k in summary if k.startswith("sim_")), None)
    lines += [
        "",
        "## Utterances",
        "",
        "| utt | status | WER | SIM | DNSMOS OVRL | RTF | transcript |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.results:
        lines.append(
            f"| {r.utt} | {r.status} | {_fmt(r.metrics.get(wer_key) if wer_key else None, 2)} | "
            f"{_fmt(r.metrics.get(sim_key) if sim_key else None)} | {_fmt(r.metrics.get('dnsmos_ovrl'), 2)} | "
            f"{_fmt(r.rtf, 2)} | {_cell(r.transcript or r.failure or '')} |"
        )
    if plot_files:
        lines += ["", "## Plots", ""]
        lines += [f"![{os.path.basename(name)}]({name})" for name in plot_files]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, plot_samples: dict | None) -> None:
    """Write ``report.json``, ``report.md`` and (unless `plot_samples` is None) the plots."""
    plot_files: list[str] = []
    if plot_samples is not None:
        from tts.evaluation.plots import draw_run_plots

        try:
            plot_files = draw_run_plots(report, plot_samples, report.out_dir / "plots")
        except Exception as error:  # noqa: BLE001 - a plotting problem must not lose the measurements
            logger.warning("plots could not be drawn: %s", error)
    out = report.out_dir
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report, [os.path.relpath(p, out) for p in plot_files]), encoding="utf-8")
