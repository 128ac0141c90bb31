"""The speech tokenizer: log-mel -> discrete content tokens at a fixed rate (31.25 Hz = 3 mel frames per token).

An encoder (strided convolution, then transformer blocks from `tts.layers`) maps the mel to a few numbers per
token; finite scalar quantization (FSQ) rounds each number to one of a few levels, and the levels of one token
read as a mixed-radix number are the token. A CTC phoneme head reads only the quantized values, so the
tokens must carry what was said; the training recipe (`tts.tokenizer.train`) can add a speaker adversary so
they carry as little as possible of who said it. An alignment head, a second CTC head on the
encoder's output before quantization, gives forced alignment (`tts.tokenizer.align`).

    mel (B, M, F) --normalize, conv, conv stride S, ConvNeXt--> (B, N, D) --transformer--> (B, N, D) --linear--> (B, N, Q)
        --FSQ--> digits (B, N, Q) <--> tokens (B, N)
    tokens --tokens_to_embeddings--> (B, N, D) --ConvNeXt head--> CTC logits (B, N * K, V)
    encoder output (B, N, D) --linear--> alignment logits (B, N, V)

Shapes:
    B   batch
    M   mel bands (``config.mel.n_mels``)
    F   mel frames (93.75 per second)
    S   mel frames per token (``frames_per_token``, 3)
    N   tokens, ``ceil(F / S)`` (31.25 per second)
    D   model width
    Q   FSQ dimensions, ``len(fsq_levels)``
    K   CTC frames per token (``ctc_frames_per_token``); ``N * K`` CTC frames
    V   phoneme vocabulary, ``len(PHONEME_TABLE)``; the CTC blank is the table's pad id (0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tts.audio import STUDIO_MEL, Audio, MelConfig, log_mel
from tts.checkpoints import PretrainedMixin
from tts.errors import AudioError, CheckpointError
from tts.layers import Attention, ConvNeXtV2Block, FeedForward, RotaryEmbedding
from tts.text.phonemes import PHONEME_TABLE, PhonemeTable

CTC_BLANK_ID = 0
"""The CTC blank is the phoneme table's ``<pad>`` id (0 in every table version)."""


def _table_size() -> int:
    return len(PHONEME_TABLE)


def _table_version() -> int:
    return PHONEME_TABLE.version


@dataclass(frozen=True)
class SpeechTokenizerConfig:
    """Configuration of `SpeechTokenizer`; it owns the audio constants of its tokens.

    Attributes:
        mel: the log-mel the model reads (the studio mel: 24 kHz, hop 256, 100 bands).
        frames_per_token: mel frames per token; the token rate is ``mel.frame_rate / frames_per_token``.
        fsq_levels: levels of each FSQ dimension; the codebook size is their product.
        dim: encoder width ``D``.
        num_layers: transformer blocks in the encoder.
        heads, dim_head: attention heads and their width.
        ff_mult: feed-forward hidden width is ``dim * ff_mult``.
        front_end_kernel: kernel of the frame-rate convolution before the strided one (odd).
        front_end_blocks: ConvNeXt-V2 blocks at the token rate between the strided convolution and the transformer
            (local features first: in a short single-seed trial on 14 minutes of speech, 4 such blocks and 2
            transformer blocks reached PER 0.41 after 600 steps where 4 transformer blocks alone reached 0.69).
        head_layers: ConvNeXt-V2 blocks of the CTC head (local context over the quantized tokens).
        head_kernel: their depthwise kernel (odd).
        ctc_frames_per_token: CTC posteriors per token ``K`` of the token head; ``K = frames_per_token`` runs it
            at the mel frame rate, so a token may carry up to ``K`` phonemes (fast speech passes 15 a second, close
            to the 31.25 Hz token rate that CTC at ``K = 1`` would allow).
        alignment_head: a CTC head at the token rate on the encoder's output before quantization, trained beside
            the token head and used for forced alignment. Measured on clips with known word boundaries (see
            `tts.tokenizer.align`): median boundary error 26 ms against 126 ms for the mel-rate (``K = 3``) token
            head, whose emissions drift inside the many blank frames. Without it, alignment uses the token head.
        phoneme_vocab_size: ``V``, the size of the phoneme table the CTC head predicts.
        phoneme_table_version: version of that table; a model refuses a table of another version.
        normalize_level: subtract each clip's speech level (the mean log-mel of its loudest tenth of frames) first,
            so a clip's tokens do not depend on its recording level (a gain is a constant shift of the log-mel).
        dynamic_range: then values more than this far below the speech level (in natural-log units; 8 is ~70 dB)
            are raised to that floor, so digital silence, a noise floor and the empty bands of a band-limited
            recording all look alike (None: no floor).
        mel_mean, mel_std: then the log-mel is normalized as ``(mel - mel_mean) / mel_std`` before the encoder.
        dropout: dropout in attention and feed-forward outputs (training only).
    """

    mel: MelConfig = field(default_factory=lambda: STUDIO_MEL)
    frames_per_token: int = 3
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    dim: int = 256
    num_layers: int = 4
    heads: int = 4
    dim_head: int = 64
    ff_mult: float = 4.0
    front_end_kernel: int = 5
    front_end_blocks: int = 4
    head_layers: int = 2
    head_kernel: int = 5
    ctc_frames_per_token: int = 3
    alignment_head: bool = True
    phoneme_vocab_size: int = field(default_factory=_table_size)
    phoneme_table_version: int = field(default_factory=_table_version)
    normalize_level: bool = True
    dynamic_range: float | None = 8.0
    mel_mean: float = -2.0
    mel_std: float = 3.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.frames_per_token < 1:
            raise ValueError(f"frames_per_token must be >= 1, got {self.frames_per_token}")
        if not self.fsq_levels or any(level < 2 for level in self.fsq_levels):
            raise ValueError(f"fsq_levels must be a non-empty tuple of levels >= 2, got {self.fsq_levels}")
        if self.ctc_frames_per_token < 1 or self.frames_per_token % self.ctc_frames_per_token:
            raise ValueError(
                f"ctc_frames_per_token ({self.ctc_frames_per_token}) must divide frames_per_token ({self.frames_per_token})"
            )
        if self.front_end_kernel % 2 == 0 or self.head_kernel % 2 == 0:
            raise ValueError("front_end_kernel and head_kernel must be odd")
        if self.phoneme_vocab_size <= CTC_BLANK_ID:
            raise ValueError(f"phoneme_vocab_size must exceed the blank id, got {self.phoneme_vocab_size}")

    @property
    def token_rate(self) -> float:
        """Tokens per second (31.25 at the studio mel and 3 frames per token)."""
        return self.mel.frame_rate / self.frames_per_token

    @property
    def ctc_rate(self) -> float:
        """CTC posteriors per second."""
        return self.token_rate * self.ctc_frames_per_token

    @property
    def mel_frames_per_ctc_frame(self) -> int:
        """Mel frames covered by one posterior of the token CTC head."""
        return self.frames_per_token // self.ctc_frames_per_token

    @property
    def mel_frames_per_alignment_frame(self) -> int:
        """Mel frames covered by one posterior that `SpeechTokenizer.alignment_logits` returns."""
        return self.frames_per_token if self.alignment_head else self.mel_frames_per_ctc_frame

    @property
    def alignment_rate(self) -> float:
        """Posteriors per second that forced alignment works with."""
        return self.mel.frame_rate / self.mel_frames_per_alignment_frame

    @property
    def codebook_size(self) -> int:
        """Number of distinct tokens (the product of `fsq_levels`)."""
        return math.prod(self.fsq_levels)

    def num_tokens(self, num_frames: int) -> int:
        """Tokens for `num_frames` mel frames: ``ceil(F / frames_per_token)``."""
        return -(-int(num_frames) // self.frames_per_token)

    def token_span(self, start: float, end: float) -> tuple[int, int]:
        """``[first, stop)`` token indices whose centers lie in ``[start, end)`` seconds.

        Token ``n`` covers mel frames ``n*S .. n*S + S - 1``, centered at mel frame ``n*S + (S - 1) / 2``. Spans of
        touching intervals (consecutive word timings) touch too, so every token belongs to exactly one word or gap.
        """
        hop_seconds = self.mel.hop_length / self.mel.sample_rate
        center = (self.frames_per_token - 1) / 2

        def first_at_or_after(seconds: float) -> int:
            return max(0, math.ceil((seconds / hop_seconds - center) / self.frames_per_token - 1e-9))

        return first_at_or_after(start), max(first_at_or_after(start), first_at_or_after(end))

    def check_phoneme_table(self, table: PhonemeTable = PHONEME_TABLE) -> None:
        """Raise `CheckpointError` unless `table` is the version and size this model was trained with."""
        if table.version != self.phoneme_table_version or len(table) != self.phoneme_vocab_size:
            raise CheckpointError(
                f"this speech tokenizer was trained with phoneme table v{self.phoneme_table_version} "
                f"({self.phoneme_vocab_size} symbols) but the studio uses v{table.version} ({len(table)} symbols); "
                "retrain it or use a matching checkpoint"
            )


# ---------------------------------------------------------------------------------------------------------
# Finite scalar quantization


class FiniteScalarQuantizer(nn.Module):
    """FSQ without a codebook: each of ``Q`` numbers is squashed by tanh and rounded to one of ``L_q`` levels.

    Dimension ``q`` maps ``z`` to ``u = (tanh(z) + 1) / 2 * L_q - 0.5`` in ``(-0.5, L_q - 0.5)``, so every level
    owns an equal slice of tanh's range, and rounds it to a digit in ``0 .. L_q - 1`` (straight-through: the
    gradient passes the rounding as if it were the identity). Digits are exposed as codes in ``[-1, 1]``. The
    token of a vector of digits is the mixed-radix number ``sum_q digit_q * prod_{p<q} L_p``.

    Args:
        levels: ``(L_1, ..., L_Q)``, each at least 2.
    """

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        levels_tensor = torch.tensor(levels, dtype=torch.long)
        radix = torch.cumprod(torch.tensor((1, *levels[:-1]), dtype=torch.long), dim=0)
        # Derived from the config, so not part of the state dict.
        self.register_buffer("levels", levels_tensor, persistent=False)
        self.register_buffer("radix", radix, persistent=False)
        self.codebook_size = math.prod(levels)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., Q)`` -> (codes ``(..., Q)`` in ``[-1, 1]`` with straight-through gradients, digits ``(..., Q)`` int64)."""
        levels = self.levels.to(z.dtype)
        scaled = (torch.tanh(z) + 1) * 0.5 * levels - 0.5
        digits = torch.minimum(torch.round(scaled).clamp(min=0), levels - 1)
        quantized = scaled + (digits - scaled).detach()
        return self._normalize(quantized, levels), digits.long()

    @staticmethod
    def _normalize(digits: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return digits * (2.0 / (levels - 1)) - 1.0

    def digits_to_codes(self, digits: torch.Tensor) -> torch.Tensor:
        """``(..., Q)`` digits -> ``(..., Q)`` float codes in ``[-1, 1]`` (the values `forward` returns)."""
        return self._normalize(digits.float(), self.levels.float())

    def digits_to_indices(self, digits: torch.Tensor) -> torch.Tensor:
        """``(..., Q)`` digits -> ``(...)`` int64 tokens."""
        return (digits.long() * self.radix).sum(dim=-1)

    def indices_to_digits(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` tokens -> ``(..., Q)`` int64 digits; ValueError for a token outside the codebook."""
        indices = indices.long()
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"speech tokens must lie in [0, {self.codebook_size}), got {int(indices.min())}..{int(indices.max())}")
        return (indices[..., None] // self.radix) % self.levels


# ---------------------------------------------------------------------------------------------------------
# The model


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: RoPE self-attention and a feed-forward, each with a residual."""

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.dim)
        self.attn = Attention(config.dim, config.heads, config.dim_head, dropout=config.dropout)
        self.ff_norm = nn.LayerNorm(config.dim)
        self.ff = FeedForward(config.dim, config.ff_mult, dropout=config.dropout)
        # A fresh block is the identity (zero output projections): the stack starts as its shallow self and
        # brings in attention as it learns to use it.
        for projection in (self.attn.to_out[0], self.ff.ff[2]):
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """`x` ``(B, N, D)``, `rope` ``(N, Dh)``, `mask` ``(B, N)`` bool (True = real token) or None -> ``(B, N, D)``."""
        attn_mask = None if mask is None else mask[:, None, :]
        x = x + self.attn(self.attn_norm(x), rope=rope, attn_mask=attn_mask)
        return x + self.ff(self.ff_norm(x))


class TokenizerOutput(NamedTuple):
    """Everything one forward pass computes (training uses all of it)."""

    tokens: torch.Tensor
    """``(B, N)`` int64; positions at or after `token_lengths` are padding (0)."""
    token_lengths: torch.Tensor
    """``(B,)`` int64."""
    codes: torch.Tensor
    """``(B, N, Q)`` quantized values in ``[-1, 1]`` (straight-through gradients)."""
    embeddings: torch.Tensor
    """``(B, N, D)`` the quantized tokens projected to the model width (what the CTC head reads)."""
    ctc_logits: torch.Tensor
    """``(B, N * K, V)``."""
    ctc_lengths: torch.Tensor
    """``(B,)`` int64 valid CTC frames."""
    hidden: torch.Tensor
    """``(B, N, D)`` the encoder's output before quantization."""
    alignment_logits: torch.Tensor | None
    """``(B, N, V)`` the alignment head's CTC logits (None without that head); valid frames: `token_lengths`."""
    unbounded: torch.Tensor
    """``(B, N, Q)`` the values FSQ squashes with tanh and rounds (training keeps them where tanh has slope)."""


def _lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, size)`` bool, True before each length."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def speech_level(mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    """``(B, M, F)`` log-mel -> ``(B,)`` mean log-mel of the loudest tenth of each item's valid frames."""
    frame_level = mel.mean(dim=1)  # (B, F)
    valid = _lengths_mask(mel_lengths, mel.shape[-1])
    ranked = frame_level.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values
    count = (mel_lengths // 10).clamp(min=1)
    totals = ranked.masked_fill(~_lengths_mask(count, mel.shape[-1]), 0.0).sum(dim=1)
    return torch.where(mel_lengths > 0, totals / count.to(totals.dtype), torch.zeros_like(totals))


class SpeechTokenizer(PretrainedMixin, nn.Module):
    """Log-mel -> speech tokens at ``config.token_rate``, with a CTC phoneme head on the quantized tokens.

    ``encode`` gives tokens, ``tokens_to_embeddings`` turns tokens back into the vectors the CTC head reads,
    ``ctc_logits`` gives phoneme posteriors for alignment, ``tokenize`` does it all for an `Audio`.
    """

    config_class = SpeechTokenizerConfig

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.front_end = nn.Sequential(
            nn.Conv1d(config.mel.n_mels, dim, config.front_end_kernel, padding=config.front_end_kernel // 2),
            nn.GELU(),
            nn.Conv1d(dim, dim, config.frames_per_token, stride=config.frames_per_token),
        )
        self.front_end_blocks = nn.ModuleList(
            ConvNeXtV2Block(dim, dim * 2, kernel_size=config.head_kernel) for _ in range(config.front_end_blocks)
        )
        self.rotary = RotaryEmbedding(config.dim_head, persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(dim)
        self.to_codes = nn.Linear(dim, len(config.fsq_levels))
        self.quantizer = FiniteScalarQuantizer(config.fsq_levels)
        self.from_codes = nn.Linear(len(config.fsq_levels), dim)
        self.head_blocks = nn.ModuleList(
            ConvNeXtV2Block(dim, dim * 2, kernel_size=config.head_kernel) for _ in range(config.head_layers)
        )
        self.head_norm = nn.LayerNorm(dim)
        self.ctc_out = nn.Linear(dim, config.ctc_frames_per_token * config.phoneme_vocab_size)
        self.alignment_out = nn.Linear(dim, config.phoneme_vocab_size) if config.alignment_head else None

    # -- encoder ------------------------------------------------------------------------------------------

    def _mel_lengths(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.config.mel.n_mels:
            raise ValueError(f"expected a log-mel of shape (B, {self.config.mel.n_mels}, F), got {tuple(mel.shape)}")
        if mel_lengths is None:
            return torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long, device=mel.device)
        return mel_lengths.to(device=mel.device, dtype=torch.long).clamp(max=mel.shape[-1])

    def _encode_hidden(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, M, F)`` -> (normalized encoder output ``(B, N, D)``, token lengths ``(B,)``)."""
        config = self.config
        num_tokens = config.num_tokens(mel.shape[-1])
        if config.normalize_level:
            mel = mel - speech_level(mel, mel_lengths)[:, None, None]
        if config.dynamic_range is not None:
            mel = mel.clamp(min=-config.dynamic_range)
        x = (mel - config.mel_mean) / config.mel_std
        # Padding frames become 0, the same value the convolutions pad with, so a clip gives the same tokens
        # alone and in a padded batch.
        x = x * _lengths_mask(mel_lengths, mel.shape[-1])[:, None, :].to(x.dtype)
        x = F.pad(x, (0, num_tokens * config.frames_per_token - mel.shape[-1]))
        x = self.front_end(x).transpose(1, 2)  # (B, N, D)
        token_lengths = -(-mel_lengths // config.frames_per_token)
        mask = _lengths_mask(token_lengths, num_tokens)
        keep = mask[..., None].to(x.dtype)
        x = x * keep
        for block in self.front_end_blocks:
            x = block(x) * keep
        rope = self.rotary.for_length(num_tokens)
        attention_mask = None if bool(mask.all()) else mask
        for block in self.blocks:
            x = block(x, rope, attention_mask)
        return self.norm(x), token_lengths

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of a batch of log-mels.

        Args:
            mel: ``(B, M, F)`` studio log-mel (`tts.audio.log_mel`).
            mel_lengths: ``(B,)`` valid frames of each item (default: all ``F``).

        Returns:
            tokens ``(B, N)`` int64 in ``[0, codebook_size)`` with ``N = ceil(F / frames_per_token)`` (positions at
            or after a length are padding, set to 0), and token lengths ``(B,)``.
        """
        mel_lengths = self._mel_lengths(mel, mel_lengths)
        hidden, token_lengths = self._encode_hidden(mel, mel_lengths)
        _, digits = self.quantizer(self.to_codes(hidden))
        return self._tokens(digits, token_lengths), token_lengths

    def _tokens(self, digits: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        """``(B, N, Q)`` digits -> ``(B, N)`` tokens, padding positions set to 0."""
        tokens = self.quantizer.digits_to_indices(digits)
        return tokens.masked_fill(~_lengths_mask(token_lengths, tokens.shape[1]), 0)

    # -- tokens -> vectors ---------------------------------------------------------------------------------

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` tokens -> ``(B, N, Q)`` FSQ codes in ``[-1, 1]``."""
        return self.quantizer.digits_to_codes(self.quantizer.indices_to_digits(tokens))

    def tokens_to_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` tokens -> ``(B, N, D)``, exactly the vectors the CTC head reads for these tokens."""
        return self.from_codes(self.tokens_to_codes(tokens).to(self.from_codes.weight.dtype))

    # -- CTC head ------------------------------------------------------------------------------------------

    def _ctc_head(self, embeddings: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` -> ``(B, N * K, V)``."""
        mask = _lengths_mask(token_lengths, embeddings.shape[1])[..., None].to(embeddings.dtype)
        h = embeddings * mask
        for block in self.head_blocks:
            h = block(h) * mask
        logits = self.ctc_out(self.head_norm(h))
        return logits.reshape(logits.shape[0], -1, self.config.phoneme_vocab_size)

    def _ctc_lengths(self, mel_lengths: torch.Tensor) -> torch.Tensor:
        step = self.config.mel_frames_per_ctc_frame
        return -(-mel_lengths // step)

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> TokenizerOutput:
        """The full pass used in training: tokens, codes, embeddings and CTC logits (see `TokenizerOutput`)."""
        mel_lengths = self._mel_lengths(mel, mel_lengths)
        hidden, token_lengths = self._encode_hidden(mel, mel_lengths)
        unbounded = self.to_codes(hidden)
        codes, digits = self.quantizer(unbounded)
        tokens = self._tokens(digits, token_lengths)
        embeddings = self.from_codes(codes)
        logits = self._ctc_head(embeddings, token_lengths)
        alignment = self.alignment_out(hidden) if self.alignment_out is not None else None
        return TokenizerOutput(
            tokens, token_lengths, codes, embeddings, logits, self._ctc_lengths(mel_lengths), hidden, alignment,
            unbounded,
        )

    def ctc_logits(
        self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phoneme logits ``(B, N * K, V)`` (blank = id 0) and valid CTC frames ``(B,)`` of a batch of log-mels."""
        output = self.forward(mel, mel_lengths)
        return output.ctc_logits, output.ctc_lengths

    def alignment_logits(
        self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The posteriors forced alignment uses: logits ``(B, T, V)`` and valid frames ``(B,)``, one frame per
        `SpeechTokenizerConfig.mel_frames_per_alignment_frame` mel frames (the alignment head, else the token head)."""
        output = self.forward(mel, mel_lengths)
        if output.alignment_logits is None:
            return output.ctc_logits, output.ctc_lengths
        return output.alignment_logits, output.token_lengths

    def ctc_logits_from_tokens(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Phoneme logits ``(B, N * K, V)`` from tokens alone: what the tokens say, with no access to the mel."""
        if token_lengths is None:
            token_lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
        return self._ctc_head(self.tokens_to_embeddings(tokens), token_lengths.to(tokens.device))

    # -- audio in ------------------------------------------------------------------------------------------

    def mel_of(self, audio: Audio) -> torch.Tensor:
        """``(M, F)`` log-mel of `audio` at the model's mel configuration (resampled first if needed)."""
        if not isinstance(audio, Audio):
            raise TypeError(f"expected an Audio value, got {type(audio).__name__}")
        if len(audio) == 0:
            raise AudioError("the audio is empty")
        if audio.sample_rate != self.config.mel.sample_rate:
            audio = audio.resample(self.config.mel.sample_rate)
        device = next(self.parameters()).device
        return log_mel(audio.to_tensor().to(device), self.config.mel)

    @torch.no_grad()
    def tokenize(self, audio: Audio) -> torch.Tensor:
        """``(N,)`` int64 tokens of `audio` (any rate; resampled to the model's), ``N = ceil(F / frames_per_token)``."""
        return self.mel_and_tokens(audio)[1]

    @torch.no_grad()
    def mel_and_tokens(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """(``(M, F)`` log-mel, ``(N,)`` int64 tokens) of `audio`: `mel_of` and `tokenize` from one mel."""
        mel = self.mel_of(audio)
        tokens, _ = self.encode(mel[None])
        return mel, tokens[0]
