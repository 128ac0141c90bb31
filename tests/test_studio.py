"""The studio: it serves a page on loopback that says which engines are available and why, and its handlers
(Speak, Convert, Edit, Voices, Batch, About) work as plain functions, with a stand-in for synthesis or tiny models."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from app.layout import THEME, build_studio, checkpoints_markdown, versions_markdown
from app.studio import (
    CONSENT_STATEMENT,
    EDIT_SPEED,
    EDIT_WORDS,
    UI_MAX_BATCH_LINES,
    UI_MAX_SOURCE_SECONDS,
    UI_MAX_TEXT_CHARS,
    VOICE_FROM_CLIP,
    VOICE_FROM_LIBRARY,
    Studio,
)
from tts.audio import SAMPLE_RATE, Audio
from tts.dit.engine import EDIT_CONTEXT_WORDS
from tts.errors import CheckpointError
from tts.tone_color import DEFAULT_BASE
from tts.voice import Voice
from tts.voice_library import VoiceLibrary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_studio(root: Path, **build_options):
    """``(url, voice library)`` of a studio built with `build_options` (`app.layout.build_studio`), its library,
    work and Gradio files under `root`, served in this process on a free loopback port until the block ends."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        from app.layout import build_studio, launch_studio

        library = VoiceLibrary(root / "voices")
        demo = build_studio(library=library, work_dir=root / "work", **build_options)
        port = free_port()
        launch_studio(demo, "127.0.0.1", port, prevent_thread_lock=True)
        try:
            yield f"http://127.0.0.1:{port}", library
        finally:
            demo.close()


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TIMBRE_CACHE=str(tmp_path_factory.mktemp("cache")))
    process = subprocess.Popen(
        [sys.executable, "-m", "tts.cli", "studio", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if process.poll() is not None:
                pytest.fail(f"studio exited: {process.stdout.read().decode(errors='replace')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("studio did not answer within 120 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_studio_serves_page_with_engine_status(studio_url):
    with urllib.request.urlopen(studio_url, timeout=10) as response:
        html = response.read().decode()
    assert "Timbre Studio" in html
    with urllib.request.urlopen(studio_url + "/config", timeout=10) as response:
        config = json.loads(response.read().decode())
    text = json.dumps(config)
    for engine in ("`ar`", "`dit`", "`base+convert`"):
        assert engine in text
    assert "not trained yet" in text or "ready" in text
    from tts.engines import engine_status

    if not next(s for s in engine_status() if s.name == "base+convert").available:  # listed, marked, explained
        assert '"base+convert (unavailable)"' in text and '"tone-color (unavailable)"' in text
        # Convert starts on the first engine that runs here (the unavailable one says why when chosen).
        convert = next(c for c in config["components"] if c["props"].get("elem_id") == "convert-engine")
        assert convert["props"]["value"] == "dit"


def test_engine_status_explains_missing_checkpoints(shipped_root):
    from tts.engines import engine_status

    statuses = {s.name: s for s in engine_status()}
    assert set(statuses) == {"ar", "dit", "base+convert", "distilled"}
    assert [s.name for s in engine_status("synthesis")] == ["ar", "dit", "base+convert"]
    assert [s.name for s in engine_status("conversion")] == ["distilled"]
    assert "flow_refiner_distilled" in statuses["distilled"].reason
    assert not statuses["ar"].available
    assert "vocoder" in statuses["ar"].reason and "not trained yet" in statuses["ar"].reason


# ---------------------------------------------------------------------------------------------------------
# The handlers, as plain functions (no browser)

CLIP_TEXT = "The quick brown fox jumps over the lazy dog."
SOURCE_TEXT = "Please call Stella and ask her to come."
"""What the recording of the `source_path` fixture says."""
SETTINGS = {"style": "neutral", "intensity": 1.0, "speed": 1.0, "seed": 5, "fmt": "wav"}


def _voice(seed: int) -> Voice:
    samples = (np.random.default_rng(seed).standard_normal(SAMPLE_RATE) * 0.1).astype(np.float32)
    return Voice(Audio(samples), f"voice number {seed}.")


@pytest.fixture
def library(tmp_path) -> VoiceLibrary:
    library = VoiceLibrary(tmp_path / "voices")
    library.add(_voice(1), "Ada", consent=CONSENT_STATEMENT)
    library.add(_voice(2), "Bob", consent=CONSENT_STATEMENT)
    return library


class FakeSynthesis:
    """Stands in for `tts.synthesis.synthesize`: echoes the voice's own clip, slowly, and records each call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[dict] = []
        self.delay = delay

    def __call__(self, text, voice, **options):
        self.calls.append({"text": text, "voice": voice, **options})
        time.sleep(self.delay)
        if options.get("progress"):
            options["progress"](1, 1)
        return iter([voice.audio]) if options.get("stream") else voice.audio


@pytest.fixture
def fake(monkeypatch) -> FakeSynthesis:
    fake = FakeSynthesis()
    monkeypatch.setattr("tts.synthesis.synthesize", fake)
    return fake


def _speak(studio: Studio, text: str = "Hello there.", voice: str | None = "Ada", **changes):
    settings = {**SETTINGS, **changes}
    source = settings.pop("voice_from", VOICE_FROM_LIBRARY)
    clip, transcript = settings.pop("clip", None), settings.pop("transcript", None)
    engine = {key: settings.pop(key) for key in ("engine", "base", "tau", "mix", "pitch", "pitch_range", "energy",
                                                 "style_ref", "takes") if key in settings}
    return studio.speak(text, source, voice, clip, transcript, settings["style"], settings["intensity"],
                        settings["speed"], settings["seed"], settings["fmt"], **engine)


def test_the_app_builds_with_its_views_queue_and_local_theme(library, tmp_path):
    demo = build_studio(engine_factory=lambda: "engine", library=library, work_dir=tmp_path / "work")
    text = json.dumps(demo.config, default=str)
    for view in ("Speak", "Convert", "Edit", "Voices", "Batch", "About"):
        assert f'"label": "{view}"' in text
    labels = [block["props"].get("label") for block in demo.config["components"]]
    assert labels.index("Speak") < labels.index("Convert") < labels.index("Edit") < labels.index("Voices")
    assert demo.analytics_enabled is False
    assert demo._queue.default_concurrency_limit == 1 and demo._queue.max_size
    assert THEME._stylesheets == []  # no web fonts: nothing is fetched from outside the studio
    # The Speak event's inputs are `Studio.speak`'s parameters, in order (the /speak API is called positionally).
    components = {block["id"]: block["props"].get("elem_id") for block in demo.config["components"]}
    speak = next(event for event in demo.config["dependencies"] if event.get("api_name") == "speak")
    parameters = [name for name in inspect.signature(Studio.speak).parameters if name not in ("self", "progress")]
    assert len(speak["inputs"]) == len(parameters)
    assert [components[i] for i in speak["inputs"][-6:]] == ["speak-mix", "speak-pitch", "speak-pitch-range",
                                                              "speak-energy", "speak-style-ref", "speak-takes"]
    assert parameters[-6:] == ["mix", "pitch", "pitch_range", "energy", "style_ref", "takes"]
    assert [components[i] for i in speak["outputs"]] == ["speak-output", "speak-download", "speak-info", "speak-plot"]
    # Likewise /edit and `Studio.edit`.
    edit = next(event for event in demo.config["dependencies"] if event.get("api_name") == "edit")
    parameters = [name for name in inspect.signature(Studio.edit).parameters if name not in ("self", "progress")]
    assert [components[i] for i in edit["inputs"]] == [
        "edit-source", "edit-transcript", "edit-mode", "edit-new-transcript", "edit-factor", "edit-span-start",
        "edit-span-end", "edit-seed", "edit-format", "edit-steps", "edit-takes", "edit-context"]
    assert parameters == ["recording", "transcript", "mode", "new_transcript", "factor", "span_start", "span_end",
                          "seed", "fmt", "steps", "takes", "context"]
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_speak_uses_the_library_voice_and_settings_and_loads_the_engine_once(library, fake, tmp_path):
    loads = []
    studio = Studio(library, lambda: loads.append(1) or "engine", tmp_path / "work")
    audio_path, download, info = _speak(studio, style="happy", intensity=0.5, speed=1.25, seed=42, fmt="flac",
                                        engine="ar")
    assert audio_path == download and audio_path.endswith(".flac")
    samples, rate = sf.read(audio_path)
    assert rate == SAMPLE_RATE and len(samples) == SAMPLE_RATE
    call = fake.calls[0]
    assert call["voice"].name == "Ada" and call["models"] == "engine"
    assert (call["emotion"], call["intensity"], call["speed"], call["seed"]) == ("happy", 0.5, 1.25, 42)
    assert (call["pitch"], call["pitch_range"], call["energy"], call.get("tags", True)) == (0.0, 1.0, 0.0, True)
    assert "1.00 s of audio" in info and "real-time factor" in info and "seed 42" in info
    assert f"voice Ada (consent: “{CONSENT_STATEMENT}”)" in info  # the consent is shown where the voice is used
    _, _, again = _speak(studio, voice="bob", seed=None, fmt="mp3", engine="ar")
    assert fake.calls[1]["voice"].name == "Bob" and 0 <= fake.calls[1]["seed"] < 2**31
    assert f"seed {fake.calls[1]['seed']}" in again
    assert loads == [1]  # loaded lazily, once, and shared


def test_speak_takes_the_style_from_a_style_clip(library, fake, tmp_path, flite):
    from tts.data.voicebank import synthesize as bank_synthesize

    clip = tmp_path / "whispered.wav"
    bank_synthesize("flite:slt", "The old lighthouse keeper painted the door a bright shade of green.",
                    style="whisper", intensity=1.0).audio.save(clip)
    studio = Studio(library, lambda: "engine", tmp_path / "work")
    _, _, info = _speak(studio, style="happy", style_ref=str(clip), pitch=2.0)
    call = fake.calls[0]
    assert call["emotion"].dominant == "whisper" and call["pitch"] == 2.0  # the clip's emotion, the controls on top
    assert "heard as whisper" in info and "emotion whisper" in info
    with pytest.raises(gr.Error, match="style reference clip"):
        _speak(studio, style_ref=str(tmp_path / "missing.wav"))
    assert len(fake.calls) == 1


@pytest.mark.parametrize("changes, message", [
    ({"text": "  "}, "type the text"),
    ({"text": "x" * (UI_MAX_TEXT_CHARS + 1)}, "at most 2,000"),
    ({"voice": None}, "choose a voice"),
    ({"voice": "Nobody"}, "no voice named 'Nobody'"),
    ({"voice": "../../etc/passwd"}, "no voice named"),
    ({"voice_from": VOICE_FROM_CLIP}, "upload or record a clip"),
    ({"fmt": "exe"}, "download format"),
    ({"speed": 3.0}, "speed must be from 0.5 to 2"),
    ({"mix": "happy:0.7+joy:0.3"}, "unknown style label 'joy'; the emotions are: neutral, happy"),
    ({"mix": "happy:0.7+sad:-0.3"}, "the weight of 'sad' must be a number >= 0"),
    ({"mix": "happy+"}, "empty emotion in 'happy[+]'"),
    ({"intensity": 2.5}, "intensity must be from 0 to 2"),
    ({"pitch": 13}, "pitch must be from -12 to 12"),
    ({"pitch_range": 0.1}, "pitch_range must be from 0.25 to 3"),
    ({"energy": -20}, "energy must be from -12 to 12"),
    ({"text": "Hello [joyful] there."}, r"unknown tag \[joyful\] at character 7; tags are"),
    ({"text": "Hello [whisper there."}, "'\\[' at character 7 starts a tag that is never closed"),
    ({"text": "Hello [happy pitch=99] there."}, "bad tag .* pitch must be from -12 to 12"),
    ({"text": "Hello [/sad] there."}, r"\[/sad\] at character 7 closes no open tag"),
])
def test_speak_reports_bad_input_as_messages(library, tmp_path, changes, message):
    loads = []
    studio = Studio(library, lambda: loads.append(1), tmp_path / "work")
    text = changes.pop("text", "Hello there.")
    voice = changes.pop("voice", "Ada")
    with pytest.raises(gr.Error, match=message):
        _speak(studio, text, voice, **changes)
    assert loads == []  # refused before the models load


def test_speak_passes_the_emotion_mix_intensity_and_prosody_to_synthesize(library, fake, tmp_path):
    studio = Studio(library, lambda: "engine", tmp_path / "work", tone_engine_factory=lambda: "tone engine")
    text = r"Good news! [whisper] keep it down [/whisper] \[1\]"
    _, _, info = _speak(studio, text, style="calm", mix=" happy:0.7+sad:0.3 ", intensity=1.5, speed=1.1,
                        pitch=4, pitch_range=1.5, energy=-3)
    call = fake.calls[0]
    assert call["text"] == text  # the tags reach the library, which reads them
    assert call["emotion"] == "happy:0.7+sad:0.3"  # the mix replaces the dropdown's label
    controls = (call["intensity"], call["speed"], call["pitch"], call["pitch_range"], call["energy"])
    assert controls == (1.5, 1.1, 4, 1.5, -3)
    assert ("emotion happy:0.7+sad:0.3 at intensity 1.5, speed x1.1, pitch +4 st, pitch range x1.5, energy -3 dB, "
            "seed 5") in info
    _, _, info = _speak(studio, style="sad", mix="  ", intensity=0.0)
    assert fake.calls[1]["emotion"] == "sad" and fake.calls[1]["intensity"] == 0.0  # a blank mix: the dropdown
    assert "emotion sad at intensity 0, seed 5" in info
    _speak(studio, engine="base+convert", mix="angry", pitch=-2)
    assert (fake.calls[2]["engine"], fake.calls[2]["emotion"], fake.calls[2]["pitch"]) == ("base+convert", "angry", -2)


def test_engine_problems_are_messages_not_tracebacks(library, fake, tmp_path):
    def missing():
        raise CheckpointError("the 'ar' engine is unavailable: not trained yet")

    with pytest.raises(gr.Error, match="not trained yet"):
        _speak(Studio(library, missing, tmp_path / "a"), engine="ar")

    def broken():
        raise RuntimeError("out of memory")

    with pytest.raises(gr.Error, match="unexpected RuntimeError: out of memory"):
        _speak(Studio(library, broken, tmp_path / "b"), engine="ar")


def test_two_sessions_at_once_each_get_their_own_voice(library, tmp_path, monkeypatch):
    fake = FakeSynthesis(delay=0.2)  # long enough for the two calls to overlap
    monkeypatch.setattr("tts.synthesis.synthesize", fake)
    studio = Studio(library, lambda: "engine", tmp_path / "work")
    results: dict[str, str] = {}

    def session(name: str) -> None:
        results[name] = _speak(studio, f"Spoken by {name}.", name)[0]

    threads = [threading.Thread(target=session, args=(name,)) for name in ("Ada", "Bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["Ada"] != results["Bob"]
    for name, seed in (("Ada", 1), ("Bob", 2)):
        samples, _ = sf.read(results[name], dtype="float32")
        expected = np.clip(_voice(seed).audio.samples, -1, 1)
        np.testing.assert_allclose(samples, expected, atol=1 / 2**14)  # 16-bit wav of the session's own voice
    assert sorted(call["text"] for call in fake.calls) == ["Spoken by Ada.", "Spoken by Bob."]
    assert {call["text"]: call["voice"].name for call in fake.calls} == {"Spoken by Ada.": "Ada", "Spoken by Bob.": "Bob"}


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    from tts.data.speakers import get_speaker

    flite = get_speaker("flite")
    if flite.unavailable_reason():
        pytest.skip(flite.unavailable_reason())
    path = tmp_path_factory.mktemp("clip") / "slt.wav"
    flite.synthesize(CLIP_TEXT, "slt").audio.save(path)
    return path


def test_speak_with_an_uploaded_clip_clones_it(library, fake, tmp_path, clip_path):
    studio = Studio(library, lambda: "engine", tmp_path / "work")
    _, _, info = _speak(studio, voice=None, voice_from=VOICE_FROM_CLIP, clip=str(clip_path), transcript=CLIP_TEXT)
    assert "voice slt.wav (no consent recorded)" in info
    voice = fake.calls[0]["voice"]
    assert "quick brown fox" in voice.transcript and voice.transcript_source == "user"
    assert voice.source == "slt.wav" and 1.0 < voice.duration < 12.5


# ---------------------------------------------------------------------------------------------------------
# Speak with base+convert, and Convert, on tiny random models


@pytest.fixture(scope="module")
def tiny_models():
    """``(ar engine, tone-color engine)`` at tiny sizes with random weights, built once for the module."""
    import torch

    from tests.test_synthesis import tiny_engine
    from tests.test_tone_color import tiny_tone_engine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from threads on a shared machine
    try:
        yield tiny_engine(), tiny_tone_engine()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def tiny_studio(tmp_path, tiny_models, clip_path):
    """A studio on the tiny models, whose library holds one voice cloned from flite's slt (``"Slt"``), and
    how often each engine was loaded."""
    from tts.voice import clone_voice

    ar_engine, tone_engine = tiny_models
    loads = {"ar": 0, "tone-color": 0}

    def load(kind: str, engine):
        def factory():
            loads[kind] += 1
            return engine
        return factory

    library = VoiceLibrary(tmp_path / "voices")
    library.add(clone_voice(str(clip_path), CLIP_TEXT), "Slt", consent=CONSENT_STATEMENT)
    studio = Studio(library, load("ar", ar_engine), tmp_path / "work", tone_engine_factory=load("tone-color", tone_engine))
    return studio, loads


@pytest.fixture(scope="module")
def source_path(tmp_path_factory) -> Path:
    """2-3 s of flite's rms saying a sentence, at 16 kHz: a recording to convert."""
    from tts.data.speakers import get_speaker

    path = tmp_path_factory.mktemp("source") / "rms.wav"
    get_speaker("flite").synthesize(SOURCE_TEXT, "rms").audio.resample(16000).save(path)
    return path


def _convert(studio: Studio, source, voice: str | None = "Slt", **changes):
    settings = {"voice_from": VOICE_FROM_LIBRARY, "clip": None, "transcript": None, "engine": "tone-color",
                "tau": 0.3, "seed": 7, "fmt": "wav", **changes}
    return studio.convert(None if source is None else str(source), settings["voice_from"], voice, settings["clip"],
                          settings["transcript"], settings["engine"], settings["tau"], settings["seed"],
                          settings["fmt"], settings.get("source_text"))


def test_speak_with_base_convert_says_it_with_the_base_speaker_in_the_voice(tiny_studio, tiny_models):
    from tts.synthesis import synthesize

    studio, loads = tiny_studio
    path, download, info = _speak(studio, "Hello there.", "Slt", engine="base+convert", base="flite:slt", tau=0.5,
                                  seed=3)
    assert path == download
    assert "engine base+convert (base flite:slt, tau 0.50)" in info and "voice Slt" in info and "seed 3" in info
    samples, rate = sf.read(path, dtype="float32")
    expected = synthesize("Hello there.", studio.library.get("Slt"), engine="base+convert", base="flite:slt",
                          tau=0.5, seed=3, models=tiny_models[1])
    assert rate == SAMPLE_RATE and 0.3 < len(samples) / rate < 5.0
    np.testing.assert_allclose(samples, np.clip(expected.samples, -1, 1), atol=1 / 2**14)  # the settings went through
    _speak(studio, "Hello again.", "Slt", engine="base+convert", base="flite:rms", seed=4)
    assert loads == {"ar": 0, "tone-color": 1}  # loaded lazily, once, and shared; the ar engine is not needed
    with pytest.raises(gr.Error, match="unknown flite voice"):
        _speak(studio, "Hello.", "Slt", engine="base+convert", base="flite:nobody")


def test_speak_streams_pieces_before_the_whole_result_and_draws_it(tiny_studio):
    from tts.audio import load_audio
    from tts.synthesis import synthesize

    studio, _ = tiny_studio
    updates = list(studio.speak_stream("Hello there. How are you today?", VOICE_FROM_LIBRARY, "Slt", None, None,
                                       "neutral", 1.0, 1.0, 3, "flac", "ar"))
    *pieces, final = updates
    assert len(pieces) >= 2 and all(isinstance(u.piece, bytes) and u.file is None for u in pieces)
    assert "so far, first audio after" in pieces[0].info
    streamed = np.concatenate([sf.read(io.BytesIO(u.piece), dtype="float32")[0] for u in pieces])
    whole = load_audio(final.file)
    assert final.piece is None and final.file.endswith(".flac") and "first audio after" in final.info
    assert len(streamed) == len(whole.samples)  # the pieces played are the result downloaded
    np.testing.assert_allclose(streamed, whole.samples, atol=2 / 2**15)
    expected = synthesize("Hello there. How are you today?", studio.library.get("Slt"), seed=3,
                          models=studio.engine())
    np.testing.assert_allclose(whole.samples, np.clip(expected.samples, -1, 1), atol=2 / 2**15)
    assert sf.info(final.file).samplerate == SAMPLE_RATE
    assert final.plot.endswith(".png") and Path(final.plot).read_bytes()[:4] == b"\x89PNG"
    (job,) = studio.speeds.jobs()
    assert (job.view, job.engine) == ("Speak", "ar") and job.first_audio_seconds <= job.compute_seconds
    assert "| Speak | `ar` | 1 |" in studio.speeds.markdown()


def test_speak_with_takes_keeps_the_take_whisper_hears_best(library, monkeypatch, tmp_path, clip_path):
    from tts.audio import load_audio
    from tts.data.speakers import get_speaker

    flite = get_speaker("flite")
    spoken = {3: "Good morning everyone.", 4: "Bad mourning every one and more.", 5: "Good morning everyone."}
    calls = []

    def by_seed(text, voice, seed, **options):  # a different take per seed: one garbled
        calls.append((text, seed, options.get("stream", False)))
        return flite.synthesize(spoken[seed], "slt").audio

    monkeypatch.setattr("tts.synthesis.synthesize", by_seed)
    studio = Studio(library, lambda: "engine", tmp_path / "work")
    *progress, final = studio.speak_stream("[happy] Good morning everyone. [/happy]", VOICE_FROM_LIBRARY, "Ada",
                                           None, None, "neutral", 1.0, 1.0, 4, "wav", takes=2)
    assert progress == [] and [seed for _, seed, _ in calls] == [4, 5] and not any(s for *_, s in calls)
    assert final.piece == final.file  # the kept take plays whole
    assert "seed 5;" in final.info and "takes (seed: WER heard) 4: " in final.info and "5: 0.00 kept" in final.info
    np.testing.assert_allclose(load_audio(final.file).samples, flite.synthesize(spoken[5], "slt").audio.samples,
                               atol=1 / 2**14)
    with pytest.raises(gr.Error, match="takes must be from 1 to 4"):
        _speak(studio, takes=5)
    with pytest.raises(gr.Error, match="takes must be a whole number"):
        _speak(studio, takes=1.5)


def test_speak_pitch_and_energy_change_the_tiny_engines_output(tiny_studio):
    from tts.audio import load_audio
    from tts.data.styles import LEVEL_GATE_DB
    from tts.preprocess import active_rms_dbfs

    studio, _ = tiny_studio
    outputs = {name: load_audio(_speak(studio, "Hello there.", "Slt", seed=3, **changes)[0])
               for name, changes in (("neutral", {}), ("pitch", {"pitch": 4}), ("energy", {"energy": 6}))}
    neutral, shifted, louder = outputs["neutral"], outputs["pitch"], outputs["energy"]
    assert len(louder) == len(neutral) and abs(len(shifted) - len(neutral)) < 0.2 * len(neutral)
    assert not np.allclose(shifted.samples[:len(neutral)], neutral.samples[:len(shifted)], atol=1e-3)
    level = active_rms_dbfs(louder, gate_db=-LEVEL_GATE_DB) - active_rms_dbfs(neutral, gate_db=-LEVEL_GATE_DB)
    assert level == pytest.approx(6.0, abs=0.5)


def test_convert_with_tone_color_keeps_the_recording_and_changes_the_voice(tiny_studio, tiny_models, source_path):
    from tts.audio import load_audio
    from tts.synthesis import convert

    studio, loads = tiny_studio
    path, download, info = _convert(studio, source_path, "slt", tau=0.2, seed=11, fmt="flac")
    assert path == download and path.endswith(".flac")
    samples, rate = sf.read(path, dtype="float32")
    source = load_audio(source_path)
    assert rate == SAMPLE_RATE and len(samples) == len(source.samples)  # the recording's length, at 24 kHz
    expected = convert(source, studio.library.get("Slt"), engine="tone-color", tau=0.2, seed=11, models=tiny_models[1])
    np.testing.assert_allclose(samples, np.clip(expected.samples, -1, 1), atol=1 / 2**14)
    assert f"{source.duration:.2f} s recording converted to {source.duration:.2f} s of audio" in info
    assert "real-time factor" in info and "engine tone-color (tau 0.20)" in info and "voice Slt" in info
    assert "seed 11" in info
    _, _, again = _convert(studio, source_path, seed=None)
    assert "seed " in again and loads == {"ar": 0, "tone-color": 1}


def test_convert_with_ar_and_a_target_clip(tiny_studio, source_path, clip_path):
    from tts.audio import load_audio

    studio, loads = tiny_studio
    path, _, info = _convert(studio, source_path, None, engine="ar", voice_from=VOICE_FROM_CLIP, clip=str(clip_path),
                             transcript=CLIP_TEXT)
    samples, rate = sf.read(path, dtype="float32")
    source = load_audio(source_path)
    assert rate == SAMPLE_RATE and abs(len(samples) / rate - source.duration) < 0.1  # token-rate granularity
    assert "engine ar" in info and "voice slt.wav" in info  # a clip's voice is named by its file
    assert loads == {"ar": 1, "tone-color": 0}


@pytest.mark.parametrize("problem, message", [
    ("no source", "upload or record the speech to convert"),
    ("over-long source", "the limit is 5.0 min"),
    ("corrupt source", "not a readable audio file"),
    ("too short source", "at least 0.3 s"),
    ("no target", "choose a voice from the library"),
    ("unknown target", "no voice named 'Nobody'"),
    ("no target clip", "upload or record a clip"),
    ("unknown engine", "choose an engine: dit, tone-color, distilled, ar"),
    ("bad format", "download format"),
])
def test_convert_reports_bad_input_as_messages(tiny_studio, source_path, tmp_path, problem, message):
    studio, loads = tiny_studio
    source, voice, changes = source_path, "Slt", {}
    if problem == "no source":
        source = None
    elif problem == "over-long source":
        source = tmp_path / "long.wav"
        sf.write(source, np.zeros(int((UI_MAX_SOURCE_SECONDS + 1) * 8000), np.int16), 8000)
    elif problem == "corrupt source":
        source = tmp_path / "corrupt.wav"
        source.write_bytes(b"RIFF\x24\x00\x00\x00WAVEnot really audio")
    elif problem == "too short source":
        source = tmp_path / "short.wav"
        sf.write(source, np.zeros(2400, np.float32), SAMPLE_RATE)
    elif problem == "no target":
        voice = None
    elif problem == "unknown target":
        voice = "Nobody"
    elif problem == "no target clip":
        changes = {"voice_from": VOICE_FROM_CLIP}
    elif problem == "unknown engine":
        changes = {"engine": "magic"}
    else:
        changes = {"fmt": "exe"}
    with pytest.raises(gr.Error, match=message):
        _convert(studio, source, voice, **changes)
    assert not any(studio.work_dir.glob("*/*.wav"))
    assert loads["tone-color"] == (problem == "too short source")  # bad input is refused before the models load


def test_unavailable_engines_are_listed_and_say_why(library, fake, tmp_path, shipped_root, source_path):
    from tts.synthesis import CONVERSION_ENGINES, SYNTHESIS_ENGINES

    studio = Studio(library, None, tmp_path / "work")  # the shipped checkpoints, of which there are none
    assert studio.engine_choices(SYNTHESIS_ENGINES) == [("dit (unavailable)", "dit"), ("ar (unavailable)", "ar"),
                                                        ("base+convert (unavailable)", "base+convert")]
    assert [value for _, value in studio.engine_choices(CONVERSION_ENGINES)] == ["dit", "tone-color", "distilled", "ar"]
    assert "converter" in studio.engine_note("tone-color") and "not trained yet" in studio.engine_note("base+convert")
    with pytest.raises(gr.Error, match="'base[+]convert' engine is unavailable here: not trained yet.*converter"):
        _speak(studio, engine="base+convert")
    with pytest.raises(gr.Error, match="'tone-color' engine is unavailable here: not trained yet.*converter"):
        _convert(studio, source_path, "Ada")
    with pytest.raises(gr.Error, match="'ar' engine is unavailable here: not trained yet"):
        _convert(studio, source_path, "Ada", engine="ar")
    with pytest.raises(gr.Error, match="'distilled' engine is unavailable here: not trained yet.*flow_refiner_distilled"):
        _convert(studio, source_path, "Ada", engine="distilled")
    with pytest.raises(gr.Error, match="'dit' engine is unavailable here: not trained yet.*dit"):
        _speak(studio, engine="dit")
    assert fake.calls == []

    given = Studio(library, lambda: "engine", tmp_path / "work", tone_engine_factory=lambda: "tone engine",
                   dit_engine_factory=lambda: "dit engine")
    assert given.engine_choices(SYNTHESIS_ENGINES) == [("dit", "dit"), ("ar", "ar"), ("base+convert", "base+convert")]
    assert given.engine_note("tone-color") == given.engine_note("dit") == ""
    _speak(given, engine="base+convert", base=None, tau=0.0)
    call = fake.calls[0]
    assert (call["engine"], call["base"], call["tau"], call["models"]) == ("base+convert", DEFAULT_BASE, 0.0,
                                                                           "tone engine")


# ---------------------------------------------------------------------------------------------------------
# Edit, and Speak with `dit`, on a tiny untrained DiT with the shipped aligner and vocoder

EDIT_TEXT = "The cat sat on the mat."
EDIT_LEAD = 0.3
"""Seconds of silence before the words in the recording to edit."""


@pytest.fixture(scope="module")
def tiny_dit(single_thread):
    """The `dit` engine on a tiny untrained DiT with the shipped aligner and vocoder (tests/test_dit_engine.py)."""
    from tests.test_dit_engine import tiny_dit_engine

    return tiny_dit_engine()


@pytest.fixture(scope="module")
def edit_path(tmp_path_factory, flite) -> Path:
    """flite's slt saying `EDIT_TEXT` after `EDIT_LEAD` s of silence, at 24 kHz (the file's samples are exactly
    what the studio reads)."""
    speech = flite.synthesize(EDIT_TEXT, "slt").audio.resample(SAMPLE_RATE).samples
    path = tmp_path_factory.mktemp("edit") / "cat.wav"
    Audio(np.concatenate([np.zeros(int(EDIT_LEAD * SAMPLE_RATE), np.float32), speech])).save(path)
    return path


@pytest.fixture
def dit_studio(tmp_path, tiny_dit):
    """A studio whose `dit` engine is `tiny_dit` (no other engine may load), and the list of its dit loads."""
    loads: list[int] = []

    def other_engine():
        pytest.fail("only the dit engine may load")

    studio = Studio(VoiceLibrary(tmp_path / "voices"), other_engine, tmp_path / "work",
                    tone_engine_factory=other_engine, dit_engine_factory=lambda: loads.append(1) or tiny_dit)
    return studio, loads


def _edit(studio: Studio, recording, new_text: str | None = "The dog sat on the mat.", **changes):
    settings = {"transcript": EDIT_TEXT, "mode": EDIT_WORDS, "factor": 1.0, "span_start": None, "span_end": None,
                "seed": 3, "fmt": "wav", "steps": 2, "takes": 1, "context": 0, **changes}
    return studio.edit(None if recording is None else str(recording), settings["transcript"], settings["mode"],
                       new_text, settings["factor"], settings["span_start"], settings["span_end"], settings["seed"],
                       settings["fmt"], steps=settings["steps"], takes=settings["takes"], context=settings["context"])


def test_edit_says_other_words_and_keeps_the_rest_of_the_recording(dit_studio, tiny_dit, edit_path):
    from tts.audio import load_audio
    from tts.dit.engine import edit

    studio, loads = dit_studio
    path, download, info = _edit(studio, edit_path, "The dog sat on the mat.")
    assert path == download and path.endswith(".wav")
    source, edited = load_audio(edit_path), load_audio(path)
    expected = edit(source, EDIT_TEXT, "The dog sat on the mat.", seed=3, steps=2, models=tiny_dit, context=0)
    np.testing.assert_allclose(edited.samples, expected.audio.samples, atol=1 / 2**14)  # the settings went through
    assert expected.changes == [("cat", "dog")]
    (start, end), = expected.spans
    kept = int(start * SAMPLE_RATE)
    assert kept > EDIT_LEAD * SAMPLE_RATE  # the silence and "The" come first
    assert np.array_equal(edited.samples[:kept], source.samples[:kept])  # the recording's own samples, exactly
    shift, after = len(edited) - len(source), int(np.ceil(end * SAMPLE_RATE))
    assert np.array_equal(edited.samples[after:], source.samples[after - shift:])  # and after the span
    assert f"{source.duration:.2f} s recording edited to {edited.duration:.2f} s" in info
    assert "engine dit, 2 steps, seed 3. 1 span(s) said again" in info
    assert f"| {start:.2f}-{end:.2f} | cat | dog |" in info
    _, _, info = _edit(studio, edit_path, "The black cat sat on the mat!", seed=None)
    assert "| — | black |" in info and "seed " in info
    path, _, info = _edit(studio, edit_path, "The dog sat on the mat.", steps=0)  # the slider's default
    automatic = edit(source, EDIT_TEXT, "The dog sat on the mat.", seed=3, models=tiny_dit, context=0)
    np.testing.assert_allclose(load_audio(path).samples, automatic.audio.samples, atol=1 / 2**14)
    assert "engine dit, steps automatic, seed 3." in info
    assert loads == [1]  # loaded once, on the first edit


def test_convert_with_dit_says_the_recording_again_in_the_voice(dit_studio, tiny_dit, edit_path, clip_path,
                                                                monkeypatch):
    """Convert on `dit`: what the recording says as typed, or (left empty) as Whisper hears it, is what the DiT is
    given; the output is the recording's length."""
    from tts.audio import load_audio
    from tts.synthesis import convert
    from tts.voice import clone_voice

    studio, loads = dit_studio
    studio.library.add(clone_voice(str(clip_path), CLIP_TEXT), "Cat", consent=CONSENT_STATEMENT)
    path, _, info = _convert(studio, edit_path, "Cat", engine="dit", seed=5, source_text=f"  {EDIT_TEXT} ")
    source, converted = load_audio(edit_path), load_audio(path)
    expected = convert(source, studio.library.get("Cat"), engine="dit", source_text=EDIT_TEXT, seed=5, models=tiny_dit)
    np.testing.assert_allclose(converted.samples, expected.samples, atol=1 / 2**14)
    assert abs(converted.duration - source.duration) < 0.02 and "engine dit, voice Cat" in info and "seed 5" in info
    assert f"Words said: “{EDIT_TEXT}” (as typed)" in info
    heard = []
    monkeypatch.setattr("tts.evaluation.asr.transcribe", lambda audio, model=None: heard.append(audio) or EDIT_TEXT)
    path, _, info = _convert(studio, edit_path, "Cat", engine="dit", seed=5, source_text=" ")
    assert len(heard) == 1 and abs(heard[0].duration - source.duration) < 0.01  # the recording, transcribed
    assert f"Words said: “{EDIT_TEXT}” (heard by Whisper" in info
    np.testing.assert_allclose(load_audio(path).samples, expected.samples, atol=1 / 2**14)
    assert loads == [1]


def test_edit_with_takes_keeps_the_edit_whisper_hears_best(dit_studio, tiny_dit, edit_path, monkeypatch):
    from tts.audio import load_audio
    from tts.dit.engine import edit

    studio, _ = dit_studio
    # What Whisper "hears" in the takes of seeds 3, 4 and 5 (the tiny DiT is untrained: its words are noise).
    heard = iter(["The cat sat on the mat.", "The dog sat on the mat.", "A dog sat on a mat."])
    monkeypatch.setattr("tts.evaluation.asr.transcribe", lambda audio, model=None: next(heard))
    path, _, info = _edit(studio, edit_path, "The dog sat on the mat.", takes=3)
    assert next(heard, None) is None  # each of the three takes was listened to
    assert "seed 4. takes (seed: WER heard) 3: 0.17, 4: 0.00 kept, 5: 0.33." in info
    expected = edit(load_audio(edit_path), EDIT_TEXT, "The dog sat on the mat.", seed=4, steps=2, models=tiny_dit,
                    context=0)
    np.testing.assert_allclose(load_audio(path).samples, expected.audio.samples, atol=1 / 2**14)  # the kept take
    assert path.endswith("timbre-edit-4.wav")
    with pytest.raises(gr.Error, match="takes must be from 1 to 4"):
        _edit(studio, edit_path, takes=5)
    with pytest.raises(gr.Error, match="takes are for word edits"):
        _edit(studio, edit_path, mode=EDIT_SPEED, factor=0.8, takes=2)


def test_edit_preview_shows_the_spans_that_will_change_without_generating(dit_studio, tiny_dit, edit_path):
    from tts.audio import load_audio

    studio, loads = dit_studio
    plan = studio.preview_edit(str(edit_path), EDIT_TEXT, "The dog sat on the mat.", 0)
    preview = tiny_dit.preview_edit(load_audio(edit_path), EDIT_TEXT, "The dog sat on the mat.", context=0)
    (start, end), = preview.spans
    assert preview.changes == [("cat", "dog")] and EDIT_LEAD < start < end < load_audio(edit_path).duration
    assert plan.startswith("1 span(s) of the") and f"| {start:.2f}-{end:.2f} | cat | dog |" in plan
    assert not studio.work_dir.exists() or not any(studio.work_dir.iterdir())  # nothing generated or written
    # The edit then says again what the preview showed (its span in the output adds the cross-fade margins).
    _, _, info = _edit(studio, edit_path, "The dog sat on the mat.")
    out_start, out_end = map(float, re.search(r"\| ([0-9.]+)-([0-9.]+) \| cat \| dog \|", info).groups())
    assert out_start <= start + 0.01 and out_end >= end - 0.1
    # By default (EDIT_CONTEXT_WORDS) a word each side is said again with the change; the control takes 0-3.
    wide = studio.preview_edit(str(edit_path), EDIT_TEXT, "The dog sat on the mat.")
    assert EDIT_CONTEXT_WORDS == 1 and "| The cat sat | The dog sat |" in wide
    with pytest.raises(gr.Error, match="says the same words"):
        studio.preview_edit(str(edit_path), EDIT_TEXT, EDIT_TEXT)
    with pytest.raises(gr.Error, match="type what the recording says now"):
        studio.preview_edit(str(edit_path), EDIT_TEXT, " ")
    for bad in (4, -1, 1.5):
        with pytest.raises(gr.Error, match="context words must be"):
            studio.preview_edit(str(edit_path), EDIT_TEXT, "The dog sat on the mat.", bad)
    with pytest.raises(gr.Error, match="context words must be"):
        _edit(studio, edit_path, context=4)
    assert loads == [1]


def test_edit_shows_the_word_timings_of_the_transcript(dit_studio, edit_path):
    studio, _ = dit_studio
    shown = studio.word_timings(str(edit_path), EDIT_TEXT)
    spans = re.findall(r"\*\*([\w']+)\*\* ([0-9.]+)-([0-9.]+)", shown)
    assert [word.lower() for word, *_ in spans] == [w.strip(".").lower() for w in EDIT_TEXT.split()]
    times = [(float(a), float(b)) for _, a, b in spans]
    assert all(start <= end for start, end in times) and times[0][0] >= EDIT_LEAD - 0.1
    assert all(a[1] <= b[0] + 0.02 for a, b in zip(times, times[1:]))  # in order
    with pytest.raises(gr.Error, match="type what the recording says now"):
        studio.word_timings(str(edit_path), "")


def test_edit_takes_the_last_speak_result_and_its_words(tmp_path, edit_path):
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: "engine", tmp_path / "work")
    assert studio.last_speech(str(edit_path), "[happy] The cat sat [/happy] on the mat.") == (
        str(edit_path), "The cat sat on the mat.")
    with pytest.raises(gr.Error, match="generate speech in Speak first"):
        studio.last_speech(None, "text")


def test_edit_changes_the_speed_and_speak_shares_the_dit_engine(dit_studio, edit_path, clip_path):
    from tts.audio import load_audio
    from tts.voice import clone_voice

    studio, loads = dit_studio
    source = load_audio(edit_path)
    path, _, info = _edit(studio, edit_path, None, mode=EDIT_SPEED, factor=0.7, span_start=0, span_end=0)  # all of it
    slower = load_audio(path)
    assert slower.duration == pytest.approx(source.duration / 0.7, rel=0.15)
    assert f"| 0.00-{slower.duration:.2f} | {EDIT_TEXT} | {EDIT_TEXT} (x0.7) |" in info
    middle = EDIT_LEAD + (source.duration - EDIT_LEAD) / 2
    path, _, info = _edit(studio, edit_path, "ignored in a speed edit", mode=EDIT_SPEED, factor=0.5,
                          span_start=middle - 0.2, span_end=middle + 0.2)
    local = load_audio(path)
    assert source.duration < local.duration < slower.duration  # only the span is slower
    assert "1 span(s) said again" in info and "(x0.5) |" in info and f"{EDIT_TEXT} (x0.5)" not in info

    studio.library.add(clone_voice(str(clip_path), CLIP_TEXT), "Slt", consent=CONSENT_STATEMENT)
    path, _, info = _speak(studio, "The mat.", "Slt", engine="dit", seed=1)
    assert "engine dit, voice Slt" in info and 0.1 < load_audio(path).duration < 5.0
    assert loads == [1]  # Speak and Edit share the one dit engine


@pytest.mark.parametrize("problem, message", [
    ("no recording", "upload or record the speech to edit"),
    ("no transcript", "type what the recording says now"),
    ("no new words", "type what the recording should say"),
    ("same words", "the same words as the old one: nothing to edit"),
    ("over-long recording", "the audio is 1.5 min long; the limit is 1.0 min"),
    ("speed of 1", "a speed of 1 changes nothing"),
    ("speed out of range", "speed must be from 0.5 to 2"),
    ("half a span", r"end after its start \(both 0: the whole recording\); got 0.5 s to 0 s"),
    ("backward span", "got 1 s to 0.5 s"),
    ("span past the end", "the span starts at 9 s, after the end of the"),
    ("no word in the span", "no word is spoken between 0.00 s and 0.10 s"),
    ("unknown change", "choose what to change"),
    ("too many steps", r"sampling steps must be from 0 \(automatic\) to 64, got 65"),
    ("bad format", "download format"),
])
def test_edit_reports_bad_input_as_messages(dit_studio, edit_path, tmp_path, problem, message):
    studio, loads = dit_studio
    recording, new_text, changes = edit_path, "The dog sat on the mat.", {}
    speed = {"mode": EDIT_SPEED, "factor": 0.8}
    if problem == "no recording":
        recording = None
    elif problem == "no transcript":
        changes = {"transcript": "  "}
    elif problem == "no new words":
        new_text = ""
    elif problem == "same words":
        new_text = " the cat, sat on the MAT "  # case and punctuation are no change
    elif problem == "over-long recording":
        recording = tmp_path / "long.wav"
        sf.write(recording, np.zeros(90 * 8000, np.int16), 8000)
    elif problem == "speed of 1":
        changes = {**speed, "factor": 1.0}
    elif problem == "speed out of range":
        changes = {**speed, "factor": 3.0}
    elif problem == "half a span":
        changes = {**speed, "span_start": 0.5}
    elif problem == "backward span":
        changes = {**speed, "span_start": 1.0, "span_end": 0.5}
    elif problem == "span past the end":
        changes = {**speed, "span_start": 9.0, "span_end": 10.0}
    elif problem == "no word in the span":
        changes = {**speed, "span_start": 0.0, "span_end": 0.1}  # inside the leading silence
    elif problem == "unknown change":
        changes = {"mode": "change the voice"}
    elif problem == "too many steps":
        changes = {"steps": 65}
    else:
        changes = {"fmt": "exe"}
    with pytest.raises(gr.Error, match=message):
        _edit(studio, recording, new_text, **changes)
    assert not any(studio.work_dir.glob("*/*.wav"))
    # Bad input is refused before the models load; only the engine can tell what the recording says.
    assert loads == ([1] if problem in ("same words", "no word in the span") else [])


def test_edit_says_why_the_dit_engine_is_unavailable(tmp_path, shipped_root, edit_path):
    studio = Studio(VoiceLibrary(tmp_path / "voices"), None, tmp_path / "work")  # no shipped checkpoints
    reason = "not trained yet: needs the checkpoint(s) dit, speech_tokenizer, vocoder in checkpoints/"
    assert studio.engine_note("dit") == f"**`dit` is unavailable here:** {reason}"
    with pytest.raises(gr.Error, match=f"the 'dit' engine is unavailable here: {re.escape(reason)}"):
        _edit(studio, edit_path)
    demo = build_studio(library=studio.library, work_dir=tmp_path / "work")
    note = next(block for block in demo.config["components"] if block["props"].get("elem_id") == "edit-engine-note")
    assert reason in note["props"]["value"]  # the Edit view shows it as it opens


def test_transcribe_fills_in_what_the_recording_says(tmp_path, edit_path):
    studio = Studio(VoiceLibrary(tmp_path / "voices"), None, tmp_path / "work")
    words = studio.transcribe_recording(str(edit_path)).lower()
    assert "cat" in words and "mat" in words, words  # Whisper tiny.en, offline
    with pytest.raises(gr.Error, match="upload or record the speech to transcribe"):
        studio.transcribe_recording(None)


def test_make_rename_export_import_delete_a_voice(tmp_path, clip_path):
    library = VoiceLibrary(tmp_path / "voices")
    studio = Studio(library, lambda: "engine", tmp_path / "work")
    pending, (rate, samples), transcript, info = studio.clean_clip(str(clip_path), CLIP_TEXT)
    assert rate == SAMPLE_RATE and len(samples) == len(pending.audio) and "quick brown fox" in transcript
    assert "cleaned clip" in info
    with pytest.raises(gr.Error, match="permission"):
        studio.save_voice(pending, transcript, "Slt", consent=False)
    with pytest.raises(gr.Error, match="clean a clip first"):
        studio.save_voice(None, transcript, "Slt", consent=True)
    with pytest.raises(gr.Error, match="name"):
        studio.save_voice(pending, transcript, "../slt", consent=True)
    message, rows, chosen, speak, convert = studio.save_voice(pending, "the quick brown fox jumps.", "Slt",
                                                              consent=True)
    assert "Slt" in message and rows[0][0] == "Slt" and rows[0][3] == CONSENT_STATEMENT
    assert chosen["choices"] == convert["choices"] == ["Slt"]
    assert chosen["value"] == speak["value"] == convert["value"] == "Slt"
    assert library.get("slt").transcript == "the quick brown fox jumps."  # the user's correction is kept
    (rate, played), description = studio.show_voice("Slt")
    assert np.array_equal(played, pending.audio.samples) and "Consent: I confirm" in description

    message, rows, chosen, speak, convert = studio.rename_voice("Slt", "Flite Slt", speak_selected="Slt",
                                                                convert_selected="slt")
    assert chosen["value"] == speak["value"] == convert["value"] == "Flite Slt"  # the other views follow it
    assert [row[0] for row in rows] == ["Flite Slt"]
    exported = studio.export_voice("Flite Slt")
    assert Path(exported).name == "Flite_Slt.voice" and Voice.load(exported).consent == CONSENT_STATEMENT
    message, rows, chosen, _, convert = studio.import_voice(exported, "Copy", consent=False,  # the file has consent
                                                            convert_selected="Flite Slt")
    assert [row[0] for row in rows] == ["Copy", "Flite Slt"] and chosen["value"] == "Copy"
    assert convert["value"] == "Flite Slt"
    with pytest.raises(gr.Error, match="already has"):
        studio.import_voice(exported, None, consent=False)
    message, rows, chosen, speak, convert = studio.delete_voice("Flite Slt", speak_selected="Flite Slt",
                                                                convert_selected="Flite Slt")
    assert [row[0] for row in rows] == ["Copy"] and speak["value"] == convert["value"] == "Copy"
    with pytest.raises(gr.Error, match="no voice named"):
        studio.delete_voice("Flite Slt")


def test_a_tampered_voice_file_is_refused_on_import(library, tmp_path):
    studio = Studio(library, lambda: "engine", tmp_path / "work")
    path = Path(studio.export_voice("Ada"))
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x00\x00\x80\x3f" * 2  # change the last samples
    path.write_bytes(bytes(data))
    with pytest.raises(gr.Error, match="checksum"):
        studio.import_voice(str(path), "Tampered", consent=True)
    assert library.names() == ["Ada", "Bob"]


def test_over_long_clips_are_refused(tmp_path):
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: "engine", tmp_path / "work")
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(61 * 8000, np.float32), 8000)
    with pytest.raises(gr.Error, match="the limit is 1.0 min"):
        studio.clean_clip(str(path), "hello")


def test_batch_runs_a_pasted_manifest_and_zips_audio_metadata_and_errors(tmp_path):
    from tts.data.speakers import get_speaker

    if get_speaker("flite").unavailable_reason():
        pytest.skip(get_speaker("flite").unavailable_reason())
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: "engine", tmp_path / "work")
    lines = "\n".join([
        json.dumps({"id": "one", "text": "First line.", "voice": "flite:slt"}),
        "{broken json",
        json.dumps({"id": "two", "text": "Second line.", "voice": "flite:rms", "speed": 1.2}),
    ])
    progress = []
    summary, rows, archive = studio.run_batch(lines, None, progress=lambda value, desc: progress.append(value))
    assert summary.startswith("2 of 3 lines spoken") and "1 bad line" in summary
    assert [(row[0], row[1], row[2]) for row in rows] == [(1, "one", "ok"), (2, "", "error"), (3, "two", "ok")]
    assert "broken JSON" in rows[1][6] and progress[-1] == (2, 2)
    with zipfile.ZipFile(archive) as zipped:
        assert {"audio/one.flac", "audio/two.flac", "metadata.jsonl", "errors.jsonl"} <= set(zipped.namelist())
        assert len(zipped.read("errors.jsonl").decode().splitlines()) == 1
        audio, rate = sf.read(io.BytesIO(zipped.read("audio/two.flac")))
        assert rate == SAMPLE_RATE and len(audio) > 0.3 * rate

    csv_file = tmp_path / "lines.csv"
    csv_file.write_text('id,text,voice\nc1,"Hello, world.",flite:slt\n')
    summary, rows, _ = studio.run_batch("ignored when a file is given", str(csv_file))
    assert summary.startswith("1 of 1 lines") and rows[0][1] == "c1"


def test_batch_lines_without_a_voice_take_the_chosen_voices_and_styles(tmp_path):
    from tts.data.speakers import get_speaker

    if get_speaker("flite").unavailable_reason():
        pytest.skip(get_speaker("flite").unavailable_reason())
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: "engine", tmp_path / "work")
    lines = "id,text\nv1,First line.\nv2,Second line.\nv3,Third line.\n"
    summary, rows, _ = studio.run_batch(lines, None, ["flite:slt", "flite:rms"], ["calm"])
    assert summary.startswith("3 of 3 lines spoken")
    assert [(row[1], row[3], row[4]) for row in rows] == [("v1", "flite:slt", "calm"), ("v2", "flite:rms", "calm"),
                                                          ("v3", "flite:slt", "calm")]
    with pytest.raises(gr.Error, match="missing: voice"):
        studio.run_batch(lines, None)
    with pytest.raises(gr.Error, match="not accepted"):
        studio.run_batch(lines, None, ["/etc/passwd"])


def test_a_stopped_batch_ends_after_its_current_line_and_keeps_the_finished_ones(tmp_path):
    from tts.data.speakers import get_speaker

    if get_speaker("flite").unavailable_reason():
        pytest.skip(get_speaker("flite").unavailable_reason())
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: "engine", tmp_path / "work")
    lines = "\n".join(json.dumps({"id": f"s{i}", "text": f"This is line number {i} of a long batch.",
                                  "voice": "flite:slt"}) for i in range(60))
    running = studio.run_batch_stream(lines, None, poll_seconds=0.05)
    first = next(running)
    assert first[0].startswith("synthesizing:") and "of 60 lines done" in first[0]
    running.close()  # what the page's Stop does: Gradio closes the cancelled event's generator
    (folder,) = (tmp_path / "work").iterdir()
    audio = folder / "corpus" / "audio"

    def finished() -> int:
        return len(list(audio.glob("*.flac"))) if audio.is_dir() else 0

    deadline = time.time() + 30
    while time.time() < deadline:
        before = finished()
        time.sleep(1.0)
        if finished() == before:
            break
    assert 0 < finished() < 60  # it stopped early, and what it finished is kept
    assert not [p for p in audio.iterdir() if not p.name.endswith(".flac")]  # no half-written file


def test_batch_never_reads_server_files_as_voices(tmp_path):
    from tts.data.speakers import get_speaker

    if get_speaker("flite").unavailable_reason():
        pytest.skip(get_speaker("flite").unavailable_reason())
    secret = tmp_path / "server" / "private.wav"
    secret.parent.mkdir()
    get_speaker("flite").synthesize("Private words.", "awb").audio.save(secret)
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: pytest.fail("no engine may load"), tmp_path / "work")
    lines = "\n".join([
        json.dumps({"id": "abs", "text": "Say it.", "voice": str(secret)}),
        json.dumps({"id": "ok", "text": "Fine.", "voice": "flite:slt"}),
        json.dumps({"id": "rel", "text": "Say it.", "voice": "../../server/missing.wav"}),
    ])
    summary, rows, archive = studio.run_batch(lines, None)
    assert summary.startswith("1 of 3 lines spoken")
    by_id = {row[1]: row for row in rows}
    assert by_id["ok"][2] == "ok" and by_id["abs"][2] == "error"
    assert "not accepted here" in by_id["abs"][6] and by_id["rel"][2] == "error"
    assert by_id["rel"][6] == by_id["abs"][6]  # the same answer whether or not the file exists
    with zipfile.ZipFile(archive) as zipped:
        assert [name for name in zipped.namelist() if name.startswith("audio/")] == ["audio/ok.flac"]


@pytest.mark.parametrize("lines, message", [
    ("", "paste manifest lines"),
    ("\n".join(json.dumps({"id": f"l{i}", "text": "x", "voice": "flite:slt"}) for i in range(UI_MAX_BATCH_LINES + 1)),
     "at most 100"),
    ("id,words\n1,hello\n", "CSV header"),
])
def test_batch_refuses_unusable_manifests(tmp_path, lines, message):
    studio = Studio(VoiceLibrary(tmp_path / "voices"), lambda: "engine", tmp_path / "work")
    with pytest.raises(gr.Error, match=message):
        studio.run_batch(lines, None)


def test_about_lists_checkpoints_with_sizes_and_versions(shipped_root):
    assert "No checkpoints" in checkpoints_markdown()
    (shipped_root / "vocoder").mkdir()
    (shipped_root / "vocoder" / "config.json").write_text("{}")
    (shipped_root / "vocoder" / "model.safetensors").write_bytes(b"\0" * 3 * 2**20)
    assert "| `vocoder` | `unlisted` | 3.0 MiB |" in checkpoints_markdown()
    from tts.checkpoints import sha256_file, write_manifest

    write_manifest(shipped_root)
    digest = sha256_file(shipped_root / "vocoder" / "model.safetensors")[:12]
    assert f"| `vocoder` | `{digest}` | 3.0 MiB |" in checkpoints_markdown()
    assert gr.__version__ in versions_markdown() and "timbre-studio" in versions_markdown()
