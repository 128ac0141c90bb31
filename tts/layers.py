"""Transformer layers shared by every model in the studio (the DiT editor, the flow refiner's estimator, the
speech-token LM, the tokenizer encoder). Each layer lives here once; models import them.

Submodule and parameter names follow the published F5-TTS state dict wherever the DiT uses a layer
(``to_q``/``to_k``/``to_v``/``to_out``, ``ff.ff.0.0``, ``attn_norm.linear``, ``dwconv``/``pwconv1``/``grn``,
``conv1d.0``, ``time_mlp``, ``inv_freq``), so those weights load one-to-one.

Shapes: ``B`` batch, ``T`` query frames, ``S`` key frames (``S = T`` without a cache), ``D`` model width,
``H`` heads, ``Dh`` width of one head, ``C`` conditioning width.

Masks are boolean and mean "may attend" (True) the way `torch.nn.functional.scaled_dot_product_attention`
reads them: ``mask[i, j]`` is True when query frame ``i`` may look at key frame ``j``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RotaryEmbedding",
    "apply_rotary",
    "causal_mask",
    "chunk_causal_mask",
    "KVCache",
    "GrowingKVCache",
    "BandedMask",
    "Attention",
    "FeedForward",
    "AdaLayerNormZero",
    "AdaLayerNormZeroFinal",
    "timestep_embedding",
    "TimestepEmbedding",
    "sinusoidal_position_table",
    "GRN",
    "ConvNeXtV2Block",
    "ConvPositionEmbedding",
]


# ---------------------------------------------------------------------------------------------------------
# Rotary position embedding


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) angles for one head width.

    Two layouts of the rotated pairs exist in published weights:
    - ``interleaved=True``: channels ``(0, 1), (2, 3), ...`` form the pairs (GPT-J / x-transformers; F5-TTS);
    - ``interleaved=False``: channel ``i`` pairs with ``i + Dh/2`` (GPT-NeoX / Llama in `transformers`).

    ``inv_freq`` is a buffer because F5-TTS checkpoints carry it (``rotary_embed.inv_freq``); pass
    ``persistent=False`` for models whose checkpoints do not.

    Args:
        dim: rotated width (usually ``Dh``; must be even).
        base: frequency base (10000 in most models).
        interleaved: pair layout, see above.
        persistent: whether ``inv_freq`` is saved in the state dict.
    """

    def __init__(self, dim: int, base: float = 10000.0, interleaved: bool = True, persistent: bool = True) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary width must be even, got {dim}")
        self.dim = dim
        self.interleaved = interleaved
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=persistent)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Angles for integer or fractional `positions` ``(T,)`` or ``(B, T)`` -> ``(T, dim)`` or ``(B, T, dim)``,
        laid out to match `apply_rotary` with the same ``interleaved``."""
        angles = positions.to(self.inv_freq.dtype)[..., None] * self.inv_freq  # (..., T, dim/2)
        if self.interleaved:
            return torch.repeat_interleave(angles, 2, dim=-1)  # f0 f0 f1 f1 ...
        return torch.cat((angles, angles), dim=-1)  # f0 f1 ... f0 f1 ...

    def for_length(self, length: int, offset: int = 0) -> torch.Tensor:
        """Angles ``(T, dim)`` of positions ``offset .. offset + length - 1`` (offset = frames already cached)."""
        return self.forward(torch.arange(offset, offset + length, device=self.inv_freq.device))


def _rotate_pairs(x: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """The 90-degree partner of every channel: pair (a, b) -> (-b, a)."""
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))
        return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor, interleaved: bool = True) -> torch.Tensor:
    """Rotate the first ``angles.shape[-1]`` channels of `x` by `angles`; the rest pass through.

    Args:
        x: ``(B, H, T, Dh)`` queries or keys (or any ``(..., T, Dh)``).
        angles: ``(T, R)`` or ``(B, T, R)`` from `RotaryEmbedding`, ``R <= Dh``.
        interleaved: must match the `RotaryEmbedding` that made `angles`.
    """
    if angles.dim() == 3 and x.dim() == 4:
        angles = angles[:, None]  # (B, 1, T, R): same angles for every head
    rot = angles.shape[-1]
    rotated, passed = x[..., :rot], x[..., rot:]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    rotated = rotated * cos + _rotate_pairs(rotated, interleaved) * sin
    return torch.cat((rotated, passed), dim=-1) if passed.shape[-1] else rotated


# ---------------------------------------------------------------------------------------------------------
# Masks


def causal_mask(num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)`` bool: frame ``i`` sees frames ``0..i``."""
    return torch.ones(num_frames, num_frames, dtype=torch.bool, device=device).tril()


def chunk_causal_mask(
    num_frames: int, chunk_size: int, lookahead: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(T, T)`` bool block-causal mask for streaming: frames are grouped in chunks of `chunk_size`; every frame
    sees its whole chunk, all earlier chunks, and `lookahead` frames after the end of its chunk.

    Example, ``chunk_causal_mask(5, 2, 1)`` (rows are queries)::

        1 1 1 0 0
        1 1 1 0 0
        1 1 1 1 1
        1 1 1 1 1
        1 1 1 1 1
    """
    if chunk_size < 1 or lookahead < 0 or num_frames < 0:
        raise ValueError(
            f"chunk_causal_mask needs chunk_size >= 1 and lookahead >= 0, got {chunk_size} and {lookahead}"
        )
    frames = torch.arange(num_frames, device=device)
    visible_end = (frames // chunk_size + 1) * chunk_size + lookahead  # exclusive end for each query
    return frames[None, :] < visible_end[:, None]


class KVCache:
    """Keys and values of the frames one attention layer has already seen, for incremental decoding.

    One cache per layer; pass it to `Attention.forward` on every step. It grows along the time axis.
    ``key``/``value``: ``(B, H, S, Dh)`` or None before the first step.
    """

    def __init__(self) -> None:
        self.key: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's ``(B, H, T, Dh)`` keys/values; return all keys/values ``(B, H, S, Dh)``."""
        if self.key is None:
            self.key, self.value = key, value
        else:
            self.key = torch.cat((self.key, key), dim=-2)
            self.value = torch.cat((self.value, value), dim=-2)
        return self.key, self.value


class GrowingKVCache(KVCache):
    """A `KVCache` that appends into buffers with spare room instead of concatenating: a stream of ``n`` steps
    copies the earlier frames O(log n) times instead of once per step, and none at all within `capacity` frames.
    ``key``/``value`` are views of the buffers.

    Args:
        key, value: ``(B, H, S, Dh)`` frames to start from (copied; never written to), or None.
        capacity: frames to make room for at once (e.g. the longest sequence a decoder can reach).
    """

    def __init__(self, key: torch.Tensor | None = None, value: torch.Tensor | None = None, capacity: int = 0) -> None:
        super().__init__()
        self.capacity = capacity
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        if key is not None and value is not None:
            self.update(key, value)

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, H, T, Dh)`` keys/values; return all of them ``(B, H, S, Dh)`` (views of the buffers)."""
        length = len(self)
        needed = length + key.shape[-2]
        if self._keys is None or needed > self._keys.shape[-2]:
            capacity = max(needed, self.capacity, 2 * (0 if self._keys is None else self._keys.shape[-2]))
            keys = key.new_empty(*key.shape[:-2], capacity, key.shape[-1])
            values = value.new_empty(*value.shape[:-2], capacity, value.shape[-1])
            if length:
                keys[..., :length, :] = self.key
                values[..., :length, :] = self.value
            self._keys, self._values = keys, values
        self._keys[..., length:needed, :] = key
        self._values[..., length:needed, :] = value
        self.key, self.value = self._keys[..., :needed, :], self._values[..., :needed, :]
        return self.key, self.value


# ---------------------------------------------------------------------------------------------------------
# Attention and feed-forward


class BandedMask:
    """A boolean "may attend" mask ``(B, T, S)`` prepared so that `Attention` skips the keys it hides.

    The queries are cut into bands of at most `band` frames. For each band, each run of consecutive batch rows that
    see the same key span (from the first to the last key any of the band's queries may see) attends over that span
    only, with the mask's piece of it, or with no mask where the piece is all True. That is the attention of the
    whole mask up to float rounding (a hidden key weighs exp(-inf) = 0 either way), at the cost of the visible
    spans: worth it where the mask hides contiguous spans, as the flow refiner's does (chunk-causal attention hides
    the later chunks, and the unconditional rows of guidance never see the prompt). Every query must see a key.

    Args:
        mask: ``(B, T, S)`` bool, True where query ``t`` of row ``b`` may attend to key ``s``.
        band: queries per band (smaller bands skip more of a causal mask, at more calls).
    """

    def __init__(self, mask: torch.Tensor, band: int = 128) -> None:
        if mask.dim() != 3 or mask.dtype != torch.bool or band < 1:
            raise ValueError("BandedMask needs a (B, T, S) bool mask and a positive band")
        self.shape = tuple(mask.shape)
        rows, queries, keys = mask.shape
        index = torch.arange(keys, device=mask.device)
        self.pieces: list[tuple[slice, slice, slice, torch.Tensor | None]] = []  # rows, queries, keys, mask piece
        for first_query in range(0, queries, band):
            band_queries = slice(first_query, min(first_query + band, queries))
            seen = mask[:, band_queries].any(dim=1)  # (B, S)
            starts = torch.where(seen, index, keys).amin(dim=1).tolist()
            ends = (torch.where(seen, index, -1).amax(dim=1) + 1).tolist()
            first_row = 0
            for row in range(1, rows + 1):
                if row < rows and (starts[row], ends[row]) == (starts[first_row], ends[first_row]):
                    continue
                band_rows, span = slice(first_row, row), slice(starts[first_row], ends[first_row])
                piece = mask[band_rows, band_queries, span]
                self.pieces.append((band_rows, band_queries, span, None if bool(piece.all()) else piece[:, None]))
                first_row = row

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, Dh)`` queries over ``(B, H, S, Dh)`` keys and values -> ``(B, H, T, Dh)``."""
        if (query.shape[0], query.shape[-2], key.shape[-2]) != self.shape:
            raise ValueError(f"a BandedMask of shape {self.shape} does not fit queries {tuple(query.shape)} and keys {tuple(key.shape)}")
        out = query.new_empty(*query.shape[:-1], value.shape[-1])
        for rows, queries, span, piece in self.pieces:
            out[rows, :, queries] = F.scaled_dot_product_attention(
                query[rows, :, queries], key[rows, :, span], value[rows, :, span], attn_mask=piece
            )
        return out


class Attention(nn.Module):
    """Multi-head self-attention with optional RoPE, boolean mask, causal masking and KV cache.

    Parameters are named like F5-TTS's attention (``to_q``, ``to_k``, ``to_v``, ``to_out.0``; optional
    ``q_norm``/``k_norm``) so its weights load one-to-one.

    Args:
        dim: model width ``D``.
        heads: number of heads ``H``.
        dim_head: head width ``Dh`` (inner width ``H * Dh`` may differ from ``D``).
        dropout: dropout after the output projection (training only).
        bias: biases on the projections.
        qk_norm: ``"rms_norm"`` to RMS-normalize queries and keys per head before RoPE, or None.
        rope_heads: apply RoPE only to the first `rope_heads` heads (None: all heads).
        rope_interleaved: pair layout of the RoPE angles given to `forward`.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = True,
        qk_norm: Literal["rms_norm"] | None = None,
        rope_heads: int | None = None,
        rope_interleaved: bool = True,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.rope_heads = rope_heads
        self.rope_interleaved = rope_interleaved
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=bias), nn.Dropout(dropout)])
        if qk_norm is None:
            self.q_norm = self.k_norm = None
        elif qk_norm == "rms_norm":
            self.q_norm = nn.RMSNorm(dim_head, eps=1e-6)
            self.k_norm = nn.RMSNorm(dim_head, eps=1e-6)
        else:
            raise ValueError(f"unknown qk_norm {qk_norm!r}; use 'rms_norm' or None")

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.dim_head)).transpose(1, 2)  # (B, T, H*Dh) -> (B, H, T, Dh)

    def _rotate(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        if self.rope_heads is None:
            return apply_rotary(x, rope, self.rope_interleaved)
        n = self.rope_heads
        return torch.cat((apply_rotary(x[:, :n], rope, self.rope_interleaved), x[:, n:]), dim=1)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor | None = None,
        attn_mask: torch.Tensor | BandedMask | None = None,
        causal: bool = False,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Attend over `x` (and the cached frames).

        Args:
            x: ``(B, T, D)`` this step's frames.
            rope: angles ``(T, Dh)`` or ``(B, T, Dh)`` for the positions of `x` (with a cache, positions start
                at ``len(kv_cache)``: use ``RotaryEmbedding.for_length(T, offset=len(kv_cache))``).
            attn_mask: bool "may attend" mask ``(T, S)``, ``(B, T, S)`` or ``(B, H, T, S)``; a key-padding mask
                is ``mask[:, None, :]``. Combined with `causal` by logical and. Or a `BandedMask` (not with
                `causal`): the same attention, skipping the key spans it hides.
            causal: query ``i`` (absolute position ``S - T + i``) sees keys up to its own position.
            kv_cache: appended to in place; the attention covers cached frames plus `x`.

        Returns:
            ``(B, T, D)``.
        """
        query = self._split_heads(self.to_q(x))
        key = self._split_heads(self.to_k(x))
        value = self._split_heads(self.to_v(x))
        if self.q_norm is not None:
            query, key = self.q_norm(query), self.k_norm(key)
        if rope is not None:
            query, key = self._rotate(query, rope), self._rotate(key, rope)
        if kv_cache is not None:
            key, value = kv_cache.update(key, value)
        if isinstance(attn_mask, BandedMask):
            if causal:
                raise ValueError("a BandedMask holds the whole mask: build causality into it")
            out = attn_mask.attend(query, key, value).transpose(1, 2).flatten(-2)
            return self.to_out[1](self.to_out[0](out))
        num_queries, num_keys = query.shape[-2], key.shape[-2]
        mask = attn_mask
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]  # (B, 1, T, S): same mask for every head
        if causal:
            # With a cache the queries are the last T of S frames, hence the diagonal offset.
            tri = torch.ones(num_queries, num_keys, dtype=torch.bool, device=x.device).tril(num_keys - num_queries)
            mask = tri if mask is None else mask & tri
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        out = out.transpose(1, 2).flatten(-2)  # (B, T, H*Dh)
        return self.to_out[1](self.to_out[0](out))


class FeedForward(nn.Module):
    """Linear -> GELU (tanh approximation by default) -> dropout -> linear; F5 names ``ff.0.0`` and ``ff.2``.

    Args:
        dim: input width ``D``.
        mult: hidden width is ``dim * mult``.
        dim_out: output width (default `dim`).
        dropout: dropout on the hidden activations.
        approximate: ``"tanh"`` or ``"none"`` (exact GELU).
    """

    def __init__(
        self, dim: int, mult: float = 4, dim_out: int | None = None, dropout: float = 0.0, approximate: str = "tanh"
    ) -> None:
        super().__init__()
        hidden = int(dim * mult)
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate=approximate)),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim_out or dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` -> ``(..., dim_out)``."""
        return self.ff(x)


# ---------------------------------------------------------------------------------------------------------
# Adaptive layer norm (adaLN-Zero, DiT)


class AdaLayerNormZero(nn.Module):
    """adaLN-Zero: a conditioning vector sets shift/scale/gate for the attention and the feed-forward halves of a
    block. ``linear`` (F5 name) maps ``SiLU(c)`` to six ``D``-vectors; it starts at zero so a fresh block is the
    identity (`init_zero`).

    Args:
        dim: model width ``D``.
        cond_dim: conditioning width ``C`` (default `dim`).
    """

    def __init__(self, dim: int, cond_dim: int | None = None) -> None:
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(cond_dim or dim, dim * 6)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def init_zero(self) -> None:
        """Zero the modulation (the "Zero" of adaLN-Zero)."""
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`x` ``(B, T, D)``, `cond` ``(B, C)`` -> (modulated norm of `x` ``(B, T, D)``, attention gate,
        feed-forward shift, feed-forward scale, feed-forward gate), the last four ``(B, D)``."""
        shift_attn, scale_attn, gate_attn, shift_ff, scale_ff, gate_ff = self.linear(self.silu(cond)).chunk(6, dim=-1)
        x = self.norm(x) * (1 + scale_attn[:, None]) + shift_attn[:, None]
        return x, gate_attn, shift_ff, scale_ff, gate_ff


class AdaLayerNormZeroFinal(nn.Module):
    """The output adaLN of a DiT: ``norm(x) * (1 + scale) + shift`` with ``(scale, shift)`` from ``SiLU(c)``
    (in that order, as the F5 weights are laid out)."""

    def __init__(self, dim: int, cond_dim: int | None = None) -> None:
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(cond_dim or dim, dim * 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def init_zero(self) -> None:
        """Zero the modulation."""
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """`x` ``(B, T, D)``, `cond` ``(B, C)`` -> ``(B, T, D)``."""
        scale, shift = self.linear(self.silu(cond)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


# ---------------------------------------------------------------------------------------------------------
# Sinusoidal embeddings


def timestep_embedding(time: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of flow/diffusion times ``(B,)`` -> ``(B, dim)``, laid out ``[sin | cos]``.

    Frequencies ``exp(-i * ln(10000) / (dim/2 - 1))`` for ``i < dim/2``; times are multiplied by `scale` first
    (flow-matching times live in [0, 1]).
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=time.device, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    args = scale * time.float()[:, None] * freqs[None]
    return torch.cat((args.sin(), args.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    """`timestep_embedding` followed by ``time_mlp`` (Linear -> SiLU -> Linear), as in F5's DiT.

    Args:
        dim: output width.
        freq_dim: width of the sinusoidal features (256 in F5).
    """

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        """``(B,)`` times -> ``(B, dim)``."""
        features = timestep_embedding(time, self.freq_dim).to(self.time_mlp[0].weight.dtype)
        return self.time_mlp(features)


def sinusoidal_position_table(positions: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Absolute sinusoidal position features ``(..., T)`` -> ``(..., T, dim)``, laid out ``[cos | sin]`` with
    frequencies ``theta ** (-2i / dim)`` (the layout F5's text embedding adds to its character embeddings)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)[: dim // 2] / dim))
    args = positions.float()[..., None] * freqs
    return torch.cat((args.cos(), args.sin()), dim=-1)


# ---------------------------------------------------------------------------------------------------------
# Convolutional blocks


class GRN(nn.Module):
    """Global response normalization (ConvNeXt-V2) over the time axis of ``(B, T, D)``; starts as the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, D)``."""
        energy = torch.norm(x, p=2, dim=1, keepdim=True)  # (B, 1, D): L2 over time per channel
        relative = energy / (energy.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * relative) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """ConvNeXt-V2 block over ``(B, T, D)``: depthwise conv -> LayerNorm -> pointwise up -> GELU -> GRN -> pointwise
    down, plus the residual. F5's text encoder stacks these.

    Args:
        dim: width ``D``.
        intermediate_dim: width of the pointwise hidden layer.
        kernel_size: depthwise kernel (odd; "same" padding).
        dilation: depthwise dilation.
    """

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int = 7, dilation: int = 1) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(
            dim, dim, kernel_size, padding=dilation * (kernel_size - 1) // 2, groups=dim, dilation=dilation
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.grn = GRN(intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, D)``."""
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(h)))))
        return x + h


class ConvPositionEmbedding(nn.Module):
    """Relative position from two grouped convolutions with Mish (F5's ``conv_pos_embed``); returns only the
    embedding, the caller adds it to its input.

    Args:
        dim: width ``D``.
        kernel_size: odd kernel ("same" padding).
        groups: convolution groups (``D`` must divide by it).
    """

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`x` ``(B, T, D)``, `mask` ``(B, T)`` bool (True = real frame; padding is zeroed before and after) ->
        ``(B, T, D)``."""
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0.0)
        out = self.conv1d(x.transpose(1, 2)).transpose(1, 2)
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return out
