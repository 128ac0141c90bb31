"""`timbre eval`, `timbre eval-stage`, `timbre eval-long` and `timbre bench`."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from tts.errors import TimbreError


def register(subparsers) -> None:
    """Add ``timbre eval``, ``timbre bench``, ``timbre eval-long`` and ``timbre eval-stage``."""
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
    evaluate.add_argument("--seed", type=int, default=0, help="seed of every synthesis (default 0; a base speaker's "
                          "rendering is fixed). Runs at several seeds show how much a number moves with the seed")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N utterances")
    evaluate.add_argument("--asr", default="tiny.en",
                          help="Whisper model for WER: tiny.en (offline proxy, default) or large-v3 (download)")
    evaluate.add_argument("--sim", default="resemblyzer",
                          help="speaker encoder for SIM: resemblyzer (offline proxy, default) or wavlm-base-plus-sv")
    evaluate.add_argument("--metrics", default="wer,sim,dnsmos,prosody",
                          help="comma-separated subset of wer,sim,dnsmos,prosody,style to compute (style is added "
                          "when --styles is given)")
    evaluate.add_argument("--styles", help="comma-separated emotion labels: speak every item in each (e.g. "
                          "neutral,happy,sad,angry,surprised,calm,whisper); adds the style metric")
    evaluate.add_argument("--intensities", default="1",
                          help="with --styles: comma-separated intensities, 0 to 2 (default 1; neutral is asked at 0)")
    evaluate.add_argument("--style-ref-voice",
                          help="with --styles: give the engine each style as a clip of this held-out voice "
                          "(style_ref=) instead of the emotion label, e.g. pw0111")
    evaluate.add_argument("--style-classifier", default="style_classifier",
                          help="checkpoint of the style metric (default: the shipped style_classifier)")
    evaluate.add_argument("--paired-style-classifier", default="style_classifier_paired",
                          help="checkpoint of the style metric's paired score (default: the shipped "
                          "style_classifier_paired; 'none' to skip it)")
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

    long_text = subparsers.add_parser(
        "eval-long",
        help="say a long held-out paragraph in one call and check every sentence is said once (ASR)",
        description="Say the held-out texts joined into a paragraph of at least --chars characters with an engine, "
        "transcribe it whole with Whisper and judge every sentence: skipped (most of its words missing from the "
        "transcript) or repeated (said again among the transcript's extra words). Writes report.json, report.md and the wav; "
        "exit status 0 when no sentence is skipped or repeated, 1 otherwise (tts.evaluation.long_text).",
    )
    long_text.add_argument("--engine", default="ar", help="ar, dit or base+convert (default ar: the engine whose "
                           "long-text alignment this check was made for)")
    long_text.add_argument("--chars", type=int, default=2000, help="paragraph length in characters (default 2000)")
    long_text.add_argument("--voice", default="flite:awb",
                           help="base voice whose clip is the prompt (default flite:awb, held out from training)")
    long_text.add_argument("--seed", type=int, default=0, help="synthesis seed (default 0)")
    long_text.add_argument("--verify", action="store_true", help="synthesize with verify=True (ASR-checked chunks)")
    long_text.add_argument("--asr", default="tiny.en", help="Whisper model (default tiny.en, offline)")
    long_text.add_argument("--out", type=Path, help="run folder (default: runs/eval/long-ENGINE-TIME)")
    long_text.set_defaults(func=_run_long_text)

    _register_eval_stage(subparsers)


def _run_long_text(args) -> int:
    from tts.data.speakers import synthesize_voice_id
    from tts.evaluation.long_text import DEFAULT_PROMPT_TEXT, evaluate_long_text
    from tts.synthesis import SYNTHESIS_ENGINES, synthesize
    from tts.voice import clone_voice

    if args.engine not in SYNTHESIS_ENGINES:
        raise TimbreError(f"unknown engine {args.engine!r}; choose one of {', '.join(SYNTHESIS_ENGINES)}")
    if args.chars < 1:
        raise TimbreError(f"--chars must be at least 1, got {args.chars}")
    voice = clone_voice(synthesize_voice_id(args.voice, DEFAULT_PROMPT_TEXT).audio, DEFAULT_PROMPT_TEXT)
    settings = {"engine": args.engine, "voice": args.voice, "seed": args.seed, "verify": args.verify,
                "chars": args.chars}
    report, audio = evaluate_long_text(
        lambda text: synthesize(text, voice, engine=args.engine, seed=args.seed, verify=args.verify),
        args.chars, args.asr, settings)
    out = args.out or Path("runs") / "eval" / f"long-{args.engine}-{time.strftime('%Y%m%d-%H%M%S')}"
    report.write(out)
    audio.save(out / "paragraph.wav")
    print(report.to_markdown().split("| # |")[0].rstrip())
    print(f"\nrun folder: {out}")
    return 0 if report.verdict == "PASS" else 1


_STAGE_HELP = {
    "vocoder": "copy synthesis: clip -> mel -> vocoder vs Griffin-Lim vs the original (PESQ-wb, STOI, DNSMOS, WER, SIM)",
    "reconstruction": "tokens of an utterance + another utterance of the same voice as prompt -> refiner -> vocoder",
    "conversion": "tokens of voice A + a prompt of voice B -> refiner -> vocoder (SIM to B and A, WER, F0 correlation)",
    "tone-color": "voice A's clip -> tone-color converter with voice B's tone color -> vocoder (SIM gain, WER, F0 correlation)",
    "dit-conversion": "voice A's clip (transcribed offline) said again by the dit engine in voice B's voice "
                      "(SIM to B and A, WER, F0 correlation)",
    "edit": "held-out recordings edited by the dit engine: 1 and 3 words replaced, speed x0.7 and x1.3 (WER, SIM, kept samples)",
    "distillation": "the conversion pairs through the refiner before and after self-distillation (SIM to B and A, WER, F0 correlation)",
}


def _register_eval_stage(subparsers) -> None:
    """``timbre eval-stage {vocoder,reconstruction,conversion,tone-color,dit-conversion,edit,distillation}`` (see
    `tts.evaluation.stages`)."""
    from tts.engines import DISTILLED_REFINER
    from tts.evaluation.stages import EDIT_WORD_SETS

    stage_parser = subparsers.add_parser(
        "eval-stage",
        help="measure one trained stage (vocoder, reconstruction, conversion, tone-color, dit-conversion, edit, "
        "distillation) against its done-criteria",
        description="Score a trained stage on held-out voices and texts and judge it against its issue's done-criteria: "
        "report.json, report.md (criteria with PASS/FAIL, means, every item) and wavs in a run folder. Exit status 0 "
        "when every criterion passes, 1 otherwise.",
    )
    stage_parser.set_defaults(func=lambda args: (stage_parser.print_help(), 2)[1])
    stages = stage_parser.add_subparsers(dest="stage", metavar="STAGE")
    for stage, help_text in _STAGE_HELP.items():
        parser = stages.add_parser(stage, help=help_text, description=help_text)
        options = []
        if stage == "tone-color":
            parser.add_argument("--converter", default="converter", help="tone-color converter folder or shipped name (default: converter)")
            options.append("converter")
        elif stage in ("edit", "dit-conversion"):
            parser.add_argument("--dit", default="dit", help="DiT folder or shipped name (default: dit)")
            parser.add_argument("--tokenizer", default="speech_tokenizer", help="aligner (speech tokenizer) folder or shipped name")
            options += ["dit", "tokenizer"]
        elif stage == "distillation":
            parser.add_argument("--tokenizer", default="speech_tokenizer", help="speech tokenizer folder or shipped name (default: speech_tokenizer)")
            parser.add_argument("--before", default="flow_refiner", help="the refiner before self-distillation (default: flow_refiner)")
            parser.add_argument("--refiner", default=DISTILLED_REFINER,
                                help=f"the self-distilled refiner, folder or shipped name (default: {DISTILLED_REFINER})")
            options += ["tokenizer", "before", "refiner"]
        elif stage != "vocoder":
            parser.add_argument("--tokenizer", default="speech_tokenizer", help="speech tokenizer folder or shipped name (default: speech_tokenizer)")
            parser.add_argument("--refiner", default="flow_refiner", help="flow refiner folder or shipped name (default: flow_refiner)")
            options += ["tokenizer", "refiner"]
        parser.add_argument("--vocoder", default="vocoder", help="vocoder folder or shipped name (default: vocoder)")
        parser.add_argument("--limit", type=int, help="number of items (default 12)")
        parser.add_argument("--voices", help="comma-separated held-out voices, VOICE or VOICE@16k (default: a mix of "
                            "held-out synthesizer voices and pseudo-speakers, 24 and 16 kHz alternating)")
        parser.add_argument("--asr", default="tiny.en", help="Whisper model for WER (default tiny.en, the offline proxy)")
        parser.add_argument("--sim", default="resemblyzer", help="speaker encoder for SIM (default resemblyzer)")
        options += ["vocoder", "limit", "voices", "asr", "sim"]
        if stage == "vocoder":
            parser.add_argument("--griffin-lim-iterations", type=int, help="Griffin-Lim baseline iterations (default 32)")
            options.append("griffin_lim_iterations")
        elif stage == "tone-color":
            parser.add_argument("--tau", type=float, default=0.3, help="converter temperature (default 0.3)")
            parser.add_argument("--seed", type=int, default=0, help="seed of the converter's noise (default 0)")
            options += ["tau", "seed"]
        elif stage in ("edit", "dit-conversion"):
            parser.add_argument("--steps", type=int, help="DiT ODE steps (default: 1 from a guide, 8 from noise)")
            parser.add_argument("--cfg-strength", type=float,
                                help="DiT guidance (default: 0 from a guide, 2 from noise)")
            parser.add_argument("--seed", type=int, default=0, help="seed of the DiT's noise (default 0)")
            options += ["steps", "cfg_strength", "seed"]
            if stage == "edit":
                parser.add_argument("--edit-words", default=",".join(EDIT_WORD_SETS),
                                    help="which new words to put in, comma-separated: plausible (an editor's change, "
                                    "judged by the criteria), nonsense (a stress test) (default: both)")
                options.append("edit_words")
        else:
            parser.add_argument("--steps", type=int, help="refiner ODE steps (default: synthesize()'s)")
            parser.add_argument("--cfg-strength", type=float, help="refiner guidance (default: synthesize()'s)")
            parser.add_argument("--seed", type=int, default=0, help="seed of the refiner's noise (default 0)")
            options += ["steps", "cfg_strength", "seed"]
        parser.add_argument("--out", type=Path, help="run folder (default: runs/eval/stage-STAGE-TIME)")
        parser.add_argument("--no-wavs", action="store_true", help="do not write the clips and outputs")
        parser.set_defaults(func=_run_eval_stage, stage_options=options + ["out"])


def _stage_command(args) -> str:
    """The command line that reproduces this run, defaults spelled out."""
    import shlex

    words = ["timbre", "eval-stage", args.stage]
    for name in args.stage_options:
        value = getattr(args, name)
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    if args.no_wavs:
        words.append("--no-wavs")
    return " ".join(shlex.quote(word) for word in words)


def _edit_words(args) -> tuple[str, ...]:
    """``--edit-words`` as a tuple of `EDIT_WORD_SETS` names; an unknown one is refused."""
    from tts.evaluation.stages import EDIT_WORD_SETS

    if getattr(args, "edit_words", None) is None:
        return EDIT_WORD_SETS
    words = tuple(dict.fromkeys(w.strip() for w in args.edit_words.split(",") if w.strip()))
    unknown = [w for w in words if w not in EDIT_WORD_SETS]
    if unknown or not words:
        raise TimbreError(f"--edit-words: {', '.join(unknown) or 'nothing given'}; choose from {', '.join(EDIT_WORD_SETS)}")
    return words


def _run_eval_stage(args) -> int:
    from tts.evaluation import stages

    args.limit = args.limit or stages.DEFAULT_LIMIT
    if args.stage == "vocoder":
        args.griffin_lim_iterations = args.griffin_lim_iterations or stages.GRIFFIN_LIM_ITERATIONS
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    try:
        plan = stages.plan_items(args.stage, args.limit, voices)
    except ValueError as error:
        raise TimbreError(str(error)) from error
    for spec in dict.fromkeys(v for p in plan for v in (p.source_voice, p.prompt_voice) if v):
        stages.parse_voice_spec(spec)  # refuse a training voice before loading anything
    config = stages.StageConfig(asr_model=args.asr, sim_model=args.sim, seed=getattr(args, "seed", 0),
                                refiner_steps=getattr(args, "steps", None), cfg_strength=getattr(args, "cfg_strength", None),
                                griffin_lim_iterations=getattr(args, "griffin_lim_iterations", None) or stages.GRIFFIN_LIM_ITERATIONS,
                                tau=getattr(args, "tau", 0.3), edit_words=_edit_words(args))
    models = _load_stage_models(args)
    out = args.out or Path("runs") / "eval" / f"stage-{args.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"rendering {len(plan)} held-out items (cached after the first run) ...", file=sys.stderr)
    items = stages.load_items(plan)
    done = []

    def progress(result) -> None:
        done.append(result)
        shown = result.failure or "; ".join(f"{m} {s} {v:.3f}" for m, row in result.metrics.items()
                                            for s, v in row.items() if v is not None and m.startswith(("wer", "sim")))
        print(f"[{len(done)}/{len(items)}] {result.item_id} {result.voice}: {shown[:150]}", file=sys.stderr)

    wav_dir = None if args.no_wavs else out / "wavs"
    if args.stage == "vocoder":
        report = stages.evaluate_vocoder(models["vocoder"], items, config, wav_dir, progress)
    elif args.stage == "tone-color":
        from tts.tone_color import ToneColorEngine

        report = stages.evaluate_tone_color(ToneColorEngine(models["converter"], models["vocoder"]), items, config,
                                            wav_dir, progress)
    elif args.stage in ("edit", "dit-conversion"):
        from tts.dit.engine import DitEngine

        evaluate = stages.evaluate_editing if args.stage == "edit" else stages.evaluate_dit_conversion
        report = evaluate(DitEngine(models["dit"], models["tokenizer"], models["vocoder"]), items, config, wav_dir,
                          progress)
    elif args.stage == "distillation":
        report = stages.evaluate_distillation(models["tokenizer"], models["before"], models["refiner"], models["vocoder"],
                                              items, config, wav_dir, progress)
    else:
        evaluate = stages.evaluate_reconstruction if args.stage == "reconstruction" else stages.evaluate_conversion
        report = evaluate(models["tokenizer"], models["refiner"], models["vocoder"], items, config, wav_dir, progress)
    report.models = {part: str(getattr(args, part)) for part in models}
    report.command = _stage_command(args)
    report.write(out)
    print(report.to_markdown().split("## Metrics")[0].rstrip())
    print(f"\nrun folder: {out}")
    return 0 if report.verdict == "PASS" else 1


def _load_stage_models(args) -> dict:
    from vocoder.vocos import Vocos

    models = {"vocoder": Vocos.from_pretrained(args.vocoder).float().eval()}
    if args.stage == "tone-color":
        from converter.openvoice import ToneColorConverter

        models["converter"] = ToneColorConverter.from_pretrained(args.converter).float().eval()
    elif args.stage in ("edit", "dit-conversion"):
        from tts.dit.model import DiT
        from tts.tokenizer.model import SpeechTokenizer

        models["dit"] = DiT.from_pretrained(args.dit).float().eval()
        models["tokenizer"] = SpeechTokenizer.from_pretrained(args.tokenizer).float().eval()
    elif args.stage != "vocoder":
        from tts.refiner.model import FlowRefiner
        from tts.tokenizer.model import SpeechTokenizer

        models["tokenizer"] = SpeechTokenizer.from_pretrained(args.tokenizer).float().eval()
        models["refiner"] = FlowRefiner.from_pretrained(args.refiner).float().eval()
        if args.stage == "distillation":
            models["before"] = FlowRefiner.from_pretrained(args.before).float().eval()
    return models


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

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    styles = tuple(s.strip().lower() for s in args.styles.split(",") if s.strip()) if args.styles else ()
    if styles and "style" not in metrics:
        metrics += ("style",)
    try:
        intensities = tuple(float(v) for v in args.intensities.split(",") if v.strip())
    except ValueError:
        raise TimbreError(f"--intensities takes comma-separated numbers, got {args.intensities!r}") from None
    if args.style_ref_voice:
        from tts.evaluation.stages import parse_voice_spec

        parse_voice_spec(args.style_ref_voice)  # a held-out voice only, refused before anything loads
    try:
        config = EvalConfig(metrics=metrics, asr_model=args.asr, sim_model=args.sim, plots=not args.no_plots,
                            styles=styles, intensities=intensities, style_ref_voice=args.style_ref_voice,
                            style_classifier=args.style_classifier,
                            paired_style_classifier=None if args.paired_style_classifier.lower() == "none"
                            else args.paired_style_classifier)
    except ValueError as error:
        raise TimbreError(str(error)) from error
    engine_fn = resolve_engine(args.engine, seed=args.seed)
    print(f"loading test set {args.testset} (made on first use) ...", file=sys.stderr)
    testset = load_testset(args.testset)
    out = args.out or Path("runs") / "eval" / f"{_slug(args.engine)}-{_slug(Path(args.testset).stem)}-{time.strftime('%Y%m%d-%H%M%S')}"

    def progress(done: int, total: int, result) -> None:
        shown = result.failure if result.status == "failed" else (result.transcript or "")
        print(f"[{done}/{total}] {result.utt} {result.status}: {shown[:70]}", file=sys.stderr)

    engine_name = args.engine if args.seed == 0 else f"{args.engine} (seed {args.seed})"
    report = evaluate(engine_fn, testset, out, engine_name=engine_name, limit=args.limit, config=config,
                      progress=progress)
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
