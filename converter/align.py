"""Monotonic alignment search (Glow-TTS / VITS): the most likely monotonic path of frames through units.

Used to train the tone-color converter: the flow's timbre-free frames are aligned to the phonemes of the same
utterance so they can be pulled toward each phoneme's content Gaussian. Every frame belongs to exactly one
unit, units come in order, and every unit gets at least one frame.

Shapes: ``N`` units (phonemes), ``F`` frames.
"""

from __future__ import annotations

import numpy as np
import torch


def monotonic_alignment(log_likelihood: np.ndarray) -> np.ndarray:
    """Best monotonic path through ``(N, F)`` log-likelihoods (unit ``n`` emits frame ``f``): ``(N, F)`` 0/1.

    The path starts at (0, 0), ends at (N - 1, F - 1), and each frame either stays on its unit or moves to the
    next. Needs ``N <= F``.
    """
    units, frames = log_likelihood.shape
    if units < 1 or frames < units:
        raise ValueError(f"monotonic alignment needs 1 <= units <= frames, got {units} units and {frames} frames")
    value = np.full(units, -np.inf)
    value[0] = log_likelihood[0, 0]
    moved = np.zeros((units, frames), dtype=bool)
    for f in range(1, frames):
        came_from = np.concatenate(([-np.inf], value[:-1]))
        move = came_from > value
        value = np.where(move, came_from, value) + log_likelihood[:, f]
        moved[:, f] = move
    path = np.zeros((units, frames), dtype=np.float32)
    unit = units - 1
    for f in range(frames - 1, -1, -1):
        path[unit, f] = 1.0
        if f > 0 and moved[unit, f]:
            unit -= 1
    return path


def gaussian_log_likelihood(z: torch.Tensor, m: torch.Tensor, logs: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of every frame under every unit's diagonal Gaussian: ``z (B, C, F)``, ``m, logs (B, C, N)``
    -> ``(B, N, F)``, without building the ``(B, C, N, F)`` tensor."""
    inv_var = torch.exp(-2 * logs)  # (B, C, N)
    constant = torch.sum(-0.5 * np.log(2 * np.pi) - logs - 0.5 * m.square() * inv_var, dim=1)  # (B, N)
    quadratic = torch.matmul(inv_var.transpose(1, 2), -0.5 * z.square())  # (B, N, F)
    linear = torch.matmul((m * inv_var).transpose(1, 2), z)  # (B, N, F)
    return constant[:, :, None] + quadratic + linear


@torch.no_grad()
def align_batch(
    z: torch.Tensor, m: torch.Tensor, logs: torch.Tensor, unit_lengths: torch.Tensor, frame_lengths: torch.Tensor
) -> torch.Tensor:
    """Alignment of each item of a batch: ``(B, N, F)`` 0/1 (zero outside each item's units and frames)."""
    scores = gaussian_log_likelihood(z.float(), m.float(), logs.float()).cpu().numpy()
    path = np.zeros(scores.shape, dtype=np.float32)
    for b, (units, frames) in enumerate(zip(unit_lengths.tolist(), frame_lengths.tolist())):
        path[b, :units, :frames] = monotonic_alignment(scores[b, :units, :frames])
    return torch.from_numpy(path).to(z.device)
