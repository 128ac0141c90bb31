"""Rendered styles (tts.data.styles): the parameter table, intensity interpolation, and that each transform
moves pitch, range, level, tilt, duration and voicing the way its label says, reproducibly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tts.audio import SAMPLE_RATE, Audio
from tts.data.styles import (
    NEUTRAL,
    NEUTRAL_LEVEL_DBFS,
    STYLE_TABLE,
    STYLES,
    StyleParams,
    LEVEL_GATE_DB,
    apply_style,
    check_intensity,
    psola,
    check_style,
    set_level,
    spectral_tilt,
    style_params,
    voicing_mask,
    whispered,
)
from tts.errors import TimbreError
from tts.preprocess import active_rms_dbfs

parselmouth = pytest.importorskip("parselmouth")


def _vowel(seconds: float = 2.0, f0: float = 120.0, vibrato_semitones: float = 2.0) -> Audio:
    """A voiced, vowel-like test signal: harmonics of a slowly moving F0 (+-`vibrato_semitones`) under
    two formant-like resonances, with short pauses at both ends."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    contour = f0 * 2 ** (vibrato_semitones * np.sin(2 * np.pi * 0.7 * t) / 12)
    phase = 2 * np.pi * np.cumsum(contour) / SAMPLE_RATE
    signal = np.zeros_like(t)
    for k in range(1, 40):
        freq = k * contour
        envelope = 1 / (1 + ((freq - 700) / 150) ** 2) + 0.5 / (1 + ((freq - 1200) / 200) ** 2) + 0.02
        signal += np.where(freq < SAMPLE_RATE / 2, envelope * np.sin(k * phase), 0.0)
    pad = np.zeros(int(0.2 * SAMPLE_RATE))
    samples = np.concatenate([pad, signal / np.abs(signal).max() * 0.5, pad]).astype(np.float32)
    return Audio(samples, SAMPLE_RATE)


VOWEL = _vowel()


def _pitch_semitones(audio: Audio) -> np.ndarray:
    pitch = parselmouth.Sound(audio.samples.astype(np.float64), audio.sample_rate).to_pitch(0.01, 60, 500)
    values = pitch.selected_array["frequency"]
    return 12 * np.log2(values[values > 0] / 55.0)


def _render(style: str, intensity: float = 1.0, **kwargs) -> Audio:
    return apply_style(VOWEL, style_params(style, intensity), **kwargs)


NEUTRAL_RENDER = _render("neutral")
NEUTRAL_PITCH = _pitch_semitones(NEUTRAL_RENDER)


def test_table_covers_every_style_and_neutral_is_identity():
    assert {"neutral", "happy", "sad", "angry", "surprised", "calm", "whisper"} <= set(STYLES)
    assert STYLE_TABLE["neutral"] == NEUTRAL == StyleParams()
    for style in STYLES:
        params = style_params(style, 1.0)
        assert params == STYLE_TABLE[style]
        assert style_params(style, 0.0) == NEUTRAL
        json.dumps(params.to_dict())  # logged with every sample
    assert len({STYLE_TABLE[style] for style in STYLES}) == len(STYLES), "two styles render the same"


def test_intensity_interpolates_in_natural_scales():
    half = style_params("sad", 0.5)
    full = STYLE_TABLE["sad"]
    assert half.pitch_shift == pytest.approx(full.pitch_shift / 2)
    assert half.energy_db == pytest.approx(full.energy_db / 2)
    assert half.rate == pytest.approx(math.sqrt(full.rate))  # log domain: geometric mean with 1
    assert half.pitch_range == pytest.approx(math.sqrt(full.pitch_range))
    shifts = [style_params("happy", x).pitch_shift for x in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] == 0.0


@pytest.mark.parametrize("bad", ["joyful", "", None, 3])
def test_unknown_style_is_refused(bad):
    with pytest.raises(TimbreError, match="unknown style"):
        check_style(bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "loud", None])
def test_intensity_outside_0_1_is_refused(bad):
    with pytest.raises(TimbreError, match="intensity"):
        check_intensity(bad)


def test_style_names_are_case_insensitive():
    assert check_style(" Happy ") == "happy"


@pytest.mark.parametrize(
    "style, expected_shift",
    [("happy", 3.0), ("sad", -2.5), ("angry", 1.5), ("calm", -1.5)],
)
def test_pitch_moves_by_the_table_shift(style, expected_shift):
    shift = np.median(_pitch_semitones(_render(style))) - np.median(NEUTRAL_PITCH)
    assert shift == pytest.approx(expected_shift, abs=0.6)


def test_pitch_range_widens_for_happy_and_narrows_for_sad():
    spread = lambda semitones: np.percentile(semitones, 95) - np.percentile(semitones, 5)  # noqa: E731
    neutral = spread(NEUTRAL_PITCH)
    assert spread(_pitch_semitones(_render("happy"))) > 1.2 * neutral
    assert spread(_pitch_semitones(_render("sad"))) < 0.75 * neutral


def test_surprised_rises_at_the_end():
    semitones = _pitch_semitones(_render("surprised"))
    tail, body = semitones[-15:], semitones[: len(semitones) // 2]
    assert np.median(tail) - np.median(body) > 2.5


@pytest.mark.parametrize("style", ["neutral", "happy", "sad", "angry", "calm", "whisper"])
def test_level_is_neutral_level_plus_energy(style):
    audio = _render(style, seed=1)
    expected = NEUTRAL_LEVEL_DBFS + STYLE_TABLE[style].energy_db
    assert active_rms_dbfs(audio, gate_db=-LEVEL_GATE_DB) == pytest.approx(expected, abs=1.0)
    assert np.max(np.abs(audio.samples)) < 1.0


def test_limiter_keeps_loud_levels_below_full_scale():
    loud = set_level(VOWEL, -3.0)
    assert np.max(np.abs(loud.samples)) <= 0.99 + 1e-6


def test_spectral_tilt_brightens_and_darkens():
    def high_share(audio: Audio) -> float:
        spectrum = np.abs(np.fft.rfft(audio.samples)) ** 2
        freqs = np.fft.rfftfreq(len(audio.samples), 1 / audio.sample_rate)
        return float(spectrum[freqs > 2000].sum() / spectrum.sum())

    assert high_share(spectral_tilt(VOWEL, 3.0)) > 1.5 * high_share(VOWEL)
    assert high_share(spectral_tilt(VOWEL, -3.0)) < 0.7 * high_share(VOWEL)
    assert spectral_tilt(VOWEL, 0.0) is VOWEL


def test_whisper_removes_voicing_and_is_seeded():
    first, again, other = (_render("whisper", seed=s) for s in (5, 5, 6))
    voiced = lambda audio: len(_pitch_semitones(audio))  # noqa: E731
    assert voiced(first) < 0.15 * voiced(NEUTRAL_RENDER)
    assert np.array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)
    half = _render("whisper", 0.5, seed=5)
    assert voiced(first) < voiced(half) < voiced(NEUTRAL_RENDER)  # breathy in between


def test_a_whisper_keeps_the_unvoiced_stretches_and_the_vowels_spectral_envelope():
    rng = np.random.default_rng(0)
    hiss = np.convolve(rng.standard_normal(int(0.5 * SAMPLE_RATE)), [1.0, -0.9], mode="same") * 0.05  # an "s"
    speech = Audio(np.concatenate([VOWEL.samples, hiss.astype(np.float32)]), SAMPLE_RATE)
    mask = voicing_mask(speech)
    vowel, consonant = slice(int(0.5 * SAMPLE_RATE), int(1.8 * SAMPLE_RATE)), slice(len(VOWEL.samples) + 2400, None)
    assert mask[vowel].min() > 0.99 and mask[consonant].max() < 0.01
    out = whispered(speech, seed=1)
    np.testing.assert_array_equal(out.samples[consonant], speech.samples[consonant])  # the consonant as it was
    assert len(_pitch_semitones(Audio(out.samples[vowel], SAMPLE_RATE))) < 5  # the vowel has no pitch left
    # ... but its resonances: the 700 Hz formant still stands out of the band around it.
    def band(audio: np.ndarray, low: float, high: float) -> float:
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
        return float(spectrum[(freqs >= low) & (freqs < high)].mean())

    assert band(out.samples[vowel], 600, 800) > 10 * band(out.samples[vowel], 2500, 2700)
    for length in (1, 500, 1200):  # shorter than a frame or than the pitch window: padded, then cut back
        assert len(whispered(Audio(speech.samples[:length], SAMPLE_RATE)).samples) == length


def test_a_final_rise_ends_above_the_median_even_after_a_falling_statement():
    t = np.arange(int(2.0 * SAMPLE_RATE)) / SAMPLE_RATE
    contour = 160.0 * 2 ** (-8 * t / 2.0 / 12)  # a statement's fall: 8 semitones over 2 s
    phase = 2 * np.pi * np.cumsum(contour) / SAMPLE_RATE
    signal = sum(np.sin(k * phase) / k for k in range(1, 30) if 30 * 160 < SAMPLE_RATE / 2)
    falling = Audio((0.3 * signal / np.abs(signal).max()).astype(np.float32), SAMPLE_RATE)
    before, after = (_pitch_semitones(psola(falling, final_rise=rise)) for rise in (0.0, 4.0))
    assert before[-5:].mean() < np.median(before) - 3  # it ends low
    assert after[-5:].mean() > np.median(after) + 2.5  # risen past its median, not just 4 st above its low end
    assert np.allclose(after[: len(after) // 2], before[: len(after) // 2], atol=0.3)  # the start is untouched


def test_stretch_applies_the_rate_and_is_deterministic():
    slow = _render("sad", stretch=True, seed=3)
    expected = VOWEL.duration / STYLE_TABLE["sad"].rate
    assert slow.duration == pytest.approx(expected, rel=0.03)
    assert _render("sad", stretch=False).duration == pytest.approx(VOWEL.duration, rel=0.01)
    assert np.array_equal(slow.samples, _render("sad", stretch=True, seed=3).samples)


def test_voice_warp_folds_into_the_same_pass():
    warped = apply_style(VOWEL, NEUTRAL, pitch_ratio=0.8, formant_ratio=0.9)
    shift = np.median(_pitch_semitones(warped)) - np.median(NEUTRAL_PITCH)
    assert shift == pytest.approx(12 * math.log2(0.8), abs=0.6)
    assert warped.duration == pytest.approx(VOWEL.duration, rel=0.02)


@pytest.mark.parametrize("formant_ratio", [1.0, 1.15])
def test_psola_sings_a_given_melody(formant_ratio):
    """`psola(melody=(times, f0))`: the audio's own contour is replaced by the given one (here a glide from 100 to
    200 Hz over the voiced stretch), whatever the formant scale; the duration is kept."""
    from tts.data.styles import psola

    times = np.linspace(0.25, VOWEL.duration - 0.25, 60)
    glide = 100.0 * 2 ** ((times - times[0]) / (times[-1] - times[0]))
    sung = psola(VOWEL, melody=(times, glide), formant_ratio=formant_ratio)
    assert abs(sung.duration - VOWEL.duration) < 0.02
    pitch = parselmouth.Sound(sung.samples.astype(np.float64), sung.sample_rate).to_pitch(0.01, 60, 500)
    heard_times, heard = pitch.xs(), pitch.selected_array["frequency"]
    voiced = (heard > 0) & (heard_times > times[0] + 0.05) & (heard_times < times[-1] - 0.05)
    expected = np.interp(heard_times[voiced], times, glide)
    assert voiced.sum() > 50 and np.median(np.abs(12 * np.log2(heard[voiced] / expected))) < 0.5
