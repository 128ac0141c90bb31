"""Stage evaluations (`timbre eval-stage`): the done-criteria logic on crafted numbers, the item plans, and each
stage end to end on tiny random models with real held-out clips and the real metrics."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from tts.audio import Audio, load_audio
from tts.cli import build_parser, main
from tts.errors import TimbreError
from tts.evaluation import stages
from tts.evaluation.stages import (
    DEFAULT_SIM_KEY as SIM,
    DEFAULT_WER_KEY as WER,
    Criterion,
    conversion_criteria,
    dit_conversion_criteria,
    distillation_criteria,
    edit_criteria,
    edited_text,
    plan_items,
    tone_color_criteria,
    reconstruction_criteria,
    verdict,
    vocoder_criteria,
)

pytestmark = pytest.mark.usefixtures("single_thread")

needs_voices = pytest.mark.skipif(shutil.which("flite") is None or shutil.which("text2wave") is None,
                                  reason="flite and festival render the held-out clips")

FULL_BAND_VOICE, NARROW_BAND_VOICE = "festival:cmu_us_slt_arctic_hts", "flite:awb"
"""Fast held-out voices, one 24 kHz source and one 16 kHz source."""


# ---------------------------------------------------------------------------------------------------------
# Criteria on crafted numbers


def good_vocoder_means() -> dict:
    return {
        "pesq_wb": {"griffin_lim": 3.7, "vocoder": 3.3},
        "dnsmos_ovrl": {"original": 3.2, "griffin_lim": 2.8, "vocoder": 3.0},
        WER: {"original": 0.05, "vocoder": 0.06},
        f"{SIM}_to_original": {"griffin_lim": 0.97, "vocoder": 0.95},
    }


def statuses(criteria: list[Criterion]) -> dict[str, str]:
    return {c.name: c.status for c in criteria}


def test_vocoder_criteria_pass_and_each_one_fails_alone():
    passing = vocoder_criteria(good_vocoder_means(), "16k")
    assert all(c.group == "16k" for c in passing) and len(passing) == 5
    assert verdict(passing) == "PASS", statuses(passing)

    breaks = {
        "PESQ-wb, vocoder vs original": ("pesq_wb", "vocoder", 3.19),
        "DNSMOS OVRL, vocoder minus Griffin-Lim": ("dnsmos_ovrl", "griffin_lim", 3.01),
        "WER, vocoder minus original": (WER, "vocoder", 0.0701),
        "SIM(original, vocoder)": (f"{SIM}_to_original", "vocoder", 0.929),
    }
    for name, (metric, subject, value) in breaks.items():
        means = good_vocoder_means()
        means[metric][subject] = value
        result = statuses(vocoder_criteria(means, "24k"))
        assert result[name] == "FAIL" and list(result.values()).count("FAIL") == 1, (name, result)

    # Within 0.3 of the original: 0.3 below passes, more does not; better than the original always passes.
    means = good_vocoder_means()
    means["dnsmos_ovrl"].update(original=3.3, vocoder=3.0, griffin_lim=2.0)
    assert statuses(vocoder_criteria(means, "24k"))["DNSMOS OVRL, original minus vocoder"] == "PASS"
    means["dnsmos_ovrl"]["vocoder"] = 2.99
    assert statuses(vocoder_criteria(means, "24k"))["DNSMOS OVRL, original minus vocoder"] == "FAIL"
    means["dnsmos_ovrl"]["vocoder"] = 3.6
    assert statuses(vocoder_criteria(means, "24k"))["DNSMOS OVRL, original minus vocoder"] == "PASS"


def test_thresholds_hold_exactly_despite_float_rounding():
    means = good_vocoder_means()
    means[WER] = {"original": 0.11, "vocoder": 0.13}  # 0.020000000000000004 in floats: exactly 2 points
    means["pesq_wb"]["vocoder"] = 3.2
    result = statuses(vocoder_criteria(means, "24k"))
    assert result["WER, vocoder minus original"] == "PASS" and result["PESQ-wb, vocoder vs original"] == "PASS"


def test_missing_numbers_are_not_a_pass():
    criteria = vocoder_criteria({}, "16k")
    assert {c.status for c in criteria} == {"N/A"}
    assert verdict(criteria) == "INCOMPLETE"
    assert verdict(criteria + [Criterion("all", "x", 0.0, ">=", 1.0)]) == "FAIL"
    assert verdict([]) == "INCOMPLETE"
    assert Criterion("all", "x", math.nan, ">=", 0.0).status == "N/A"


def test_reconstruction_criteria():
    means = {WER: {"original": 0.10, "output": 0.13}, f"{SIM}_to_prompt": {"original": 0.9, "output": 0.80}}
    assert verdict(reconstruction_criteria(means)) == "PASS"
    means[WER]["output"] = 0.1301
    assert statuses(reconstruction_criteria(means)) == {"WER, reconstruction minus original": "FAIL",
                                                        "SIM(reconstruction, prompt)": "PASS"}
    means[WER]["output"] = 0.0
    means[f"{SIM}_to_prompt"]["output"] = 0.79
    assert statuses(reconstruction_criteria(means))["SIM(reconstruction, prompt)"] == "FAIL"


def test_conversion_criteria():
    means = {WER: {"source": 0.10, "output": 0.15}, f"{SIM}_to_prompt": {"source": 0.5, "output": 0.76},
             f"{SIM}_gap": {"output": 0.15}}
    assert verdict(conversion_criteria(means)) == "PASS"
    means[f"{SIM}_gap"]["output"] = 0.149
    means[WER]["output"] = 0.151
    means[f"{SIM}_to_prompt"]["output"] = 0.74
    assert set(statuses(conversion_criteria(means)).values()) == {"FAIL"}


def test_dit_conversion_criteria_add_the_melody_to_the_conversion_ones():
    means = {WER: {"source": 0.10, "output": 0.15}, f"{SIM}_to_prompt": {"source": 0.5, "output": 0.76},
             f"{SIM}_gap": {"output": 0.15}, "f0_correlation": {"output": 0.8}}
    assert verdict(dit_conversion_criteria(means)) == "PASS"
    assert [c.name for c in dit_conversion_criteria(means)][:3] == [c.name for c in conversion_criteria(means)]
    means["f0_correlation"]["output"] = 0.79
    assert statuses(dit_conversion_criteria(means)) == {"SIM(output, target voice B)": "PASS",
                                                        "SIM(output, B) minus SIM(output, source voice A)": "PASS",
                                                        "WER, output minus source": "PASS",
                                                        "F0-contour correlation with the source": "FAIL"}


def test_tone_color_criteria():
    means = {WER: {"source": 0.10, "output": 0.13}, f"{SIM}_to_prompt": {"source": 0.55, "output": 0.75},
             f"{SIM}_gain": {"output": 0.15}, "f0_correlation": {"output": 0.8}}
    assert verdict(tone_color_criteria(means)) == "PASS"
    means[WER]["output"] = 0.1301
    means[f"{SIM}_gain"]["output"] = 0.149
    means[f"{SIM}_to_prompt"]["output"] = 0.749
    means["f0_correlation"]["output"] = 0.79
    assert set(statuses(tone_color_criteria(means)).values()) == {"FAIL"}


def test_distillation_criteria_compare_after_with_before():
    means = {WER: {"source": 0.1, "before": 0.20, "after": 0.21},
             f"{SIM}_to_prompt": {"source": 0.5, "before": 0.60, "after": 0.65},
             f"{SIM}_to_source": {"before": 0.70, "after": 0.69}, "f0_correlation": {"before": 0.9, "after": 0.8}}
    assert verdict(distillation_criteria(means)) == "PASS"
    means[WER]["after"] = 0.2101
    means[f"{SIM}_to_prompt"]["after"] = 0.6499
    means[f"{SIM}_to_source"]["after"] = 0.70  # must drop, not stay
    means["f0_correlation"]["after"] = 0.79
    assert set(statuses(distillation_criteria(means)).values()) == {"FAIL"}
    del means[f"{SIM}_to_prompt"]["before"]
    assert statuses(distillation_criteria(means))["SIM(after, target B) minus SIM(before, B)"] == "N/A"


def test_edit_criteria_and_edited_texts():
    means = {WER: {"original": 0.05, "edit1": 0.10, "edit3": 0.08, "speed0.7": 0.07, "speed1.3": 0.06},
             f"{SIM}_to_original": {"edit1": 0.9, "edit3": 0.85}, "kept_exact": {"edit1": 1.0, "edit3": 1.0}}
    assert verdict(edit_criteria(means)) == "PASS" and len(edit_criteria(means)) == 8
    means[WER].update({"edit1": 0.11, "speed1.3": 0.0701})
    means[f"{SIM}_to_original"]["edit3"] = 0.84
    means["kept_exact"]["edit1"] = 0.5  # one of two items changed a sample outside its span
    failed = {name for name, status in statuses(edit_criteria(means)).items() if status == "FAIL"}
    assert failed == {"one-word edit WER vs new text", "three-word edit SIM to the original",
                      "one-word edit: samples outside the spans kept", "speed x1.3 WER - original WER"}
    assert edited_text("The quick fox, she said.", 2, 2, 0) == "The quick garden, yellow said."
    assert stages._edit_position("I am at the big red barn today.", 3) in (3, 4)
    with pytest.raises(ValueError):
        edited_text("Two words", 1, 2, 0)


def test_stage_edits_replace_one_then_three_consecutive_words_of_every_heldout_text():
    """Both kinds of new words, as the engine's own word diff sees them (the text front end's spoken words):
    exactly one stretch of 1, then 3, words replaced by as many new ones."""
    import difflib

    from tts.dit.engine import _spoken_words
    from tts.evaluation.testsets import heldout_texts
    from tts.text import prepare_text

    def spoken(text):
        return [w for _, w in _spoken_words(prepare_text(text).words)]

    for number, text in enumerate(heldout_texts()):
        for words in stages.EDIT_WORD_SETS:
            edits = stages.stage_edits(text, number, words)
            assert [subject[-1] for subject, _ in edits] == ["1", "3"]
            for (subject, new_text), count in zip(edits, (1, 3)):
                old, new = spoken(text), spoken(new_text)
                changed = [op for op in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
                           if op[0] != "equal"]
                if words == "plausible":  # numbers are written out by the front end, so only the authored edits are exact
                    assert [(tag, i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in changed] == [("replace", count, count)], \
                        (subject, text, new_text)
                else:
                    assert changed, (subject, text, new_text)
    assert [s for s, _ in stages.stage_edits(heldout_texts()[0], 0, "nonsense")] == ["nonsense1", "nonsense3"]
    with pytest.raises(ValueError, match="plausible"):
        stages.stage_edits(heldout_texts()[0], 0, "silly")


def test_criteria_use_the_keys_of_the_chosen_models():
    means = {"wer_whisper_large_v3": {"source": 0.0, "output": 0.0}}
    criteria = conversion_criteria(means, wer_key="wer_whisper_large_v3", sim_key="sim_wavlm_base_plus_sv")
    assert statuses(criteria)["WER, output minus source"] == "PASS"


# ---------------------------------------------------------------------------------------------------------
# Plans, voices and bands


def test_plans_cycle_voices_and_texts_and_conversion_never_prompts_with_the_source():
    from tts.evaluation.testsets import heldout_texts

    vocoder = plan_items("vocoder", 14)
    assert [p.source_voice for p in vocoder] == list(stages.VOCODER_VOICES)
    assert [p.source_text for p in vocoder] == list(heldout_texts()[:14])
    assert all(p.prompt_voice is None for p in vocoder)
    recon = plan_items("reconstruction", 25)
    assert all(p.prompt_voice == p.source_voice and p.prompt_text != p.source_text for p in recon)
    voices = ["flite:awb", "flite:slt", "piper:joe"]
    conversion = plan_items("conversion", 9, voices)
    assert all(p.prompt_voice != p.source_voice for p in conversion)
    pairs = {(p.source_voice, p.prompt_voice) for p in conversion}
    assert len(pairs) == 6  # every ordered pair of the three voices
    assert plan_items("vocoder", 2) == plan_items("vocoder", 2)
    for same_person in (["flite:awb", "flite:awb@16k"], ["flite:slt", "festival:cmu_us_slt_arctic_hts"]):
        with pytest.raises(ValueError, match="two different speakers"):
            plan_items("conversion", 2, same_person)
    twins = plan_items("conversion", 40, ["flite:slt", "festival:cmu_us_slt_arctic_hts", "flite:awb"])
    assert {(p.source_voice, p.prompt_voice) for p in twins} == {
        ("flite:slt", "flite:awb"), ("festival:cmu_us_slt_arctic_hts", "flite:awb"),
        ("flite:awb", "flite:slt"), ("flite:awb", "festival:cmu_us_slt_arctic_hts")}
    with pytest.raises(ValueError, match="limit"):
        plan_items("vocoder", 0)


def test_default_voices_are_held_out_and_training_voices_are_refused():
    for spec in set(stages.VOCODER_VOICES) | set(stages.STAGE_VOICES):
        voice_id, band_limited = stages.parse_voice_spec(spec)
        assert band_limited == spec.endswith("@16k") and voice_id in spec
    with pytest.raises(TimbreError, match="training voice"):
        stages.parse_voice_spec("flite:rms")
    with pytest.raises(TimbreError, match="training voice"):
        stages.parse_voice_spec("pk0001")


def test_sources_are_grouped_by_the_rate_they_were_made_at():
    bands = {spec: stages.source_band(spec) for spec in ("flite:awb", "pw0108", "festival:cmu_us_slt_arctic_hts",
                                                          "piper:joe", "kokoro:jm_kumo", "pk0150", "piper:joe@16k")}
    assert bands == {"flite:awb": "16k", "pw0108": "16k", "festival:cmu_us_slt_arctic_hts": "24k", "piper:joe": "24k",
                     "kokoro:jm_kumo": "24k", "pk0150": "24k", "piper:joe@16k": "16k"}
    # The default lists alternate, so that --limit 2 already measures both groups.
    for voices in (stages.VOCODER_VOICES, stages.STAGE_VOICES):
        assert [stages.source_band(v) for v in voices[:4]] == ["24k", "16k", "24k", "16k"]
    assert sum(stages.source_band(v) == "16k" for v in stages.VOCODER_VOICES[:12]) == 6


def test_band_limiting_removes_everything_above_8k():
    rng = np.random.default_rng(0)
    noise = Audio(rng.standard_normal(24_000).astype(np.float32) * 0.1)
    assert stages.high_band_fraction(noise) > 0.2
    limited = stages.band_limit(noise)
    assert len(limited) == len(noise) and limited.sample_rate == 24_000
    assert stages.high_band_fraction(limited) < 1e-6  # 0.25 for the white noise itself


def test_items_in_a_voice_the_engine_speaks_with_are_left_out():
    def clip(voice: str) -> stages.HeldoutClip:
        return stages.HeldoutClip(voice, "Some words.", Audio(np.zeros(240, dtype=np.float32)), stages.FULL_BAND, 0.0)

    items = [stages.StageItem("a", clip("flite:awb"), clip("piper:joe")),
             stages.StageItem("b", clip("piper:joe@16k"), clip("flite:awb")),
             stages.StageItem("c", clip("pw0009"), clip("kokoro:jm_kumo"))]
    kept, left = stages._left_out(items, ("piper:joe",), "prompt")
    assert [i.item_id for i in kept] == ["b", "c"] and [(e["item_id"], e["voice"]) for e in left] == [("a", "piper:joe")]
    assert "piper:joe" in left[0]["why"]
    kept, left = stages._left_out(items, ("piper:joe", "flite:rms"), "source")  # pw0009 is a warp of flite:rms
    assert [i.item_id for i in kept] == ["a"] and [e["voice"] for e in left] == ["piper:joe", "pw0009"]
    assert stages._left_out(items, (), "source") == (items, [])


# ---------------------------------------------------------------------------------------------------------
# End to end on tiny random models


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    from tts.refiner.model import FlowRefiner, FlowRefinerConfig
    from tts.tokenizer.model import SpeechTokenizer, SpeechTokenizerConfig
    from vocoder.vocos import Vocos, VocosConfig

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tokenizer = SpeechTokenizer(SpeechTokenizerConfig(dim=32, num_layers=1, heads=2, dim_head=16, front_end_blocks=1,
                                                      head_layers=1)).eval()
    refiner = FlowRefiner(FlowRefinerConfig(
        codebook_size=tokenizer.config.codebook_size, dim=32, depth=2, heads=2, dim_head=16, token_dim=16,
        speaker_dim=16, speaker_encoder_dim=16, speaker_encoder_layers=1, num_styles=4, style_dim=8,
        time_freq_dim=32, chunk_size=6, lookahead=3)).eval()
    with torch.no_grad():  # its initialization zeroes the output layers; random weights give varied output
        for parameter in refiner.parameters():
            parameter.normal_(0.0, 0.05)
    vocoder = Vocos(VocosConfig(dim=32, intermediate_dim=64, num_layers=2)).eval()
    from converter.openvoice import ToneColorConverter
    from converter.train import PRESETS as CONVERTER_PRESETS

    converter = ToneColorConverter(CONVERTER_PRESETS["tiny"].model).eval()
    return {name: str(model.save_pretrained(root / name))
            for name, model in (("tokenizer", tokenizer), ("refiner", refiner), ("vocoder", vocoder),
                                ("converter", converter))}


@pytest.fixture(scope="module")
def clip_cache(tmp_path_factory):
    """Held-out clips rendered once for the module, in a private cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIMBRE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _run(stage: str, model_dirs: dict, out, *extra: str) -> dict:
    parts = {"vocoder": ["vocoder"], "tone-color": ["converter", "vocoder"]}.get(stage, ["tokenizer", "refiner", "vocoder"])
    argv = ["eval-stage", stage, "--limit", "2", "--out", str(out), *extra]
    for part in parts:
        argv += [f"--{part}", model_dirs[part]]
    code = main(argv)
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["verdict"] == "PASS" else 1)
    markdown = (out / "report.md").read_text()
    assert report["command"].startswith(f"timbre eval-stage {stage} ") and report["command"] in markdown
    assert "--limit 2" in report["command"] and model_dirs["vocoder"] in report["command"]
    assert len(report["items"]) == 2 and not any(item["failure"] for item in report["items"])
    assert report["models"]["vocoder"] == model_dirs["vocoder"]
    for criterion in report["criteria"]:
        assert f"| {criterion['name']} |" in markdown and criterion["status"] in ("PASS", "FAIL", "N/A")
        assert criterion["status"] == Criterion(*(criterion[k] for k in ("group", "name", "value", "comparison",
                                                                           "threshold"))).status
    assert f"**Verdict: {report['verdict']}**" in markdown
    return report


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.slow
@needs_voices
def test_vocoder_stage_end_to_end(model_dirs, clip_cache, tmp_path, capsys):
    report = _run("vocoder", model_dirs, tmp_path / "run", "--voices", f"{FULL_BAND_VOICE},{NARROW_BAND_VOICE}")
    assert "## Criteria" in capsys.readouterr().out
    assert [item["group"] for item in report["items"]] == ["24k", "16k"]
    assert [c["group"] for c in report["criteria"]] == ["24k"] * 5 + ["16k"] * 5
    assert set(report["groups"]) == {"all", "24k", "16k"}
    for item in report["items"]:
        metrics = item["metrics"]
        # The originals are real speech, so their numbers must exist; a random vocoder's may fail, and say why.
        assert _finite(metrics[WER]["original"]) and item["transcripts"]["original"], item
        assert _finite(metrics["dnsmos_ovrl"]["original"])
        for metric, subjects in {"pesq_wb": ("griffin_lim", "vocoder"), "stoi": ("griffin_lim", "vocoder"),
                                 "dnsmos_ovrl": ("griffin_lim", "vocoder"), WER: ("vocoder",),
                                 f"{SIM}_to_original": ("griffin_lim", "vocoder")}.items():
            for subject in subjects:
                value = metrics[metric][subject]
                assert _finite(value) or any(e.startswith(f"{metric} ({subject})") for e in item["errors"]), (metric, subject)
        # Griffin-Lim from the clip's own mel keeps the voice: a check that SIM is computed on the right pair.
        assert metrics[f"{SIM}_to_original"]["griffin_lim"] > 0.8
    means = report["groups"]["24k"]["means"]
    pesq = next(c for c in report["criteria"] if c["group"] == "24k" and c["name"].startswith("PESQ"))
    assert pesq["value"] == means["pesq_wb"]["vocoder"]
    assert sorted(p.name for p in (tmp_path / "run" / "wavs").iterdir())[:3] == [
        "vocoder-000-griffin_lim.wav", "vocoder-000-original.wav", "vocoder-000-vocoder.wav"]


@pytest.mark.slow
@needs_voices
def test_reconstruction_stage_end_to_end(model_dirs, clip_cache, tmp_path):
    report = _run("reconstruction", model_dirs, tmp_path / "run", "--voices", f"{NARROW_BAND_VOICE},{FULL_BAND_VOICE}",
                  "--steps", "2", "--no-wavs")
    assert report["settings"]["refiner_steps"] == 2 and report["settings"]["seed"] == 0
    assert [c["name"] for c in report["criteria"]] == ["WER, reconstruction minus original", "SIM(reconstruction, prompt)"]
    for item in report["items"]:
        assert item["prompt_voice"] == item["voice"] and item["prompt_text"] != item["text"]
        assert _finite(item["metrics"][WER]["original"]) and _finite(item["metrics"][WER]["output"])
        # Two utterances of one held-out voice: the same-voice ceiling of SIM.
        assert item["metrics"][f"{SIM}_to_prompt"]["original"] > 0.75
    assert not (tmp_path / "run" / "wavs").exists()


@pytest.mark.slow
@needs_voices
def test_conversion_stage_end_to_end(model_dirs, clip_cache, tmp_path):
    report = _run("conversion", model_dirs, tmp_path / "run", "--voices", f"{NARROW_BAND_VOICE},{FULL_BAND_VOICE}",
                  "--steps", "2", "--no-wavs")
    assert [(i["voice"], i["prompt_voice"]) for i in report["items"]] == [(NARROW_BAND_VOICE, FULL_BAND_VOICE),
                                                                          (FULL_BAND_VOICE, NARROW_BAND_VOICE)]
    for item in report["items"]:
        metrics = item["metrics"]
        assert _finite(metrics[WER]["source"]) and _finite(metrics[WER]["output"])
        assert "output" in metrics["f0_correlation"]
        prompt, source = metrics[f"{SIM}_to_prompt"]["output"], metrics[f"{SIM}_to_source"]["output"]
        if prompt is not None and source is not None:
            assert metrics[f"{SIM}_gap"]["output"] == pytest.approx(prompt - source)
    gap = next(c for c in report["criteria"] if "minus SIM" in c["name"])
    assert gap["value"] == report["groups"]["all"]["means"][f"{SIM}_gap"]["output"]


@pytest.mark.slow
@needs_voices
def test_tone_color_stage_end_to_end(model_dirs, clip_cache, tmp_path):
    report = _run("tone-color", model_dirs, tmp_path / "run", "--voices", f"{NARROW_BAND_VOICE},{FULL_BAND_VOICE}",
                  "--tau", "0", "--no-wavs")
    assert report["settings"]["tau"] == 0 and "refiner_steps" not in report["settings"]
    assert report["models"]["converter"] == model_dirs["converter"]
    assert [c["name"] for c in report["criteria"]] == ["SIM(output, target voice B)", "SIM(output, B) minus SIM(source, B)",
                                                       "WER, output minus source", "F0-contour correlation with the source"]
    assert [(i["voice"], i["prompt_voice"]) for i in report["items"]] == [(NARROW_BAND_VOICE, FULL_BAND_VOICE),
                                                                          (FULL_BAND_VOICE, NARROW_BAND_VOICE)]
    for item in report["items"]:
        metrics = item["metrics"]
        output, start = metrics[f"{SIM}_to_prompt"]["output"], metrics[f"{SIM}_to_prompt"]["source"]
        assert _finite(start) and _finite(metrics[WER]["source"])
        if output is not None:
            assert metrics[f"{SIM}_gain"]["output"] == pytest.approx(output - start)


@pytest.mark.slow
@needs_voices
def test_edit_stage_end_to_end(model_dirs, clip_cache, tmp_path):
    from tts.dit.model import DiT
    from tts.dit.train import PRESETS as DIT_PRESETS

    torch.manual_seed(0)
    dit = DiT(DIT_PRESETS["tiny"].model)
    dit.duration_predictor.out.bias.data.fill_(float(np.log1p(6.0)))  # untrained: about 6 frames per unit
    out = tmp_path / "run"
    code = main(["eval-stage", "edit", "--limit", "1", "--out", str(out), "--voices", FULL_BAND_VOICE, "--steps", "2",
                 "--dit", str(dit.save_pretrained(tmp_path / "dit")), "--tokenizer", model_dirs["tokenizer"],
                 "--vocoder", model_dirs["vocoder"]])
    report = json.loads((out / "report.json").read_text())
    assert code == 1 and report["verdict"] in ("FAIL", "INCOMPLETE")  # an untrained DiT says nothing intelligible
    item, = report["items"]
    # An untrained DiT's output may have no speech for the speaker encoder; every edit itself must have run.
    assert not item["failure"] and not [e for e in item["errors"] if not e.startswith("sim_")], item["errors"]
    metrics = item["metrics"]
    # the mechanics hold whatever the model says
    assert metrics["kept_exact"] == {"edit1": 1.0, "edit3": 1.0, "nonsense1": 1.0, "nonsense3": 1.0}
    assert _finite(metrics[WER]["original"]) and _finite(metrics[WER]["edit1"])
    assert metrics["duration_ratio"]["speed0.7"] > metrics["duration_ratio"]["speed1.3"]
    assert item["transcripts"]["edit1 text"] == "Turn right at the bakery." != item["transcripts"]["nonsense1 text"]
    assert sorted(p.name.split("-", 2)[-1] for p in (out / "wavs").iterdir()) == sorted(
        f"{s}.wav" for s in ("original", "edit1", "edit3", "nonsense1", "nonsense3", "speed0.7", "speed1.3"))


@pytest.mark.slow
@needs_voices
def test_dit_conversion_stage_end_to_end(model_dirs, clip_cache, tmp_path, scripted_asr):
    """The same pairs as the conversion stage through `DitEngine.convert` (a tiny untrained DiT: the mechanics),
    each source's transcript from the ASR as a user's would be."""
    from tts.dit.model import DiT
    from tts.dit.train import PRESETS as DIT_PRESETS

    torch.manual_seed(0)
    dit = DiT(DIT_PRESETS["tiny"].model)
    dit.duration_predictor.out.bias.data.fill_(float(np.log1p(6.0)))
    out = tmp_path / "run"
    heard = scripted_asr(["the words it heard"])
    code = main(["eval-stage", "dit-conversion", "--limit", "2", "--out", str(out), "--steps", "2", "--voices",
                 f"{NARROW_BAND_VOICE},{FULL_BAND_VOICE}", "--dit", str(dit.save_pretrained(tmp_path / "dit")),
                 "--tokenizer", model_dirs["tokenizer"], "--vocoder", model_dirs["vocoder"]])
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["verdict"] == "PASS" else 1) and report["settings"]["steps"] == 2
    assert [c["name"] for c in report["criteria"]] == [
        "SIM(output, target voice B)", "SIM(output, B) minus SIM(output, source voice A)", "WER, output minus source",
        "F0-contour correlation with the source"]
    assert [(i["item_id"], i["voice"], i["prompt_voice"]) for i in report["items"]] == [
        ("conversion-000", NARROW_BAND_VOICE, FULL_BAND_VOICE), ("conversion-001", FULL_BAND_VOICE, NARROW_BAND_VOICE)]
    assert not any(item["failure"] for item in report["items"]) and heard  # transcripts from the (scripted) ASR
    assert report["left_out"] == []  # neither voice is the guide voice
    for item in report["items"]:
        source, output = (load_audio(out / "wavs" / f"{item['item_id']}-{name}.wav") for name in ("source", "output"))
        assert abs(output.duration - source.duration) < 0.05  # the source's timing


@pytest.mark.slow
@needs_voices
def test_distillation_stage_measures_both_refiners_on_the_same_pairs(model_dirs, clip_cache, tmp_path):
    from tts.refiner.model import FlowRefiner

    torch.manual_seed(1)
    after = FlowRefiner.from_pretrained(model_dirs["refiner"])
    with torch.no_grad():
        for parameter in after.parameters():
            parameter.normal_(0.0, 0.05)
    after_dir = str(after.save_pretrained(tmp_path / "after"))
    dirs = {**model_dirs, "refiner": after_dir}
    report = _run("distillation", dirs, tmp_path / "run", "--voices", f"{NARROW_BAND_VOICE},{FULL_BAND_VOICE}",
                  "--before", model_dirs["refiner"], "--steps", "2")
    assert report["models"] == {"vocoder": model_dirs["vocoder"], "tokenizer": model_dirs["tokenizer"],
                                "refiner": after_dir, "before": model_dirs["refiner"]}
    assert f"--before {model_dirs['refiner']}" in report["command"]
    assert [c["name"] for c in report["criteria"]] == [
        "SIM(after, target B) minus SIM(before, B)", "SIM(after, source A) minus SIM(before, A)",
        "WER, after minus before", "F0-contour correlation of the output (after) with the source"]
    for item in report["items"]:
        assert set(item["metrics"][WER]) == {"source", "before", "after"}
        assert set(item["metrics"]["f0_correlation"]) == {"before", "after"}
    wavs = sorted(p.name.split("-", 2)[-1] for p in (tmp_path / "run" / "wavs").iterdir())
    assert wavs == sorted(f"{s}.wav" for s in ("source", "prompt", "before", "after") for _ in range(2))
    means = report["groups"]["all"]["means"]
    wer_change = next(c for c in report["criteria"] if c["name"] == "WER, after minus before")
    assert wer_change["value"] == pytest.approx(means[WER]["after"] - means[WER]["before"])


def test_cli_refuses_training_voices_and_parses(capsys):
    assert main(["eval-stage", "vocoder", "--voices", "flite:rms", "--vocoder", "/nonexistent"]) == 2
    assert "training voice" in capsys.readouterr().err
    args = build_parser().parse_args(["eval-stage", "conversion", "--limit", "3", "--cfg-strength", "1.5"])
    assert (args.stage, args.limit, args.cfg_strength, args.tokenizer, args.refiner, args.vocoder) == (
        "conversion", 3, 1.5, "speech_tokenizer", "flow_refiner", "vocoder")
    assert main(["eval-stage"]) == 2
    assert main(["eval-stage", "edit", "--limit", "1", "--edit-words", "plausible,silly", "--dit", "/nonexistent"]) == 2
    assert "--edit-words: silly; choose from plausible, nonsense" in capsys.readouterr().err


def test_ar_engine_is_registered_for_the_harness(monkeypatch):
    from tts import synthesis, voice
    from tts.evaluation.adapters import ENGINE_BUILDERS

    assert ENGINE_BUILDERS["ar"] == "tts.evaluation.stages:ar_engine_fn"
    engine, calls = object(), []
    monkeypatch.setattr(synthesis, "load_engine", lambda: engine)
    monkeypatch.setattr(voice, "clone_voice", lambda audio, text: ("voice", audio, text))
    monkeypatch.setattr(synthesis, "synthesize", lambda text, v, **kwargs: calls.append((text, v, kwargs)) or "audio")
    prompt = Audio(np.zeros(2400, dtype=np.float32))
    engine_fn = stages.ar_engine_fn()
    assert engine_fn("Say this.", prompt, "the prompt words") == "audio"
    assert calls == [("Say this.", ("voice", prompt, "the prompt words"),
                      {"emotion": None, "style_ref": None, "seed": 0, "models": engine})]
    engine_fn("Say this.", prompt, "the prompt words", style="happy", style_ref=prompt)  # styled runs pass them on
    assert (calls[-1][2]["emotion"], calls[-1][2]["style_ref"]) == ("happy", prompt)
