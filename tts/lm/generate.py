"""Speech-token generation with the text forced: the LM only decides the speech tokens and when to move on.

After the prefix (style, the prompt's and target's text, the prompt's interleaved speech, the target's first
unit), every step chooses between a speech token and the NEXT unit of the target text (``<eos>`` once every
unit is placed). The probability of moving on is the model's whole mass on text ids, not only on the right
one: a small model knows *that* a unit is due well before it reliably names *which* (the next unit is forced
anyway), and scoring only the named unit made it hold every unit to its cap. Stress marks are followed by their phoneme at once; a unit that reached its cap
(`SpeechTokenLMConfig.max_tokens_per_unit`, longer for pauses) moves on by force. So the output says every unit
of the text, in order, once, and its length is bounded by the text.

Sampling: temperature, top-k and top-p over the allowed ids, and repetition-aware sampling (VALL-E 2): when
the drawn speech token already fills ``repetition_ratio`` of the last ``repetition_window`` tokens, it is
drawn again from the untruncated distribution, which breaks the loops small models fall into.

Decoding: one `SpeechTokenLM.decoder` per generation (the lean `tts.lm.model.SpeechTokenDecoder`, which gives the
`transformers` forward's logits up to float rounding, hence the same tokens for the same seed). A forced id (the unit
after a stress mark, or after a unit at its cap) needs no logits of its own, so it is fed together with the next id,
in one pass over the weights.

Shapes: ``L`` prefix length, ``K`` codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from tts.lm.model import SpeechTokenLM
from tts.lm.stream import Utterance, build_stream, pause_units, zero_length_units


@dataclass(frozen=True)
class SamplingOptions:
    """How speech tokens are drawn (see the module docstring). ``temperature=0`` takes the most likely id."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.9
    repetition_window: int = 10
    repetition_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("temperature must be >= 0, top_p in (0, 1] and top_k >= 0")


@dataclass(frozen=True)
class Step:
    """One decision of the generator: a speech code, or ``code is None`` when the target moved to unit ``unit``."""

    code: int | None
    unit: int


def _truncate(logits: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
    """Top-k then top-p over a 1-D logit vector (removed entries at -inf)."""
    if options.top_k and options.top_k < logits.numel():
        kth = torch.topk(logits, options.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(-1)
        remove = cumulative - torch.softmax(ordered, dim=-1) >= options.top_p  # keep the id that crosses top_p
        logits = logits.clone()
        logits[order[remove]] = float("-inf")
    return logits


def _draw(logits: torch.Tensor, options: SamplingOptions, generator: torch.Generator | None) -> int:
    if options.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(_truncate(logits / options.temperature, options), dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def max_target_units(config, prompt: Utterance | None = None, style: str = "neutral", intensity: float = 0.0) -> int:
    """The most text units one generation can say after `prompt` within the model's positions, even if every
    unit ran to its token cap (`SpeechTokenLMConfig.max_tokens_per_unit`): longer texts must be split first."""
    one, _ = build_stream(config, style, intensity, Utterance((min(pause_units()),)), prompt, end=False)
    fixed = len(one) - 1  # the prefix holds the target's units once, then its speech follows unit by unit
    return max(0, (config.max_positions - fixed) // (config.max_tokens_per_unit + 2))


def iter_speech_tokens(
    model: SpeechTokenLM,
    target_units: Sequence[int],
    prompt: Utterance | None = None,
    style: str = "neutral",
    intensity: float = 0.0,
    options: SamplingOptions = SamplingOptions(),
    generator: torch.Generator | None = None,
) -> Iterator[Step]:
    """Generate the target's speech tokens one `Step` at a time (a generator: streaming reads it as it goes).

    Args:
        model: the LM (eval mode; any device).
        target_units: `tts.lm.stream.text_units` of the text to say.
        prompt: the voice prompt's units, counts and tokens, or None.
        style, intensity: the style tokens.
        options: sampling settings; generator: the random source (seeded by the caller).
    """
    config = model.config
    if not target_units:
        raise ValueError("nothing to say: no text units")
    zero, pauses = zero_length_units(), pause_units()
    prefix, _ = build_stream(config, style, intensity, Utterance(tuple(target_units)), prompt, end=False)
    if len(target_units) > max_target_units(config, prompt, style, intensity):
        raise ValueError(
            f"the text is too long for one generation ({len(target_units)} units with a {len(prefix)}-id prefix; "
            f"the model holds {config.max_positions} positions): split it into shorter chunks"
        )
    speech = slice(config.speech_offset, config.speech_offset + config.codebook_size)
    text = slice(0, config.phoneme_table_size)
    decoder = model.decoder(capacity=len(prefix) + 4 * len(target_units))  # ~3 ids per unit in speech; grows past it
    pending = prefix  # ids not yet fed to the decoder; a forced choice needs no logits, so it waits for the next
    recent: list[int] = []
    unit_index, in_unit = 0, 0
    while True:
        unit = target_units[unit_index]
        following = target_units[unit_index + 1] if unit_index + 1 < len(target_units) else config.eos_id
        cap = config.max_tokens_per_pause if unit in pauses or following == config.eos_id else config.max_tokens_per_unit
        if unit in zero or in_unit >= cap:
            choice = following
        else:
            # Not around the yields below: grad mode would leak into the caller between steps.
            with torch.inference_mode():
                logits = decoder(pending).float().cpu()
                pending = []
                allowed = torch.cat((logits[speech], torch.logsumexp(logits[text], dim=0, keepdim=True)))
                drawn = _draw(allowed, options, generator)
                if drawn < config.codebook_size and options.repetition_window and options.temperature > 0:
                    window = recent[-options.repetition_window :]
                    if window.count(drawn) >= options.repetition_ratio * options.repetition_window:
                        drawn = int(torch.multinomial(torch.softmax(allowed, dim=-1), 1, generator=generator))
            choice = config.speech_offset + drawn if drawn < config.codebook_size else following
        if choice == config.eos_id:
            return
        if choice == following:
            unit_index, in_unit = unit_index + 1, 0
            yield Step(None, unit_index)
        else:
            code = choice - config.speech_offset
            recent.append(code)
            in_unit += 1
            yield Step(code, unit_index)
        pending = [*pending, choice]


def generate_speech_tokens(
    model: SpeechTokenLM,
    target_units: Sequence[int],
    prompt: Utterance | None = None,
    style: str = "neutral",
    intensity: float = 0.0,
    options: SamplingOptions = SamplingOptions(),
    generator: torch.Generator | None = None,
) -> Utterance:
    """All of `iter_speech_tokens` at once: the target `Utterance` (units, per-unit counts, codes)."""
    counts = [0] * len(target_units)
    codes: list[int] = []
    for step in iter_speech_tokens(model, target_units, prompt, style, intensity, options, generator):
        if step.code is not None:
            codes.append(step.code)
            counts[step.unit] += 1
    return Utterance(tuple(target_units), tuple(counts), tuple(codes))
