"""Discriminators for adversarial vocoder training: multi-period (waveform) and multi-resolution (spectrogram).

Both return, for a batch of waveforms, one logit map and one list of feature maps per sub-discriminator; the
training recipe (`vocoder.train`) turns them into hinge and feature-matching losses. Widths are configurable so
a CPU run can use small ones and a GPU run the customary sizes.

Shapes: ``B`` batch, ``T`` samples, ``P`` period, ``F`` STFT frames, ``K`` STFT bins, ``C`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Features = list[torch.Tensor]
Outputs = tuple[list[torch.Tensor], list[Features]]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of both discriminators.

    Attributes:
        periods: one waveform sub-discriminator per period (samples folded into ``(T / P, P)`` images).
        period_channels: channels of the strided ``(5, 1)`` convolutions of each period sub-discriminator.
        resolutions: ``(n_fft, hop_length)`` of each spectrogram sub-discriminator.
        resolution_channels: channels of every spectrogram sub-discriminator's convolutions.
        resolution_strides: ``(frequency, time)`` strides of the first four spectrogram convolutions. The
            default keeps full time resolution; striding the first layer too makes a CPU run ~3 times cheaper.
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: tuple[int, ...] = (32, 128, 512, 1024)
    resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
    resolution_channels: int = 32
    resolution_strides: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (2, 1), (2, 1))


class PeriodDiscriminator(nn.Module):
    """Judges a waveform folded by one period: ``(B, T) -> logits (B, L)`` and feature maps.

    Samples ``P`` apart form one sequence; the ``P`` phases are judged by the same 1-D convolutions (kernel 5,
    stride 3), which is the usual ``(5, 1)`` 2-D convolution over a ``(T / P, P)`` image, computed as 1-D
    convolutions over ``B * P`` sequences because that is several times faster on CPUs.
    """

    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        layers = []
        previous = 1
        for index, width in enumerate(channels):
            stride = 3 if index < len(channels) - 1 else 1
            layers.append(weight_norm(nn.Conv1d(previous, width, 5, stride, padding=2)))
            previous = width
        self.convs = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv1d(previous, 1, 3, padding=1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        """``audio``: ``(B, T)``."""
        batch, length = audio.shape
        pad = (-length) % self.period
        if pad:
            audio = nn.functional.pad(audio.unsqueeze(1), (0, pad), mode="reflect").squeeze(1)
        # (B, T) -> (B, T / P, P) -> (B * P, 1, T / P): one sequence per phase.
        x = audio.view(batch, -1, self.period).transpose(1, 2).reshape(batch * self.period, 1, -1)
        features = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            features.append(x.view(batch, self.period, *x.shape[1:]))  # batch first, like every output
        x = self.output(x)
        features.append(x.view(batch, self.period, *x.shape[1:]))
        return x.reshape(batch, -1), features


class ResolutionDiscriminator(nn.Module):
    """Judges the log-magnitude spectrogram at one STFT resolution: ``(B, T) -> logits`` and feature maps."""

    def __init__(self, n_fft: int, hop_length: int, channels: int, strides: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        if len(strides) != 4:
            raise ValueError(f"resolution_strides needs 4 (frequency, time) pairs, got {len(strides)}")
        kernels = [(7, 5), (5, 3), (5, 3), (5, 3), (3, 3)]
        layers = []
        for index, (kernel, stride) in enumerate(zip(kernels, [*strides, (1, 1)])):
            padding = (kernel[0] // 2, kernel[1] // 2)
            layers.append(weight_norm(nn.Conv2d(1 if index == 0 else channels, channels, kernel, stride, padding=padding)))
        self.convs = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        """``audio``: ``(B, T)``."""
        spectrum = torch.stft(
            audio.float(), self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True
        ).abs()
        x = torch.log(spectrum.clamp(min=1e-5)).unsqueeze(1)  # (B, 1, K, F)
        features = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            features.append(x)
        x = self.output(x)
        features.append(x)
        return x.flatten(1), features


class _MultiDiscriminator(nn.Module):
    """Runs every sub-discriminator on the same waveforms."""

    discriminators: nn.ModuleList

    def forward(self, audio: torch.Tensor) -> Outputs:
        """``audio``: ``(B, T)`` -> (logits per sub-discriminator, features per sub-discriminator)."""
        results = [d(audio) for d in self.discriminators]
        return [r[0] for r in results], [r[1] for r in results]


class MultiPeriodDiscriminator(_MultiDiscriminator):
    """One `PeriodDiscriminator` per configured period."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, config.period_channels) for p in config.periods)


class MultiResolutionDiscriminator(_MultiDiscriminator):
    """One `ResolutionDiscriminator` per configured STFT resolution."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(n_fft, hop, config.resolution_channels, config.resolution_strides)
            for n_fft, hop in config.resolutions
        )
