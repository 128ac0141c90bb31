"""The causal flow refiner: speech tokens + a timbre prompt + a style -> the flow velocity of a mel.

A DiT estimator (adaLN-Zero on the flow time plus a global speaker/style vector) over one sequence::

    [ prompt frames (its mel and its tokens) | target frames (noisy mel x_t and their tokens) ]

- Tokens are embedded and repeated exactly ``frames_per_token`` times to the mel rate; a small convolution gives
  every frame ``lookahead`` frames of future token context. That is the model's only look into the future.
- Attention is chunk-causal (`tts.layers.chunk_causal_mask` with no lookahead of its own): target frames see the
  whole prompt, their own chunk of ``chunk_size`` frames and all earlier chunks; prompt frames see only the
  prompt. Keeping the lookahead out of attention is what makes streaming exact: a lookahead over the evolving
  mel would compound through the layers (every layer would reach one more chunk ahead) and again through the
  ODE steps, while a lookahead over the fixed tokens does not. So chunk ``k`` of the output depends on the
  prompt, on earlier chunks and on tokens up to ``lookahead`` frames past its end, and on nothing later.
- The prompt is clean data, so its frames go through the blocks at flow time 1 whatever the target's time: its
  keys and values are computed once per utterance (`prompt_cache`) and serve every ODE step, guidance pass and
  chunk.
- A small speaker encoder pools the prompt mel into a unit-length speaker embedding (attention pooling); with
  a style embedding (a learned table, id 0 = neutral) it conditions every block through adaLN-Zero.
- Classifier-free guidance: tokens, prompt and speaker embedding can each be dropped per item. A dropped prompt is
  hidden from the target frames by the attention mask (so the sampler can leave it out of the unconditional pass
  entirely); dropped tokens use a learned "no token" id; a dropped speaker embedding is zero.

The flow lives in normalised mel space ``(log_mel - mel_mean) / mel_std`` (`normalize_mel`); t = 0 is noise and
t = 1 is data. Prompts are given as plain log-mels.

Shapes:
    B   batch
    M   mel bands (``config.mel.n_mels``, 100)
    P   prompt mel frames (padded in a batch)
    T   target mel frames, ``frames_per_token * N``
    N   target tokens; Np prompt tokens, ``ceil(P / frames_per_token)``
    S   frames in one pass through the blocks; K keys (cached + S)
    D   model width; Dk token feature width; Ds speaker embedding width; H heads, Dh head width
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tts.audio import STUDIO_MEL, MelConfig
from tts.checkpoints import PretrainedMixin
from tts.layers import (
    AdaLayerNormZero,
    AdaLayerNormZeroFinal,
    Attention,
    BandedMask,
    FeedForward,
    KVCache,
    RotaryEmbedding,
    TimestepEmbedding,
    chunk_causal_mask,
)

__all__ = ["FlowRefinerConfig", "FlowRefiner", "refiner_attention_mask", "count_parameters", "PROMPT_TIME"]

PROMPT_TIME = 1.0
"""Flow time at which prompt frames go through the blocks: they are clean data, the end of the flow."""


@dataclass(frozen=True)
class FlowRefinerConfig:
    """Configuration of `FlowRefiner`. It owns the audio constants of its weights.

    Attributes:
        codebook_size: number of speech token ids of the tokenizer it is paired with; one more id, equal to
            ``codebook_size``, means "no token" (guidance dropout and padding).
        frames_per_token: mel frames per token (3: 31.25 Hz tokens under 93.75 Hz mels), from the tokenizer.
        tokenizer: name or path of the tokenizer checkpoint the tokens came from (pipelines check the pairing).
        dim: model width ``D``.
        depth: number of DiT blocks.
        heads: attention heads ``H``; dim_head: their width ``Dh``.
        ff_mult: feed-forward hidden width is ``dim * ff_mult``.
        dropout: attention/feed-forward dropout in training.
        qk_norm: RMS-normalise queries and keys (steadier training of small models).
        token_dim: width of the token features ``Dk``.
        chunk_size: attention chunk in mel frames; a multiple of ``frames_per_token``. Sets the streaming
            granularity (latency) against the context each frame sees within its chunk (quality).
        lookahead: future mel frames of token context each frame gets (through the token convolution).
        speaker_dim: speaker embedding width ``Ds``.
        speaker_encoder_dim, speaker_encoder_layers, speaker_pool_heads: the speaker encoder's width (heads of
            64, or one head below that), transformer layers and attention-pooling heads.
        num_styles: rows of the style table (id 0 = neutral).
        style_dim: style embedding width.
        styles: the style labels the weights were trained with, in id order (``styles[0]`` is neutral); a model
            trained on neutral ids only has ``("neutral",)`` and renders every label neutrally (`style_id`).
        time_freq_dim: sinusoidal flow-time features.
        mel_mean, mel_std: normalisation of the flow space, measured on the training corpus.
        mel: the mel features the weights were trained on.
    """

    codebook_size: int = 1000
    frames_per_token: int = 3
    tokenizer: str = ""
    dim: int = 256
    depth: int = 6
    heads: int = 4
    dim_head: int = 64
    ff_mult: float = 2.0
    dropout: float = 0.0
    qk_norm: bool = True
    token_dim: int = 128
    chunk_size: int = 24
    lookahead: int = 6
    speaker_dim: int = 128
    speaker_encoder_dim: int = 128
    speaker_encoder_layers: int = 2
    speaker_pool_heads: int = 4
    num_styles: int = 16
    style_dim: int = 64
    styles: tuple[str, ...] = ("neutral",)
    time_freq_dim: int = 256
    mel_mean: float = -5.0
    mel_std: float = 2.5
    mel: MelConfig = field(default_factory=lambda: STUDIO_MEL)

    def __post_init__(self) -> None:
        if self.codebook_size < 1 or self.frames_per_token < 1:
            raise ValueError("codebook_size and frames_per_token must be positive")
        if self.chunk_size < 1 or self.chunk_size % self.frames_per_token:
            raise ValueError(
                f"chunk_size ({self.chunk_size} frames) must be a positive multiple of frames_per_token "
                f"({self.frames_per_token}) so that chunks end on token boundaries"
            )
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead}")
        if self.num_styles < 1:
            raise ValueError("num_styles must be at least 1 (id 0 is the neutral style)")
        object.__setattr__(self, "styles", tuple(self.styles))
        if not self.styles or self.styles[0] != "neutral" or len(self.styles) > self.num_styles:
            raise ValueError(f"styles must start with 'neutral' and have at most num_styles ({self.num_styles}) "
                             f"labels, got {self.styles}")
        if self.mel_std <= 0:
            raise ValueError(f"mel_std must be positive, got {self.mel_std}")
        if self.dim_head % 2:
            raise ValueError(f"dim_head must be even for rotary embeddings, got {self.dim_head}")

    def style_id(self, style: str) -> int:
        """The style-table id of a label: its place in `styles`, 0 (neutral) for a label the weights were not
        trained with (a style-less refiner speaks every style neutrally; the token LM and post-processing carry
        the style then)."""
        return self.styles.index(style) if style in self.styles else 0

    @property
    def mel_dim(self) -> int:
        """Mel bands ``M``."""
        return self.mel.n_mels

    @property
    def null_token(self) -> int:
        """The "no token" id (guidance dropout, padding)."""
        return self.codebook_size


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of `module`."""
    return sum(p.numel() for p in module.parameters())


def _frame_mask(lengths: torch.Tensor | None, batch: int, frames: int, device: torch.device) -> torch.Tensor:
    """``(B, frames)`` bool, True on real frames (all True without `lengths`)."""
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    return torch.arange(frames, device=device)[None] < lengths.to(device)[:, None]


def refiner_attention_mask(
    prompt_frames: int,
    target_frames: int,
    chunk_size: int,
    prompt_lengths: torch.Tensor | None = None,
    target_lengths: torch.Tensor | None = None,
    drop_prompt: torch.Tensor | None = None,
    batch: int = 1,
    device: torch.device | str | None = None,
    first_row: int = 0,
) -> torch.Tensor:
    """The "may attend" mask of the sequence ``[prompt (P) | target (T)]``, ``(B, P + T, P + T)`` bool.

    Prompt frames see the prompt; target frames see the prompt (unless `drop_prompt`) and, among target frames,
    `chunk_causal_mask(T, chunk_size)`. Padding frames (beyond `prompt_lengths` / `target_lengths`) are never
    seen; every frame sees itself, so no row is empty (an empty row would make attention return NaN).

    Args:
        prompt_frames, target_frames: ``P`` and ``T``.
        chunk_size: target frames per attention chunk.
        prompt_lengths, target_lengths: ``(B,)`` real lengths (None: all real).
        drop_prompt: ``(B,)`` bool, hide the prompt from that item's target frames.
        batch: ``B`` when no tensor argument gives it.
        first_row: return only the rows from this frame on, ``(B, P + T - first_row, P + T)`` (a sampler's
            queries), without building the others.
    """
    for tensor in (prompt_lengths, target_lengths, drop_prompt):
        if tensor is not None:
            batch, device = tensor.shape[0], tensor.device
    total = prompt_frames + target_frames
    rows = torch.arange(first_row, total, device=device)
    columns = torch.arange(total, device=device)
    device = columns.device
    structure = torch.zeros(len(rows), total, dtype=torch.bool, device=device)
    structure[:, :prompt_frames] = True
    first_target_row = max(prompt_frames - first_row, 0)
    structure[first_target_row:, prompt_frames:] = chunk_causal_mask(target_frames, chunk_size, 0, device=device)[
        max(first_row - prompt_frames, 0) :
    ]
    keys = torch.cat(
        (
            _frame_mask(prompt_lengths, batch, prompt_frames, device),
            _frame_mask(target_lengths, batch, target_frames, device),
        ),
        dim=1,
    )  # (B, P + T)
    mask = structure[None] & keys[:, None, :]
    if drop_prompt is not None and prompt_frames:
        hidden = drop_prompt.to(device)[:, None, None]  # (B, 1, 1)
        target_rows = rows[None, :, None] >= prompt_frames
        prompt_cols = columns[None, None, :] < prompt_frames
        mask = mask & ~(hidden & target_rows & prompt_cols)
    return mask | (rows[:, None] == columns[None, :])[None]


class TokenEncoder(nn.Module):
    """Token ids -> features at the mel rate, ``(B, N) -> (B, N * frames_per_token, Dk)``.

    Each id's embedding is repeated exactly ``frames_per_token`` times; then a residual convolution whose window
    spans the frame itself and the ``lookahead`` frames after it. Frames past an item's length are zeroed before
    the convolution, so a padded batch gives each item what it would get alone.
    """

    def __init__(self, config: FlowRefinerConfig) -> None:
        super().__init__()
        self.frames_per_token = config.frames_per_token
        self.lookahead = config.lookahead
        self.embed = nn.Embedding(config.codebook_size + 1, config.token_dim)
        self.lookahead_conv = nn.Conv1d(config.token_dim, config.token_dim, kernel_size=config.lookahead + 1)
        self.act = nn.GELU()
        self.out = nn.Linear(config.token_dim, config.token_dim)

    def forward(self, tokens: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`tokens` ``(B, N)`` ids (``codebook_size`` = no token), `frame_lengths` ``(B,)`` real mel frames ->
        ``(B, N * frames_per_token, Dk)``, zero past each length."""
        h = self.embed(tokens).repeat_interleave(self.frames_per_token, dim=1)
        valid = _frame_mask(frame_lengths, h.shape[0], h.shape[1], h.device)[..., None]
        h = h * valid
        context = F.pad(h.transpose(1, 2), (0, self.lookahead))  # the window looks right: frames f .. f + L
        h = h + self.out(self.act(self.lookahead_conv(context).transpose(1, 2)))
        return h * valid


class SpeakerEncoderLayer(nn.Module):
    """Pre-norm transformer layer (RoPE self-attention, feed-forward) of the speaker encoder."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(width)
        self.attn = Attention(width, heads=heads, dim_head=width // heads)
        self.ff_norm = nn.LayerNorm(width)
        self.ff = FeedForward(width, mult=2)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """`x` ``(B, P, W)``, `rope` ``(P, W / heads)``, `valid` ``(B, P)`` bool -> ``(B, P, W)``."""
        x = x + self.attn(self.attn_norm(x), rope=rope, attn_mask=valid[:, None, :])
        return x + self.ff(self.ff_norm(x))


class SpeakerEncoder(nn.Module):
    """Prompt mel -> a unit-length speaker embedding, ``(B, P, M) -> (B, Ds)``.

    Linear input projection, transformer layers over the real frames, then attention pooling: each of
    ``speaker_pool_heads`` heads scores every frame, softmax over the real frames, and the weighted sums are
    projected to ``Ds``. Padding frames are never attended to or pooled, so a padded batch changes nothing.
    """

    def __init__(self, config: FlowRefinerConfig) -> None:
        super().__init__()
        width = config.speaker_encoder_dim
        heads = max(1, width // 64)
        if width % heads or (width // heads) % 2:
            raise ValueError(f"speaker_encoder_dim {width} must split into heads of even width")
        self.in_proj = nn.Linear(config.mel_dim, width)
        self.rotary_embed = RotaryEmbedding(width // heads, persistent=False)
        self.layers = nn.ModuleList(SpeakerEncoderLayer(width, heads) for _ in range(config.speaker_encoder_layers))
        self.pool_scores = nn.Linear(width, config.speaker_pool_heads)
        self.out_proj = nn.Linear(width * config.speaker_pool_heads, config.speaker_dim)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`mel` ``(B, P, M)`` normalised prompt mel, `lengths` ``(B,)`` real frames -> ``(B, Ds)``."""
        valid = _frame_mask(lengths, mel.shape[0], mel.shape[1], mel.device)  # (B, P)
        h = self.in_proj(mel)
        rope = self.rotary_embed.for_length(mel.shape[1])
        for layer in self.layers:
            h = layer(h, rope, valid)
        scores = self.pool_scores(h).masked_fill(~valid[..., None], float("-inf")).softmax(dim=1)  # (B, P, heads)
        pooled = torch.einsum("bph,bpd->bhd", scores, h).flatten(1)
        return F.normalize(self.out_proj(pooled), dim=-1)


class RefinerBlock(nn.Module):
    """Pre-norm DiT block: adaLN-Zero modulated self-attention (RoPE, mask, KV cache) and feed-forward.

    The same wiring as `tts.dit.model.DiTBlock`, plus the KV cache that streaming needs.
    """

    def __init__(self, config: FlowRefinerConfig) -> None:
        super().__init__()
        self.attn_norm = AdaLayerNormZero(config.dim)
        self.attn = Attention(
            config.dim,
            heads=config.heads,
            dim_head=config.dim_head,
            dropout=config.dropout,
            qk_norm="rms_norm" if config.qk_norm else None,
        )
        self.ff_norm = nn.LayerNorm(config.dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(config.dim, mult=config.ff_mult, dropout=config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        rope: torch.Tensor,
        attn_mask: torch.Tensor | BandedMask,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """`x` ``(B, S, D)``, `condition` ``(B, D)``, `rope` ``(B, S, Dh)``, `attn_mask` ``(B, S, K)`` (or a
        `BandedMask` of it) -> ``(B, S, D)``."""
        h, gate_attn, shift_ff, scale_ff, gate_ff = self.attn_norm(x, condition)
        x = x + gate_attn[:, None] * self.attn(h, rope=rope, attn_mask=attn_mask, kv_cache=kv_cache)
        h = self.ff_norm(x) * (1 + scale_ff[:, None]) + shift_ff[:, None]
        return x + gate_ff[:, None] * self.ff(h)


class FlowRefiner(PretrainedMixin, nn.Module):
    """The causal flow-matching refiner (see the module docstring).

    `forward` is the whole estimator for training. Sampling (`tts.refiner.sampling`) calls its parts
    (`speaker_embedding`, `global_condition`, `token_features`, `embed_prompt`, `prompt_cache`, `embed_target`,
    `estimate`) so it can reuse the prompt's keys and values and cache earlier chunks while streaming.
    """

    config_class = FlowRefinerConfig

    def __init__(self, config: FlowRefinerConfig) -> None:
        super().__init__()
        self.config = config
        self.token_encoder = TokenEncoder(config)
        self.speaker_encoder = SpeakerEncoder(config)
        self.style_embed = nn.Embedding(config.num_styles, config.style_dim)
        self.time_embed = TimestepEmbedding(config.dim, config.time_freq_dim)
        self.condition_proj = nn.Linear(config.speaker_dim + config.style_dim, config.dim)
        # Input frames are [noisy mel | prompt mel | token features]; the unused mel slot is zero.
        self.input_proj = nn.Linear(2 * config.mel_dim + config.token_dim, config.dim)
        self.prompt_marker = nn.Parameter(torch.zeros(config.dim))
        self.rotary_embed = RotaryEmbedding(config.dim_head, persistent=False)
        self.blocks = nn.ModuleList(RefinerBlock(config) for _ in range(config.depth))
        self.norm_out = AdaLayerNormZeroFinal(config.dim)
        self.proj_out = nn.Linear(config.dim, config.mel_dim)
        # adaLN-Zero: a fresh model predicts zero velocity and every block starts as the identity.
        for block in self.blocks:
            block.attn_norm.init_zero()
        self.norm_out.init_zero()
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    # -- normalisation of the flow space ------------------------------------------------------------------

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> flow space (any shape)."""
        return (mel - self.config.mel_mean) / self.config.mel_std

    def denormalize_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Flow space -> log-mel (any shape)."""
        return x * self.config.mel_std + self.config.mel_mean

    # -- conditioning ----------------------------------------------------------------------------------------

    def speaker_embedding(self, prompt_mel: torch.Tensor, prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-length speaker embedding of a prompt: `prompt_mel` ``(B, M, P)`` log-mel -> ``(B, Ds)``."""
        return self.speaker_encoder(self.normalize_mel(prompt_mel).transpose(1, 2), prompt_lengths)

    def global_condition(
        self,
        speaker_embedding: torch.Tensor,
        style_ids: torch.Tensor,
        drop_speaker: torch.Tensor | None = None,
        style_intensity: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Speaker ``(B, Ds)`` and style ids ``(B,)`` -> ``(B, D)``, added to the time embedding in every block.
        `drop_speaker` ``(B,)`` bool zeroes the speaker embedding of those items. `style_intensity` ``(B,)`` in
        [0, 1] moves each style embedding from the neutral one (0) to the style's own (1, the default)."""
        if drop_speaker is not None:
            speaker_embedding = speaker_embedding * (~drop_speaker).to(speaker_embedding.dtype)[:, None]
        style = self.style_embed(style_ids)
        if style_intensity is not None:
            neutral = self.style_embed.weight[0]
            style = neutral + style_intensity.to(style.dtype)[:, None] * (style - neutral)
        return self.condition_proj(torch.cat((speaker_embedding, style), dim=-1))

    def token_features(
        self, tokens: torch.Tensor, frame_lengths: torch.Tensor | None = None, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`tokens` ``(B, N)`` -> ``(B, N * frames_per_token, Dk)``; `drop` ``(B,)`` bool replaces an item's tokens
        by the "no token" id (its length is kept)."""
        if drop is not None:
            tokens = torch.where(drop[:, None], torch.full_like(tokens, self.config.null_token), tokens)
        return self.token_encoder(tokens, frame_lengths)

    def embed_prompt(
        self, prompt_mel: torch.Tensor, prompt_tokens: torch.Tensor, prompt_lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Prompt frames' inputs to the blocks: `prompt_mel` ``(B, M, P)`` log-mel, `prompt_tokens` ``(B, Np)`` ->
        ``(B, P, D)``. They do not depend on the flow time, so samplers compute them once."""
        mel = self.normalize_mel(prompt_mel).transpose(1, 2)
        mel = mel * _frame_mask(prompt_lengths, mel.shape[0], mel.shape[1], mel.device)[..., None]
        step = self.config.frames_per_token
        # A prompt's last token may cover frames past its end; its features there are real context, not padding.
        token_frames = None if prompt_lengths is None else -(-prompt_lengths // step) * step
        features = self.token_features(prompt_tokens, token_frames)[:, : mel.shape[1]]
        return self.input_proj(torch.cat((torch.zeros_like(mel), mel, features), dim=-1)) + self.prompt_marker

    def embed_target(self, x: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        """Target frames' inputs: `x` ``(B, M, T)`` flow state, `target_features` ``(B, T, Dk)`` -> ``(B, T, D)``."""
        x = x.transpose(1, 2)
        return self.input_proj(torch.cat((x, torch.zeros_like(x), target_features), dim=-1))

    # -- the estimator ------------------------------------------------------------------------------------

    def prompt_cache(
        self, prompt_embedding: torch.Tensor, condition: torch.Tensor, prompt_lengths: torch.Tensor | None = None
    ) -> list[KVCache]:
        """Run the prompt frames through the blocks at `PROMPT_TIME`; return each block's `KVCache` of them.

        Prompt frames attend only to the prompt, so this does not depend on the target or on its flow time.

        Args:
            prompt_embedding: ``(B, P, D)`` from `embed_prompt`.
            condition: ``(B, D)`` from `global_condition`.
            prompt_lengths: ``(B,)`` real prompt frames of a padded batch.
        """
        batch, prompt_frames = prompt_embedding.shape[:2]
        caches = [KVCache() for _ in self.blocks]
        mask = refiner_attention_mask(
            prompt_frames, 0, self.config.chunk_size, prompt_lengths, batch=batch, device=prompt_embedding.device
        )
        positions = torch.arange(prompt_frames, device=prompt_embedding.device)[None].expand(batch, -1)
        time = torch.full((batch,), PROMPT_TIME, device=prompt_embedding.device)
        self._blocks(prompt_embedding, condition + self.time_embed(time), positions, mask, caches)
        return caches

    def _blocks(
        self,
        h: torch.Tensor,
        condition: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | BandedMask,
        kv_caches: list[KVCache] | None,
    ) -> torch.Tensor:
        rope = self.rotary_embed(positions)
        for index, block in enumerate(self.blocks):
            h = block(h, condition, rope, attn_mask, None if kv_caches is None else kv_caches[index])
        return h

    def estimate(
        self,
        h: torch.Tensor,
        time: torch.Tensor,
        condition: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | BandedMask,
        kv_caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """Velocities of embedded target frames.

        Args:
            h: ``(B, S, D)`` target frames from `embed_target`.
            time: ``(B,)`` or scalar flow time in [0, 1].
            condition: ``(B, D)`` from `global_condition`.
            positions: ``(B, S)`` from `target_positions`.
            attn_mask: ``(B, S, K)``: these frames' rows of `refiner_attention_mask`, over the cached keys (prompt,
                earlier chunks) followed by these frames; or a `BandedMask` of them (samplers: the same velocities,
                faster).
            kv_caches: one `KVCache` per block, read and extended in place (from `prompt_cache`, and holding the
                earlier chunks when streaming); None when nothing precedes `h` (no prompt).

        Returns:
            ``(B, S, M)`` velocities.
        """
        if time.dim() == 0:
            time = time.repeat(h.shape[0])
        condition = condition + self.time_embed(time)
        return self.proj_out(self.norm_out(self._blocks(h, condition, positions, attn_mask, kv_caches), condition))

    def forward(
        self,
        x: torch.Tensor,
        time: torch.Tensor,
        tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        prompt_tokens: torch.Tensor,
        style_ids: torch.Tensor | None = None,
        token_lengths: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
        speaker_embedding: torch.Tensor | None = None,
        drop_tokens: torch.Tensor | None = None,
        drop_prompt: torch.Tensor | None = None,
        drop_speaker: torch.Tensor | None = None,
        style_intensity: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity of the target frames (the training pass; full chunk-causal context).

        Args:
            x: ``(B, M, T)`` flow state at `time` (normalised mel space), ``T = frames_per_token * N``.
            time: ``(B,)`` or scalar flow time (0 = noise, 1 = data).
            tokens: ``(B, N)`` target token ids.
            prompt_mel: ``(B, M, P)`` prompt log-mel.
            prompt_tokens: ``(B, Np)`` prompt token ids, ``Np * frames_per_token >= P``.
            style_ids: ``(B,)`` style ids (None: neutral); style_intensity: ``(B,)`` their intensities (None: 1).
            token_lengths, prompt_lengths: ``(B,)`` real target tokens / prompt frames of a padded batch.
            speaker_embedding: ``(B, Ds)`` to use instead of the one pooled from the prompt.
            drop_tokens, drop_prompt, drop_speaker: ``(B,)`` bool guidance dropout per item.

        Returns:
            ``(B, M, T)`` velocity.
        """
        config = self.config
        batch, _, target_frames = x.shape
        if target_frames != tokens.shape[1] * config.frames_per_token:
            raise ValueError(
                f"x has {target_frames} frames but {tokens.shape[1]} tokens give {tokens.shape[1] * config.frames_per_token}"
            )
        prompt_frames = prompt_mel.shape[-1]
        if style_ids is None:
            style_ids = torch.zeros(batch, dtype=torch.long, device=x.device)
        if speaker_embedding is None:
            speaker_embedding = self.speaker_embedding(prompt_mel, prompt_lengths)
        target_lengths = None if token_lengths is None else token_lengths * config.frames_per_token
        condition = self.global_condition(speaker_embedding, style_ids, drop_speaker, style_intensity)
        prompt = self.embed_prompt(prompt_mel, prompt_tokens, prompt_lengths)
        caches = self.prompt_cache(prompt, condition, prompt_lengths)
        h = self.embed_target(x, self.token_features(tokens, target_lengths, drop_tokens))
        mask = refiner_attention_mask(
            prompt_frames, target_frames, config.chunk_size, prompt_lengths, target_lengths, drop_prompt,
            batch=batch, device=x.device,
        )[:, prompt_frames:]
        if prompt_lengths is None:
            prompt_lengths = torch.full((batch,), prompt_frames, device=x.device)
        positions = self.target_positions(prompt_lengths, 0, target_frames)
        return self.estimate(h, time, condition, positions, mask, caches).transpose(1, 2)

    @staticmethod
    def target_positions(prompt_lengths: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Positions ``(B, end - start)`` of target frames ``start .. end - 1``: right after each item's real
        prompt (`prompt_lengths` ``(B,)``; prompt frame ``p`` is at position ``p``), whether or not the prompt is
        attended to."""
        return prompt_lengths[:, None] + torch.arange(start, end, device=prompt_lengths.device)[None]

    @property
    def silence_value(self) -> float:
        """The log-mel value of silence (the log floor), used for padding frames."""
        return math.log(self.config.mel.log_floor)
