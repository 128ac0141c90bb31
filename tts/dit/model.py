"""The DiT flow-matching model over mels (F5-TTS architecture): predicts the flow velocity that carries noise
(t = 0) to a mel (t = 1), given the text padded to the mel length and the unmasked audio.

At its default configuration it is the published F5-TTS ``F5TTS_v1_Base`` network and loads its weights one
to one (`DiT.from_published`); parameter names inside this module therefore keep F5's names.

Shapes:
    B   batch
    T   mel frames (the total duration being generated, prompt included)
    M   mel bands (``mel_dim``, 100)
    Nt  text ids before padding to ``T``
    D   model width (``dim``)
    Dt  text embedding width (``text_dim``)
    H   heads, Dh head width
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
import torch
from torch import nn

from tts.audio import MelConfig
from tts.checkpoints import PretrainedMixin, load_state_strict
from tts.layers import (
    AdaLayerNormZero,
    AdaLayerNormZeroFinal,
    Attention,
    ConvNeXtV2Block,
    ConvPositionEmbedding,
    FeedForward,
    RotaryEmbedding,
    TimestepEmbedding,
    sinusoidal_position_table,
)

F5_MEL = MelConfig(log_floor=1e-5)
"""The mel F5-TTS was trained on: the studio's mel (24 kHz, n_fft 1024, hop 256, 100 HTK bands, power 1,
centered) except for the log floor, ``log(clamp(x, 1e-5))`` instead of the studio's 1e-7. Only near-silent bins
differ, but the published weights have never seen values below log(1e-5) = -11.5."""


@dataclass(frozen=True)
class DiTConfig:
    """Configuration of `DiT`. Defaults are F5-TTS ``F5TTS_v1_Base`` (``compat/f5tts_v1_base.json``).

    Attributes:
        dim: model width.
        depth: number of DiT blocks.
        heads: attention heads.
        dim_head: width of one head.
        ff_mult: feed-forward hidden width is ``dim * ff_mult``.
        mel_dim: mel bands (must equal ``mel.n_mels``).
        text_num_embeds: vocabulary size; the embedding has one more row, 0 being the filler.
        text_dim: text embedding width.
        text_mask_padding: zero the filler positions of the text features before and after each text block.
        qk_norm: ``"rms_norm"`` or None.
        conv_layers: ConvNeXt-V2 blocks in the text encoder.
        pe_attn_head: apply RoPE only to this many heads (None: all; 1 reproduces F5's pre-v1 models).
        dropout: attention/feed-forward dropout during training (F5's default 0.1; inactive in eval mode).
        attn_mask_enabled: mask padded key frames in attention (F5 v1 Base trains without it).
        long_skip_connection: concatenate the input embedding to the last block's output (off in v1 Base).
        text_conv_mult: hidden width multiplier of the text ConvNeXt blocks.
        text_max_positions: absolute text positions beyond this are clamped to the last one.
        conv_pos_kernel, conv_pos_groups: the convolutional position embedding.
        time_freq_dim: width of the sinusoidal time features.
        mel: the mel features the weights were trained on (owner of the audio constants).
        text_condition: ``"padded"`` (F5: text ids from the first frame on, the rest filler; the network finds
            the alignment) or ``"frames"`` (the studio's default: one unit id per frame, laid out by durations,
            `tts.dit.units`).
        rope_interleaved: RoPE pair layout (F5: interleaved).
        mel_mean, mel_std: the flow runs on ``(mel - mel_mean) / mel_std`` (F5: raw log-mel, 0 and 1).
        duration_layers: convolution layers of the unit duration predictor (0: none, as in F5).
        duration_dim: its width.
        duration_kernel: its kernel size.
    """

    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    mel_dim: int = 100
    text_num_embeds: int = 2545
    text_dim: int = 512
    text_mask_padding: bool = True
    qk_norm: str | None = None
    conv_layers: int = 4
    pe_attn_head: int | None = None
    dropout: float = 0.1
    attn_mask_enabled: bool = False
    long_skip_connection: bool = False
    text_conv_mult: int = 2
    text_max_positions: int = 4096
    conv_pos_kernel: int = 31
    conv_pos_groups: int = 16
    time_freq_dim: int = 256
    mel: MelConfig = field(default_factory=lambda: F5_MEL)
    text_condition: str = "padded"
    rope_interleaved: bool = True
    mel_mean: float = 0.0
    mel_std: float = 1.0
    duration_layers: int = 0
    duration_dim: int = 256
    duration_kernel: int = 5

    def __post_init__(self) -> None:
        if self.text_condition not in ("padded", "frames"):
            raise ValueError(f"text_condition must be 'padded' or 'frames', got {self.text_condition!r}")
        if not self.mel_std > 0:
            raise ValueError(f"mel_std must be positive, got {self.mel_std}")
        if self.mel_dim != self.mel.n_mels:
            raise ValueError(f"mel_dim {self.mel_dim} differs from the mel config's n_mels {self.mel.n_mels}")
        if self.qk_norm not in (None, "rms_norm"):
            raise ValueError(f"qk_norm must be 'rms_norm' or None, got {self.qk_norm!r}")


class TextEmbedding(nn.Module):
    """Text ids -> features ``(B, T, Dt)`` padded to the mel length.

    Ids are shifted by +1 so that 0 is the filler (callers pad batches with -1); ids beyond ``T`` are cut. Then
    an absolute sinusoidal position table and ConvNeXt-V2 blocks; with ``mask_padding`` the filler positions are
    zeroed before and after every block, so padding never leaks into real characters.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        self.text_embed = nn.Embedding(config.text_num_embeds + 1, config.text_dim)
        self.text_blocks = nn.Sequential(
            *[ConvNeXtV2Block(config.text_dim, config.text_dim * config.text_conv_mult) for _ in range(config.conv_layers)]
        )

    def forward(self, text: torch.Tensor, seq_len: int, drop_text: bool = False) -> torch.Tensor:
        """`text` ``(B, Nt)`` ids (-1 = padding) -> ``(B, T, Dt)`` with ``T = seq_len``."""
        ids = text[:, :seq_len] + 1
        ids = nn.functional.pad(ids, (0, seq_len - ids.shape[1]), value=0)
        filler = (ids == 0)[..., None]  # taken before dropping: the unconditional pass keeps the text's length
        if drop_text:
            ids = torch.zeros_like(ids)
        h = self.text_embed(ids)
        if self.config.conv_layers == 0:
            return h
        positions = torch.arange(seq_len, device=ids.device).clamp(max=self.config.text_max_positions - 1)
        h = h + sinusoidal_position_table(positions, self.config.text_dim).to(h.dtype)
        if not self.config.text_mask_padding:
            return self.text_blocks(h)
        h = h.masked_fill(filler, 0.0)
        for block in self.text_blocks:
            h = block(h).masked_fill(filler, 0.0)
        return h


class DurationPredictor(nn.Module):
    """Unit ids ``(B, U)`` -> predicted ``log(1 + frames)`` per unit ``(B, U)`` (FastSpeech-style convolutions).

    Trained on the aligner's durations; used only to spread a given total duration over the units
    (`tts.dit.units.fit_durations`), so its speaking rate does not matter, only its proportions.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        width, kernel = config.duration_dim, config.duration_kernel
        self.embed = nn.Embedding(config.text_num_embeds + 1, width)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, kernel, padding=kernel // 2) for _ in range(config.duration_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(config.duration_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(width, 1)

    def forward(self, units: torch.Tensor) -> torch.Tensor:
        """`units` ``(B, U)`` ids (-1 pads a batch) -> ``(B, U)`` log(1 + frames); padding positions are zeroed."""
        real = (units >= 0)[..., None]
        h = self.embed(units + 1) * real
        for conv, norm in zip(self.convs, self.norms):
            h = self.dropout(norm(torch.relu(conv(h.transpose(1, 2)).transpose(1, 2)))) * real
        return self.out(h).squeeze(-1) * real.squeeze(-1)


class InputEmbedding(nn.Module):
    """``[noisy mel | conditioning mel | text features]`` -> width ``D``, plus a convolutional position embedding."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.mel_dim * 2 + config.text_dim, config.dim)
        self.conv_pos_embed = ConvPositionEmbedding(config.dim, config.conv_pos_kernel, config.conv_pos_groups)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        text_embed: torch.Tensor,
        drop_audio_cond: bool = False,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`x`, `cond` ``(B, T, M)``, `text_embed` ``(B, T, Dt)``, `mask` ``(B, T)`` -> ``(B, T, D)``."""
        if drop_audio_cond:
            cond = torch.zeros_like(cond)
        h = self.proj(torch.cat((x, cond, text_embed), dim=-1))
        return self.conv_pos_embed(h, mask=mask) + h


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero time modulation and RoPE self-attention."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.attn_norm = AdaLayerNormZero(config.dim)
        self.attn = Attention(
            config.dim,
            heads=config.heads,
            dim_head=config.dim_head,
            dropout=config.dropout,
            qk_norm=config.qk_norm,
            rope_heads=config.pe_attn_head,
        )
        self.ff_norm = nn.LayerNorm(config.dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(config.dim, mult=config.ff_mult, dropout=config.dropout, approximate="tanh")

    def forward(
        self,
        x: torch.Tensor,
        time_embed: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`x` ``(B, T, D)``, `time_embed` ``(B, D)``, `rope` ``(T, Dh)``, `mask` ``(B, T)`` (padding frames' attention
        output is zeroed), `attn_mask` bool for the attention -> ``(B, T, D)``."""
        h, gate_attn, shift_ff, scale_ff, gate_ff = self.attn_norm(x, time_embed)
        attended = self.attn(h, rope=rope, attn_mask=attn_mask)
        if mask is not None:
            attended = attended.masked_fill(~mask[..., None], 0.0)
        x = x + gate_attn[:, None] * attended
        h = self.ff_norm(x) * (1 + scale_ff[:, None]) + shift_ff[:, None]
        return x + gate_ff[:, None] * self.ff(h)


class DiT(PretrainedMixin, nn.Module):
    """F5-TTS's diffusion transformer: the velocity of the flow from noise to mel.

    Build with a `DiTConfig` (constructors read no files); load with ``from_pretrained`` (studio checkpoints) or
    `from_published` (F5-TTS's own safetensors).
    """

    config_class = DiTConfig

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        self.time_embed = TimestepEmbedding(config.dim, config.time_freq_dim)
        self.text_embed = TextEmbedding(config)
        self.input_embed = InputEmbedding(config)
        self.rotary_embed = RotaryEmbedding(config.dim_head, interleaved=config.rope_interleaved)
        self.transformer_blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.long_skip_connection = (
            nn.Linear(config.dim * 2, config.dim, bias=False) if config.long_skip_connection else None
        )
        self.norm_out = AdaLayerNormZeroFinal(config.dim)
        self.proj_out = nn.Linear(config.dim, config.mel_dim)
        self.duration_predictor = DurationPredictor(config) if config.duration_layers else None
        self._init_zero()

    def _init_zero(self) -> None:
        # adaLN-Zero: modulations and the output projection start at zero, so a fresh model predicts zero velocity.
        for block in self.transformer_blocks:
            block.attn_norm.init_zero()
        self.norm_out.init_zero()
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        text: torch.Tensor,
        time: torch.Tensor,
        mask: torch.Tensor | None = None,
        drop_audio_cond: bool = False,
        drop_text: bool = False,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        Args:
            x: ``(B, T, M)`` noisy mel at `time`.
            cond: ``(B, T, M)`` conditioning mel: the kept audio, zeros where frames are to be generated.
            text: ``(B, Nt)`` vocabulary ids (-1 pads a batch); shifted by +1 inside, 0 is the filler.
            time: ``(B,)`` or scalar flow time in [0, 1] (0 = noise, 1 = data).
            mask: ``(B, T)`` bool, True on real frames of a padded batch (None: all real). As in F5, padding
                frames are zeroed around the conv position embedding and in the attention output; they are
                hidden from attention only with ``attn_mask_enabled`` (off in ``F5TTS_v1_Base``, so there the
                padding's content leaks into real frames).
            drop_audio_cond: drop `cond` (classifier-free guidance's unconditional pass).
            drop_text: drop the text.

        Returns:
            ``(B, T, M)`` velocity.
        """
        batch, seq_len = x.shape[0], x.shape[1]
        if time.dim() == 0:
            time = time.repeat(batch)
        time_embed = self.time_embed(time)
        text_embed = self.text_embed(text, seq_len, drop_text=drop_text)
        h = self.input_embed(x, cond, text_embed, drop_audio_cond=drop_audio_cond, mask=mask)
        rope = self.rotary_embed.for_length(seq_len)
        attn_mask = mask[:, None, :] if (mask is not None and self.config.attn_mask_enabled) else None
        residual = h
        for block in self.transformer_blocks:
            h = block(h, time_embed, rope, mask=mask, attn_mask=attn_mask)
        if self.long_skip_connection is not None:
            h = self.long_skip_connection(torch.cat((h, residual), dim=-1))
        return self.proj_out(self.norm_out(h, time_embed))

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> flow space (any shape)."""
        return (mel - self.config.mel_mean) / self.config.mel_std

    def denormalize_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Flow space -> log-mel (any shape)."""
        return x * self.config.mel_std + self.config.mel_mean

    @classmethod
    def from_published(
        cls,
        path_or_hub_id: str | os.PathLike = "SWivid/F5-TTS",
        filename: str | None = None,
        config: DiTConfig | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        device: torch.device | str | None = None,
    ) -> "DiT":
        """Load F5-TTS's published weights (default ``F5TTS_v1_Base/model_1250000.safetensors``).

        Args:
            path_or_hub_id: a ``.safetensors`` file, a folder holding `filename`, or a hub id (``SWivid/F5-TTS``).
            filename: path of the weights inside the folder or repo.
            config: the architecture (default: ``F5TTS_v1_Base``).
            revision, local_files_only: passed to the hub resolution (``HF_HUB_OFFLINE`` is honoured).
            device: where to put the model.

        Raises:
            CheckpointError: a missing file, or any key or shape that does not fit (`convert_published_state_dict`).
        """
        from tts.checkpoints import load_safetensors
        from tts.dit.published import DEFAULT_WEIGHTS, convert_published_state_dict, resolve_published_file

        path = resolve_published_file(path_or_hub_id, filename or DEFAULT_WEIGHTS, revision, local_files_only)
        model = cls(config or DiTConfig())
        state = convert_published_state_dict(load_safetensors(path), source=str(path))
        load_state_strict(model, state, str(path))
        model.eval()
        return model.to(device) if device is not None else model

