"""The vocoder: published-weight compatibility (golden outputs, manifest), round trips, streaming, Griffin-Lim, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tts.audio import STUDIO_MEL, Audio, load_audio, log_mel
from tts.checkpoints import check_state_dict, load_state_strict, read_model_card_data
from tts.errors import CheckpointError
from vocoder.griffin_lim import griffin_lim
from vocoder.streaming import VocosStreamer, stream, streaming_lookahead
from vocoder.vocos import (
    Vocos,
    VocosConfig,
    config_from_published,
    config_from_published_yaml,
    convert_published_state_dict,
)

from tests.conftest import COMPAT_DIR as COMPAT

GOLDEN = COMPAT / "golden"

TINY = VocosConfig(dim=32, intermediate_dim=64, num_layers=2)

PUBLISHED_YAML = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: 24000
    n_fft: 1024
    hop_length: 256
    n_mels: 100
    padding: center
backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: 100
    dim: {dim}
    intermediate_dim: {intermediate}
    num_layers: {layers}
head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: {dim}
    n_fft: 1024
    hop_length: 256
    padding: center
"""


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_config_from_golden() -> VocosConfig:
    tree = json.loads((GOLDEN / "vocos_tiny.json").read_text())["config"]
    tree = {"feature_extractor": json.loads((COMPAT / "vocos_mel_24khz.json").read_text())["config"]["feature_extractor"], **tree}
    return config_from_published(tree, "vocos_tiny.json")


def golden_model() -> Vocos:
    model = Vocos(tiny_config_from_golden())
    load_state_strict(model, load_file(str(GOLDEN / "vocos_tiny.weights.safetensors")), "golden")
    return model.eval()


def random_model(config: VocosConfig = TINY, seed: int = 0) -> Vocos:
    """A model whose weights are all O(0.1), so every path (layer scale included) matters."""
    torch.manual_seed(seed)
    model = Vocos(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn_like(param) * (0.2 if param.dim() > 1 else 0.1))
    return model


def feature_extractor_tensors() -> dict[str, torch.Tensor]:
    return {
        "feature_extractor.mel_spec.spectrogram.window": torch.hann_window(1024),
        "feature_extractor.mel_spec.mel_scale.fb": torch.rand(513, 100),
    }


# ---------------------------------------------------------------------------------------------------------
# Published weights


def test_golden_outputs_are_reproduced():
    io = load_file(str(GOLDEN / "vocos_tiny.io.safetensors"))
    model = golden_model()
    assert model.config == VocosConfig(dim=32, intermediate_dim=64, num_layers=2)
    with torch.no_grad():
        audio = model(io["mel"])
    assert audio.shape == io["audio"].shape == (1, (io["mel"].shape[-1] - 1) * 256)
    assert (audio - io["audio"]).abs().max().item() < 1e-4
    # The tolerance is meaningful: a perturbed model misses it.
    with torch.no_grad():
        model.backbone.convnext[1].gamma.mul_(1.5)
        assert (model(io["mel"]) - io["audio"]).abs().max().item() > 1e-4


def test_manifest_maps_onto_the_full_model():
    manifest = json.loads((COMPAT / "vocos_mel_24khz.json").read_text())
    config = config_from_published(manifest["config"], "manifest")
    assert config == VocosConfig()  # the defaults are the published model
    model = Vocos(config)
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    published = {key: tuple(entry["shape"]) for key, entry in manifest["tensors"].items()}
    dropped = {key for key in published if key.startswith("feature_extractor.")}
    assert dropped == {"feature_extractor.mel_spec.spectrogram.window", "feature_extractor.mel_spec.mel_scale.fb"}
    assert {k: v for k, v in published.items() if k not in dropped} == ours
    assert len(published) == manifest["num_tensors"]
    parameters = sum(int(np.prod(shape)) for key, shape in published.items() if key not in dropped and "window" not in key)
    assert sum(p.numel() for p in model.parameters()) == parameters
    # The conversion function accepts exactly the manifest's tensors.
    fake = {key: torch.zeros(shape) for key, shape in published.items()}
    converted = convert_published_state_dict(fake, model)
    assert set(converted) == set(ours)


def test_conversion_refuses_what_does_not_fit():
    state = {**load_file(str(GOLDEN / "vocos_tiny.weights.safetensors")), **feature_extractor_tensors()}
    model = Vocos(TINY)
    converted = convert_published_state_dict(state, model)
    check_state_dict(model, converted, "converted")
    for broken, message in [
        ({k: v for k, v in state.items() if k != "head.out.bias"}, "missing head.out.bias"),
        ({**state, "backbone.extra.weight": torch.zeros(3)}, "unexpected backbone.extra.weight"),
        ({**state, "head.out.weight": torch.zeros(1026, 31)}, "head.out.weight"),
        ({**state, "feature_extractor.mel_spec.mel_scale.fb": torch.zeros(513, 80)}, "studio mel"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            convert_published_state_dict(broken, model)


def test_from_published_folder_reproduces_golden(tmp_path):
    state = {**load_file(str(GOLDEN / "vocos_tiny.weights.safetensors")), **feature_extractor_tensors()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.yaml").write_text(PUBLISHED_YAML.format(dim=32, intermediate=64, layers=2))
    model = Vocos.from_published(tmp_path)
    io = load_file(str(GOLDEN / "vocos_tiny.io.safetensors"))
    with torch.no_grad():
        assert (model(io["mel"]) - io["audio"]).abs().max().item() < 1e-4


def test_published_yaml_is_data_only():
    config = config_from_published_yaml(PUBLISHED_YAML.format(dim=512, intermediate=1536, layers=8))
    assert config == VocosConfig()
    with pytest.raises(CheckpointError, match="YAML"):
        config_from_published_yaml("backbone: !!python/object/apply:os.system ['true']\n")
    other_mel = PUBLISHED_YAML.format(dim=64, intermediate=128, layers=2).replace("n_mels: 100", "n_mels: 80")
    with pytest.raises(CheckpointError, match="studio mel"):
        config_from_published_yaml(other_mel)


def test_from_published_explains_a_folder_without_the_files(tmp_path):
    with pytest.raises(CheckpointError, match="config.yaml"):
        Vocos.from_published(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# The model


def test_tiny_shapes_and_input_checks():
    model = random_model()
    mel = torch.randn(3, 100, 17)
    audio = model(mel)
    assert audio.shape == (3, 16 * 256) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()
    decoded = model.decode(mel[0])
    assert isinstance(decoded, Audio) and decoded.sample_rate == 24_000 and len(decoded) == 16 * 256
    np.testing.assert_allclose(decoded.samples, audio[0].detach().numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="log-mel"):
        model(torch.randn(1, 80, 17))
    with pytest.raises(ValueError):
        VocosConfig(padding="same")


def test_copy_synthesis_length_matches_the_input(tone):
    samples = tone.samples[: 90 * STUDIO_MEL.hop_length]
    mel = log_mel(samples)
    assert random_model().decode(mel).samples.shape == samples.shape


def test_save_load_round_trip_is_bit_exact_and_ships_fp16(tmp_path):
    model = random_model()
    mel = torch.randn(1, 100, 12)
    model.save_pretrained(tmp_path / "fp32", model_card={"Training": {"steps": 3}})
    loaded = Vocos.from_pretrained(tmp_path / "fp32")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(model(mel), loaded(mel))
    assert read_model_card_data(tmp_path / "fp32")["Training"]["steps"] == 3

    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in load_file(str(tmp_path / "fp16" / "model.safetensors")).values())
    shipped = Vocos.from_pretrained(tmp_path / "fp16")
    for key, value in model.state_dict().items():
        assert torch.equal(value.half().float(), shipped.state_dict()[key]), key
    with torch.no_grad():
        assert (model(mel) - shipped(mel)).abs().max() < 1e-2 * model(mel).abs().max()


def test_seeded_init_and_forward_are_deterministic():
    torch.manual_seed(7)
    first = Vocos(TINY)
    torch.manual_seed(7)
    second = Vocos(TINY)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    mel = torch.randn(2, 100, 20)
    with torch.no_grad():
        assert torch.equal(first(mel), first(mel))
    assert first.backbone.convnext[0].gamma[0].item() == pytest.approx(1 / TINY.num_layers)


# ---------------------------------------------------------------------------------------------------------
# Streaming


def _chunks(mel: torch.Tensor, rng: np.random.Generator, largest: int) -> list[torch.Tensor]:
    chunks, start = [], 0
    while start < mel.shape[-1]:
        size = int(rng.integers(1, largest + 1))
        chunks.append(mel[..., start : start + size])
        start += size
    return chunks


@pytest.mark.parametrize("config", [TINY, VocosConfig(dim=16, intermediate_dim=32, num_layers=5)])
def test_streaming_equals_full_decoding(config):
    model = random_model(config)
    rng = np.random.default_rng(1)
    for frames, largest in [(157, 9), (64, 40), (40, 1)]:
        mel = torch.randn(2, 100, frames) * 2
        with torch.no_grad():
            full = model(mel).numpy()
        pieces = list(stream(model, _chunks(mel, rng, largest)))
        streamed = np.concatenate(pieces, axis=-1)
        assert streamed.shape == full.shape
        assert np.abs(streamed - full).max() < 1e-3 * max(1.0, np.abs(full).max())
        assert len(pieces) > 1


def test_streaming_golden_weights_unbatched():
    model = golden_model()
    io = load_file(str(GOLDEN / "vocos_tiny.io.safetensors"))
    mel = torch.cat([io["mel"][0]] * 3, dim=-1)  # (M, 90)
    with torch.no_grad():
        full = model(mel[None])[0].numpy()
    pieces = list(model.stream(_chunks(mel, np.random.default_rng(3), 7)))
    assert all(p.ndim == 1 for p in pieces)
    assert np.abs(np.concatenate(pieces) - full).max() < 1e-4


def test_streaming_latency_is_the_documented_lookahead():
    model = random_model()
    lookahead = streaming_lookahead(model.config)
    assert lookahead == model.lookahead_frames == 3 * (TINY.num_layers + 1) + 2 == 11
    assert streaming_lookahead(VocosConfig()) == 29
    streamer = VocosStreamer(model)
    mel = torch.randn(100, 40)
    emitted = [streamer.push(mel[:, i : i + 1]).shape[-1] for i in range(40)]
    first = next(i for i, n in enumerate(emitted) if n)
    assert first == lookahead  # audio of frame 0 leaves with frame `lookahead`
    assert sum(emitted) + streamer.flush().shape[-1] == 39 * 256
    # A smaller lookahead is allowed, leaves earlier, and is only approximate.
    fast = VocosStreamer(model, lookahead_frames=4)
    early = [fast.push(mel[:, i : i + 1]).shape[-1] for i in range(40)]
    assert next(i for i, n in enumerate(early) if n) == 4
    with pytest.raises(ValueError):
        VocosStreamer(model, lookahead_frames=1)


# ---------------------------------------------------------------------------------------------------------
# Griffin-Lim and the CLI


def _speechlike(seconds: float = 1.5) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope at 24 kHz."""
    t = np.arange(int(seconds * 24_000)) / 24_000
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 24_000
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.2 * wave).astype(np.float32)


def test_griffin_lim_length_and_log_mel_match():
    samples = _speechlike()[: 120 * 256]
    mel = log_mel(samples)
    audio = griffin_lim(mel)
    assert audio.shape == samples.shape
    rebuilt = log_mel(audio)
    loud = mel > mel.max() - 8  # bins within ~70 dB of the peak; below that the log floor dominates
    error = (rebuilt - mel)[loud].abs().mean().item()
    one_pass = (log_mel(griffin_lim(mel, iterations=1, momentum=0.0)) - mel)[loud].abs().mean().item()
    assert error < 0.35 and error < 0.8 * one_pass


def test_vocode_cli(tmp_path, shipped_root, capsys):
    from tts.cli import main

    source = tmp_path / "in.wav"
    Audio(_speechlike(1.0), 24_000).resample(16_000).save(source)
    assert main(["vocode", str(source), "-o", str(tmp_path / "gl.wav"), "--griffin-lim"]) == 0
    assert abs(load_audio(tmp_path / "gl.wav").duration - 1.0) < 0.02

    assert main(["vocode", str(source), "-o", str(tmp_path / "none.wav")]) == 2
    err = capsys.readouterr().err
    assert "default vocoder is not shipped" in err and "--griffin-lim" in err

    random_model().save_pretrained(tmp_path / "voc")
    assert main(["vocode", str(source), "-o", str(tmp_path / "v.wav"), "--checkpoint", str(tmp_path / "voc")]) == 0
    assert abs(load_audio(tmp_path / "v.wav").duration - 1.0) < 0.02
