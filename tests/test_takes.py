"""`tts.takes.best_take`: several whole takes, each reproducible alone, the one the ASR hears best kept.

Runs the shipped `ar` engine and Whisper tiny.en on CPU (a few seconds a take)."""

from __future__ import annotations

import numpy as np
import pytest

from tts.engines import engine_status
from tts.errors import TimbreError
from tts.takes import MAX_TAKES, best_take, spoken_text

pytestmark = pytest.mark.usefixtures("single_thread")

TEXT = "[happy] Please remember to bring your umbrella. [/happy]"
ar_shipped = pytest.mark.skipif(not next(s for s in engine_status() if s.name == "ar").available,
                                reason="the ar engine's checkpoints are not shipped")


def test_spoken_text_drops_tags_and_keeps_escapes():
    assert spoken_text(TEXT).split() == ["Please", "remember", "to", "bring", "your", "umbrella."]
    assert spoken_text(r"a \[b\] c") == "a [b] c"
    assert spoken_text("[happy] a", tags=False) == "[happy] a"


@pytest.mark.parametrize("takes", [0, MAX_TAKES + 1, 1.5, True, "2"])
def test_takes_out_of_range_are_refused_before_any_work(takes):
    with pytest.raises(TimbreError, match="takes must be a whole number"):
        best_take("Hello there.", voice=None, takes=takes)


def test_a_stream_or_a_wordless_text_is_refused():
    with pytest.raises(TimbreError, match="not both"):
        best_take("Hello there.", voice=None, takes=2, stream=True)
    with pytest.raises(TimbreError, match="no words"):
        best_take("[happy] ... [/happy]", voice=None, takes=2)


@ar_shipped
def test_the_kept_take_is_the_one_heard_best_and_each_take_can_be_made_again(voice_clip):
    from tts.evaluation.asr import transcribe
    from tts.evaluation.wer import wer
    from tts.synthesis import load_engine, synthesize

    engine = load_engine()
    seen = []
    result = best_take(TEXT, voice_clip, takes=3, seed=11, models=engine,
                       on_take=lambda done, total, take: seen.append((done, total, take.seed)))
    assert seen == [(1, 3, 11), (2, 3, 12), (3, 3, 13)]
    assert [take.seed for take in result.takes] == [11, 12, 13]
    for take in result.takes:  # scored against the words, not the tags
        assert take.wer == wer(spoken_text(TEXT), take.transcript)
        assert take.transcript == transcribe(take.audio)
    errors = [take.wer for take in result.takes]
    assert result.best.wer == min(errors) and result.best_index == errors.index(min(errors))
    again = synthesize(TEXT, voice_clip, seed=result.best.seed, models=engine)
    np.testing.assert_array_equal(again.samples, result.best.audio.samples)


@pytest.fixture(scope="module")
def voice_clip():
    from tests.test_shipped_engine import held_out_prompt

    voice, _ = held_out_prompt()
    return voice


def test_say_command_makes_takes_and_keeps_the_best(tmp_path, monkeypatch, capsys):
    from tts.audio import load_audio
    from tts.cli import main
    from tts.data.speakers import get_speaker
    from tts.voice import clone_voice

    flite = get_speaker("flite")
    if flite.unavailable_reason():
        pytest.skip(flite.unavailable_reason())
    spoken = {7: "Keep the windows closed and open.", 8: "Keep the windows closed."}
    monkeypatch.setattr("tts.synthesis.synthesize",
                        lambda text, voice, seed, **options: flite.synthesize(spoken[seed], "slt").audio)
    clip = flite.synthesize("The quick brown fox jumps over the lazy dog.", "awb").audio
    clone_voice(clip, "The quick brown fox jumps over the lazy dog.").save(tmp_path / "awb.voice")
    common = ["--voice", str(tmp_path / "awb.voice"), "-o", str(tmp_path / "out.wav")]
    assert main(["say", "Keep the windows closed.", *common, "--takes", "2", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "take 1/2: seed 7" in out and "take 2/2: seed 8, WER 0.00" in out and "kept take 2 (seed 8" in out
    kept = load_audio(tmp_path / "out.wav")
    assert abs(kept.duration - flite.synthesize(spoken[8], "slt").audio.duration) < 0.01
    assert main(["say", "Hi.", *common, "--takes", "2", "--stream"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["say", "Hi.", *common, "--takes", "9"]) == 2
