"""Tokenizer training recipe (a few steps, resume), metrics, and the `timbre align` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tts.audio import SAMPLE_RATE, Audio
from tts.checkpoints import read_model_card_data
from tts.cli import main as timbre
from tts.data.corpus import METADATA_NAME, CorpusItem
from tts.tokenizer.metrics import (
    codebook_usage,
    greedy_ctc_decode,
    heldout_phoneme_error_rates,
    heldout_summary,
    phoneme_error_rate,
    probe_accuracy,
)
from tts.tokenizer.model import SpeechTokenizer
from tts.tokenizer.train import PRESETS, TrainOptions, train

pytestmark = pytest.mark.usefixtures("single_thread")

TEXTS = ["Hello there.", "A quick test.", "Good morning, Sam.", "Red and blue."]


def write_corpus(folder) -> None:
    """Four short generated clips (two 'voices': harmonic tones at two pitches) with texts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for index, text in enumerate(TEXTS):
        seconds = 0.8 + 0.2 * index
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        pitch = 120.0 if index % 2 else 210.0
        samples = 0.3 * np.sin(2 * np.pi * pitch * t) * np.sin(np.pi * t / seconds) + 0.01 * rng.standard_normal(len(t))
        name = f"clip{index}.wav"
        Audio(samples.astype(np.float32)).save(folder / name)
        voice = "flite:slt" if index % 2 else "flite:rms"
        lines.append(CorpusItem(name, text, voice, duration=seconds, engine="test").to_json())
    (folder / METADATA_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer") / "corpus"
    write_corpus(folder)
    return folder


@pytest.mark.slow
def test_three_steps_then_resume(corpus, tmp_path, monkeypatch):
    import tts.tokenizer.train as recipe

    one_voice = lambda model, clips_per_voice: heldout_phoneme_error_rates(model, ["flite:awb"], clips_per_voice)  # noqa: E731
    monkeypatch.setattr(recipe, "heldout_phoneme_error_rates", one_voice)  # the real measurement, on one voice
    out = tmp_path / "run"
    options = TrainOptions(corpus=corpus, out=out, config="tiny", max_steps=3, batch_frames=400, log_every=1,
                           validation_items=1, probe_items=4, heldout_clips=1)
    first = train(options)
    assert first["steps"] == 3 and first["start_step"] == 0
    assert np.isfinite(first["losses"]["ctc"]) and {"speaker_ce", "alignment_ctc", "fsq_range"} <= set(first["losses"])
    assert (out / "state").is_dir() and not (out / "state.tmp").exists()
    exported = SpeechTokenizer.from_pretrained(out / "export")
    assert exported.config == PRESETS["tiny"].model
    card = read_model_card_data(out / "export")
    assert card["Training"]["steps"] == 3
    assert "phoneme_error_rate" in card["Held-out metrics"]
    unseen = card["Held-out metrics"]
    assert list(json.loads(unseen["heldout_per_by_voice"])) == ["flite:awb"]
    assert unseen["heldout_voices_per"] == unseen["heldout_synthesizers_per"] > 0.5  # three steps: no phonemes yet
    assert json.loads(card["Data recipe"]["voices"]) == ["flite:rms", "flite:slt"]

    second = train(TrainOptions(**{**options.__dict__, "max_steps": 5}))
    assert second["start_step"] == 3 and second["steps"] == 5
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "event" not in e] == [1, 2, 3, 4, 5]
    assert read_model_card_data(out / "export")["Training"]["steps"] == 5


@pytest.mark.slow
def test_fine_tuning_starts_from_a_trained_tokenizer(corpus, tmp_path):
    from tts.tokenizer.train import initial_tokenizer

    base = tmp_path / "base"
    train(TrainOptions(corpus=corpus, out=base, config="tiny", max_steps=2, batch_frames=400, validation_items=1,
                       probe_items=4, heldout_clips=0))
    start = initial_tokenizer(str(base / "export"), PRESETS["tiny"].model)
    trained = SpeechTokenizer.from_pretrained(base / "export").float()
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), trained.state_dict().values()))
    assert not torch.equal(next(iter(initial_tokenizer(None, PRESETS["tiny"].model).state_dict().values())),
                           next(iter(trained.state_dict().values())))
    with pytest.raises(ValueError, match="model config differs"):
        initial_tokenizer(str(base / "export"), PRESETS["mini"].model)
    tuned = train(TrainOptions(corpus=corpus, out=tmp_path / "tuned", config="tiny", max_steps=1, batch_frames=400,
                               validation_items=1, probe_items=4, heldout_clips=0, init_from=str(base / "export"),
                               learning_rate=1e-4, warmup_steps=1))
    assert tuned["steps"] == 1
    card = read_model_card_data(tmp_path / "tuned" / "export")
    assert card["Data recipe"]["initialized from"] == str(base / "export")
    assert json.loads(card["Training config"])["learning_rate"] == 1e-4


def test_a_run_with_another_config_is_refused(corpus, tmp_path):
    state = tmp_path / "run" / "state"
    state.mkdir(parents=True)
    (state / "run.json").write_text(json.dumps({"preset": "mini", "model": {}}))
    with pytest.raises(ValueError, match="another model config"):
        train(TrainOptions(corpus=corpus, out=tmp_path / "run", config="tiny", max_steps=1))


def test_greedy_decoding_and_phoneme_error_rate():
    logits = torch.full((8, 5), -5.0)
    for t, label in enumerate([0, 2, 2, 0, 2, 3, 3, 0]):
        logits[t, label] = 5.0
    assert greedy_ctc_decode(logits) == [2, 2, 3]
    assert greedy_ctc_decode(logits, length=3) == [2]
    assert phoneme_error_rate([[2, 2, 3]], [[2, 2, 3]]) == 0.0
    assert phoneme_error_rate([[1, 2, 3, 4], [5]], [[1, 3, 4], [6]]) == pytest.approx(2 / 5)


def test_heldout_summary_groups_synthesizers_and_pseudo_speakers():
    summary = heldout_summary({"flite:awb": 0.4, "piper:joe": 0.6, "pk0150": 0.2})
    assert summary == pytest.approx({"heldout_voices_per": 0.4, "heldout_synthesizers_per": 0.5,
                                     "heldout_pseudo_speakers_per": 0.2})
    assert set(heldout_summary({"pw0009": 0.3})) == {"heldout_voices_per", "heldout_pseudo_speakers_per"}


def test_heldout_measurement_refuses_training_voices():
    from tts.errors import TimbreError

    with pytest.raises(TimbreError, match="training voice"):
        heldout_phoneme_error_rates(SpeechTokenizer(PRESETS["tiny"].model), ["flite:rms"], 1)


def test_heldout_command_prints_every_voice(capsys):
    from tts.tokenizer.metrics import main

    assert main(["--voices", "flite:awb", "--clips", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed["per_by_voice"]) == ["flite:awb"]
    assert 0 <= printed["heldout_voices_per"] < 0.8  # the shipped tokenizer reads an unseen voice's phonemes


def test_codebook_usage():
    usage = codebook_usage([torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3])], codebook_size=8)
    assert usage["perplexity"] == pytest.approx(4.0)
    assert usage["used_fraction"] == 0.5 and usage["used_codes"] == 4


def test_speaker_probe_separates_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    separable = rng.standard_normal((40, 6)) + 4 * np.eye(4, 6)[labels]
    assert probe_accuracy(separable, labels)["accuracy"] == 1.0
    noise = probe_accuracy(rng.standard_normal((40, 6)), labels)
    assert noise["accuracy"] < 0.6 and noise["chance"] == 0.25


def test_align_command(tmp_path, shipped_root, capsys):
    assert timbre(["align", str(tmp_path / "x.wav"), "hello"]) == 2
    assert "not trained yet" in capsys.readouterr().err
    torch.manual_seed(0)
    SpeechTokenizer(PRESETS["tiny"].model).save_pretrained(tmp_path / "tok")
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    Audio((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)).save(tmp_path / "in.wav")
    assert timbre(["align", str(tmp_path / "in.wav"), "Hello world", "--checkpoint", str(tmp_path / "tok")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[-1] for line in lines] == ["Hello", "world"]
    assert timbre(["align", str(tmp_path / "in.wav"), "Hello world", "--checkpoint", str(tmp_path / "tok"), "--json"]) == 0
    words = json.loads(capsys.readouterr().out)
    assert [w["word"] for w in words] == ["Hello", "world"] and len(words[1]["phonemes"]) >= 3


def test_fsq_range_loss_and_gradient_reversal():
    from tts.tokenizer.train import GradientReversal, fsq_range_loss

    values = torch.tensor([[[0.5, -3.0], [2.5, 1.0], [9.0, 9.0]]])  # the third token is padding
    assert fsq_range_loss(values, torch.tensor([2])).item() == pytest.approx((1.0 + 0.25) / 4)
    x = torch.ones(3, requires_grad=True)
    GradientReversal.apply(x, 0.5).sum().backward()
    assert x.grad.tolist() == [-0.5, -0.5, -0.5]
