"""Training within a wall-clock window: every recipe's ``--max-minutes`` (anneal, stop, save, export), and
`tts.train_all`, which trains the stack on a packed corpus (Opus audio, phonemes in the metadata, as carried to a
GPU machine) in one command."""

from __future__ import annotations

import json
import shlex
import time

import pytest
import torch

from tts.checkpoints import read_model_card_data
from tests.conftest import write_tone_corpus
from tts.data.corpus import pack_corpus
from tts.train_all import Plan, main, scaled_batch_sizes

pytestmark = pytest.mark.usefixtures("single_thread")

BUDGET_MINUTES = 0.15
"""Of a recipe run in these tests: loading takes a few seconds of it on a loaded 2-core machine."""

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six items (two 'voices': harmonic tones at two pitches, 1-2 s) with phonemes, packed as Ogg Opus the
    way ``timbre corpus pack`` does."""
    root = tmp_path_factory.mktemp("train_all")
    source = root / "source"
    source.mkdir()
    write_tone_corpus(source)
    packed = root / "packed"
    pack_corpus(source, packed)
    return packed


def _logged(run_folder) -> list[dict]:
    lines = (run_folder / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if "event" not in record]


def _assert_annealed(record: dict, preset) -> None:
    """The last logged learning rate is near the schedule's floor: it was set before the last step, whose share of
    a few seconds' budget can be large on a loaded machine (test_training checks the schedule exactly)."""
    floor = preset.learning_rate * preset.final_lr_fraction
    assert floor <= record["lr"] <= floor + 0.25 * (preset.learning_rate - floor)


# ---------------------------------------------------------------------------------------------------------
# Each recipe within a time budget


@pytest.mark.slow
def test_vocoder_stops_at_its_deadline_annealed_and_exported(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_DATA_WORKERS", "2")  # batches made ahead by threads, as on a GPU
    from vocoder.train import PRESETS, TrainOptions, train

    out = tmp_path / "vocoder"
    started = time.monotonic()
    summary = train(TrainOptions(
        data=corpus / "audio", out=out, config="tiny", max_steps=10**6, max_minutes=BUDGET_MINUTES, batch_size=2,
        segment_seconds=0.25, log_every=10**6, save_every_minutes=60, validation_files=1,
    ))
    assert time.monotonic() - started < 60
    assert 1 <= summary["step"] < 10**6
    records = _logged(out)
    assert [r["step"] for r in records] == [summary["step"]]  # logged only at the last step
    _assert_annealed(records[-1], PRESETS["tiny"])
    card = read_model_card_data(out / "export")
    assert card["Training"]["steps"] == summary["step"] and card["Training"]["max minutes"] == BUDGET_MINUTES
    assert card["Data"]["files"] == 6  # found the .ogg files


@pytest.mark.slow
def test_tokenizer_stops_at_its_deadline_annealed_and_exported(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_DATA_WORKERS", "2")  # batches made ahead by threads, as on a GPU
    from tts.tokenizer.train import PRESETS, TrainOptions, train

    out = tmp_path / "tokenizer"
    summary = train(TrainOptions(
        corpus=corpus, out=out, config="tiny", max_steps=10**6, max_minutes=BUDGET_MINUTES, batch_frames=400,
        log_every=10**6, save_every_minutes=60, validation_items=1, probe_items=4, heldout_clips=0,
    ))
    assert 1 <= summary["steps"] < 10**6
    records = _logged(out)
    assert [r["step"] for r in records] == [summary["steps"]]
    _assert_annealed(records[-1], PRESETS["tiny"])
    card = read_model_card_data(out / "export")
    assert card["Training"]["steps"] == summary["steps"]
    assert json.loads(card["Data recipe"]["items skipped"]) == {"too long": 0, "no phonemes": 0, "too fast": 0,
                                                                 "unreadable": 0}


@pytest.mark.slow
def test_refiner_stops_at_its_deadline_annealed_and_exported(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_DATA_WORKERS", "2")  # batches made ahead by threads, as on a GPU
    from tts.refiner.train import PRESETS, TrainOptions, train
    from tts.refiner.train import main as refiner_main
    from tts.tokenizer import SpeechTokenizer, SpeechTokenizerConfig

    torch.manual_seed(0)
    tokenizer = SpeechTokenizer(SpeechTokenizerConfig(dim=32, num_layers=1, heads=2, dim_head=16, head_layers=1))
    folder = tokenizer.save_pretrained(tmp_path / "tokenizer")
    features = tmp_path / "features.safetensors"
    assert refiner_main(["extract-tokens", "--corpus", str(corpus), "--tokenizer", str(folder), "--out", str(features)]) == 0
    out = tmp_path / "refiner"
    summary = train(TrainOptions(
        corpus=corpus, out=out, features=features, config="tiny", max_steps=10**6, max_minutes=BUDGET_MINUTES, batch_size=2,
        log_every=10**6, save_every_minutes=60, validation_items=1,
    ))
    assert 1 <= summary["step"] < 10**6
    records = _logged(out)
    assert [r["step"] for r in records] == [summary["step"]]
    _assert_annealed(records[-1], PRESETS["tiny"])
    assert read_model_card_data(out / "export")["Training"]["steps"] == summary["step"]


# ---------------------------------------------------------------------------------------------------------
# The orchestrator


def test_dry_run_plans_budgets_that_add_up(corpus, tmp_path, capsys):
    assert main(["--corpus", str(corpus), "--out", str(tmp_path / "runs"), "--minutes", "24", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    commands = {shlex.split(line)[3] if "extract" in line else shlex.split(line)[2]: shlex.split(line)
                for line in lines if not line.startswith("#")}
    assert [line.split(":")[0] for line in lines if line.startswith("#")] == [
        "# vocoder", "# converter", "# tokenizer", "# features", "# refiner", "# lm_units", "# lm", "# dit_align",
        "# dit"]
    headers = [line for line in lines if line.startswith("#")]
    assert headers[-2].startswith("# dit_align: minute 6, after features, untimed,")
    assert headers[-1].startswith("# dit: minute 6, after dit_align, 17 min,")

    def minutes(argv: list[str]) -> float:
        return float(argv[argv.index("--max-minutes") + 1])

    vocoder, tokenizer = minutes(commands["vocoder.train"]), minutes(commands["tts.tokenizer.train"])
    refiner, lm = minutes(commands["tts.refiner.train"]), minutes(commands["tts.lm.train"])
    assert vocoder == 23 and tokenizer == 6 and refiner == lm == minutes(commands["tts.dit.train"]) == 17
    assert commands["converter.train"][3:] == ["--corpus", str(corpus), "--out", str(tmp_path / "runs" / "converter"),
                                               "--config", "small", "--max-steps", "1000000", "--max-minutes", "23"]
    assert tokenizer + refiner == vocoder  # the later stages get what the tokenizer leaves, less the export time
    runs = tmp_path / "runs"
    assert commands["vocoder.train"][commands["vocoder.train"].index("--data") + 1] == str(corpus / "audio")
    assert commands["extract-tokens"][-4:] == ["--tokenizer", str(runs / "tokenizer/export"),
                                              "--out", str(runs / "features.safetensors")]
    assert commands["extract-units"][3:] == [
        "extract-units", "--corpus", str(corpus), "--tokenizer", str(runs / "tokenizer/export"),
        "--features", str(runs / "features.safetensors"), "--out", str(runs / "lm_units.safetensors")]
    assert commands["tts.lm.train"][3:] == [
        "--corpus", str(corpus), "--features", str(runs / "features.safetensors"),
        "--units", str(runs / "lm_units.safetensors"), "--out", str(runs / "lm"), "--config", "small",
        "--max-steps", "1000000", "--max-minutes", "17"]
    assert commands["extract"][2:] == [
        "tts.dit.train", "extract", "--features", str(runs / "features.safetensors"),
        "--aligner", str(runs / "tokenizer/export")]
    assert commands["tts.dit.train"][3:] == [
        "--features", str(runs / "features.safetensors"), "--out", str(runs / "dit"), "--config", "small",
        "--max-steps", "1000000", "--max-minutes", "17"]  # from scratch unless --dit-init-from is given
    assert not (runs / "train_all.json").exists()


def test_self_distillation_takes_the_end_of_the_refiners_window(corpus, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["--corpus", str(corpus), "--out", str(runs), "--minutes", "24", "--distill-share", "0.25",
                 "--skip", "lm", "--skip", "dit", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [line for line in lines if line.startswith("#")]
    assert [h.split(":")[0] for h in headers] == ["# vocoder", "# converter", "# tokenizer", "# features", "# refiner",
                                                  "# distill_pairs", "# distill"]
    assert headers[-2].startswith("# distill_pairs: minute 17, after refiner, 3 min,")
    assert headers[-1].startswith("# distill: minute 20, after distill_pairs, 3 min,")
    refiner, pairs, distill = (shlex.split(lines[lines.index(h) + 1]) for h in headers[-3:])
    assert refiner[refiner.index("--max-minutes") + 1] == "11"  # 24 - 1 for exports - 6 for the tokenizer - 6
    assert pairs[2:] == ["tts.refiner.distill", "--features", str(runs / "features.safetensors"), "--out",
                         str(runs / "distill_pairs"), "--refiner", str(runs / "refiner/export"), "--tokenizer",
                         str(runs / "tokenizer/export"), "--max-minutes", "3"]
    assert distill[distill.index("--init-from") + 1] == str(runs / "refiner/export")
    assert distill[distill.index("--distill-pairs") + 1] == str(runs / "distill_pairs")
    assert distill[distill.index("--out") + 1] == str(runs / "distill") and distill[-2:] == ["--max-minutes", "3"]
    assert main(["--corpus", str(corpus), "--out", str(runs), "--minutes", "24", "--distill-share", "0.25",
                 "--skip", "refiner", "--dry-run"]) == 2
    assert "refiner stage is skipped" in capsys.readouterr().err


def test_dit_warm_starts_only_when_asked(corpus, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["--corpus", str(corpus), "--out", str(runs), "--minutes", "24", "--dit-init-from", "flow_refiner",
                 "--dit-config", "tiny", "--gpu-batch-scale", "2", "--dry-run"]) == 0
    dit = next(shlex.split(line) for line in capsys.readouterr().out.splitlines()
               if not line.startswith("#") and shlex.split(line)[2:4] == ["tts.dit.train", "--features"])
    assert dit[3:] == [
        "--features", str(runs / "features.safetensors"), "--out", str(runs / "dit"), "--config", "tiny",
        "--init-from", "flow_refiner", "--max-steps", "1000000", "--max-minutes", "17", "--batch-size", "16"]
    assert main(["--corpus", str(corpus), "--out", str(runs), "--minutes", "24", "--dit-init-from", "flow_refiner",
                 "--skip", "dit", "--dry-run"]) == 2
    assert "--dit-init-from" in capsys.readouterr().err


def test_plan_splits_threads_and_scales_batches(corpus, tmp_path):
    plan = Plan(corpus=corpus, out=tmp_path, minutes=24, cores=16)
    assert {s: plan.threads(s) for s in plan.stages()} == {
        "vocoder": 3, "converter": 3, "tokenizer": 10, "features": 10, "refiner": 3, "lm_units": 3, "lm": 3,
        "dit_align": 3, "dit": 3}
    assert plan.needs("dit_align") == ("features",) and plan.needs("dit") == ("dit_align",)
    only_dit = Plan(corpus=corpus, out=tmp_path, minutes=24, cores=16, skip=frozenset({"refiner", "lm"}))
    assert only_dit.stages() == ["vocoder", "converter", "tokenizer", "features", "dit_align", "dit"]
    assert only_dit.threads("vocoder") == 5 and only_dit.threads("dit") == 6
    without_lm = Plan(corpus=corpus, out=tmp_path, minutes=24, cores=16, skip=frozenset({"lm", "dit", "converter"}))
    assert without_lm.stages() == ["vocoder", "tokenizer", "features", "refiner"]
    assert without_lm.threads("vocoder") == 8 and without_lm.threads("refiner") == 8
    assert without_lm.budget("refiner", elapsed_minutes=30) > 0  # a late stage still gets a few seconds
    sizes = scaled_batch_sizes(["vocoder", "tokenizer", "features", "refiner", "dit_align", "dit"], 4)
    assert sizes == {"vocoder": 32, "tokenizer": 48_000, "refiner": 32, "dit": 32}
    scaled = Plan(corpus=corpus, out=tmp_path, minutes=24, batch_sizes=sizes, extra_args={"refiner": ["--batch-size", "7"]})
    argv = scaled.command("refiner", 10)
    assert argv[-4:] == ["--batch-size", "32", "--batch-size", "7"]  # extra arguments come last and win
    assert scaled.command("dit", 10)[-2:] == ["--batch-size", "32"]
    assert "--batch-size" not in scaled.command("dit_align", None)
    with pytest.raises(ValueError, match="skip"):
        Plan(corpus=corpus, out=tmp_path, minutes=24, skip=frozenset({"features"}))


@pytest.mark.slow
def test_trains_the_stack_within_the_window(corpus, tmp_path):
    """Tiny presets, half a minute: every stage runs as a subprocess and exports; a failing stage stops only
    the stages that need it."""
    runs = tmp_path / "runs"
    started = time.monotonic()
    code = main([
        "--corpus", str(corpus), "--out", str(runs), "--minutes", "0.5", "--export-minutes", "0.05", "--skip", "lm",
        "--vocoder-config", "tiny", "--tokenizer-config", "tiny", "--refiner-config", "tiny",
        "--vocoder-args", "--segment-seconds 0.25 --batch-size 2 --validation-files 1 --log-every 5",
        "--tokenizer-args", "--batch-frames 400 --validation-items 1 --log-every 5 --heldout-clips 0",
        "--refiner-args", "--batch-size 2 --validation-items 1 --log-every 5",
        "--dit-config", "tiny", "--dit-args", "--batch-size 2 --validation-items 1 --log-every 5",
        "--converter-config", "tiny", "--converter-args", "--batch-size 2 --validation-items 0 --log-every 5",
    ])
    elapsed = time.monotonic() - started
    report = json.loads((runs / "train_all.json").read_text())
    assert code == 0, {name: info.get("status") for name, info in report["stages"].items()}
    assert list(report["stages"]) == ["vocoder", "converter", "tokenizer", "features", "refiner", "dit_align", "dit"]
    assert all(info["status"] == "ok" and info["exit_code"] == 0 for info in report["stages"].values())
    for name in ("vocoder", "converter", "tokenizer", "refiner", "dit"):
        assert (runs / name / "export" / "model.safetensors").is_file()
        assert report["stages"][name]["last_metrics"]["step"] >= 1
        assert (runs / f"{name}.log").is_file()
    assert (runs / "features.safetensors").is_file() and (runs / "alignments.safetensors").is_file()
    assert report["stages"]["vocoder"]["max_minutes"] == 0.45
    assert report["stages"]["features"]["start_minute"] >= report["stages"]["tokenizer"]["end_minute"]
    assert report["stages"]["dit"]["start_minute"] >= report["stages"]["dit_align"]["end_minute"]
    assert read_model_card_data(runs / "dit" / "export")["Model"]["preset"] == "tiny"
    assert elapsed < 0.5 * 60 + 60  # the window, plus loading and exports on a loaded 2-core machine

    # A failing stage takes down only the stages that need it.
    code = main([
        "--corpus", str(corpus), "--out", str(tmp_path / "broken"), "--minutes", "0.2", "--export-minutes", "0.05",
        "--skip", "lm", "--skip", "converter", "--vocoder-config", "tiny",
        "--vocoder-args", "--segment-seconds 0.25 --batch-size 2",
        "--tokenizer-args=--no-such-option",
    ])
    report = json.loads((tmp_path / "broken" / "train_all.json").read_text())
    assert code == 1 and not report["ok"]
    assert {name: info["status"] for name, info in report["stages"].items()} == {
        "vocoder": "ok", "tokenizer": "failed", "features": "skipped", "refiner": "skipped", "dit_align": "skipped",
        "dit": "skipped"}
    assert (tmp_path / "broken" / "vocoder" / "export" / "model.safetensors").is_file()
    assert "no-such-option" in (tmp_path / "broken" / "tokenizer.log").read_text()
