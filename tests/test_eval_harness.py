"""The evaluation harness: broken inputs and a failing engine are recorded per utterance, never a crash.

The engine under test is a test double that returns known audio (espeak-ng speech, silence, a short
clip) or raises; every metric is the real one.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pytest

from tts.audio import Audio, load_audio
from tts.evaluation.harness import EvalConfig, evaluate
from tts.evaluation.testsets import read_meta

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

PROMPT_TEXT = "My neighbour grows tomatoes and beans in a small garden behind the house."
TARGET_OK = "Please close the window before you leave."
TARGET_FRENCH = "The weather is lovely today."
TARGET_RAISES = "This one makes the engine raise."
TARGET_SILENT = "This one comes back silent."
TARGET_SHORT = "This one comes back far too short."


def espeak(path, text: str, voice: str = "en-us") -> Audio:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path)


@pytest.fixture(scope="module")
def broken_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    (root / "wavs").mkdir()
    espeak(root / "wavs" / "prompt.wav", PROMPT_TEXT, "en-us+m3")
    Audio(np.zeros(48_000, dtype=np.float32)).save(root / "wavs" / "silent.wav")
    prompt = load_audio(root / "wavs" / "prompt.wav")
    Audio(prompt.samples[: int(0.2 * prompt.sample_rate)]).save(root / "wavs" / "short.wav")
    french = espeak(root / "french.wav", "Il fait très beau aujourd'hui, nous allons nous promener.", "fr")
    ok_speech = espeak(root / "ok.wav", TARGET_OK)
    meta = "\n".join(
        [
            f"ok|{PROMPT_TEXT}|wavs/prompt.wav|{TARGET_OK}",
            f"missing|{PROMPT_TEXT}|wavs/does-not-exist.wav|{TARGET_OK}",
            f"silent-prompt|{PROMPT_TEXT}|wavs/silent.wav|{TARGET_OK}",
            f"short-prompt|{PROMPT_TEXT}|wavs/short.wav|{TARGET_OK}",
            f"raises|{PROMPT_TEXT}|wavs/prompt.wav|{TARGET_RAISES}",
            f"silent-output|{PROMPT_TEXT}|wavs/prompt.wav|{TARGET_SILENT}",
            f"short-output|{PROMPT_TEXT}|wavs/prompt.wav|{TARGET_SHORT}",
            f"french|{PROMPT_TEXT}|wavs/prompt.wav|{TARGET_FRENCH}",
            "a bad line without fields",
        ]
    )
    (root / "meta.lst").write_text(meta + "\n")

    def engine_fn(target_text: str, prompt_audio: Audio, prompt_text: str) -> Audio:
        assert isinstance(prompt_audio, Audio) and prompt_text == PROMPT_TEXT
        if target_text == TARGET_RAISES:
            raise RuntimeError("the model exploded")
        if target_text == TARGET_SILENT:
            return Audio(np.zeros(48_000, dtype=np.float32))
        if target_text == TARGET_SHORT:
            return Audio(ok_speech.samples[: int(0.2 * ok_speech.sample_rate)])
        if target_text == TARGET_FRENCH:
            return french
        return ok_speech

    return read_meta(root / "meta.lst", name="broken"), engine_fn


@pytest.fixture(scope="module")
def report(broken_set, tmp_path_factory):
    testset, engine_fn = broken_set
    out = tmp_path_factory.mktemp("run")
    seen = []
    result = evaluate(engine_fn, testset, out, engine_name="fake", config=EvalConfig(plot_samples=2),
                      progress=lambda done, total, r: seen.append((done, total, r.utt)))
    assert [s[0] for s in seen] == list(range(1, 9)) and seen[-1][1] == 8
    return result


def by_utt(report):
    return {r.utt: r for r in report.results}


def test_good_utterance_is_scored(report):
    ok = by_utt(report)["ok"]
    assert ok.status == "ok", ok.flags
    assert ok.metrics["wer_whisper_tiny_en"] <= 0.25
    assert 0.0 < ok.metrics["sim_resemblyzer"] < 1.0
    assert 1.0 <= ok.metrics["dnsmos_ovrl"] <= 5.0
    assert ok.metrics["f0_mean_hz"] > 50 and ok.metrics["speaking_rate"] > 0
    assert ok.rtf is not None and ok.output_wav.endswith("ok.wav")


@pytest.mark.parametrize(
    "utt, stage, words",
    [
        ("missing", "prompt", "no such file"),
        ("silent-prompt", "prompt", "silent"),
        ("short-prompt", "prompt", "0.20 s"),
        ("raises", "engine", "the model exploded"),
        ("silent-output", "output", "silent"),
        ("short-output", "output", "0.20 s"),
    ],
)
def test_broken_inputs_are_recorded_failures(report, utt, stage, words):
    result = by_utt(report)[utt]
    assert result.status == "failed"
    assert result.failure_stage == stage
    assert words in result.failure
    assert result.metrics == {}


def test_speech_in_another_language_is_flagged_unintelligible(report):
    french = by_utt(report)["french"]
    assert french.status == "flagged"
    assert french.metrics["wer_whisper_tiny_en"] > 0.5
    assert any("unintelligible" in flag for flag in french.flags)


def test_summary_and_files(report):
    summary = report.summary
    assert summary["utterances"] == 8 and summary["failed"] == 6 and summary["flagged"] == 1 and summary["ok"] == 1
    assert summary["failed_by_stage"] == {"prompt": 3, "engine": 1, "output": 2}
    assert summary["wer_whisper_tiny_en"]["count"] == 2 and summary["wer_whisper_tiny_en"]["above_50"] == 1
    data = json.loads((report.out_dir / "report.json").read_text())
    assert data["parse_errors"] and "found 1" in data["parse_errors"][0]
    assert "proxy" in data["labels"]["wer_whisper_tiny_en"].lower()
    assert len(data["utterances"]) == 8
    markdown = (report.out_dir / "report.md").read_text()
    assert "the model exploded" in markdown and "CPU proxies" in markdown
    for name in ("per_utterance.png", "f0_contours.png", "spectrograms.png"):
        assert (report.out_dir / "plots" / name).stat().st_size > 1000
    assert (report.out_dir / "wavs" / "ok.wav").is_file()


def test_a_metric_subset_and_no_plots(broken_set, tmp_path):
    testset, engine_fn = broken_set
    result = evaluate(engine_fn, testset, tmp_path, limit=1, config=EvalConfig(metrics=("wer",), plots=False))
    assert len(result.results) == 1
    assert set(result.results[0].metrics) == {"wer_whisper_tiny_en"}
    assert not (tmp_path / "plots").exists()


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        EvalConfig(metrics=("wer", "utmos"))


def test_items_in_a_voice_the_engine_speaks_with_are_left_out(broken_set, tmp_path):
    testset, engine_fn = broken_set
    voices = {"ok": "piper:joe", "raises": "flite:awb"}
    items = [dataclasses.replace(item, prompt_voice=voices.get(item.utt)) for item in testset.items]
    heard_set = dataclasses.replace(testset, items=items)

    def speaking_engine(target_text: str, prompt_audio: Audio, prompt_text: str) -> Audio:
        return engine_fn(target_text, prompt_audio, prompt_text)

    speaking_engine.heard_voices = ("piper:joe",)
    result = evaluate(speaking_engine, heard_set, tmp_path, limit=5, config=EvalConfig(metrics=("wer",), plots=False))
    assert [r.utt for r in result.results] == ["missing", "silent-prompt", "short-prompt", "raises"]
    assert [entry["utt"] for entry in result.left_out] == ["ok"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["left_out"][0]["prompt_voice"] == "piper:joe"
    assert "Left out: 1 item(s)" in (tmp_path / "report.md").read_text()
    plain = evaluate(engine_fn, heard_set, tmp_path / "plain", limit=1, config=EvalConfig(metrics=("wer",), plots=False))
    assert [r.utt for r in plain.results] == ["ok"] and plain.left_out == []
