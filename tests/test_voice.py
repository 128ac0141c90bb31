"""Voices: the voice file round-trips exactly and refuses what it cannot trust; `clone_voice` cleans references."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import tts
from tts.audio import SAMPLE_RATE, Audio, resample
from tts.errors import AudioError, VoiceError
from tts.preprocess import Segment, active_rms_dbfs, rms_dbfs, voiced_segments
from tts.voice import (
    EDGE_MARGIN_SECONDS,
    MAX_CLIPPED_FRACTION,
    MIN_SPEECH_SECONDS,
    Voice,
    _kept_span,
    _samples_sha256,
    clone_voice,
)

SENTENCES = [
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas and five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags.",
    "And we will go meet her Wednesday at the train station.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]
PAUSE_SECONDS = 0.6


@pytest.fixture(scope="module")
def utterances() -> list[Audio]:
    """Real speech, quickly: flite's slt voice saying each of `SENTENCES` (24 kHz, peak 0.9)."""
    from tts.data.speakers import get_speaker

    flite = get_speaker("flite")
    if flite.unavailable_reason():
        pytest.skip(flite.unavailable_reason())
    return [flite.synthesize(text, "slt").audio for text in SENTENCES]


@pytest.fixture(scope="module")
def speech(utterances) -> Audio:
    """About 4 s of speech between half-second silences."""
    pad = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    return Audio(np.concatenate([pad, utterances[0].samples, pad]))


@pytest.fixture
def voice() -> Voice:
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(3 * SAMPLE_RATE) * 0.1).astype(np.float32)
    return Voice(Audio(samples), "a caf\u00e9 \u201cquoted\u201d test.", name="Ada", source="ada.wav", transcript_source="asr")


# ---------------------------------------------------------------------------------------------------------
# The voice file


def test_save_load_round_trip_is_bit_exact(voice, tmp_path):
    path = voice.save(tmp_path / "ada.voice")
    loaded = Voice.load(path)
    assert loaded.audio.samples.dtype == np.float32
    assert loaded.audio.samples.tobytes() == voice.audio.samples.tobytes()
    assert loaded.audio.sample_rate == SAMPLE_RATE
    for field in ("transcript", "name", "source", "transcript_source", "created_with"):
        assert getattr(loaded, field) == getattr(voice, field), field
    assert loaded.created_with == tts.__version__
    assert loaded.duration == pytest.approx(3.0)
    assert list(tmp_path.iterdir()) == [path]  # one file, no temporary left behind


def test_repr_is_short(voice):
    text = repr(voice)
    assert len(text) < 120 and "Ada" in text and "3.00 s" in text and "array" not in text


def test_voice_validates_its_fields(voice):
    with pytest.raises(VoiceError, match="24000 Hz"):
        Voice(Audio(voice.audio.samples, 16_000), "hello")
    with pytest.raises(VoiceError, match="transcript"):
        Voice(voice.audio, "  ")
    with pytest.raises(VoiceError, match="transcript_source"):
        Voice(voice.audio, "hello", transcript_source="guess")


def _rewrite(path, tensors=None, **metadata_changes):
    """Rewrite the voice file at `path` with other tensors and/or metadata (a None value drops a key)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata())
        stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
    for key, value in metadata_changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(stored if tensors is None else tensors, str(path), metadata=metadata)


def test_unknown_version_is_refused_with_upgrade_advice(voice, tmp_path):
    path = voice.save(tmp_path / "v.voice")
    _rewrite(path, format_version="2")
    with pytest.raises(VoiceError, match=r"version 2.*version 1.*Upgrade timbre"):
        Voice.load(path)
    _rewrite(path, format_version="one")
    with pytest.raises(VoiceError, match="no valid format version"):
        Voice.load(path)


def test_tampered_samples_are_refused(voice, tmp_path):
    path = voice.save(tmp_path / "v.voice")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # a bit of the last sample
    path.write_bytes(bytes(data))
    with pytest.raises(VoiceError, match="checksum"):
        Voice.load(path)

    path = voice.save(tmp_path / "w.voice")
    _rewrite(path, {"samples": voice.audio.samples * 0.5})  # new samples, the old checksum
    with pytest.raises(VoiceError, match="checksum"):
        Voice.load(path)
    _rewrite(path, samples_sha256=_samples_sha256(voice.audio.samples * 0.5))  # a consistent edit still loads
    assert Voice.load(path).audio.samples == pytest.approx(voice.audio.samples * 0.5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, v: v.audio.save(p.with_suffix(".wav")).rename(p), "not a safetensors file"),
        (lambda p, v: p.write_bytes(b"\x00" * 64), "not a safetensors file"),
        (lambda p, v: p.write_text("{}"), "not a safetensors file"),
        (lambda p, v: save_file({"w": np.zeros(3, np.float32)}, str(p), metadata={"format": "pt"}), "format is 'pt'"),
        (lambda p, v: _rewrite(v.save(p), transcript=None), "lacks transcript"),
        (lambda p, v: _rewrite(v.save(p), samples_sha256=None), "lacks samples_sha256"),
        (lambda p, v: _rewrite(v.save(p), {"audio": v.audio.samples}), "lacks its 'samples'"),
        (lambda p, v: _rewrite(v.save(p), {"samples": v.audio.samples, "extra": np.zeros(2, np.float32)}), "unexpected"),
        (lambda p, v: _rewrite(v.save(p), transcript_source="guess"), "transcript_source"),
        (lambda p, v: None, "no such voice file"),
    ],
    ids=["wav", "zeros", "json", "other-safetensors", "no-transcript", "no-checksum", "no-samples", "extra-tensor",
         "bad-field", "missing"],
)
def test_files_that_are_not_voices_are_refused(voice, tmp_path, make, message):
    path = tmp_path / "x.voice"
    make(path, voice)
    with pytest.raises(VoiceError, match=message):
        Voice.load(path)


# ---------------------------------------------------------------------------------------------------------
# clone_voice


def test_clone_from_path_trims_normalizes_and_keeps_the_file_name(speech, tmp_path):
    path = speech.save(tmp_path / "stella.wav")
    voice = clone_voice(path, "Please call Stella at 5 p.m., Dr. Smith.", name="Stella")
    assert voice.source == "stella.wav" and voice.name == "Stella" and voice.transcript_source == "user"
    assert voice.transcript == "Please call Stella at five p m, Doctor Smith."
    assert voice.audio.sample_rate == SAMPLE_RATE
    # Silence is trimmed to EDGE_MARGIN_SECONDS around the speech.
    segments = voiced_segments(speech)
    expected = segments[-1].end - segments[0].start + 2 * EDGE_MARGIN_SECONDS
    assert voice.duration == pytest.approx(expected, abs=0.01) and voice.duration < speech.duration - 1.0
    assert active_rms_dbfs(voice.audio) == pytest.approx(-20.0, abs=1.0)
    assert voice.audio.samples.max() <= 0.95 + 1e-6


def test_clone_from_16k_array_audio_and_voice(speech):
    samples16 = resample(speech.samples, SAMPLE_RATE, 16_000)
    from_tuple = clone_voice((samples16, 16_000), "Please call Stella.")
    from_array = clone_voice(samples16, "Please call Stella.", sample_rate=16_000)
    int16 = (samples16 * 32767).astype(np.int16)
    from_gradio = clone_voice((16_000, int16), "Please call Stella.")  # Gradio's (rate, int16) order
    from_audio = clone_voice(speech, "Please call Stella.")
    for voice in (from_tuple, from_array, from_gradio):
        assert voice.audio.sample_rate == SAMPLE_RATE
        assert voice.duration == pytest.approx(from_audio.duration, abs=0.1)
    assert from_tuple.audio.samples.tobytes() == from_array.audio.samples.tobytes()

    assert clone_voice(from_audio) is from_audio
    renamed = clone_voice(from_audio, "Call Stella, please!", name="S")
    assert renamed.transcript == "Call Stella, please!" and renamed.name == "S" and renamed.transcript_source == "user"
    assert renamed.audio is from_audio.audio


def test_clone_refuses_bad_arguments(speech):
    with pytest.raises(VoiceError, match="needs its rate"):
        clone_voice(speech.samples, "hello")
    with pytest.raises(VoiceError, match="only for a bare sample array"):
        clone_voice(speech, "hello", sample_rate=16_000)
    with pytest.raises(VoiceError, match="transcript is empty"):
        clone_voice(speech, " \u2122 ")
    with pytest.raises(VoiceError, match="mono"):
        clone_voice((np.zeros((2, 48_000), np.float32), 24_000), "hello")
    with pytest.raises(VoiceError, match="cannot clone a voice from a list"):
        clone_voice([0.0, 0.1], "hello")


def test_corrupt_file_raises_audio_error(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(AudioError, match="not a readable audio file"):
        clone_voice(path, "hello")


@pytest.mark.parametrize("level", [0.0, 0.003], ids=["silence", "faint-noise"])
def test_no_speech_is_refused(level):
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(4 * SAMPLE_RATE) * level).astype(np.float32)
    with pytest.raises(VoiceError, match="no speech found"):
        clone_voice(Audio(samples), "hello")


def test_too_little_speech_is_refused(utterances):
    short = utterances[4].samples[: int(1.2 * SAMPLE_RATE)]
    pad = np.zeros(SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(VoiceError, match=rf"only \d\.\d s of speech.*at least {MIN_SPEECH_SECONDS:.0f} s"):
        clone_voice(Audio(np.concatenate([pad, short, pad])), "And we will go")


def test_clipped_speech_is_refused(speech):
    hot = Audio(np.clip(speech.samples * 8.0, -1.0, 1.0))
    with pytest.raises(VoiceError, match="clipped"):
        clone_voice(hot, "Please call Stella.")
    # Just below the threshold still clones.
    mild = speech.samples.copy()
    loud = np.flatnonzero(np.abs(mild) > 0.3)
    mild[loud[: int(MAX_CLIPPED_FRACTION * 0.5 * len(mild))]] = 1.0
    assert clone_voice(Audio(mild), "Please call Stella.").duration > 3.0


def _long_speech(utterances) -> tuple[Audio, list[tuple[int, int]]]:
    """All utterances joined by pauses (over 30 s), with each one's first and last audible sample."""
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    parts, spans, position = [pause], [], len(pause)
    for utterance in utterances:
        audible = np.flatnonzero(np.abs(utterance.samples) > 0.01)  # flite pads its output with silence
        parts += [utterance.samples, pause]
        spans.append((position + audible[0], position + audible[-1]))
        position += len(utterance) + len(pause)
    return Audio(np.concatenate(parts)), spans


def test_long_reference_is_cut_at_a_pause_and_the_kept_part_transcribed(utterances, monkeypatch):
    from scipy.signal import correlate

    from tts.evaluation import asr

    long, spans = _long_speech(utterances)
    assert long.duration > 30.0
    heard = []
    monkeypatch.setattr(asr, "transcribe", lambda audio, model="tiny.en": heard.append(audio) or "Rice, 3 bowls.")
    voice = clone_voice(long)
    assert 8.0 < voice.duration <= 12.0
    assert voice.transcript == "Rice, three bowls." and voice.transcript_source == "asr"
    assert len(heard) == 1 and heard[0].samples.tobytes() == voice.audio.samples.tobytes()

    # Find where the kept clip sits in the input: both its ends must fall in pauses, not inside an utterance.
    start = int(np.argmax(correlate(long.samples, voice.audio.samples, mode="valid", method="fft")))
    end = start + len(voice.audio)
    gain = np.max(np.abs(voice.audio.samples)) / np.max(np.abs(long.samples[start:end]))
    assert np.allclose(long.samples[start:end] * gain, voice.audio.samples, atol=1e-4)
    for edge in (start, end):
        assert not any(first < edge < last for first, last in spans), f"cut inside an utterance at {edge / SAMPLE_RATE:.2f} s"
    kept = [span for span in spans if start <= span[0] and span[1] <= end]
    assert len(kept) >= 3

    with pytest.raises(VoiceError, match="no longer matches"):
        clone_voice(long, "the whole text")


def test_a_single_segment_longer_than_the_limit_is_cut_at_its_quietest_moment():
    rate = SAMPLE_RATE
    samples = np.full(22 * rate, 0.5, dtype=np.float32)
    samples[int(12.9 * rate) : int(12.92 * rate)] = 0.0  # a quiet frame within the last second of the window
    audio = Audio(samples)
    start, end, shortened = _kept_span(audio, [Segment(0.5, 1.0), Segment(1.5, 21.5)], 12.0)
    assert shortened and start == int(1.4 * rate) and end == int(12.92 * rate)
    with pytest.raises(VoiceError, match="too spread out"):
        _kept_span(audio, [Segment(0.5, 1.5), Segment(14.0, 15.0)], 12.0)
    # Whole segments are preferred when a fitting run holds enough speech.
    start, end, shortened = _kept_span(audio, [Segment(0.5, 3.5), Segment(4.0, 21.5)], 12.0)
    assert shortened and (start, end) == (int(0.4 * rate), int(3.6 * rate))


def test_missing_transcript_is_recognized_by_whisper(speech):
    voice = clone_voice(speech)
    assert voice.transcript_source == "asr"
    words = voice.transcript.lower()
    assert "stella" in words and "store" in words, voice.transcript


def test_denoise_removes_background_noise(speech):
    rng = np.random.default_rng(2)
    noisy = Audio(speech.samples + (rng.standard_normal(len(speech)) * 0.03).astype(np.float32))
    plain = clone_voice(noisy, "Please call Stella.")
    clean = clone_voice(noisy, "Please call Stella.", denoise=True)
    edge = SAMPLE_RATE // 20  # the leading margin: background only
    assert rms_dbfs(Audio(clean.audio.samples[:edge])) < rms_dbfs(Audio(plain.audio.samples[:edge])) - 20.0
