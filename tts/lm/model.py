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

Shapes: ``B`` batch, ``L`` stream length, ``V`` vocabulary, ``D`` width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tts.checkpoints import PretrainedMixin
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


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
