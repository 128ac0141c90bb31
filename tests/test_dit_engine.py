"""The `dit` engine's mechanics with a tiny untrained DiT and the shipped aligner and vocoder: zero-shot speech
follows the layout, and edits regenerate only the changed words' spans, keeping every other sample exactly.

The recording is synthetic with known word timings: flite says each word alone and the words are joined with
known gaps, so the span an edit regenerates can be checked against where the word really is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tts.audio import SAMPLE_RATE, Audio, speech_band_means
from tts.checkpoints import checkpoints_dir, list_shipped
from tts.dit.model import DiT
from tts.dit.train import PRESETS
from tts.errors import AudioError, TextError

pytestmark = pytest.mark.usefixtures("single_thread")

WORDS = ["the", "cat", "sat", "on", "the", "mat"]
GAP = 0.18


def tiny_dit_engine():
    """A `DitEngine` on a tiny untrained DiT (its duration predictor set to about 6 frames a unit) with the shipped
    aligner and vocoder; skips the test where those are not shipped. Real parts throughout: only the DiT is
    untrained, so these tests check the mechanics, not what is said."""
    if not {"speech_tokenizer", "vocoder"} <= set(list_shipped()):
        pytest.skip("needs the shipped speech_tokenizer and vocoder")
    from tts.dit.engine import DitEngine
    from tts.tokenizer.model import SpeechTokenizer
    from vocoder.vocos import Vocos

    torch.manual_seed(0)
    dit = DiT(PRESETS["tiny"].model).eval()
    dit.duration_predictor.out.bias.data.fill_(float(np.log1p(6.0)))  # untrained: about 6 frames per unit
    return DitEngine(dit, SpeechTokenizer.from_pretrained(checkpoints_dir() / "speech_tokenizer").eval(),
                     Vocos.from_pretrained(checkpoints_dir() / "vocoder").eval())


@pytest.fixture(scope="module")
def engine():
    return tiny_dit_engine()


@pytest.fixture(scope="module")
def recording(flite):
    """flite saying WORDS one by one with GAP seconds between: the audio and each word's (start, end)."""
    pieces, spans, position = [np.zeros(int(0.2 * SAMPLE_RATE), np.float32)], [], 0.2
    for word in WORDS:
        samples = flite.synthesize(word, "slt").audio.resample(SAMPLE_RATE).samples
        voiced = np.flatnonzero(np.abs(samples) > 0.02)
        samples = samples[voiced[0] : voiced[-1] + 1]
        spans.append((position, position + len(samples) / SAMPLE_RATE))
        pieces += [samples, np.zeros(int(GAP * SAMPLE_RATE), np.float32)]
        position = spans[-1][1] + GAP
    return Audio(np.concatenate(pieces), SAMPLE_RATE), spans


def _assert_kept_outside(original: np.ndarray, edited: np.ndarray, span: tuple[float, float], shift: int) -> None:
    start, end = int(span[0] * SAMPLE_RATE), int(np.ceil(span[1] * SAMPLE_RATE))
    assert np.array_equal(edited[:start], original[:start])
    assert np.array_equal(edited[end:], original[end - shift :])


def test_replacing_one_word_regenerates_only_its_span(engine, recording):
    audio, spans = recording
    result = engine.edit(audio, " ".join(WORDS), "the dog sat on the mat", steps=2, seed=0, context=0)
    assert len(result.spans) == 1 and result.changes == [("cat", "dog")]
    (start, end), = result.spans
    shift = len(result.audio) - len(audio)
    assert shift % 256 == 0  # spans change length by whole frames
    _assert_kept_outside(audio.samples, result.audio.samples, (start, end), shift)
    # The regenerated span covers the word "cat" (aligner error allowed) and little else.
    cat_start, cat_end = spans[1]
    assert start <= cat_start + 0.06 and end >= cat_start + 0.05
    assert start >= spans[0][1] - 0.1  # not back into "the"
    assert end - shift / SAMPLE_RATE <= spans[2][0] + 0.1  # not into "sat"
    assert np.isfinite(result.audio.samples).all()


def test_insertion_deletion_and_several_spans(engine, recording):
    audio, spans = recording
    inserted = engine.edit(audio, " ".join(WORDS), "the black cat sat on the mat", steps=2, context=0)
    assert inserted.changes == [("", "black")] and len(inserted.spans) == 1
    # It goes in the pause between "the" and "cat": neither word is regenerated (bar the cross-fade margins).
    assert inserted.spans[0][0] >= spans[0][1] - 0.08 and inserted.spans[0][0] <= spans[1][0]
    _assert_kept_outside(audio.samples, inserted.audio.samples, inserted.spans[0], len(inserted.audio) - len(audio))
    deleted = engine.edit(audio, " ".join(WORDS), "the cat sat the mat", steps=2, context=0)
    assert deleted.changes == [("on", "")] and len(deleted.audio) < len(audio)
    both = engine.edit(audio, " ".join(WORDS), "a cat sat on the rug", steps=2, context=0)
    assert [c for c in both.changes] == [("the", "a"), ("mat", "rug")] and len(both.spans) == 2
    (a0, a1), (b0, b1) = both.spans
    samples, edited = audio.samples, both.audio.samples
    shift_first = 0  # spans are re-timed; between them the audio is the original, moved by the first span's change
    gap = edited[int(np.ceil(a1 * SAMPLE_RATE)) : int(b0 * SAMPLE_RATE)]
    assert len(gap) > 0
    found = [o for o in range(-256 * 40, 256 * 40 + 1, 256)
             if np.array_equal(samples[int(np.ceil(a1 * SAMPLE_RATE)) - o : int(np.ceil(a1 * SAMPLE_RATE)) - o + len(gap)], gap)]
    assert found, "the audio between two edited spans must be the original's, shifted by whole frames"
    del shift_first


def test_speed_edits_change_length_and_refuse_bad_input(engine, recording):
    audio, spans = recording
    slower = engine.change_speed(audio, " ".join(WORDS), 0.7, steps=2)
    faster = engine.change_speed(audio, " ".join(WORDS), 1.3, steps=2)
    assert slower.audio.duration > faster.audio.duration
    assert slower.audio.duration == pytest.approx(audio.duration / 0.7, rel=0.1)
    local = engine.change_speed(audio, " ".join(WORDS), 0.5, span=(spans[2][0], spans[2][1]), steps=2)
    assert len(local.audio) > len(audio) and local.changes[0][0] == "sat"
    with pytest.raises(TextError):
        engine.edit(audio, " ".join(WORDS), " ".join(WORDS), steps=2)
    with pytest.raises(AudioError):
        engine.edit(Audio(np.zeros(int(61 * SAMPLE_RATE), np.float32), SAMPLE_RATE), "a", "b", steps=2)
    with pytest.raises(ValueError):
        engine.change_speed(audio, " ".join(WORDS), 9.0)


def test_zero_shot_speech_follows_the_reference_rate(engine, recording):
    from tts.voice import Voice
    from tts.text.frontend import prepare_text

    audio, _ = recording
    voice = Voice(audio, " ".join(WORDS))
    words = prepare_text("the cat sat on the mat").words
    normal = engine.speak(words, voice, steps=2)
    fast = engine.speak(words, voice, speed=2.0, steps=2)
    assert normal.sample_rate == SAMPLE_RATE and np.isfinite(normal.samples).all()
    assert fast.duration == pytest.approx(normal.duration / 2, rel=0.15)
    # Each sentence comes out as loud as the reference's speech, whatever the model made.
    from tts.data.styles import LEVEL_GATE_DB
    from tts.preprocess import active_rms_dbfs

    quieter = Voice(Audio(audio.samples * 0.25, audio.sample_rate), voice.transcript)
    assert engine.voice_level(quieter) == pytest.approx(engine.voice_level(voice) - 12.04, abs=0.05)
    for voice_, said in ((voice, normal), (quieter, engine.speak(words, quieter, steps=2))):
        assert active_rms_dbfs(said, gate_db=-LEVEL_GATE_DB) == pytest.approx(engine.voice_level(voice_), abs=0.3)


def test_synthesize_verify_renders_a_misheard_chunk_again(engine, recording, scripted_asr):
    from tts import synthesize
    from tts.voice import Voice

    voice = Voice(recording[0], " ".join(WORDS))
    plain = synthesize("The mat.", voice, models=engine, seed=1, watermark=False)  # dit: the models' engine
    checked = scripted_asr(["a hat", "the mat"])
    verified = synthesize("The mat.", voice, engine="dit", models=engine, seed=1, watermark=False, verify=True)
    assert len(checked) == 2 and np.array_equal(checked[0].samples, plain.samples)
    assert np.array_equal(verified.samples, checked[1].samples) and not np.array_equal(verified.samples, plain.samples)


def test_synthesize_and_edit_entry_points(engine, recording):
    from tts import edit, synthesize
    from tts.voice import Voice

    audio, _ = recording
    voice = Voice(audio, " ".join(WORDS))
    spoken = synthesize("The mat. The cat!", voice, engine="dit", models=engine, seed=1, watermark=False,
                        pitch=2.0)
    assert spoken.sample_rate == SAMPLE_RATE and spoken.duration > 0.3
    again = synthesize("The mat. The cat!", voice, engine="dit", models=engine, seed=1, watermark=False, pitch=2.0)
    assert np.array_equal(spoken.samples, again.samples)  # seeded
    result = edit((audio.samples, audio.sample_rate), " ".join(WORDS), "the cat sat on the rug", models=engine)
    (start, end), = result.spans
    shift = len(result.audio) - len(audio)
    _assert_kept_outside(audio.samples, result.audio.samples, (start, end), shift)  # marked inside the span only
    plain = edit(audio, " ".join(WORDS), "the cat sat on the rug", models=engine, watermark=False)
    assert not np.array_equal(plain.audio.samples, result.audio.samples)


def test_warped_positions_stretch_each_unit_on_its_own():
    from tts.audio import interpolate_frames
    from tts.dit.engine import _warped_positions

    assert _warped_positions([2, 3], [2, 3], first_frame=4) == [4.0, 5.0, 6.0, 7.0, 8.0]
    slow = _warped_positions([2, 4], [4, 2])  # the first unit twice as long, the second half as long
    assert slow[:4] == pytest.approx([-0.25, 0.25, 0.75, 1.25]) and slow[4:] == pytest.approx([2.5, 4.5])
    mel = torch.arange(12.0).reshape(2, 6)
    read = interpolate_frames(mel, torch.tensor([-1.0, 0.5, 2.25, 9.0], dtype=torch.float64))
    assert torch.allclose(read, torch.tensor([[0.0, 0.5, 2.25, 5.0], [6.0, 6.5, 8.25, 11.0]]))


def test_speed_edit_starts_from_the_stretched_recording(engine, recording):
    """The tiny DiT is untrained (its velocity is about zero), so what a speed edit starts from is what it ends
    with: the recording stretched unit by unit when guided, noise when not."""
    from tts.audio import log_mel
    from tts.text.frontend import prepare_text

    audio, _ = recording
    text = " ".join(WORDS)
    units, counts = engine.align(audio, list(prepare_text(text).words))
    stretched = torch.cat([log_mel(torch.from_numpy(audio.samples))[:, sum(counts[:i]):sum(counts[:i + 1])]
                           .repeat_interleave(2, dim=1) for i in range(len(counts))], dim=1)
    guided = engine.change_speed(audio, text, 0.5, steps=2, guide=0.95)
    free = engine.change_speed(audio, text, 0.5, steps=2, guide=0.0)

    def mel_error(result):
        mel = log_mel(torch.from_numpy(result.audio.samples))
        frames = min(mel.shape[1], stretched.shape[1])
        return float((mel[:, :frames] - stretched[:, :frames]).abs().mean())

    assert mel_error(guided) < 0.5 * mel_error(free)
    with pytest.raises(ValueError, match="guide"):
        engine.change_speed(audio, text, 0.5, guide=1.0)


def test_edit_context_widens_and_merges_changed_stretches(engine, recording):
    from tts.dit.engine import _with_context

    # old words 0..9; "2" replaced, "6:8" replaced by three words
    changed = [(2, 3, 2, 3), (6, 8, 6, 9)]
    assert _with_context(changed, 10, 0) == changed
    assert _with_context(changed, 10, 1) == [(1, 4, 1, 4), (5, 9, 5, 10)]
    assert _with_context(changed, 10, 2) == [(0, 10, 0, 11)]  # they meet: one stretch
    assert _with_context([(0, 1, 0, 1)], 3, 5) == [(0, 3, 0, 3)]  # clipped at both ends
    assert _with_context([(3, 3, 3, 4)], 3, 1) == [(2, 3, 2, 4)]  # an insertion at the end
    audio, _ = recording
    plain = engine.preview_edit(audio, " ".join(WORDS), "the cat sat in the mat", context=0)
    wide = engine.preview_edit(audio, " ".join(WORDS), "the cat sat in the mat")  # EDIT_CONTEXT_WORDS: 1
    assert plain.changes == [("on", "in")] and wide.changes == [("sat on the", "sat in the")]
    assert wide.spans[0][0] < plain.spans[0][0] and wide.spans[0][1] > plain.spans[0][1]
    with pytest.raises(ValueError, match="context"):
        engine.preview_edit(audio, " ".join(WORDS), "the cat sat in the mat", context=-1)


@pytest.fixture
def infill_calls(monkeypatch):
    """Every `DitEngine._infill` call's (layout, source mel, guide), in order; the calls still run."""
    from tts.dit import engine as engine_module

    seen = []
    infill = engine_module.DitEngine._infill

    def spy(self, cond, layout, steps, cfg_strength, seed, source_mel=None, guide=0.0):
        seen.append((layout, source_mel, guide))
        return infill(self, cond, layout, steps, cfg_strength, seed, source_mel, guide)

    monkeypatch.setattr(engine_module.DitEngine, "_infill", spy)
    return seen


def test_a_word_edit_starts_its_new_words_from_the_guide_voice(engine, recording, infill_calls):
    """The new words' first estimate is the guide voice's rendering of them, moved toward the recording's voice
    (after the recording's frames in the source the flow reads), frame for frame as long as the guide says them;
    their pauses the recording's own frames; without a guide voice, noise at the duration predictor's lengths."""
    from tts.dit import engine as engine_module

    audio, _ = recording
    text, new_text = " ".join(WORDS), "the dog sat on the mat"
    guided = engine.edit(audio, text, new_text, steps=2, guide_voice="flite:awb", guide=0.6, context=0)
    layout, source_mel, guide = infill_calls[-1]
    frames = engine._mel(audio).shape[1]
    new_words = list(engine_module.prepare_text(new_text).words)
    estimate = engine._guide_estimate(new_text, new_words, "flite:awb", 0, engine._mel(audio),
                                      engine_module._pitch(audio))
    unmoved = engine._guide_estimate(new_text, new_words, "flite:awb", 0)
    assert guide == 0.6 and source_mel.shape[1] == frames + estimate.mel.shape[1]
    generated = [i for i, keep in enumerate(layout.keep) if not keep]
    positions = np.array([layout.guide[i] for i in generated])
    assert np.isfinite(positions).all()  # every generated frame has a first estimate: the flow starts from them
    from_voice = positions >= frames
    assert from_voice.any() and not from_voice.all()  # the new word from the guide voice, pauses and margins not
    new_units = engine_module.text_units(list(engine_module.prepare_text(new_text).words))
    dog_start, dog_end = new_units.word_units(1, 2)
    dog_frames = np.cumsum(estimate.counts)
    first, last = dog_frames[dog_start] - estimate.counts[dog_start], dog_frames[dog_end - 1]
    assert positions[from_voice].min() >= frames + first - 1 and positions[from_voice].max() <= frames + last
    assert abs(from_voice.sum() - (last - first)) <= 2  # as long as the guide says it (a frame for a 0-frame unit)
    assert torch.equal(source_mel[:, frames:], estimate.mel)  # the guide voice moved to the recording's voice
    assert not torch.equal(estimate.mel, unmoved.mel)
    assert guided.changes == [("cat", "dog")] and np.isfinite(guided.audio.samples).all()

    plain = engine.edit(audio, text, new_text, steps=2, guide_voice=None, context=0)
    assert infill_calls[-1][2] == 0.0 and infill_calls[-1][1].shape[1] == frames  # from noise
    predicted = engine.predicted_frames(new_units)[dog_start:dog_end] * engine.speaking_rate(*engine.align(
        audio, list(engine_module.prepare_text(text).words)))
    hop = engine.hop_seconds * SAMPLE_RATE
    assert abs(len(plain.audio) - len(guided.audio) - (predicted.sum() - (last - first)) * hop) <= 4 * hop
    with pytest.raises(ValueError, match="guide"):
        engine.edit(audio, text, new_text, guide=1.0)


def test_a_guide_takes_the_long_term_spectrum_of_the_voice_it_stands_in_for(monkeypatch):
    """`_Estimate.matched`: each band's mean over the speech frames set to the voice's (a shift per band, no
    more); the silent frames do not count."""
    from tts.dit import engine as engine_module

    generator = torch.Generator().manual_seed(0)
    guide = torch.randn(100, 60, generator=generator) - 4.0
    guide[:, :10] = -11.0  # silence: outside the speech frames
    voice = torch.randn(100, 80, generator=generator) + torch.linspace(-6.0, -2.0, 100)[:, None]
    means = speech_band_means
    assert torch.allclose(means(guide), guide[:, 10:].mean(dim=1, keepdim=True))
    estimate = engine_module._Estimate(guide, [60])
    matched = estimate.matched(voice)
    assert torch.allclose(means(matched.mel), means(voice), atol=1e-5)
    assert torch.allclose(matched.mel - guide, means(voice) - means(guide), atol=1e-5)
    assert matched.counts == [60] and estimate.mel is guide  # a new estimate; the old one untouched
    monkeypatch.setattr(engine_module, "GUIDE_MATCH", 0.5)
    assert torch.allclose(estimate.matched(voice).mel - guide, 0.5 * (means(voice) - means(guide)), atol=1e-5)


def test_with_the_voices_units_each_unit_of_a_guide_takes_the_voices_own_spectrum_of_it(monkeypatch):
    """`_Estimate.matched` with the unit of each of the voice's frames: a unit the voice says often moves most of
    the way to the voice's spectrum of that unit (weight n / (n + prior)), one it never says by the long-term shift;
    band-flat differences survive the band smoothing, and no frame ids means the long-term shift only."""
    from tts.dit import engine as engine_module

    monkeypatch.setattr(engine_module, "PHONE_MATCH_SMOOTH", 1)
    monkeypatch.setattr(engine_module, "PHONE_MATCH_PRIOR", 10.0)
    guide = torch.full((100, 60), -4.0)  # units 7 (30 frames), 8 (30 frames): the same spectrum
    voice = torch.full((100, 90), -5.0)
    voice[:, 40:] = -3.0  # the voice says unit 7 (frames 0..39) at -5 and unit 9 (50 frames) at -3
    voice_ids = torch.tensor([7] * 40 + [9] * 50)
    estimate = engine_module._Estimate(guide, [30, 30], [7, 8])
    long_term = float(speech_band_means(voice).mean() - speech_band_means(guide).mean())
    moved = estimate.matched(voice, voice_ids).mel - guide
    weight = 40 / (40 + 10.0)
    assert torch.allclose(moved[:, :30], torch.tensor(long_term + weight * (-1.0 - long_term)), atol=1e-5)
    assert torch.allclose(moved[:, 30:], torch.tensor(long_term), atol=1e-5)  # unit 8: not in the voice
    assert torch.allclose(estimate.matched(voice).mel - guide, torch.tensor(long_term), atol=1e-5)
    monkeypatch.setattr(engine_module, "PHONE_MATCH_PRIOR", None)
    assert torch.allclose(estimate.matched(voice, voice_ids).mel - guide, torch.tensor(long_term), atol=1e-5)
    monkeypatch.setattr(engine_module, "PHONE_MATCH_PRIOR", 10.0)
    monkeypatch.setattr(engine_module, "PHONE_MATCH_SMOOTH", 5)  # in time: no jump at the unit boundary
    steps = (estimate.matched(voice, voice_ids).mel - guide)[0].diff().abs()
    assert float(steps.max()) < 0.25 * abs(weight * (-1.0 - long_term))


def test_a_guide_is_said_at_the_pitch_of_the_voice_it_stands_in_for(recording):
    """`_to_voice_pitch`: the guide's F0 median becomes the voice's (the ratio within its limits), and with
    ``spread=True`` its F0 range too; without a pitch to go to, the audio is returned as it is."""
    from tts.dit import engine as engine_module

    audio, _ = recording
    own = engine_module._pitch(audio)
    assert own is not None and own.spread > 0.3
    higher = engine_module._to_voice_pitch(audio, own._replace(median=own.median * 1.3), seed=0)
    moved = engine_module._pitch(higher)
    assert abs(12 * np.log2(moved.median / own.median) - 12 * np.log2(1.3)) < 0.7
    assert moved.spread == pytest.approx(own.spread, rel=0.25)  # the range left as it was
    assert abs(higher.duration - audio.duration) < 0.05
    low, _ = engine_module.GUIDE_PITCH_LIMITS
    lowest = engine_module._to_voice_pitch(audio, own._replace(median=own.median * 0.1), seed=0)  # to the limit
    assert abs(12 * np.log2(engine_module._pitch(lowest).median / own.median) - 12 * np.log2(low)) < 1.0
    wider = engine_module._pitch(engine_module._to_voice_pitch(audio, own._replace(spread=own.spread * 1.8), seed=0,
                                                               spread=True))
    assert wider.spread == pytest.approx(own.spread * 1.8, rel=0.25) and wider.spread > moved.spread * 1.3
    assert abs(12 * np.log2(wider.median / own.median)) < 1.0
    assert engine_module._to_voice_pitch(audio, None, seed=0) is audio


def test_a_guided_start_takes_one_unguided_step_and_noise_eight_guided_ones(engine, recording, monkeypatch):
    """Steps and guidance left unset follow where the flow starts: `GUIDED_STEPS` / `GUIDED_CFG` from a guide voice's
    first estimate, `DEFAULT_STEPS` / `DEFAULT_CFG` from noise; values given are used as they are."""
    from tts.dit import engine as engine_module

    seen = []
    real = engine_module.sample

    def spy(*args, **kwargs):
        seen.append((kwargs["steps"], kwargs["cfg_strength"], kwargs["start_time"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "sample", spy)
    audio, _ = recording
    text, new_text = " ".join(WORDS), "the dog sat on the mat"
    engine.edit(audio, text, new_text, guide_voice="flite:awb", context=0)
    engine.edit(audio, text, new_text, guide_voice=None, context=0)
    engine.edit(audio, text, new_text, guide_voice="flite:awb", context=0, steps=3, cfg_strength=1.5)
    assert seen == [(engine_module.GUIDED_STEPS, engine_module.GUIDED_CFG, engine_module.EDIT_GUIDE),
                    (engine_module.DEFAULT_STEPS, engine_module.DEFAULT_CFG, 0.0),
                    (3, 1.5, engine_module.EDIT_GUIDE)]
    assert engine_module.GUIDED_STEPS < engine_module.DEFAULT_STEPS


def test_a_missing_guide_voice_falls_back_to_noise(engine, recording, monkeypatch, caplog):
    from tts.data import speakers, voicebank

    audio, _ = recording
    real = speakers.get_speaker

    class Missing:
        def voices(self):
            return ["joe"]

        def unavailable_reason(self):
            return "piper is not installed"

    def missing_piper(name):
        return Missing() if name == "piper" else real(name)

    monkeypatch.setattr(speakers, "get_speaker", missing_piper)
    monkeypatch.setattr(voicebank, "get_speaker", missing_piper)
    with caplog.at_level("WARNING"):
        result = engine.edit(audio, " ".join(WORDS), "the dog sat on the mat", steps=2, guide_voice="piper:joe")
    assert "starts from noise" in caplog.text and result.changes == [("the cat sat", "the dog sat")]  # context 1


def test_zero_shot_speech_starts_from_the_guide_voice(engine, recording, infill_calls, monkeypatch):
    from tts.dit import engine as engine_module
    from tts.text.frontend import prepare_text
    from tts.voice import Voice

    audio, _ = recording
    voice = Voice(audio, " ".join(WORDS))
    words = list(prepare_text("The dog sat on the rug.").words)
    assert engine_module._spoken_text(words) == "The dog sat on the rug."
    engine.speak(words, voice, steps=2, guide_voice="flite:awb", guide=0.5)
    unit_by_unit = infill_calls[-1][1]
    monkeypatch.setattr(engine_module, "PHONE_MATCH_PRIOR", None)
    guided = engine.speak(words, voice, steps=2, guide_voice="flite:awb", guide=0.5)
    layout, source_mel, guide = infill_calls[-1]
    kept = sum(layout.keep)
    generated = np.array([g for g, keep in zip(layout.guide, layout.keep) if not keep])
    assert guide == 0.5 and np.isfinite(generated).all() and generated.min() >= kept - 1  # all from the guide voice
    assert source_mel.shape[1] > kept and generated.max() <= source_mel.shape[1]
    means = speech_band_means  # the guide moved to the prompt's long-term spectrum
    assert torch.allclose(means(source_mel[:, kept:]), means(source_mel[:, :kept]), atol=1e-4)
    # by default, unit by unit to the voice's own spectrum of each (the reference's units from the aligner)
    assert unit_by_unit.shape == source_mel.shape and torch.equal(unit_by_unit[:, :kept], source_mel[:, :kept])
    assert not torch.allclose(unit_by_unit[:, kept:], source_mel[:, kept:], atol=1e-2)
    plain = engine.speak(words, voice, steps=2, guide_voice=None)
    assert infill_calls[-1][2] == 0.0 and infill_calls[-1][1] is None
    assert len(plain) == len(guided) and not np.array_equal(plain.samples, guided.samples)
    with pytest.raises(ValueError, match="guide"):
        engine.speak(words, voice, guide=1.5)


# -- conversion ----------------------------------------------------------------------------------------------


def test_conversion_without_a_guide_voice_starts_from_the_moved_recording(engine, recording, flite, infill_calls,
                                                                          monkeypatch):
    """`DitEngine.convert` with ``guide_voice=None``: the output is as long as the source, every generated frame
    starts from the source itself (moved to the voice's long-term spectrum, with unit-by-unit matching off) at
    `CONVERT_GUIDE`, laid out at the source's aligned frames after the voice's reference; seeded; bad input
    refused."""
    from tts.dit import engine as engine_module
    from tts.voice import Voice

    monkeypatch.setattr(engine_module, "PHONE_MATCH_PRIOR", None)

    audio, _ = recording
    voice = Voice(flite.synthesize("A voice to say it in, for a little while.", "awb").audio.resample(SAMPLE_RATE),
                  "A voice to say it in, for a little while.")
    converted = engine.convert(audio, voice, " ".join(WORDS), steps=2, guide_voice=None)
    (layout, source_mel, guide), = infill_calls
    kept, frames = sum(layout.keep), engine._mel(audio).shape[1]
    assert guide == engine_module.CONVERT_GUIDE and len(layout) - kept == frames  # the source's own length
    assert np.allclose(layout.guide[kept:], [kept + i for i in range(frames)])  # frame for frame from the source
    units, counts = engine.align(audio, engine_module.prepare_text(" ".join(WORDS)).words)
    assert layout.ids[kept:] == engine_module.expand(units.ids, counts).tolist()
    assert torch.allclose(speech_band_means(source_mel[:, kept:]), speech_band_means(source_mel[:, :kept]), atol=1e-4)
    assert converted.sample_rate == SAMPLE_RATE and abs(converted.duration - audio.duration) < 0.02
    again = engine.convert(audio, voice, " ".join(WORDS), steps=2, guide_voice=None)
    assert np.array_equal(again.samples, converted.samples)
    with pytest.raises(ValueError, match="guide"):
        engine.convert(audio, voice, " ".join(WORDS), guide=1.0)
    with pytest.raises(AudioError, match="shorter than 0.2 s"):
        engine.convert(Audio(audio.samples[:2400], SAMPLE_RATE), voice, "the")


def test_conversion_starts_from_the_guide_voice_singing_the_recordings_melody(engine, recording, flite,
                                                                              infill_calls):
    """With a guide voice, the first estimate is that voice saying the words to the recording's melody (moved to
    the voice's F0 median), stretched unit by unit to the recording's timing; the output keeps the recording's
    length and is seeded."""
    from tts.dit import engine as engine_module
    from tts.evaluation.prosody import f0_correlation
    from tts.voice import Voice

    audio, _ = recording
    voice = Voice(flite.synthesize("A voice to say it in, for a little while.", "rms").audio.resample(SAMPLE_RATE),
                  "A voice to say it in, for a little while.")
    words = list(engine_module.prepare_text(" ".join(WORDS)).words)
    units, counts = engine.align(audio, words)
    sung, sung_counts = engine._sung_guide(audio, words, counts, voice, "flite:awb", 0)
    assert len(sung_counts) == len(counts) and sum(sung_counts) == engine._mel(sung).shape[1]
    own, target, pitch = engine_module._pitch(audio), engine.voice_pitch(voice), engine_module._pitch(sung)
    assert abs(12 * np.log2(pitch.median / target.median)) < 1.0 < abs(12 * np.log2(own.median / target.median))
    plain = flite.synthesize(" ".join(WORDS), "awb").audio  # the guide voice in its own melody
    assert f0_correlation(audio, sung) > f0_correlation(audio, plain) + 0.2
    converted = engine.convert(audio, voice, " ".join(WORDS), steps=2, guide_voice="flite:awb")
    layout, source_mel, _ = infill_calls[-1]
    kept = sum(layout.keep)
    positions = np.array(layout.guide[kept:])
    assert len(positions) == sum(counts) and np.all(np.diff(positions) >= 0)  # in order, from the guide's frames
    assert source_mel.shape[1] == kept + engine._mel(sung).shape[1] and positions.max() <= source_mel.shape[1]
    assert abs(converted.duration - audio.duration) < 0.02
    again = engine.convert(audio, voice, " ".join(WORDS), steps=2, guide_voice="flite:awb")
    assert np.array_equal(again.samples, converted.samples)


def test_a_long_conversion_goes_through_in_pieces_cut_in_pauses(engine, recording, flite, infill_calls, monkeypatch,
                                                                scripted_asr):
    """Past `CONVERT_PIECE_SECONDS` the DiT says the recording in pieces that end inside pauses and add up to the
    whole; past `MAX_CONVERT_SECONDS` it is refused; without a transcript the ASR's is used."""
    from tts.dit import engine as engine_module
    from tts.voice import Voice

    audio, spans = recording
    voice = Voice(audio, " ".join(WORDS))
    monkeypatch.setattr(engine_module, "CONVERT_PIECE_SECONDS", 1.0)
    heard = scripted_asr([" ".join(WORDS)])
    converted = engine.convert(audio, voice, steps=2, guide_voice=None)
    assert len(heard) == 1 and heard[0].duration == pytest.approx(audio.duration, abs=0.01)  # transcribed once
    pieces = [len(layout) - sum(layout.keep) for layout, _, _ in infill_calls]
    frames = engine._mel(audio).shape[1]
    assert len(pieces) >= 2 and sum(pieces) == frames
    hop = engine.hop_seconds
    for cut in np.cumsum(pieces)[:-1] * hop:  # every cut falls between two words (aligner error allowed)
        assert any(end - 0.06 <= cut <= start + 0.06 for (_, end), (start, _) in zip(spans, spans[1:]))
    assert abs(converted.duration - audio.duration) < 0.02
    monkeypatch.setattr(engine_module, "MAX_CONVERT_SECONDS", 1.0)
    with pytest.raises(AudioError, match="convert at most 1 s at a time"):
        engine.convert(audio, voice, " ".join(WORDS))


def test_piece_bounds_cut_in_the_longest_pause_within_reach():
    from tts.dit.engine import _piece_bounds
    from tts.dit.units import BOUNDARY, UnitSequence
    from tts.text import PHONEME_TABLE

    gap, comma, sound = PHONEME_TABLE.word_boundary_id, PHONEME_TABLE.id(","), PHONEME_TABLE.id("a")
    # pause, word 0 (4 units), pause, word 1, pause, word 2, a comma and its pause (one stretch of 30), pause
    ids = [gap] + [sound] * 4 + [gap] + [sound] * 4 + [gap] + [sound] * 4 + [comma, gap] + [sound] * 4 + [gap]
    words = [BOUNDARY] + [0] * 4 + [BOUNDARY] + [1] * 4 + [BOUNDARY] + [2] * 4 + [3, BOUNDARY] + [4] * 4 + [BOUNDARY]
    units = UnitSequence(tuple(ids), tuple(words))
    counts = [10] + [5] * 4 + [2] + [5] * 4 + [0] + [5] * 4 + [30, 0] + [5] * 4 + [10]
    # pauses (middle, length): (5, 10), (31, 2), (52, 0), (87, 30), (102, 0), (127, 10); 132 frames in all
    assert _piece_bounds(units, counts, 1000) == [(0, 132)]  # short enough: one piece
    assert _piece_bounds(units, counts, 100) == [(0, 87), (87, 132)]  # the comma's 30 frames, not a 0-frame one
    # none in the second half of the reach: the last one in it (here between two words with no pause) ...
    assert _piece_bounds(units, counts, 45) == [(0, 31), (31, 52), (52, 87), (87, 132)]
    # ... else on to the next one
    assert _piece_bounds(units, counts, 12) == [(0, 5), (5, 31), (31, 52), (52, 87), (87, 102), (102, 127), (127, 132)]


def test_convert_entry_points_run_the_dit_conversion(engine, recording, flite, monkeypatch, tmp_path):
    """`tts.convert` (the engine taken from the models given, or named) and `timbre convert --engine dit
    --source-text` say the recording again through `DitEngine.convert`, watermarked unless asked not to be."""
    import tts
    from tts.cli import main
    from tts.dit import engine as engine_module
    from tts.voice import Voice
    from tts.watermark import detect

    audio, _ = recording
    text = " ".join(WORDS)
    voice = Voice(flite.synthesize("A voice to say it in, for a little while.", "awb").audio.resample(SAMPLE_RATE),
                  "A voice to say it in, for a little while.")
    direct = engine.convert(audio, voice, text, seed=2)
    plain = tts.convert(audio, voice, source_text=text, seed=2, models=engine, watermark=False)
    assert np.array_equal(plain.samples, direct.samples)
    marked = tts.convert(audio, voice, engine="dit", source_text=text, seed=2, models=engine)
    assert detect(marked).present and not np.array_equal(marked.samples, plain.samples)
    monkeypatch.setattr(engine_module, "load_dit_engine", lambda **_: engine)
    audio.save(tmp_path / "src.wav")
    voice.save(tmp_path / "awb.voice")
    assert main(["convert", str(tmp_path / "src.wav"), "--voice", str(tmp_path / "awb.voice"), "--source-text", text,
                 "--seed", "2", "-o", str(tmp_path / "out.wav")]) == 0  # dit: the default engine
    written = tts.load_audio(tmp_path / "out.wav")
    assert abs(written.duration - marked.duration) < 1e-3 and detect(written).present
