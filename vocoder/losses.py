"""Vocoder training losses: studio mel L1, multi-resolution STFT, phase derivatives, hinge adversarial and feature
matching.

Shapes: ``B`` batch, ``T`` samples; every loss returns a scalar tensor.
"""

from __future__ import annotations

import torch

from tts.audio import STUDIO_MEL, MelConfig, log_mel

STFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
"""``(n_fft, hop_length)`` pairs of the multi-resolution STFT loss (hann window of n_fft)."""


def mel_l1(generated: torch.Tensor, target: torch.Tensor, config: MelConfig = STUDIO_MEL) -> torch.Tensor:
    """Mean absolute difference of the studio log-mels of two ``(B, T)`` waveforms."""
    return torch.nn.functional.l1_loss(log_mel(generated, config), log_mel(target, config))


def multi_resolution_stft_loss(
    generated: torch.Tensor,
    target: torch.Tensor,
    resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS,
) -> torch.Tensor:
    """Spectral convergence plus log-magnitude L1, averaged over `resolutions`, for ``(B, T)`` waveforms."""
    total = generated.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=generated.device)
        spec = dict(n_fft=n_fft, hop_length=hop, window=window, center=True, return_complex=True)
        fake = torch.stft(generated, **spec).abs().clamp(min=1e-7)
        real = torch.stft(target, **spec).abs().clamp(min=1e-7)
        convergence = torch.linalg.norm(real - fake) / torch.linalg.norm(real).clamp(min=1e-7)
        magnitude = torch.nn.functional.l1_loss(torch.log(fake), torch.log(real))
        total = total + convergence + magnitude
    return total / len(resolutions)


def _anti_wrapped(difference: torch.Tensor) -> torch.Tensor:
    """``|x - 2 pi round(x / 2 pi)|``: the distance of a phase difference to the nearest whole turn."""
    return torch.abs(difference - 2 * torch.pi * torch.round(difference / (2 * torch.pi)))


def phase_derivative_loss(generated: torch.Tensor, target: torch.Tensor, n_fft: int = 1024, hop_length: int = 256,
                          floor: float = 1e-4) -> torch.Tensor:
    """Group delay and instantaneous frequency errors (APNet's anti-wrapped phase losses) for ``(B, T)`` waveforms.

    The phase's difference across frequency (group delay) and across frames (instantaneous frequency) of the
    generated STFT against the target's, each wrapped to the nearest turn. Derivatives, not the phase itself, so a
    global phase offset or a flipped polarity, which a mel cannot tell, costs nothing. Each bin counts by the
    target's magnitude (bins of silence have no phase to learn); the result is in radians, 0 to pi.
    """
    window = torch.hann_window(n_fft, device=generated.device)
    spec = dict(n_fft=n_fft, hop_length=hop_length, window=window, center=True, return_complex=True)
    fake, real = torch.stft(generated, **spec), torch.stft(target, **spec)
    weight = real.abs()
    weight = weight / weight.sum(dim=(-2, -1), keepdim=True).clamp(min=floor)
    fake_phase, real_phase = torch.angle(fake), torch.angle(real)
    total = generated.new_zeros(())
    for dim in (-2, -1):  # frequency (group delay), time (instantaneous frequency)
        error = _anti_wrapped(torch.diff(fake_phase, dim=dim) - torch.diff(real_phase, dim=dim))
        pair = weight.narrow(dim, 1, weight.shape[dim] - 1)
        total = total + (error * pair).sum(dim=(-2, -1)).mean()
    return total / 2


def discriminator_hinge_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator, summed over sub-discriminators."""
    return sum(
        torch.relu(1 - real).mean() + torch.relu(1 + fake).mean() for real, fake in zip(real_logits, fake_logits)
    )


def generator_hinge_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the generator, summed over sub-discriminators."""
    return sum(torch.relu(1 - fake).mean() for fake in fake_logits)


def feature_matching_loss(real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator features of real and generated audio, averaged per sub-discriminator."""
    total = 0.0
    for real_maps, fake_maps in zip(real_features, fake_features):
        total = total + sum(
            torch.nn.functional.l1_loss(fake, real.detach()) for real, fake in zip(real_maps, fake_maps)
        ) / len(real_maps)
    return total
