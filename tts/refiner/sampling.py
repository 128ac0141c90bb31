"""Sampling the flow refiner: a whole utterance (`generate`) or a stream of mel chunks as soon as they are final
(`generate_stream`).

The ODE is integrated with the studio's one flow integrator (`tts.dit.sampling.integrate` on the
`tts.dit.sampling.sway_timesteps` grid: Euler or midpoint, sway sampling), with classifier-free guidance
``v_c + cfg_strength * (v_c - v_u)``; the unconditional pass drops the tokens, the prompt and the speaker
embedding (the style stays).

Cost: the prompt's keys and values are computed once (`FlowRefiner.prompt_cache`); each ODE evaluation then runs
only the target frames, as one batch of conditional and unconditional rows when guidance is on. Attention skips
what the mask hides (`tts.layers.BandedMask`: the later chunks, and the whole prompt for the unconditional rows),
and a stream encodes only the tokens each chunk's frames see. The prompt's share (speaker embedding, condition,
keys and values) is kept for the next call with the same prompt tensor and style (`_PromptMemo`).

Why streaming gives the same mel as `generate`: in the model, a chunk depends only on the prompt, earlier chunks
and tokens up to ``lookahead`` frames past its end (see `tts.refiner.model`). So the stream integrates one chunk
at a time, over all ODE steps, keeping each evaluation's keys and values of the earlier chunks in a KV cache of
that evaluation; and the starting noise belongs to frame positions, not to the call: it is drawn per block of
``chunk_size`` frames from a generator seeded by ``(seed, block index)``. Both paths therefore compute the same
numbers up to float rounding (tested to 1e-4), however the tokens arrive.

Memory: the stream keeps ``steps x evaluations per step x depth`` KV caches (of ``2B`` rows with guidance) of the
frames so far
(about 150 KB per frame, up to twice that with the buffers' spare room, for the `small` config with 6 Euler
steps and guidance); synthesize long texts sentence by sentence.

Shapes: ``B`` batch, ``M`` mel bands, ``N`` target tokens, ``T = frames_per_token * N`` target frames, ``P``
prompt frames, ``Np`` prompt tokens.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Callable, Iterable, Iterator, Literal, Union

import numpy as np
import torch

from tts.dit.sampling import integrate, sway_timesteps
from tts.layers import BandedMask, GrowingKVCache, KVCache
from tts.memo import LruCache
from tts.refiner.model import FlowRefiner, refiner_attention_mask

__all__ = ["generate", "generate_stream", "frame_noise", "DEFAULT_STEPS", "DEFAULT_CFG_STRENGTH", "DEFAULT_SWAY_COEF"]

DEFAULT_STEPS = 6
DEFAULT_CFG_STRENGTH = 0.7
DEFAULT_SWAY_COEF = -1.0

TokenSource = Union[torch.Tensor, Iterable[torch.Tensor]]
"""Target tokens: a ``(B, N)`` tensor, or an iterable of ``(B, n)`` pieces (e.g. from a token LM as it decodes)."""


def frame_noise(seed: int, batch: int, mel_dim: int, start: int, end: int, block: int) -> torch.Tensor:
    """The starting noise ``(B, M, end - start)`` of frames ``start .. end - 1``.

    Drawn per block of `block` frames from a CPU generator seeded by ``(seed, block index)``, so a frame's noise
    does not depend on how the utterance is cut into chunks, how long it is, or the device.
    """
    first, last = start // block, -(-end // block)
    parts = []
    for index in range(first, last):
        block_seed = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
        parts.append(torch.randn(batch, mel_dim, block, generator=torch.Generator().manual_seed(block_seed)))
    offset = start - first * block
    return torch.cat(parts, dim=-1)[..., offset : offset + end - start]


def _as_batch(tensor: torch.Tensor, dims: int, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(tensor)
    if tensor.dim() == dims - 1:
        tensor = tensor[None]
    if tensor.dim() != dims:
        raise ValueError(f"{name} must have {dims - 1} or {dims} dimensions, got shape {tuple(tensor.shape)}")
    return tensor


def _check_tokens(model: FlowRefiner, tokens: torch.Tensor, name: str) -> torch.Tensor:
    tokens = _as_batch(tokens, 2, name).long()
    size = model.config.codebook_size
    if tokens.numel() and bool(((tokens < 0) | (tokens >= size)).any()):
        raise ValueError(f"{name} must be ids in [0, {size}) of the tokenizer this refiner was trained with")
    return tokens


class _PromptMemo:
    """The prompt's share of a generation (speaker embedding, global condition, the prompt's keys and values) kept
    for the next generation with the same prompt tensor, model weights, prompt tokens and style: a voice speaks
    sentence after sentence, and this is 50-100 ms of every refiner call on the CPU.

    Entries hold a weak reference to the caller's prompt mel and match only that very tensor, unchanged since
    (its in-place version), so a new tensor never gets another one's entry; model weights that changed in place
    (an optimiser step) change the key. The last `SIZE` entries per model are kept (a few MB each)."""

    SIZE = 8
    _caches: "weakref.WeakKeyDictionary[FlowRefiner, LruCache]" = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    @staticmethod
    def _version(tensor: torch.Tensor) -> int:
        return -1 if tensor.is_inference() else tensor._version  # inference tensors keep no version counter

    @classmethod
    def _cache_and_key(cls, model: FlowRefiner, prompt: torch.Tensor, key) -> tuple[LruCache, tuple]:
        with cls._lock:
            cache = cls._caches.setdefault(model, LruCache(cls.SIZE))
        return cache, (id(prompt), cls._version(prompt), repr(key))

    @classmethod
    def get(cls, model: FlowRefiner, prompt, key):
        if key is None:
            return None
        cache, full_key = cls._cache_and_key(model, prompt, key)
        found = cache.get(full_key)
        return found[1] if found is not None and found[0]() is prompt else None

    @classmethod
    def put(cls, model: FlowRefiner, prompt, key, value) -> None:
        if key is not None:
            cache, full_key = cls._cache_and_key(model, prompt, key)
            cache.put(full_key, (weakref.ref(prompt), value))


class _Flow:
    """The fixed parts of one generation (conditioning, the prompt's keys and values, time grid) and, when
    streaming, the KV caches of every ODE evaluation.

    With guidance, the conditional and unconditional passes run as one batch of ``2B`` rows: the unconditional
    rows drop the tokens and the speaker embedding, and the attention mask hides the prompt from them (the same
    dropout as in training).
    """

    @torch.no_grad()
    def __init__(
        self,
        model: FlowRefiner,
        prompt_mel: torch.Tensor,
        prompt_tokens: torch.Tensor,
        style_id: int | torch.Tensor,
        prompt_lengths: torch.Tensor | None,
        speaker_embedding: torch.Tensor | None,
        steps: int,
        cfg_strength: float,
        seed: int | None,
        method: Literal["euler", "midpoint"],
        sway_sampling_coef: float | None,
        batch: int,
        target_lengths: torch.Tensor | None,
        streaming: bool,
        style_intensity: float | torch.Tensor = 1.0,
    ) -> None:
        config = model.config
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.model, self.method, self.cfg_strength, self.streaming = model, method, float(cfg_strength), streaming
        if method not in ("euler", "midpoint"):
            raise ValueError(f"method must be 'euler' or 'midpoint', got {method!r}")
        callers_prompt = prompt_mel  # the caller's own tensor: what the prompt memo recognises

        prompt_mel = _as_batch(prompt_mel, 3, "prompt_mel").to(self.device, self.dtype)
        if prompt_mel.shape[0] != batch:
            raise ValueError(f"prompt_mel has batch {prompt_mel.shape[0]} but the tokens have batch {batch}")
        if prompt_mel.shape[1] != config.mel_dim:
            raise ValueError(
                f"prompt_mel has {prompt_mel.shape[1]} mel bands; this refiner uses {config.mel_dim} "
                "(compute it with tts.audio.log_mel, shaped (B, M, frames))"
            )
        self.prompt_frames = prompt_mel.shape[-1]
        if self.prompt_frames < 1:
            raise ValueError("the voice prompt is empty; give at least a second of the voice's speech")
        prompt_tokens = _check_tokens(model, prompt_tokens, "prompt_tokens").to(self.device)
        expected = -(-self.prompt_frames // config.frames_per_token)
        if prompt_tokens.shape != (batch, expected):
            raise ValueError(
                f"a prompt of {self.prompt_frames} mel frames has {expected} tokens (ceil(frames / "
                f"{config.frames_per_token})); got prompt_tokens of shape {tuple(prompt_tokens.shape)}"
            )
        lengths = None
        if prompt_lengths is not None:
            lengths = torch.as_tensor(prompt_lengths, device=self.device).long()
            if lengths.shape != (batch,) or bool(((lengths < 1) | (lengths > self.prompt_frames)).any()):
                raise ValueError(f"prompt_lengths must be ({batch},) values in [1, {self.prompt_frames}]")

        style_ids = torch.as_tensor(style_id, device=self.device).long().reshape(-1).expand(batch)
        if bool(((style_ids < 0) | (style_ids >= config.num_styles)).any()):
            raise ValueError(f"style ids must lie in [0, {config.num_styles}) (0 = neutral)")
        intensity = torch.as_tensor(style_intensity, device=self.device, dtype=self.dtype).reshape(-1).expand(batch)
        if bool(((intensity < 0) | (intensity > 1)).any()):
            raise ValueError("style_intensity must lie in [0, 1]")
        memo_key = None
        if speaker_embedding is None and lengths is None and isinstance(callers_prompt, torch.Tensor):
            memo_key = (prompt_tokens.tolist(), tuple(style_ids.tolist()), tuple(intensity.tolist()), str(self.dtype),
                        str(self.device), [_PromptMemo._version(p) for p in itertools.islice(model.parameters(), 3)])
        memo = _PromptMemo.get(model, callers_prompt, memo_key)
        if memo is not None:
            speaker_embedding, condition, prompt_caches = memo
        else:
            if speaker_embedding is None:
                speaker_embedding = model.speaker_embedding(prompt_mel, lengths)
            else:
                speaker_embedding = _as_batch(speaker_embedding, 2, "speaker_embedding").to(self.device, self.dtype)
                if speaker_embedding.shape != (batch, config.speaker_dim):
                    raise ValueError(f"speaker_embedding must be ({batch}, {config.speaker_dim})")
            condition = model.global_condition(speaker_embedding, style_ids, style_intensity=intensity)
            prompt_caches = model.prompt_cache(model.embed_prompt(prompt_mel, prompt_tokens, lengths), condition,
                                               lengths)
            _PromptMemo.put(model, callers_prompt, memo_key, (speaker_embedding, condition, prompt_caches))

        self.batch = batch
        self.guided = self.cfg_strength != 0.0
        copies = 2 if self.guided else 1  # rows: [conditional | unconditional]

        def rows(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else torch.cat([tensor] * copies)

        if self.guided:
            everyone = torch.ones(batch, dtype=torch.bool, device=self.device)
            unconditional = model.global_condition(speaker_embedding, style_ids, drop_speaker=everyone,
                                                   style_intensity=intensity)
            condition = torch.cat((condition, unconditional))
        self.condition = condition
        self.prompt_caches = [(rows(cache.key), rows(cache.value)) for cache in prompt_caches]
        self.prompt_lengths = rows(lengths)
        self.prompt_offsets = rows(lengths if lengths is not None else torch.full((batch,), self.prompt_frames, device=self.device))
        self.target_lengths = rows(None if target_lengths is None else target_lengths.to(self.device))
        self.drop_prompt = torch.arange(batch * copies, device=self.device) >= batch  # the unconditional rows

        self.times = sway_timesteps(steps, sway_sampling_coef, device=self.device)
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.caches: dict[int, list[KVCache]] = {}

    def _token_features(self, tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """``(rows, end - start, Dk)`` token features of target frames ``start .. end - 1`` (conditional rows, then
        "no token" rows with guidance).

        A frame's features depend on its token and the tokens of the next ``lookahead`` frames (zero past the end of
        `tokens`), so only the tokens of that window are encoded: a stream does not encode its earlier tokens again
        for every chunk."""
        config = self.model.config
        step = config.frames_per_token
        first, last = start // step, min(-(-(end + config.lookahead) // step), tokens.shape[1])
        window = tokens[:, first:last]
        ids = torch.cat((window, torch.full_like(window, config.null_token))) if self.guided else window
        lengths = None if self.target_lengths is None else (self.target_lengths - first * step).clamp(min=0)
        offset = start - first * step
        return self.model.token_features(ids, lengths)[:, offset : offset + end - start]

    @torch.no_grad()
    def segment(
        self, tokens: torch.Tensor, start: int, end: int, progress: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        """Integrate target frames ``start .. end - 1`` over every ODE step -> ``(B, M, end - start)`` log-mel.

        Earlier frames must have been integrated already (their keys/values are in the caches), and `tokens` must
        reach ``lookahead`` frames past `end` unless it is the whole utterance.
        """
        model, batch = self.model, self.batch
        features = self._token_features(tokens, start, end)
        x = frame_noise(self.seed, batch, model.config.mel_dim, start, end, model.config.chunk_size)
        x = x.to(self.device, self.dtype)
        # These frames' rows only; banded so that attention skips what the mask hides (later chunks, and the prompt
        # for the unconditional rows).
        mask = BandedMask(refiner_attention_mask(
            self.prompt_frames, end, model.config.chunk_size, self.prompt_lengths, self.target_lengths,
            self.drop_prompt, device=self.device, first_row=self.prompt_frames + start,
        ))
        positions = model.target_positions(self.prompt_offsets, start, end)
        calls = itertools.count()

        def velocity(state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            h = model.embed_target(torch.cat([state] * (2 if self.guided else 1)), features)
            caches = self._caches(next(calls), capacity=self.prompt_frames + end)
            out = model.estimate(h, time.to(self.dtype), self.condition, positions, mask, caches)
            out = out.transpose(1, 2)
            if not self.guided:
                return out
            conditional, unconditional = out[:batch], out[batch:]
            return conditional + (conditional - unconditional) * self.cfg_strength

        x = integrate(velocity, x, self.times, self.method, progress)
        mel = model.denormalize_mel(x)
        if self.target_lengths is not None:
            real = torch.arange(start, end, device=self.device)[None] < self.target_lengths[:batch, None]
            mel = torch.where(real[:, None, :], mel, torch.full_like(mel, model.silence_value))
        return mel

    def _caches(self, index: int, capacity: int) -> list[KVCache]:
        """The KV caches of ODE evaluation `index`: the prompt's, then, when streaming, the earlier chunks' of that
        same evaluation (the prompt's own tensors are never written to); new ones get room for `capacity` frames."""
        if index not in self.caches:
            caches = [GrowingKVCache(key, value, capacity) for key, value in self.prompt_caches]
            if not self.streaming:
                return caches
            self.caches[index] = caches
        return self.caches[index]


@torch.no_grad()
def generate(
    model: FlowRefiner,
    tokens: torch.Tensor,
    prompt_mel: torch.Tensor,
    prompt_tokens: torch.Tensor,
    style_id: int | torch.Tensor = 0,
    steps: int = DEFAULT_STEPS,
    cfg_strength: float = DEFAULT_CFG_STRENGTH,
    seed: int | None = None,
    method: Literal["euler", "midpoint"] = "euler",
    sway_sampling_coef: float | None = DEFAULT_SWAY_COEF,
    token_lengths: torch.Tensor | None = None,
    prompt_lengths: torch.Tensor | None = None,
    speaker_embedding: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    style_intensity: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Generate the mel of `tokens` in the prompt's voice, whole utterance at once (same result as the stream).

    Args:
        model: the refiner (in eval mode).
        tokens: ``(B, N)`` or ``(N,)`` speech tokens of what to say.
        prompt_mel: ``(B, M, P)`` or ``(M, P)`` log-mel (`tts.audio.log_mel`) of the voice prompt.
        prompt_tokens: ``(B, Np)`` or ``(Np,)`` tokens of the prompt, ``Np = ceil(P / frames_per_token)``.
        style_id: style id, or ``(B,)`` ids (0 = neutral; `FlowRefinerConfig.style_id` maps a label).
        steps: ODE steps (at most 10 is the design point; 6 by default).
        cfg_strength: classifier-free guidance (0 = off, one evaluation per step instead of two).
        seed: seeds the starting noise (`frame_noise`); None = random. The global RNG is untouched.
        method: ``"euler"`` or ``"midpoint"`` (two evaluations per step).
        sway_sampling_coef: time-grid warp (negative: more steps near the noise end; None = uniform).
        token_lengths: ``(B,)`` real tokens of a padded batch; frames past them come back as silence.
        prompt_lengths: ``(B,)`` real prompt frames of a padded batch of prompts.
        speaker_embedding: ``(B, Ds)`` to use instead of the one pooled from the prompt (e.g. a stored or
            perturbed voice embedding).
        progress: called as ``progress(step, steps)`` after every ODE step.
        style_intensity: in [0, 1], or ``(B,)``: from neutral (0) to the full style (1).

    Returns:
        ``(B, M, frames_per_token * N)`` log-mel.
    """
    tokens = _check_tokens(model, tokens, "tokens")
    if tokens.shape[1] == 0:
        raise ValueError("there are no tokens to generate")
    frames_per_token = model.config.frames_per_token
    target_lengths = None
    if token_lengths is not None:
        token_lengths = torch.as_tensor(token_lengths).long()
        if token_lengths.shape != (tokens.shape[0],) or bool(((token_lengths < 1) | (token_lengths > tokens.shape[1])).any()):
            raise ValueError(f"token_lengths must be ({tokens.shape[0]},) values in [1, {tokens.shape[1]}]")
        target_lengths = token_lengths * frames_per_token
    flow = _Flow(
        model, prompt_mel, prompt_tokens, style_id, prompt_lengths, speaker_embedding, steps, cfg_strength, seed,
        method, sway_sampling_coef, tokens.shape[0], target_lengths, streaming=False, style_intensity=style_intensity,
    )
    return flow.segment(tokens.to(flow.device), 0, tokens.shape[1] * frames_per_token, progress)


def _token_pieces(tokens: TokenSource) -> Iterator[torch.Tensor]:
    if isinstance(tokens, torch.Tensor):
        yield tokens
    else:
        yield from tokens


def generate_stream(
    model: FlowRefiner,
    tokens: TokenSource,
    prompt_mel: torch.Tensor,
    prompt_tokens: torch.Tensor,
    style_id: int | torch.Tensor = 0,
    steps: int = DEFAULT_STEPS,
    cfg_strength: float = DEFAULT_CFG_STRENGTH,
    seed: int | None = None,
    chunk_tokens: int | None = None,
    first_chunk_tokens: int | None = None,
    method: Literal["euler", "midpoint"] = "euler",
    sway_sampling_coef: float | None = DEFAULT_SWAY_COEF,
    prompt_lengths: torch.Tensor | None = None,
    speaker_embedding: torch.Tensor | None = None,
    style_intensity: float | torch.Tensor = 1.0,
) -> Iterator[torch.Tensor]:
    """Yield the mel chunk by chunk, each as soon as it is final; concatenated they equal `generate` with the same
    arguments and seed (up to float rounding).

    A chunk is generated once the tokens reach ``lookahead`` frames past its end (or the tokens have ended), so
    `tokens` may be an iterable that a token LM fills as it decodes.

    Args:
        tokens: ``(B, N)`` / ``(N,)`` tokens, or an iterable of ``(B, n)`` / ``(n,)`` pieces.
        chunk_tokens: tokens per yielded chunk; its frames must be a multiple of the model's ``chunk_size``, i.e.
            a multiple of ``chunk_size / frames_per_token`` tokens (the default: one attention chunk). Larger
            chunks cost less per frame.
        first_chunk_tokens: tokens of the first chunk (default `chunk_tokens`), same rule: a small first chunk
            and larger later ones give a short time to first audio at a lower total cost.
        The others: as in `generate`.

    Yields:
        ``(B, M, frames)`` log-mel chunks; the last one may be shorter.
    """
    config = model.config
    frames_per_token = config.frames_per_token
    unit = config.chunk_size // frames_per_token
    chunk_tokens = unit if chunk_tokens is None else chunk_tokens
    first_chunk_tokens = chunk_tokens if first_chunk_tokens is None else first_chunk_tokens
    for name, value in (("chunk_tokens", chunk_tokens), ("first_chunk_tokens", first_chunk_tokens)):
        if value < 1 or value % unit:
            raise ValueError(
                f"{name} must be a positive multiple of {unit} tokens (the model's attention chunk of "
                f"{config.chunk_size} frames); got {value}"
            )
    flow: _Flow | None = None
    received = torch.zeros(0, 0, dtype=torch.long)
    start = 0

    def next_end() -> int:
        return start + (first_chunk_tokens if start == 0 else chunk_tokens) * frames_per_token

    # No `torch.no_grad()` around the yields: it would leak into the caller between chunks (segment has its own).
    for piece in _token_pieces(tokens):
        piece = _check_tokens(model, piece, "tokens")
        if flow is None:
            flow = _Flow(
                model, prompt_mel, prompt_tokens, style_id, prompt_lengths, speaker_embedding, steps,
                cfg_strength, seed, method, sway_sampling_coef, piece.shape[0], None, streaming=True,
                style_intensity=style_intensity,
            )
            received = piece.to(flow.device)
        else:
            if piece.shape[0] != flow.batch:
                raise ValueError(f"a token piece has batch {piece.shape[0]}, the stream has {flow.batch}")
            received = torch.cat((received, piece.to(flow.device)), dim=1)
        available = received.shape[1] * frames_per_token
        while next_end() + config.lookahead <= available:
            end = next_end()
            yield flow.segment(received, start, end)
            start = end
    if flow is None or received.shape[1] == 0:
        raise ValueError("there are no tokens to generate")
    total = received.shape[1] * frames_per_token
    while start < total:
        end = min(next_end(), total)
        yield flow.segment(received, start, end)
        start = end
