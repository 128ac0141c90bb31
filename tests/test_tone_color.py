"""The tone-color path (`tts.tone_color`): `convert(engine="tone-color")` and `synthesize(engine="base+convert")`
on a tiny random converter and vocoder, with the real flite base speaker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tts
from converter.openvoice import ToneColorConverter
from converter.train import PRESETS as CONVERTER_PRESETS
from tts.audio import SAMPLE_RATE, Audio
from tts.errors import CheckpointError, VoiceError
from tts.synthesis import convert, join_chunks, synthesize
from tts.tone_color import ToneColorEngine
from tts.voice import Voice, clone_voice
from vocoder.train import PRESETS as VOCODER_PRESETS
from vocoder.vocos import Vocos

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_tone_engine() -> ToneColorEngine:
    torch.manual_seed(0)
    converter = ToneColorConverter(CONVERTER_PRESETS["tiny"].model).eval()
    with torch.no_grad():  # a fresh flow is the identity: make the tone color matter
        for name, param in converter.named_parameters():
            if ".post." in name:
                param.normal_(0.0, 0.1)
    return ToneColorEngine(converter, Vocos(VOCODER_PRESETS["tiny"].generator).eval())


@pytest.fixture(scope="module")
def engine() -> ToneColorEngine:
    return tiny_tone_engine()


@pytest.fixture(scope="module")
def voices(flite) -> tuple[Voice, Voice]:
    text_a, text_b = "The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things."
    return (clone_voice(flite.synthesize(text_a, "slt").audio, transcript=text_a),
            clone_voice(flite.synthesize(text_b, "rms").audio, transcript=text_b))


def test_convert_keeps_the_length_is_seeded_and_follows_the_target(engine, voices, flite):
    source = flite.synthesize("Bring the red box to the kitchen.", "awb").audio
    out = convert(source, voices[0], models=engine, seed=3, watermark=False)
    assert out.sample_rate == SAMPLE_RATE and len(out) == len(source)
    assert np.isfinite(out.samples).all()
    again = convert(source, voices[0], models=engine, seed=3, watermark=False)
    assert np.array_equal(out.samples, again.samples)
    other_seed = convert(source, voices[0], models=engine, seed=4, watermark=False)
    assert not np.array_equal(out.samples, other_seed.samples)
    deterministic = [convert(source, voices[0], models=engine, tau=0.0, seed=s, watermark=False) for s in (1, 2)]
    assert np.array_equal(deterministic[0].samples, deterministic[1].samples)
    other_target = convert(source, voices[1], models=engine, tau=0.0, watermark=False)
    assert not np.allclose(deterministic[0].samples, other_target.samples, atol=1e-4)


def test_convert_accepts_other_rates_and_paths(engine, voices, flite, tmp_path):
    source = flite.synthesize("Good morning.", "awb").audio.resample(16_000)
    path = source.save(tmp_path / "source.wav")
    out = convert(path, voices[1], models=engine, seed=0, watermark=False)
    assert out.sample_rate == SAMPLE_RATE and abs(out.duration - source.duration) < 1e-3


def test_voice_tone_color_is_cached_by_content(engine, voices):
    first = engine.voice_tone_color(voices[0])
    copy = Voice(Audio(voices[0].audio.samples.copy()), voices[0].transcript)
    assert copy.digest == voices[0].digest and copy.digest != voices[1].digest
    assert engine.voice_tone_color(copy) is first
    torch.testing.assert_close(first, engine.tone_color(voices[0].audio))


def test_base_convert_speaks_each_chunk_with_progress_and_streams_the_same(engine, voices):
    text = "Red and blue. Good morning to you."
    calls = []
    whole = synthesize(text, voices[0], engine="base+convert", base="flite:slt", models=engine, seed=5,
                       progress=lambda done, total: calls.append((done, total)), watermark=False)
    assert calls and calls[-1][0] == calls[-1][1]
    assert whole.sample_rate == SAMPLE_RATE and whole.duration > 1.0
    pieces = list(synthesize(text, voices[0], engine="base+convert", base="flite:slt", models=engine, seed=5,
                             stream=True, watermark=False))
    np.testing.assert_allclose(np.concatenate([p.samples for p in pieces]), whole.samples, atol=1e-5)


def test_a_stream_says_a_short_first_piece_on_its_own(engine, voices):
    """Streamed, the first chunk is cut at its first clause (`STREAM_FIRST_CHARS`): the first piece is what the
    head alone would give, the next the rest, seeded as the second chunk."""
    from tts.synthesis import STREAM_FIRST_CHARS

    head, rest = "When the storm passed,", "the children ran outside to splash in the puddles."
    assert len(head) <= STREAM_FIRST_CHARS < len(head + " " + rest)
    request = dict(engine="base+convert", base="flite:slt", models=engine, watermark=False)
    pieces = list(synthesize(f"{head} {rest}", voices[0], seed=5, stream=True, **request))
    assert len(pieces) == 3 and not pieces[1].samples.any()  # head, pause, rest
    np.testing.assert_array_equal(pieces[0].samples, synthesize(head, voices[0], seed=5, **request).samples)
    np.testing.assert_array_equal(pieces[2].samples, synthesize(rest, voices[0], seed=6, **request).samples)


def test_base_convert_verify_renders_a_misheard_chunk_again(engine, voices, scripted_asr):
    request = dict(engine="base+convert", base="flite:slt", models=engine, seed=5, watermark=False, tau=0.3)
    plain = synthesize("Red and blue.", voices[0], **request)
    checked = scripted_asr(["bread and glue", "red and blue"])
    verified = synthesize("Red and blue.", voices[0], verify=True, **request)
    assert len(checked) == 2 and np.array_equal(checked[0].samples, plain.samples)
    assert np.array_equal(verified.samples, checked[1].samples) and not np.array_equal(verified.samples, plain.samples)


def test_base_convert_output_is_watermarked(engine, voices):
    from tts.watermark import detect

    marked = synthesize("Good morning to you all.", voices[1], engine="base+convert", base="flite:slt",
                        models=engine, seed=0)
    assert detect(marked).present


def test_bad_requests_are_refused(engine, voices, flite):
    with pytest.raises(ValueError, match="engine"):
        synthesize("Hi.", voices[0], engine="dit2")
    with pytest.raises(ValueError, match="conversion engine"):
        convert(flite.synthesize("Hi there.", "awb").audio, voices[0], engine="magic")
    with pytest.raises(ValueError, match="tau"):
        convert(flite.synthesize("Hi there.", "awb").audio, voices[0], models=engine, tau=-1)
    with pytest.raises(VoiceError, match="at least"):
        convert(Audio(np.zeros(1200, np.float32)), voices[0], models=engine)
    with pytest.raises(Exception, match="style"):
        synthesize("Hi.", voices[0], engine="base+convert", base="flite:slt", style="furious", models=engine)


def test_parts_at_other_rates_are_refused(engine):
    from dataclasses import replace

    vocoder = Vocos(replace(VOCODER_PRESETS["tiny"].generator, sample_rate=22_050))
    with pytest.raises(CheckpointError, match="Hz"):
        ToneColorEngine(engine.converter, vocoder)


def test_join_chunks_puts_pauses_between():
    a, b = Audio(np.ones(10, np.float32)), Audio(np.full(5, 2.0, np.float32))
    joined = join_chunks([a, b], pause_seconds=1 / SAMPLE_RATE * 3)
    assert joined.samples.tolist() == [1.0] * 10 + [0.0] * 3 + [2.0] * 5


def test_public_api_exports_convert():
    assert tts.convert is convert


def test_commands_use_the_tone_color_path(engine, voices, flite, tmp_path, monkeypatch):
    from tts import tone_color
    from tts.cli import main

    monkeypatch.setattr(tone_color, "load_tone_color_engine", lambda **_: engine)
    flite.synthesize("Bring the red box.", "awb").audio.save(tmp_path / "src.wav")
    voices[0].save(tmp_path / "slt.voice")
    assert main(["convert", str(tmp_path / "src.wav"), "--voice", str(tmp_path / "slt.voice"), "--tau", "0",
                 "--engine", "tone-color", "-o", str(tmp_path / "converted.wav")]) == 0
    expected = convert(tmp_path / "src.wav", voices[0], models=engine, tau=0.0)
    written = tts.load_audio(tmp_path / "converted.wav")
    assert abs(written.duration - expected.duration) < 1e-3
    assert main(["say", "Good morning.", "--voice", str(tmp_path / "slt.voice"), "--engine", "base+convert",
                 "--base", "flite:rms", "--seed", "1", "-o", str(tmp_path / "said.wav")]) == 0
    assert tts.load_audio(tmp_path / "said.wav").duration > 0.5


def test_missing_converter_is_explained(voices, flite, shipped_root):
    with pytest.raises(CheckpointError, match="converter"):
        convert(flite.synthesize("Hi there.", "awb").audio, voices[0], engine="tone-color")


def test_harness_runs_base_convert_with_a_chosen_base(engine, voices, monkeypatch):
    from tts import engines, tone_color
    from tts.errors import TimbreError
    from tts.evaluation.adapters import ENGINE_BUILDERS, resolve_engine

    assert ENGINE_BUILDERS["base+convert"] == "tts.tone_color:base_convert_engine_fn"
    monkeypatch.setattr(engines, "engine_status", lambda kind=None: [engines.EngineStatus("base+convert", True, "")])
    monkeypatch.setattr(tone_color, "load_tone_color_engine", lambda **_: engine)
    engine_fn = resolve_engine("base+convert:flite:rms")
    out = engine_fn("Good morning.", voices[0].audio, voices[0].transcript)
    assert out.duration > 0.5
    with pytest.raises(TimbreError, match="nobody"):
        resolve_engine("base+convert:flite:nobody")
    with pytest.raises(TimbreError):
        synthesize("Hi.", voices[0], engine="base+convert", base="flite:nobody", models=engine)
