"""Style from a separate reference clip (tts.style_reference, ``synthesize(style_ref=...)``): bad clips are refused
with an AudioError that says why, the controls read from a clip follow its prosody within their limits, and the
shipped classifier reads a rendered style clip."""

from __future__ import annotations

import numpy as np
import pytest

from tts.audio import SAMPLE_RATE, Audio
from tts.data.styles import STYLE_TABLE
from tts.errors import AudioError, TimbreError
from tts.evaluation.style_features import FEATURE_NAMES
from tts.style_reference import (
    ENERGY_LIMIT_DB,
    FULL_INTENSITY_CONFIDENCE,
    PITCH_RANGE_LIMITS,
    SPEED_LIMITS,
    intensity_from_confidence,
    load_style_clip,
    prosody_controls,
    read_style_reference,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def features(**values: float) -> dict[str, float]:
    base = dict.fromkeys(FEATURE_NAMES, 0.0)
    base.update({"has_f0": 1.0, "f0_std_st": 2.0, "peak_rate": 4.0, "level_dbfs": -26.0})
    base.update(values)
    return base


def test_missing_unreadable_short_and_silent_clips_are_refused(tmp_path, tone):
    with pytest.raises(AudioError, match="style reference clip.*no such file"):
        load_style_clip(tmp_path / "nope.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF this is not audio at all" * 10)
    with pytest.raises(AudioError, match="style reference clip"):
        load_style_clip(garbage)
    with pytest.raises(AudioError, match="0.50 s long; give at least 1 s"):
        load_style_clip(Audio(tone.samples[: SAMPLE_RATE // 2], SAMPLE_RATE))
    with pytest.raises(AudioError, match="silent"):
        load_style_clip((np.zeros(2 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE))
    with pytest.raises(AudioError, match="Audio, a path"):
        load_style_clip(42)
    ok = load_style_clip((np.tile(tone.samples, 2), SAMPLE_RATE // 2))  # resampled to the studio rate
    assert ok.sample_rate == SAMPLE_RATE and abs(ok.duration - 4.0) < 0.01


def test_synthesize_refuses_an_emotion_with_a_style_clip_and_a_bad_clip_before_any_work(tmp_path, tone):
    from tts.synthesis import synthesize

    with pytest.raises(TimbreError, match="not both"):
        synthesize("Hello there.", tone, emotion="happy", style_ref=tone)
    with pytest.raises(AudioError, match="style reference clip"):  # refused before the voice would be cloned
        synthesize("Hello there.", tmp_path / "no-voice-either.wav", style_ref=tmp_path / "missing.wav")


def test_intensity_from_confidence():
    assert intensity_from_confidence(1 / 7, 7) == 0.0
    assert intensity_from_confidence(FULL_INTENSITY_CONFIDENCE, 7) == 1.0
    assert intensity_from_confidence(0.99, 7) == 1.0
    assert 0.0 < intensity_from_confidence(0.45, 7) < 1.0


def test_prosody_controls_follow_the_clip_beyond_its_emotion_within_limits():
    same = prosody_controls(features(), features(), "neutral", 0.0)
    assert same == {"pitch_range": 1.0, "speed": 1.0, "energy": 0.0}
    livelier = prosody_controls(features(f0_std_st=2.4, peak_rate=4.4, level_dbfs=-24.0), features(), "neutral", 0.0)
    assert livelier == pytest.approx({"pitch_range": 1.2, "speed": 1.1, "energy": 2.0}, abs=1e-3)
    # What the emotion itself does is not counted twice: a clip exactly as much livelier as "happy" makes is happy.
    happy = STYLE_TABLE["happy"]
    as_happy = features(f0_std_st=2.0 * happy.pitch_range, peak_rate=4.0 * happy.rate, level_dbfs=-26 + happy.energy_db)
    assert prosody_controls(as_happy, features(), "happy", 1.0) == pytest.approx(same, abs=1e-3)
    extreme = prosody_controls(features(f0_std_st=20.0, peak_rate=40.0, level_dbfs=0.0), features(), "neutral", 0.0)
    assert extreme == {"pitch_range": PITCH_RANGE_LIMITS[1], "speed": SPEED_LIMITS[1], "energy": ENERGY_LIMIT_DB}
    whisper_clip = prosody_controls(features(has_f0=0.0), features(), "whisper", 1.0)
    assert whisper_clip["pitch_range"] == 1.0  # no pitch in the clip: the range is left alone


def test_a_rendered_style_clip_is_read_and_controls_act_on_top(flite):
    from tts.data.voicebank import synthesize
    from tts.voice import clone_voice

    text = "The old lighthouse keeper painted the door a bright shade of green."
    clip = synthesize("flite:slt", text, style="whisper", intensity=1.0).audio
    voice = clone_voice(synthesize("flite:awb", "My neighbour grows tomatoes in a small garden.").audio,
                        "My neighbour grows tomatoes in a small garden.")
    plain = read_style_reference(clip)  # what synthesize(style_ref=) uses: the emotion and intensity only
    assert plain.prediction.label == "whisper" and plain.style.dominant == "whisper" and plain.style.intensity > 0.5
    assert (plain.style.speed, plain.style.pitch, plain.style.pitch_range, plain.style.energy) == (1.0, 0.0, 1.0, 0.0)
    with pytest.raises(TimbreError, match="needs the voice"):
        read_style_reference(clip, prosody=True)
    reading = read_style_reference(clip, voice, prosody=True)
    assert reading.style.emotion == plain.style.emotion and reading.style.intensity == plain.style.intensity
    derived = reading.measured["derived_controls"]
    assert PITCH_RANGE_LIMITS[0] <= derived["pitch_range"] <= PITCH_RANGE_LIMITS[1]
    assert abs(derived["energy"]) <= ENERGY_LIMIT_DB
    louder = read_style_reference(clip, voice, intensity=0.5, energy=3.0, pitch=2.0, prosody=True)
    assert louder.style.intensity == 0.5 and louder.style.pitch == 2.0
    assert louder.style.energy == pytest.approx(louder.measured["derived_controls"]["energy"] + 3.0, abs=1e-6)
