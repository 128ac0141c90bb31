"""The tone-color converter at a tiny config: shapes, save/load, seeds and tau, conditioning, the audio helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from converter.openvoice import ConverterConfig, ToneColorConverter
from converter.spectrogram import SpectrogramConfig
from tts.audio import SAMPLE_RATE, Audio
from tts.errors import AudioError
from tts.preprocess import Segment

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = ConverterConfig(
    inter_channels=8,
    hidden_channels=8,
    posterior_layers=3,
    flow_layers=2,
    n_flows=2,
    resblock_kernel_sizes=(3, 5),
    resblock_dilation_sizes=((1, 3), (1, 3)),
    upsample_initial_channel=32,
    gin_channels=8,
    ref_enc_filters=(4, 4, 8),
    ref_enc_gru_channels=8,
)
FRAMES = 12


def _tiny_model(config: ConverterConfig = TINY, seed: int = 0) -> ToneColorConverter:
    torch.manual_seed(seed)
    model = ToneColorConverter(config).eval()
    with torch.no_grad():  # a fresh flow is the identity (zero-initialized outputs); make it do something
        for name, param in model.named_parameters():
            if ".post." in name:
                param.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="module")
def model() -> ToneColorConverter:
    return _tiny_model()


@pytest.fixture(scope="module")
def inputs(model):
    """Two unpadded 12-frame spectrograms of noise and two tone colors from them."""
    rng = np.random.default_rng(0)
    hop = model.config.spectrogram.hop_length
    wave = torch.from_numpy((0.3 * rng.standard_normal((2, FRAMES * hop))).astype(np.float32))
    spec = model.spectrogram(wave)
    with torch.no_grad():
        tones = model.extract_tone_color(spec)
    return spec, torch.tensor([spec.shape[-1]] * 2), tones, tones.flip(0)


def test_shapes(model, inputs):
    spec, lengths, source, target = inputs
    config = model.config
    assert spec.shape == (2, config.spectrogram.n_freqs, FRAMES)
    assert source.shape == (2, config.gin_channels, 1)
    with torch.no_grad():
        wave = model.convert(spec, lengths, source, target, tau=0)
        z, mask = model.encode(spec, lengths, source, tau=0)
    assert wave.shape == (2, 1, FRAMES * config.spectrogram.hop_length)
    assert z.shape == (2, config.inter_channels, FRAMES) and mask.shape == (2, 1, FRAMES)
    assert bool(wave.abs().le(1).all()) and bool(torch.isfinite(wave).all())


def test_padded_items_are_silent_past_their_length(model, inputs):
    spec, _, source, target = inputs
    hop = model.config.spectrogram.hop_length
    with torch.no_grad():
        wave = model.convert(spec, torch.tensor([FRAMES, 7]), source, target, tau=0)
    assert float(wave[1, 0, 7 * hop :].abs().max()) == 0.0
    assert float(wave[1, 0, : 7 * hop].abs().max()) > 0.0
    assert float(wave[0, 0, 7 * hop :].abs().max()) > 0.0


def test_save_load_round_trip_is_bit_exact(model, inputs, tmp_path):
    folder = model.save_pretrained(tmp_path / "converter", model_card={"note": "tiny test model"})
    loaded = ToneColorConverter.from_pretrained(folder)
    assert loaded.config == model.config
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert set(state) == set(loaded_state) and all(torch.equal(state[k], loaded_state[k]) for k in state)
    spec, lengths, source, target = inputs
    with torch.no_grad():
        assert torch.equal(
            model.convert(spec, lengths, source, target, tau=0.3, generator=torch.Generator().manual_seed(1)),
            loaded.convert(spec, lengths, source, target, tau=0.3, generator=torch.Generator().manual_seed(1)),
        )


def test_construction_is_deterministic_with_a_seed():
    torch.manual_seed(3)
    first = ToneColorConverter(TINY).state_dict()
    torch.manual_seed(3)
    second = ToneColorConverter(TINY).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_tau_and_seeds(model, inputs):
    spec, lengths, source, target = inputs

    def run(tau: float, seed: int) -> torch.Tensor:
        with torch.no_grad():
            return model.convert(spec, lengths, source, target, tau=tau, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0.0, 1), run(0.0, 2))  # tau 0: the posterior mean, no noise
    assert torch.equal(run(0.3, 1), run(0.3, 1))
    assert not torch.allclose(run(0.3, 1), run(0.3, 2))
    assert not torch.allclose(run(0.3, 1), run(0.0, 1))


def test_tau_scales_the_posterior_noise(model, inputs):
    spec, lengths, source, _ = inputs

    def latent(tau: float) -> torch.Tensor:
        with torch.no_grad():
            return model.encode(spec, lengths, source, tau=tau, generator=torch.Generator().manual_seed(5))[0]

    mean = latent(0.0)
    torch.testing.assert_close(latent(0.6) - mean, 2 * (latent(0.3) - mean), rtol=1e-4, atol=1e-5)
    assert float((latent(0.3) - mean).abs().max()) > 0


def test_same_tone_color_returns_the_reconstruction(model, inputs):
    spec, lengths, source, _ = inputs
    with torch.no_grad():
        z, mask = model.encode(spec, lengths, source, tau=0)
        assert torch.allclose(model.flow(model.flow(z, mask, g=source), mask, g=source, reverse=True), z, atol=1e-5)
        converted = model.convert(spec, lengths, source, source, tau=0)
        torch.testing.assert_close(converted, model.decode(z, mask, source), rtol=0, atol=1e-5)


def test_target_tone_color_changes_the_output(model, inputs):
    spec, lengths, source, _ = inputs
    other = torch.randn(source.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, mask = model.encode(spec, lengths, source, tau=0)
        moved = model.flow(model.flow(z, mask, g=source), mask, g=other, reverse=True)
        same = model.convert(spec, lengths, source, source, tau=0)
        converted = model.convert(spec, lengths, source, other, tau=0)
    assert float((moved - z).abs().max()) > 1e-2
    # A randomly initialized decoder damps its input a lot, so only ask that the waveform moves at all.
    assert not torch.equal(same, converted)


@pytest.mark.parametrize("zero_g", [True, False])
def test_zero_g_keeps_tone_color_out_of_encoder_and_decoder(zero_g, inputs):
    model = _tiny_model(dataclasses.replace(TINY, zero_g=zero_g))
    spec, lengths, source, target = inputs
    with torch.no_grad():
        z_a, mask = model.encode(spec, lengths, source, tau=0)
        z_b, _ = model.encode(spec, lengths, target, tau=0)
        wave_a, wave_b = model.decode(z_a, mask, source), model.decode(z_a, mask, target)
    assert torch.equal(z_a, z_b) == zero_g
    assert torch.equal(wave_a, wave_b) == zero_g


def test_bad_inputs_are_refused(model, inputs):
    spec, lengths, source, target = inputs
    with pytest.raises(ValueError, match="linear spectrogram"):
        model.convert(spec[:, :-1], lengths, source, target)
    with pytest.raises(ValueError, match="source_tone must have shape"):
        model.convert(spec, lengths, source[..., 0], target)
    with pytest.raises(ValueError, match="spec_lengths"):
        model.convert(spec, torch.tensor([FRAMES + 1, FRAMES]), source, target)
    with pytest.raises(ValueError, match="tau"):
        model.convert(spec, lengths, source, target, tau=-0.1)


def test_config_validation():
    with pytest.raises(ValueError, match="hop"):
        dataclasses.replace(TINY, upsample_rates=(8, 8, 2, 1))
    with pytest.raises(ValueError, match="resblock"):
        dataclasses.replace(TINY, resblock="2")
    with pytest.raises(ValueError, match="even"):
        dataclasses.replace(TINY, inter_channels=7)
    assert ConverterConfig().sample_rate == 22_050


# ---------------------------------------------------------------------------------------------------------
# Audio level: tone colors averaged over voiced speech, conversion of studio audio


def _voice(seconds: float, sample_rate: int = SAMPLE_RATE, f0: float = 140.0) -> Audio:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    vibrato = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(vibrato) / sample_rate
    samples = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6))
    return Audio(samples.astype(np.float32), sample_rate)


def test_tone_color_averages_chunks_of_voiced_speech(model):
    audio = Audio(np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), _voice(1.0).samples]), SAMPLE_RATE)
    voiced = [Segment(0.5, 1.5)]
    tone = model.tone_color(audio, segments=voiced)
    assert tone.shape == (model.config.gin_channels,)
    rate = model.config.sample_rate
    speech = torch.from_numpy(_voice(1.0).resample(rate).samples)
    with torch.no_grad():
        whole = model.extract_tone_color(model.spectrogram(speech[None]))[0, :, 0]
        halves = [model.extract_tone_color(model.spectrogram(h[None]))[0, :, 0] for h in speech.tensor_split(2)]
    torch.testing.assert_close(tone, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.tone_color(audio, segments=voiced, chunk_seconds=0.5), (halves[0] + halves[1]) / 2)


def test_tone_color_finds_voiced_segments_by_default(model, monkeypatch):
    import tts.preprocess

    calls = []
    audio = _voice(1.0)
    monkeypatch.setattr(tts.preprocess, "voiced_segments", lambda a: calls.append(a) or [Segment(0.0, 0.5)])
    tone = model.tone_color(audio)
    assert calls == [audio]
    torch.testing.assert_close(tone, model.tone_color(Audio(audio.samples[: SAMPLE_RATE // 2], SAMPLE_RATE), segments=[]))


def test_tone_color_refuses_too_little_speech(model):
    with pytest.raises(AudioError, match="too short"):
        model.tone_color(_voice(0.01), segments=[])


def test_convert_audio_returns_studio_audio_of_the_same_duration(model):
    source = _voice(0.5, sample_rate=16_000)
    tone_a, tone_b = model.tone_color(source, segments=[]), model.tone_color(_voice(0.5, f0=220.0), segments=[])
    out = model.convert_audio(source, tone_a, tone_b, tau=0)
    assert out.sample_rate == SAMPLE_RATE
    assert len(out) == round(len(source) * SAMPLE_RATE / 16_000)
    assert np.all(np.isfinite(out.samples)) and float(np.abs(out.samples).max()) > 0
    again = model.convert_audio(source, tone_a, tone_b, tau=0.5, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(again.samples, model.convert_audio(source, tone_a, tone_b, tau=0.5, generator=torch.Generator().manual_seed(0)).samples)
    with pytest.raises(ValueError, match="tone-color vector"):
        model.convert_audio(source, tone_a[None, :, None], tone_b)
    with pytest.raises(ValueError, match="NaN"):
        model.convert_audio(source, torch.full_like(tone_a, float("nan")), tone_b)
    with pytest.raises(AudioError, match="at least"):
        model.convert_audio(Audio(np.zeros(100, np.float32), SAMPLE_RATE), tone_a, tone_b)


def test_spectrogram_config_is_the_converters(model):
    assert model.config.spectrogram == SpectrogramConfig()
    assert model.spectrogram(np.zeros(22_050, np.float32)).shape == (513, SpectrogramConfig().num_frames(22_050))
