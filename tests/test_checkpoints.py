"""The checkpoint store: strict round trips, tamper refusal, resolution (local, shipped, hub cache, offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from dataclasses import dataclass

import pytest
import torch

from tts.checkpoints import (
    PretrainedMixin,
    config_from_dict,
    list_shipped,
    load_foreign_torch_checkpoint,
    read_model_card_data,
    resolve_checkpoint,
    verify_shipped,
    write_manifest,
)
from tts.errors import CheckpointError


@dataclass(frozen=True)
class TinyConfig:
    dim: int = 8
    layers: int = 2
    scale: float = 1.0
    kernel_sizes: tuple[int, ...] = (3, 5)


class TinyModel(PretrainedMixin, torch.nn.Module):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = torch.nn.ModuleList(torch.nn.Linear(config.dim, config.dim) for _ in range(config.layers))
        self.register_buffer("running", torch.arange(config.dim, dtype=torch.float32))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x)) * self.config.scale
        return x + self.running


class OtherModel(TinyModel):
    pass


def make_model(seed: int = 0, **overrides) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(TinyConfig(**overrides))


def test_round_trip_is_bit_exact(tmp_path):
    model = make_model(kernel_sizes=(1, 7, 9))
    model.save_pretrained(tmp_path / "m", model_card={"Training": {"steps": 12, "loss": 0.5}})
    loaded = TinyModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and loaded.config.kernel_sizes == (1, 7, 9)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    x = torch.randn(4, 8)
    assert torch.equal(model(x), loaded(x))
    assert read_model_card_data(tmp_path / "m") == {"Training": {"steps": 12, "loss": 0.5}}


def test_fp16_shipping_round_trip(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    loaded = TinyModel.from_pretrained(tmp_path / "half")
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == torch.float32
        assert torch.equal(value.half().float(), loaded.state_dict()[key])
    loaded.save_pretrained(tmp_path / "again", dtype=torch.float16)
    assert (tmp_path / "half/model.safetensors").read_bytes() == (tmp_path / "again/model.safetensors").read_bytes()


def test_strict_loading_refuses_mismatches(tmp_path):
    make_model(dim=8).save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    config["config"]["dim"] = 4
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        TinyModel.from_pretrained(tmp_path / "m")
    config["config"]["dim"] = 8
    config["config"]["layers"] = 3
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing"):
        TinyModel.from_pretrained(tmp_path / "m")
    config["config"]["layers"] = 1
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unexpected"):
        TinyModel.from_pretrained(tmp_path / "m")


def test_config_refuses_unknown_keys_and_wrong_types():
    with pytest.raises(CheckpointError, match="unknown keys"):
        config_from_dict(TinyConfig, {"dim": 8, "dimm": 3})
    with pytest.raises(CheckpointError, match="expected int"):
        config_from_dict(TinyConfig, {"dim": "eight"})
    assert config_from_dict(TinyConfig, {"scale": 2}).scale == 2.0


def test_wrong_model_class_is_refused(tmp_path):
    make_model().save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="holds a 'TinyModel' checkpoint, not a 'OtherModel'"):
        OtherModel.from_pretrained(tmp_path / "m")


def test_corrupt_weights_are_refused(tmp_path):
    make_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m/model.safetensors").write_bytes(b"\x80\x04 not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        TinyModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m/config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        TinyModel.from_pretrained(tmp_path / "m")


def test_shipped_checkpoint_verified_and_tamper_refused(shipped_root):
    model = make_model()
    model.save_pretrained(shipped_root / "tiny", dtype=torch.float16)
    write_manifest(shipped_root)
    assert list_shipped() == ["tiny"]
    loaded = TinyModel.from_pretrained("tiny")
    assert torch.equal(loaded.state_dict()["running"], model.state_dict()["running"])
    weights = shipped_root / "tiny/model.safetensors"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in a weight, its size and times kept: the remembered hash must not hide it
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        TinyModel.from_pretrained("tiny")


def test_unlisted_shipped_file_is_refused(shipped_root):
    make_model().save_pretrained(shipped_root / "tiny")
    write_manifest(shipped_root)
    (shipped_root / "tiny/extra.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not in MANIFEST.json"):
        verify_shipped(shipped_root / "tiny")


def test_unknown_name_lists_what_is_shipped(shipped_root):
    make_model().save_pretrained(shipped_root / "tiny")
    write_manifest(shipped_root)
    with pytest.raises(CheckpointError, match=r"shipped: tiny"):
        resolve_checkpoint("no-such-model")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(shipped_root / "tiny/config.json")
    with pytest.raises(CheckpointError):
        resolve_checkpoint("../checkpoints/tiny")


def test_hub_id_offline_gives_actionable_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"huggingface-cli download someone/some-vocoder"):
        resolve_checkpoint("someone/some-vocoder")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(CheckpointError, match="local_files_only=True"):
        resolve_checkpoint("someone/some-vocoder", local_files_only=True)


def test_hub_id_resolves_from_local_cache_offline(tmp_path, monkeypatch):
    """The real huggingface_hub code path, fed by a cache laid out as the hub leaves it."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--tiny-model"
    snapshot = repo / "snapshots" / commit
    make_model(seed=3).save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(commit)
    loaded = TinyModel.from_pretrained("someone/tiny-model")
    assert torch.equal(loaded.state_dict()["layers.0.weight"], make_model(seed=3).state_dict()["layers.0.weight"])


def test_foreign_checkpoint_loads_tensors_but_refuses_code(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.ones(2)}}, good)
    assert torch.equal(load_foreign_torch_checkpoint(good)["model"]["w"], torch.ones(2))

    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "bad.pth"
    torch.save({"model": Exploit()}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        load_foreign_torch_checkpoint(bad)


def test_repository_manifest_covers_every_shipped_file():
    from tts.checkpoints import _shipped_files, checkpoints_dir, read_manifest

    root = checkpoints_dir()
    entries = read_manifest(root)
    files = {p.relative_to(root).as_posix() for p in _shipped_files(root) if p.name != "README.md"}
    assert files <= set(entries), f"files not in checkpoints/MANIFEST.json: {sorted(files - set(entries))}"
    for name in list_shipped():
        verify_shipped(root / name)


def test_a_code_folder_named_like_a_shipped_checkpoint_yields_to_it(tmp_path, monkeypatch):
    """Running from the source tree, ``vocoder`` is also the package folder: the shipped checkpoint wins."""
    from tts import checkpoints

    shipped = tmp_path / "shipped"
    (shipped / "vocoder").mkdir(parents=True)
    monkeypatch.setattr(checkpoints, "checkpoints_dir", lambda: shipped)
    monkeypatch.setattr(checkpoints, "verify_shipped", lambda folder: None)
    work = tmp_path / "work"
    (work / "vocoder").mkdir(parents=True)
    (work / "vocoder" / "__init__.py").write_text("")
    monkeypatch.chdir(work)
    assert checkpoints.resolve_checkpoint("vocoder") == shipped / "vocoder"
    (work / "vocoder" / "config.json").write_text("{}")
    assert checkpoints.resolve_checkpoint("vocoder") == Path("vocoder")
