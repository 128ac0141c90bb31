"""Training the tone-color converter: monotonic alignment, the content prior's likelihoods, the mel decoder, and
a tiny resumable run on a synthetic two-voice corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from converter.align import align_batch, gaussian_log_likelihood, monotonic_alignment
from converter.openvoice import ConverterConfig, ToneColorConverter
from converter.spectrogram import SpectrogramConfig
from converter.train import PRESETS, BatchMaker, ConverterTrainer, TrainOptions, load_utterances, main, train
from tts.audio import SAMPLE_RATE, STUDIO_MEL, Audio
from tests.conftest import write_tone_corpus

pytestmark = pytest.mark.usefixtures("single_thread")

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six items: two 'voices' (harmonic tones at 110 and 210 Hz), three texts each, 1-1.8 s."""
    return write_tone_corpus(tmp_path_factory.mktemp("converter_corpus"), (("test:low", 110.0), ("test:high", 210.0)))


# ---------------------------------------------------------------------------------------------------------
# Alignment


def test_monotonic_alignment_finds_the_planted_path():
    rng = np.random.default_rng(0)
    durations = [3, 1, 4, 2]
    units, frames = len(durations), sum(durations)
    scores = rng.normal(-5.0, 0.5, (units, frames))
    owner = np.repeat(np.arange(units), durations)
    scores[owner, np.arange(frames)] += 4.0
    path = monotonic_alignment(scores)
    assert path.shape == (units, frames)
    np.testing.assert_array_equal(path.argmax(axis=0), owner)
    assert (path.sum(axis=0) == 1).all()  # every frame has exactly one unit
    assert (path.sum(axis=1) >= 1).all()  # every unit has a frame
    assert (np.diff(path.argmax(axis=0)) >= 0).all() and (np.diff(path.argmax(axis=0)) <= 1).all()


def test_monotonic_alignment_is_the_best_path_by_brute_force():
    rng = np.random.default_rng(1)
    units, frames = 3, 6
    scores = rng.normal(size=(units, frames))
    best = -math.inf
    for a in range(1, frames):  # unit 0 covers [0, a), unit 1 [a, b), unit 2 [b, frames)
        for b in range(a + 1, frames):
            total = scores[0, :a].sum() + scores[1, a:b].sum() + scores[2, b:].sum()
            best = max(best, total)
    assert (monotonic_alignment(scores) * scores).sum() == pytest.approx(best)


def test_monotonic_alignment_refuses_more_units_than_frames():
    with pytest.raises(ValueError, match="units <= frames"):
        monotonic_alignment(np.zeros((5, 4)))


def test_gaussian_log_likelihood_matches_torch_distributions():
    torch.manual_seed(0)
    z, m, logs = torch.randn(2, 3, 7), torch.randn(2, 3, 4), 0.3 * torch.randn(2, 3, 4)
    expected = torch.distributions.Normal(m[:, :, :, None], logs.exp()[:, :, :, None]).log_prob(z[:, :, None, :]).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(z, m, logs), expected, rtol=1e-4, atol=1e-4)


def test_align_batch_respects_each_items_lengths():
    torch.manual_seed(0)
    z, m, logs = torch.randn(2, 4, 9), torch.randn(2, 4, 5), torch.zeros(2, 4, 5)
    path = align_batch(z, m, logs, torch.tensor([5, 2]), torch.tensor([9, 4]))
    assert path.shape == (2, 5, 9)
    assert path[0].sum() == 9 and path[1].sum() == 4
    assert path[1, 2:].sum() == 0 and path[1, :, 4:].sum() == 0


# ---------------------------------------------------------------------------------------------------------
# The mel decoder


def test_mel_decoder_converts_to_the_studio_mel_and_needs_a_vocoder():
    torch.manual_seed(0)
    model = ToneColorConverter(PRESETS["tiny"].model).eval()
    audio = Audio((0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE)).astype(np.float32))
    tone = torch.zeros(model.config.gin_channels)
    spec = model.spectrogram(torch.from_numpy(audio.samples)[None])
    with torch.no_grad():
        mel = model.convert(spec, torch.tensor([spec.shape[-1]]), tone[None, :, None], tone[None, :, None])
    assert mel.shape == (1, STUDIO_MEL.n_mels, SAMPLE_RATE // STUDIO_MEL.hop_length)
    with pytest.raises(ValueError, match="vocoder"):
        model.convert_audio(audio, tone, tone)
    seen = []

    def vocoder(frames: torch.Tensor) -> Audio:
        seen.append(frames.shape)
        return Audio(np.zeros((frames.shape[1] - 1) * STUDIO_MEL.hop_length, dtype=np.float32))

    out = model.convert_audio(audio, tone, tone, vocoder=vocoder)
    assert seen == [(STUDIO_MEL.n_mels, STUDIO_MEL.num_frames(SAMPLE_RATE))]  # the frames the studio mel would have
    assert out.sample_rate == SAMPLE_RATE and len(out) == len(audio)


def test_mel_decoder_needs_the_studio_frame_rate():
    with pytest.raises(ValueError, match="studio's mel frames"):
        ConverterConfig(spectrogram=SpectrogramConfig(), decoder="mel")  # 22.05 kHz
    with pytest.raises(ValueError, match="decoder"):
        ConverterConfig(decoder="wavenet")


# ---------------------------------------------------------------------------------------------------------
# Data and the run


def test_batches_pair_each_item_with_another_clip_of_its_voice(corpus):
    utterances = load_utterances(corpus, max_seconds=9.0)
    assert len(utterances) == 6
    maker = BatchMaker(utterances, list(range(6)), PRESETS["tiny"], np.random.default_rng(0))
    batch = maker.collate([0, 4])
    k = PRESETS["tiny"].model.spectrogram.n_freqs
    assert batch.spec.shape == (2, k, utterances[4].frames)
    assert batch.mel.shape == (2, STUDIO_MEL.n_mels, utterances[4].frames)
    assert batch.frame_lengths.tolist() == [utterances[0].frames, utterances[4].frames]
    assert batch.phoneme_lengths.tolist() == [len(utterances[0].phoneme_ids), len(utterances[4].phoneme_ids)]
    assert (batch.spec[0, :, utterances[0].frames :] == 0).all()
    low, high = PRESETS["tiny"].reference_frames
    assert batch.reference.shape[0] == 2 and batch.reference.shape[1] == k and low <= batch.reference.shape[2] <= high
    # The reference is not a crop of the item itself: its pitch is its voice's, and it comes from another item.
    maker.rng = np.random.default_rng(0)
    sources = [utterances[i] for i in maker.by_voice[utterances[0].voice_id] if i != 0]
    assert all(s.voice_id == utterances[0].voice_id for s in sources) and sources


def test_load_utterances_leaves_out_long_items(corpus):
    assert len(load_utterances(corpus, max_seconds=1.5)) == 4


def test_tiny_run_learns_resumes_and_exports(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_THREADS", "1")  # the recipe would take every core; spinning threads crawl when shared
    out = tmp_path / "run"
    options = TrainOptions(corpus=corpus, out=out, config="tiny", max_steps=40, batch_size=2, log_every=10,
                           save_every_steps=20, validation_items=0)
    summary = train(options)
    assert summary["step"] == 40
    history = summary["history"]
    assert history[-1]["mel_l1"] < 0.7 * history[0]["mel_l1"]
    assert all(math.isfinite(record["kl"]) for record in history)
    model = ToneColorConverter.from_pretrained(out / "export")
    assert model.config == PRESETS["tiny"].model
    assert not any(name.startswith("prior") for name in model.state_dict())  # the prior is training-only
    card = (out / "export" / "MODEL_CARD.md").read_text()
    assert "KL" in card and "Training" in card
    # Resuming continues from the saved step.
    assert main(["--corpus", str(corpus), "--out", str(out), "--config", "tiny", "--max-steps", "45",
                 "--batch-size", "2", "--log-every", "5", "--validation-items", "0"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 45 and 45 in steps and 40 in steps


def test_trainer_losses_have_gradients_everywhere_but_the_unused_decoder_condition(corpus):
    torch.manual_seed(0)
    trainer = ConverterTrainer(PRESETS["tiny"])
    utterances = load_utterances(corpus, max_seconds=9.0)
    batch = BatchMaker(utterances, list(range(6)), PRESETS["tiny"], np.random.default_rng(0)).collate([0, 1, 3])
    optimizer = torch.optim.SGD(trainer.parameters(), lr=1e-2)
    trainer(batch)["loss"].backward()  # a fresh flow is the identity: its zero output layers must move first
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    trainer(batch)["loss"].backward()
    missing = [name for name, p in trainer.named_parameters() if p.grad is None]
    # zero_g: the encoder and decoder condition layers see zeros, so only their biases learn.
    assert all(".cond_layer." in name for name in missing), missing
    assert trainer.converter.ref_enc.proj.weight.grad.abs().sum() > 0  # the tone color is trained through the flow


def test_unknown_preset_is_refused(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--corpus", str(corpus), "--out", str(tmp_path), "--config", "huge"])


def test_learning_rate_override_keeps_the_rest_of_the_preset(tmp_path):
    from converter.train import preset_for

    options = TrainOptions(corpus=tmp_path, out=tmp_path, config="tiny", learning_rate=5e-4, kl_weight=0.1)
    assert preset_for(options).learning_rate == 5e-4 and preset_for(options).kl_weight == 0.1
    assert preset_for(options).model == PRESETS["tiny"].model
    assert preset_for(TrainOptions(corpus=tmp_path, out=tmp_path, config="tiny")) is PRESETS["tiny"]
