"""Sampling a `DiT`: integrate the flow ODE ``dx/dt = v(x, t)`` from Gaussian noise at t = 0 to a mel at t = 1.

F5-TTS's inference recipe, written as a small explicit integrator:
- time grid: ``steps + 1`` points, uniform then "sway-sampled" ``t + s * (cos(pi t / 2) - 1 + t)``; a negative
  coefficient ``s`` (F5's default -1) puts more steps near t = 0, where the coarse structure is decided;
- velocity with classifier-free guidance: ``v_c + cfg_strength * (v_c - v_u)``, where ``v_u`` drops both the
  audio condition and the text (F5's default strength 2);
- Euler steps (F5's default) or midpoint steps (two evaluations per step);
- infilling: frames the edit mask keeps are given to the model as the condition, and copied verbatim from the
  condition into the result; the others are generated.

Why not a `diffusers` scheduler: `FlowMatchEulerDiscreteScheduler` runs sigma from 1 (noise) down to 0 with its
own shift-based timestep warping; expressing F5's grid needs custom sigmas and a flipped sign convention, which
hides the recipe without saving code. The loop below is the whole algorithm.

Shapes: ``B`` batch, ``T`` total frames, ``Tc`` conditioning frames (``<= T``), ``M`` mel bands, ``Nt`` text ids.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from tts.dit.model import DiT

F5_STEPS = 32
F5_CFG_STRENGTH = 2.0
F5_SWAY_COEF = -1.0


def sway_timesteps(
    steps: int, sway_coef: float | None = F5_SWAY_COEF, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(steps + 1,)`` times from 0 to 1: uniform, then sway-sampled with `sway_coef` (None: uniform).

    For coefficients in [-1, 1] the grid stays increasing with ends fixed at 0 and 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    t = torch.linspace(0.0, 1.0, steps + 1, device=device)
    if sway_coef is not None and sway_coef != 0.0:
        t = t + sway_coef * (torch.cos(math.pi / 2 * t) - 1 + t)
    return t


def guided_velocity(
    model: DiT,
    x: torch.Tensor,
    cond: torch.Tensor,
    text: torch.Tensor,
    time: torch.Tensor,
    cfg_strength: float = F5_CFG_STRENGTH,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's velocity at ``(x, time)`` with classifier-free guidance; ``(B, T, M)``.

    ``cfg_strength`` 0 skips the unconditional pass.
    """
    conditional = model(x=x, cond=cond, text=text, time=time, mask=mask)
    if cfg_strength == 0.0:
        return conditional
    unconditional = model(x=x, cond=cond, text=text, time=time, mask=mask, drop_audio_cond=True, drop_text=True)
    return conditional + (conditional - unconditional) * cfg_strength


def _keep_mask(edit_mask: torch.Tensor | None, batch: int, cond_frames: int, total_frames: int) -> torch.Tensor:
    """``(B, T)`` bool, True where the conditioning audio is kept."""
    frames = torch.arange(total_frames)
    has_audio = (frames < cond_frames)[None].expand(batch, -1)
    if edit_mask is None:
        return has_audio
    edit_mask = torch.as_tensor(edit_mask).to(torch.bool).cpu()
    if edit_mask.dim() == 1:
        edit_mask = edit_mask[None].expand(batch, -1)
    if edit_mask.dim() != 2 or edit_mask.shape[0] != batch or edit_mask.shape[1] not in (cond_frames, total_frames):
        raise ValueError(
            f"edit_mask must be (T,) or (B, T) with T the conditioning length {cond_frames} or the total length "
            f"{total_frames}; got {tuple(edit_mask.shape)} for batch {batch}"
        )
    if edit_mask.shape[1] < total_frames:
        edit_mask = torch.nn.functional.pad(edit_mask, (0, total_frames - edit_mask.shape[1]), value=False)
    if (edit_mask & ~has_audio).any():
        raise ValueError("edit_mask keeps frames past the end of the conditioning audio; there is nothing to keep there")
    return edit_mask


@torch.no_grad()
def sample(
    model: DiT,
    cond_mel: torch.Tensor,
    text_ids: torch.Tensor,
    total_frames: int,
    edit_mask: torch.Tensor | None = None,
    steps: int = F5_STEPS,
    cfg_strength: float = F5_CFG_STRENGTH,
    sway_sampling_coef: float | None = F5_SWAY_COEF,
    seed: int | None = None,
    method: Literal["euler", "midpoint"] = "euler",
    progress: Callable[[int, int], None] | None = None,
    guide_mel: torch.Tensor | None = None,
    start_time: float = 0.0,
) -> torch.Tensor:
    """Generate a mel of `total_frames` frames, keeping the conditioning audio where `edit_mask` says so.

    Zero-shot TTS: `cond_mel` is the reference mel, `text_ids` its transcript followed by the new text, and the
    frames after the reference are generated. Editing: `cond_mel` is the whole recording (new spans already at
    their new length, any content) and `edit_mask` is False on the frames to regenerate.

    Args:
        model: the velocity network.
        cond_mel: ``(B, Tc, M)`` or ``(Tc, M)`` conditioning mel, ``Tc <= total_frames``.
        text_ids: ``(B, Nt)`` or ``(Nt,)`` vocabulary ids for the whole utterance (-1 pads a batch); for a
            ``text_condition="frames"`` model, one unit id per frame (`tts.dit.units.expand`), -1 where no text
            is given (the kept frames).
        total_frames: ``T``, the length of the result in mel frames.
        edit_mask: ``(Tc,)``, ``(T,)`` or ``(B, T)`` bool, True = keep the condition's frame. Default: keep all
            ``Tc`` conditioning frames and generate the rest.
        steps: ODE steps (F5 uses 32; 8-16 trade quality for speed).
        cfg_strength: classifier-free guidance strength (0 = off; each step then costs one evaluation, not two).
        sway_sampling_coef: time-grid warp (None or 0 = uniform).
        seed: seeds a private generator for the starting noise (the global RNG is untouched); None = random.
        method: ``"euler"`` (one evaluation per step) or ``"midpoint"`` (two).
        progress: called as ``progress(step, steps)`` after every step.
        guide_mel: ``(B, T, M)`` or ``(T, M)`` first estimate of the result (e.g. the recording time-stretched for
            a speed edit). With `start_time` > 0 the flow starts from it rather than from pure noise: the state at
            ``start_time`` is ``(1 - t) * noise + t * guide`` (the flow's own interpolation), and the `steps` run
            from there to 1 (SDEdit). What the guide gets wrong the flow corrects; what it gets right (words,
            timing) it keeps more of the closer `start_time` is to 1.
        start_time: where on the flow the guide enters, in [0, 1); 0 ignores the guide.

    Returns:
        ``(B, T, M)`` mel; kept frames are exactly `cond_mel`'s.
    """
    if cond_mel.dim() == 2:
        cond_mel = cond_mel[None]
    text_ids = torch.as_tensor(text_ids, dtype=torch.long)
    if text_ids.dim() == 1:
        text_ids = text_ids[None]
    batch, cond_frames, mel_dim = cond_mel.shape
    if mel_dim != model.config.mel_dim:
        raise ValueError(f"cond_mel has {mel_dim} mel bands; this model uses {model.config.mel_dim}")
    if text_ids.shape[0] != batch:
        raise ValueError(f"text_ids has batch {text_ids.shape[0]} but cond_mel has batch {batch}")
    if total_frames < max(cond_frames, 1):
        raise ValueError(f"total_frames ({total_frames}) must be at least the conditioning length ({cond_frames})")
    vocab_size = model.config.text_num_embeds
    if bool(((text_ids < -1) | (text_ids >= vocab_size)).any()):
        raise ValueError(f"text ids must lie in [0, {vocab_size}) (or be -1 padding); encode text with its vocabulary")
    text_lengths = (text_ids != -1).sum(dim=-1)
    if int(text_lengths.max()) > total_frames:
        raise ValueError(
            f"the text has {int(text_lengths.max())} symbols but only {total_frames} frames are generated; "
            "F5-style models need at least one frame per symbol, so give a longer duration"
        )
    if method not in ("euler", "midpoint"):
        raise ValueError(f"method must be 'euler' or 'midpoint', got {method!r}")
    if not 0.0 <= start_time < 1.0:
        raise ValueError(f"start_time must be in [0, 1), got {start_time}")
    if start_time > 0.0:
        if guide_mel is None:
            raise ValueError("start_time > 0 needs a guide_mel to start from")
        if guide_mel.dim() == 2:
            guide_mel = guide_mel[None]
        if tuple(guide_mel.shape) != (batch, total_frames, mel_dim):
            raise ValueError(f"guide_mel must be ({batch}, {total_frames}, {mel_dim}), got {tuple(guide_mel.shape)}")

    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    keep = _keep_mask(edit_mask, batch, cond_frames, total_frames).to(device)[..., None]  # (B, T, 1)
    kept = torch.nn.functional.pad(cond_mel.to(device, dtype), (0, 0, 0, total_frames - cond_frames))
    cond = torch.where(keep, model.normalize_mel(kept), torch.zeros_like(kept))
    text_ids = text_ids.to(device)

    # Noise is drawn on the CPU from a private generator so a seed gives the same start on every device.
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    x = torch.randn(batch, total_frames, mel_dim, generator=generator).to(device, dtype)
    times = sway_timesteps(steps, sway_sampling_coef, device=device)
    if start_time > 0.0:
        x = (1 - start_time) * x + start_time * model.normalize_mel(guide_mel.to(device, dtype))
        times = start_time + (1 - start_time) * times

    def velocity(state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return guided_velocity(model, state, cond, text_ids, time.to(dtype), cfg_strength)

    x = integrate(velocity, x, times, method, progress)
    return torch.where(keep, kept, model.denormalize_mel(x))


def integrate(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    times: torch.Tensor,
    method: Literal["euler", "midpoint"] = "euler",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from ``times[0]`` to ``times[-1]`` over the grid `times`.

    The one integrator of the studio's flow models (the DiT here, the flow refiner through a velocity closure).
    Velocities are evaluated in a fixed order: per step at ``t0`` (Euler), or at ``t0`` then ``t0 + dt / 2``
    (midpoint), so a caller may key per-evaluation state on the call count.

    Args:
        velocity: ``velocity(x, t)`` with `x` shaped like the state and `t` a 0-dim tensor.
        x: the state at ``times[0]`` (any shape).
        times: ``(steps + 1,)`` increasing times, e.g. `sway_timesteps`.
        method: ``"euler"`` (one evaluation per step) or ``"midpoint"`` (two).
        progress: called as ``progress(step, steps)`` after every step.
    """
    if method not in ("euler", "midpoint"):
        raise ValueError(f"method must be 'euler' or 'midpoint', got {method!r}")
    steps = len(times) - 1
    for index in range(steps):
        t0, t1 = times[index], times[index + 1]
        dt = t1 - t0
        if method == "euler":
            x = x + dt * velocity(x, t0)
        else:
            half = x + (dt / 2) * velocity(x, t0)
            x = x + dt * velocity(half, t0 + dt / 2)
        if progress is not None:
            progress(index + 1, steps)
    return x
