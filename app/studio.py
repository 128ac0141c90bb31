"""The Gradio studio: a thin client of the `tts` library (no model logic here)."""

from __future__ import annotations

import gradio as gr

from tts import __version__
from tts.engines import engine_status


def engines_markdown() -> str:
    """The engine table shown on the page: which engines run here and why the others do not."""
    rows = ["| engine | status | |", "| --- | --- | --- |"]
    for status in engine_status():
        rows.append(f"| `{status.name}` | {'available' if status.available else 'unavailable'} | {status.reason} |")
    return "\n".join(rows)


def build_studio() -> gr.Blocks:
    """Build the studio's Blocks app (not launched)."""
    with gr.Blocks(title="Timbre Studio", analytics_enabled=False) as demo:
        gr.Markdown(f"# Timbre Studio {__version__}\nExpressive zero-shot text-to-speech and voice cloning.")
        with gr.Tab("About"):
            gr.Markdown("## Engines\n" + engines_markdown(), elem_id="engine-table")
    return demo
