"""The DiT (F5-TTS architecture): golden outputs of the upstream implementation, the published manifest,
conversion of published checkpoints, the vocabulary, and the tiny-config contract (shapes, round trip)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tts.audio import STUDIO_MEL
from tts.checkpoints import check_state_dict, load_state_strict
from tts.dit import F5_MEL, DiT, DiTConfig, F5Vocab, convert_published_state_dict
from tts.dit.published import DEFAULT_VOCAB, DEFAULT_WEIGHTS
from tts.errors import CheckpointError, TextError


from tests.conftest import COMPAT_DIR as COMPAT
pytestmark = pytest.mark.usefixtures("single_thread")

GOLDEN = COMPAT / "golden"


def tiny_config(**overrides) -> DiTConfig:
    config = json.loads((GOLDEN / "f5_dit_tiny.json").read_text())["config"]
    return DiTConfig(**{**config, **overrides})


def golden_model(**overrides) -> DiT:
    model = DiT(tiny_config(**overrides))
    weights = load_file(str(GOLDEN / "f5_dit_tiny.weights.safetensors"))
    load_state_strict(model, convert_published_state_dict(weights, "golden"), "golden")
    return model.eval()


@pytest.fixture(scope="module")
def golden_io() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "f5_dit_tiny.io.safetensors"))


# ---------------------------------------------------------------------------------------------------------
# Golden and manifest


@pytest.mark.parametrize("output, dropped", [("out", False), ("out_uncond", True)])
def test_golden_outputs(golden_io, output, dropped):
    model = golden_model()
    with torch.no_grad():
        out = model(
            x=golden_io["x"], cond=golden_io["cond"], text=golden_io["text"], time=golden_io["time"],
            drop_audio_cond=dropped, drop_text=dropped,
        )
    assert out.shape == golden_io[output].shape
    assert (out - golden_io[output]).abs().max() < 1e-4


def test_manifest_maps_onto_full_config():
    manifest = json.loads((COMPAT / "f5tts_v1_base.json").read_text())
    published = manifest["config"]
    config = DiTConfig()
    for key, value in published["dit"].items():
        if hasattr(config, key):
            assert getattr(config, key) == value, key
    assert config.text_num_embeds == published["text_num_embeds"]
    mel = published["mel_spec"]
    assert (F5_MEL.n_fft, F5_MEL.hop_length, F5_MEL.win_length, F5_MEL.n_mels, F5_MEL.sample_rate) == (
        mel["n_fft"], mel["hop_length"], mel["win_length"], mel["n_mel_channels"], mel["target_sample_rate"]
    )
    # The studio's mel is F5's except for the log floor.
    assert dataclasses.replace(STUDIO_MEL, log_floor=F5_MEL.log_floor) == config.mel == F5_MEL

    with torch.device("meta"):
        model = DiT(config)
        state = {key: torch.empty(spec["shape"]) for key, spec in manifest["tensors"].items()}
    check_state_dict(model, convert_published_state_dict(state, "manifest"), "manifest")
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["num_parameters"]
    assert all(spec["dtype"] == "float32" for spec in manifest["tensors"].values())


def test_convert_published_state_dict_forms():
    weight = torch.zeros(2)
    raw = {"ema_model.transformer.proj_out.bias": weight, "ema_model.initted": torch.tensor(True),
           "ema_model.step": torch.tensor(5), "mel_spec.mel_stft.spectrogram.window": torch.ones(4)}
    assert convert_published_state_dict(raw) == {"proj_out.bias": weight}
    stripped = {"transformer.proj_out.bias": weight, "initted": torch.tensor(True), "step": torch.tensor(5)}
    assert convert_published_state_dict(stripped) == {"proj_out.bias": weight}
    with pytest.raises(CheckpointError, match="neither"):
        convert_published_state_dict({"ema_model.other.weight": weight})
    with pytest.raises(CheckpointError, match="already"):
        convert_published_state_dict({"ema_model.transformer.proj_out.bias": weight, "transformer.proj_out.bias": weight})


def test_from_published_file_and_folder(tmp_path, golden_io):
    weights = load_file(str(GOLDEN / "f5_dit_tiny.weights.safetensors"))
    raw = {f"ema_model.transformer.{key}": value for key, value in weights.items()}
    raw["ema_model.initted"], raw["ema_model.step"] = torch.tensor(True), torch.tensor(1250000)
    path = tmp_path / DEFAULT_WEIGHTS
    path.parent.mkdir(parents=True)
    save_file(raw, str(path))
    inputs = {k: golden_io[k] for k in ("x", "cond", "text", "time")}
    for source in (path, tmp_path):  # the file itself, or a download of the repo
        model = DiT.from_published(source, config=tiny_config())
        with torch.no_grad():
            assert (model(**inputs) - golden_io["out"]).abs().max() < 1e-4
    broken = dict(raw)
    broken["ema_model.transformer.proj_out.bias"] = torch.zeros(99)
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        DiT.from_published(tmp_path / "broken.safetensors", config=tiny_config())
    with pytest.raises(CheckpointError, match="missing"):
        DiT.from_published(tmp_path, filename="F5TTS_v1_Base/model_1.safetensors", config=tiny_config())


# ---------------------------------------------------------------------------------------------------------
# Tiny-config contract


def test_tiny_shapes_round_trip_and_padding(tmp_path):
    model = golden_model(attn_mask_enabled=True)
    torch.manual_seed(0)
    x, cond = torch.randn(2, 30, 100), torch.randn(2, 30, 100)
    text = torch.tensor([[3, 4, 5, 6, -1], [7, 8, 9, 10, 11]])
    time = torch.tensor([0.2, 0.8])
    with torch.no_grad():
        out = model(x=x, cond=cond, text=text, time=time)
    assert out.shape == (2, 30, 100)

    model.save_pretrained(tmp_path / "dit")
    loaded = DiT.from_pretrained(tmp_path / "dit")
    assert loaded.config == model.config and loaded.config.mel == F5_MEL
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    with torch.no_grad():
        assert torch.equal(loaded(x=x, cond=cond, text=text, time=time), out)

    # Padded batches (attention masking on): what the padding frames hold never reaches the real frames, and
    # an all-true mask changes nothing. (Like F5, the padding's length does matter a little: the conv position
    # embedding masks only its input and output.)
    mask = torch.arange(30)[None] < torch.tensor([[30], [17]])
    def garbage(t: torch.Tensor) -> torch.Tensor:
        return torch.where(mask[..., None], t, torch.full_like(t, 50.0))

    with torch.no_grad():
        batched = model(x=x, cond=cond, text=text, time=time, mask=mask)
        batched_garbage = model(x=garbage(x), cond=garbage(cond), text=text, time=time, mask=mask)
        all_true = model(x=x, cond=cond, text=text, time=time, mask=torch.ones(2, 30, dtype=torch.bool))
    assert torch.allclose(batched[1, :17], batched_garbage[1, :17], atol=1e-5)
    assert torch.allclose(batched[0], out[0], atol=1e-5) and torch.allclose(all_true, out, atol=1e-5)


def test_text_and_audio_conditions_matter_and_long_text_is_cut(golden_io):
    model = golden_model()
    inputs = {k: golden_io[k] for k in ("x", "cond", "text", "time")}
    with torch.no_grad():
        base = model(**inputs)
        other_text = model(**{**inputs, "text": inputs["text"].flip(-1)})
        no_audio = model(**inputs, drop_audio_cond=True)
        short = model(**{**inputs, "x": inputs["x"][:, :8], "cond": inputs["cond"][:, :8]})
    assert not torch.allclose(base, other_text, atol=1e-3)
    assert not torch.allclose(base, no_audio, atol=1e-3)
    assert short.shape == (1, 8, 100)  # 12 text ids, 8 frames: the text is cut to the mel length


def test_fresh_model_predicts_zero_velocity():
    model = DiT(DiTConfig(dim=32, depth=1, heads=2, dim_head=16, text_num_embeds=10, text_dim=16, conv_layers=1))
    out = model(x=torch.randn(1, 6, 100), cond=torch.randn(1, 6, 100), text=torch.tensor([[1, 2]]), time=torch.tensor(0.5))
    assert out.shape == (1, 6, 100) and not out.any()  # adaLN-Zero initialisation


def test_config_is_validated():
    with pytest.raises(ValueError, match="mel_dim"):
        DiTConfig(mel_dim=80)
    with pytest.raises(ValueError, match="qk_norm"):
        DiTConfig(qk_norm="layer_norm")
    model = DiT(DiTConfig(dim=32, depth=1, heads=2, dim_head=16, text_num_embeds=10, text_dim=16, qk_norm="rms_norm"))
    assert "transformer_blocks.0.attn.q_norm.weight" in model.state_dict()


# ---------------------------------------------------------------------------------------------------------
# Vocabulary


def test_vocab_reads_f5_format_and_encodes_english(tmp_path):
    folder = tmp_path / "repo"
    (folder / "F5TTS_v1_Base").mkdir(parents=True)
    (folder / DEFAULT_VOCAB).write_text(" \n!\n\"\n'\n,\n.\nH\na\ne\nh\nl\no\n", encoding="utf-8")
    vocab = F5Vocab.from_published(folder)
    assert len(vocab) == 12 and vocab.symbols[0] == " "
    assert vocab.encode("hello") == [9, 8, 10, 10, 11]
    assert vocab.encode("He; \u201chal\u2019\u201d") == [6, 8, 4, 0, 2, 9, 7, 10, 3, 2]  # ; -> , and straight quotes
    assert vocab.encode("Hz") == [6, 0]  # unknown -> 0
    batch = vocab.encode_batch(["ha", "hole"])
    assert batch.tolist() == [[9, 7, -1, -1], [9, 11, 10, 8]]
    vocab.check_fits(12)
    with pytest.raises(CheckpointError, match="12 symbols"):
        vocab.check_fits(2545)
    with pytest.raises(TextError):
        vocab.encode("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing"):
        F5Vocab.from_published(tmp_path / "empty")
