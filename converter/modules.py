"""Building blocks of the OpenVoice-style tone-color converter.

A gated WaveNet stack (`WaveNet`), the posterior encoder over the linear spectrogram (`PosteriorEncoder`), a
normalizing flow of mean-only affine coupling layers with channel flips (`CouplingFlow`), a HiFi-GAN style
waveform generator (`HifiGanGenerator`) and the 2-D convolution + GRU reference encoder that turns a
spectrogram into a tone-color vector (`ReferenceEncoder`).

Attribute names (``in_layers``, ``res_skip_layers``, ``cond_layer``, ``convs1`` ...) are kept exactly as in the
published OpenVoice checkpoint, because its weights must load one-to-one; see
`converter.openvoice.convert_published_state_dict` for the only renaming (weight normalization).

Shapes: ``B`` batch, ``C`` channels, ``F`` spectrogram frames, ``K`` frequency bins, ``G`` tone-color
channels (``gin_channels``), ``T`` waveform samples (``F * hop``). Masks are ``(B, 1, F)`` of 0/1 floats.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

GENERATOR_LEAKY_SLOPE = 0.1
"""Leaky-ReLU slope inside the generator's upsampling and residual blocks."""

GENERATOR_FINAL_LEAKY_SLOPE = 0.01
"""Slope of the leaky ReLU before the generator's output convolution: the published generator uses PyTorch's
default there, not 0.1, and its weights were trained that way."""


def dilated_padding(kernel_size: int, dilation: int) -> int:
    """'Same' padding of an odd kernel with `dilation`."""
    return (kernel_size * dilation - dilation) // 2


def sequence_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, 1, max_length)`` float mask (1 inside each sequence)."""
    positions = torch.arange(max_length, device=lengths.device)
    return (positions[None, :] < lengths[:, None]).unsqueeze(1).float()


class WaveNet(nn.Module):
    """Non-causal gated WaveNet stack with a global condition (VITS' ``WN``): ``(B, C, F)`` -> ``(B, C, F)``.

    Each layer: a dilated convolution to ``2C`` channels plus the layer's slice of the projected condition,
    ``tanh(a) * sigmoid(b)``, then a 1x1 convolution split into a residual part (added to the running input)
    and a skip part (summed into the output). The last layer has no residual part.
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WaveNet kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.dropout = nn.Dropout(dropout)
        if gin_channels:
            self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                weight_norm(
                    nn.Conv1d(
                        hidden_channels,
                        2 * hidden_channels,
                        kernel_size,
                        dilation=dilation,
                        padding=dilated_padding(kernel_size, dilation),
                    )
                )
            )
            out_channels = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, out_channels, 1)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, C, F)``, ``mask (B, 1, F)``, ``g (B, G, 1)`` or None -> ``(B, C, F)``."""
        c = self.hidden_channels
        condition = self.cond_layer(g) if g is not None else None
        output = torch.zeros_like(x)
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            pre_activation = in_layer(x)
            if condition is not None:
                pre_activation = pre_activation + condition[:, 2 * c * i : 2 * c * (i + 1)]
            acts = torch.tanh(pre_activation[:, :c]) * torch.sigmoid(pre_activation[:, c:])
            res_skip = res_skip_layer(self.dropout(acts))
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :c]) * mask
                output = output + res_skip[:, c:]
            else:
                output = output + res_skip
        return output * mask


class PosteriorEncoder(nn.Module):
    """Linear spectrogram -> latent ``z ~ N(m, exp(logs) * tau)`` (VITS' ``enc_q``).

    ``(B, K, F)`` -> ``z, m, logs`` each ``(B, C_latent, F)``, zero outside the mask.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(
        self,
        spec: torch.Tensor,
        mask: torch.Tensor,
        g: torch.Tensor | None = None,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``spec (B, K, F)``, ``mask (B, 1, F)`` -> ``(z, m, logs)``; ``tau`` scales the sampling noise."""
        h = self.enc(self.pre(spec) * mask, mask, g=g)
        stats = self.proj(h) * mask
        m, logs = stats.split(self.out_channels, dim=1)
        if tau == 0:
            return m * mask, m, logs
        # Draw on the generator's device (a CPU generator can seed a GPU run), then move.
        noise_device = generator.device if generator is not None else m.device
        noise = torch.randn(m.shape, generator=generator, device=noise_device, dtype=m.dtype).to(m.device)
        z = (m + noise * tau * torch.exp(logs)) * mask
        return z, m, logs


class MeanOnlyCoupling(nn.Module):
    """Affine coupling with a unit scale: the second half of the channels is shifted by a function of the first.

    Forward ``x1 <- x1 + m(x0, g)``; reverse ``x1 <- x1 - m(x0, g)``; log-determinant 0 (volume preserving).
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling channels must be even, got {channels}")
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels, dropout)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)
        # Zero init makes a fresh flow the identity, the usual starting point for training it.
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False) -> torch.Tensor:
        """``x (B, C, F)`` -> ``(B, C, F)``."""
        x0, x1 = x.split(self.half_channels, dim=1)
        h = self.enc(self.pre(x0) * mask, mask, g=g)
        shift = self.post(h) * mask
        x1 = (x1 - shift) * mask if reverse else shift + x1 * mask
        return torch.cat([x0, x1], dim=1)


class ChannelFlip(nn.Module):
    """Reverse the channel order, so the next coupling layer transforms the other half."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False) -> torch.Tensor:
        """``x (B, C, F)`` -> ``(B, C, F)``; its own inverse."""
        return torch.flip(x, [1])


class CouplingFlow(nn.Module):
    """``n_flows`` x (mean-only coupling, channel flip), conditioned on the tone color.

    ``flows`` alternates couplings (even indices, which hold the weights) and flips (odd indices), as in the
    published checkpoint. Forward removes the conditioning speaker; reverse adds one.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int,
        gin_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                MeanOnlyCoupling(channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels, dropout)
            )
            self.flows.append(ChannelFlip())

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False) -> torch.Tensor:
        """``x (B, C, F)``, ``mask (B, 1, F)``, ``g (B, G, 1)`` -> ``(B, C, F)``."""
        for flow in reversed(self.flows) if reverse else self.flows:
            x = flow(x, mask, g=g, reverse=reverse)
        return x


class ResBlock(nn.Module):
    """HiFi-GAN residual block (type "1"): pairs of (dilated conv, conv) with leaky ReLUs and a skip each.

    ``(B, C, T)`` -> ``(B, C, T)``.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=dilated_padding(kernel_size, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=dilated_padding(kernel_size, 1)))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = conv1(F.leaky_relu(x, GENERATOR_LEAKY_SLOPE))
            h = conv2(F.leaky_relu(h, GENERATOR_LEAKY_SLOPE))
            x = x + h
        return x


class HifiGanGenerator(nn.Module):
    """Latent frames -> waveform (the published converter's ``dec``): ``(B, C_latent, F)`` -> ``(B, 1, F * hop)``.

    Transposed-convolution upsampling stages (total factor ``prod(upsample_rates)`` = the spectrogram hop),
    each followed by the average of several residual blocks of different kernel sizes (multi-receptive-field
    fusion); ``tanh`` output. The tone color enters through ``cond`` (a per-channel bias after ``conv_pre``).
    """

    def __init__(
        self,
        in_channels: int,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        upsample_rates: tuple[int, ...],
        upsample_initial_channel: int,
        upsample_kernel_sizes: tuple[int, ...],
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(
                weight_norm(nn.ConvTranspose1d(channels, channels // 2, kernel, stride=rate, padding=(kernel - rate) // 2))
            )
            channels //= 2
            for res_kernel, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock(channels, res_kernel, dilations))
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, z: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """``z (B, C_latent, F)``, ``g (B, G, 1)`` or None -> ``(B, 1, F * hop)`` in [-1, 1]."""
        x = self.conv_pre(z)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, GENERATOR_LEAKY_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, GENERATOR_FINAL_LEAKY_SLOPE))
        return torch.tanh(x)


def strided_length(length: int, n_convs: int, kernel_size: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Size of one axis after `n_convs` convolutions with these settings."""
    for _ in range(n_convs):
        length = (length - kernel_size + 2 * padding) // stride + 1
    return length


class ReferenceEncoder(nn.Module):
    """Spectrogram -> tone-color vector: layer norm over frequency, stride-2 3x3 conv stack, GRU, projection.

    ``(B, F, K)`` (time-major) -> ``(B, G)``. The GRU's final state summarizes the whole clip, so a batch must
    hold clips of the same length (no padding).
    """

    def __init__(
        self,
        n_freqs: int,
        out_channels: int,
        filters: tuple[int, ...],
        gru_channels: int,
        layernorm: bool = True,
    ) -> None:
        super().__init__()
        self.n_freqs = n_freqs
        channels = (1, *filters)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(channels[i], channels[i + 1], kernel_size=3, stride=2, padding=1))
            for i in range(len(filters))
        )
        reduced_freqs = strided_length(n_freqs, len(filters))
        self.gru = nn.GRU(input_size=filters[-1] * reduced_freqs, hidden_size=gru_channels, batch_first=True)
        self.proj = nn.Linear(gru_channels, out_channels)
        self.layernorm = nn.LayerNorm(n_freqs) if layernorm else None

    def forward(self, spec_t: torch.Tensor) -> torch.Tensor:
        """``spec_t (B, F, K)`` -> ``(B, G)``."""
        x = spec_t.unsqueeze(1)  # (B, 1, F, K): time and frequency as image axes
        if self.layernorm is not None:
            x = self.layernorm(x)
        for conv in self.convs:
            x = F.relu(conv(x))
        batch, _, frames, _ = x.shape
        x = x.transpose(1, 2).reshape(batch, frames, -1)  # (B, F', C * K')
        _, last_state = self.gru(x)
        return self.proj(last_state.squeeze(0))


class MelDecoder(nn.Module):
    """Latent frames -> the studio's log-mel (the trained default decodes through the studio vocoder).

    ``(B, C, F)`` -> ``(B, M, F)``: a 1x1 input convolution, a gated WaveNet stack (global condition as in
    `HifiGanGenerator`: zeros when the converter is ``zero_g``) and a 1x1 projection to the mel bands.
    """

    def __init__(
        self,
        in_channels: int,
        n_mels: int,
        hidden_channels: int,
        kernel_size: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, kernel_size, 1, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden_channels, n_mels, 1)

    def forward(self, z: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """``z (B, C, F)``, ``mask (B, 1, F)`` -> log-mel ``(B, M, F)`` (zero outside the mask)."""
        return self.proj(self.enc(self.pre(z) * mask, mask, g=g)) * mask


class ContentPrior(nn.Module):
    """Timbre-free content representation for training: phoneme ids -> a Gaussian per phoneme.

    OpenVoice pulls the flow's output toward this prior (KL), after aligning the phonemes to the frames
    (`converter.align.monotonic_alignment`); it has no speaker, style or language input, so the flow learns to
    remove timbre and only timbre. ``(B, N)`` ids -> ``m, logs`` each ``(B, C, N)``. Only training uses it.
    """

    def __init__(
        self,
        vocab_size: int,
        out_channels: int,
        hidden_channels: int,
        n_layers: int,
        n_heads: int,
        dropout: float = 0.1,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.embed = nn.Embedding(vocab_size, hidden_channels, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, 0.0, hidden_channels**-0.5)
        layer = nn.TransformerEncoderLayer(
            hidden_channels, n_heads, 4 * hidden_channels, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.position = nn.Conv1d(hidden_channels, hidden_channels, 5, padding=2, groups=hidden_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids (B, N)``, ``lengths (B,)`` -> ``m, logs`` each ``(B, C, N)`` (zero past each length)."""
        mask = sequence_mask(lengths, ids.shape[1])  # (B, 1, N)
        x = self.embed(ids) * self.embed.embedding_dim**0.5
        x = x + self.position(x.transpose(1, 2)).transpose(1, 2)  # relative position through a depthwise conv
        x = self.encoder(x, src_key_padding_mask=mask[:, 0] == 0)
        stats = self.proj(x.transpose(1, 2)) * mask
        m, logs = stats.split(self.out_channels, dim=1)
        return m, logs
