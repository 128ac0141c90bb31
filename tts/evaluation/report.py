"""The summary, labels and files of an evaluation run: ``report.json``, ``report.md``, ``plots/*.png``."""

from __future__ import annotations

import json
import logging
import math
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
    "f0_mean_hz": "mean F0 of voiced frames, Hz (Praat pitch)",
    "f0_range_semitones": "F0 range, 5th-95th percentile, semitones",
    "f0_spread_semitones": "F0 spread, 25th-75th percentile, semitones (robust to octave errors of the pitch tracker)",
    "f0_mean_diff_semitones": "mean F0 of the output minus that of its prompt, semitones (0 = same pitch)",
    "voiced_fraction": "voiced frames / active frames",
    "energy_mean_db": "mean frame level over the active span, dBFS",
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
    labels.update(_STYLE_LABELS)
    return labels


_STYLE_LABELS = {
    "style_correct": "1 when the style classifier (checkpoints/style_classifier, rendered styles of held-out voices) "
                     "hears the style asked for (neutral at intensity 0), else 0: its mean is the style accuracy",
    "style_paired_correct": "1 when the paired style classifier (checkpoints/style_classifier_paired), hearing the "
                            "output against the engine's neutral outputs of other texts with the same prompt, hears "
                            "the style asked for, else 0",
    "style_confidence": "the classifier's probability of the style asked for",
    "style_ref_match": "with a style clip: 1 when the output is heard in the style the classifier hears in the clip",
    "style_f0_median_st": "median F0 of voiced frames, semitones above 55 Hz (Praat pitch, style features)",
    "style_f0_range_st": "F0 range, 5th-95th percentile, semitones (Praat pitch, style features)",
    "style_f0_spread_st": "F0 spread, 25th-75th percentile, semitones (Praat pitch)",
    "style_level_dbfs": "active speech level, dBFS (style features)",
}

_STYLE_MEANS = ("style_correct", "style_paired_correct", "style_ref_match", "style_confidence", "style_f0_median_st",
                "style_f0_range_st", "style_f0_spread_st", "style_level_dbfs", "f0_range_semitones",
                "f0_spread_semitones", "energy_mean_db", "speaking_rate")
"""Metrics averaged per style and intensity in `style_summary` (with the run's WER and SIM)."""

TREND_STATISTICS = {
    "style_level_dbfs": "energy_db",
    "style_f0_median_st": "pitch_shift",
    "style_f0_range_st": "pitch_range",
    "style_f0_spread_st": "pitch_range",
}
"""Statistics followed across intensities (`intensity_trends`), each with the `StyleParams` setting whose sign
(a ratio's logarithm, `LOG_FIELDS`) says which way a label should move it."""

STYLE_GROUP = ("neutral", "whisper", "angry")
"""The issue's three-way check: accuracy over the requests for these labels."""


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def intensity_trends(scored: list[UtteranceResult]) -> dict:
    """For each label asked at an intensity above 0: each `TREND_STATISTICS` averaged per intensity over the items
    measured at every intensity (the item's neutral request is intensity 0 unless the label was asked at 0), the
    direction the label's setting moves it (+1, -1; statistics of a label that does not move them are left out)
    and whether the mean moves that way at every step."""
    from tts.data.styles import LOG_FIELDS, STYLE_TABLE

    neutral = {r.item: r for r in scored if r.style["emotion"] == "neutral"}
    by_label: dict[str, dict[float, dict[str, UtteranceResult]]] = {}
    for r in scored:
        if r.style["emotion"] in STYLE_TABLE and r.style["emotion"] != "neutral":
            by_label.setdefault(r.style["emotion"], {}).setdefault(float(r.style["intensity"]), {})[r.item] = r
    trends: dict = {}
    for label, levels in by_label.items():
        if neutral and 0.0 not in levels:
            levels = {0.0: neutral, **levels}
        intensities = sorted(levels)
        if len(intensities) < 2:
            continue
        for key, setting in TREND_STATISTICS.items():
            value = getattr(STYLE_TABLE[label], setting)
            value = math.log(value) if setting in LOG_FIELDS else value
            if abs(value) < 1e-9:
                continue
            measured = [{item for item, r in levels[x].items() if r.metrics.get(key) is not None} for x in intensities]
            items = sorted(set.intersection(*measured))
            if not items:
                continue
            means = [statistics.fmean(float(levels[x][item].metrics[key]) for item in items) for x in intensities]
            direction = 1 if value > 0 else -1
            trends.setdefault(label, {})[key] = {
                "direction": direction, "intensities": intensities, "means": means, "items": len(items),
                "monotonic": all((after - before) * direction > 0 for before, after in zip(means, means[1:])),
            }
    return trends


def style_summary(results: list[UtteranceResult]) -> dict:
    """Per requested style and intensity: count, style accuracy, WER, SIM and prosody means, and WER and SIM
    minus those of the neutral requests; accuracy per label (over its intensities) and over `STYLE_GROUP`.
    Empty for an unstyled run."""
    scored = [r for r in results if r.status != "failed" and r.style]
    if not scored:
        return {}
    wer_key = next((k for r in scored for k in r.metrics if k.startswith("wer_")), None)
    sim_key = next((k for r in scored for k in r.metrics if k.startswith("sim_")), None)
    keys = [k for k in (wer_key, sim_key) if k] + list(_STYLE_MEANS)
    groups: dict[str, list] = {}
    for r in scored:
        groups.setdefault(f"{r.style['emotion']}@{r.style['intensity']:g}", []).append(r)

    def means(rows: list) -> dict:
        out: dict = {"count": len(rows)}
        for key in keys:
            out[key] = _mean([float(r.metrics[key]) for r in rows if r.metrics.get(key) is not None])
        return out

    by_request = {name: means(rows) for name, rows in groups.items()}
    neutral = means([r for r in scored if r.style["expected"] == "neutral"])
    for row in by_request.values():
        for key in (wer_key, sim_key):
            if key and row.get(key) is not None and neutral.get(key) is not None:
                row[f"{key}_minus_neutral"] = row[key] - neutral[key]
    def correct(rows: list, key: str = "style_correct") -> float | None:
        return _mean([r.metrics[key] for r in rows if r.metrics.get(key) is not None])

    def paired(rows: list) -> float | None:
        return correct(rows, "style_paired_correct")
    by_label = {}
    for r in scored:
        by_label.setdefault(r.style["expected"], []).append(r)
    matches = [r.metrics["style_ref_match"] for r in scored if r.metrics.get("style_ref_match") is not None]
    return {
        "accuracy": correct(scored),
        "style_ref_match_rate": _mean(matches),
        "accuracy_by_label": {label: correct(rows) for label, rows in by_label.items()},
        "accuracy_neutral_whisper_angry": correct([r for r in scored if r.style["expected"] in STYLE_GROUP]),
        "paired_accuracy": paired(scored),
        "paired_accuracy_by_label": {label: paired(rows) for label, rows in by_label.items()},
        "paired_accuracy_neutral_whisper_angry": paired([r for r in scored if r.style["expected"] in STYLE_GROUP]),
        "paired_count": sum(r.metrics.get("style_paired_correct") is not None for r in scored),
        "by_request": by_request,
        "neutral": neutral,
        "intensity_trends": intensity_trends(scored),
    }


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
    styles = style_summary(results)
    if styles:
        summary["styles"] = styles
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
        if not isinstance(value, dict) or key in ("failed_by_stage", "styles"):
            continue
        if key.startswith("wer_"):
            shown = f"mean {_fmt(value['mean'])}, median {_fmt(value['median'])}, >50 %: {value['above_50']} of {value['count']}"
        else:
            shown = f"mean {_fmt(value['mean'])} (min {_fmt(value['min'])}, max {_fmt(value['max'])}, n={value['count']})"
        lines.append(f"| `{key}` | {shown} | {labels.get(key, '')} |")
    lines.append(f"| `rtf` | {_fmt(summary.get('rtf'))} | {labels['rtf']} |")
    if "styles" in summary:
        lines += ["", *_style_markdown(summary["styles"], labels)]
    if report.left_out:
        voices = ", ".join(sorted({entry["prompt_voice"] for entry in report.left_out}))
        lines += ["", f"Left out: {len(report.left_out)} item(s) whose prompt is in a voice the engine speaks with "
                  f"itself ({voices}), so not held out from it."]
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


def _style_markdown(styles: dict, labels: dict[str, str]) -> list[str]:
    """The "Styles" section: accuracy, then one row per requested style and intensity."""
    by_label = ", ".join(f"{label} {_fmt(value, 2)}" for label, value in styles["accuracy_by_label"].items())
    lines = ["## Styles", "",
             f"Style accuracy {_fmt(styles['accuracy'])} (by label: {by_label}); neutral vs whisper vs angry "
             f"{_fmt(styles['accuracy_neutral_whisper_angry'])}"
             + (f"; output heard as its style clip is heard: {_fmt(styles['style_ref_match_rate'])}"
                if styles.get("style_ref_match_rate") is not None else "")
             + f". {labels.get('style_correct', '')}.", ""]
    if styles.get("paired_accuracy") is not None:
        paired = ", ".join(f"{label} {_fmt(value, 2)}" for label, value in styles["paired_accuracy_by_label"].items()
                           if value is not None)
        lines += [f"Paired style accuracy {_fmt(styles['paired_accuracy'])} over {styles['paired_count']} outputs "
                  f"(by label: {paired}); neutral vs whisper vs angry "
                  f"{_fmt(styles['paired_accuracy_neutral_whisper_angry'])}. {labels.get('style_paired_correct', '')}.",
                  ""]
    rows = styles["by_request"]
    first = next(iter(rows.values()))
    wer_key = next((k for k in first if k.startswith("wer_") and not k.endswith("_minus_neutral")), None)
    sim_key = next((k for k in first if k.startswith("sim_") and not k.endswith("_minus_neutral")), None)
    lines += ["| style@intensity | n | accuracy | paired | WER | WER - neutral | SIM | SIM - neutral | F0 median st | "
              "F0 range st | F0 spread st | level dBFS |", "|---" * 12 + "|"]
    for name, row in rows.items():
        get = lambda key: row.get(key) if key else None  # noqa: E731
        lines.append(f"| {name} | {row['count']} | {_fmt(row['style_correct'], 2)} | "
                     f"{_fmt(row['style_paired_correct'], 2)} | {_fmt(get(wer_key))} | "
                     f"{_fmt(get(wer_key and wer_key + '_minus_neutral'))} | {_fmt(get(sim_key))} | "
                     f"{_fmt(get(sim_key and sim_key + '_minus_neutral'))} | {_fmt(row['style_f0_median_st'], 2)} | "
                     f"{_fmt(row['style_f0_range_st'], 2)} | {_fmt(row['style_f0_spread_st'], 2)} | "
                     f"{_fmt(row['style_level_dbfs'], 1)} |")
    trends = styles.get("intensity_trends") or {}
    if trends:
        lines += ["", "### Intensity trends", "",
                  "Each statistic's mean per intensity over the items measured at every intensity (0 is the item's "
                  "neutral request), and whether it moves the way the label's settings move it at every step.", "",
                  "| label | statistic | items | means by intensity | direction | moves that way |", "|---" * 6 + "|"]
        for label, stats in trends.items():
            for key, trend in stats.items():
                means = " / ".join(f"{x:g}: {_fmt(m, 2)}" for x, m in zip(trend["intensities"], trend["means"]))
                lines.append(f"| {label} | {key} | {trend['items']} | {means} | "
                             f"{'up' if trend['direction'] > 0 else 'down'} | {'yes' if trend['monotonic'] else 'no'} |")
    return lines


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
