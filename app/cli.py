"""`timbre studio`: serve the Gradio studio."""

from __future__ import annotations

import functools
import os


def register(subparsers) -> None:
    """Add ``timbre studio``."""
    parser = subparsers.add_parser("studio", help="serve the web studio (http://127.0.0.1:7860)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--voices", help="voice library folder (default: $TIMBRE_CACHE/voices or ~/.cache/timbre/voices)")
    for part in ("tokenizer", "lm", "refiner", "vocoder"):
        parser.add_argument(f"--{part}", help=f"the ar engine's {part} checkpoint (folder or hub id; default: shipped)")
    parser.add_argument("--dit", help="the dit engine's DiT checkpoint, for Speak and Edit (folder or hub id; default: "
                                      "shipped); its aligner and vocoder are the shipped ones")
    parser.add_argument("--distilled-refiner", help="the self-distilled refiner of Convert's distilled timbre swap "
                                                    "(folder or hub id; default: shipped); other parts as the ar engine's")
    parser.set_defaults(func=_run_studio)


def _run_studio(args) -> int:
    # The studio works offline: no analytics calls, no telemetry.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from app.layout import build_studio, launch_studio
    from tts.voice_library import VoiceLibrary

    factories = {}
    parts = {part: getattr(args, part) for part in ("tokenizer", "lm", "refiner", "vocoder") if getattr(args, part)}
    if parts:
        from tts.synthesis import load_engine

        factories["engine_factory"] = functools.partial(load_engine, **parts)
    if args.dit:
        from tts.dit.engine import load_dit_engine

        factories["dit_engine_factory"] = functools.partial(load_dit_engine, dit=args.dit)
    if args.distilled_refiner:
        from tts.synthesis import load_engine

        others = {part: name for part, name in parts.items() if part != "refiner"}
        factories["distilled_engine_factory"] = functools.partial(load_engine, **others, refiner=args.distilled_refiner)
    demo = build_studio(library=VoiceLibrary(args.voices) if args.voices else None, **factories)
    print(f"Timbre Studio on http://{args.host}:{args.port}")
    launch_studio(demo, args.host, args.port)
    return 0
