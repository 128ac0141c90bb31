"""The studio's handlers: `Studio`, a thin client of the `tts` library (no model logic, no page layout here).

Views (see docs/studio.md), one group of `Studio` methods each:
    Speak   text (with inline style tags) + a library voice or a clip -> speech, with an emotion or a mixture, its
            intensity, prosody (pitch, pitch range, energy), speed and seed (`tts.style`); streamed to the player
            as it is made (`speak_stream`), or the best of several takes by the ASR check (`tts.takes`); download
            and a picture of it. Engine `ar`, `dit` (the DiT infills the words after the voice's clip), or
            `base+convert` (a base speaker says it, the tone-color converter gives it the voice).
    Convert a recording + a library voice or a clip -> the same speech in that voice (`tts.synthesis.convert`,
            engine `tone-color`, `distilled` (self-distilled timbre swap, `tts.synthesis.swap_timbre`) or `ar`).
    Edit    a recording + what it says -> other words (`tts.dit.engine.edit`) or another speed, throughout or in a
            span (`tts.dit.engine.change_speed`); only the changed words are said again (engine `dit`); word
            timings and a preview of the spans that will change (`tts.dit.engine.preview_edit`) before it.
    Voices  make a voice from a clip (cleaned, transcribed, consented), list, play, rename, delete, export,
            import (`tts.voice_library.VoiceLibrary`).
    Batch   a manifest (`tts.data.manifest`) -> `tts.data.batch.run_batch` (in a worker thread, stoppable) ->
            results table and a ZIP.

`Studio` holds the handlers as plain methods (tested without a browser), with the limits and choices they
enforce; `app.layout.build_studio` lays them out on the page (and the About view). The `ar`, `dit` and tone-color
engines are each loaded on their first use and shared read-only by every session; what belongs to one browser
session (the voice being made in Voices) lives in `gr.State`. An engine that cannot run here stays listed, marked
unavailable; choosing it (or opening Edit, for `dit`) says why.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from tts.dit.engine import EDIT_CONTEXT_WORDS, MAX_EDIT_SECONDS
from tts.engines import engine_status
from tts.errors import CheckpointError, TimbreError, VoiceError
from tts.synthesis import DEFAULT_ENGINE
from tts.tone_color import DEFAULT_BASE, DEFAULT_TAU

logger = logging.getLogger(__name__)

UI_MAX_TEXT_CHARS = 2000
"""Longest text Speak takes at once (about two minutes of speech); longer texts go through Batch or the API."""

UI_MAX_CLIP_SECONDS = 60.0
"""Longest clip accepted for a voice; `tts.voice.clone_voice` keeps at most 12 s of it."""

UI_MAX_SOURCE_SECONDS = 300.0
"""Longest recording Convert takes at once; longer ones: `timbre convert` or `tts.synthesis.convert`."""

UI_MAX_BATCH_LINES = 100
"""Most manifest lines one Batch run takes in the studio; `timbre batch` has no limit."""

UI_MAX_TAKES = 4
"""Most takes Speak makes for one text (each a whole synthesis, then Whisper listens to it)."""

DOWNLOAD_FORMATS = ("wav", "flac", "mp3")
VOICE_FROM_LIBRARY, VOICE_FROM_CLIP = "library voice", "uploaded or recorded clip"
WORK_MAX_AGE_SECONDS = 3600.0
"""Generated files older than this are removed from the studio's work folder."""

CONSENT_STATEMENT = (
    "I confirm that I am the person speaking in this recording, or that the speaker has given me permission "
    "to clone their voice and to generate speech with it."
)
"""What a user confirms to add a voice to the library; stored in the voice file as its consent."""

EngineFactory = Callable[[], Any]

ENGINE_CHECKPOINTS = {"ar": "ar", "dit": "dit", "base+convert": "base+convert", "tone-color": "base+convert",
                      "distilled": "distilled"}
"""The `tts.engines` entry whose checkpoints each Speak, Convert and Edit engine needs."""

ENGINE_MODELS = {"ar": "ar", "dit": "dit", "base+convert": "tone-color", "tone-color": "tone-color",
                 "distilled": "distilled"}
"""The shared models (`Studio._shared`) each Speak, Convert and Edit engine runs on."""

EDIT_WORDS, EDIT_SPEED = "change the words", "change the speed"
"""What Edit changes in a recording."""

MAX_EDIT_STEPS = 64
"""Most flow sampling steps one edit may ask for: each step runs the DiT over the whole recording, so this bounds
the time one request takes. 0 (the default) lets the engine choose: one step where the flow starts from the guide
voice or the recording (`tts.dit.engine.GUIDED_STEPS`), eight where it starts from noise (no guide voice
installed)."""
MAX_EDIT_CONTEXT = 3
"""Most unchanged words on each side of a change that Edit says again with it."""


@dataclasses.dataclass(frozen=True)
class SpeakUpdate:
    """One update of Speak's result on the page (`Studio.speak_stream`)."""

    piece: bytes | str | None
    """What the player plays next: a piece of audio as WAV bytes while streaming, or the whole result's file
    (the kept take); None once everything has been sent."""
    file: str | None = None
    """The whole result's file (to download), in the last update only."""
    info: str = ""
    """The line under the result: progress while streaming, then length, speed, engine, voice, style, seed."""
    plot: str | None = None
    """A PNG of the whole result's waveform, spectrogram and pitch (`tts.evaluation.plots.plot_audio`)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One finished Speak, Convert, Edit or Batch run, as About's live speed figures count it."""

    view: str
    engine: str
    audio_seconds: float
    compute_seconds: float
    first_audio_seconds: float | None = None


class SpeedLog:
    """The speed of the studio's recent jobs (the last `size`), summarized for About; shared by every session."""

    def __init__(self, size: int = 200) -> None:
        self._jobs: deque[Job] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, view: str, engine: str, audio_seconds: float, compute_seconds: float,
               first_audio_seconds: float | None = None) -> None:
        with self._lock:
            self._jobs.append(Job(view, engine, audio_seconds, compute_seconds, first_audio_seconds))

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs)

    def markdown(self) -> str:
        """A table per view and engine: jobs, audio made, median real-time factor and time to first audio."""
        groups: dict[tuple[str, str], list[Job]] = {}
        for job in self.jobs():
            groups.setdefault((job.view, job.engine), []).append(job)
        if not groups:
            return "No jobs yet: the figures appear here as Speak, Convert, Edit and Batch run."
        rows = ["| view | engine | jobs | audio made | median real-time factor | median first audio |",
                "| --- | --- | --- | --- | --- | --- |"]
        for (view, engine), jobs in groups.items():
            rtf = [j.compute_seconds / j.audio_seconds for j in jobs if j.audio_seconds > 0]
            first = [j.first_audio_seconds for j in jobs if j.first_audio_seconds is not None]
            rows.append(f"| {view} | `{engine}` | {len(jobs)} | {sum(j.audio_seconds for j in jobs):.1f} s | "
                        f"{f'{np.median(rtf):.2f}' if rtf else '-'} | {f'{np.median(first):.2f} s' if first else '-'} |")
        return "\n".join(rows) + "\n\nReal-time factor: compute seconds per audio second (below 1: faster than real time)."


class Studio:
    """The studio's handlers: plain functions of their inputs, raising `gr.Error` with a readable message.

    Args:
        library: the voice library (default: `VoiceLibrary()` in the cache folder).
        engine_factory: returns the `ar` engine (default: `tts.synthesis.load_engine`, the shipped
            checkpoints); called once, on the first generation that needs it.
        work_dir: where generated files are written for download (default: a new temporary folder).
        tone_engine_factory: returns the tone-color engine of `base+convert` and Convert's `tone-color`
            (default: `tts.tone_color.load_tone_color_engine`, the shipped checkpoints); called once, likewise.
        dit_engine_factory: returns the `dit` engine of Speak and Edit (default: `tts.dit.engine.load_dit_engine`,
            the shipped checkpoints); called once, likewise.
        distilled_engine_factory: returns the parts of Convert's `distilled` timbre swap (an `ar` engine with the
            self-distilled refiner; default: `tts.synthesis.load_engine` with `tts.engines.DISTILLED_REFINER`).
    """

    def __init__(self, library=None, engine_factory: EngineFactory | None = None,
                 work_dir: str | os.PathLike | None = None, tone_engine_factory: EngineFactory | None = None,
                 dit_engine_factory: EngineFactory | None = None,
                 distilled_engine_factory: EngineFactory | None = None) -> None:
        from tts.voice_library import VoiceLibrary

        self.library = library if library is not None else VoiceLibrary()
        self._factories = {"ar": engine_factory, "dit": dit_engine_factory, "tone-color": tone_engine_factory,
                           "distilled": distilled_engine_factory}
        self._engines: dict[str, Any] = {}
        self._engine_lock = threading.Lock()
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="timbre-studio-"))
        self.speeds = SpeedLog()

    # -- shared resources ------------------------------------------------------------------------------

    def engine(self):
        """The `ar` engine, loaded once and shared (inference only, so sessions never mix)."""
        return self._shared("ar")

    def tone_engine(self):
        """The tone-color engine (`tts.tone_color.ToneColorEngine`), loaded once and shared like `engine`."""
        return self._shared("tone-color")

    def dit_engine(self):
        """The `dit` engine (`tts.dit.engine.DitEngine`), loaded once and shared like `engine`."""
        return self._shared("dit")

    def _shared(self, kind: str):
        """The shared models of `kind` (a value of `ENGINE_MODELS`), loaded by their factory on first use."""
        with self._engine_lock:
            if kind not in self._engines:
                factory = self._factories[kind] or _shipped_loader(kind)
                self._engines[kind] = factory()  # a failed load is not kept: the next request tries again
            return self._engines[kind]

    def engine_problem(self, engine: str) -> str | None:
        """Why a Speak, Convert or Edit engine cannot run here (its checkpoints are missing or refused), or None.

        An engine whose models were given to the studio (an injected factory) or are loaded counts as ready."""
        kind = ENGINE_MODELS.get(engine)
        if kind is None:
            return None  # not an engine name: the library refuses it with the list of engines
        if self._factories[kind] is not None or kind in self._engines:
            return None
        status = next(s for s in engine_status() if s.name == ENGINE_CHECKPOINTS[engine])
        return None if status.available else status.reason

    def engine_note(self, engine: str) -> str:
        """What the page says under an engine choice: why the engine cannot run here, or nothing."""
        problem = self.engine_problem(engine)
        return f"**`{engine}` is unavailable here:** {problem}" if problem else ""

    def default_engine(self, engines: tuple[str, ...]) -> str:
        """The engine a view starts on: the first of `engines` that can run here (the first of all when none can,
        so that choosing it says why)."""
        return next((name for name in engines if not self.engine_problem(name)), engines[0])

    def engine_choices(self, engines: tuple[str, ...]) -> list[tuple[str, str]]:
        """``(label, engine)`` choices for an engine radio: every engine, those that cannot run marked so."""
        return [(f"{name} (unavailable)" if self.engine_problem(name) else name, name) for name in engines]

    def _check_settings(self, engine: str, engines: tuple[str, ...], fmt: str) -> None:
        """Refuse an unknown engine or download format, and an engine that cannot run here, before any work."""
        if engine not in engines:
            raise ValueError(f"choose an engine: {', '.join(engines)}")
        if fmt not in DOWNLOAD_FORMATS:
            raise ValueError(f"choose a download format: {', '.join(DOWNLOAD_FORMATS)}")
        problem = self.engine_problem(engine)
        if problem:
            raise CheckpointError(f"the '{engine}' engine is unavailable here: {problem}")

    def _models_loading(self, engine: str) -> bool:
        return ENGINE_MODELS[engine] not in self._engines

    def _request_folder(self) -> Path:
        """A new folder for one request's files; folders older than `WORK_MAX_AGE_SECONDS` are removed."""
        now = time.time()
        if self.work_dir.is_dir():
            for old in self.work_dir.iterdir():
                if old.is_dir() and now - old.stat().st_mtime > WORK_MAX_AGE_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
        folder = self.work_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def _clone(self, clip: str | None, transcript: str | None):
        """A cleaned `Voice` from an uploaded or recorded clip (a file path from `gr.Audio`)."""
        from tts.audio import load_audio
        from tts.voice import clone_voice

        if not clip:
            raise VoiceError("upload or record a clip of the voice first (5 to 12 seconds of clear speech)")
        audio = load_audio(clip, max_seconds=UI_MAX_CLIP_SECONDS)
        voice = clone_voice(audio, (transcript or "").strip() or None)
        return dataclasses.replace(voice, source=Path(clip).name)

    def _voice(self, voice_from: str, voice_name: str | None, clip: str | None, transcript: str | None):
        """The chosen voice: a library voice by name, or one cloned from the clip."""
        if voice_from == VOICE_FROM_CLIP:
            return self._clone(clip, transcript)
        if voice_name:
            return self.library.get(voice_name)
        raise VoiceError("choose a voice from the library, or switch to a clip and upload one")

    # -- Speak -------------------------------------------------------------------------------------------

    def speak(self, text: str, voice_from: str, voice_name: str | None, clip: str | None, transcript: str | None,
              style: str, intensity: float, speed: float, seed: float | None, fmt: str,
              engine: str = DEFAULT_ENGINE, base: str | None = None, tau: float = DEFAULT_TAU, mix: str | None = None,
              pitch: float = 0.0, pitch_range: float = 1.0, energy: float = 0.0, style_ref: str | None = None,
              takes: float = 1, progress: Callable | None = None) -> tuple[str, str, str]:
        """Say `text` in the chosen voice: ``(audio file to play, the same file to download, info line)``; the
        whole result of `speak_stream` (which see for the parameters)."""
        final = None
        for update in self.speak_stream(text, voice_from, voice_name, clip, transcript, style, intensity, speed,
                                        seed, fmt, engine, base, tau, mix, pitch, pitch_range, energy, style_ref,
                                        takes, progress=progress):
            final = update
        return final.file, final.file, final.info

    def speak_stream(self, text: str, voice_from: str, voice_name: str | None, clip: str | None,
                     transcript: str | None, style: str, intensity: float, speed: float, seed: float | None, fmt: str,
                     engine: str = DEFAULT_ENGINE, base: str | None = None, tau: float = DEFAULT_TAU,
                     mix: str | None = None, pitch: float = 0.0, pitch_range: float = 1.0, energy: float = 0.0,
                     style_ref: str | None = None, takes: float = 1,
                     progress: Callable | None = None) -> Iterator[SpeakUpdate]:
        """Say `text` in the chosen voice, as the page plays it: `SpeakUpdate`s, first one per piece of audio as
        soon as it exists (the page starts playing the first), then the whole result (`SpeakUpdate.file` set).

        `style` is an emotion label; `mix`, when not blank, replaces it with a mixture (``"happy:0.7+sad:0.3"``).
        `intensity` (0 to 2; above 1 exaggerates), `speed`, `pitch` (semitones), `pitch_range` and `energy` (dB)
        are the controls of `tts.style.Style`; inline tags in `text` change the style mid-passage
        (`tts.style.parse_style_tags`). `engine` is ``"dit"`` (the default: the DiT infills the text after the
        voice's clip, at the clip's own speaking rate times `speed`), ``"ar"`` (streams within a sentence) or
        ``"base+convert"``; with the latter, `base` (a base speaker id, default `tts.tone_color.DEFAULT_BASE`) says
        the text and the converter (posterior temperature `tau`) gives it the voice. `style_ref`, a clip, replaces
        the emotion and intensity with those the style classifier hears in it
        (`tts.style_reference.read_style_reference`); speed, pitch, pitch range and energy act on top. `takes` above
        1 makes that many whole takes (seeds `seed`, `seed + 1`, ...) and keeps the one Whisper hears best
        (`tts.takes.best_take`); the kept take then comes as a single piece."""
        from tts.audio import Audio
        from tts.style import parse_style_tags, style_from_options
        from tts.synthesis import SYNTHESIS_ENGINES, synthesize
        from tts.takes import best_take

        with _user_errors():
            text = (text or "").strip()
            if not text:
                raise ValueError("type the text to speak")
            if len(text) > UI_MAX_TEXT_CHARS:
                raise ValueError(f"the text has {len(text):,} characters; the studio speaks at most "
                                 f"{UI_MAX_TEXT_CHARS:,} at once (use Batch or the Python API for longer texts)")
            self._check_settings(engine, SYNTHESIS_ENGINES, fmt)
            takes = _takes_setting(takes)
            emotion = mix.strip() if mix and mix.strip() else style
            request = style_from_options(emotion, intensity=intensity, speed=speed, pitch=pitch,
                                         pitch_range=pitch_range, energy=energy)
            parse_style_tags(text, request)  # a bad tag is refused before the voice and the models are prepared
            seed = _seed(seed)
            heard = ""
            if style_ref:  # a bad clip is refused before the voice is prepared
                from tts.style_reference import read_style_reference

                reading = read_style_reference(style_ref, speed=speed, pitch=pitch, pitch_range=pitch_range,
                                               energy=energy)
                emotion, request = reading.style, reading.style
                heard = f" (from the style clip, heard as {reading.prediction.label} {reading.prediction.confidence:.0%})"
            _report(progress, 0.0, "preparing the voice")
            voice = self._voice(voice_from, voice_name, clip, transcript)
            _report(progress, 0.05, "loading the models" if self._models_loading(engine) else "speaking")
            models = self._shared(ENGINE_MODELS[engine])
            options, spoken_by = {}, engine
            if engine == "base+convert":
                options = {"base": base or DEFAULT_BASE, "tau": float(tau)}
                spoken_by = f"base+convert (base {options['base']}, tau {options['tau']:.2f})"
            options.update(engine=engine, emotion=emotion, intensity=request.intensity, speed=request.speed,
                           pitch=request.pitch, pitch_range=request.pitch_range, energy=request.energy, models=models)
            started = time.perf_counter()
            first_audio, takes_note = None, ""
            if takes == 1:
                pieces = []
                for piece in synthesize(text, voice, **options, seed=seed, stream=True,
                                        progress=lambda done, total: _report(progress, (done, total), "speaking")):
                    first_audio = time.perf_counter() - started if first_audio is None else first_audio
                    pieces.append(piece)
                    yield SpeakUpdate(piece.to_bytes("wav"), info=f"speaking: {sum(p.duration for p in pieces):.1f} "
                                                                  f"s so far, first audio after {first_audio:.2f} s")
                audio = Audio(np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate)
            else:
                kept = best_take(text, voice, takes=takes, seed=seed, **options,
                                 on_take=lambda done, total, take: _report(progress, (done, total), "takes"))
                audio, seed = kept.best.audio, kept.best.seed
                takes_note = f"; {_takes_summary(kept)}"
            elapsed = time.perf_counter() - started
            folder = self._request_folder()
            path = audio.save(folder / f"timbre-{seed}.{fmt}")
            picture = _plot(audio, folder / f"timbre-{seed}.png")
        self.speeds.record("Speak", engine, audio.duration, elapsed, first_audio)
        latency = f", first audio after {first_audio:.2f} s" if first_audio is not None else ""
        info = (f"{audio.duration:.2f} s of audio in {elapsed:.2f} s (real-time factor {_rtf(elapsed, audio)}"
                f"{latency}); engine {spoken_by}, voice {_voice_label(voice)}, {_style_label(request)}{heard}, "
                f"seed {seed}{takes_note}")
        yield SpeakUpdate(None if takes == 1 else str(path), str(path), info, picture)

    # -- Convert -----------------------------------------------------------------------------------------

    def convert(self, source: str | None, voice_from: str, voice_name: str | None, clip: str | None,
                transcript: str | None, engine: str, tau: float, seed: float | None, fmt: str,
                source_text: str | None = None, progress: Callable | None = None) -> tuple[str, str, str]:
        """Say the `source` recording again in the chosen voice (same words, timing and intonation):
        ``(audio file to play, the same file to download, info line)``.

        `engine` is ``"dit"`` (a base speaker says the recording's words to its melody in the voice's pitch, and the
        DiT says that again in the voice; `source_text` is what it says, transcribed by Whisper when empty),
        ``"tone-color"`` (only the timbre changes; `tau` is the converter's posterior temperature), ``"distilled"``
        or ``"ar"`` (the source's speech tokens rendered in the voice by the flow refiner, self-distilled or not)."""
        from tts.audio import load_audio
        from tts.synthesis import CONVERSION_ENGINES, convert

        with _user_errors():
            if not source:
                raise ValueError("upload or record the speech to convert first")
            self._check_settings(engine, CONVERSION_ENGINES, fmt)
            seed = _seed(seed)
            _report(progress, 0.0, "reading the recording")
            recording = load_audio(source, max_seconds=UI_MAX_SOURCE_SECONDS)
            _report(progress, 0.05, "preparing the voice")
            voice = self._voice(voice_from, voice_name, clip, transcript)
            _report(progress, 0.1, "loading the models" if self._models_loading(engine) else "converting")
            models = self._shared(ENGINE_MODELS[engine])
            words = None
            if engine == "dit":  # the DiT says the recording's words: as typed, else as Whisper hears them (shown)
                words = (source_text or "").strip()
                if not words:
                    from tts.voice import recognized_transcript

                    _report(progress, 0.15, "transcribing the recording")
                    words, heard = recognized_transcript(recording, "the recording"), True
                else:
                    heard = False
            _report(progress, 0.2, "converting")
            started = time.perf_counter()
            audio = convert(recording, voice, engine=engine, source_text=words, tau=float(tau), seed=seed,
                            models=models)
            elapsed = time.perf_counter() - started
            path = audio.save(self._request_folder() / f"timbre-convert-{seed}.{fmt}")
        self.speeds.record("Convert", engine, audio.duration, elapsed)
        how = f"tone-color (tau {float(tau):.2f})" if engine == "tone-color" else engine
        info = (f"{recording.duration:.2f} s recording converted to {audio.duration:.2f} s of audio in {elapsed:.2f} s "
                f"(real-time factor {_rtf(elapsed, audio)}); engine {how}, voice {_voice_label(voice)}, seed {seed}")
        if words is not None:
            how_known = "heard by Whisper: type them above if it misheard" if heard else "as typed"
            info += f". Words said: “{words}” ({how_known})"
        return str(path), str(path), info

    # -- Edit --------------------------------------------------------------------------------------------

    def edit(self, recording: str | None, transcript: str | None, mode: str, new_transcript: str | None,
             factor: float, span_start: float | None, span_end: float | None, seed: float | None, fmt: str,
             steps: float = 0, takes: float = 1, context: float = EDIT_CONTEXT_WORDS,
             progress: Callable | None = None) -> tuple[str, str, str]:
        """Change the words or the speed of a `recording` that says `transcript`, keeping everything else:
        ``(audio file to play, the same file to download, info with a table of the regenerated spans)``.

        `mode` is `EDIT_WORDS` (say `new_transcript` instead: only the words that differ are said again,
        `tts.dit.engine.edit`) or `EDIT_SPEED` (say it `factor` times faster, 0.5 to 2, between `span_start` and
        `span_end` seconds, widened to whole words, or throughout when both are 0 or empty;
        `tts.dit.engine.change_speed`). `steps` are the DiT's flow sampling steps (0: the engine's choice,
        `MAX_EDIT_STEPS`). `takes` above 1 (word edits) makes that many edits, seeds counting up, and keeps the one
        Whisper hears saying the new text best (`tts.takes.pick_take`). `context` unchanged words on each side of a
        changed stretch are said again with it (word edits; 0 to `MAX_EDIT_CONTEXT`). Engine `dit`."""
        from tts.audio import load_audio
        from tts.dit.engine import change_speed, edit
        from tts.style import check_control

        with _user_errors():
            if not recording:
                raise ValueError("upload or record the speech to edit first")
            transcript = (transcript or "").strip()
            if not transcript:
                raise ValueError("type what the recording says now (or press Transcribe to have Whisper fill it in)")
            span = None
            if mode == EDIT_WORDS:
                new_transcript = (new_transcript or "").strip()
                if not new_transcript:
                    raise ValueError("type what the recording should say: its whole text, with the words changed")
            elif mode == EDIT_SPEED:
                factor = check_control("speed", factor)
                if factor == 1:
                    raise ValueError("a speed of 1 changes nothing: below 1 is slower, above 1 faster")
                span = _edit_span(span_start, span_end)
            else:
                raise ValueError(f"choose what to change: {EDIT_WORDS} or {EDIT_SPEED}")
            steps = int(steps)
            if not 0 <= steps <= MAX_EDIT_STEPS:
                raise ValueError(f"sampling steps must be from 0 (automatic) to {MAX_EDIT_STEPS}, got {steps}")
            takes = _takes_setting(takes)
            context = _context_setting(context)
            if takes > 1 and mode != EDIT_WORDS:
                raise ValueError("takes are for word edits (Whisper checks the new words); a speed edit is made once")
            self._check_settings("dit", ("dit",), fmt)
            seed = _seed(seed)
            _report(progress, 0.0, "reading the recording")
            audio = load_audio(recording, max_seconds=MAX_EDIT_SECONDS)
            if span is not None and span[0] >= audio.duration:
                raise ValueError(f"the span starts at {span[0]:g} s, after the end of the {audio.duration:.2f} s "
                                 "recording")
            _report(progress, 0.1, "loading the models" if self._models_loading("dit") else "editing")
            models = self._shared(ENGINE_MODELS["dit"])
            _report(progress, 0.2, "editing")
            started = time.perf_counter()
            if mode == EDIT_WORDS:
                result = edit(audio, transcript, new_transcript, seed=seed, steps=steps or None, models=models,
                              takes=takes, context=context,
                              on_take=lambda done, total, take: _report(progress, (done, total), "takes"))
                seed = result.takes.best.seed if result.takes is not None else seed
            else:
                result = change_speed(audio, transcript, factor, span=span, seed=seed, steps=steps or None,
                                      models=models)
            elapsed = time.perf_counter() - started
            path = result.audio.save(self._request_folder() / f"timbre-edit-{seed}.{fmt}")
        self.speeds.record("Edit", "dit", result.audio.duration, elapsed)
        rows = [f"| {start:.2f}-{end:.2f} | {_cell(old)} | {_cell(new)} |"
                for (start, end), (old, new) in zip(result.spans, result.changes)]
        takes_note = f" {_takes_summary(result.takes)}." if result.takes is not None else ""
        info = (f"{audio.duration:.2f} s recording edited to {result.audio.duration:.2f} s in {elapsed:.2f} s; "
                f"engine dit, {f'{steps} steps' if steps else 'steps automatic'}, seed {seed}.{takes_note} "
                f"{len(rows)} span(s) said again; everything "
                "outside them is the recording's own audio.\n\n| said again (s, in the result) | was | now |\n"
                "| --- | --- | --- |\n" + "\n".join(rows))
        return str(path), str(path), info

    def word_timings(self, recording: str | None, transcript: str | None) -> str:
        """Each word of `transcript` with its start and end in `recording` (seconds), as Markdown: the `dit`
        engine's aligner (the speech tokenizer's CTC head, `tts.tokenizer.align.align`)."""
        from tts.audio import load_audio
        from tts.tokenizer.align import align

        with _user_errors():
            if not recording:
                raise ValueError("upload or record the speech to edit first")
            if not (transcript or "").strip():
                raise ValueError("type what the recording says now (or press Transcribe), then ask for its timings")
            self._check_settings("dit", ("dit",), "wav")
            audio = load_audio(recording, max_seconds=MAX_EDIT_SECONDS)
            timings = align(audio, transcript.strip(), self._shared("dit").aligner)
        words = [f"**{_cell(t.word)}** {t.start:.2f}-{t.end:.2f}" for t in timings if not t.is_punctuation]
        return "Word timings (s): " + " · ".join(words)

    def preview_edit(self, recording: str | None, transcript: str | None, new_transcript: str | None,
                     context: float = EDIT_CONTEXT_WORDS) -> str:
        """Which spans of `recording` a word edit would say again (with `context` unchanged words on each side),
        as a Markdown table, before generating (`tts.dit.engine.preview_edit`: only the aligner runs)."""
        from tts.audio import load_audio
        from tts.dit.engine import preview_edit

        with _user_errors():
            if not recording:
                raise ValueError("upload or record the speech to edit first")
            if not (transcript or "").strip() or not (new_transcript or "").strip():
                raise ValueError("type what the recording says now and what it should say, then preview")
            context = _context_setting(context)
            self._check_settings("dit", ("dit",), "wav")
            audio = load_audio(recording, max_seconds=MAX_EDIT_SECONDS)
            plan = preview_edit(audio, transcript.strip(), new_transcript.strip(), models=self._shared("dit"),
                                context=context)
        rows = [f"| {start:.2f}-{end:.2f} | {_cell(old)} | {_cell(new)} |"
                for (start, end), (old, new) in zip(plan.spans, plan.changes)]
        return (f"{len(rows)} span(s) of the {audio.duration:.2f} s recording will be said again; the rest stays as "
                "it is.\n\n| span (s, in the recording) | was | will be |\n| --- | --- | --- |\n" + "\n".join(rows))

    def last_speech(self, speech_file: str | None, text: str | None) -> tuple[str, str]:
        """Speak's latest result for Edit: ``(its file, what it says)`` (the text without its style tags)."""
        from tts.takes import spoken_text

        with _user_errors():
            if not speech_file or not Path(speech_file).is_file():
                raise ValueError("nothing spoken yet: generate speech in Speak first")
            said = " ".join(spoken_text(text or "").split())
        return speech_file, said

    def transcribe_recording(self, recording: str | None) -> str:
        """What `recording` says, recognized by Whisper tiny.en (offline), for Edit's transcript box."""
        from tts.audio import load_audio
        from tts.evaluation.asr import transcribe

        with _user_errors():
            if not recording:
                raise ValueError("upload or record the speech to transcribe first")
            text = transcribe(load_audio(recording, max_seconds=MAX_EDIT_SECONDS)).strip()
            if not text:
                raise ValueError("Whisper recognized no words in the recording: type what it says")
        return text

    # -- Voices ------------------------------------------------------------------------------------------

    def clean_clip(self, clip: str | None, transcript: str | None) -> tuple[Any, tuple, str, str]:
        """Clean (and transcribe) a clip: ``(the pending Voice, its cleaned audio, its transcript, info)``."""
        with _user_errors():
            voice = self._clone(clip, transcript)
        how = "as typed" if voice.transcript_source == "user" else "recognized by Whisper; correct it if needed"
        info = f"cleaned clip: {voice.duration:.1f} s of speech; transcript {how}. Name it, confirm consent, save."
        return voice, (voice.audio.sample_rate, voice.audio.samples), voice.transcript, info

    def save_voice(self, pending, transcript: str | None, name: str, consent: bool, speak_selected: str | None = None,
                   convert_selected: str | None = None):
        """Add the cleaned voice to the library; returns the message and the refreshed library views (the Speak
        and Convert voices stay as chosen, or become the new voice where none was)."""
        from tts.voice import clone_voice

        with _user_errors():
            if pending is None:
                raise VoiceError("clean a clip first (Clean clip), then save it")
            if transcript and transcript.strip() and transcript.strip() != pending.transcript:
                pending = clone_voice(pending, transcript=transcript)  # the user's correction
            entry = self.library.add(pending, name, CONSENT_STATEMENT if consent else "")
        return (f"saved voice **{entry.name}**",
                *self.library_views(entry.name, speak_selected or entry.name, convert_selected or entry.name))

    def voice_rows(self) -> list[list]:
        """The library as table rows: name, seconds, transcript, consent, created."""
        return [[e.name, round(e.duration, 2), e.transcript, e.consent, e.created] for e in self.library.list()]

    def library_views(self, selected: str | None = None, speak_selected: str | None = None,
                      convert_selected: str | None = None) -> tuple:
        """``(table rows, Voices dropdown, Speak dropdown, Convert dropdown)`` updates after the library changed;
        each dropdown keeps its voice when it still exists, else shows the first."""
        rows = self.voice_rows()
        names = [row[0] for row in rows]

        def pick(name: str | None) -> str | None:
            found = next((n for n in names if name and n.casefold() == name.casefold()), None)
            return found or (names[0] if names else None)

        return rows, *(gr.update(choices=names, value=pick(name)) for name in (selected, speak_selected, convert_selected))

    def show_voice(self, name: str | None) -> tuple[tuple | None, str]:
        """The voice's clip and a description, for playing it in Voices."""
        if not name:
            return None, "the library is empty: make a voice above or import one"
        with _user_errors():
            voice = self.library.get(name)
        return (voice.audio.sample_rate, voice.audio.samples), (
            f"**{voice.name}**: {voice.duration:.1f} s, says “{voice.transcript}”. Consent: {voice.consent or 'none recorded'}")

    def rename_voice(self, old: str | None, new: str, speak_selected: str | None = None,
                     convert_selected: str | None = None) -> tuple:
        """Rename a library voice (the Speak and Convert choices follow it)."""
        with _user_errors():
            if not old:
                raise VoiceError("choose the voice to rename")
            entry = self.library.rename(old, new)
        speak, convert = (entry.name if chosen and chosen.casefold() == old.casefold() else chosen
                          for chosen in (speak_selected, convert_selected))
        return (f"renamed **{old}** to **{entry.name}**", *self.library_views(entry.name, speak, convert))

    def delete_voice(self, name: str | None, speak_selected: str | None = None,
                     convert_selected: str | None = None) -> tuple:
        """Delete a library voice."""
        with _user_errors():
            if not name:
                raise VoiceError("choose the voice to delete")
            self.library.delete(name)
        return (f"deleted **{name}**", *self.library_views(None, speak_selected, convert_selected))

    def export_voice(self, name: str | None) -> str:
        """A copy of the voice's file to download."""
        from tts.voice import VOICE_SUFFIX
        from tts.voice_library import check_voice_name

        with _user_errors():
            if not name:
                raise VoiceError("choose the voice to export")
            safe = check_voice_name(name).replace(" ", "_")
            return str(self.library.export(name, self._request_folder() / f"{safe}{VOICE_SUFFIX}"))

    def import_voice(self, file: str | None, name: str | None, consent: bool, speak_selected: str | None = None,
                     convert_selected: str | None = None):
        """Add a ``.voice`` file to the library (checked: format, version, checksum)."""
        with _user_errors():
            if not file:
                raise VoiceError("choose a .voice file to import")
            entry = self.library.import_file(file, name=name or None, consent=CONSENT_STATEMENT if consent else None)
        return (f"imported voice **{entry.name}**", *self.library_views(entry.name, speak_selected, convert_selected))

    # -- Batch -------------------------------------------------------------------------------------------

    def run_batch(self, lines: str | None, file: str | None, voices: list[str] | None = None,
                  styles: list[str] | None = None, progress: Callable | None = None) -> tuple[str, list, str]:
        """Synthesize a manifest: ``(summary, result rows, ZIP of audio/ + metadata.jsonl + errors.jsonl)``; the
        last update of `run_batch_stream`."""
        final = None
        for final in self.run_batch_stream(lines, file, voices, styles, progress=progress):
            pass
        return final

    def run_batch_stream(self, lines: str | None, file: str | None, voices: list[str] | None = None,
                         styles: list[str] | None = None, progress: Callable | None = None,
                         poll_seconds: float = 0.5) -> Iterator[tuple]:
        """Synthesize a manifest, as the page shows it: ``(progress line, gr.skip(), gr.skip())`` every
        `poll_seconds` while it runs, then ``(summary, result rows, ZIP)``. Lines that name no voice or style
        take `voices` and `styles` in turn (`tts.data.manifest.LineDefaults`).

        The manifest runs in a worker thread; closing this generator (the page's Stop: Gradio closes a cancelled
        event's generator) stops the batch after the line being spoken, with every finished line kept whole
        (`tts.data.batch.run_batch` writes each line atomically)."""
        from tts.data.batch import ERRORS_NAME, batch_rows, run_batch, zip_folder
        from tts.data.corpus import METADATA_NAME
        from tts.data.manifest import LineDefaults, parse_manifest

        with _user_errors():
            folder = self._request_folder()
            if file:
                source = Path(file)
            elif lines and lines.strip():
                source = folder / "manifest.txt"  # JSON lines or CSV, told apart by the first line
                source.write_text(lines.strip() + "\n", encoding="utf-8")
            else:
                raise ValueError("paste manifest lines or upload a manifest file (JSON lines or CSV)")
            defaults = LineDefaults.from_lists(voices, styles)
            # Never open server files named by a stranger: clip voices are refused.
            manifest = parse_manifest(source, allow_clips=False, defaults=defaults)
            total = len(manifest.entries) + len(manifest.errors)
            if not total:
                raise ValueError("the manifest has no lines")
            if total > UI_MAX_BATCH_LINES:
                raise ValueError(f"the manifest has {total} lines; the studio runs at most {UI_MAX_BATCH_LINES} "
                                 "at once (use `timbre batch` for more)")
            out = folder / "corpus"
            stop, done, outcome = threading.Event(), [0], {}

            def line_done(finished: int, count: int) -> None:
                done[0] = finished
                _report(progress, (finished, count), "synthesizing")
                if stop.is_set():
                    raise BatchStopped(f"stopped after {finished} of {count} lines")

            def work() -> None:
                try:
                    outcome["summary"] = run_batch(manifest, out, progress=False, callback=line_done)
                except BaseException as error:  # noqa: BLE001 - handed to the generator, which raises it
                    outcome["error"] = error

            _report(progress, (0, len(manifest.entries)), "synthesizing")
            # In this request's context, so that its progress bar (a context variable of Gradio's) follows the worker.
            worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="studio-batch",
                                      daemon=True)
            worker.start()
            try:
                while worker.is_alive():
                    worker.join(poll_seconds)
                    if worker.is_alive():
                        yield f"synthesizing: {done[0]} of {len(manifest.entries)} lines done", gr.skip(), gr.skip()
            finally:
                stop.set()  # closed before the end: the worker stops after its current line
            if "error" in outcome:
                raise outcome["error"]
            summary = outcome["summary"]
            rows = batch_rows(out / METADATA_NAME, out / ERRORS_NAME, {e.id: e.line for e in manifest.entries})
            archive = zip_folder(out, folder / "timbre-batch.zip")
        self.speeds.record("Batch", "base speakers", summary.audio_seconds, summary.wall_seconds)
        text = (f"{summary.written + summary.already_done} of {total} lines spoken ({summary.audio_seconds:.1f} s "
                f"of audio in {summary.wall_seconds:.1f} s); {len(manifest.errors) + summary.failed} bad line(s), "
                "listed below and in errors.jsonl")
        yield text, rows, str(archive)


class BatchStopped(Exception):
    """Raised in a studio batch's worker when its page stopped it (`Studio.run_batch_stream`)."""


class _user_errors:
    """Turn the library's errors (bad input, missing resources) into `gr.Error` messages, never tracebacks."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, trace) -> bool:
        if error is None or isinstance(error, gr.Error):
            return False
        if isinstance(error, (TimbreError, ValueError)):
            raise gr.Error(str(error)) from error
        if isinstance(error, Exception):
            logger.exception("studio: unexpected error")
            raise gr.Error(f"unexpected {type(error).__name__}: {error} (details are in the studio's log)") from error
        return False


def _report(progress: Callable | None, value, desc: str) -> None:
    if progress is not None:
        progress(value, desc=desc)


def _shipped_loader(kind: str) -> EngineFactory:
    """The library's loader of the shipped checkpoints for the shared models of `kind` (`ENGINE_MODELS`)."""
    if kind == "ar":
        from tts.synthesis import load_engine

        return load_engine
    if kind == "dit":
        from tts.dit.engine import load_dit_engine

        return load_dit_engine
    if kind == "distilled":
        from tts.engines import DISTILLED_REFINER
        from tts.synthesis import load_engine

        return lambda: load_engine(refiner=DISTILLED_REFINER)
    from tts.tone_color import load_tone_color_engine

    return load_tone_color_engine


def _edit_span(start: float | str | None, end: float | str | None) -> tuple[float, float] | None:
    """The span of a speed edit from its two boxes (seconds); None when both are 0 or empty (the whole recording;
    the page sends an emptied number box as 0)."""
    start, end = (0.0 if value in (None, "") else float(value) for value in (start, end))
    if start == end == 0:
        return None
    if not 0 <= start < end:
        raise ValueError(f"the span must start at 0 s or later and end after its start (both 0: the whole "
                         f"recording); got {start:g} s to {end:g} s")
    return start, end


def _takes_setting(value: float | None) -> int:
    """The Takes control as a whole number from 1 to the most a view makes (`UI_MAX_TAKES`)."""
    from tts.takes import MAX_TAKES

    takes = _whole(value, "takes")
    if not 1 <= takes <= min(UI_MAX_TAKES, MAX_TAKES):
        raise ValueError(f"takes must be from 1 to {min(UI_MAX_TAKES, MAX_TAKES)}, got {takes}")
    return takes


def _context_setting(value: float | None) -> int:
    """Edit's context control as a whole number of words from 0 to `MAX_EDIT_CONTEXT` (empty: the default)."""
    if value is None:
        return EDIT_CONTEXT_WORDS
    context = _whole(value, "context words")
    if not 0 <= context <= MAX_EDIT_CONTEXT:
        raise ValueError(f"context words must be from 0 to {MAX_EDIT_CONTEXT}, got {context}")
    return context


def _takes_summary(kept) -> str:
    """One line on a `tts.takes.Takes`: each take's seed and the WER Whisper heard, and which was kept."""
    return "takes (seed: WER heard) " + ", ".join(
        f"{take.seed}: {take.wer:.2f}{' kept' if index == kept.best_index else ''}"
        for index, take in enumerate(kept.takes))


def _cell(text: str) -> str:
    """Words as a Markdown table cell: a pipe escaped, nothing shown as a dash."""
    return text.replace("|", "\\|") if text else "—"


def _whole(value: float | str | None, name: str) -> int:
    """A whole number typed in a number box or slider (the page may send 3.0)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _plot(audio, path: Path) -> str | None:
    """`tts.evaluation.plots.plot_audio` of a result, or None when drawing fails (the audio is kept either way)."""
    from tts.evaluation.plots import plot_audio

    try:
        return str(plot_audio(audio, path))
    except Exception:  # noqa: BLE001 - a picture must never cost the user the speech
        logger.exception("studio: the result's plot failed")
        return None


def _seed(seed: float | str | None) -> int:
    """The seed typed (an empty one picks a random seed, reported with the result so it can be made again)."""
    return secrets.randbelow(2**31) if seed is None or seed == "" else int(seed)


def _rtf(elapsed: float, audio) -> str:
    """Compute seconds per audio second, as shown in the info lines."""
    return f"{elapsed / audio.duration:.2f}" if audio.duration else "inf"


def _voice_label(voice) -> str:
    """The voice as the Speak and Convert info lines name it, with the consent stored with it (issue #13: shown
    wherever the voice is used)."""
    return f"{voice.name or voice.source or 'from the clip'} ({voice.consent_note})"


def _style_label(style) -> str:
    """A `tts.style.Style` as the Speak info line names it: the emotion, then the controls moved from neutral."""
    parts = [f"emotion {style.emotion_spec}"
             + ("" if style.dominant == "neutral" else f" at intensity {style.intensity:g}")]
    if style.speed != 1:
        parts.append(f"speed x{style.speed:g}")
    if style.pitch:
        parts.append(f"pitch {style.pitch:+g} st")
    if style.pitch_range != 1:
        parts.append(f"pitch range x{style.pitch_range:g}")
    if style.energy:
        parts.append(f"energy {style.energy:+g} dB")
    return ", ".join(parts)
