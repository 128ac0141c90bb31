"""The token LM: stream layout, unit token counts, the model (tiny config), forced decoding and KV caching."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch

from tts.lm.generate import SamplingOptions, generate_speech_tokens, iter_speech_tokens
from tts.checkpoints import list_shipped
from tts.lm.model import CachedForwardDecoder, SpeechTokenDecoder, SpeechTokenLM, SpeechTokenLMConfig
from tts.lm.stream import (
    Utterance,
    build_stream,
    interleave,
    text_units,
    unit_start_times,
    unit_token_counts,
    zero_length_units,
)
from tts.text import PHONEME_TABLE, Word, prepare_text

TINY = SpeechTokenLMConfig(codebook_size=16, dim=32, layers=2, heads=2, kv_heads=1, ff_dim=64, max_positions=1024,
                           max_tokens_per_unit=4, max_tokens_per_pause=6)
WORDS = [Word("hi", ("h", "ˈ", "aɪ")), Word(",", ()), Word("you", ("j", "uː"))]


def tiny_model(seed: int = 0) -> SpeechTokenLM:
    torch.manual_seed(seed)
    return SpeechTokenLM(TINY).eval()


def test_vocabulary_layout_has_no_overlaps():
    ids = [TINY.style_id(s) for s in TINY.styles] + [TINY.level_id("happy", i / 4) for i in range(5)]
    ids += [TINY.speech_start_id, TINY.speech_offset, TINY.speech_offset + TINY.codebook_size - 1]
    assert min(ids) >= len(PHONEME_TABLE)
    assert len(set(ids)) == len(ids)
    assert TINY.vocab_size == TINY.speech_offset + TINY.codebook_size
    assert TINY.level_id("neutral", 1.0) == TINY.level_id("sad", 0.0)
    with pytest.raises(ValueError, match="unknown style"):
        TINY.style_id("bored")


def test_text_units_and_counts_from_timings():
    units = text_units(WORDS)
    assert units[0] == PHONEME_TABLE.bos_id
    assert units[1:] == PHONEME_TABLE.encode(WORDS)
    phone = lambda p, s, e: SimpleNamespace(phoneme=p, start=s, end=e)  # noqa: E731
    timings = [
        SimpleNamespace(start=0.2, end=0.5, phonemes=[phone("h", 0.2, 0.3), phone("ˈ", 0.3, 0.3), phone("aɪ", 0.3, 0.5)]),
        SimpleNamespace(start=0.5, end=0.8, phonemes=[]),
        SimpleNamespace(start=0.8, end=1.1, phonemes=[phone("j", 0.8, 0.9), phone("uː", 0.9, 1.1)]),
    ]
    times = unit_start_times(WORDS, timings)
    # <bos> h ˈ aɪ <wb> , <wb> j uː
    assert times == [0.0, 0.2, 0.3, 0.3, 0.5, 0.5, 0.8, 0.8, 0.9]
    counts = unit_token_counts(times, num_tokens=40, token_rate=31.25)
    assert sum(counts) == 40 and min(counts) >= 0
    assert counts[2] == 0  # the stress mark owns nothing
    assert counts[4] == 0 and counts[5] == 9  # the comma owns the pause, not the boundary before it
    assert counts[0] == 6  # leading silence: round(0.2 * 31.25)
    with pytest.raises(ValueError):
        unit_start_times(WORDS, timings[:2])


def test_counts_are_monotone_even_when_times_are_not():
    counts = unit_token_counts([0.0, 0.5, 0.3, 0.9], num_tokens=20, token_rate=31.25)
    assert sum(counts) == 20 and min(counts) >= 0


def test_stream_layout_and_first_predicted_position():
    prompt = Utterance((2, 30, 31), (1, 1, 1), (5, 6, 7))
    target = Utterance((2, 40), (0, 2), (8, 9))
    ids, first = build_stream(TINY, "happy", 0.5, target, prompt)
    prefix = [TINY.style_id("happy"), TINY.level_id("happy", 0.5), 2, 30, 31, 2, 40, TINY.speech_start_id]
    assert ids[: len(prefix)] == prefix
    assert ids[len(prefix):] == interleave(prompt, TINY.speech_offset) + interleave(target, TINY.speech_offset) + [TINY.eos_id]
    assert first == len(prefix) + 1  # the prompt's first unit is given
    generation_prefix, _ = build_stream(TINY, "neutral", 0.0, Utterance((2, 40)), prompt, end=False)
    assert generation_prefix[-1] == 2 and generation_prefix[-2] == TINY.speech_offset + 7
    with pytest.raises(ValueError, match="tokens"):
        Utterance((2, 40), (1, 1), (3,))


def test_tiny_model_shapes_and_round_trip(tmp_path):
    model = tiny_model()
    ids = torch.randint(0, TINY.vocab_size, (2, 12))
    logits = model(ids).logits
    assert logits.shape == (2, 12, TINY.vocab_size)
    model.save_pretrained(tmp_path / "lm")
    again = SpeechTokenLM.from_pretrained(tmp_path / "lm")
    assert torch.equal(again(ids).logits, logits)
    assert again.config == TINY


def test_kv_cache_decoding_equals_uncached_decoding():
    model = tiny_model(1)
    ids = torch.randint(0, TINY.vocab_size, (1, 20))
    full = model(ids).logits[0]
    output = model(ids[:, :8], use_cache=True)
    cache, steps = output.past_key_values, [output.logits[0, -1]]
    for position in range(8, 20):
        output = model(ids[:, position : position + 1], past_key_values=cache, use_cache=True)
        cache = output.past_key_values
        steps.append(output.logits[0, -1])
    torch.testing.assert_close(torch.stack(steps), full[7:], atol=1e-4, rtol=1e-4)


def speaking_model(seed: int) -> SpeechTokenLM:
    """A tiny random LM that says a few tokens per unit: its output rows for text ids are zero and its speech rows
    large, so moving on competes with speaking (a fresh model would move on at once and say nothing)."""
    model = tiny_model(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
        head = model.transformer.lm_head.weight
        head[: TINY.phoneme_table_size] = 0.0
        head[TINY.speech_offset :].normal_(0.0, 2.0)
    return model


def test_fast_decoder_equals_the_transformers_forward():
    model = speaking_model(4)
    ids = torch.randint(0, TINY.vocab_size, (1, 30))
    full = model(ids).logits[0]
    # The fast one outgrows its buffers; reading float16 copies of the weights costs their rounding only.
    for decoder, tolerance in ((model.decoder(capacity=8, half=False), 1e-5), (model.decoder(reference=True), 1e-5),
                               (model.decoder(capacity=8, half=True), 2e-2)):
        steps = [decoder(ids[0, :10])]
        steps += [decoder(ids[0, position : position + 1]) for position in range(10, 24)]
        steps.append(decoder(ids[0, 24:30]))  # several ids at once after the cache (forced units)
        torch.testing.assert_close(torch.stack(steps), full[[*range(9, 24), 29]], atol=tolerance, rtol=tolerance)
    assert isinstance(model.decoder(), SpeechTokenDecoder)


def test_half_weights_are_copied_once_and_again_after_a_training_step(monkeypatch):
    from tts.lm.model import HALF_WEIGHTS_ENV, half_weights

    model = speaking_model(4)
    first, second = model.decoder(half=True), model.decoder(half=True)
    assert first.half and first.half_lm_head.dtype == torch.float16 and first.half_lm_head is second.half_lm_head
    with torch.no_grad():
        model.transformer.lm_head.weight.add_(1.0)  # what an optimizer step does
    third = model.decoder(half=True)
    assert third.half_lm_head is not first.half_lm_head
    torch.testing.assert_close(third.half_lm_head.float(), model.transformer.lm_head.weight, atol=1e-2, rtol=1e-3)
    assert model.decoder(half=False).half_layers is None
    for forced, expected in (("1", True), ("0", False)):
        monkeypatch.setenv(HALF_WEIGHTS_ENV, forced)
        assert half_weights(torch.device("cpu")) is expected and model.decoder().half is expected


def test_a_subclass_that_changes_forward_is_decoded_through_it():
    class Biased(SpeechTokenLM):
        def forward(self, *args, **kwargs):
            output = super().forward(*args, **kwargs)
            output.logits[..., 0] += 100.0
            return output

    torch.manual_seed(0)
    model = Biased(TINY).eval()
    assert isinstance(model.decoder(), CachedForwardDecoder)
    assert int(model.decoder()([1, 2, 3]).argmax()) == 0


def reference_and_fast_tokens(model: SpeechTokenLM, units, prompt, options: SamplingOptions, seed: int):
    """`generate_speech_tokens` through `SpeechTokenDecoder` and through `forward` with the transformers cache."""
    fast = generate_speech_tokens(model, units, prompt, options=options, generator=torch.Generator().manual_seed(seed))
    model.decoder = partial(SpeechTokenLM.decoder, model, reference=True)
    try:
        reference = generate_speech_tokens(model, units, prompt, options=options,
                                           generator=torch.Generator().manual_seed(seed))
    finally:
        del model.decoder
    return fast, reference


@pytest.mark.parametrize("options", [SamplingOptions(temperature=0), SamplingOptions()], ids=["greedy", "sampled"])
def test_fast_decoding_gives_the_reference_tokens(options):
    model = speaking_model(5)
    units = text_units(WORDS) * 3
    prompt = Utterance(tuple(units[:5]), (1, 2, 0, 3, 1), (3, 1, 4, 1, 5, 9, 2))
    for seed in (0, 1):
        fast, reference = reference_and_fast_tokens(model, units, prompt, options, seed)
        assert fast == reference
        assert len(fast.tokens) > len(units)  # it spoke, and moved on by itself (not only at the caps)
        assert any(0 < count < TINY.max_tokens_per_unit for count in fast.counts)


def test_generation_feeds_the_decoder_the_whole_stream_in_order():
    """Forced units wait for the next id that needs logits and are fed with it: nothing is dropped or reordered."""
    model = speaking_model(6)
    units = text_units(WORDS) * 2
    fed: list[int] = []

    def recording_decoder(capacity: int = 0):
        decoder = SpeechTokenLM.decoder(model, capacity)

        def decode(ids):
            fed.extend(int(i) for i in ids)
            return decoder(ids)

        return decode

    model.decoder = recording_decoder
    steps = list(iter_speech_tokens(model, units, generator=torch.Generator().manual_seed(0)))
    prefix, _ = build_stream(TINY, "neutral", 0.0, Utterance(tuple(units)), None, end=False)
    stream = prefix + [units[s.unit] if s.code is None else TINY.speech_offset + s.code for s in steps]
    assert fed == stream[: len(fed)] and len(fed) >= len(stream) - 3
    assert sum(s.code is not None for s in steps) >= len(units) // 2  # it spoke; WORDS has a stress mark to force


@pytest.mark.skipif("token_lm" not in list_shipped(), reason="the shipped token LM is not in checkpoints/")
@pytest.mark.parametrize("options", [SamplingOptions(temperature=0), SamplingOptions()], ids=["greedy", "sampled"])
def test_fast_decoding_gives_the_reference_tokens_with_the_shipped_lm(options):
    model = SpeechTokenLM.from_pretrained("token_lm").float().eval()
    units = text_units(list(prepare_text("The kettle clicked off.").words))
    prompt_units = text_units(list(prepare_text("Call Stella.").words))
    counts = tuple(index % 3 for index in range(len(prompt_units)))
    prompt = Utterance(tuple(prompt_units), counts, tuple((7 * index) % model.config.codebook_size for index in range(sum(counts))))
    fast, reference = reference_and_fast_tokens(model, units, prompt, options, seed=3)
    assert fast == reference and len(fast.tokens) > len(units)


def test_forced_decoding_places_every_unit_once_and_respects_caps():
    model = tiny_model(2)
    units = text_units(WORDS)
    prompt = Utterance(tuple(units), tuple([1] * len(units)), tuple(range(len(units))))
    steps = list(iter_speech_tokens(model, units, prompt, generator=torch.Generator().manual_seed(0)))
    advances = [step.unit for step in steps if step.code is None]
    assert advances == list(range(1, len(units)))  # every unit, in order, once
    result = generate_speech_tokens(model, units, prompt, generator=torch.Generator().manual_seed(0))
    assert sum(result.counts) == len(result.tokens)
    zero = zero_length_units()
    for unit, count in zip(units, result.counts):
        assert count == 0 if unit in zero else count <= TINY.max_tokens_per_pause
    assert all(0 <= code < TINY.codebook_size for code in result.tokens)


def test_generation_is_deterministic_with_a_seed_and_greedy_is_seed_free():
    model = tiny_model(3)
    units = text_units(WORDS)

    def run(seed, **options):
        return generate_speech_tokens(model, units, options=SamplingOptions(**options),
                                      generator=torch.Generator().manual_seed(seed))

    assert run(5) == run(5)
    assert run(1, temperature=0) == run(2, temperature=0)


def test_sampling_options_are_checked():
    with pytest.raises(ValueError):
        SamplingOptions(top_p=0)
    with pytest.raises(ValueError):
        SamplingOptions(temperature=-1)


def test_too_long_text_is_refused_with_advice():
    model = tiny_model()
    units = text_units([Word("a", ("ə",))] * 400)
    with pytest.raises(ValueError, match="shorter chunks"):
        next(iter_speech_tokens(model, units))


def test_the_most_units_one_generation_holds_is_the_refusal_boundary_even_at_every_units_cap():
    from tts.lm.generate import max_target_units

    model = tiny_model(4)
    units = text_units([Word("a", ("ə",))] * 400)
    for prompt in (None, Utterance(tuple(units[:30]), tuple([2] * 30), tuple(i % TINY.codebook_size for i in range(60)))):
        most = max_target_units(TINY, prompt)
        assert 0 < most < len(units)
        next(iter_speech_tokens(model, units[:most], prompt))  # accepted
        with pytest.raises(ValueError, match="shorter chunks"):
            next(iter_speech_tokens(model, units[:most + 1], prompt))
        # The worst case still fits: the prefix, then every unit running to the cap (plus its own id).
        prefix, _ = build_stream(TINY, "neutral", 0.0, Utterance(tuple(units[:most])), prompt, end=False)
        assert len(prefix) - 1 + most * (TINY.max_tokens_per_unit + 1) <= TINY.max_positions
    assert max_target_units(TINY, Utterance(tuple(units[:30]), tuple([2] * 30), tuple(i % TINY.codebook_size for i in range(60)))) < \
        max_target_units(TINY)  # a prompt leaves less room


def test_only_a_better_validation_loss_replaces_the_best_export(tmp_path):
    from tts.lm.train import is_best

    path = tmp_path / "best.json"
    assert is_best(path, {"step": 1, "loss": 3.0})
    assert not is_best(path, {"step": 2, "loss": 3.5})
    assert is_best(path, {"step": 3, "loss": 2.5})
    assert not is_best(path, {"step": 4, "loss": float("nan")})
    assert not is_best(path, {"step": 5})
