"""Griffin-Lim from the studio log-mel: the no-weights baseline every vocoder is measured against.

mel -> linear magnitude: the non-negative least-squares inverse of the mel filterbank (pseudo-inverse start,
then multiplicative NNLS updates, which keep every bin non-negative), then Griffin-Lim phase reconstruction
with the studio STFT (n_fft 1024, hop 256, hann, centred). ``momentum`` 0.99 is the "fast Griffin-Lim"
acceleration (Perraudin et al. 2013), the same default torchaudio uses; 0 gives the classic algorithm.

Shapes: ``M`` mel bands, ``K`` STFT bins, ``F`` frames, ``T`` samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from tts.audio import STUDIO_MEL, Audio, MelConfig, mel_filterbank

DEFAULT_ITERATIONS = 32


def mel_to_magnitude(mel: torch.Tensor, config: MelConfig = STUDIO_MEL, nnls_iterations: int = 30) -> torch.Tensor:
    """Linear STFT magnitude ``(K, F)`` (or ``(B, K, F)``) whose mel projection best matches ``exp(mel)``."""
    filters = mel_filterbank(config).to(mel.device, torch.float32)  # (M, K)
    target = torch.exp(mel.float())
    magnitude = (_pseudo_inverse(config).to(mel.device) @ target).clamp(min=config.log_floor)
    # Lee-Seung multiplicative updates for min ||filters @ x - target|| with x >= 0; the product goes through the
    # M-dimensional mel space (two thin matmuls) rather than the K x K Gram matrix, ~2.5 times cheaper.
    numerator = filters.T @ target
    for _ in range(nnls_iterations):
        magnitude = magnitude * numerator / (filters.T @ (filters @ magnitude)).clamp(min=1e-12)
    return magnitude


@lru_cache(maxsize=4)
def _pseudo_inverse(config: MelConfig) -> torch.Tensor:
    """``(K, M)`` Moore-Penrose inverse of the mel filterbank (computed once per mel definition)."""
    return torch.linalg.pinv(mel_filterbank(config))


def griffin_lim(
    mel: torch.Tensor | np.ndarray,
    iterations: int = DEFAULT_ITERATIONS,
    momentum: float = 0.99,
    config: MelConfig = STUDIO_MEL,
    seed: int = 0,
) -> torch.Tensor:
    """Audio ``(T,)`` (or ``(B, T)``) from a log-mel ``(M, F)`` (or ``(B, M, F)``), ``T = (F - 1) * hop``.

    Deterministic: the random initial phase comes from a local generator seeded with `seed`.
    """
    mel = torch.as_tensor(mel, dtype=torch.float32)
    if mel.dim() not in (2, 3) or mel.shape[-2] != config.n_mels:
        raise ValueError(f"griffin_lim expects a ({config.n_mels}, F) or (B, {config.n_mels}, F) log-mel, got {tuple(mel.shape)}")
    if iterations < 1 or not 0.0 <= momentum < 1.0:
        raise ValueError("griffin_lim needs iterations >= 1 and 0 <= momentum < 1")
    magnitude = mel_to_magnitude(mel, config)
    window = torch.hann_window(config.win_length, device=mel.device)
    length = (mel.shape[-1] - 1) * config.hop_length
    stft = dict(n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length, window=window, center=True)
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=generator).to(mel.device) * 2 * torch.pi
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        audio = torch.istft(magnitude * angles, length=length, **stft)
        rebuilt = torch.stft(audio, return_complex=True, pad_mode="reflect", **stft)
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / accelerated.abs().clamp(min=1e-16)
        previous = rebuilt
    return torch.istft(magnitude * angles, length=length, **stft)


def griffin_lim_decode(mel: torch.Tensor | np.ndarray, iterations: int = DEFAULT_ITERATIONS) -> Audio:
    """`griffin_lim` of one ``(M, F)`` log-mel as `Audio` at the studio rate."""
    mel = torch.as_tensor(mel, dtype=torch.float32)
    if mel.dim() == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.dim() != 2:
        raise ValueError(f"griffin_lim_decode takes one (M, F) mel, got {tuple(mel.shape)}")
    return Audio(griffin_lim(mel, iterations).numpy(), STUDIO_MEL.sample_rate)
