"""OpenVoice V2 tone-color converter: the architecture, its config, and loading of the published weights.

Conversion (OpenVoice): the posterior encoder turns the source's linear spectrogram into latent frames ``z``;
the normalizing flow, conditioned on the source's tone color, maps ``z`` to a timbre-free ``z_p`` (forward);
the same flow in reverse, conditioned on the target's tone color, maps ``z_p`` back to ``z_hat``; the HiFi-GAN
generator decodes ``z_hat`` into a waveform. With ``zero_g`` (the published V2 setting) the tone color enters
only through the flow: the encoder and the decoder receive a zero vector (their conditioning biases remain).

The converter runs at its own sample rate (22.05 kHz for the published weights) on its own feature
(`converter.spectrogram.linear_spectrogram`); the audio-level helpers resample at the edges and return the
studio's 24 kHz `Audio`.

Shapes: ``B`` batch, ``K`` frequency bins (``n_fft // 2 + 1``), ``F`` spectrogram frames, ``C`` latent channels
(``inter_channels``), ``G`` tone-color channels (``gin_channels``), ``T`` waveform samples (``F * hop``).
A tone color is ``(B, G, 1)`` at the tensor level and one ``(G,)`` vector at the audio level.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from converter.modules import (
    CouplingFlow,
    HifiGanGenerator,
    MelDecoder,
    PosteriorEncoder,
    ReferenceEncoder,
    sequence_mask,
)
from converter.spectrogram import SpectrogramConfig, linear_spectrogram
from tts import preprocess
from tts.audio import SAMPLE_RATE, STUDIO_MEL, Audio
from tts.checkpoints import (
    PretrainedMixin,
    load_foreign_torch_checkpoint,
    load_state_strict,
    resolve_checkpoint,
)
from tts.errors import AudioError, CheckpointError

logger = logging.getLogger(__name__)

PUBLISHED_HUB_ID = "myshell-ai/OpenVoiceV2"
"""Hugging Face repo of the published converter (its files live under ``converter/``)."""

PUBLISHED_CONFIG_NAME = "config.json"
PUBLISHED_WEIGHTS_NAME = "checkpoint.pth"

_LEGACY_G, _LEGACY_V = ".weight_g", ".weight_v"
_PARAM_G, _PARAM_V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"


@dataclass(frozen=True)
class ConverterConfig:
    """Hyper-parameters of `ToneColorConverter`; the defaults are the published OpenVoice V2 converter.

    The posterior encoder and flow sizes (``posterior_*``, ``flow_*``, ``n_flows``) and the reference encoder
    (``ref_enc_*``) are fixed in the published code rather than in its ``config.json``; they are fields here so
    smaller converters can be trained.
    """

    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)
    inter_channels: int = 192
    hidden_channels: int = 192
    posterior_kernel_size: int = 5
    posterior_dilation_rate: int = 1
    posterior_layers: int = 16
    flow_kernel_size: int = 5
    flow_dilation_rate: int = 1
    flow_layers: int = 4
    n_flows: int = 4
    flow_dropout: float = 0.0
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    gin_channels: int = 256
    zero_g: bool = True
    ref_enc_filters: tuple[int, ...] = (32, 32, 64, 64, 128, 128)
    ref_enc_gru_channels: int = 128
    ref_enc_layernorm: bool = True
    decoder: str = "hifigan"
    """``"hifigan"``: the published waveform generator; ``"mel"``: a WaveNet decoder to the studio's log-mel,
    rendered by the studio vocoder (the trained default: far cheaper to train than a waveform generator)."""
    mel_decoder_layers: int = 8
    mel_decoder_kernel_size: int = 5

    def __post_init__(self) -> None:
        if self.decoder not in ("hifigan", "mel"):
            raise ValueError(f"decoder must be 'hifigan' or 'mel', got {self.decoder!r}")
        if self.decoder == "mel":
            studio = (STUDIO_MEL.sample_rate, STUDIO_MEL.hop_length)
            if (self.spectrogram.sample_rate, self.spectrogram.hop_length) != studio:
                raise ValueError(
                    f"a mel decoder emits the studio's mel frames, so the spectrogram must run at {studio[0]} Hz "
                    f"with hop {studio[1]}, got {self.spectrogram.sample_rate} Hz hop {self.spectrogram.hop_length}"
                )
        if self.resblock != "1":
            raise ValueError(f"resblock {self.resblock!r} is not supported; the OpenVoice converter uses '1'")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if self.decoder == "hifigan" and math.prod(self.upsample_rates) != self.spectrogram.hop_length:
            raise ValueError(
                f"the decoder upsamples by {math.prod(self.upsample_rates)} but the spectrogram hop is "
                f"{self.spectrogram.hop_length}: one frame must decode to exactly one hop of samples"
            )
        if any((k - r) % 2 for k, r in zip(self.upsample_kernel_sizes, self.upsample_rates)):
            raise ValueError("each upsample kernel size minus its rate must be even")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve cleanly at every upsampling stage")
        if self.inter_channels % 2:
            raise ValueError(f"inter_channels must be even (the flow splits it in halves), got {self.inter_channels}")
        if self.gin_channels <= 0:
            raise ValueError("gin_channels must be positive: the tone color conditions the flow")

    @property
    def sample_rate(self) -> int:
        """The converter's own sample rate (Hz)."""
        return self.spectrogram.sample_rate


# Keys of the published config.json's "model" section that describe a text encoder the converter does not
# have (OpenVoice shares one config format with its TTS models). They are read and ignored.
_PUBLISHED_UNUSED_MODEL_KEYS = frozenset({"filter_channels", "n_heads", "n_layers", "kernel_size", "p_dropout"})
_PUBLISHED_MODEL_KEYS = frozenset(
    {
        "zero_g",
        "inter_channels",
        "hidden_channels",
        "resblock",
        "resblock_kernel_sizes",
        "resblock_dilation_sizes",
        "upsample_rates",
        "upsample_initial_channel",
        "upsample_kernel_sizes",
        "gin_channels",
    }
)
_PUBLISHED_DATA_KEYS = frozenset({"sampling_rate", "filter_length", "hop_length", "win_length", "n_speakers"})


def config_from_published(published: Mapping[str, Any]) -> ConverterConfig:
    """`ConverterConfig` from the published converter's ``config.json`` (its ``data`` and ``model`` sections).

    Raises:
        CheckpointError: unknown keys, or a multi-speaker config (``n_speakers > 0`` has a speaker table
            instead of the reference encoder, which this converter does not support).
    """
    try:
        data, model = dict(published["data"]), dict(published["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"published converter config: expected 'data' and 'model' sections ({error})") from error
    unknown = sorted(set(data) - _PUBLISHED_DATA_KEYS) + sorted(
        set(model) - _PUBLISHED_MODEL_KEYS - _PUBLISHED_UNUSED_MODEL_KEYS
    )
    if unknown:
        raise CheckpointError(f"published converter config: unknown keys {unknown}")
    if data.get("n_speakers", 0) != 0:
        raise CheckpointError(
            f"published converter config has n_speakers={data['n_speakers']}: a speaker-table model, not a "
            "tone-color converter with a reference encoder"
        )
    spectrogram = SpectrogramConfig(
        sample_rate=int(data["sampling_rate"]),
        n_fft=int(data["filter_length"]),
        hop_length=int(data["hop_length"]),
        win_length=int(data["win_length"]),
    )
    return ConverterConfig(
        spectrogram=spectrogram,
        inter_channels=int(model["inter_channels"]),
        hidden_channels=int(model["hidden_channels"]),
        resblock=str(model["resblock"]),
        resblock_kernel_sizes=tuple(int(k) for k in model["resblock_kernel_sizes"]),
        resblock_dilation_sizes=tuple(tuple(int(d) for d in ds) for ds in model["resblock_dilation_sizes"]),
        upsample_rates=tuple(int(r) for r in model["upsample_rates"]),
        upsample_initial_channel=int(model["upsample_initial_channel"]),
        upsample_kernel_sizes=tuple(int(k) for k in model["upsample_kernel_sizes"]),
        gin_channels=int(model["gin_channels"]),
        zero_g=bool(model.get("zero_g", False)),
    )


def convert_published_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the published checkpoint's legacy weight-norm names onto `ToneColorConverter`'s parametrization.

    ``X.weight_g`` -> ``X.parametrizations.weight.original0`` (magnitude) and ``X.weight_v`` ->
    ``X.parametrizations.weight.original1`` (direction); every other key is unchanged. Each ``weight_g`` must
    come with its ``weight_v`` and have the shape ``(out, 1, ...)`` that weight normalization over dim 0 gives.
    The result is then loaded strictly (`tts.checkpoints.load_state_strict`), which checks every key and shape
    against the module.

    Raises:
        CheckpointError: a non-tensor value, an unpaired or mis-shaped ``weight_g``/``weight_v``.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"published converter state: {key} is a {type(value).__name__}, not a tensor")
        if key.endswith(_LEGACY_G) or key.endswith(_LEGACY_V):
            base = key[: -len(_LEGACY_G)]
            magnitude, direction = state.get(base + _LEGACY_G), state.get(base + _LEGACY_V)
            if magnitude is None or direction is None:
                raise CheckpointError(f"published converter state: {base} has only one of weight_g / weight_v")
            expected = (direction.shape[0],) + (1,) * (direction.dim() - 1)
            if tuple(magnitude.shape) != expected:
                raise CheckpointError(
                    f"published converter state: {base}.weight_g has shape {tuple(magnitude.shape)}, expected "
                    f"{expected} for weight_v of shape {tuple(direction.shape)}"
                )
            new_key = base + (_PARAM_G if key.endswith(_LEGACY_G) else _PARAM_V)
        else:
            new_key = key
        if new_key in converted:
            raise CheckpointError(f"published converter state: two keys map onto {new_key}")
        converted[new_key] = value
    return converted


def to_published_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `convert_published_state_dict`: this module's state in the published naming."""
    published = {}
    for key, value in state.items():
        if key.endswith(_PARAM_G):
            key = key[: -len(_PARAM_G)] + _LEGACY_G
        elif key.endswith(_PARAM_V):
            key = key[: -len(_PARAM_V)] + _LEGACY_V
        published[key] = value
    return published


class ToneColorConverter(PretrainedMixin, nn.Module):
    """OpenVoice tone-color converter: re-voices speech with another tone color, keeping everything else.

    Submodules keep the published names so its weights load one-to-one: ``enc_q`` (posterior encoder),
    ``flow`` (tone-color-conditioned coupling flow), ``dec`` (HiFi-GAN generator), ``ref_enc`` (tone-color
    extractor).
    """

    config_class = ConverterConfig

    def __init__(self, config: ConverterConfig = ConverterConfig()) -> None:
        super().__init__()
        self.config = config
        n_freqs = config.spectrogram.n_freqs
        self.enc_q = PosteriorEncoder(
            n_freqs,
            config.inter_channels,
            config.hidden_channels,
            config.posterior_kernel_size,
            config.posterior_dilation_rate,
            config.posterior_layers,
            gin_channels=config.gin_channels,
        )
        self.flow = CouplingFlow(
            config.inter_channels,
            config.hidden_channels,
            config.flow_kernel_size,
            config.flow_dilation_rate,
            config.flow_layers,
            config.n_flows,
            gin_channels=config.gin_channels,
            dropout=config.flow_dropout,
        )
        self.dec: nn.Module
        if config.decoder == "mel":
            self.dec = MelDecoder(
                config.inter_channels,
                STUDIO_MEL.n_mels,
                config.hidden_channels,
                config.mel_decoder_kernel_size,
                config.mel_decoder_layers,
                gin_channels=config.gin_channels,
            )
        else:
            self.dec = HifiGanGenerator(
                config.inter_channels,
                config.resblock_kernel_sizes,
                config.resblock_dilation_sizes,
                config.upsample_rates,
                config.upsample_initial_channel,
                config.upsample_kernel_sizes,
                gin_channels=config.gin_channels,
            )
        self.ref_enc = ReferenceEncoder(
            n_freqs,
            config.gin_channels,
            config.ref_enc_filters,
            config.ref_enc_gru_channels,
            layernorm=config.ref_enc_layernorm,
        )

    # -- loading the published weights ------------------------------------------------------------------

    @classmethod
    def from_published(
        cls,
        source: str | os.PathLike = PUBLISHED_HUB_ID,
        revision: str | None = None,
        local_files_only: bool = False,
        device: torch.device | str | None = None,
    ) -> "ToneColorConverter":
        """Load the published OpenVoice converter strictly.

        Args:
            source: the hub id ``myshell-ai/OpenVoiceV2``, a local copy of that repo, its ``converter/`` folder,
                or the ``checkpoint.pth`` itself (with ``config.json`` beside it).
            revision, local_files_only: passed to `tts.checkpoints.resolve_checkpoint` for hub ids.
            device: where to put the model (CPU by default).

        Raises:
            CheckpointError: missing files, an unreadable or pickled-code checkpoint, or weights that do not fit.
        """
        path = Path(source).expanduser()
        if path.is_file():
            folder, weights = path.parent, path
        else:
            folder = resolve_checkpoint(
                source,
                revision=revision,
                local_files_only=local_files_only,
                allow_patterns=[f"converter/{PUBLISHED_CONFIG_NAME}", f"converter/{PUBLISHED_WEIGHTS_NAME}"],
            )
            if (folder / "converter").is_dir():
                folder = folder / "converter"
            weights = folder / PUBLISHED_WEIGHTS_NAME
        config_path = folder / PUBLISHED_CONFIG_NAME
        for needed in (config_path, weights):
            if not needed.is_file():
                raise CheckpointError(
                    f"{needed} is missing. The published converter is a folder with {PUBLISHED_CONFIG_NAME} and "
                    f"{PUBLISHED_WEIGHTS_NAME}; on a machine with internet run `huggingface-cli download "
                    f"{PUBLISHED_HUB_ID} --local-dir DIR` and pass DIR (or DIR/converter)."
                )
        try:
            config = config_from_published(json.loads(config_path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{config_path}: not valid JSON ({error})") from error
        payload = load_foreign_torch_checkpoint(weights)
        state = payload.get("model") if isinstance(payload, Mapping) else None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{weights}: expected a dict with the converter's state dict under 'model'")
        model = cls(config)
        load_state_strict(model, convert_published_state_dict(state), str(weights))
        model.eval()
        return model.to(device) if device is not None else model

    # -- tensor level ---------------------------------------------------------------------------------------

    def spectrogram(self, samples: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The converter's linear spectrogram of samples at its own rate: ``(T,)`` -> ``(K, F)``, ``(B, T)`` -> ``(B, K, F)``."""
        return linear_spectrogram(samples, self.config.spectrogram)

    def extract_tone_color(self, spec: torch.Tensor) -> torch.Tensor:
        """Tone color of each clip: ``spec (B, K, F)`` -> ``(B, G, 1)``. Clips in a batch must be unpadded."""
        self._check_spec(spec)
        return self.ref_enc(spec.transpose(1, 2)).unsqueeze(-1)

    def encode(
        self,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        tone: torch.Tensor,
        tau: float = 0.3,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior latent of a spectrogram: ``(B, K, F)`` -> ``z (B, C, F)`` and its mask ``(B, 1, F)``.

        ``tau`` scales the posterior's sampling noise (0: its mean, deterministic).
        """
        mask = sequence_mask(spec_lengths, spec.shape[-1]).to(spec.dtype)
        z, _, _ = self.enc_q(spec, mask, g=self._encoder_decoder_condition(tone), tau=tau, generator=generator)
        return z, mask

    def decode(self, z: torch.Tensor, mask: torch.Tensor, tone: torch.Tensor) -> torch.Tensor:
        """Decode latent frames ``z (B, C, F)``, zero past each item's length: the waveform ``(B, 1, F * hop)``
        (``decoder="hifigan"``) or the studio log-mel ``(B, M, F)`` (``decoder="mel"``)."""
        g = self._encoder_decoder_condition(tone)
        if self.config.decoder == "mel":
            return self.dec(z, mask, g=g)
        wave = self.dec(z * mask, g=g)
        return wave * torch.repeat_interleave(mask, self.config.spectrogram.hop_length, dim=-1)

    def convert(
        self,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        source_tone: torch.Tensor,
        target_tone: torch.Tensor,
        tau: float = 0.3,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Re-voice spectrograms from the source's tone color to the target's: ``(B, K, F)`` -> what `decode`
        gives (``(B, 1, F * hop)`` waveforms, or ``(B, M, F)`` log-mels with the mel decoder).

        Args:
            spec: linear spectrograms of the source speech (`spectrogram`).
            spec_lengths: ``(B,)`` valid frames of each item.
            source_tone, target_tone: ``(B, G, 1)`` tone colors (`extract_tone_color`).
            tau: posterior sampling temperature; 0 is deterministic, OpenVoice's default is 0.3.
            generator: random generator for the posterior noise (reproducible conversions).
        """
        self._check_spec(spec)
        for name, tone in (("source_tone", source_tone), ("target_tone", target_tone)):
            self._check_tone(tone, spec.shape[0], name)
        if spec_lengths.shape != (spec.shape[0],) or int(spec_lengths.min()) < 1 or int(spec_lengths.max()) > spec.shape[-1]:
            raise ValueError(f"spec_lengths must be (B,) values in [1, {spec.shape[-1]}], got {spec_lengths.tolist()}")
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        z, mask = self.encode(spec, spec_lengths, source_tone, tau=tau, generator=generator)
        timbre_free = self.flow(z, mask, g=source_tone)
        z_target = self.flow(timbre_free, mask, g=target_tone, reverse=True)
        return self.decode(z_target, mask, target_tone)

    def _encoder_decoder_condition(self, tone: torch.Tensor) -> torch.Tensor:
        # zero_g: only the flow sees the tone color; encoder and decoder get zeros (so only their biases act).
        return torch.zeros_like(tone) if self.config.zero_g else tone

    def _check_spec(self, spec: torch.Tensor) -> None:
        n_freqs = self.config.spectrogram.n_freqs
        if spec.dim() != 3 or spec.shape[1] != n_freqs:
            raise ValueError(f"expected a (B, {n_freqs}, F) linear spectrogram, got shape {tuple(spec.shape)}")

    def _check_tone(self, tone: torch.Tensor, batch: int, name: str) -> None:
        expected = (batch, self.config.gin_channels, 1)
        if tuple(tone.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(tone.shape)}")

    # -- audio level ----------------------------------------------------------------------------------------

    def tone_color(
        self, audio: Audio, segments: list[preprocess.Segment] | None = None, chunk_seconds: float = 10.0
    ) -> torch.Tensor:
        """The tone-color vector ``(G,)`` of a reference clip, averaged over its voiced speech.

        As OpenVoice does: keep the voiced segments (silero-vad unless `segments`, a list of
        `tts.preprocess.Segment`, is given; the whole clip if none is found), cut the voiced audio into
        about `chunk_seconds`-long pieces, and average the pieces' tone colors.

        Raises:
            AudioError: too little audio for one spectrogram frame.
        """
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
        if segments is None:
            segments = preprocess.voiced_segments(audio)
        if not segments:
            logger.info("no voiced segments found in %r; using the whole clip for its tone color", audio)
        voiced = preprocess.voiced_audio(audio, segments).resample(self.config.sample_rate)
        chunk_count = max(1, round(voiced.duration / chunk_seconds))
        chunks = [c for c in np.array_split(voiced.samples, chunk_count) if len(c) >= self.config.spectrogram.min_samples]
        if not chunks:
            raise AudioError(
                f"{voiced.duration * 1000:.0f} ms of voiced audio is too short for a tone color; "
                "use a reference of a few seconds of speech"
            )
        device = self._device()
        with torch.no_grad():
            tones = [self.extract_tone_color(self.spectrogram(torch.from_numpy(c).to(device)[None])) for c in chunks]
        return torch.stack(tones).mean(dim=0)[0, :, 0].cpu()

    def convert_audio(
        self,
        audio: Audio,
        source_tone: torch.Tensor,
        target_tone: torch.Tensor,
        tau: float = 0.3,
        generator: torch.Generator | None = None,
        vocoder: Callable[[torch.Tensor], Audio] | None = None,
    ) -> Audio:
        """`audio` re-voiced with `target_tone` (``(G,)`` vectors from `tone_color`), as studio 24 kHz audio.

        A mel-decoder converter needs `vocoder`: studio log-mel ``(M, F)`` -> `Audio` (the studio vocoder's
        ``decode``). The output lasts exactly as long as the input.
        """
        if self.config.decoder == "mel" and vocoder is None:
            raise ValueError("this converter decodes to the studio mel: pass vocoder= (e.g. the studio vocoder's decode)")
        tones = [self._tone_batch(tone, name) for tone, name in ((source_tone, "source_tone"), (target_tone, "target_tone"))]
        samples = audio.resample(self.config.sample_rate).samples
        device = self._device()
        with torch.no_grad():
            spec = self.spectrogram(torch.from_numpy(samples).to(device)[None])
            lengths = torch.tensor([spec.shape[-1]], device=device)
            decoded = self.convert(spec, lengths, tones[0], tones[1], tau=tau, generator=generator)[0]
            if self.config.decoder == "mel":
                # The studio mel has one frame more than this spectrogram (centered STFT): repeat the last.
                mel = torch.cat([decoded, decoded[:, -1:]], dim=1).float().cpu()
                wave = vocoder(mel).resample(self.config.sample_rate).samples
            else:
                wave = decoded[0].cpu().numpy()
        wave = np.pad(wave, (0, max(0, len(samples) - len(wave))))[: len(samples)]
        converted = Audio(wave, self.config.sample_rate).resample(SAMPLE_RATE)
        target_length = round(len(audio) * SAMPLE_RATE / audio.sample_rate)
        return Audio(np.pad(converted.samples, (0, max(0, target_length - len(converted))))[:target_length], SAMPLE_RATE)

    def _tone_batch(self, tone: torch.Tensor, name: str) -> torch.Tensor:
        """A ``(G,)`` tone-color vector as a ``(1, G, 1)`` batch on the model's device."""
        tone = torch.as_tensor(tone, dtype=torch.float32)
        if tuple(tone.shape) != (self.config.gin_channels,):
            raise ValueError(
                f"{name} must be a ({self.config.gin_channels},) tone-color vector (from tone_color), "
                f"got shape {tuple(tone.shape)}"
            )
        if not bool(torch.isfinite(tone).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        return tone.to(self._device())[None, :, None]

    def _device(self) -> torch.device:
        return next(self.parameters()).device
