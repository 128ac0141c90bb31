"""The tone-color converter's own feature: a linear-magnitude STFT (not the studio's log-mel).

The published OpenVoice converter was trained on this spectrogram, so its weights only make sense on it:
reflect-pad ``(n_fft - hop) / 2`` samples on each side, a non-centered STFT with a periodic Hann window, and
``sqrt(re^2 + im^2 + eps)`` (the epsilon keeps the gradient of the square root finite at zero).

Shapes: ``B`` batch, ``T`` samples, ``K`` frequency bins (``n_fft // 2 + 1``), ``F`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tts.errors import AudioError


@dataclass(frozen=True)
class SpectrogramConfig:
    """Settings of the converter's linear spectrogram; the defaults are those of OpenVoice V2 (22.05 kHz)."""

    sample_rate: int = 22_050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    magnitude_eps: float = 1e-6

    def __post_init__(self) -> None:
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"hop_length must be in (0, n_fft={self.n_fft}], got {self.hop_length}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even: the signal is padded by half of it on each side")

    @property
    def n_freqs(self) -> int:
        """Frequency bins per frame (``K``)."""
        return self.n_fft // 2 + 1

    @property
    def pad(self) -> int:
        """Reflect padding added on each side of the signal."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def min_samples(self) -> int:
        """Shortest signal that gives one frame (reflect padding needs more samples than it pads)."""
        return max(self.pad + 1, self.n_fft - 2 * self.pad)

    def num_frames(self, num_samples: int) -> int:
        """Frames `linear_spectrogram` returns for `num_samples` samples."""
        return (num_samples + 2 * self.pad - self.n_fft) // self.hop_length + 1


def linear_spectrogram(samples: torch.Tensor | np.ndarray, config: SpectrogramConfig = SpectrogramConfig()) -> torch.Tensor:
    """Linear-magnitude spectrogram: ``(T,)`` -> ``(K, F)`` or ``(B, T)`` -> ``(B, K, F)``.

    Samples must already be at ``config.sample_rate``. ``F = config.num_frames(T)``.

    Raises:
        AudioError: a signal shorter than ``config.min_samples``.
    """
    wave = torch.as_tensor(samples, dtype=torch.float32) if isinstance(samples, np.ndarray) else samples
    squeeze = wave.dim() == 1
    if squeeze:
        wave = wave.unsqueeze(0)
    if wave.dim() != 2:
        raise ValueError(f"linear_spectrogram expects (T,) or (B, T) samples, got shape {tuple(wave.shape)}")
    if wave.shape[-1] < config.min_samples:
        raise AudioError(
            f"the audio is {wave.shape[-1]} samples long; the converter needs at least {config.min_samples} "
            f"samples ({config.min_samples / config.sample_rate * 1000:.0f} ms at {config.sample_rate} Hz)"
        )
    padded = torch.nn.functional.pad(wave.unsqueeze(1), (config.pad, config.pad), mode="reflect").squeeze(1)
    window = torch.hann_window(config.win_length, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(
        padded,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=False,
        return_complex=True,
    )
    magnitude = torch.sqrt(spec.real.square() + spec.imag.square() + config.magnitude_eps)
    return magnitude.squeeze(0) if squeeze else magnitude
