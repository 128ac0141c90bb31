"""The shared transformer layers: masks, RoPE, KV-cache attention, and the blocks the DiT is built from."""

from __future__ import annotations

import pytest
import torch

from tts.layers import (
    AdaLayerNormZero,
    AdaLayerNormZeroFinal,
    Attention,
    BandedMask,
    ConvNeXtV2Block,
    ConvPositionEmbedding,
    FeedForward,
    GrowingKVCache,
    KVCache,
    RotaryEmbedding,
    TimestepEmbedding,
    apply_rotary,
    causal_mask,
    chunk_causal_mask,
    sinusoidal_position_table,
    timestep_embedding,
)


pytestmark = pytest.mark.usefixtures("single_thread")


def test_chunk_causal_mask_small_example():
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(chunk_causal_mask(7, chunk_size=2, lookahead=1), expected)
    no_lookahead = chunk_causal_mask(6, chunk_size=3, lookahead=0)
    assert torch.equal(no_lookahead[:3], torch.tensor([[1, 1, 1, 0, 0, 0]] * 3, dtype=torch.bool))
    assert no_lookahead[3:].all()
    assert torch.equal(chunk_causal_mask(5, chunk_size=1), causal_mask(5))


@pytest.mark.parametrize("chunk_size, lookahead", [(0, 0), (2, -1)])
def test_chunk_causal_mask_rejects_bad_arguments(chunk_size, lookahead):
    with pytest.raises(ValueError):
        chunk_causal_mask(4, chunk_size, lookahead)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_preserves_norms_and_depends_only_on_relative_position(interleaved):
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, interleaved=interleaved)
    q, k = torch.randn(2, 16), torch.randn(2, 16)

    def rotated(x, position):
        return apply_rotary(x[None], rope(torch.tensor([float(position)])), interleaved)[0]

    q5 = rotated(q, 5)
    assert torch.allclose(q5.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    # Interleaved layout: the pair (x0, x1) rotates like the complex number x0 + i x1.
    if interleaved:
        z = torch.view_as_complex(q.reshape(2, 8, 2).contiguous())
        turned = torch.view_as_real(z * torch.polar(torch.ones(8), 5 * rope.inv_freq)).reshape(2, 16)
        assert torch.allclose(q5, turned, atol=1e-5)
    dot = lambda m, n: (rotated(q, m) * rotated(k, n)).sum(-1)  # noqa: E731
    assert torch.allclose(dot(7, 3), dot(104, 100), atol=1e-4)
    assert torch.allclose(dot(0, 0), (q * k).sum(-1), atol=1e-5)
    assert not torch.allclose(dot(7, 3), dot(7, 4), atol=1e-3)


def test_rope_rotates_only_its_width():
    x = torch.randn(1, 2, 5, 12)
    angles = RotaryEmbedding(8).for_length(5)
    out = apply_rotary(x, angles)
    assert out.shape == x.shape
    assert torch.equal(out[..., 8:], x[..., 8:])
    assert not torch.allclose(out[..., 1:, :8], x[..., 1:, :8])
    assert torch.equal(out[..., 0, :], x[..., 0, :])  # position 0: no rotation


@pytest.mark.parametrize("qk_norm", [None, "rms_norm"])
def test_kv_cache_incremental_equals_full_causal(qk_norm):
    torch.manual_seed(0)
    attention = Attention(32, heads=4, dim_head=8, qk_norm=qk_norm).eval()
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 9, 32)
    full = attention(x, rope=rope.for_length(9), causal=True)
    cache, pieces, start = KVCache(), [], 0
    for size in (3, 1, 1, 4):  # a prompt, single steps, then a block
        piece = x[:, start : start + size]
        pieces.append(attention(piece, rope=rope.for_length(size, offset=len(cache)), causal=True, kv_cache=cache))
        start += size
    assert len(cache) == 9 and cache.key.shape == (2, 4, 9, 8)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)
    # Not causal: the first frame would see the future, so the outputs differ.
    assert not torch.allclose(attention(x, rope=rope.for_length(9))[:, 0], full[:, 0], atol=1e-4)


def test_growing_kv_cache_equals_concatenation_and_keeps_its_start_untouched():
    torch.manual_seed(0)
    start = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    kept = start[0].clone()
    growing, plain = GrowingKVCache(*start, capacity=6), KVCache()
    plain.update(*start)
    buffer = growing._keys
    for size in (1, 1, 5, 2, 9):
        piece = torch.randn(2, 3, size, 8), torch.randn(2, 3, size, 8)
        key, value = growing.update(*piece)
        expected = plain.update(*piece)
        assert torch.equal(key, expected[0]) and torch.equal(value, expected[1])
        if len(growing) <= 6:
            assert growing._keys is buffer  # within capacity nothing is reallocated
    assert len(growing) == 22 and torch.equal(start[0], kept)


@pytest.mark.parametrize("band", [1, 4, 7, 64])
def test_banded_mask_attention_equals_the_masked_attention(band):
    torch.manual_seed(1)
    attention = Attention(32, heads=2, dim_head=16).eval()
    x = torch.randn(4, 23, 32)
    # Chunk-causal over 9 cached "prompt" keys and these 23 frames; rows 2-3 never see the prompt, row 1 has padding.
    structure = torch.cat((torch.ones(23, 9, dtype=torch.bool), chunk_causal_mask(23, 5)), dim=1)
    mask = structure[None].repeat(4, 1, 1)
    mask[2:, :, :9] = False
    mask[1, :, 30:] = False
    mask[1, 21:, 30:] = torch.eye(2, dtype=torch.bool)  # every query keeps a key
    cache_key, cache_value = torch.randn(4, 2, 9, 16), torch.randn(4, 2, 9, 16)

    def run(attn_mask):
        cache = KVCache()
        cache.update(cache_key, cache_value)
        return attention(x, attn_mask=attn_mask, kv_cache=cache)

    banded = BandedMask(mask, band=band)
    assert len(banded.pieces) > 1
    torch.testing.assert_close(run(banded), run(mask), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        BandedMask(mask[:, :-1], band=band).attend(torch.randn(4, 2, 23, 16), cache_key, cache_value)


def test_chunk_mask_hides_frames_beyond_the_lookahead():
    torch.manual_seed(0)
    attention = Attention(16, heads=2, dim_head=8).eval()
    mask = chunk_causal_mask(8, chunk_size=2, lookahead=1)
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[:, 3:] += 1.0  # frames 0-1 see up to frame 2 only
    before, after = attention(x, attn_mask=mask), attention(changed, attn_mask=mask)
    assert torch.allclose(before[:, :2], after[:, :2], atol=1e-6)
    assert not torch.allclose(before[:, 2:4], after[:, 2:4], atol=1e-4)
    # A key-padding mask (B, 1, S) broadcasts over queries: padded frames never reach real ones.
    padding = (torch.arange(8) < 5)[None, None, :]
    noisy = torch.cat((x[:, :5], 7 + x[:, 5:]), dim=1)
    assert torch.allclose(attention(x, attn_mask=padding)[:, :5], attention(noisy, attn_mask=padding)[:, :5], atol=1e-6)


def test_attention_rope_heads_limits_rotation_to_the_first_heads():
    torch.manual_seed(0)
    attention = Attention(16, heads=2, dim_head=8, rope_heads=1).eval()
    x = torch.randn(1, 6, 16)
    with torch.no_grad():  # identity output projection: the output is the heads side by side
        attention.to_out[0].weight.copy_(torch.eye(16))
        attention.to_out[0].bias.zero_()
    with_rope, without = attention(x, rope=RotaryEmbedding(8).for_length(6)), attention(x)
    assert torch.allclose(with_rope[..., 8:], without[..., 8:], atol=1e-6)
    assert not torch.allclose(with_rope[..., :8], without[..., :8], atol=1e-3)


def test_attention_refuses_unknown_qk_norm():
    with pytest.raises(ValueError, match="qk_norm"):
        Attention(8, heads=1, dim_head=8, qk_norm="layer_norm")


def test_block_shapes_and_parameter_names():
    x = torch.randn(2, 11, 24)
    assert FeedForward(24, mult=2)(x).shape == (2, 11, 24)
    assert set(FeedForward(24, mult=2).state_dict()) == {"ff.0.0.weight", "ff.0.0.bias", "ff.2.weight", "ff.2.bias"}
    block = ConvNeXtV2Block(24, 48)
    assert block(x).shape == x.shape
    assert block.grn.gamma.shape == (1, 1, 48)
    assert torch.allclose(block.grn(x.repeat(1, 1, 2)), x.repeat(1, 1, 2))  # GRN starts as the identity
    assert TimestepEmbedding(24)(torch.tensor([0.1, 0.9])).shape == (2, 24)
    assert sinusoidal_position_table(torch.arange(11), 24).shape == (11, 24)
    attn_names = set(Attention(24, heads=3, dim_head=8).state_dict())
    assert attn_names == {f"{p}.{s}" for p in ("to_q", "to_k", "to_v", "to_out.0") for s in ("weight", "bias")}


def test_conv_position_embedding_zeroes_padding():
    torch.manual_seed(0)
    conv = ConvPositionEmbedding(32, kernel_size=5, groups=4)
    x = torch.randn(2, 10, 32)
    mask = torch.arange(10)[None] < torch.tensor([[10], [6]])
    out = conv(x, mask=mask)
    assert out.shape == x.shape and not out[1, 6:].any() and out[1, :6].abs().sum() > 0
    noisy = x.clone()
    noisy[1, 6:] = 100.0  # padding content never reaches real frames
    assert torch.allclose(conv(noisy, mask=mask), out)
    with pytest.raises(ValueError):
        ConvPositionEmbedding(32, kernel_size=4)


def test_timestep_embedding_layout():
    emb = timestep_embedding(torch.tensor([0.0, 0.5]), 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0]))  # [sin | cos] at t = 0
    assert not torch.allclose(emb[0], emb[1])


def test_adaln_zero_starts_as_plain_layer_norm():
    norm, final = AdaLayerNormZero(16), AdaLayerNormZeroFinal(16)
    norm.init_zero()
    final.init_zero()
    x, cond = torch.randn(2, 5, 16), torch.randn(2, 16)
    plain = torch.nn.functional.layer_norm(x, (16,), eps=1e-6)
    h, gate_attn, shift_ff, scale_ff, gate_ff = norm(x, cond)
    assert torch.allclose(h, plain, atol=1e-6) and torch.allclose(final(x, cond), plain, atol=1e-6)
    assert not gate_attn.any() and not gate_ff.any() and shift_ff.shape == scale_ff.shape == (2, 16)
    torch.nn.init.normal_(final.linear.weight)
    assert not torch.allclose(final(x, cond), plain, atol=1e-3)
