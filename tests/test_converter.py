"""The OpenVoice V2 converter against the published facts: golden outputs, the checkpoint manifest, loading.

The compatibility data (``compat/``: the manifest of ``myshell-ai/OpenVoiceV2``'s converter and a tiny golden
model with upstream outputs) lives beside the repository; ``TIMBRE_COMPAT_DIR`` points elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from converter.openvoice import (
    ConverterConfig,
    ToneColorConverter,
    config_from_published,
    convert_published_state_dict,
    to_published_state_dict,
)
from converter.spectrogram import SpectrogramConfig, linear_spectrogram
from tts.checkpoints import check_state_dict, load_state_strict
from tts.errors import AudioError, CheckpointError

from tests.conftest import COMPAT_DIR as COMPAT
GOLDEN = COMPAT / "golden"
GOLDEN_TOLERANCE = 1e-4



pytestmark = pytest.mark.usefixtures("single_thread")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def tiny_published_config() -> dict:
    """The tiny golden model's config in the published ``config.json`` format."""
    return json.loads((GOLDEN / "openvoice_tiny.json").read_text())["config"]


@pytest.fixture(scope="module")
def golden_weights() -> dict[str, torch.Tensor]:
    """The tiny golden model's state dict in upstream naming (legacy ``weight_g``/``weight_v``)."""
    return _load_safetensors(GOLDEN / "openvoice_tiny.weights.safetensors")


@pytest.fixture(scope="module")
def golden_io() -> dict[str, torch.Tensor]:
    return _load_safetensors(GOLDEN / "openvoice_tiny.io.safetensors")


@pytest.fixture(scope="module")
def golden_model(tiny_published_config, golden_weights) -> ToneColorConverter:
    model = ToneColorConverter(config_from_published(tiny_published_config)).eval()
    load_state_strict(model, convert_published_state_dict(golden_weights), "golden tiny weights")
    return model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------------------
# The converter's spectrogram, against an independent numpy computation of its definition


def _numpy_linear_spectrogram(samples: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    pad = (n_fft - hop) // 2
    padded = np.pad(samples.astype(np.float64), (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    window = np.pad(window, ((n_fft - win) // 2, n_fft - win - (n_fft - win) // 2))
    frames = np.stack([padded[i : i + n_fft] for i in range(0, len(padded) - n_fft + 1, hop)], axis=1)
    spectrum = np.fft.rfft(frames * window[:, None], axis=0)
    return np.sqrt(spectrum.real**2 + spectrum.imag**2 + 1e-6)


def test_linear_spectrogram_matches_numpy_definition():
    rng = np.random.default_rng(0)
    samples = (0.3 * rng.standard_normal(5000)).astype(np.float32)
    config = SpectrogramConfig()
    expected = _numpy_linear_spectrogram(samples, config.n_fft, config.hop_length, config.win_length)
    single = linear_spectrogram(samples, config)
    assert single.shape == (config.n_freqs, config.num_frames(len(samples))) == expected.shape
    np.testing.assert_allclose(single.numpy(), expected, rtol=1e-4, atol=1e-4)
    batch = linear_spectrogram(torch.from_numpy(np.stack([samples, samples[::-1].copy()])), config)
    assert batch.shape == (2, *single.shape)
    assert torch.equal(batch[0], single)


def test_linear_spectrogram_other_settings_and_floor():
    config = SpectrogramConfig(sample_rate=16_000, n_fft=512, hop_length=128, win_length=400)
    rng = np.random.default_rng(1)
    samples = rng.standard_normal(3000).astype(np.float32)
    expected = _numpy_linear_spectrogram(samples, 512, 128, 400)
    np.testing.assert_allclose(linear_spectrogram(samples, config).numpy(), expected, rtol=1e-4, atol=1e-4)
    silence = linear_spectrogram(np.zeros(2048, dtype=np.float32), config)
    assert torch.allclose(silence, torch.full_like(silence, 1e-3))  # sqrt(0 + eps)


def test_linear_spectrogram_refuses_too_short_audio():
    config = SpectrogramConfig()
    assert linear_spectrogram(np.zeros(config.min_samples, dtype=np.float32), config).shape[-1] >= 1
    with pytest.raises(AudioError, match="at least"):
        linear_spectrogram(np.zeros(config.min_samples - 1, dtype=np.float32), config)


# ---------------------------------------------------------------------------------------------------------
# Golden: the tiny upstream model's outputs, reproduced from its weights in upstream naming


def test_golden_file_holds_what_the_tests_check(golden_io):
    assert set(golden_io) == {
        "source_wav", "reference_wav", "source_spec", "source_embedding", "reference_embedding", "converted_wav"
    }


def test_golden_spectrogram(golden_model, golden_io):
    spec = golden_model.spectrogram(golden_io["source_wav"])
    assert _max_diff(spec, golden_io["source_spec"]) < GOLDEN_TOLERANCE


def test_golden_tone_colors(golden_model, golden_io):
    with torch.no_grad():
        for wav, name in ((golden_io["source_wav"], "source_embedding"), (golden_io["reference_wav"], "reference_embedding")):
            tone = golden_model.extract_tone_color(golden_model.spectrogram(wav))
            assert _max_diff(tone, golden_io[name]) < GOLDEN_TOLERANCE, name


def test_golden_conversion(golden_model, golden_io):
    """The json's call: voice_conversion(source_spec, lengths, src_emb, ref_emb, tau=0), and end to end from wavs."""
    expected = golden_io["converted_wav"]
    spec = golden_io["source_spec"]
    lengths = torch.tensor([spec.shape[-1]])
    with torch.no_grad():
        given = golden_model.convert(spec, lengths, golden_io["source_embedding"], golden_io["reference_embedding"], tau=0)
        spec_ours = golden_model.spectrogram(golden_io["source_wav"])
        end_to_end = golden_model.convert(
            spec_ours,
            lengths,
            golden_model.extract_tone_color(spec_ours),
            golden_model.extract_tone_color(golden_model.spectrogram(golden_io["reference_wav"])),
            tau=0,
        )
    scale = float(expected.abs().max())
    for output in (given, end_to_end):
        # The tiny output is small (~0.02), so also hold it to a relative bound.
        assert _max_diff(output, expected) < min(GOLDEN_TOLERANCE, 1e-3 * scale)


def test_golden_flow_is_invertible_and_tone_conditioned(golden_model, golden_io):
    """Same source and target tone colors give back the posterior latent; another tone color moves it."""
    spec = golden_io["source_spec"]
    lengths = torch.tensor([spec.shape[-1]])
    source = golden_io["source_embedding"]
    other = torch.randn(source.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, mask = golden_model.encode(spec, lengths, source, tau=0)
        timbre_free = golden_model.flow(z, mask, g=source)
        assert _max_diff(golden_model.flow(timbre_free, mask, g=source, reverse=True), z) < 1e-5
        moved = golden_model.flow(timbre_free, mask, g=other, reverse=True)
        assert float((moved - z).abs().max()) > 1e-2
        same = golden_model.convert(spec, lengths, source, source, tau=0)
        assert _max_diff(same, golden_model.decode(z, mask, source)) < 1e-6


# ---------------------------------------------------------------------------------------------------------
# Manifest: every key and shape of the published checkpoint maps onto the module at the published config


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((COMPAT / "openvoice_v2_converter.json").read_text())


def test_published_config_is_the_default(manifest):
    assert config_from_published(manifest["config"]) == ConverterConfig()


def test_manifest_maps_onto_module(manifest):
    model = ToneColorConverter(config_from_published(manifest["config"]))
    published = {name: torch.empty(entry["shape"], device="meta") for name, entry in manifest["tensors"].items()}
    assert len(published) == manifest["num_tensors"]
    check_state_dict(model, convert_published_state_dict(published), "published OpenVoice V2 converter")
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]
    assert set(to_published_state_dict(model.state_dict())) == set(published)


# ---------------------------------------------------------------------------------------------------------
# The legacy weight-norm conversion


def test_conversion_renames_weight_norm_and_round_trips(golden_weights):
    converted = convert_published_state_dict(golden_weights)
    assert not any(k.endswith((".weight_g", ".weight_v")) for k in converted)
    assert converted["dec.ups.0.parametrizations.weight.original0"] is golden_weights["dec.ups.0.weight_g"]
    assert converted["dec.ups.0.parametrizations.weight.original1"] is golden_weights["dec.ups.0.weight_v"]
    assert converted["dec.conv_pre.weight"] is golden_weights["dec.conv_pre.weight"]
    back = to_published_state_dict(converted)
    assert set(back) == set(golden_weights)
    assert all(back[k] is golden_weights[k] for k in back)


def test_conversion_refuses_broken_weight_norm_pairs(golden_weights):
    unpaired = {k: v for k, v in golden_weights.items() if k != "dec.ups.0.weight_v"}
    with pytest.raises(CheckpointError, match="only one of weight_g"):
        convert_published_state_dict(unpaired)
    misshaped = dict(golden_weights, **{"dec.ups.0.weight_g": torch.ones(16, 1, 1)})
    with pytest.raises(CheckpointError, match="weight_g has shape"):
        convert_published_state_dict(misshaped)
    with pytest.raises(CheckpointError, match="not a tensor"):
        convert_published_state_dict(dict(golden_weights, step=3))


def test_strict_load_refuses_extra_and_missing_keys(tiny_published_config, golden_weights):
    model = ToneColorConverter(config_from_published(tiny_published_config))
    extra = convert_published_state_dict(dict(golden_weights, **{"emb_g.weight": torch.zeros(4, 16)}))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_state_strict(model, extra, "test")
    missing = convert_published_state_dict({k: v for k, v in golden_weights.items() if not k.startswith("ref_enc.gru")})
    with pytest.raises(CheckpointError, match="missing"):
        load_state_strict(model, missing, "test")


# ---------------------------------------------------------------------------------------------------------
# Loading a published-format folder (config.json + checkpoint.pth), as downloaded from the hub


@pytest.fixture
def published_repo(tmp_path, tiny_published_config, golden_weights) -> Path:
    """A stand-in for a local copy of myshell-ai/OpenVoiceV2 holding the tiny golden model."""
    folder = tmp_path / "OpenVoiceV2" / "converter"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_version_": "v2", **tiny_published_config}))
    torch.save({"model": dict(golden_weights), "iteration": 1}, folder / "checkpoint.pth")
    return folder.parent


def test_from_published_loads_every_layout(published_repo, golden_model):
    expected = golden_model.state_dict()
    for source in (published_repo, published_repo / "converter", published_repo / "converter" / "checkpoint.pth"):
        model = ToneColorConverter.from_published(source)
        assert not model.training
        assert model.config == golden_model.config
        state = model.state_dict()
        assert set(state) == set(expected) and all(torch.equal(state[k], expected[k]) for k in state)


def test_from_published_refuses_missing_or_foreign_files(published_repo, golden_weights):
    folder = published_repo / "converter"
    (folder / "checkpoint.pth").unlink()
    with pytest.raises(CheckpointError, match="huggingface-cli download"):
        ToneColorConverter.from_published(published_repo)
    torch.save(dict(golden_weights), folder / "checkpoint.pth")  # no 'model' entry
    with pytest.raises(CheckpointError, match="under 'model'"):
        ToneColorConverter.from_published(folder)
    torch.save({"model": {k: v for k, v in golden_weights.items() if k != "dec.cond.bias"}}, folder / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="missing"):
        ToneColorConverter.from_published(folder)


def test_published_config_refusals(tiny_published_config):
    with pytest.raises(CheckpointError, match="unknown keys"):
        config_from_published({**tiny_published_config, "model": {**tiny_published_config["model"], "use_sdp": True}})
    with pytest.raises(CheckpointError, match="n_speakers"):
        config_from_published({**tiny_published_config, "data": {**tiny_published_config["data"], "n_speakers": 10}})
    with pytest.raises(CheckpointError, match="'data' and 'model'"):
        config_from_published({"model": tiny_published_config["model"]})
