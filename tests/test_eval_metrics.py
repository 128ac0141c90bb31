"""Metric functions of tts.evaluation on known cases (real models, no mocks)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tts.audio import Audio, load_audio
from tts.errors import AudioError
from tts.evaluation import prosody, quality, similarity
from tts.evaluation.wer import edit_counts, normalize_words, summarize_wer, wer, wer_details

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def espeak(tmp_path_factory, text: str, voice: str = "en-us") -> Audio:
    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Audio:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    return espeak(tmp_path_factory, "The orange cat slept on the warm windowsill all afternoon.")


@pytest.fixture(scope="module")
def other_speech(tmp_path_factory) -> Audio:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    return espeak(tmp_path_factory, "The orange cat slept on the warm windowsill all afternoon.", "en-us+f4")


def sine(frequency: float, seconds: float = 1.0, sample_rate: int = 24_000) -> Audio:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return Audio((0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), sample_rate)


# ---------------------------------------------------------------------------------------------------------
# WER


def test_perfect_transcript_scores_zero():
    assert wer("The quick brown fox jumps over the lazy dog.", "the quick brown fox jumps over the lazy dog") == 0.0


def test_numbers_in_words_and_digits_match():
    assert wer("forty-two", "42") == 0.0
    assert wer("She paid forty-two dollars, Mr. Smith.", "she paid $42 mister smith") == 0.0


def test_percent_is_not_dropped():
    assert wer("fifty percent", "50") == 1.0


def test_known_substitution_deletion_insertion():
    counts = wer_details("red green blue yellow", "red grain blue")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 1, 0)
    assert counts.wer == pytest.approx(0.5)
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
    assert wer("red green blue", "") == 1.0


def test_edit_counts_prefer_minimal_alignment():
    counts = edit_counts(list("abcdef"), list("azcdxf"))
    assert counts.errors == 2 and counts.substitutions == 2


def test_empty_reference_is_refused():
    with pytest.raises(ValueError):
        wer("...", "hello")


def test_punctuation_is_stripped():
    assert normalize_words("Hello, world! Really?") == ["hello", "world", "really"]
    # Whisper's normalizer drops bracketed text (it marks non-speech in transcripts).
    assert normalize_words("Hello (cough) world") == ["hello", "world"]


def test_summary_counts_utterances_above_half():
    summary = summarize_wer([0.0, 0.2, 0.5, 0.75, 3.0])
    assert summary.count == 5
    assert summary.above_50 == 2
    assert summary.mean == pytest.approx(0.89)
    assert summarize_wer([]).mean is None


# ---------------------------------------------------------------------------------------------------------
# SIM, quality


def test_same_clip_twice_is_similar(speech):
    assert similarity.similarity(speech, speech) > 0.99


def test_different_voice_scores_lower_than_same_clip(speech, other_speech):
    assert similarity.similarity(speech, other_speech) < similarity.similarity(speech, speech) - 0.02


def test_embedding_of_silence_is_refused():
    with pytest.raises(AudioError):
        similarity.speaker_embedding(Audio(np.zeros(24_000, dtype=np.float32)))


def test_sim_is_never_named_by_the_standard():
    assert similarity.metric_key() == "sim_resemblyzer"
    assert "proxy" in similarity.label().lower()


def test_pesq_and_stoi_of_a_clip_with_itself(speech):
    assert quality.pesq_wb(speech, speech) > 4.0
    assert quality.stoi(speech, speech) > 0.99
    noisy = Audio(speech.samples + 0.05 * np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32))
    assert quality.pesq_wb(speech, noisy) < 3.0


def test_dnsmos_scores_speech_on_its_scale(speech):
    score = quality.dnsmos(speech)
    for value in (score.ovrl, score.sig, score.bak):
        assert 1.0 <= value <= 5.0
    with pytest.raises(AudioError):
        quality.dnsmos(Audio(np.zeros(24_000, dtype=np.float32)))


# ---------------------------------------------------------------------------------------------------------
# Prosody


def test_sine_has_the_f0_it_was_made_with():
    track = prosody.f0_track(sine(220.0))
    assert track.voiced.mean() > 0.9
    assert np.nanmedian(track.f0) == pytest.approx(220.0, rel=0.02)


def test_prosody_stats_of_a_glide():
    sample_rate = 16_000
    t = np.arange(sample_rate) / sample_rate
    frequency = 150.0 * 2 ** (t * 12 / 12)  # one octave up over a second
    glide = Audio((0.5 * np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate)).astype(np.float32), sample_rate)
    stats = prosody.prosody_stats(glide, "la la la")
    assert 150 < stats.f0_mean_hz < 300
    assert 8.0 < stats.f0_range_semitones < 12.5
    assert stats.speaking_rate > 0


def test_frame_levels_are_librosas_rms_framing():
    """`frame_energy_db` is plain numpy (librosa's feature module is slow to import) framed as
    `librosa.feature.rms` frames (centered, zero-padded): the same levels, frame for frame, at any length."""
    import librosa

    rng = np.random.default_rng(0)
    for length in (prosody.FRAME_LENGTH, prosody.FRAME_LENGTH + 1, 16_000, 23_457):
        samples = (rng.standard_normal(length) * 0.1).astype(np.float32)
        samples[: length // 3] *= 0.01  # a quiet stretch, so levels differ from frame to frame
        reference = librosa.feature.rms(y=samples, frame_length=prosody.FRAME_LENGTH,
                                        hop_length=prosody.HOP_LENGTH)[0]
        levels = prosody.frame_energy_db(Audio(samples, prosody.PROSODY_SAMPLE_RATE))
        np.testing.assert_allclose(levels, 20 * np.log10(np.maximum(reference, 1e-8)), atol=1e-4)


def test_f0_correlation_of_a_contour_with_itself(speech):
    assert prosody.f0_correlation(speech, speech) == pytest.approx(1.0, abs=1e-6)
    assert prosody.f0_correlation(speech, speech, align="time") == pytest.approx(1.0, abs=1e-6)


def test_mcd_of_a_clip_with_itself_is_zero(speech, other_speech):
    assert prosody.mel_cepstral_distortion(speech, speech) == pytest.approx(0.0, abs=1e-6)
    assert prosody.mel_cepstral_distortion(speech, other_speech) > 1.0


def test_too_short_or_silent_audio_is_refused():
    with pytest.raises(AudioError):
        prosody.f0_track(Audio(np.zeros(24_000, dtype=np.float32)))
    with pytest.raises(AudioError):
        prosody.f0_track(sine(220.0, seconds=0.02))


def test_syllable_estimate():
    assert prosody.count_syllables("The cat sat") == 3
    assert prosody.count_syllables("wonderful banana") == 6


# ---------------------------------------------------------------------------------------------------------
# The standard models' optional code paths: clear errors offline, results never under the proxy's name


def test_standard_whisper_offline_is_a_clear_error(monkeypatch):
    from tts.errors import TimbreError
    from tts.evaluation.asr import WhisperASR

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asr = WhisperASR("large-v3")
    assert asr.metric_key == "wer_whisper_large_v3" and "proxy" not in asr.label
    assert WhisperASR().metric_key == "wer_whisper_tiny_en" and "proxy" in WhisperASR().label
    with pytest.raises(TimbreError, match="large-v3"):
        asr.transcribe(sine(220.0))


@pytest.mark.slow
def test_wavlm_similarity_offline_is_a_clear_error(monkeypatch):
    from tts.errors import TimbreError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(similarity, "_encoders", {})
    assert similarity.metric_key("wavlm-base-plus-sv") == "sim_wavlm_base_plus_sv"
    with pytest.raises(TimbreError, match="wavlm-base-plus-sv"):
        similarity.speaker_embedding(sine(220.0), "wavlm-base-plus-sv")
