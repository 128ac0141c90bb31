"""The flow-matching sampler: time grid, integrators, guidance, seeding and infilling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.test_dit import golden_model  # noqa: F401 - fixture
from tts.dit.sampling import sample, sway_timesteps


pytestmark = pytest.mark.usefixtures("single_thread")

class StubVelocity(nn.Module):
    """A 'model' whose velocity is ``slope * t + offset`` everywhere, counting its evaluations."""

    def __init__(self, slope: float = 0.0, offset: float = 1.0, uncond_offset: float | None = None) -> None:
        super().__init__()
        self.config = SimpleNamespace(mel_dim=4, text_num_embeds=10)
        self.anchor = nn.Parameter(torch.zeros(()))
        self.slope, self.offset = slope, offset
        self.uncond_offset = offset if uncond_offset is None else uncond_offset
        self.calls = 0

    def normalize_mel(self, mel):
        return mel

    def denormalize_mel(self, x):
        return x

    def forward(self, x, cond, text, time, mask=None, drop_audio_cond=False, drop_text=False):
        self.calls += 1
        offset = self.uncond_offset if drop_text else self.offset
        return torch.full_like(x, 1.0) * (self.slope * time + offset)


def noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_sway_timesteps():
    uniform = sway_timesteps(8, None)
    assert torch.allclose(uniform, torch.linspace(0, 1, 9))
    swayed = sway_timesteps(8, -1.0)
    assert swayed[0] == 0 and torch.isclose(swayed[-1], torch.tensor(1.0))
    assert (swayed.diff() > 0).all()
    assert swayed.diff()[0] < uniform.diff()[0] / 2  # coefficient -1: dense steps near the noise end
    with pytest.raises(ValueError):
        sway_timesteps(0)


@pytest.mark.parametrize("method, calls_per_step", [("euler", 1), ("midpoint", 2)])
def test_integrators_and_guidance(method, calls_per_step):
    cond, text = torch.zeros(1, 3, 4), torch.tensor([[1, 2]])
    # Constant velocity 1.5: any grid integrates exactly to noise + 1.5. Guidance 2 with uncond velocity 0.5
    # gives 1.5 + 2 * (1.5 - 0.5) = 3.5.
    for cfg, expected, evaluations in ((0.0, 1.5, 1), (2.0, 3.5, 2)):
        model = StubVelocity(offset=1.5, uncond_offset=0.5)
        out = sample(model, cond, text, total_frames=6, edit_mask=torch.zeros(3, dtype=torch.bool), steps=5,
                     cfg_strength=cfg, seed=3, method=method)
        assert torch.allclose(out, noise(3, (1, 6, 4)) + expected, atol=1e-5)
        assert model.calls == 5 * calls_per_step * evaluations
    # Velocity t: the exact integral is 1/2. Midpoint is exact for it; Euler (on the swayed grid) is not.
    out = sample(StubVelocity(slope=1.0, offset=0.0), cond, text, total_frames=3,
                 edit_mask=torch.zeros(3, dtype=torch.bool), steps=4, cfg_strength=0.0, seed=0, method=method)
    gap = (out - noise(0, (1, 3, 4)) - 0.5).abs().max()
    assert gap < 1e-5 if method == "midpoint" else gap > 1e-2


def test_progress_and_validation():
    model, cond, text = StubVelocity(), torch.zeros(1, 4, 4), torch.tensor([[1, 2, 3]])
    seen = []
    sample(model, cond, text, total_frames=6, steps=3, progress=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(ValueError, match="at least the conditioning length"):
        sample(model, cond, text, total_frames=3)
    with pytest.raises(ValueError, match="longer duration"):
        sample(model, cond, torch.arange(9)[None] % 10, total_frames=6)
    with pytest.raises(ValueError, match="past the end"):
        sample(model, cond, text, total_frames=6, edit_mask=torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="edit_mask"):
        sample(model, cond, text, total_frames=6, edit_mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mel bands"):
        sample(model, torch.zeros(1, 4, 7), text, total_frames=6)
    with pytest.raises(ValueError, match="text ids"):
        sample(model, cond, torch.tensor([[1, 10]]), total_frames=6)
    with pytest.raises(ValueError, match="method"):
        sample(model, cond, text, total_frames=6, method="rk4")


def test_dit_sampling_is_seeded_and_keeps_unmasked_frames():
    model = golden_model()
    torch.manual_seed(1)
    cond = torch.randn(1, 24, 100)
    text = torch.tensor([[3, 9, 14, 2, 7, 7, 30]])
    keep = torch.ones(24, dtype=torch.bool)
    keep[8:15] = False  # regenerate frames 8-14, keep the rest
    kwargs = dict(edit_mask=keep, steps=6, cfg_strength=2.0, sway_sampling_coef=-1.0)
    first = sample(model, cond, text, 24, seed=7, **kwargs)
    again = sample(model, cond, text, 24, seed=7, **kwargs)
    other = sample(model, cond, text, 24, seed=8, **kwargs)
    assert first.shape == (1, 24, 100)
    assert torch.equal(first, again)
    assert not torch.allclose(first[:, ~keep], other[:, ~keep], atol=1e-3)
    assert torch.equal(first[:, keep], cond[:, keep])  # kept frames are the condition, exactly
    assert not torch.allclose(first[:, ~keep], cond[:, ~keep], atol=1e-2)

    # Zero-shot continuation: the 10 prompt frames are kept, 14 more are generated.
    continued = sample(model, cond[:, :10], text, 24, steps=4, seed=0, method="midpoint")
    assert continued.shape == (1, 24, 100)
    assert torch.equal(continued[:, :10], cond[:, :10]) and torch.isfinite(continued).all()


def test_guided_start_begins_on_the_flow_from_the_guide():
    model = golden_model()
    torch.manual_seed(2)
    cond = torch.randn(1, 24, 100)
    text = torch.tensor([[3, 9, 14, 2, 7, 7, 30]])
    keep = torch.zeros(24, dtype=torch.bool)
    keep[:6] = True
    guide = torch.randn(1, 24, 100) * 2 - 3
    # The velocity network sees the start (1 - t) * noise + t * guide at t = start_time, then runs to 1.
    seen = []
    original_forward = model.forward

    def spy(*args, **kwargs):
        seen.append((kwargs["x"].clone(), float(kwargs["time"].reshape(-1)[0])))
        return original_forward(*args, **kwargs)

    model.forward = spy
    try:
        out = sample(model, cond, text, 24, edit_mask=keep, steps=4, cfg_strength=0.0, seed=5, guide_mel=guide,
                     start_time=0.75)
    finally:
        del model.forward
    noise = torch.randn(1, 24, 100, generator=torch.Generator().manual_seed(5))
    assert seen[0][1] == pytest.approx(0.75)
    assert torch.allclose(seen[0][0], 0.25 * noise + 0.75 * model.normalize_mel(guide), atol=1e-5)
    assert all(0.75 <= t < 1.0 for _, t in seen) and len(seen) == 4
    assert torch.equal(out[:, keep], cond[:, keep])
    # Without a start time the guide is not used: the same as no guide at all.
    plain = sample(model, cond, text, 24, edit_mask=keep, steps=4, cfg_strength=0.0, seed=5)
    assert torch.equal(sample(model, cond, text, 24, edit_mask=keep, steps=4, cfg_strength=0.0, seed=5,
                              guide_mel=guide), plain)
    with pytest.raises(ValueError, match="guide_mel"):
        sample(model, cond, text, 24, steps=2, start_time=0.5)
    with pytest.raises(ValueError, match="guide_mel must be"):
        sample(model, cond, text, 24, steps=2, guide_mel=guide[:, :20], start_time=0.5)
    with pytest.raises(ValueError, match="start_time"):
        sample(model, cond, text, 24, steps=2, guide_mel=guide, start_time=1.0)
