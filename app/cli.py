"""`timbre studio`: serve the Gradio studio."""

from __future__ import annotations

import os


def register(subparsers) -> None:
    """Add ``timbre studio``."""
    parser = subparsers.add_parser("studio", help="serve the web studio (http://127.0.0.1:7860)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.set_defaults(func=_run_studio)


def _run_studio(args) -> int:
    # The studio works offline: no analytics calls, no telemetry.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from app.studio import build_studio

    demo = build_studio()
    print(f"Timbre Studio on http://{args.host}:{args.port}")
    demo.queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=args.host, server_port=args.port, show_error=True, quiet=True
    )
    return 0
