"""The voice bank (tts.data.voicebank): stable ids and recipes, held-out rules, rebuilt Kokoro blends, and
synthesis through pseudo-speakers and base voices in every style."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tts.data import voicebank
from tts.data.speakers import speaker_status
from tts.data.voicebank import (
    BANK_VERSION,
    KOKORO_HELDOUT_TABLES,
    KOKORO_TRAINING_TABLES,
    PITCH_RATIO_BOUNDS,
    RANGE_BOUNDS,
    SOURCE_IS_FEMALE,
    WARP_SOURCES,
    bank_digest,
    blend_style_table,
    check_voice_id,
    get_voice,
    heldout_voice_ids,
    is_pseudo_id,
    render,
    synthesize,
    training_base_voice_ids,
    training_voice_ids,
    voice_bank,
)
from tts.errors import TimbreError
from tts.evaluation.testsets import HELDOUT_VOICES, TRAINING_EXCLUDED_VOICES

EXPECTED_DIGEST = "5e969180f7fbdbb7b30a7d802793bf908f00c46e49ad0153e4293f33df035dac"
"""`bank_digest()` of BANK_VERSION 1. If a change moves it, every corpus built so far names different
voices: bump BANK_VERSION and update this value on purpose."""

SENTENCE = "Please open the window now."


def _require(engine: str) -> None:
    reason = speaker_status()[engine]
    if reason is not None:
        pytest.skip(f"{engine} is not installed here: {reason}")
    pytest.importorskip("parselmouth")


def _median_f0(audio) -> float:
    import parselmouth

    pitch = parselmouth.Sound(audio.samples.astype(np.float64), audio.sample_rate).to_pitch(0.01, 60, 500)
    values = pitch.selected_array["frequency"]
    return float(np.median(values[values > 0]))


# ---------------------------------------------------------------------------------------------------------
# The bank itself


def test_bank_has_at_least_200_distinct_voices_with_stable_ids():
    bank = voice_bank()
    ids = [speaker.voice_id for speaker in bank]
    assert len(bank) >= 200 and len(set(ids)) == len(ids)
    assert all(is_pseudo_id(voice_id) for voice_id in ids)
    recipes = {json.dumps(speaker.recipe, sort_keys=True) for speaker in bank}
    assert len(recipes) == len(bank), "two ids share a recipe"
    assert {speaker.kind for speaker in bank} == {"blend", "warp"}
    assert all(speaker.recipe["version"] == BANK_VERSION for speaker in bank)


def test_bank_is_pinned():
    assert bank_digest() == EXPECTED_DIGEST, "the voice bank changed: bump BANK_VERSION and EXPECTED_DIGEST on purpose"


def test_bank_is_rebuilt_identically():
    before = [speaker.to_dict() for speaker in voice_bank()]
    voicebank._bank.cache_clear()
    voicebank._by_id.cache_clear()
    assert [speaker.to_dict() for speaker in voice_bank()] == before


def test_recipes_stay_inside_the_measured_bounds():
    for speaker in voice_bank():
        if speaker.kind == "blend":
            weights = speaker.recipe["weights"]
            assert 2 <= len(weights) <= 3
            assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
            assert all(0.05 < weight < 0.95 for weight in weights.values())
        warp = speaker.warp
        if warp:
            female = SOURCE_IS_FEMALE[speaker.sources[0]] if speaker.kind == "warp" else True
            low, high = PITCH_RATIO_BOUNDS[female]
            assert low <= warp["pitch_ratio"] <= high
            assert RANGE_BOUNDS[0] <= warp["pitch_range"] <= RANGE_BOUNDS[1]
            assert 0.85 <= warp["formant_ratio"] <= 1.16
        if speaker.kind == "warp":
            moved = abs(math.log(warp["formant_ratio"]))
            assert moved >= 0.3 * math.log(voicebank.FORMANT_BASE) - 1e-4, "a warp too close to its source"


def test_heldout_sources_agree_with_the_evaluation_harness():
    excluded = set(TRAINING_EXCLUDED_VOICES)
    assert set(HELDOUT_VOICES) <= excluded
    assert not {f"kokoro:{name}" for name in KOKORO_TRAINING_TABLES} & excluded
    assert {f"kokoro:{name}" for name in KOKORO_HELDOUT_TABLES} <= excluded
    assert all(source in SOURCE_IS_FEMALE for source, _ in WARP_SOURCES)


def test_voices_derived_from_heldout_voices_are_heldout():
    excluded = set(TRAINING_EXCLUDED_VOICES)
    for speaker in voice_bank():
        if set(speaker.sources) & excluded:
            assert speaker.heldout and "held-out voice" in speaker.heldout_reason
    # Held-out sources do appear in the bank (as evaluation voices), never in training.
    assert any(set(s.sources) & excluded for s in voice_bank())


def test_some_in_domain_voices_are_reserved_for_evaluation():
    reserved = [s for s in voice_bank() if s.heldout and not set(s.sources) & set(TRAINING_EXCLUDED_VOICES)]
    assert len(reserved) >= 20
    assert {s.kind for s in reserved} == {"blend", "warp"}
    assert set(heldout_voice_ids()) == {s.voice_id for s in voice_bank() if s.heldout}


def test_training_voices_exclude_every_heldout_voice():
    training = training_voice_ids()
    assert len(training) >= 200
    assert not set(training) & set(TRAINING_EXCLUDED_VOICES)
    assert not set(training) & set(heldout_voice_ids())
    assert set(training_base_voice_ids()) <= set(training)
    assert not any(voice.startswith(("espeak:", "piper:")) for voice in training)


@pytest.mark.parametrize("bad", ["pk9999", "pw12", "px0001", "", None])
def test_unknown_pseudo_speaker_is_refused(bad):
    with pytest.raises(TimbreError):
        get_voice(bad)


@pytest.mark.parametrize("bad", ["nobody", "kokoro:nobody", "pk9999", "flite", "a:b:c"])
def test_check_voice_id_refuses_unknown_voices(bad):
    with pytest.raises(TimbreError):
        check_voice_id(bad)


# ---------------------------------------------------------------------------------------------------------
# Kokoro blends (style tables only: no model run)


def test_blend_tables_are_convex_mixtures_plus_a_bounded_perturbation():
    _require("kokoro")
    from tts.data.speakers import get_speaker

    kokoro = get_speaker("kokoro")
    speaker = next(s for s in voice_bank() if s.kind == "blend" and s.recipe["perturbation"]["scale"] > 0.1)
    recipe = json.loads(json.dumps(speaker.recipe))
    table = blend_style_table(recipe)
    assert table.shape == (510, 256) and table.dtype == np.float32
    assert np.array_equal(table, blend_style_table(recipe)), "not deterministic"
    recipe["perturbation"]["scale"] = 0.0
    plain = blend_style_table(recipe)
    mixture = sum(w * kokoro.style_table(name) for name, w in recipe["weights"].items())
    np.testing.assert_allclose(plain, mixture, atol=1e-5)
    offset = (table - plain)[0]
    np.testing.assert_allclose(table - plain, np.broadcast_to(offset, table.shape), atol=1e-5)
    spread = np.stack([kokoro.style_table(n).mean(0) for n in KOKORO_TRAINING_TABLES]).std(0)
    assert np.sqrt(np.mean((offset / spread) ** 2)) < 2 * speaker.recipe["perturbation"]["scale"]


# ---------------------------------------------------------------------------------------------------------
# Synthesis


def test_warp_moves_f0_by_its_ratio_and_keeps_the_words():
    _require("flite")
    speaker = next(s for s in voice_bank() if s.recipe.get("source") == "flite:rms" and s.warp["pitch_ratio"] < 0.9)
    base = synthesize("flite:rms", SENTENCE)
    warped = synthesize(speaker.voice_id, SENTENCE)
    assert warped.audio.sample_rate == 24_000
    assert warped.voice == speaker.voice_id and warped.engine == "flite"
    assert [w.text for w in warped.words] == [w.text for w in base.words]
    assert warped.audio.duration == pytest.approx(base.audio.duration, rel=0.03)
    shift = 12 * math.log2(_median_f0(warped.audio) / _median_f0(base.audio))
    assert shift == pytest.approx(12 * math.log2(speaker.warp["pitch_ratio"]), abs=1.0)


def test_render_logs_its_parameters_and_is_deterministic():
    _require("flite")
    first = render("pw0000", SENTENCE, speed=1.1, style="angry", intensity=0.5, seed=4)
    second = render("pw0000", SENTENCE, speed=1.1, style="angry", intensity=0.5, seed=4)
    assert np.array_equal(first.output.audio.samples, second.output.audio.samples)
    params = first.parameters
    json.dumps(params)
    assert params["style"] == "angry" and params["intensity"] == 0.5
    assert params["engine_speed"] == pytest.approx(1.1 * params["style_params"]["rate"], abs=1e-3)
    assert params["voice_recipe"] == get_voice("pw0000").recipe
    assert first.output.speed == pytest.approx(params["engine_speed"], abs=1e-3)


def test_base_voices_speak_in_styles_too():
    _require("flite")
    neutral = synthesize("flite:kal16", SENTENCE)
    sad = synthesize("flite:kal16", SENTENCE, style="sad", intensity=1.0)
    assert sad.audio.duration > 1.1 * neutral.audio.duration  # the sad rate goes to the engine
    assert _median_f0(sad.audio) < _median_f0(neutral.audio)


def test_speed_times_style_rate_must_stay_in_range():
    with pytest.raises(TimbreError, match="outside"):
        synthesize("flite:rms", SENTENCE, speed=3.9, style="angry", intensity=1.0)


def test_unknown_voice_and_style_are_refused():
    with pytest.raises(TimbreError):
        synthesize("nobody", SENTENCE)
    with pytest.raises(TimbreError, match="style"):
        synthesize("flite:rms", SENTENCE, style="sarcastic")


@pytest.mark.slow
def test_kokoro_blend_speaks_intelligibly():
    _require("kokoro")
    pytest.importorskip("faster_whisper")
    from tts.evaluation.asr import transcribe
    from tts.evaluation.wer import wer

    speaker = next(s for s in voice_bank() if s.kind == "blend" and s.warp and not s.heldout)
    out = synthesize(speaker.voice_id, SENTENCE)
    assert out.engine == "kokoro" and out.voice == speaker.voice_id
    assert wer(SENTENCE, transcribe(out.audio)) <= 0.2


def test_voices_list_command(capsys):
    from tts.cli import main

    assert main(["voices", "list", "--heldout", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(row["heldout"] for row in rows)
    ids = {row["voice_id"] for row in rows}
    assert set(HELDOUT_VOICES) <= ids and set(heldout_voice_ids()) <= ids
    assert main(["voices", "list", "--training"]) == 0
    listing = capsys.readouterr().out
    assert "pk0000" in listing and "piper:joe" not in listing


def test_measurement_sample_is_stratified_and_respects_heldout():
    from tts.data.measure import sample_voices

    training = sample_voices(20, seed=1)
    assert len(set(training)) == 20 and not set(training) & set(heldout_voice_ids())
    kinds = [get_voice(v).kind for v in training]
    assert kinds.count("blend") == 10 and len({get_voice(v).sources[0] for v in training if v.startswith("pw")}) >= 5
    assert set(sample_voices(8, heldout=True)) <= set(heldout_voice_ids())
