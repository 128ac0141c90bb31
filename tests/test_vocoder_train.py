"""The vocoder training recipe: augmentation, schedule, a few real steps, export, and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from tts.audio import SAMPLE_RATE
from tts.checkpoints import read_model_card_data
from tts.training import Augmentation, learning_rate, lowpass
from vocoder.train import (
    PRESETS,
    SegmentSampler,
    TrainOptions,
    build_parser,
    options_from_args,
    train,
)
from vocoder.vocos import Vocos


pytestmark = pytest.mark.usefixtures("single_thread")

def _band_energy(samples: np.ndarray, low_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(spectrum[freqs > low_hz].sum() / spectrum.sum())


def test_lowpass_simulates_a_band_limited_source():
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    assert _band_energy(noise, 4500) > 0.5
    limited = lowpass(noise, 4000)
    assert limited.shape == noise.shape
    assert _band_energy(limited, 4500) < 0.01


def test_sampler_augments_the_mel_source_only_with_lowpass():
    clip = (np.random.default_rng(1).standard_normal(3 * SAMPLE_RATE) * 3000).astype(np.int16)
    always = Augmentation(lowpass_probability=1.0, noise_probability=0.0)
    source, target = SegmentSampler([clip], 6000, always, np.random.default_rng(0)).batch(3)
    assert source.shape == target.shape == (3, 6000)
    for s, t in zip(source.numpy(), target.numpy()):
        assert _band_energy(s, 11_500) < 0.01 < _band_energy(t, 11_500)
    never = Augmentation(lowpass_probability=0.0, noise_probability=0.0)
    source, target = SegmentSampler([clip], 6000, never, np.random.default_rng(0)).batch(2)
    assert torch.equal(source, target)


def test_learning_rate_warms_up_then_decays():
    config = PRESETS["small"]
    rates = [learning_rate(config, step, 1000) for step in range(1000)]
    peak = config.warmup_steps
    assert max(rates) == rates[peak] == pytest.approx(config.learning_rate)
    assert rates[0] == pytest.approx(config.learning_rate / config.warmup_steps)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1 : peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :]))
    assert rates[-1] == pytest.approx(config.learning_rate * config.final_lr_fraction, rel=0.01)


def test_small_preset_is_sized_for_two_cores():
    parameters = sum(p.numel() for p in Vocos(PRESETS["small"].generator).parameters())
    assert 2_000_000 <= parameters <= 4_000_000


def test_cli_arguments_map_to_options(tmp_path):
    args = build_parser().parse_args(
        ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--config", "tiny", "--max-steps", "7", "--batch-size", "3",
         "--segment-seconds", "0.5", "--gan-start-step", "2", "--warmup-steps", "1", "--adversarial-weight", "0.2"]
    )
    options = options_from_args(args)
    assert (options.config, options.max_steps, options.batch_size, options.segment_seconds) == ("tiny", 7, 3, 0.5)
    config = options.train_config()
    assert (config.warmup_steps, config.adversarial_weight, config.feature_weight) == (1, 0.2, PRESETS["tiny"].feature_weight)


def test_phase_derivative_loss_sees_phase_but_not_polarity_or_offset():
    from vocoder.losses import phase_derivative_loss

    rate = 24_000
    t = torch.arange(rate) / rate
    f0 = 140 + 30 * torch.sin(2 * torch.pi * 1.5 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 10))[None] * 0.2
    assert phase_derivative_loss(voiced, voiced) < 1e-5
    assert phase_derivative_loss(-voiced, voiced) < 1e-5  # polarity: the mel cannot tell it, so it costs nothing
    # The same harmonics with their phases scrambled (a waveform a magnitude-only loss would half accept).
    generator = torch.Generator().manual_seed(0)
    offsets = torch.rand(10, generator=generator) * 2 * torch.pi
    scrambled = sum(torch.sin(k * phase + offsets[k]) / k for k in range(1, 10))[None] * 0.2
    assert phase_derivative_loss(scrambled, voiced) > 20 * phase_derivative_loss(-voiced, voiced) + 0.05
    noisy = voiced.clone().requires_grad_(True)
    phase_derivative_loss(noisy + 0.01 * torch.randn(noisy.shape, generator=generator), voiced).backward()
    assert torch.isfinite(noisy.grad).all() and noisy.grad.abs().sum() > 0
    args = build_parser().parse_args(["--data", "d", "--out", "o", "--phase-weight", "0.5"])
    assert options_from_args(args).train_config().phase_weight == 0.5
    assert options_from_args(build_parser().parse_args(["--data", "d", "--out", "o"])).train_config().phase_weight == 0


@pytest.fixture
def corpus(tmp_path):
    """Two short voiced clips at other rates and formats (wav 16 kHz, flac 22.05 kHz)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for index, (rate, suffix) in enumerate([(16_000, "wav"), (22_050, "flac")]):
        t = np.arange(int(1.2 * rate)) / rate
        f0 = 110 + 30 * index + 20 * np.sin(2 * np.pi * 2 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        wave = 0.2 * sum(np.sin(k * phase) / k for k in range(1, 8)) * np.sin(np.pi * t / t[-1])
        sf.write(folder / f"clip{index}.{suffix}", wave.astype(np.float32), rate)
    return folder


def test_training_runs_exports_and_resumes(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_THREADS", "1")
    out = tmp_path / "run"
    options = TrainOptions(
        data=corpus, out=out, config="tiny", max_steps=3, batch_size=2, segment_seconds=0.25,
        gan_start_step=1, save_every_steps=3, log_every=1,
    )
    first = train(options)
    assert first["step"] == 3 and first["session_steps"] == 3
    assert all(np.isfinite(r["mel"]) for r in first["history"])
    assert "d" in first["history"][-1] and "fm" in first["history"][-1]  # adversarial steps ran
    assert (out / "state").is_dir() and not (out / "state.tmp").exists()
    card = read_model_card_data(out / "export")
    assert card["Training"]["steps"] == 3 and card["Data"]["files"] == 2
    assert np.isfinite(card["Validation"]["mel_l1"]) and np.isfinite(card["Validation"]["mel_l1_16khz_source"])
    exported = Vocos.from_pretrained(out / "export")
    assert exported.config == PRESETS["tiny"].generator

    resumed = train(TrainOptions(**{**options.__dict__, "max_steps": 5}))
    assert resumed["step"] == 5 and resumed["session_steps"] == 2
    assert read_model_card_data(out / "export")["Training"]["steps"] == 5
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]

    done = train(TrainOptions(**{**options.__dict__, "max_steps": 5}))
    assert done["session_steps"] == 0


def test_discriminators_judge_each_example_alone():
    """Training concatenates real and generated audio in one batch; that is only sound if examples never mix."""
    from vocoder.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator

    config = PRESETS["tiny"].discriminator
    audio = torch.randn(3, 4000) * 0.1
    for disc in (MultiPeriodDiscriminator(config), MultiResolutionDiscriminator(config)):
        logits, features = disc(audio)
        alone_logits, alone_features = disc(audio[1:2])
        for batch_logits, single in zip(logits, alone_logits):
            assert batch_logits.shape[0] == 3
            torch.testing.assert_close(batch_logits[1:2], single)
        for maps, single_maps in zip(features, alone_features):
            for fmap, single in zip(maps, single_maps):
                assert fmap.shape[0] == 3
                torch.testing.assert_close(fmap[1:2], single)



def test_discriminators_can_learn_alone_before_the_generator_hears_them(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_THREADS", "1")
    options = TrainOptions(data=corpus, out=tmp_path / "warm", config="tiny", max_steps=4, batch_size=2,
                           segment_seconds=0.25, gan_start_step=1, discriminator_warmup_steps=2, log_every=1,
                           save_every_steps=4)
    history = train(options)["history"]
    assert ["d" in row for row in history] == [False, True, True, True]  # the discriminators learn from step 1
    assert ["g_adv" in row for row in history] == [False, False, False, True]  # the generator hears them from 3
    assert read_model_card_data(tmp_path / "warm" / "export")["Training"]["discriminator warm-up steps"] == 2
    args = build_parser().parse_args(["--data", "d", "--out", "o", "--discriminator-warmup-steps", "500"])
    assert options_from_args(args).discriminator_warmup_steps == 500
