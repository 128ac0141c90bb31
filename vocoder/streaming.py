"""Streaming vocoding: mel chunks in, audio chunks out, equal to decoding the whole mel at once.

Two things couple neighbouring frames in `Vocos`:
- the backbone's convolutions: every frame sees ``C = (kernel_size // 2) * (num_layers + 1)`` frames on each
  side (27 for the published 8-layer model, 9 for a 2-layer one);
- the inverse STFT's overlap-add: output samples of frame ``k`` (``[k * hop, (k + 1) * hop)``) are summed
  from STFT frames ``k - 1 .. k + 2`` (n_fft 1024, hop 256, centred).

`VocosStreamer` keeps a small buffer of mel frames, re-runs the backbone over each new stretch with ``C`` frames
of real context on both sides, and overlap-adds exactly the STFT frames that cover the samples it emits,
normalised by the same window envelope as ``torch.istft``. Emitted audio is final: the concatenation of the
chunks equals ``Vocos(mel)`` on the full mel to float rounding (about 1e-7), from the first chunk on.

Latency: audio of mel frame ``k`` leaves once frame ``k + lookahead`` has arrived, with
``lookahead = C + 2`` frames by default (`streaming_lookahead`): 29 frames = 309 ms at 93.75 frames/s for the
published config and the studio's ``small`` config (8 layers), 11 frames = 117 ms for 2 layers. A smaller
``lookahead_frames`` trades exactness for latency (the backbone then sees zeros past the received frames);
it can never go below the inverse STFT's own 2 frames.

Shapes: ``B`` batch, ``M`` mel bands, ``f`` frames in one chunk, ``n`` samples in one audio chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import torch

if TYPE_CHECKING:
    from vocoder.vocos import Vocos, VocosConfig


def istft_lookahead(config: "VocosConfig") -> int:
    """STFT frames after frame ``k`` whose windows still reach samples ``[k * hop, (k + 1) * hop)``."""
    return (config.hop_length + config.n_fft // 2 - 1) // config.hop_length


def streaming_lookahead(config: "VocosConfig") -> int:
    """Mel frames the exact streamer waits for beyond a frame before emitting its audio."""
    return config.receptive_field + istft_lookahead(config)


class VocosStreamer:
    """Incremental `Vocos` decoding for one stream: `push` mel chunks, then `flush` once at the end.

    Each call returns the audio that became final: ``(n,)`` float32 for ``(M, f)`` chunks, ``(B, n)`` for
    ``(B, M, f)`` chunks; ``n`` may be 0 while the lookahead fills. One streamer serves one stream (it holds
    that stream's buffer); the model itself is shared and never modified.

    Args:
        model: the vocoder (its device and dtype are used).
        lookahead_frames: frames to wait for beyond each emitted frame. None (default) is the exact value
            `streaming_lookahead`; smaller values lower latency and give approximate audio near chunk edges.
    """

    def __init__(self, model: "Vocos", lookahead_frames: int | None = None) -> None:
        config = model.config
        self.model = model
        self.config = config
        self.context = config.receptive_field
        exact = streaming_lookahead(config)
        minimum = istft_lookahead(config)
        if lookahead_frames is None:
            lookahead_frames = exact
        if not minimum <= lookahead_frames:
            raise ValueError(f"lookahead_frames must be at least {minimum} (the inverse STFT's overlap)")
        self.lookahead_frames = min(int(lookahead_frames), exact)
        # Frames of real backbone context required to the right of the last STFT frame used.
        self._right_context = self.lookahead_frames - minimum
        self._mel: torch.Tensor | None = None  # (B, M, n) frames [self._mel_start, self._received)
        self._mel_start = 0
        self._received = 0
        self._next_block = 0  # first hop-sized audio block not yet emitted
        self._squeeze: bool | None = None
        self._finished = False

    # -- frame arithmetic (untrimmed ISTFT coordinates: frame t covers [t * hop, t * hop + n_fft)) ----------

    def _first_frame(self, block: int) -> int:
        """First STFT frame overlapping audio block `block`."""
        hop, n_fft = self.config.hop_length, self.config.n_fft
        return max(0, (block * hop + n_fft // 2 - n_fft) // hop + 1)

    def _last_frame(self, block_end: int) -> int:
        """Last STFT frame overlapping the samples before block `block_end`."""
        hop, n_fft = self.config.hop_length, self.config.n_fft
        return (block_end * hop + n_fft // 2 - 1) // hop

    @property
    def latency_seconds(self) -> float:
        """Algorithmic latency of this streamer (not counting compute)."""
        return self.lookahead_frames * self.config.hop_length / self.config.sample_rate

    # -- public ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def push(self, mel_chunk: torch.Tensor | np.ndarray) -> np.ndarray:
        """Add ``(M, f)`` or ``(B, M, f)`` mel frames; return the audio that is now final."""
        if self._finished:
            raise RuntimeError("this VocosStreamer was flushed; start a new one for a new stream")
        chunk = torch.as_tensor(mel_chunk)
        squeeze = chunk.dim() == 2
        if squeeze:
            chunk = chunk.unsqueeze(0)
        if chunk.dim() != 3 or chunk.shape[1] != self.config.input_channels:
            raise ValueError(
                f"mel chunks must be (M, f) or (B, M, f) with M = {self.config.input_channels}, got {tuple(chunk.shape)}"
            )
        if self._squeeze is None:
            self._squeeze = squeeze
        elif self._squeeze != squeeze or (self._mel is not None and self._mel.shape[0] != chunk.shape[0]):
            raise ValueError("every mel chunk of a stream must have the same batch layout")
        param = next(self.model.parameters())
        chunk = chunk.to(device=param.device, dtype=param.dtype)
        self._mel = chunk if self._mel is None else torch.cat([self._mel, chunk], dim=-1)
        self._received += chunk.shape[-1]
        # Largest block end whose last STFT frame has its right context.
        block_end = self._next_block
        while block_end + 1 < self._received and self._last_frame(block_end + 1) + self._right_context < self._received:
            block_end += 1
        return self._emit(block_end)

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        """End of stream: return the rest of the audio (the full decode has ``(F - 1) * hop`` samples)."""
        if self._finished:
            raise RuntimeError("this VocosStreamer was already flushed")
        self._finished = True
        if self._mel is None:
            return np.zeros(0, dtype=np.float32)
        # The last frames' STFT neighbours do not exist; clamping to the received frames matches the full decode.
        return self._emit(max(self._received - 1, self._next_block))

    # -- internals ------------------------------------------------------------------------------------------

    def _emit(self, block_end: int) -> np.ndarray:
        assert self._mel is not None
        batch = self._mel.shape[0]
        first = self._next_block
        if block_end <= first:
            return self._format(torch.zeros(batch, 0))
        hop, n_fft = self.config.hop_length, self.config.n_fft
        frame_lo = self._first_frame(first)
        frame_hi = min(self._last_frame(block_end), self._received - 1)
        mel_lo = max(0, frame_lo - self.context)
        mel_hi = min(self._received, frame_hi + self.context + 1)
        assert mel_lo >= self._mel_start, "streaming buffer dropped frames it still needs"
        mel = self._mel[..., mel_lo - self._mel_start : mel_hi - self._mel_start]
        spectrum = self.model.spectrum(mel)[..., frame_lo - mel_lo : frame_hi - mel_lo + 1]  # (B, K, frames)
        audio = self._overlap_add(spectrum)  # untrimmed samples from frame_lo * hop
        start = first * hop + n_fft // 2 - frame_lo * hop
        audio = audio[:, start : start + (block_end - first) * hop]
        self._next_block = block_end
        keep_from = max(0, self._first_frame(block_end) - self.context)
        if keep_from > self._mel_start:
            self._mel = self._mel[..., keep_from - self._mel_start :]
            self._mel_start = keep_from
        return self._format(audio)

    def _overlap_add(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Windowed inverse FFT of each frame, overlap-added and divided by the window-square envelope."""
        hop, n_fft = self.config.hop_length, self.config.n_fft
        window = self.model.head.istft.window.to(spectrum.real.dtype)
        frames = torch.fft.irfft(spectrum, n=n_fft, dim=1) * window[None, :, None]  # (B, n_fft, frames)
        count = frames.shape[-1]
        length = (count - 1) * hop + n_fft
        fold = dict(output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop))
        signal = torch.nn.functional.fold(frames, **fold)[:, 0, 0]
        squares = (window**2)[None, :, None].expand(1, n_fft, count)
        envelope = torch.nn.functional.fold(squares, **fold)[:, 0, 0]
        return signal / envelope.clamp(min=1e-11)

    def _format(self, audio: torch.Tensor) -> np.ndarray:
        out = audio.float().cpu().numpy()
        return out[0] if self._squeeze else out


def stream(
    model: "Vocos", mel_chunks: Iterable[torch.Tensor | np.ndarray], lookahead_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Generator of audio chunks for an iterable of mel chunks (empty chunks are not yielded).

    ``np.concatenate(list(stream(model, chunks)), axis=-1)`` equals ``model(torch.cat(chunks, -1))``.
    """
    streamer = VocosStreamer(model, lookahead_frames)
    for chunk in mel_chunks:
        audio = streamer.push(chunk)
        if audio.shape[-1]:
            yield audio
    tail = streamer.flush()
    if tail.shape[-1]:
        yield tail
