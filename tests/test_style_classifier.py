"""The style classifier (tts.evaluation.style_classifier) and its features (tts.evaluation.style_features):
features of synthetic clips whose answers are known, shapes, save/load bit-exactness, deterministic training, and
the shipped checkpoint on real rendered styles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tts.audio import SAMPLE_RATE, Audio
from tts.checkpoints import CONFIG_NAME
from tts.data.styles import STYLES
from tts.errors import AudioError, CheckpointError
from tts.evaluation.style_classifier import (
    StyleClassifier,
    StyleClassifierConfig,
    StyleClip,
    accuracy_report,
    confusion_markdown,
    confusion_matrix,
    fit_classifier,
    neutral_baselines,
    paired_feature_names,
    paired_features,
    plain_feature_names,
    plain_features,
    plan_clips,
)
from tts.evaluation.style_features import FEATURE_NAMES, style_features

pytestmark = pytest.mark.usefixtures("single_thread")

D = len(FEATURE_NAMES)
P = len(plain_feature_names())  # a plain classifier's inputs: the features that do not say who speaks


def syllables(f0_start: float, f0_end: float, seconds: float = 2.0, level: float = 0.1, rate: float = 4.0) -> Audio:
    """A buzz whose F0 glides from `f0_start` to `f0_end`, amplitude-modulated into `rate` syllables a second."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = f0_start * (f0_end / f0_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    buzz = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 - 0.45 * np.cos(2 * np.pi * rate * t)
    samples = buzz * envelope
    samples *= level / np.sqrt(np.mean(samples**2))
    return Audio(samples.astype(np.float32), SAMPLE_RATE)


def index(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_features_of_a_gliding_buzz_are_what_was_made():
    features = style_features(syllables(110.0, 220.0))  # one octave up over 2 s
    assert features.shape == (D,) and np.all(np.isfinite(features))
    assert features[index("has_f0")] == 1.0
    assert 8.0 < features[index("f0_range_st")] < 12.5  # 5th to 95th percentile of a 12-semitone glide
    assert features[index("f0_final_rise_st")] > 3.0  # it ends far above its median
    assert 2.5 < features[index("peak_rate")] < 5.5  # 4 syllables a second


def test_praat_f0_track_agrees_with_pyin_on_its_grid():
    from tts.evaluation.prosody import f0_track

    buzz = syllables(110.0, 220.0)
    praat, pyin = f0_track(buzz, method="praat"), f0_track(buzz)
    assert praat.f0.shape == pyin.f0.shape and praat.hop_seconds == pyin.hop_seconds
    both = praat.voiced & pyin.voiced
    assert both.sum() > 0.5 * pyin.voiced.sum()
    assert np.median(np.abs(12 * np.log2(praat.f0[both] / pyin.f0[both]))) < 0.3  # semitones
    assert abs(np.median(12 * np.log2(praat.f0[praat.voiced] / 55.0)) - 12 * np.log2(155.6 / 55.0)) < 1.5
    with pytest.raises(ValueError, match="unknown F0 method"):
        f0_track(buzz, method="crepe")


def test_level_tilt_and_whisper_features_move_the_right_way():
    quiet, loud = style_features(syllables(150, 150, level=0.02)), style_features(syllables(150, 150, level=0.2))
    assert abs((loud[index("level_dbfs")] - quiet[index("level_dbfs")]) - 20.0) < 1.0
    noise = np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE).astype(np.float32) * 0.05
    envelope = 0.55 - 0.45 * np.cos(2 * np.pi * 4 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)
    whisper = style_features(Audio((noise * envelope).astype(np.float32), SAMPLE_RATE))
    assert whisper[index("voiced_fraction")] < 0.3 < loud[index("voiced_fraction")]
    assert whisper[index("spectral_flatness")] > loud[index("spectral_flatness")]
    assert whisper[index("spectral_tilt")] > loud[index("spectral_tilt")]  # white noise is flat, a buzz falls off


def test_unreadable_clips_are_refused(tone):
    with pytest.raises(AudioError, match="at least"):
        style_features(Audio(tone.samples[: SAMPLE_RATE // 4], SAMPLE_RATE))
    with pytest.raises(AudioError, match="silent"):
        style_features(Audio(np.zeros(SAMPLE_RATE * 2, dtype=np.float32), SAMPLE_RATE))
    broken = tone.samples.copy()
    broken[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        style_features(Audio(broken, SAMPLE_RATE))


@pytest.mark.parametrize("hidden_size", [0, 8])
def test_shapes_and_probabilities(hidden_size):
    torch.manual_seed(0)
    model = StyleClassifier(StyleClassifierConfig(hidden_size=hidden_size))
    logits = model(torch.randn(5, P))
    assert logits.shape == (5, len(STYLES))
    probs = model.probabilities(np.random.default_rng(0).standard_normal((3, P)))
    assert probs.shape == (3, len(STYLES)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    prediction = model.predict_features(np.zeros(D))
    assert prediction.label in STYLES and prediction.confidence == max(prediction.probabilities.values())


def test_classifier_inputs_hear_who_speaks_only_against_neutral_speech():
    rng = np.random.default_rng(0)
    clip, neutral = rng.standard_normal(D), rng.standard_normal(D)
    assert plain_feature_names() == tuple(n for n in FEATURE_NAMES if n != "f0_median_st") and P == D - 1
    assert np.allclose(plain_features(clip), np.delete(clip, index("f0_median_st")))
    names = paired_feature_names()
    inputs = paired_features(clip, neutral)
    absolute = D - 2  # neither the F0 median (who speaks) nor the level (the engine's own) on their own
    assert inputs.shape == (len(names),) == (absolute + D,)
    assert not {"level_dbfs", "f0_median_st"} & set(names[:absolute])
    assert names[absolute:] == tuple(f"delta_{n}" for n in FEATURE_NAMES)
    assert np.allclose(inputs[absolute:], clip - neutral)
    assert np.allclose(inputs[:absolute], np.delete(clip, [index("level_dbfs"), index("f0_median_st")]))
    for name in ("level_dbfs", "f0_median_st"):
        moved = clip.copy()
        moved[index(name)] += 6.0  # the same clip louder or higher: only that difference moves
        assert np.flatnonzero(paired_features(moved, neutral) - inputs).tolist() == [absolute + index(name)]
    assert paired_features(np.stack([clip, clip]), np.stack([neutral, neutral])).shape == (2, absolute + D)
    with pytest.raises(ValueError, match="two arrays"):
        paired_features(clip, neutral[:-1])
    with pytest.raises(ValueError, match="features"):
        plain_features(clip[:-1])


def test_a_paired_classifier_needs_neutral_speech():
    torch.manual_seed(0)
    model = StyleClassifier(StyleClassifierConfig(hidden_size=4, paired=True))
    assert model.config.input_names == paired_feature_names()
    assert model(torch.randn(3, len(paired_feature_names()))).shape == (3, len(STYLES))
    assert model.predict_features(np.zeros(D), np.zeros(D)).label in STYLES
    with pytest.raises(ValueError, match="neutral"):
        model.predict_features(np.zeros(D))
    with pytest.raises(ValueError, match="neutral"):
        model.classify(Audio(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE))
    with pytest.raises(ValueError, match="values for"):
        StyleClassifierConfig(paired=True, feature_mean=(0.0,) * P)  # sized for the plain classifier's inputs


def test_each_clip_is_paired_with_its_voices_neutral_clips_of_other_texts():
    clips = [StyleClip("a", "one", "neutral", 0.0), StyleClip("a", "one", "happy", 1.0),
             StyleClip("a", "two", "neutral", 0.0), StyleClip("a", "three", "neutral", 0.0),
             StyleClip("b", "four", "neutral", 0.0), StyleClip("b", "five", "neutral", 0.0),
             StyleClip("b", "five", "sad", 1.0)]
    features = np.arange(len(clips), dtype=np.float64)[:, None] * np.ones((1, D))
    baselines = neutral_baselines(clips, features)
    assert baselines[:, 0].tolist() == [2.5, 2.5, 1.5, 1.0, 5.0, 4.0, 4.0]  # never its own text, never another voice
    with pytest.raises(ValueError, match="no neutral clip of another text"):
        neutral_baselines(clips[4:5], features[4:5])


def test_save_load_is_bit_exact_and_fp16_shipping_is_stable(tmp_path):
    rng = np.random.default_rng(0)
    config = StyleClassifierConfig(hidden_size=8, feature_mean=tuple(rng.standard_normal(P).tolist()),
                                   feature_std=tuple((rng.random(P) + 0.5).tolist()))
    torch.manual_seed(1)
    model = StyleClassifier(config).eval()
    x = torch.as_tensor(rng.standard_normal((4, P)), dtype=torch.float32)
    model.save_pretrained(tmp_path / "fp32")
    loaded = StyleClassifier.from_pretrained(tmp_path / "fp32")
    assert loaded.config == config  # the normalization survives exactly (JSON floats)
    assert torch.equal(loaded(x), model(x))
    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    once = StyleClassifier.from_pretrained(tmp_path / "fp16").float()
    once.save_pretrained(tmp_path / "again", dtype=torch.float16)
    twice = StyleClassifier.from_pretrained(tmp_path / "again").float()
    assert torch.equal(once(x), twice(x))
    assert (tmp_path / "fp16" / "model.safetensors").read_bytes() == (tmp_path / "again" / "model.safetensors").read_bytes()


def test_a_checkpoint_of_other_features_is_refused(tmp_path):
    StyleClassifier(StyleClassifierConfig(hidden_size=4)).save_pretrained(tmp_path)
    payload = json.loads((tmp_path / CONFIG_NAME).read_text())
    payload["config"]["feature_version"] = 999
    (tmp_path / CONFIG_NAME).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="retrain"):
        StyleClassifier.from_pretrained(tmp_path)


def test_training_separates_classes_and_is_deterministic():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((len(STYLES), P)) * 3
    labels = np.repeat(np.arange(len(STYLES)), 20)
    features = centers[labels] + rng.standard_normal((len(labels), P)) + 100.0  # an offset normalization removes
    config = StyleClassifierConfig(hidden_size=8)
    first = fit_classifier(features, labels, config, seed=3, steps=200)
    second = fit_classifier(features, labels, config, seed=3, steps=200)
    assert np.mean(first.probabilities(features).argmax(axis=1) == labels) > 0.95
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert np.allclose(first.config.feature_mean, features.mean(axis=0))


def test_confusion_matrix_and_report():
    matrix = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    report = accuracy_report(matrix, ("a", "b", "c"))
    assert report["accuracy"] == 0.75 and report["per_label"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert "| a | 1 | 1 | 0 | 0.50 |" in confusion_markdown(matrix, ("a", "b", "c"))


def test_the_recipe_splits_voices_and_texts():
    from tts.evaluation.testsets import heldout_texts, overlaps_heldout

    train, test = plan_clips()
    assert not {c.voice for c in train} & {c.voice for c in test}
    assert not {c.text for c in train} & {c.text for c in test}
    assert not any(overlaps_heldout(c.text) for c in train + test)
    assert not {c.text for c in train + test} & set(heldout_texts())
    from tts.evaluation.stages import parse_voice_spec

    for voice in {c.voice for c in train + test}:
        parse_voice_spec(voice)  # raises for a voice that training may use
    assert {c.style for c in test} == set(STYLES)


def test_the_shipped_classifier_hears_rendered_styles(flite):
    from tts.data.voicebank import synthesize
    from tts.evaluation.style_classifier import load_style_classifier

    classifier = load_style_classifier()
    text = "The old lighthouse keeper painted the door a bright shade of green."
    heard = {style: classifier.classify(synthesize("flite:slt", text, style=style, intensity=1.0).audio).label
             for style in ("neutral", "whisper", "angry")}
    assert heard == {"neutral": "neutral", "whisper": "whisper", "angry": "angry"}


def test_the_shipped_paired_classifier_hears_styles_against_the_voices_neutral_speech(flite):
    from tts.data.voicebank import synthesize
    from tts.evaluation.style_classifier import PAIRED_NAME, load_style_classifier

    classifier = load_style_classifier(PAIRED_NAME)
    assert classifier.config.paired
    text = "The old lighthouse keeper painted the door a bright shade of green."
    others = ("Please close the window before you leave for the station.",
              "My neighbour grows tomatoes and beans in a small garden behind the house.")
    neutral = [synthesize("flite:slt", other).audio for other in others]  # flite:slt is one of its test voices
    heard = {style: classifier.classify(synthesize("flite:slt", text, style=style, intensity=1.0).audio,
                                        neutral=neutral).label for style in STYLES}
    assert {style: heard[style] for style in ("neutral", "whisper", "angry")} == {
        "neutral": "neutral", "whisper": "whisper", "angry": "angry"}
    assert sum(heard[style] == style for style in STYLES) >= 6, heard  # the plain one: calm and sad alike alone
