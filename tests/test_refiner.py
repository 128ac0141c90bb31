"""The flow refiner: shapes, masks and causality, token upsampling, guidance dropout, seeded sampling, streaming
equal to whole-utterance generation, save/load."""

from __future__ import annotations

import pytest
import torch

from tts.errors import CheckpointError
from tts.refiner.model import FlowRefiner, FlowRefinerConfig, refiner_attention_mask
from tts.refiner.sampling import frame_noise, generate, generate_stream

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = FlowRefinerConfig(
    codebook_size=50, dim=32, depth=2, heads=2, dim_head=16, token_dim=16, speaker_dim=16, speaker_encoder_dim=16,
    speaker_encoder_layers=1, num_styles=4, style_dim=8, time_freq_dim=32, chunk_size=6, lookahead=3,
)
MELS = TINY.mel_dim


def random_model(seed: int = 0, config: FlowRefinerConfig = TINY) -> FlowRefiner:
    """A tiny refiner with every weight random: a fresh one is adaLN-Zero (zero velocity), which would make
    streaming and causality tests pass trivially."""
    torch.manual_seed(seed)
    model = FlowRefiner(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model.eval()


def inputs(seed: int = 1, batch: int = 1, tokens: int = 14, prompt_frames: int = 10) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "tokens": torch.randint(0, TINY.codebook_size, (batch, tokens), generator=generator),
        "prompt_mel": torch.randn(batch, MELS, prompt_frames, generator=generator) * 2 - 5,
        "prompt_tokens": torch.randint(0, TINY.codebook_size, (batch, -(-prompt_frames // 3)), generator=generator),
    }


def velocity(model: FlowRefiner, x: torch.Tensor, data: dict, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(x, torch.full((x.shape[0],), 0.4), data["tokens"], data["prompt_mel"], data["prompt_tokens"], **kwargs)


def test_forward_shapes_and_padding_invariance():
    model = random_model()
    long, short = inputs(seed=1, tokens=8, prompt_frames=12), inputs(seed=2, tokens=5, prompt_frames=7)
    x_long, x_short = torch.randn(1, MELS, 24), torch.randn(1, MELS, 15)
    alone = velocity(model, x_short, short)
    assert alone.shape == (1, MELS, 15)

    def padded(name: str, length: int) -> torch.Tensor:
        value = short[name]
        return torch.nn.functional.pad(value, (0, length - value.shape[-1]), value=7 if value.dtype == torch.long else 3.0)

    batch = {
        "tokens": torch.cat([long["tokens"], padded("tokens", 8)]),
        "prompt_mel": torch.cat([long["prompt_mel"], padded("prompt_mel", 12)]),
        "prompt_tokens": torch.cat([long["prompt_tokens"], padded("prompt_tokens", 4)]),
    }
    x = torch.cat([x_long, torch.nn.functional.pad(x_short, (0, 9), value=5.0)])
    out = velocity(model, x, batch, token_lengths=torch.tensor([8, 5]), prompt_lengths=torch.tensor([12, 7]))
    assert out.shape == (2, MELS, 24) and torch.isfinite(out).all()
    # Padding (with arbitrary content) changes nothing for the short item's real frames.
    assert torch.allclose(out[1:, :, :15], alone, atol=1e-5)
    assert torch.allclose(out[:1], velocity(model, x_long, long), atol=1e-5)


def test_token_upsampling_is_exactly_frames_per_token():
    model = random_model()
    encoder = model.token_encoder
    tokens = torch.tensor([[3, 17, 17, 40, 0]])
    with torch.no_grad():
        features = model.token_features(tokens)
        assert features.shape == (1, 5 * 3, TINY.token_dim)
        # Without the lookahead convolution, frame 3n + k carries exactly token n's embedding.
        encoder.out.weight.zero_()
        encoder.out.bias.zero_()
        plain = model.token_features(tokens)
    expected = encoder.embed.weight[tokens[0]].repeat_interleave(3, dim=0)
    assert torch.equal(plain[0], expected)


def test_token_lookahead_reaches_exactly_lookahead_frames():
    model = random_model()
    tokens = torch.randint(0, 50, (1, 10), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[0, 6] = (tokens[0, 6] + 1) % 50  # frames 18..20
    with torch.no_grad():
        diff = (model.token_features(tokens) - model.token_features(changed)).abs().amax(dim=-1)[0]
    affected = torch.nonzero(diff > 0).flatten().tolist()
    assert affected == list(range(18 - TINY.lookahead, 21))


def test_attention_mask_structure():
    mask = refiner_attention_mask(
        prompt_frames=4, target_frames=8, chunk_size=3, prompt_lengths=torch.tensor([4, 2]),
        target_lengths=torch.tensor([8, 5]), drop_prompt=torch.tensor([False, True]),
    )
    assert mask.shape == (2, 12, 12)
    full = mask[0]
    assert not full[:4, 4:].any()  # the prompt never sees the target
    assert full[4:, :4].all()  # the target sees the whole prompt
    for frame in range(8):
        visible = full[4 + frame, 4:].nonzero().flatten().tolist()
        assert visible == list(range(min(8, (frame // 3 + 1) * 3)))  # own chunk and the past, no lookahead
    dropped = mask[1]
    assert not dropped[4:, :4].any()  # a dropped prompt is hidden from the target
    assert not dropped[:2, 2:4].any() and not dropped[4:9, 9:].any()  # real frames never see padding...
    assert dropped.diagonal().all()  # ...and every row sees itself, so none is empty (padding: only itself)
    assert dropped[2].nonzero().flatten().tolist() == [0, 1, 2]
    # A sampler's rows alone are those rows of the whole mask.
    for first_row in (0, 3, 4, 7, 12):
        rows = refiner_attention_mask(4, 8, 3, torch.tensor([4, 2]), torch.tensor([8, 5]), torch.tensor([False, True]),
                                      first_row=first_row)
        assert torch.equal(rows, mask[:, first_row:])


def test_no_target_frame_sees_beyond_its_chunk_and_lookahead():
    model = random_model()
    data = inputs(tokens=12)  # 36 frames, chunks of 6
    x = torch.randn(1, MELS, 36)
    reference = velocity(model, x, data)
    for chunk in range(5):
        end = (chunk + 1) * 6  # frames < end are chunk `chunk` and earlier
        future_token = -(-(end + TINY.lookahead) // 3)  # first token wholly past the lookahead
        perturbed = {**data, "tokens": data["tokens"].clone()}
        perturbed["tokens"][0, future_token:] = (perturbed["tokens"][0, future_token:] + 1) % 50
        x_perturbed = x.clone()
        x_perturbed[..., end:] += torch.randn_like(x_perturbed[..., end:])
        out = velocity(model, x_perturbed, perturbed)
        assert torch.allclose(out[..., :end], reference[..., :end], atol=1e-5), f"chunk {chunk} saw the future"
        assert not torch.allclose(out[..., end:], reference[..., end:], atol=1e-3)
    # The lookahead is real: a token just past a chunk's end changes that chunk.
    perturbed = {**data, "tokens": data["tokens"].clone()}
    perturbed["tokens"][0, 2] = (perturbed["tokens"][0, 2] + 1) % 50  # frames 6..8, inside chunk 0's lookahead
    assert not torch.allclose(velocity(model, x, perturbed)[..., :6], reference[..., :6], atol=1e-5)


def test_guidance_dropout_removes_each_condition():
    model = random_model()
    data, other = inputs(seed=1), inputs(seed=2)
    x = torch.randn(1, MELS, 42)
    yes = torch.tensor([True])
    assert torch.allclose(
        velocity(model, x, data, drop_tokens=yes), velocity(model, x, {**data, "tokens": other["tokens"]}, drop_tokens=yes)
    )
    swapped_prompt = {**data, "prompt_mel": other["prompt_mel"], "prompt_tokens": other["prompt_tokens"]}
    both = {"drop_prompt": yes, "drop_speaker": yes}
    assert torch.allclose(velocity(model, x, data, **both), velocity(model, x, swapped_prompt, **both), atol=1e-6)
    # Dropping only the prompt keeps the speaker embedding pooled from it; dropping nothing keeps everything.
    assert not torch.allclose(velocity(model, x, data, drop_prompt=yes), velocity(model, x, swapped_prompt, drop_prompt=yes))
    assert not torch.allclose(velocity(model, x, data), velocity(model, x, {**data, "tokens": other["tokens"]}))
    speaker = torch.nn.functional.normalize(torch.randn(1, TINY.speaker_dim), dim=-1)
    assert torch.allclose(
        velocity(model, x, data, drop_speaker=yes), velocity(model, x, data, drop_speaker=yes, speaker_embedding=speaker)
    )


def test_sampler_velocity_is_the_training_forward():
    """One uniform Euler step from t = 0 without guidance is ``x0 + v(x0, 0)``: the sampler's cached, factored
    path computes the same velocity as `FlowRefiner.forward`."""
    model = random_model()
    data = inputs(tokens=10)
    out = generate(model, **data, steps=1, cfg_strength=0.0, seed=5, sway_sampling_coef=None)
    noise = frame_noise(5, 1, MELS, 0, 30, TINY.chunk_size)
    with torch.no_grad():
        v = model(noise, torch.zeros(1), data["tokens"], data["prompt_mel"], data["prompt_tokens"])
    assert torch.allclose(out, model.denormalize_mel(noise + v), atol=1e-4)
    # Guidance combines the conditional pass with the all-dropped one.
    guided = generate(model, **data, steps=1, cfg_strength=2.0, seed=5, sway_sampling_coef=None)
    yes = torch.tensor([True])
    with torch.no_grad():
        u = model(noise, torch.zeros(1), data["tokens"], data["prompt_mel"], data["prompt_tokens"],
                  drop_tokens=yes, drop_prompt=yes, drop_speaker=yes)
    assert torch.allclose(guided, model.denormalize_mel(noise + v + 2.0 * (v - u)), atol=1e-4)


def test_guided_sampler_velocity_is_the_training_forward_over_many_attention_bands():
    """Over 150 frames the sampler's attention runs in several query bands and skips the keys the mask hides (later
    chunks; the prompt, for the unconditional rows): still the training forward's velocities."""
    model = random_model()
    data = inputs(tokens=50, prompt_frames=13)
    guided = generate(model, **data, steps=1, cfg_strength=2.0, seed=5, sway_sampling_coef=None)
    noise = frame_noise(5, 1, MELS, 0, 150, TINY.chunk_size)
    yes = torch.tensor([True])
    with torch.no_grad():
        v = model(noise, torch.zeros(1), data["tokens"], data["prompt_mel"], data["prompt_tokens"])
        u = model(noise, torch.zeros(1), data["tokens"], data["prompt_mel"], data["prompt_tokens"],
                  drop_tokens=yes, drop_prompt=yes, drop_speaker=yes)
    assert (guided - model.denormalize_mel(noise + v + 2.0 * (v - u))).abs().max() < 1e-4


@pytest.mark.parametrize(
    "method, cfg_strength, chunks",
    [("euler", 0.7, {}), ("midpoint", 2.0, {"chunk_tokens": 4}), ("euler", 0.0, {"first_chunk_tokens": 2, "chunk_tokens": 6})],
)
def test_streaming_equals_full_generation(method, cfg_strength, chunks):
    model = random_model()
    data = inputs(tokens=17)  # 51 frames: the last chunk is partial
    settings = dict(steps=4, cfg_strength=cfg_strength, seed=11, method=method)
    full = generate(model, **data, **settings)
    assert full.shape == (1, MELS, 51) and full.std() > 0.5
    streamed = list(generate_stream(model, data["tokens"], data["prompt_mel"], data["prompt_tokens"], **chunks, **settings))
    first, rest = 3 * chunks.get("first_chunk_tokens", chunks.get("chunk_tokens", 2)), 3 * chunks.get("chunk_tokens", 2)
    assert [c.shape[-1] for c in streamed[:-1]] == [first] + [rest] * (len(streamed) - 2)
    assert (torch.cat(streamed, dim=-1) - full).abs().max() < 1e-4
    # Tokens arriving a few at a time (as a token LM yields them) give the same chunks.
    pieces = [data["tokens"][:, a:b] for a, b in ((0, 1), (1, 5), (5, 6), (6, 13), (13, 17))]
    arrived = list(generate_stream(model, iter(pieces), data["prompt_mel"], data["prompt_tokens"], **chunks, **settings))
    assert (torch.cat(arrived, dim=-1) - full).abs().max() < 1e-4


def test_stream_yields_a_chunk_once_its_lookahead_has_arrived():
    model = random_model()
    data = inputs(tokens=12)
    received = []

    def pieces():
        for index in range(12):
            received.append(index)
            yield data["tokens"][:, index : index + 1]

    seen_at = []
    for _ in generate_stream(model, pieces(), data["prompt_mel"], data["prompt_tokens"], steps=2, seed=0):
        seen_at.append(len(received))
    # Chunk k (frames 6k .. 6k+5) needs frames up to 6k+5+3 = tokens up to index 2k+2: 2k+3 tokens received.
    assert seen_at[:4] == [3, 5, 7, 9]


def test_seeded_generation_is_deterministic_and_leaves_global_rng_alone():
    model = random_model()
    data = inputs()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = generate(model, **data, steps=3, seed=4)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(first, generate(model, **data, steps=3, seed=4))
    assert not torch.allclose(first, generate(model, **data, steps=3, seed=5))
    # A frame's noise does not depend on how long the utterance is.
    assert torch.equal(frame_noise(4, 1, MELS, 0, 20, 6)[..., 7:20], frame_noise(4, 1, MELS, 7, 20, 6))


def test_padded_batch_generation_returns_silence_past_each_length():
    model = random_model()
    data = inputs(batch=2, tokens=8)
    out = generate(model, **data, steps=2, seed=0, token_lengths=torch.tensor([8, 5]))
    assert out.shape == (2, MELS, 24)
    assert torch.all(out[1, :, 15:] == model.silence_value)
    assert torch.isfinite(out).all()


def test_style_ids_and_speaker_embedding_override():
    model = random_model()
    data = inputs()
    neutral = generate(model, **data, steps=2, seed=0)
    assert not torch.allclose(neutral, generate(model, **data, steps=2, seed=0, style_id=2))
    embedding = model.speaker_embedding(data["prompt_mel"])
    assert embedding.shape == (1, TINY.speaker_dim)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(1))
    assert torch.allclose(neutral, generate(model, **data, steps=2, seed=0, speaker_embedding=embedding), atol=1e-6)


def test_style_intensity_moves_from_neutral_to_the_full_style():
    model = random_model()
    data = inputs()
    neutral = generate(model, **data, steps=2, seed=0)
    full = generate(model, **data, steps=2, seed=0, style_id=2)
    assert torch.allclose(neutral, generate(model, **data, steps=2, seed=0, style_id=2, style_intensity=0.0), atol=1e-6)
    assert torch.allclose(full, generate(model, **data, steps=2, seed=0, style_id=2, style_intensity=1.0), atol=1e-6)
    half = generate(model, **data, steps=2, seed=0, style_id=2, style_intensity=0.5)
    assert not torch.allclose(half, neutral) and not torch.allclose(half, full)
    streamed = torch.cat(list(generate_stream(model, data["tokens"], data["prompt_mel"], data["prompt_tokens"],
                                              style_id=2, style_intensity=0.5, steps=2, seed=0)), dim=-1)
    assert torch.allclose(streamed, half, atol=1e-5)
    with pytest.raises(ValueError, match="style_intensity"):
        generate(model, **data, style_id=2, style_intensity=1.5)


def test_the_prompts_share_is_reused_only_for_the_same_unchanged_prompt_and_weights(monkeypatch):
    model = random_model()
    data = inputs()
    calls = []
    real = model.prompt_cache
    monkeypatch.setattr(model, "prompt_cache", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = generate(model, **data, steps=2, seed=0)
    assert torch.equal(generate(model, **data, steps=2, seed=0), first) and len(calls) == 1  # reused
    streamed = torch.cat(list(generate_stream(model, data["tokens"], data["prompt_mel"], data["prompt_tokens"],
                                              steps=2, seed=0)), dim=-1)
    assert torch.allclose(streamed, first, atol=1e-5) and len(calls) == 1
    generate(model, **data, steps=2, seed=0, style_id=1)
    assert len(calls) == 2  # another style, another condition
    copy = {**data, "prompt_mel": data["prompt_mel"].clone()}
    assert torch.equal(generate(model, **copy, steps=2, seed=0), first) and len(calls) == 3  # another tensor
    data["prompt_mel"].add_(1.0)  # changed in place: computed again, as from a fresh tensor
    changed = generate(model, **data, steps=2, seed=0)
    fresh = generate(model, **{**data, "prompt_mel": data["prompt_mel"].clone()}, steps=2, seed=0)
    assert len(calls) == 5 and torch.equal(changed, fresh) and not torch.allclose(changed, first)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.01)  # new weights (as after an optimiser step)
    generate(model, **data, steps=2, seed=0)
    assert len(calls) == 6


def test_style_labels_map_to_ids_only_for_a_refiner_trained_with_them():
    assert all(TINY.style_id(label) == 0 for label in ("neutral", "happy", "whisper"))
    styled = FlowRefinerConfig(num_styles=4, styles=["neutral", "happy", "sad"])
    assert styled.styles == ("neutral", "happy", "sad")
    assert [styled.style_id(label) for label in ("neutral", "sad", "whisper")] == [0, 2, 0]
    with pytest.raises(ValueError, match="start with 'neutral'"):
        FlowRefinerConfig(styles=("happy", "neutral"))
    with pytest.raises(ValueError, match="at most num_styles"):
        FlowRefinerConfig(num_styles=2, styles=("neutral", "happy", "sad"))


def test_bad_input_raises_value_error():
    model = random_model()
    data = inputs()
    with pytest.raises(ValueError, match="mel bands"):
        generate(model, data["tokens"], data["prompt_mel"][:, :80], data["prompt_tokens"])
    with pytest.raises(ValueError, match="prompt of 10 mel frames has 4 tokens"):
        generate(model, data["tokens"], data["prompt_mel"], data["prompt_tokens"][:, :3])
    with pytest.raises(ValueError, match=r"ids in \[0, 50\)"):
        generate(model, data["tokens"] + 50, data["prompt_mel"], data["prompt_tokens"])
    with pytest.raises(ValueError, match="style"):
        generate(model, **data, style_id=TINY.num_styles)
    with pytest.raises(ValueError, match="multiple of 2 tokens"):
        next(generate_stream(model, data["tokens"], data["prompt_mel"], data["prompt_tokens"], chunk_tokens=3))
    with pytest.raises(ValueError, match="first_chunk_tokens"):
        next(generate_stream(model, data["tokens"], data["prompt_mel"], data["prompt_tokens"], first_chunk_tokens=0))
    with pytest.raises(ValueError, match="no tokens"):
        next(generate_stream(model, iter([]), data["prompt_mel"], data["prompt_tokens"]))
    with pytest.raises(ValueError, match="chunk_size"):
        FlowRefinerConfig(chunk_size=10, frames_per_token=3)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = random_model()
    folder = model.save_pretrained(tmp_path / "refiner", model_card={"Model": {"note": "test"}})
    loaded = FlowRefiner.from_pretrained(folder)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    data = inputs()
    assert torch.equal(generate(model, **data, steps=2, seed=1), generate(loaded, **data, steps=2, seed=1))
    half = FlowRefiner.from_pretrained(model.save_pretrained(tmp_path / "fp16", dtype=torch.float16))
    assert next(half.parameters()).dtype == torch.float32
    other = FlowRefiner(FlowRefinerConfig(**{**TINY.__dict__, "depth": 1}))
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CheckpointError):
        FlowRefiner.from_pretrained(tmp_path / "other")
