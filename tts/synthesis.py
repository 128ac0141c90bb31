"""`synthesize()`: text + a voice -> speech, through one of `SYNTHESIS_ENGINES` (default `DEFAULT_ENGINE`, the
Seed-TTS DiT path, `tts.dit.engine`); below, the `ar` engine (the Seed-TTS token-LM path).

    voice = clone_voice("ref.wav")
    audio = synthesize("Hello there.", voice=voice, seed=0)
    for chunk in synthesize(long_text, voice=voice, stream=True): ...

Data flow for one call::

    text --parse_style_tags--> segments, each with its Style --engine_conditioning--> label, intensity, speed,
        residual; each segment --split_for_synthesis--> chunks --prepare_text--> words --text_units--> units
    voice --tokenizer.mel_and_tokens / align--> prompt (mel, tokens, units with their token counts,
        the refiner's spectral correction for the voice)
    units + prompt --token LM (text forced, tts.lm.generate)--> speech tokens
    tokens + prompt mel + label/intensity --flow refiner--> mel + correction --speed (MelStretcher)--> mel
        --vocoder--> audio
        --apply_conditioning (residual: PSOLA, level)--> chunk audio; chunks joined with short pauses

Every chunk is conditioned on the same voice prompt. Stateless: the models are loaded once per set of
checkpoints and shared read-only (inference only), every call builds its own caches and random generators, so
concurrent calls with different voices never mix. Streaming yields audio as soon as the vocoder has it: the LM
feeds the refiner token by token (`tts.refiner.sampling.generate_stream`), the refiner feeds the vocoder chunk by
chunk (`vocoder.streaming`); with the same seed the concatenated stream equals the non-streamed audio up to
float rounding. A chunk whose style has a residual (`tts.style`: a mixture, intensity above 1, pitch, range or
energy, or a label the refiner was not trained with) is post-processed whole, so the stream yields it in one piece.
A label's rate always goes to the speed control (`MelStretcher`; the token LM does not realise it).

Shapes: ``M`` mel bands, ``P`` prompt frames, ``Np`` prompt tokens.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import weakref
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Iterator, Sequence

import numpy as np
import torch

from tts.audio import SAMPLE_RATE, Audio, interpolate_frames, speech_band_means
from tts.data.styles import STYLES
from tts.errors import CheckpointError, TextError, TimbreError, VoiceError
from tts.lm.generate import SamplingOptions, generate_speech_tokens, iter_speech_tokens, max_target_units
from tts.lm.stream import Utterance, text_units, unit_start_times, unit_token_counts
from tts.memo import LruCache
from tts.style import (MAX_SPEED, MIN_SPEED, EmotionSpec, EngineConditioning, Style, apply_conditioning,
                       engine_conditioning, parse_style_tags, style_from_options)
from tts.text import prepare_text, split_for_synthesis, validate_text
from tts.voice import Voice, clone_voice

if TYPE_CHECKING:
    from tts.dit.engine import DitEngine
    from tts.tone_color import ToneColorEngine

logger = logging.getLogger(__name__)

AR_CHECKPOINTS = {"tokenizer": "speech_tokenizer", "lm": "token_lm", "refiner": "flow_refiner", "vocoder": "vocoder"}
"""Shipped checkpoint names of the `ar` engine's parts."""

SENTENCE_PAUSE_SECONDS = 0.12
"""Silence put between two chunks of a long text (each chunk already ends with the pause the LM gave it)."""

STREAM_FIRST_CHARS = 40
"""With ``stream=True``, engines that render a chunk at a time (``dit``, ``base+convert``) speak first about this
many characters of the text (its first sentence, clause or phrase, at most 1.5 times this:
`tts.text.chunking.split_head`), so the first audio comes after a short piece (docs/benchmarks.md, "A short
first piece when streaming")."""

DEFAULT_VERIFY_WER = 0.25
"""`verify=True` regenerates a chunk whose ASR word error rate is above this."""


@dataclass(frozen=True)
class ArEngine:
    """The four models of the `ar` engine, loaded and checked to fit together (read-only once built)."""

    tokenizer: torch.nn.Module
    lm: torch.nn.Module
    refiner: torch.nn.Module
    vocoder: torch.nn.Module

    def __post_init__(self) -> None:
        lm, tokenizer, refiner = self.lm.config, self.tokenizer.config, self.refiner.config
        lm.check_phoneme_table()
        if lm.codebook_size != tokenizer.codebook_size or refiner.codebook_size != tokenizer.codebook_size:
            raise CheckpointError(
                f"the engine's parts do not fit: tokenizer codebook {tokenizer.codebook_size}, LM "
                f"{lm.codebook_size}, refiner {refiner.codebook_size}; use checkpoints trained together"
            )
        if not math.isclose(lm.token_rate, tokenizer.token_rate, rel_tol=1e-6):
            raise CheckpointError(f"the LM speaks {lm.token_rate} tokens/s, the tokenizer makes {tokenizer.token_rate}")

    @classmethod
    def from_pretrained(cls, tokenizer: str = AR_CHECKPOINTS["tokenizer"], lm: str = AR_CHECKPOINTS["lm"],
                        refiner: str = AR_CHECKPOINTS["refiner"], vocoder: str = AR_CHECKPOINTS["vocoder"],
                        local_files_only: bool = False) -> "ArEngine":
        """Load the parts (shipped names, local folders or hub ids) in float32 on the CPU."""
        from tts.lm.model import SpeechTokenLM
        from tts.refiner.model import FlowRefiner
        from tts.tokenizer.model import SpeechTokenizer
        from vocoder.vocos import Vocos

        parts = [
            SpeechTokenizer.from_pretrained(tokenizer, local_files_only=local_files_only),
            SpeechTokenLM.from_pretrained(lm, local_files_only=local_files_only),
            FlowRefiner.from_pretrained(refiner, local_files_only=local_files_only),
            Vocos.from_pretrained(vocoder, local_files_only=local_files_only),
        ]
        return cls(*(part.float().eval() for part in parts))


_ENGINES: dict[tuple, ArEngine] = {}
_ENGINES_LOCK = threading.Lock()


def load_engine(**checkpoints: str) -> ArEngine:
    """The `ar` engine for these checkpoints (default: the shipped ones), loaded once per process and shared.

    With ``refiner=DISTILLED_REFINER`` (and the other parts shipped) it is the `distilled` timbre-swap engine's parts.
    """
    from tts.engines import DISTILLED_REFINER

    names = {**AR_CHECKPOINTS, **checkpoints}
    shipped = {AR_CHECKPOINTS["refiner"]: "ar", DISTILLED_REFINER: "distilled"}
    if {**names, "refiner": AR_CHECKPOINTS["refiner"]} == AR_CHECKPOINTS and names["refiner"] in shipped:
        from tts.engines import engine_status

        engine = shipped[names["refiner"]]
        status = next(s for s in engine_status() if s.name == engine)
        if not status.available:
            raise CheckpointError(f"the {engine!r} engine is unavailable: {status.reason}")
    key = tuple(sorted(names.items()))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = ArEngine.from_pretrained(**names)
        return _ENGINES[key]


@dataclass(frozen=True)
class VoicePrompt:
    """What the engine conditions on, derived from a `Voice`: the prompt's mel ``(M, P)``, its tokens ``(Np,)``,
    its interleaved utterance (text units with the tokens each one owns) and the refiner's spectral correction for
    the voice ``(M, 1)`` (`_spectral_correction`)."""

    mel: torch.Tensor
    tokens: torch.Tensor
    utterance: Utterance
    correction: torch.Tensor


PROMPT_CACHE_SIZE = 16
"""Voice prompts kept per tokenizer and refiner (`prepare_prompt`): a studio speaks a few voices over and over."""

CORRECTION_MIN_TOKENS = 16
"""Each half of a prompt measures the refiner's spectral correction (`_spectral_correction`) only with at least this
many tokens (0.5 s); a shorter prompt gets none."""
CORRECTION_STEPS = 4
CORRECTION_CFG = 2.0
"""The refiner's sampling when it measures a correction (`SynthesisOptions`' defaults; seed 0)."""

_PROMPTS: "weakref.WeakKeyDictionary[torch.nn.Module, weakref.WeakKeyDictionary]" = weakref.WeakKeyDictionary()
_PROMPTS_LOCK = threading.Lock()


def prepare_prompt(engine: ArEngine, voice: Voice) -> VoicePrompt:
    """Tokenize and align a voice's reference clip with its transcript, and measure the refiner's correction for it.

    The result is kept for the engine's tokenizer and refiner (the last `PROMPT_CACHE_SIZE` voices, keyed by the
    clip's samples and the transcript), so speaking again in a voice skips all of that."""
    with _PROMPTS_LOCK:
        per_refiner = _PROMPTS.setdefault(engine.tokenizer, weakref.WeakKeyDictionary())
        cache = per_refiner.setdefault(engine.refiner, LruCache(PROMPT_CACHE_SIZE))
    return cache.get_or_make((voice.digest, voice.audio.sample_rate, voice.transcript),
                             lambda: _tokenize_prompt(engine, voice))


def _tokenize_prompt(engine: ArEngine, voice: Voice) -> VoicePrompt:
    from tts.tokenizer.align import align

    tokenizer = engine.tokenizer
    with torch.inference_mode():
        mel, tokens = tokenizer.mel_and_tokens(voice.audio)
    try:
        words = list(prepare_text(voice.transcript).words)
        timings = align(voice.audio, words, tokenizer)
    except TextError as error:
        raise VoiceError(
            f"the voice's transcript does not fit its recording ({error}); clone the voice again with the words "
            "it says (or without a transcript, to have it transcribed)"
        ) from error
    counts = unit_token_counts(unit_start_times(words, timings), len(tokens), tokenizer.config.token_rate)
    return VoicePrompt(mel, tokens, Utterance(tuple(text_units(words)), tuple(counts), tuple(tokens.tolist())),
                       _spectral_correction(engine.refiner, mel, tokens))


def _spectral_correction(refiner: torch.nn.Module, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``(M, 1)``: what the refiner's speech in a voice lacks of the voice's long-term spectrum
    (`tts.audio.speech_band_means`), added to every mel it makes for the voice.

    Measured on the prompt itself: its second half said again by the refiner with the first half as the prompt
    (the voice's own speech, not given to the refiner), whose band means are subtracted from the real second half's.
    A constant per voice, so streamed chunks and whole chunks get the same; zeros for a prompt too short to
    halve (`CORRECTION_MIN_TOKENS`). On 20 held-out voices it raised SIM 0.61 -> 0.68 and lowered WER 0.35 -> 0.24
    (docs/benchmarks.md)."""
    from tts.refiner.sampling import generate

    half = len(tokens) // 2
    if half < CORRECTION_MIN_TOKENS:
        return torch.zeros(mel.shape[0], 1)
    split = half * refiner.config.frames_per_token
    with torch.inference_mode():
        said = generate(refiner, tokens[half:], mel[:, :split], tokens[:half], steps=CORRECTION_STEPS,
                        cfg_strength=CORRECTION_CFG, seed=0)[0]
    return speech_band_means(mel[:, split:]) - speech_band_means(said)


class MelStretcher:
    """Changes speaking rate on the mel, between the refiner and the vocoder: output frame ``j`` is the input
    interpolated linearly at frame ``j * speed`` (pitch and timbre stay; ``speed`` 1 returns the input as is).

    Works piece by piece (streaming: `push` each piece, then `finish`) and gives the same frames as `stretch` on
    the whole mel. Resampling the speech *tokens* instead (dropping or repeating whole 32 ms tokens) made the
    refiner's speech unintelligible: WER 0.37 at speed 1 became 0.75 at 1.12 and 0.82 at 0.82 on 8 held-out
    items, against 0.28 and 0.40 with the mel stretched (docs/benchmarks.md)."""

    def __init__(self, speed: float) -> None:
        self.speed = float(speed)
        self.buffer: torch.Tensor | None = None  # (M, K) input frames from `self.offset` on (None at speed 1)
        self.offset = 0
        self.emitted = 0

    def push(self, mel: torch.Tensor) -> torch.Tensor:
        """`mel` ``(M, F)``, the next input frames -> the output frames that are final now ``(M, F')``."""
        if self.speed == 1.0:
            return mel
        self.buffer = mel if self.buffer is None else torch.cat((self.buffer, mel), dim=-1)
        return self._emit(final=False)

    def finish(self) -> torch.Tensor:
        """The remaining output frames once the input has ended ``(M, F')`` (F' may be 0)."""
        return torch.zeros(0, 0) if self.buffer is None else self._emit(final=True)

    def stretch(self, mel: torch.Tensor) -> torch.Tensor:
        """The whole of `mel` ``(M, F)`` at the new rate."""
        return torch.cat((self.push(mel), self.finish()), dim=-1) if self.speed != 1.0 else mel

    def _emit(self, final: bool) -> torch.Tensor:
        buffer = self.buffer
        received = self.offset + buffer.shape[-1]
        positions = []
        while True:
            position = self.emitted * self.speed
            if not (position <= received - 1 if final else math.floor(position) + 1 < received):
                break
            positions.append(position)
            self.emitted += 1
        if not positions:
            return buffer[:, :0]
        out = interpolate_frames(buffer, torch.tensor(positions, dtype=torch.float64) - self.offset)
        keep = math.floor(self.emitted * self.speed) - self.offset  # frames before the next position are done
        if keep > 0:
            self.buffer, self.offset = buffer[:, keep:], self.offset + keep
        return out


@dataclass(frozen=True)
class SynthesisOptions:
    """Engine settings of one `synthesize` call (validated on creation); `style`, `intensity` and `speed` are
    what the engine is asked for (one label, intensity in [0, 1]: `tts.style.EngineConditioning`)."""

    style: str = "neutral"
    intensity: float = 1.0
    speed: float = 1.0
    seed: int | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    refiner_steps: int = 4
    cfg_strength: float = 2.0
    verify: bool = False
    verify_wer: float = DEFAULT_VERIFY_WER
    max_tries: int = 3
    max_chunk_chars: int = 250

    def __post_init__(self) -> None:
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {self.speed}")
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"intensity must be between 0 and 1, got {self.intensity}")
        if self.max_tries < 1 or not 1 <= self.refiner_steps <= 32:
            raise ValueError("max_tries must be >= 1 and refiner_steps between 1 and 32")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError("seed must be between 0 and 2**63 - 1")


def _chunk_seed(seed: int, chunk: int, attempt: int) -> int:
    return (seed * 1_000_003 + chunk * 9_176 + attempt * 104_729) % 2**63


def _refiner_args(engine: ArEngine, prompt: VoicePrompt, options: SynthesisOptions, seed: int) -> dict:
    """The refiner's arguments for a chunk: the voice prompt, the sampler settings and the chunk's style (neutral
    with a refiner trained without style labels: `FlowRefinerConfig.style_id`)."""
    return {"prompt_mel": prompt.mel, "prompt_tokens": prompt.tokens, "steps": options.refiner_steps,
            "cfg_strength": options.cfg_strength, "seed": seed % 2**31,
            "style_id": engine.refiner.config.style_id(options.style), "style_intensity": options.intensity}


def _chunk_audio(engine: ArEngine, prompt: VoicePrompt, units: list[int], options: SynthesisOptions, seed: int) -> Audio:
    generator = torch.Generator().manual_seed(seed)
    target = generate_speech_tokens(engine.lm, units, prompt.utterance, options.style, options.intensity,
                                    options.sampling, generator)
    if not target.tokens:
        raise TimbreError("the token LM produced no speech for this text; try another seed")
    return refine_tokens(engine, prompt, torch.tensor(target.tokens), options, seed)


def refine_tokens(engine: ArEngine, prompt: VoicePrompt, tokens: torch.Tensor, options: SynthesisOptions,
                  seed: int) -> Audio:
    """Speech tokens ``(N,)`` said in the prompt's voice: the flow refiner's mel (with the voice's spectral
    correction, at `options.speed`), then the vocoder; the whole utterance at once."""
    from tts.refiner.sampling import generate

    with torch.inference_mode():
        mel = generate(engine.refiner, tokens, **_refiner_args(engine, prompt, options, seed))
        return engine.vocoder.decode(MelStretcher(options.speed).stretch(mel[0] + prompt.correction))


STREAM_CHUNKS = (2, 4)
"""Refiner attention chunks in the first streamed piece and in each later one (`_chunk_stream`): every refiner
call has a fixed cost (the ODE steps over the prompt's cached context, the vocoder's overlap), so pieces of a
few chunks reach the first audio sooner and use less CPU in all than one chunk at a time (docs/benchmarks.md)."""


def _chunk_stream(engine: ArEngine, prompt: VoicePrompt, units: list[int], options: SynthesisOptions,
                  seed: int) -> Iterator[np.ndarray]:
    generator = torch.Generator().manual_seed(seed)

    def token_pieces() -> Iterator[torch.Tensor]:
        for step in iter_speech_tokens(engine.lm, units, prompt.utterance, options.style, options.intensity,
                                       options.sampling, generator):
            if step.code is not None:
                yield torch.tensor([step.code])

    return refine_token_stream(engine, prompt, token_pieces(), options, seed)


def refine_token_stream(engine: ArEngine, prompt: VoicePrompt, tokens: torch.Tensor | Iterable[torch.Tensor],
                        options: SynthesisOptions, seed: int) -> Iterator[np.ndarray]:
    """`refine_tokens` as a stream: audio pieces as soon as the refiner's chunks (`STREAM_CHUNKS`) and the
    vocoder's lookahead allow; `tokens` a tensor ``(N,)`` or pieces that arrive (a token LM decoding)."""
    from tts.refiner.sampling import generate_stream

    stretcher = MelStretcher(options.speed)

    def stretched(mel_chunks: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        for chunk in mel_chunks:
            frames = stretcher.push(chunk[0] + prompt.correction)
            if frames.shape[-1]:
                yield frames
        last = stretcher.finish()
        if last.shape[-1]:
            yield last

    unit = engine.refiner.config.chunk_size // engine.refiner.config.frames_per_token  # tokens of one attention chunk
    first, later = STREAM_CHUNKS
    mel_chunks = generate_stream(engine.refiner, tokens, first_chunk_tokens=first * unit,
                                 chunk_tokens=later * unit, **_refiner_args(engine, prompt, options, seed))
    for chunk in engine.vocoder.stream(stretched(mel_chunks)):
        yield np.asarray(chunk, dtype=np.float32).reshape(-1)


def _engine_of(models) -> str:
    """The synthesis engine whose loaded parts `models` are (`DEFAULT_ENGINE` for None or anything else)."""
    from tts.dit.engine import DitEngine
    from tts.tone_color import ToneColorEngine

    kinds = ((ArEngine, "ar"), (DitEngine, "dit"), (ToneColorEngine, "base+convert"))
    return next((name for kind, name in kinds if isinstance(models, kind)), DEFAULT_ENGINE)


def _conversion_engine_of(models) -> str:
    """The conversion engine whose loaded parts `models` are (`DEFAULT_CONVERSION_ENGINE` for None or anything
    else; an `ArEngine` is ``"ar"``, whichever refiner it holds)."""
    if models is None:
        return DEFAULT_CONVERSION_ENGINE
    return {"ar": "ar", "dit": "dit", "base+convert": "tone-color"}.get(_engine_of(models), DEFAULT_CONVERSION_ENGINE)


def _verified(render: Callable[[int], Audio], text: str, options: SynthesisOptions, index: int) -> Audio:
    """A chunk's audio: `render(0)`; with `options.verify`, rendered again (`render(1)`, `render(2)`, ...: each
    attempt seeded differently by the engine) while the offline ASR's word error rate against `text` is above
    `options.verify_wer`, at most `options.max_tries` renderings, the best one kept. Any engine."""
    best: tuple[float, Audio] | None = None
    for attempt in range(options.max_tries if options.verify else 1):
        audio = render(attempt)
        if not options.verify:
            return audio
        from tts.evaluation.asr import transcribe
        from tts.evaluation.wer import wer

        error = wer(text, transcribe(audio))
        logger.info("chunk %d attempt %d: WER %.3f", index, attempt, error)
        if best is None or error < best[0]:
            best = (error, audio)
        if error <= options.verify_wer:
            break
    return best[1]


def _retry_seed(seed: int, attempt: int) -> int:
    """The seed of a chunk's rendering number `attempt` (`_verified`) where the first one is seeded `seed`."""
    return seed if attempt == 0 else _chunk_seed(seed, 0, attempt) % 2**31


def _verified_pieces(plan: list[tuple[str, EngineConditioning]],
                     render: Callable[[str, EngineConditioning, int], Audio], run_seed: int,
                     options: SynthesisOptions) -> Iterator[Audio]:
    """Each planned chunk as `render(text, conditioning, seed)` says it (seed `run_seed` + its index), verified
    (`_verified`) when `options.verify` asks for it."""
    for index, (text, conditioning) in enumerate(plan):
        yield _verified(lambda attempt: render(text, conditioning, _retry_seed(run_seed + index, attempt)),
                        text, options, index)


SYNTHESIS_ENGINES = ("dit", "ar", "base+convert")
DEFAULT_ENGINE = "dit"
"""What `synthesize`, `timbre say` and the studio's Speak view use where no engine is named. On the same held-out
items (`heldout-en`) `dit` is heard better than `ar` (Whisper WER 0.05 against 0.24) and sounds more like the
reference (SIM 0.77 against 0.68, both at their own level) at under a third of its compute (RTF 0.09 against 0.32,
one thread); both stream (first audio after 0.27 s for `dit`, its first clause said on its own, 0.29 s for `ar`).
docs/benchmarks.md, "Which engine by default" and "A short first piece when streaming"."""
CONVERSION_ENGINES = ("dit", "tone-color", "distilled", "ar")
DEFAULT_CONVERSION_ENGINE = "dit"
"""What `convert`, `timbre convert` and the studio's Convert view use where no engine is named. On 24 held-out
pairs (`timbre eval-stage dit-conversion`) `dit` keeps the source's words (WER +0.025) and melody (F0-contour
correlation 0.83) at SIM 0.74 to the target (the source's 0.56; 0.55 to the source), where the `ar` engine's
refiner loses the words (WER +1.35, SIM 0.67) and the tone-color converter trained so far is not shipped (WER
+0.52, SIM 0.65 on 12). docs/benchmarks.md, "Voice conversion with the DiT"."""


def plan_chunks(text: str, style: Style, *, tags: bool = True, max_chars: int = 250,
                labels: Collection[str] = STYLES, native_rate: bool = True) -> list[tuple[str, EngineConditioning]]:
    """The chunks of `text` to speak, in order, each with what the engine is asked for.

    With `tags`, inline style tags (`tts.style.parse_style_tags`) split the text into segments with their own
    style (`style` is the default); each segment is chunked (`split_for_synthesis`) on its own. Segments with
    nothing speakable (a space or a comma between two tags) are skipped. `labels` (the ones the engine renders
    itself) and `native_rate` as in `tts.style.engine_conditioning`. Raises `TextError` for empty, over-long or
    unspeakable text and for bad tags.
    """
    validate_text(text)  # a huge or empty input is refused before the tags are read
    segments = parse_style_tags(text, style) if tags else [(text, style)]
    plain = "".join(segment for segment, _ in segments)
    validate_text(plain)
    planned: list[tuple[str, EngineConditioning]] = []
    for segment, segment_style in segments:
        try:
            chunks = split_for_synthesis(segment, max_chars)
        except TextError:
            continue
        conditioning = engine_conditioning(segment_style, labels, native_rate)
        planned.extend((chunk, conditioning) for chunk in chunks)
    if not planned:
        split_for_synthesis(plain, max_chars)  # the whole text's own error
        raise TextError("Nothing speakable between the style tags: put the words inside them.")
    return planned


MIN_SPLIT_CHARS = 16
"""`fit_chunks` does not split a chunk below this many characters: a chunk that still does not fit is refused."""


def fit_chunks(plan: list[tuple[str, EngineConditioning]], max_units: int) -> list[tuple[str, EngineConditioning]]:
    """`plan` with every chunk whose text units exceed `max_units` split into shorter ones (at sentence, clause,
    then word boundaries: `tts.text.split_for_synthesis`), each keeping its chunk's conditioning.

    Raises:
        TextError: a chunk that does not fit even at `MIN_SPLIT_CHARS` characters (a model holding very few units).
    """
    def units(text: str) -> int:
        return len(text_units(list(prepare_text(text).words)))

    fitted = []
    for text, conditioning in plan:
        pieces, limit = [text], len(text)
        while any(units(piece) > max_units for piece in pieces):
            limit = limit * 3 // 4
            if limit < MIN_SPLIT_CHARS:
                raise TextError(f"the model holds at most {max_units} text units after this voice's prompt, too few "
                                f"for {text[:40]!r}: use a shorter reference clip")
            pieces = split_for_synthesis(text, max_chars=limit)
        fitted.extend((piece, conditioning) for piece in pieces)
    return fitted


def head_first(plan: list[tuple[str, EngineConditioning]],
               max_chars: int = STREAM_FIRST_CHARS) -> list[tuple[str, EngineConditioning]]:
    """`plan` with its first chunk cut into a head of about `max_chars` characters and the rest
    (`tts.text.chunking.split_head`; both keep the chunk's conditioning); unchanged where it does not cut."""
    from tts.text.chunking import split_head

    head, rest = split_head(plan[0][0], max_chars)
    if not rest:
        return plan
    return [(head, plan[0][1]), (rest, plan[0][1])] + plan[1:]


def _chunk_options(options: SynthesisOptions, conditioning: EngineConditioning) -> SynthesisOptions:
    return replace(options, style=conditioning.emotion, intensity=conditioning.intensity, speed=conditioning.speed)


def synthesize(
    text: str,
    voice: Voice | str | Audio | tuple,
    *,
    engine: str | None = None,
    base: str | None = None,
    tau: float = 0.3,
    emotion: EmotionSpec | Style | None = None,
    intensity: float | None = None,
    speed: float | None = None,
    pitch: float | None = None,
    pitch_range: float | None = None,
    energy: float | None = None,
    style: EmotionSpec | Style | None = None,
    style_ref: "Audio | str | os.PathLike | tuple | None" = None,
    tags: bool = True,
    seed: int | None = None,
    stream: bool = False,
    sampling: SamplingOptions | None = None,
    verify: bool = False,
    max_tries: int = 3,
    progress: Callable[[int, int], None] | None = None,
    models: "ArEngine | ToneColorEngine | None" = None,
    watermark: bool = True,
) -> Audio | Iterator[Audio]:
    """Say `text` in `voice`.

    Args:
        text: what to say (any length up to `tts.text.MAX_TEXT_CHARS`; split into chunks internally). With
            `tags`, inline style tags switch the style mid-passage: ``"[whisper] keep it down [/whisper]"``
            (syntax: `tts.style.parse_style_tags`; ``\\[`` is a literal bracket).
        voice: a `Voice`, or anything `clone_voice` takes (a path, an `Audio`, ``(samples, rate)``).
        engine: ``"dit"`` (the DiT infills the words after the reference, starting from a base speaker saying
            them moved to the voice; total duration from the reference's speaking rate / `speed`; emotions are
            rendered on its audio, its own style being the reference's; `tts.dit.engine`), ``"ar"`` (token LM ->
            flow refiner -> vocoder; streams within a sentence) or ``"base+convert"`` (a base speaker says it,
            the tone-color converter gives it `voice`'s timbre; `tts.tone_color`). Default: the engine `models`
            belongs to, else `DEFAULT_ENGINE`.
        base: with ``"base+convert"``, the base speaker: a `tts.data.voicebank` voice id (``"piper:joe"``,
            ``"kokoro:jf_alpha"``, a pseudo-speaker) or ``"ar"`` (default `tts.tone_color.DEFAULT_BASE`).
        tau: with ``"base+convert"``, the converter's posterior temperature (0: deterministic).
        emotion: a label of `tts.data.styles.STYLES` (default neutral), a mixture (``"happy:0.7+sad:0.3"`` or
            ``{"happy": 0.7, "sad": 0.3}``), or a whole `tts.style.Style` (the controls below, when given,
            replace its values).
        intensity: the emotion's strength, 0 to 2 (default 1; above 1 exaggerates).
        speed: speaking-rate factor, 0.5 to 2 (default 1).
        pitch: F0 shift in semitones, -12 to 12. pitch_range: factor on F0 excursions, 0.25 to 3.
        energy: level change in dB, -12 to 12. (What each engine does with these: `tts.style`, docs/styles.md.)
        style: the older name of `emotion` (kept for existing callers).
        style_ref: a separate style clip (an `Audio`, a path, or ``(samples, rate)``): timbre from `voice`, style
            from the clip: the emotion and intensity the style classifier hears in it (`tts.style_reference`;
            its prosody relative to the voice is available there with ``prosody=True``); `intensity`, `speed`,
            `pitch`, `pitch_range` and `energy`, when given, act on top. Not with `emotion`/`style`.
        tags: read inline style tags in `text` (False: brackets are ordinary text).
        seed: makes the result reproducible (None: a fresh random seed).
        stream: return a generator of `Audio` chunks, each yielded as soon as it exists (``dit`` and
            ``base+convert`` say a short first piece on its own first: `STREAM_FIRST_CHARS`).
        sampling: the LM's sampling settings (`tts.lm.generate.SamplingOptions`).
        verify: transcribe each chunk with the offline ASR and regenerate it (up to `max_tries`) when its word
            error rate is above `DEFAULT_VERIFY_WER`; with `stream`, chunks are then yielded whole.
        progress: called as ``progress(done, total)`` after each text chunk.
        models: an `ArEngine` (for ``"dit"`` a `tts.dit.engine.DitEngine`, for ``"base+convert"`` a
            `tts.tone_color.ToneColorEngine`) to use instead of the shipped checkpoints.
        watermark: mark the output as synthetic (`tts.watermark`, fixed-depth variant, detectable with
            `timbre detect`); on by default. Streams come out `tts.watermark.StreamingEmbedder`'s 64 ms later.

    Returns:
        `Audio` (24 kHz mono float32), or an iterator of `Audio` chunks when `stream`. Chunks (and tagged
        segments) are joined with `SENTENCE_PAUSE_SECONDS` of silence.

    Raises:
        TextError: empty, over-long or unspeakable text, or a bad style tag (`tts.style.StyleTagError`).
        AudioError: an unusable style clip (missing, unreadable, shorter than 1 s, silent).
        VoiceError: an unusable reference. ValueError: bad settings (unknown emotion, a control out of its
        range). CheckpointError: the engine's checkpoints are missing or refused.
    """
    engine = _engine_of(models) if engine is None else engine
    if engine not in SYNTHESIS_ENGINES:
        raise ValueError(f"unknown engine {engine!r} for synthesize(); available: {', '.join(SYNTHESIS_ENGINES)}")
    request = style_from_options(emotion, style=style, intensity=intensity, speed=speed, pitch=pitch,
                                 pitch_range=pitch_range, energy=energy)
    options = SynthesisOptions(seed=seed, sampling=sampling or SamplingOptions(), verify=verify, max_tries=max_tries)
    if style_ref is not None:
        if emotion is not None or style is not None:
            raise TimbreError("give either an emotion (emotion=/style=) or a style reference clip (style_ref=), not both")
        from tts.style_reference import read_style_reference

        plan_chunks(text, request, tags=tags, max_chars=options.max_chunk_chars)  # text errors before any work
        # A bad clip is refused here, before the voice is cloned or a model loaded.
        request = read_style_reference(style_ref, intensity=intensity, speed=speed, pitch=pitch,
                                       pitch_range=pitch_range, energy=energy).style
    plan = plan_chunks(text, request, tags=tags, max_chars=options.max_chunk_chars, labels=() if engine == "dit" else STYLES)
    if stream and engine in ("base+convert", "dit"):  # a chunk at a time: a short first one is heard sooner
        plan = head_first(plan)
    if engine == "base+convert":
        return _synthesize_base_convert(plan, voice, base, tau, options, stream, progress, models, watermark)
    if engine == "dit":
        return _synthesize_dit(plan, voice, options, stream, progress, models, watermark)
    for chunk, _ in plan:
        prepare_text(chunk)  # unspeakable text is refused before the voice is cloned or a model loaded
    voice = voice if isinstance(voice, Voice) else clone_voice(voice)
    parts = models if models is not None else load_engine()
    # What this engine renders itself: the labels its refiner was trained with (the rest of a style is rendered on
    # its audio), never a label's rate (the token LM does not realise it: that goes to the speed, `MelStretcher`).
    plan = plan_chunks(text, request, tags=tags, max_chars=options.max_chunk_chars, labels=parts.refiner.config.styles,
                       native_rate=False)
    for label in {conditioning.emotion for _, conditioning in plan}:
        parts.lm.config.style_id(label)  # refuse a style the model was not trained with before any work
    prompt = prepare_prompt(parts, voice)
    # Chunks the LM cannot hold after this prompt are split further (a long prompt leaves less room).
    plan = fit_chunks(plan, max_target_units(parts.lm.config, prompt.utterance))
    prepared = [prepare_text(chunk) for chunk, _ in plan]
    run_seed = options.seed if options.seed is not None else secrets.randbelow(2**63)
    rate = parts.vocoder.sample_rate

    def chunk_units(chunk) -> list[int]:
        return text_units(list(chunk.words))

    def whole_chunk(index: int) -> Audio:
        chunk, conditioning = prepared[index], plan[index][1]
        chunk_options = _chunk_options(options, conditioning)
        audio = _verified(lambda attempt: _chunk_audio(parts, prompt, chunk_units(chunk), chunk_options,
                                                       _chunk_seed(run_seed, index, attempt)),
                          chunk.normalized, options, index)
        return apply_conditioning(audio, conditioning, _chunk_seed(run_seed, index, 0))

    if not stream:
        pieces: list[Audio] = []
        for index in range(len(prepared)):
            pieces.append(whole_chunk(index))
            if progress is not None:
                progress(index + 1, len(prepared))
        audio = join_chunks(pieces)
        return _mark(audio) if watermark else audio

    def generate_chunks() -> Iterator[Audio]:
        for index, chunk in enumerate(prepared):
            if index:
                yield _pause(rate)
            conditioning = plan[index][1]
            if options.verify or conditioning.has_residual:  # post-processing needs the whole chunk
                yield whole_chunk(index)
            else:
                for samples in _chunk_stream(parts, prompt, chunk_units(chunk), _chunk_options(options, conditioning),
                                             _chunk_seed(run_seed, index, 0)):
                    yield Audio(samples, rate)
            if progress is not None:
                progress(index + 1, len(prepared))

    return _marked_stream(generate_chunks(), watermark)


def _pause(rate: int, seconds: float = SENTENCE_PAUSE_SECONDS) -> Audio:
    """The silence put between two chunks."""
    return Audio(np.zeros(int(round(seconds * rate)), dtype=np.float32), rate)


def join_chunks(pieces: Sequence[Audio], pause_seconds: float = SENTENCE_PAUSE_SECONDS) -> Audio:
    """Chunks (at one rate) joined with `pause_seconds` of silence between them."""
    rate = pieces[0].sample_rate
    samples: list[np.ndarray] = []
    for index, piece in enumerate(pieces):
        samples.extend(([_pause(rate, pause_seconds).samples] if index else []) + [piece.samples])
    return Audio(np.concatenate(samples), rate)


def _marked_stream(chunks: Iterator[Audio], watermark: bool) -> Iterator[Audio]:
    """`chunks`, watermarked as a stream (`tts.watermark.embed_stream`) unless `watermark` is False."""
    if not watermark:
        return chunks
    from tts.watermark import embed_stream

    return embed_stream(chunks)


def _synthesize_base_convert(plan: list[tuple[str, EngineConditioning]], voice, base: str | None, tau: float,
                             options: SynthesisOptions, stream: bool, progress, models,
                             watermark: bool) -> Audio | Iterator[Audio]:
    """`synthesize` through a base speaker and the tone-color converter (`tts.tone_color`)."""
    from tts.tone_color import base_convert_renderer

    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if base not in (None, "ar"):
        from tts.data.voicebank import resolve_voice

        resolve_voice(base)  # an unknown base speaker is refused before any work
    voice = voice if isinstance(voice, Voice) else clone_voice(voice)
    run_seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    render = base_convert_renderer(voice, base=base, tau=tau, engine=models)
    return _deliver(_verified_pieces(plan, render, run_seed, options), plan, run_seed, stream, progress, watermark)


def _synthesize_dit(plan: list[tuple[str, EngineConditioning]], voice, options: SynthesisOptions, stream: bool,
                    progress, models, watermark: bool) -> Audio | Iterator[Audio]:
    """`synthesize` through the DiT (`tts.dit.engine`): each chunk infilled after the voice's reference."""
    from tts.dit.engine import load_dit_engine

    parts = models if models is not None else load_dit_engine()
    voice = voice if isinstance(voice, Voice) else clone_voice(voice)
    run_seed = options.seed if options.seed is not None else secrets.randbelow(2**31)

    def render(text: str, conditioning: EngineConditioning, seed: int) -> Audio:
        return parts.speak(prepare_text(text).words, voice, speed=conditioning.speed, seed=seed)

    return _deliver(_verified_pieces(plan, render, run_seed, options), plan, run_seed, stream, progress, watermark)


def _deliver(pieces: Iterator[Audio], plan: list[tuple[str, EngineConditioning]], run_seed: int, stream: bool,
             progress, watermark: bool) -> Audio | Iterator[Audio]:
    """An engine's chunks (one per planned chunk) with their residual style rendered, joined (or streamed)
    and watermarked."""

    def with_progress() -> Iterator[Audio]:
        for index, ((_, conditioning), piece) in enumerate(zip(plan, pieces)):
            # The residual acts on the engine's audio: what is measured is what the user hears.
            yield apply_conditioning(piece, conditioning, run_seed + index)
            if progress is not None:
                progress(index + 1, len(plan))

    if not stream:
        audio = join_chunks(list(with_progress()))
        return _mark(audio) if watermark else audio

    def generate_chunks() -> Iterator[Audio]:
        for index, piece in enumerate(with_progress()):
            if index:
                yield _pause(piece.sample_rate)
            yield piece

    return _marked_stream(generate_chunks(), watermark)


def _mark(audio: Audio) -> Audio:
    """The studio's watermark on a whole output (the same samples a marked stream would give)."""
    from tts.watermark import embed_fixed

    return embed_fixed(audio)


def convert(
    source: Audio | str | tuple,
    target: Voice | str | Audio | tuple,
    *,
    engine: str | None = None,
    source_text: str | None = None,
    tau: float = 0.3,
    seed: int = 0,
    refiner_steps: int = 4,
    cfg_strength: float = 2.0,
    models: "ArEngine | ToneColorEngine | DitEngine | None" = None,
    watermark: bool = True,
) -> Audio:
    """`source` speech said again in `target`'s voice: same words, timing and intonation.

    Engines: ``"dit"`` (a base speaker says the source's words to the source's melody in the target's pitch, at
    the source's timing, and the DiT prompted with the target's reference says that again in the target's voice,
    `tts.dit.engine.DitEngine.convert`; it needs what the source says: `source_text`, or transcribed offline when
    None), ``"tone-color"`` (OpenVoice: only the timbre changes; `tts.tone_color`,
    `tau` its posterior temperature), ``"distilled"`` (Seed-TTS timbre swap: the source's speech tokens rendered in
    the target's timbre by the self-distilled flow refiner, which learned to take the timbre from the prompt and
    not from the tokens; `refiner_steps` and `cfg_strength` its sampling; also `swap_timbre`) or ``"ar"`` (the same
    with the `ar` engine's refiner, before self-distillation); None: the engine whose loaded parts `models` are,
    else `DEFAULT_CONVERSION_ENGINE`. `source` is an `Audio`, a path, or ``(samples, rate)``; `target` and
    `watermark` as `voice` and `watermark` in `synthesize`; `models` an engine's loaded parts.
    """
    if engine is None:
        engine = _conversion_engine_of(models)
    if engine not in CONVERSION_ENGINES:
        raise ValueError(f"unknown conversion engine {engine!r}; available: {', '.join(CONVERSION_ENGINES)}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    from tts.audio import load_audio
    from tts.refiner.sampling import generate

    if isinstance(source, tuple):
        source = Audio(np.asarray(source[0], dtype=np.float32), int(source[1]))
    elif not isinstance(source, Audio):
        source = load_audio(source)
    voice = target if isinstance(target, Voice) else clone_voice(target)
    if engine == "dit":
        from tts.dit.engine import load_dit_engine

        dit_parts = models if models is not None else load_dit_engine()
        audio = dit_parts.convert(source, voice, source_text, seed=seed)
        return _mark(audio) if watermark else audio
    if engine == "tone-color":
        from tts.tone_color import load_tone_color_engine

        tone_parts = models if models is not None else load_tone_color_engine()
        audio = tone_parts.convert(source.resample(SAMPLE_RATE), voice, tau=tau, seed=seed)
        return _mark(audio) if watermark else audio
    if models is not None:
        parts = models
    else:
        from tts.engines import DISTILLED_REFINER

        parts = load_engine(refiner=DISTILLED_REFINER) if engine == "distilled" else load_engine()
    if source.duration < 0.1:
        raise VoiceError("the source recording is shorter than 0.1 s: give the speech to convert")
    with torch.inference_mode():
        prompt_mel, prompt_tokens = parts.tokenizer.mel_and_tokens(voice.audio)
        mel = generate(parts.refiner, parts.tokenizer.tokenize(source), prompt_mel, prompt_tokens,
                       steps=refiner_steps, cfg_strength=cfg_strength, seed=seed % 2**31)
        audio = parts.vocoder.decode(mel[0])
    return _mark(audio) if watermark else audio



def swap_timbre(source: Audio | str | tuple, target: Voice | str | Audio | tuple, **options) -> Audio:
    """`source` speech in `target`'s timbre through the self-distilled refiner: ``convert(..., engine="distilled")``
    (Seed-TTS timbre swapping; `options` as `convert`'s: seed, refiner_steps, cfg_strength, models, watermark)."""
    return convert(source, target, engine="distilled", **options)