"""The Vocos vocoder: ConvNeXt backbone over the studio log-mel, inverse-STFT head.

The studio's mel (`tts.audio.log_mel`) is exactly the published Vocos 24 kHz feature, so the parameter names
of this module follow the published state dict one-to-one (``backbone.embed``, ``backbone.convnext.N.*``,
``head.out``, ``head.istft.window``) and `convert_published_state_dict` loads ``charactr/vocos-mel-24khz``.
Upstream names stay inside this file; the rest of the studio sees `Vocos`, `VocosConfig`, `Vocos.decode`.

Shapes (one convention for the whole file):
    B   batch
    M   mel bands (``input_channels``, 100)
    F   mel frames (93.75 per second at 24 kHz / hop 256)
    D   backbone width (``dim``)
    H   ConvNeXt hidden width (``intermediate_dim``)
    K   STFT bins, ``n_fft // 2 + 1``
    T   audio samples; for F frames the head returns ``(F - 1) * hop_length`` samples, so a clip of
        ``n * hop_length`` samples comes back at exactly its own length from ``log_mel`` -> `Vocos`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from tts.audio import STUDIO_MEL, Audio
from tts.checkpoints import (
    PretrainedMixin,
    load_foreign_torch_checkpoint,
    load_safetensors,
    load_state_strict,
    resolve_checkpoint,
)
from tts.errors import CheckpointError
from vocoder.streaming import stream, streaming_lookahead

logger = logging.getLogger(__name__)

FEATURE_EXTRACTOR_PREFIX = "feature_extractor."
"""Published keys under this prefix hold the mel front end that `tts.audio.log_mel` replaces."""

PUBLISHED_HUB_ID = "charactr/vocos-mel-24khz"

MAGNITUDE_CLIP = 1e2
"""The head's linear magnitude is ``exp(log_mag)`` clipped here (as published), so a wild frame cannot blow up."""


@dataclass(frozen=True)
class VocosConfig:
    """Size and signal settings of a `Vocos` model. Defaults are the published 24 kHz model (13.5M params),
    whose signal settings are the studio mel's (`tts.audio.STUDIO_MEL`).

    Attributes:
        input_channels: mel bands M of the input.
        dim: backbone width D.
        intermediate_dim: ConvNeXt MLP width H.
        num_layers: ConvNeXt blocks.
        kernel_size: temporal kernel of the embedding and depthwise convolutions (odd).
        layer_scale_init_value: initial per-channel residual scale; None means ``1 / num_layers``.
        layer_norm_eps: epsilon of every LayerNorm.
        n_fft: inverse STFT size (the head predicts ``n_fft // 2 + 1`` bins).
        hop_length: samples per mel frame; must equal the mel's hop.
        padding: ``"center"`` (torch.istft centre trimming, matching the centred mel); the only one supported.
        sample_rate: output rate in Hz; must equal the mel's rate.
    """

    input_channels: int = STUDIO_MEL.n_mels
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    kernel_size: int = 7
    layer_scale_init_value: float | None = None
    layer_norm_eps: float = 1e-6
    n_fft: int = STUDIO_MEL.n_fft
    hop_length: int = STUDIO_MEL.hop_length
    padding: str = "center"
    sample_rate: int = STUDIO_MEL.sample_rate

    def __post_init__(self) -> None:
        if self.padding != "center":
            raise ValueError(f"VocosConfig.padding {self.padding!r} is not supported; use 'center'")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"VocosConfig.kernel_size must be odd, got {self.kernel_size}")
        if min(self.input_channels, self.dim, self.intermediate_dim, self.n_fft, self.hop_length) <= 0:
            raise ValueError("VocosConfig sizes must be positive")

    @property
    def receptive_field(self) -> int:
        """Mel frames of context the backbone sees on EACH side of a frame (embedding + every block)."""
        return (self.kernel_size // 2) * (self.num_layers + 1)

    @property
    def layer_scale(self) -> float:
        """The initial layer-scale value actually used."""
        return self.layer_scale_init_value if self.layer_scale_init_value is not None else 1.0 / self.num_layers


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> MLP (GELU) -> layer scale -> residual. ``(B, D, F) -> (B, D, F)``."""

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        dim = config.dim
        self.dwconv = nn.Conv1d(dim, dim, config.kernel_size, padding=config.kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.pwconv1 = nn.Linear(dim, config.intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(config.intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(config.layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, D, F)``."""
        residual = x
        h = self.dwconv(x).transpose(1, 2)  # (B, F, D): the MLP and norm act per frame
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return residual + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Embedding conv, LayerNorm, ConvNeXt blocks, final LayerNorm. ``(B, M, F) -> (B, F, D)``."""

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        self.embed = nn.Conv1d(config.input_channels, config.dim, config.kernel_size, padding=config.kernel_size // 2)
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.convnext = nn.ModuleList(ConvNeXtBlock(config) for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Small truncated-normal weights keep the initial residual stream near the embedding.
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel``: ``(B, M, F)`` -> ``(B, F, D)``."""
        x = self.embed(mel)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class InverseSTFT(nn.Module):
    """``torch.istft`` with a centred hann window: ``(B, K, F)`` complex -> ``(B, (F - 1) * hop)``."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        # clone(): a periodic hann window is a view into n_fft + 1 values, which safetensors refuses to load into.
        self.register_buffer("window", torch.hann_window(n_fft).clone())

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        """``spectrum``: ``(B, K, F)`` complex."""
        return torch.istft(
            spectrum, self.n_fft, self.hop_length, self.n_fft, window=self.window.to(spectrum.real.dtype), center=True
        )


class ISTFTHead(nn.Module):
    """Linear to log-magnitude and phase, then the inverse STFT. ``(B, F, D) -> (B, (F - 1) * hop)``."""

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        self.out = nn.Linear(config.dim, config.n_fft + 2)
        self.istft = InverseSTFT(config.n_fft, config.hop_length)

    def spectrum(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden``: ``(B, F, D)`` -> complex STFT frames ``(B, K, F)``."""
        # float32 from here on: the exp and the inverse FFT need it when the backbone runs in half precision.
        x = self.out(hidden).float().transpose(1, 2)
        log_magnitude, phase = x.chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude).clamp(max=MAGNITUDE_CLIP)
        # torch.polar would do the same; cos/sin keeps it exportable and explicit.
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden``: ``(B, F, D)`` -> audio ``(B, (F - 1) * hop)``."""
        return self.istft(self.spectrum(hidden))


class Vocos(PretrainedMixin, nn.Module):
    """Mel-to-waveform vocoder (Vocos architecture): ``(B, M, F)`` log-mel -> ``(B, (F - 1) * hop)`` audio.

    The input is the studio log-mel (`tts.audio.log_mel`). Load trained weights with `from_pretrained`
    (studio folders, the shipped ``vocoder`` default) or `from_published` (the published Vocos checkpoint).
    """

    config_class = VocosConfig

    def __init__(self, config: VocosConfig = VocosConfig()) -> None:
        super().__init__()
        self.config = config
        self.backbone = VocosBackbone(config)
        self.head = ISTFTHead(config)

    @property
    def sample_rate(self) -> int:
        """Output rate (Hz)."""
        return self.config.sample_rate

    @property
    def lookahead_frames(self) -> int:
        """Mel frames after a sample's own frame that exact streaming waits for (see `vocoder.streaming`)."""
        return streaming_lookahead(self.config)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel``: ``(B, M, F)`` -> audio ``(B, (F - 1) * hop)``."""
        if mel.dim() != 3 or mel.shape[1] != self.config.input_channels:
            raise ValueError(
                f"Vocos expects a (B, {self.config.input_channels}, F) log-mel, got shape {tuple(mel.shape)}"
            )
        if mel.shape[-1] < 2:
            raise ValueError("Vocos needs at least 2 mel frames (one hop of audio)")
        return self.head(self.backbone(mel))

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """Complex STFT frames ``(B, K, F)`` the head would invert (used by streaming)."""
        return self.head.spectrum(self.backbone(mel))

    @torch.inference_mode()
    def decode(self, mel: torch.Tensor | np.ndarray) -> Audio:
        """One ``(M, F)`` (or ``(1, M, F)``) log-mel -> `Audio` at the vocoder's rate."""
        mel = torch.as_tensor(mel, dtype=torch.float32)
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[0] != 1:
            raise ValueError(f"decode takes one mel of shape (M, F) or (1, M, F), got {tuple(mel.shape)}")
        param = next(self.parameters())
        audio = self(mel.to(device=param.device, dtype=param.dtype))
        return Audio(audio[0].float().cpu().numpy(), self.sample_rate)

    def stream(
        self, mel_chunks: Iterable[torch.Tensor | np.ndarray], lookahead_frames: int | None = None
    ) -> Iterator[np.ndarray]:
        """Generator: mel chunks ``(M, f)`` / ``(B, M, f)`` in, final audio chunks out (`vocoder.streaming`)."""
        return stream(self, mel_chunks, lookahead_frames)

    @classmethod
    def from_published(
        cls,
        path_or_hub_id: str | os.PathLike = PUBLISHED_HUB_ID,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> "Vocos":
        """The published ``charactr/vocos-mel-24khz`` vocoder, from a local folder or the hub.

        The folder holds ``config.yaml`` and ``pytorch_model.bin`` (or ``model.safetensors``), as published.
        Only the numeric fields of the YAML are read; the weights load with ``weights_only=True``.
        """
        folder = resolve_checkpoint(
            path_or_hub_id,
            revision=revision,
            local_files_only=local_files_only,
            allow_patterns=["config.yaml", "pytorch_model.bin"],
        )
        yaml_path = folder / "config.yaml"
        if not yaml_path.is_file():
            raise CheckpointError(
                f"{folder}: no config.yaml; expected the published Vocos files (config.yaml, pytorch_model.bin). "
                f"Download them with `huggingface-cli download {PUBLISHED_HUB_ID} --local-dir DIR` and pass DIR."
            )
        config = config_from_published_yaml(yaml_path.read_text(encoding="utf-8"), where=str(yaml_path))
        if (folder / "model.safetensors").is_file():
            weights_path = folder / "model.safetensors"
            state = load_safetensors(weights_path)
        elif (folder / "pytorch_model.bin").is_file():
            weights_path = folder / "pytorch_model.bin"
            state = load_foreign_torch_checkpoint(weights_path)
        else:
            raise CheckpointError(
                f"{folder}: no pytorch_model.bin or model.safetensors. Download the published files with "
                f"`huggingface-cli download {PUBLISHED_HUB_ID} --local-dir DIR` and pass DIR."
            )
        model = cls(config)
        load_state_strict(model, convert_published_state_dict(state, model), str(weights_path))
        return model.eval()


# ---------------------------------------------------------------------------------------------------------
# The published checkpoint


def _section(tree: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    section = tree.get(name)
    if not isinstance(section, Mapping):
        raise CheckpointError(f"{where}: no '{name}' section")
    # Published YAML nests the arguments under init_args next to a class_path we never import.
    args = section.get("init_args", section)
    if not isinstance(args, Mapping):
        raise CheckpointError(f"{where}: '{name}.init_args' is not a mapping")
    return args


def _number(args: Mapping[str, Any], key: str, where: str) -> int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{where}: expected an integer '{key}', got {value!r}")
    return value


def config_from_published(tree: Mapping[str, Any], where: str = "config") -> VocosConfig:
    """`VocosConfig` from the published config tree (``feature_extractor`` / ``backbone`` / ``head`` sections).

    Only numbers and the padding name are read. The feature extractor must be the studio mel, because
    `tts.audio.log_mel` replaces it.
    """
    features = _section(tree, "feature_extractor", where)
    backbone = _section(tree, "backbone", where)
    head = _section(tree, "head", where)
    mel = (
        _number(features, "sample_rate", where),
        _number(features, "n_fft", where),
        _number(features, "hop_length", where),
        _number(features, "n_mels", where),
        features.get("padding", "center"),
    )
    studio = (STUDIO_MEL.sample_rate, STUDIO_MEL.n_fft, STUDIO_MEL.hop_length, STUDIO_MEL.n_mels, "center")
    if mel != studio:
        raise CheckpointError(
            f"{where}: the checkpoint's mel (rate, n_fft, hop, bands, padding) = {mel} is not the studio mel {studio}"
        )
    if _number(head, "dim", where) != _number(backbone, "dim", where):
        raise CheckpointError(f"{where}: head.dim and backbone.dim differ")
    layer_scale = backbone.get("layer_scale_init_value")
    return VocosConfig(
        input_channels=_number(backbone, "input_channels", where),
        dim=_number(backbone, "dim", where),
        intermediate_dim=_number(backbone, "intermediate_dim", where),
        num_layers=_number(backbone, "num_layers", where),
        layer_scale_init_value=float(layer_scale) if isinstance(layer_scale, (int, float)) else None,
        n_fft=_number(head, "n_fft", where),
        hop_length=_number(head, "hop_length", where),
        padding=str(head.get("padding", "center")),
        sample_rate=_number(features, "sample_rate", where),
    )


def config_from_published_yaml(text: str, where: str = "config.yaml") -> VocosConfig:
    """`config_from_published` of a published ``config.yaml`` (parsed with ``yaml.safe_load``; nothing executes)."""
    import yaml

    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CheckpointError(f"{where}: not valid YAML ({error})") from error
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{where}: expected a mapping at the top level")
    return config_from_published(tree, where)


def convert_published_state_dict(state: Mapping[str, torch.Tensor], model: Vocos) -> dict[str, torch.Tensor]:
    """The published Vocos state dict as the state dict of `model` (built at the checkpoint's config).

    Drops the ``feature_extractor.*`` tensors (mel window and filterbank: `tts.audio.log_mel` computes the same
    feature) after checking they describe the studio mel, and checks every remaining key and shape. Raises
    `CheckpointError` on anything missing, unexpected or mis-shaped.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    converted: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is not a tensor")
            continue
        if key.startswith(FEATURE_EXTRACTOR_PREFIX):
            _check_feature_tensor(key, value, problems)
            continue
        if key not in expected:
            problems.append(f"unexpected {key}")
        elif tuple(value.shape) != expected[key]:
            problems.append(f"{key}: {tuple(value.shape)} vs {expected[key]}")
        else:
            converted[key] = value.float()
    missing = sorted(set(expected) - set(state))
    problems += [f"missing {key}" for key in missing]
    if problems:
        raise CheckpointError("the published Vocos state dict does not fit: " + "; ".join(problems[:10]))
    return converted


def _check_feature_tensor(key: str, value: torch.Tensor, problems: list[str]) -> None:
    """Published mel tensors must have the studio mel's shapes (window n_fft; filterbank (K, M))."""
    shapes = {
        "feature_extractor.mel_spec.spectrogram.window": (STUDIO_MEL.win_length,),
        "feature_extractor.mel_spec.mel_scale.fb": (STUDIO_MEL.n_fft // 2 + 1, STUDIO_MEL.n_mels),
    }
    if key not in shapes:
        problems.append(f"unexpected {key}")
    elif tuple(value.shape) != shapes[key]:
        problems.append(f"{key}: {tuple(value.shape)} is not the studio mel's {shapes[key]}")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "Vocos",
    "VocosConfig",
    "VocosBackbone",
    "ISTFTHead",
    "ConvNeXtBlock",
    "config_from_published",
    "config_from_published_yaml",
    "convert_published_state_dict",
    "count_parameters",
    "PUBLISHED_HUB_ID",
]
