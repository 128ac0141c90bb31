"""The studio's page: `build_studio` lays out `app.studio.Studio`'s handlers as a Gradio Blocks app (Speak,
Convert, Edit, Voices, Batch and About tabs) and `launch_studio` serves it; the About view's Markdown helpers
(engines, shipped checkpoints, versions) and the page-only settings live here too.

The queue runs one model job (Speak, Convert or Edit) and one job of every other event at a time.
"""

from __future__ import annotations

import os
import platform
import secrets

import gradio as gr

from app.studio import (
    CONSENT_STATEMENT,
    DOWNLOAD_FORMATS,
    EDIT_SPEED,
    EDIT_WORDS,
    MAX_EDIT_CONTEXT,
    MAX_EDIT_STEPS,
    UI_MAX_BATCH_LINES,
    UI_MAX_SOURCE_SECONDS,
    UI_MAX_TAKES,
    UI_MAX_TEXT_CHARS,
    VOICE_FROM_CLIP,
    VOICE_FROM_LIBRARY,
    EngineFactory,
    Studio,
)
from tts import __version__
from tts.dit.engine import EDIT_CONTEXT_WORDS, MAX_EDIT_SECONDS
from tts.engines import engine_status
from tts.tone_color import DEFAULT_BASE, DEFAULT_TAU

QUEUE_MAX_SIZE = 32
MAX_UPLOAD = "100mb"
"""Largest file a browser may upload (a minute of 48 kHz stereo float WAV is 23 MB; a voice file at most 64 MiB)."""

TAGS_HELP = ("Inline tags change the style mid-text: `Good news! [whisper] keep it down [/whisper]`, "
             r"`[happy intensity=1.5] ... [/happy]`, `[pitch=3] ... [/]`; write `\[` for a literal bracket. "
             "All tags and controls: docs/styles.md.")
"""The help line under Speak's text box (the tag syntax is `tts.style.parse_style_tags`)."""

THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
"""System fonts only: the page loads nothing from outside the studio."""

BATCH_HEADERS = ["line", "id", "status", "voice", "style", "seconds", "text or reason"]
"""The columns of Batch's results table (the rows of `Studio.run_batch`, from `tts.data.batch.batch_rows`)."""


# -- About ---------------------------------------------------------------------------------------------


def engines_markdown() -> str:
    """The engine table shown on the page: which engines run here and why the others do not."""
    rows = ["| engine | status | |", "| --- | --- | --- |"]
    for status in engine_status():
        rows.append(f"| `{status.name}` | {'available' if status.available else 'unavailable'} | {status.reason} |")
    return "\n".join(rows)


def checkpoints_markdown() -> str:
    """The shipped checkpoints: their sizes on disk and versions (the first 12 hex digits of the weights' sha256
    in ``checkpoints/MANIFEST.json``: the same digits are the same weights, a new training run new ones)."""
    from tts.checkpoints import checkpoints_dir, list_shipped, read_manifest

    root = checkpoints_dir()
    names = list_shipped()
    if not names:
        return f"No checkpoints are shipped in `{root}` yet."
    try:
        manifest = read_manifest(root)
    except Exception:  # noqa: BLE001 - a damaged manifest leaves the versions unknown; the engines say why
        manifest = {}
    rows = ["| checkpoint | version (weights sha256) | size |", "| --- | --- | --- |"]
    for name in names:
        size = sum(path.stat().st_size for path in (root / name).rglob("*") if path.is_file())
        version = manifest.get(f"{name}/model.safetensors", {}).get("sha256", "")[:12] or "unlisted"
        rows.append(f"| `{name}` | `{version}` | {size / 2**20:.1f} MiB |")
    return "\n".join(rows)


def versions_markdown() -> str:
    """Versions of the studio and the libraries it runs on."""
    import numpy
    import torch

    return (f"timbre-studio {__version__} · Python {platform.python_version()} · torch {torch.__version__} · "
            f"numpy {numpy.__version__} · gradio {gr.__version__}")


# -- Layout --------------------------------------------------------------------------------------------


def base_speaker_choices() -> list[str]:
    """The base speakers `base+convert` can use here (`tts.data.speakers.all_voice_ids`), then ``"ar"``."""
    from tts.data.speakers import all_voice_ids

    return [*all_voice_ids(), "ar"]


def build_studio(engine_factory: EngineFactory | None = None, library=None,
                 work_dir: str | os.PathLike | None = None,
                 tone_engine_factory: EngineFactory | None = None,
                 dit_engine_factory: EngineFactory | None = None,
                 distilled_engine_factory: EngineFactory | None = None) -> gr.Blocks:
    """Build the studio's Blocks app with its queue set (not launched; see `launch_studio`). The factories are
    those of `Studio`."""
    from tts.data.speakers import all_voice_ids
    from tts.data.styles import STYLES
    from tts.style import CONTROL_RANGES
    from tts.synthesis import CONVERSION_ENGINES, SYNTHESIS_ENGINES

    studio = Studio(library, engine_factory, work_dir, tone_engine_factory, dit_engine_factory, distilled_engine_factory)
    bases = base_speaker_choices()
    with gr.Blocks(title="Timbre Studio", analytics_enabled=False) as demo:
        gr.Markdown(f"# Timbre Studio {__version__}\nExpressive zero-shot text-to-speech and voice cloning.")
        pending = gr.State(None)  # this session's cleaned, not yet saved voice

        with gr.Tab("Speak", id="speak"):
            with gr.Row():
                with gr.Column(scale=3):
                    text = gr.Textbox(label=f"Text (at most {UI_MAX_TEXT_CHARS:,} characters)", lines=4,
                                      max_length=UI_MAX_TEXT_CHARS, elem_id="speak-text")
                    gr.Markdown(TAGS_HELP, elem_id="speak-tags-help")
                    voice_from = gr.Radio([VOICE_FROM_LIBRARY, VOICE_FROM_CLIP], value=VOICE_FROM_LIBRARY,
                                          label="Voice from", elem_id="speak-voice-from")
                    speak_voice = gr.Dropdown([], label="Library voice", elem_id="speak-voice")
                    with gr.Group(visible=False) as clip_group:
                        clip = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                        label="Clip (5-12 s of clear speech)", elem_id="speak-clip")
                        clip_transcript = gr.Textbox(label="What the clip says (optional: Whisper transcribes it)")
                with gr.Column(scale=2):
                    first_speak = studio.default_engine(SYNTHESIS_ENGINES)
                    speak_engine = gr.Radio(studio.engine_choices(SYNTHESIS_ENGINES), value=first_speak,
                                            label="Engine", elem_id="speak-engine")
                    speak_engine_note = gr.Markdown(studio.engine_note(first_speak), elem_id="speak-engine-note")
                    with gr.Group(visible=first_speak == "base+convert") as base_group:
                        base = gr.Dropdown(bases, value=DEFAULT_BASE if DEFAULT_BASE in bases else bases[0],
                                           label="Base speaker (says the text; the converter gives it the voice)",
                                           elem_id="speak-base")
                        speak_tau = gr.Slider(0.0, 1.0, value=DEFAULT_TAU, step=0.05, elem_id="speak-tau",
                                              label="Tau (the converter's posterior temperature; 0: deterministic)")
                    style = gr.Dropdown(list(STYLES), value="neutral", label="Emotion", elem_id="speak-style")
                    mix = gr.Textbox(label="Emotion mix (optional; replaces the emotion above)", max_lines=1,
                                     placeholder="happy:0.7+sad:0.3", elem_id="speak-mix")
                    intensity = gr.Slider(*CONTROL_RANGES["intensity"], value=1.0, step=0.05, elem_id="speak-intensity",
                                          label="Intensity (0 neutral, 1 full, above 1 exaggerates)")
                    style_ref = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="speak-style-ref",
                                         label="Style reference (optional: the emotion and intensity come from this "
                                               "clip, the timbre from the voice; speed and prosody sliders act on top)")
                    speed = gr.Slider(*CONTROL_RANGES["speed"], value=1.0, step=0.05, label="Speed")
                    with gr.Accordion("Prosody", open=False, elem_id="speak-prosody"):
                        pitch = gr.Slider(*CONTROL_RANGES["pitch"], value=0.0, step=0.5, elem_id="speak-pitch",
                                          label="Pitch (semitones)")
                        pitch_range = gr.Slider(*CONTROL_RANGES["pitch_range"], value=1.0, step=0.05,
                                                elem_id="speak-pitch-range",
                                                label="Pitch range (x the melody's excursions; below 1 flatter)")
                        energy = gr.Slider(*CONTROL_RANGES["energy"], value=0.0, step=0.5, elem_id="speak-energy",
                                           label="Energy (dB)")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", minimum=0, elem_id="speak-seed")
                        dice = gr.Button("🎲 random seed", size="sm", elem_id="speak-dice")
                    takes = gr.Slider(1, UI_MAX_TAKES, value=1, step=1, elem_id="speak-takes",
                                      label="Takes (above 1: that many, seeds counting up from the seed; Whisper "
                                            "listens and the clearest is kept; no streaming)")
                    fmt = gr.Radio(list(DOWNLOAD_FORMATS), value="wav", label="Download format")
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary", elem_id="speak-generate")
                        speak_stop = gr.Button("Stop", variant="stop", elem_id="speak-stop")
            # Streamed: playback starts with the first piece of audio; the whole result is the download.
            speech = gr.Audio(label="Speech", streaming=True, autoplay=True, interactive=False,
                              elem_id="speak-output")
            download = gr.File(label="Download", interactive=False, elem_id="speak-download")
            speak_info = gr.Markdown(elem_id="speak-info")
            speak_plot = gr.Image(label="Waveform, spectrogram and pitch", type="filepath", interactive=False,
                                  elem_id="speak-plot")

        with gr.Tab("Convert", id="convert"):
            gr.Markdown("Say a recording again in another voice: the same words, timing and intonation. "
                        "`dit` has a base speaker say the recording's words to its melody, then the DiT say that "
                        "again in the voice; "
                        "`tone-color` changes only the timbre (OpenVoice); `distilled` and `ar` render the "
                        f"recording's speech tokens in the voice. At most {UI_MAX_SOURCE_SECONDS / 60:.0f} minutes.")
            first_convert = studio.default_engine(CONVERSION_ENGINES)
            with gr.Row():
                with gr.Column(scale=3):
                    source = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="convert-source",
                                      label="Speech to convert")
                    convert_source_text = gr.Textbox(label="What the recording says (dit; optional: Whisper "
                                                     "transcribes it)", elem_id="convert-source-text",
                                                     visible=first_convert == "dit")
                    convert_from = gr.Radio([VOICE_FROM_LIBRARY, VOICE_FROM_CLIP], value=VOICE_FROM_LIBRARY,
                                            label="Target voice from", elem_id="convert-voice-from")
                    convert_voice = gr.Dropdown([], label="Library voice", elem_id="convert-voice")
                    with gr.Group(visible=False) as convert_clip_group:
                        convert_clip = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                                label="Clip of the target voice (5-12 s of clear speech)",
                                                elem_id="convert-clip")
                        convert_transcript = gr.Textbox(label="What the clip says (optional: Whisper transcribes it)")
                with gr.Column(scale=2):
                    convert_engine = gr.Radio(studio.engine_choices(CONVERSION_ENGINES), value=first_convert,
                                              label="Engine", elem_id="convert-engine")
                    convert_engine_note = gr.Markdown(studio.engine_note(first_convert), elem_id="convert-engine-note")
                    convert_tau = gr.Slider(0.0, 1.0, value=DEFAULT_TAU, step=0.05, elem_id="convert-tau",
                                            visible=first_convert == "tone-color",
                                            label="Tau (the converter's posterior temperature; 0: deterministic)")
                    with gr.Row():
                        convert_seed = gr.Number(value=0, precision=0, label="Seed", minimum=0,
                                                 elem_id="convert-seed")
                        convert_dice = gr.Button("🎲 random seed", size="sm", elem_id="convert-dice")
                    convert_fmt = gr.Radio(list(DOWNLOAD_FORMATS), value="wav", label="Download format")
                    do_convert = gr.Button("Convert", variant="primary", elem_id="convert-run")
            converted = gr.Audio(label="Converted speech", type="filepath", interactive=False,
                                 elem_id="convert-output")
            convert_download = gr.File(label="Download", interactive=False, elem_id="convert-download")
            convert_info = gr.Markdown(elem_id="convert-info")

        with gr.Tab("Edit", id="edit"):
            gr.Markdown("Change words in a recording, or its speed, and keep the rest: only the changed words (and "
                        "the words next to them, as the context slider says) are said again, in the recording's "
                        "voice and pace (engine `dit`); everything else stays the recording's own audio. At most "
                        f"{MAX_EDIT_SECONDS:.0f} s: cut a longer recording first.")
            gr.Markdown(studio.engine_note("dit"), elem_id="edit-engine-note")
            with gr.Row():
                with gr.Column(scale=3):
                    edit_source = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="edit-source",
                                           label="Recording to edit")
                    edit_transcript = gr.Textbox(label="What it says now", lines=2, elem_id="edit-transcript")
                    with gr.Row():
                        edit_transcribe = gr.Button("Transcribe (Whisper)", size="sm", elem_id="edit-transcribe")
                        edit_last = gr.Button("Use the last Speak result", size="sm", elem_id="edit-last")
                        edit_align = gr.Button("Word timings", size="sm", elem_id="edit-align")
                    edit_timings = gr.Markdown(elem_id="edit-timings")
                with gr.Column(scale=2):
                    edit_mode = gr.Radio([EDIT_WORDS, EDIT_SPEED], value=EDIT_WORDS, label="Change",
                                         elem_id="edit-mode")
                    edit_new = gr.Textbox(label="What it should say (the whole text, with the words changed)",
                                          lines=2, elem_id="edit-new-transcript")
                    with gr.Group(visible=False) as edit_speed_group:
                        edit_factor = gr.Slider(*CONTROL_RANGES["speed"], value=1.0, step=0.05, elem_id="edit-factor",
                                                label="Speed (below 1 slower, above 1 faster)")
                        with gr.Row():
                            edit_start = gr.Number(0, label="Only from (s)", minimum=0, elem_id="edit-span-start")
                            edit_end = gr.Number(0, label="to (s; both 0: all of it)", minimum=0,
                                                 elem_id="edit-span-end")
                    edit_steps = gr.Slider(0, MAX_EDIT_STEPS, value=0, step=1, elem_id="edit-steps",
                                           label="Sampling steps (0: automatic, one from the guide voice, eight from "
                                                 "noise; more: slower)")
                    edit_context = gr.Slider(0, MAX_EDIT_CONTEXT, value=EDIT_CONTEXT_WORDS, step=1,
                                             elem_id="edit-context",
                                             label="Words said again on each side of a change (more: smoother "
                                                   "joins, less of the recording kept as it was)")
                    edit_takes = gr.Slider(1, UI_MAX_TAKES, value=1, step=1, elem_id="edit-takes",
                                           label="Takes of a word edit (above 1: that many, seeds counting up; "
                                                 "Whisper listens and the one saying the new text best is kept)")
                    with gr.Row():
                        edit_seed = gr.Number(value=0, precision=0, label="Seed", minimum=0, elem_id="edit-seed")
                        edit_dice = gr.Button("🎲 random seed", size="sm", elem_id="edit-dice")
                    edit_fmt = gr.Radio(list(DOWNLOAD_FORMATS), value="wav", label="Download format",
                                        elem_id="edit-format")
                    with gr.Row():
                        edit_preview = gr.Button("Preview changes", elem_id="edit-preview")
                        do_edit = gr.Button("Generate", variant="primary", elem_id="edit-run")
            edit_plan = gr.Markdown(elem_id="edit-plan")
            with gr.Row():  # A/B: the recording as it was, and as edited
                edit_before = gr.Audio(label="A: before", type="filepath", interactive=False, elem_id="edit-before")
                edited = gr.Audio(label="B: edited", type="filepath", interactive=False, elem_id="edit-output")
            edit_download = gr.File(label="Download", interactive=False, elem_id="edit-download")
            edit_info = gr.Markdown(elem_id="edit-info")

        with gr.Tab("Voices", id="voices"):
            gr.Markdown("### Make a voice\nUpload or record 5-12 s of one person speaking and type what they say (or "
                        "leave it empty for Whisper), then **Clean clip**. Listen to the cleaned clip, correct its "
                        "transcript if needed, name it, confirm consent and **Save to library**.")
            with gr.Row():
                with gr.Column():
                    new_clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip",
                                        elem_id="voices-clip")
                    new_transcript = gr.Textbox(label="Transcript (optional)", elem_id="voices-transcript-in")
                    clean = gr.Button("Clean clip", elem_id="voices-clean")
                with gr.Column():
                    cleaned = gr.Audio(label="Cleaned clip", interactive=False, elem_id="voices-cleaned")
                    cleaned_transcript = gr.Textbox(label="Transcript of the cleaned clip (edit if wrong)",
                                                    elem_id="voices-transcript")
                    new_name = gr.Textbox(label="Name (letters, digits, spaces, - _ .)", elem_id="voices-name")
                    consent = gr.Checkbox(label=CONSENT_STATEMENT, elem_id="voices-consent")
                    save = gr.Button("Save to library", variant="primary", elem_id="voices-save")
            voices_info = gr.Markdown(elem_id="voices-info")
            gr.Markdown(f"### Library\nStored in `{studio.library.folder}`.")
            table = gr.Dataframe(headers=["name", "seconds", "transcript", "consent", "created"], interactive=False,
                                 elem_id="voices-table")
            with gr.Row():
                chosen = gr.Dropdown([], label="Voice", elem_id="voices-chosen")
                rename_to = gr.Textbox(label="New name", elem_id="voices-rename-to")
            chosen_info = gr.Markdown()
            chosen_audio = gr.Audio(label="Reference clip", interactive=False, elem_id="voices-play")
            with gr.Row():
                rename = gr.Button("Rename", elem_id="voices-rename")
                delete = gr.Button("Delete", variant="stop", elem_id="voices-delete")
                export = gr.Button("Export .voice file", elem_id="voices-export")
            exported = gr.File(label="Exported voice", interactive=False, elem_id="voices-exported")
            gr.Markdown("### Import a voice file")
            with gr.Row():
                import_file = gr.File(label=".voice file", file_types=[".voice"], type="filepath",
                                      elem_id="voices-import-file")
                with gr.Column():
                    import_name = gr.Textbox(label="Name (optional: the file's own)", elem_id="voices-import-name")
                    import_consent = gr.Checkbox(label=CONSENT_STATEMENT + " (needed when the file records none)")
                    do_import = gr.Button("Import", elem_id="voices-import")

        with gr.Tab("Batch", id="batch"):
            gr.Markdown("One line per utterance, JSON lines or CSV with a header: `id`, `text`, `voice` and optionally "
                        "`style`, `intensity`, `speed`, `seed`; lines without a voice or style take the ones chosen "
                        "below in turn. Voices are base voices (`flite:slt`, `kokoro:jf_alpha`) "
                        f"or pseudo-speakers (`pk0001`); see docs/corpus.md. At most {UI_MAX_BATCH_LINES} lines.")
            batch_text = gr.Textbox(label="Manifest lines", lines=6, elem_id="batch-text",
                                    placeholder='{"id": "a1", "text": "Hello there.", "voice": "flite:slt"}')
            batch_file = gr.File(label="... or a manifest file (used instead of the lines)", type="filepath",
                                 file_types=[".jsonl", ".json", ".csv", ".tsv", ".txt"], elem_id="batch-file")
            with gr.Row():
                batch_voices = gr.Dropdown(all_voice_ids(), multiselect=True, elem_id="batch-voices",
                                           label="Voices for lines that name none (taken in turn)")
                batch_styles = gr.Dropdown(list(STYLES), multiselect=True, elem_id="batch-styles",
                                           label="Styles for lines that name none (taken in turn)")
            with gr.Row():
                run = gr.Button("Run batch", variant="primary", elem_id="batch-run")
                batch_stop = gr.Button("Stop", variant="stop", elem_id="batch-stop")
            batch_info = gr.Markdown(elem_id="batch-info")
            results = gr.Dataframe(headers=BATCH_HEADERS, interactive=False, elem_id="batch-results")
            archive = gr.File(label="ZIP: audio/, metadata.jsonl, errors.jsonl", interactive=False,
                              elem_id="batch-zip")

        with gr.Tab("About", id="about") as about:
            gr.Markdown("## Engines\n" + engines_markdown(), elem_id="engine-table")
            gr.Markdown("## Speed of this studio's recent jobs")
            speeds = gr.Markdown(studio.speeds.markdown(), elem_id="speed-table")
            refresh_speeds = gr.Button("Refresh", size="sm", elem_id="speed-refresh")
            gr.Markdown("## Checkpoints\n" + checkpoints_markdown(), elem_id="checkpoint-table")
            gr.Markdown(f"## Versions\n{versions_markdown()}\n\nVoice library: `{studio.library.folder}`",
                        elem_id="versions")

        library_outputs = [table, chosen, speak_voice, convert_voice]
        picked = [speak_voice, convert_voice]  # the other views' voices, kept across library changes
        for source_radio, group in ((voice_from, clip_group), (convert_from, convert_clip_group)):
            source_radio.change(lambda source: gr.update(visible=source == VOICE_FROM_CLIP), source_radio, group,
                                queue=False)
        speak_engine.change(lambda engine: (gr.update(visible=engine == "base+convert"), studio.engine_note(engine)),
                            speak_engine, [base_group, speak_engine_note], queue=False)
        convert_engine.change(lambda engine: (gr.update(visible=engine == "tone-color"),
                                              gr.update(visible=engine == "dit"), studio.engine_note(engine)),
                              convert_engine, [convert_tau, convert_source_text, convert_engine_note], queue=False)
        edit_mode.change(lambda mode: (gr.update(visible=mode == EDIT_WORDS), gr.update(visible=mode == EDIT_SPEED)),
                         edit_mode, [edit_new, edit_speed_group], queue=False)
        for button, number in ((dice, seed), (convert_dice, convert_seed), (edit_dice, edit_seed)):
            button.click(lambda: secrets.randbelow(2**31), None, number, queue=False)

        def speak_ui(*args, progress=gr.Progress()):  # noqa: B008 - how Gradio asks for a progress bar
            first = True
            for update in studio.speak_stream(*args, progress=progress):
                final = update.file is not None
                yield (gr.skip() if update.piece is None else update.piece,
                       update.file if final or first else gr.skip(), update.info,
                       update.plot if final or first else gr.skip())
                first = False

        def convert_ui(*args, progress=gr.Progress()):  # noqa: B008
            return studio.convert(*args, progress=progress)

        def edit_ui(*args, progress=gr.Progress()):  # noqa: B008
            return (*studio.edit(*args, progress=progress), args[0])  # the recording beside the result: A/B

        # One model job at a time across Speak, Convert and Edit: they run the same CPU-bound engines.
        speaking = generate.click(speak_ui, [text, voice_from, speak_voice, clip, clip_transcript, style, intensity,
                                             speed, seed, fmt, speak_engine, base, speak_tau, mix, pitch, pitch_range,
                                             energy, style_ref, takes],
                                  [speech, download, speak_info, speak_plot], concurrency_id="engine",
                                  api_name="speak")
        speak_stop.click(None, None, None, cancels=[speaking])
        do_convert.click(convert_ui, [source, convert_from, convert_voice, convert_clip, convert_transcript,
                                      convert_engine, convert_tau, convert_seed, convert_fmt, convert_source_text],
                         [converted, convert_download, convert_info], concurrency_id="engine", api_name="convert")
        do_edit.click(edit_ui, [edit_source, edit_transcript, edit_mode, edit_new, edit_factor, edit_start, edit_end,
                                edit_seed, edit_fmt, edit_steps, edit_takes, edit_context],
                      [edited, edit_download, edit_info, edit_before], concurrency_id="engine", api_name="edit")
        edit_transcribe.click(studio.transcribe_recording, edit_source, edit_transcript).success(
            lambda recording, said: "" if studio.engine_problem("dit") else studio.word_timings(recording, said),
            [edit_source, edit_transcript], edit_timings, concurrency_id="engine")
        edit_align.click(studio.word_timings, [edit_source, edit_transcript], edit_timings, concurrency_id="engine")
        edit_preview.click(studio.preview_edit, [edit_source, edit_transcript, edit_new, edit_context], edit_plan,
                           concurrency_id="engine")
        edit_last.click(studio.last_speech, [download, text], [edit_source, edit_transcript])
        clean.click(studio.clean_clip, [new_clip, new_transcript], [pending, cleaned, cleaned_transcript, voices_info])
        save.click(studio.save_voice, [pending, cleaned_transcript, new_name, consent, *picked],
                   [voices_info, *library_outputs])
        chosen.change(studio.show_voice, chosen, [chosen_audio, chosen_info])
        rename.click(studio.rename_voice, [chosen, rename_to, *picked], [voices_info, *library_outputs])
        delete.click(studio.delete_voice, [chosen, *picked], [voices_info, *library_outputs])
        export.click(studio.export_voice, chosen, exported)
        do_import.click(studio.import_voice, [import_file, import_name, import_consent, *picked],
                        [voices_info, *library_outputs])

        def batch_ui(lines, file, voices, styles, progress=gr.Progress()):  # noqa: B008
            yield from studio.run_batch_stream(lines, file, voices, styles, progress=progress)

        batching = run.click(batch_ui, [batch_text, batch_file, batch_voices, batch_styles],
                             [batch_info, results, archive])
        batch_stop.click(None, None, None, cancels=[batching])
        for event in (about.select, refresh_speeds.click):
            event(studio.speeds.markdown, None, speeds, queue=False)
        demo.load(lambda: studio.library_views(), None, library_outputs, api_name="library")
    demo.studio = studio  # the handlers, for tests and embedding
    return demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)


def launch_studio(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **launch_options):
    """Serve `demo` with the studio's settings: system-font theme, no analytics, no server-side rendering."""
    options = {"server_name": host, "server_port": port, "theme": THEME, "show_error": True, "quiet": True,
               "ssr_mode": False, "mcp_server": False, "pwa": False, "max_file_size": MAX_UPLOAD}
    options.update(launch_options)
    return demo.launch(**options)
