"""Styled evaluation runs (`timbre eval --styles`): every item spoken in every requested style, the style metric
(the shipped style classifier) scored against what was asked, and the per-style summary in the report."""

from __future__ import annotations

import json

import pytest

from tts.errors import TimbreError
from tts.evaluation.adapters import accepts_style, base_speaker_engine
from tts.evaluation.harness import EvalConfig, evaluate, style_requests
from tts.evaluation.testsets import read_meta

pytestmark = pytest.mark.usefixtures("single_thread")

PROMPT_TEXT = "My neighbour grows tomatoes and beans in a small garden behind the house."
TARGETS = ("The old lighthouse keeper painted the door a bright shade of green.",
           "Please close the window before you leave for the station.")
STYLES3 = ("neutral", "whisper", "angry")


@pytest.fixture
def testset(tmp_path, flite, monkeypatch):
    monkeypatch.setenv("TIMBRE_CACHE", str(tmp_path / "cache"))  # style clips are rendered into the cache
    flite.synthesize(PROMPT_TEXT, "awb").audio.save(tmp_path / "prompt.wav")
    meta = "\n".join(f"item{k}|{PROMPT_TEXT}|prompt.wav|{text}" for k, text in enumerate(TARGETS))
    (tmp_path / "meta.lst").write_text(meta + "\n")
    return read_meta(tmp_path / "meta.lst", name="styled")


def test_config_checks():
    with pytest.raises(ValueError, match="unknown style"):
        EvalConfig(styles=("grumpy",))
    with pytest.raises(ValueError, match="single labels"):
        EvalConfig(styles=("happy:0.5+sad:0.5",))
    with pytest.raises(ValueError, match="intensity must be from 0 to 2"):
        EvalConfig(styles=("happy",), intensities=(2.5,))
    with pytest.raises(ValueError, match="needs styles"):
        EvalConfig(style_ref_voice="flite:slt")
    requests = style_requests(EvalConfig(styles=("neutral", "happy"), intensities=(0.5, 1.0)))
    assert [r.suffix for r in requests] == ["~neutral@0", "~happy@0.5", "~happy@1"]
    assert [r.expected for r in requests] == ["neutral", "happy", "happy"]
    assert style_requests(EvalConfig()) == [None]


def test_an_engine_without_styles_is_refused(testset, tmp_path):
    def plain(target_text, prompt_audio, prompt_text):
        return prompt_audio

    assert not accepts_style(plain) and accepts_style(base_speaker_engine("flite:slt"))
    with pytest.raises(TimbreError, match="takes no style"):
        evaluate(plain, testset, tmp_path / "run", config=EvalConfig(metrics=("style",), styles=("happy",)))


def test_a_styled_run_scores_every_style_and_summarizes_them(testset, tmp_path):
    config = EvalConfig(metrics=("style",), plots=False, styles=STYLES3, intensities=(1.0,))
    report = evaluate(base_speaker_engine("flite:slt"), testset, tmp_path / "run", engine_name="base:flite:slt",
                      config=config)
    assert [r.utt for r in report.results] == [f"item{k}~{s}@{0 if s == 'neutral' else 1}"
                                               for k in range(2) for s in STYLES3]
    for result in report.results:
        assert result.status == "ok", result.failure or result.flags
        assert result.metrics["style_correct"] in (0.0, 1.0)
        assert result.details["style"]["expected"] == result.style["expected"]
    styles = report.summary["styles"]
    assert set(styles["accuracy_by_label"]) == set(STYLES3)
    assert styles["accuracy"] >= 5 / 6  # flite:slt is one of the classifier's test voices
    whisper, neutral = styles["by_request"]["whisper@1"], styles["by_request"]["neutral@0"]
    assert whisper["style_level_dbfs"] < neutral["style_level_dbfs"] - 4  # a whisper is rendered 8 dB down
    # Both items share the prompt clip, so each output is also heard against the other item's neutral output.
    assert styles["paired_count"] == 6 and styles["paired_accuracy"] >= 5 / 6
    for result in report.results:
        other = "item1" if result.utt.startswith("item0") else "item0"
        assert result.details["style"]["paired"]["neutral_items"] == [other]
        assert result.metrics["style_paired_correct"] in (0.0, 1.0)
    angry_level = styles["intensity_trends"]["angry"]["style_level_dbfs"]
    assert angry_level["intensities"] == [0.0, 1.0] and angry_level["items"] == 2 and angry_level["monotonic"]
    assert "style_f0_median_st" not in styles["intensity_trends"]["whisper"]  # a whisper sets no pitch direction
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "## Styles" in markdown and "| whisper@1 | 2 |" in markdown and "Paired style accuracy" in markdown
    assert "| angry | style_level_dbfs | 2 | 0: " in markdown
    assert json.loads((tmp_path / "run" / "report.json").read_text())["summary"]["styles"]["accuracy"] == styles["accuracy"]


def test_a_style_reference_run_passes_clips_and_checks_their_style(testset, tmp_path):
    seen = []

    def echo(target_text, prompt_audio, prompt_text, *, style=None, style_ref=None):
        seen.append((style, style_ref))
        return style_ref  # an engine that copies the style clip perfectly (and says the wrong words)

    config = EvalConfig(metrics=("style",), plots=False, styles=("neutral", "whisper"), style_ref_voice="flite:slt")
    report = evaluate(echo, testset, tmp_path / "run", limit=1, config=config)
    assert all(style is None and ref is not None for style, ref in seen) and len(seen) == 2
    assert report.results[1].style["style_ref_voice"] == "flite:slt"
    assert report.summary["styles"]["accuracy"] == 1.0
    assert report.summary["styles"]["style_ref_match_rate"] == 1.0  # the output is the clip: heard the same
    assert [r.style["style_ref_heard"] for r in report.results] == ["neutral", "whisper"]
    with_base = evaluate(base_speaker_engine("flite:slt"), testset, tmp_path / "base", limit=1, config=config)
    assert {r.failure_stage for r in with_base.results} == {"engine"}  # a base speaker cannot take a style clip


def test_an_engine_louder_than_the_renderings_is_calibrated_by_its_neutral_output(testset, tmp_path):
    import numpy as np

    from tts.audio import Audio

    base = base_speaker_engine("flite:slt")

    def loud(*args, **kwargs):  # the same speech 8 dB louder than the renderings it was trained on
        audio = base(*args, **kwargs)
        return Audio(np.clip(audio.samples * 2.5, -1.0, 1.0), audio.sample_rate)

    config = EvalConfig(metrics=("style",), plots=False, styles=("whisper", "neutral", "angry"))
    report = evaluate(loud, testset, tmp_path / "run", limit=1, config=config)
    assert [r.style["expected"] for r in report.results] == ["neutral", "whisper", "angry"]  # neutral first
    offsets = [r.details["style"]["level_offset_db"] for r in report.results]
    assert offsets[0] == offsets[1] == offsets[2] and offsets[0] < -6
    assert report.summary["styles"]["accuracy"] == 1.0
    # One item: no other item's neutral output to pair with, so no paired score (and no paired line).
    assert report.summary["styles"]["paired_count"] == 0 and report.summary["styles"]["paired_accuracy"] is None
    assert "Paired style accuracy" not in (tmp_path / "run" / "report.md").read_text()


def test_a_missing_paired_classifier_costs_only_the_paired_score(testset, tmp_path, caplog):
    config = EvalConfig(metrics=("style",), plots=False, styles=("neutral", "whisper"),
                        paired_style_classifier=str(tmp_path / "no-such-checkpoint"))
    with caplog.at_level("WARNING"):
        report = evaluate(base_speaker_engine("flite:slt"), testset, tmp_path / "run", config=config)
    assert "no paired style score" in caplog.text
    assert report.summary["styles"]["accuracy"] is not None and report.summary["styles"]["paired_count"] == 0


def test_intensity_trends_follow_the_items_measured_at_every_intensity():
    from tts.evaluation.harness import UtteranceResult
    from tts.evaluation.report import intensity_trends

    def result(item, emotion, intensity, **metrics):
        return UtteranceResult(f"{item}~{emotion}@{intensity:g}", "text", "p.wav", metrics=metrics,
                               style={"emotion": emotion, "intensity": intensity,
                                      "expected": emotion if intensity else "neutral"})

    results = [result("a", "neutral", 0.0, style_level_dbfs=-20.0, style_f0_spread_st=3.0),
               result("b", "neutral", 0.0, style_level_dbfs=-30.0, style_f0_spread_st=3.0),
               result("a", "sad", 1.0, style_level_dbfs=-25.0, style_f0_spread_st=2.0),
               result("a", "sad", 2.0, style_level_dbfs=-27.0, style_f0_spread_st=2.5),
               result("b", "sad", 1.0, style_level_dbfs=-31.0, style_f0_spread_st=None)]  # b has no 2: left out
    sad = intensity_trends(results)["sad"]
    assert sad["style_level_dbfs"] == {"direction": -1, "intensities": [0.0, 1.0, 2.0], "means": [-20.0, -25.0, -27.0],
                                       "items": 1, "monotonic": True}
    assert sad["style_f0_spread_st"]["direction"] == -1 and not sad["style_f0_spread_st"]["monotonic"]  # 3, 2, 2.5
    # A label asked at intensity 0 is its own start; without a neutral request there is nothing to compare.
    happy = [result("a", "happy", 0.0, style_f0_median_st=10.0), result("a", "happy", 1.0, style_f0_median_st=12.0)]
    assert intensity_trends(happy)["happy"]["style_f0_median_st"]["means"] == [10.0, 12.0]
    assert intensity_trends([result("a", "angry", 1.0, style_level_dbfs=-20.0)]) == {}
