"""The speech-token language model: a small decoder-only transformer (`transformers` Llama) over one stream.

The stream interleaves the text with the speech, one text unit at a time (phoneme-level interleaving, as in
ELLA-V), so the alignment between text and speech is built into the sequence instead of being learned::

    <style> <level>  U(prompt) U(target)  <speech>  u1 s s s  u2 s s  u3 ... (prompt)  u1 s s ... (target) <eos>

- Text units (`tts.lm.stream.text_units`): an utterance-start unit (``<bos>`` of the phoneme table), then the
  phoneme table ids of the words (phonemes, stress marks, punctuation, ``<wb>`` between words). Each unit is
  followed by the speech tokens spoken while it sounds (stress marks and most word boundaries: none; a comma:
  its pause).
- Speech tokens: the speech tokenizer's FSQ codes (31.25 Hz). The model predicts them, and when to move on to
  the next unit. At inference the text side is forced: after each speech token the only choices are another
  speech token or the next unit of the text (``<eos>`` after the last), so no word can be skipped, repeated or
  invented; a per-unit cap on tokens is the hard stop (`tts.lm.generate`).
- Style: a style label and an intensity level token at the start (``neutral``/level 0 for plain speech).

Vocabulary (``V = table + styles + levels + 1 + codebook``): ids ``0 .. P-1`` are the phoneme table's (``<pad>``
0, ``<eos>`` ends the speech), then one id per style, one per intensity level (0 to ``intensity_levels``), the
``<speech>`` id that ends the text prefix, then the speech codes.

Inference: `SpeechTokenDecoder` decodes one stream incrementally through the same weights, without the
`transformers` per-call machinery (see its docstring); training and `SpeechTokenLM.forward` stay on `transformers`.

Shapes: ``B`` batch, ``L`` stream length, ``V`` vocabulary, ``D`` width, ``H`` query heads, ``Hkv`` key/value
heads, ``Dh`` head width.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tts.checkpoints import PretrainedMixin
from tts.layers import GrowingKVCache
from tts.data.styles import STYLES
from tts.text import PHONEME_TABLE


def _table_size() -> int:
    return len(PHONEME_TABLE)


@dataclass(frozen=True)
class SpeechTokenLMConfig:
    """Architecture and stream layout of `SpeechTokenLM`.

    Attributes:
        phoneme_table_version, phoneme_table_size: the `tts.text.PHONEME_TABLE` the text ids come from.
        codebook_size: speech codes of the tokenizer; token_rate: its tokens per second.
        tokenizer: name of the speech tokenizer whose codes this model speaks (recorded, checked on use).
        styles: style labels, in id order; intensity_levels: intensity steps (level 0 is neutral).
        dim, layers, heads, kv_heads, ff_dim: the transformer; max_positions: longest stream.
        rope_theta: rotary embedding base.
        max_tokens_per_unit: hard cap of speech tokens after one phoneme at inference;
        max_tokens_per_pause: the cap after a word boundary, punctuation mark or the utterance start.
    """

    phoneme_table_version: int = PHONEME_TABLE.version
    phoneme_table_size: int = field(default_factory=_table_size)
    codebook_size: int = 1000
    token_rate: float = 31.25
    tokenizer: str = ""
    styles: tuple[str, ...] = STYLES
    intensity_levels: int = 4
    dim: int = 384
    layers: int = 6
    heads: int = 6
    kv_heads: int = 2
    ff_dim: int = 1024
    max_positions: int = 4096
    rope_theta: float = 10000.0
    max_tokens_per_unit: int = 20
    max_tokens_per_pause: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "styles", tuple(self.styles))
        if self.dim % self.heads or self.heads % self.kv_heads:
            raise ValueError("dim must divide into heads, and heads into kv_heads")

    @property
    def style_offset(self) -> int:
        return self.phoneme_table_size

    @property
    def level_offset(self) -> int:
        return self.style_offset + len(self.styles)

    @property
    def speech_start_id(self) -> int:
        """Id that ends the text prefix and starts the interleaved speech."""
        return self.level_offset + self.intensity_levels + 1

    @property
    def speech_offset(self) -> int:
        """Id of speech code 0."""
        return self.speech_start_id + 1

    @property
    def vocab_size(self) -> int:
        return self.speech_offset + self.codebook_size

    @property
    def pad_id(self) -> int:
        return PHONEME_TABLE.pad_id

    @property
    def eos_id(self) -> int:
        return PHONEME_TABLE.eos_id

    def style_id(self, style: str) -> int:
        """Stream id of a style label."""
        if style not in self.styles:
            raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(self.styles)}")
        return self.style_offset + self.styles.index(style)

    def level_id(self, style: str, intensity: float) -> int:
        """Stream id of an intensity (level 0 for neutral speech or intensity 0)."""
        if not 0.0 <= intensity <= 1.0:
            raise ValueError(f"intensity must be in [0, 1], got {intensity}")
        level = 0 if style == "neutral" else int(round(intensity * self.intensity_levels))
        return self.level_offset + level

    def check_phoneme_table(self) -> None:
        """Refuse a model trained on another phoneme table than the one installed."""
        if (self.phoneme_table_version, self.phoneme_table_size) != (PHONEME_TABLE.version, len(PHONEME_TABLE)):
            raise ValueError(
                f"this model was trained with phoneme table v{self.phoneme_table_version} "
                f"({self.phoneme_table_size} symbols); the studio has v{PHONEME_TABLE.version} ({len(PHONEME_TABLE)})"
            )


class SpeechTokenLM(PretrainedMixin, nn.Module):
    """Decoder-only transformer over the interleaved text/speech stream (see the module docstring).

    `forward` maps ``(B, L)`` ids to ``(B, L, V)`` next-id logits; with ``past_key_values`` it decodes
    incrementally (the `transformers` KV cache).
    """

    config_class = SpeechTokenLMConfig

    def __init__(self, config: SpeechTokenLMConfig) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        self.config = config
        self.transformer = LlamaForCausalLM(LlamaConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.dim,
            intermediate_size=config.ff_dim,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            num_key_value_heads=config.kv_heads,
            max_position_embeddings=config.max_positions,
            rope_theta=config.rope_theta,
            tie_word_embeddings=False,
            pad_token_id=config.pad_id,
            bos_token_id=None,
            eos_token_id=config.eos_id,
            attention_bias=False,
            mlp_bias=False,
        ))

    def forward(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool = False,
    ):
        """``(B, L)`` ids -> the `transformers` output (``logits`` ``(B, L, V)``, ``past_key_values``)."""
        return self.transformer(
            input_ids=ids, attention_mask=attention_mask, past_key_values=past_key_values, use_cache=use_cache
        )

    def decoder(self, capacity: int = 0, reference: bool = False,
                half: bool | None = None) -> "SpeechTokenDecoder | CachedForwardDecoder":
        """A fresh incremental decoder of one stream (``decoder(ids) -> (V,)`` next-id logits; inference only).

        `SpeechTokenDecoder` (the fast path, room for `capacity` ids made up front; `half` as there) unless
        `reference` is set or a subclass changes `forward`: then `CachedForwardDecoder`, which decodes through
        `forward` in float32.
        """
        if reference or type(self).forward is not SpeechTokenLM.forward:
            return CachedForwardDecoder(self)
        return SpeechTokenDecoder(self, capacity, half)


class CachedForwardDecoder:
    """Incremental decoding through `SpeechTokenLM.forward` and the `transformers` KV cache: the reference that
    `SpeechTokenDecoder` is tested against, and the path of a subclass that changes `forward`."""

    def __init__(self, model: SpeechTokenLM) -> None:
        self.model = model
        self.cache = None

    @torch.inference_mode()
    def __call__(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Feed the next `ids` of the stream -> ``(V,)`` logits of the id after the last one."""
        device = next(self.model.parameters()).device
        ids = torch.as_tensor(ids, device=device).reshape(1, -1)
        output = self.model(ids, past_key_values=self.cache, use_cache=True)
        self.cache = output.past_key_values
        return output.logits[0, -1]


class SpeechTokenDecoder:
    """Incremental decoding of one stream with a `SpeechTokenLM`'s weights: the logits `SpeechTokenLM.forward`
    gives with a KV cache, up to float rounding, at a fraction of the per-token cost.

    A decoding step of this model is ~10M multiply-adds over 40 MB of weights, so on a CPU it is bound by reading
    the weights, and the `transformers` forward's per-call work (output and cache objects, a cache that concatenates
    every step, mask and position bookkeeping) adds about half again. Here a step is the layer's arithmetic and
    little else: the projections, `scaled_dot_product_attention` over key/value buffers with room for the whole
    stream, the rotary angles of the model's own `inv_freq`. It reads the `transformers` model's weights in place
    (no copies; fusing the q/k/v and gate/up projections measured no faster, the matrix-vector products being
    memory-bound) and computes the same Llama layer: RMSNorm, rotary embedding, grouped-query attention, SiLU-gated
    feed-forward.

    Reading the weights is the cost, so on CPUs that convert half floats in vector registers (x86 with AVX2 or
    AVX-512: `half_weights`) a step's projections read float16 copies of them (the shipped checkpoint's own
    precision; made once per weight, `_half`) with float16 inputs, the rest of the layer in float32: 2.4 instead
    of 5.0 ms a step for the shipped LM, next-id probabilities within 0.002 of float32's. The prefix, many ids at
    once, keeps float32 (`HALF_MAX_IDS`; docs/benchmarks.md, "The token LM in half precision").

    Inference only (no gradients); one decoder per stream, not shared between threads.

    Args:
        model: the LM (eval mode).
        capacity: stream length to make room for (the prefix plus every id to come); longer streams still work.
        half: read float16 copies of the weights (None: `half_weights`).
    """

    def __init__(self, model: SpeechTokenLM, capacity: int = 0, half: bool | None = None) -> None:
        llama = model.transformer.model
        hf_config = model.transformer.config
        # The layer written out below; `SpeechTokenLM.__init__` fixes these settings.
        assert hf_config.hidden_act == "silu" and not hf_config.attention_bias and not hf_config.mlp_bias
        assert llama.rotary_emb.attention_scaling == 1.0
        config = model.config
        self.heads = config.heads
        self.head_dim = config.dim // config.heads
        self.eps = hf_config.rms_norm_eps
        self.inv_freq = llama.rotary_emb.inv_freq
        self.embed = llama.embed_tokens.weight
        self.final_norm = llama.norm.weight
        self.lm_head = model.transformer.lm_head.weight
        self.layers = [
            (layer.input_layernorm.weight, layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight,
             layer.self_attn.v_proj.weight, layer.self_attn.o_proj.weight, layer.post_attention_layernorm.weight,
             layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight)
            for layer in llama.layers
        ]
        half = half_weights(self.embed.device) if half is None else half
        # The same tuples with the projections (all but the two norms) read from float16 copies.
        self.half_layers = [tuple(w if k in (0, 5) else _half(w) for k, w in enumerate(layer))
                            for layer in self.layers] if half else None
        self.half_lm_head = _half(self.lm_head) if half else None
        self.caches = [GrowingKVCache(capacity=capacity) for _ in self.layers]
        self.length = 0

    @property
    def half(self) -> bool:
        """Whether this decoder's steps read float16 copies of the weights."""
        return self.half_layers is not None

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # LlamaRMSNorm's arithmetic, in the same order.
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    @torch.inference_mode()
    def __call__(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Feed the next `ids` of the stream (the prefix first, then one id per step) -> ``(V,)`` logits of the id
        after the last one."""
        ids = torch.as_tensor(ids, device=self.embed.device).reshape(-1)
        count, start = ids.shape[0], self.length
        heads, head_dim = self.heads, self.head_dim
        positions = torch.arange(start, start + count, device=self.embed.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq.float()
        angles = torch.cat((angles, angles), dim=-1)  # (T, Dh), as LlamaRotaryEmbedding lays them out
        # Llama's rotation x * cos + rotate_half(x) * sin, with rotate_half(x) = (-x2, x1) written as a roll of x
        # by Dh/2 times the sines with the first half negated.
        cos, signed_sin = angles.cos(), angles.sin()
        signed_sin[:, : head_dim // 2].neg_()
        mask = None
        if count > 1 and start:
            keys = torch.arange(start + count, device=self.embed.device)
            mask = keys[None] <= keys[start:, None]  # (T, S): each id sees the stream up to itself
        h = F.embedding(ids, self.embed)  # (T, D)
        # Half weights for a few ids at a time (the matrix-vector products that read the weights); the prefix's
        # matrix products, bound by arithmetic, stay in float32.
        half = self.half_layers is not None and count <= HALF_MAX_IDS
        layers, lm_head = (self.half_layers, self.half_lm_head) if half else (self.layers, self.lm_head)
        linear = self._linear
        for (attn_norm, q, k, v, out, ff_norm, gate, up, down), cache in zip(layers, self.caches):
            x = self._rms_norm(h, attn_norm)
            query, key, value = (linear(x, w).view(1, count, -1, head_dim).transpose(1, 2) for w in (q, k, v))
            query, key = (torch.addcmul(y * cos, y.roll(head_dim // 2, dims=-1), signed_sin) for y in (query, key))
            key, value = cache.update(key, value)  # (1, Hkv, S, Dh)
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, is_causal=count > 1 and not start, enable_gqa=True,
            )  # (1, H, T, Dh)
            h = h + linear(attended[0].transpose(0, 1).reshape(count, heads * head_dim), out)
            x = self._rms_norm(h, ff_norm)
            h = h + linear(F.silu(linear(x, gate)) * linear(x, up), down)
        self.length += count
        return linear(self._rms_norm(h[-1], self.final_norm), lm_head)

    def _linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T`` in float32, read from the float16 copy of `weight` when it is one."""
        if weight.dtype == torch.float16:
            return F.linear(x.half(), weight).float()
        return F.linear(x, weight)


HALF_MAX_IDS = 8
"""`SpeechTokenDecoder` reads half weights for calls of at most this many ids (a step, a few forced units)."""
HALF_WEIGHTS_ENV = "TIMBRE_LM_HALF"
"""``1`` / ``0`` forces the token LM's decoder onto float16 / float32 weights (default: `half_weights`' rule)."""


def half_weights(device: torch.device) -> bool:
    """Whether `SpeechTokenDecoder` reads float16 copies of the weights: on a CPU whose vector unit torch uses is
    AVX2 or AVX-512 (half floats converted in registers, so reading half the bytes is the gain; measured on
    AVX-512, and AVX2 machines have the same conversion instructions), unless `HALF_WEIGHTS_ENV` says otherwise;
    float32 elsewhere (not measured there)."""
    forced = os.environ.get(HALF_WEIGHTS_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return device.type == "cpu" and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


_HALVES: dict[int, tuple[int, torch.Tensor]] = {}
"""``id(weight) -> (its version when copied, its float16 copy)``; an entry goes when its weight does."""


def _half(weight: torch.Tensor) -> torch.Tensor:
    """A float16 copy of `weight`, made once and kept while the weight lives and is not changed in place (a
    training step bumps its version and the next decoder copies it again)."""
    key = id(weight)
    kept = _HALVES.get(key)
    if kept is None or kept[0] != weight._version:
        if kept is None:
            weakref.finalize(weight, _HALVES.pop, key, None)
        kept = (weight._version, weight.detach().to(torch.float16))
        _HALVES[key] = kept
    return kept[1]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
