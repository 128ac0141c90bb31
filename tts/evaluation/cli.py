"""`timbre eval` and `timbre bench`."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from tts.errors import TimbreError


def register(subparsers) -> None:
    """Add ``timbre eval`` and ``timbre bench``."""
    evaluate = subparsers.add_parser(
        "eval",
        help="synthesize a test set and score it (WER, SIM, DNSMOS, prosody; CPU proxies)",
        description=(
            "Synthesize a test set with an engine and write report.json, report.md, wavs and plots into a run "
            "folder. Engines: base:ENGINE:VOICE (a base speaker, which ignores the prompt: the no-cloning "
            "floor), or a studio engine (ar, dit, base+convert) once trained. With --pairs, measure the SIM "
            "ceiling (same voice) and floor (different voices) instead."
        ),
    )
    evaluate.add_argument("--engine", help="engine name, e.g. base:kokoro:jf_alpha, base:piper:joe, ar")
    evaluate.add_argument("--set", dest="testset", default="heldout-en",
                          help="built-in set (heldout-en, smoke) or a meta file path (default: heldout-en)")
    evaluate.add_argument("--out", type=Path, help="run folder (default: runs/eval/ENGINE-SET-TIME)")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N utterances")
    evaluate.add_argument("--asr", default="tiny.en",
                          help="Whisper model for WER: tiny.en (offline proxy, default) or large-v3 (download)")
    evaluate.add_argument("--sim", default="resemblyzer",
                          help="speaker encoder for SIM: resemblyzer (offline proxy, default) or wavlm-base-plus-sv")
    evaluate.add_argument("--metrics", default="wer,sim,dnsmos,prosody", help="comma-separated subset to compute")
    evaluate.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    evaluate.add_argument("--pairs", action="store_true", help="measure the SIM floor and ceiling of the base voices")
    evaluate.add_argument("--voices", help="with --pairs: comma-separated voice ids (default: eight base voices)")
    evaluate.set_defaults(func=_run_eval)

    bench = subparsers.add_parser(
        "bench",
        help="measure load time, RTF, time to first audio and peak RSS against Kokoro and Piper",
        description="Benchmark every engine and component that exists, with ratios to the reference engines "
        "(Kokoro-82M int8, Piper joe) measured in the same run. Each target runs in a fresh process.",
    )
    bench.add_argument("--quick", action="store_true", help="2 texts, 2 repeats, a few targets (about a minute)")
    bench.add_argument("--targets", help="comma-separated target names (the references are always included)")
    bench.add_argument("--repeats", type=int, help="timed runs per text after the warm-up (default 3, quick 2)")
    bench.add_argument("--out", type=Path, help="also write bench.json and bench.md into this folder")
    bench.add_argument("--list", action="store_true", help="list the targets and exit")
    bench.set_defaults(func=_run_bench)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _run_eval(args) -> int:
    if args.pairs:
        return _run_pairs(args)
    if not args.engine:
        raise TimbreError("choose an engine with --engine (e.g. base:kokoro:jf_alpha), or use --pairs")
    from tts.evaluation.adapters import resolve_engine
    from tts.evaluation.harness import EvalConfig, evaluate
    from tts.evaluation.testsets import load_testset

    config = EvalConfig(
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        asr_model=args.asr,
        sim_model=args.sim,
        plots=not args.no_plots,
    )
    engine_fn = resolve_engine(args.engine)
    print(f"loading test set {args.testset} (made on first use) ...", file=sys.stderr)
    testset = load_testset(args.testset)
    out = args.out or Path("runs") / "eval" / f"{_slug(args.engine)}-{_slug(Path(args.testset).stem)}-{time.strftime('%Y%m%d-%H%M%S')}"

    def progress(done: int, total: int, result) -> None:
        shown = result.failure if result.status == "failed" else (result.transcript or "")
        print(f"[{done}/{total}] {result.utt} {result.status}: {shown[:70]}", file=sys.stderr)

    report = evaluate(engine_fn, testset, out, engine_name=args.engine, limit=args.limit, config=config, progress=progress)
    print((out / "report.md").read_text(encoding="utf-8").split("## Utterances")[0].rstrip())
    print(f"\nrun folder: {out}")
    return 1 if report.results and report.summary["failed"] == len(report.results) else 0


def _run_pairs(args) -> int:
    from tts.evaluation.pairs import DEFAULT_PAIR_VOICES, sim_pairs

    voices = [v.strip() for v in args.voices.split(",")] if args.voices else list(DEFAULT_PAIR_VOICES)
    if len(voices) < 2:
        raise TimbreError("--voices needs at least two voice ids")
    report = sim_pairs(voices, model=args.sim)
    out = args.out or Path("runs") / "eval" / f"pairs-{time.strftime('%Y%m%d-%H%M%S')}"
    report.write(out)
    print(report.to_markdown())
    print(f"written to {out}")
    return 0


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value is not None and reference else "-"


def format_bench(report) -> str:
    """The bench table, with each number's ratio to each reference (x kokoro / x piper)."""
    refs = [report.result(name) for name in report.references]
    refs = [r for r in refs if r is not None and r.status == "measured"]
    short = {r.name: r.name.split(":")[1] if r.name.startswith("base:") else r.name for r in refs}
    ratio_head = " ".join(f"x{short[r.name]}" for r in refs)
    from tts.evaluation.bench import machine_info

    machine = machine_info()
    lines = [f"texts: {len(report.texts)}, timed runs each: {report.repeats} (after a warm-up); medians. "
             f"ratios are value / reference ({', '.join(r.name for r in refs) or 'no reference measured'})",
             f"{machine['cpu_count']} CPUs, load average now {machine['load_average_1_5_15_min']} "
             "(timings from a busy machine are only comparable as ratios within one run)", ""]
    header = f"{'target':32} {'load s':>7} {'s/text':>7} {'RTF':>6} {'TTFA s':>7} {'RSS MB':>7} {'+load':>6}   ratios ({ratio_head}) load | s/text | RTF | RSS"
    lines += [header, "-" * len(header)]
    skipped = []
    for r in report.results:
        if r.status != "measured":
            skipped.append(f"  {r.name}: {r.status}: {r.reason}")
            continue
        fmt = lambda v, d=2: f"{v:.{d}f}" if v is not None else "-"  # noqa: E731
        ratios = " | ".join(
            "/".join(_ratio(getattr(r, metric), getattr(ref, metric)) for ref in refs)
            for metric in ("load_seconds", "seconds_per_text", "rtf", "peak_rss_mb")
        )
        grown = r.peak_rss_mb - r.rss_before_load_mb if r.peak_rss_mb and r.rss_before_load_mb else None
        lines.append(
            f"{r.name:32} {fmt(r.load_seconds):>7} {fmt(r.seconds_per_text, 3):>7} {fmt(r.rtf, 3):>6} "
            f"{fmt(r.ttfa_seconds, 3):>7} {fmt(r.peak_rss_mb, 0):>7} {fmt(grown, 0):>6}   {ratios}"
        )
    if skipped:
        lines += ["", "not measured:"] + skipped
    lines += ["", "TTFA: only for targets that stream. RSS: peak resident memory of the target's own worker "
              "process (Python, torch and numpy included); +load: its growth from just before the load."]
    return "\n".join(lines)


def _run_bench(args) -> int:
    from tts.evaluation.bench import all_targets, run_bench
    from tts.evaluation.bench_targets import QUICK_TARGETS, QUICK_TEXTS

    if args.list:
        for name, target in all_targets().items():
            reason = target.unavailable()
            print(f"{name:32} {target.kind:13} {'ok' if reason is None else 'unavailable: ' + reason}  {target.description}")
        return 0
    names = [n.strip() for n in args.targets.split(",")] if args.targets else (list(QUICK_TARGETS) if args.quick else None)
    repeats = args.repeats or (2 if args.quick else 3)
    texts = list(QUICK_TEXTS) if args.quick else None
    try:
        report = run_bench(names, texts=texts, repeats=repeats,
                           progress=lambda r: print(f"  {r.name}: {r.status}", file=sys.stderr))
    except ValueError as error:
        raise TimbreError(str(error)) from error
    table = format_bench(report)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        (args.out / "bench.md").write_text(f"# timbre bench\n\n```\n{table}\n```\n", encoding="utf-8")
        print(f"\nwritten to {args.out}")
    measured = [r for r in report.results if r.status == "measured"]
    return 0 if measured else 1
