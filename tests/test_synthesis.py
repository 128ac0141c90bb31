"""`synthesize()` on a tiny random `ar` engine: the whole data flow, seeds, streaming equal to whole-utterance
output, speed, long text, concurrency with two voices, and the errors users meet."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from tts.audio import Audio
from tts.data.speakers import get_speaker
from tts.data.styles import STYLES
from tts.errors import CheckpointError, TextError
from tts.lm.model import SpeechTokenLM
from tts.refiner.model import FlowRefiner, FlowRefinerConfig
from tts.synthesis import ArEngine, MelStretcher, prepare_prompt, synthesize
from tts.tokenizer.model import SpeechTokenizer
from tts.tokenizer.train import PRESETS as TOKENIZER_PRESETS
from tts.voice import Voice, clone_voice
from tests.test_lm import TINY as LM_TINY
from vocoder.train import PRESETS as VOCODER_PRESETS
from vocoder.vocos import Vocos

pytestmark = pytest.mark.usefixtures("single_thread")


def _random(module: torch.nn.Module, seed: int, scale: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, scale)
    return module.eval()


class _SpeakingLM(SpeechTokenLM):
    """A random LM that speaks a few tokens per unit: its text ids are pushed down (an untrained model puts
    most of its mass on the 160 text ids and would move on at once, saying nothing)."""

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        output.logits[..., : self.config.phoneme_table_size] -= 6.0
        return output


def tiny_engine() -> ArEngine:
    """All four parts of the `ar` engine at tiny sizes with random weights (seeded); the refiner takes every style."""
    tokenizer_config = TOKENIZER_PRESETS["tiny"].model
    torch.manual_seed(0)
    tokenizer = SpeechTokenizer(tokenizer_config).eval()
    lm = _random(_SpeakingLM(replace(LM_TINY, codebook_size=tokenizer_config.codebook_size,
                                     token_rate=tokenizer_config.token_rate, max_positions=2048)), 1, 0.05)
    refiner = _random(FlowRefiner(FlowRefinerConfig(
        codebook_size=tokenizer_config.codebook_size, dim=32, depth=2, heads=2, dim_head=16, token_dim=16,
        speaker_dim=16, speaker_encoder_dim=16, speaker_encoder_layers=1, num_styles=8, style_dim=8,
        time_freq_dim=32, chunk_size=6, lookahead=3, styles=STYLES)), 2, 0.05)
    vocoder = Vocos(VOCODER_PRESETS["tiny"].generator).eval()
    return ArEngine(tokenizer, lm, refiner, vocoder)


@pytest.fixture(scope="module")
def engine() -> ArEngine:
    return tiny_engine()


@pytest.fixture(scope="module")
def voices() -> tuple[Voice, Voice]:
    flite = get_speaker("flite")
    if flite.unavailable_reason():
        pytest.skip(flite.unavailable_reason())
    text_a, text_b = "The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things."
    return (clone_voice(flite.synthesize(text_a, "slt").audio, transcript=text_a),
            clone_voice(flite.synthesize(text_b, "rms").audio, transcript=text_b))


def test_prompt_is_tokenized_and_aligned(engine, voices):
    prompt = prepare_prompt(engine, voices[0])
    assert prompt.mel.shape[0] == engine.tokenizer.config.mel.n_mels
    assert len(prompt.utterance.tokens) == len(prompt.tokens) == sum(prompt.utterance.counts)
    assert len(prompt.utterance.units) == len(prompt.utterance.counts)


def test_prompt_is_kept_per_voice_and_tokenizer(engine, voices, monkeypatch):
    first = prepare_prompt(engine, voices[0])
    assert prepare_prompt(engine, voices[0]) is first  # the same voice again: no tokenizer work
    same_clip = Voice(audio=Audio(voices[0].audio.samples.copy(), 24000), transcript=voices[0].transcript)
    assert prepare_prompt(engine, same_clip) is first
    assert prepare_prompt(engine, voices[1]) is not first
    retold = Voice(audio=voices[0].audio, transcript="the quick brown fox jumps over the lazy dog")
    assert prepare_prompt(engine, retold) is not first  # another transcript, another alignment
    another_engine = tiny_engine()
    fresh = prepare_prompt(another_engine, voices[0])
    assert fresh is not first and torch.equal(fresh.mel, first.mel)
    from tts import synthesis

    monkeypatch.setattr(synthesis._PROMPTS[engine.tokenizer][engine.refiner], "size", 1)
    prepare_prompt(engine, Voice(audio=voices[1].audio, transcript="please call stella and ask her to bring these things"))
    assert prepare_prompt(engine, voices[0]) is not first  # pushed out by the other voice


def test_the_refiners_correction_is_measured_on_the_prompt_and_added_to_its_mels(engine, voices, monkeypatch):
    """The correction: the prompt's second half said again by the refiner from its first half, band means
    subtracted; zeros for a prompt too short to halve; added to every mel the refiner makes for the voice."""
    from tts import synthesis
    from tts.audio import speech_band_means
    from tts.refiner.sampling import generate

    prompt = prepare_prompt(engine, voices[0])
    half = len(prompt.tokens) // 2
    assert half >= synthesis.CORRECTION_MIN_TOKENS
    split = half * engine.refiner.config.frames_per_token
    said = generate(engine.refiner, prompt.tokens[half:], prompt.mel[:, :split], prompt.tokens[:half],
                    steps=synthesis.CORRECTION_STEPS, cfg_strength=synthesis.CORRECTION_CFG, seed=0)[0]
    expected = speech_band_means(prompt.mel[:, split:]) - speech_band_means(said)
    assert prompt.correction.shape == (prompt.mel.shape[0], 1) and prompt.correction.abs().max() > 0.01
    assert torch.allclose(prompt.correction, expected, atol=1e-5)
    short = synthesis._spectral_correction(engine.refiner, prompt.mel[:, :60], prompt.tokens[:20])
    assert torch.equal(short, torch.zeros(prompt.mel.shape[0], 1))

    decoded = []
    decode = engine.vocoder.decode
    monkeypatch.setattr(engine.vocoder, "decode", lambda mel: decoded.append(mel.clone()) or decode(mel))
    options = synthesis.SynthesisOptions(seed=1)
    units = synthesis.text_units(list(synthesis.prepare_text("Hello there.").words))
    synthesis._chunk_audio(engine, prompt, units, options, 5)
    synthesis._chunk_audio(engine, replace(prompt, correction=torch.zeros_like(prompt.correction)), units, options, 5)
    assert torch.allclose(decoded[0] - decoded[1], prompt.correction.expand_as(decoded[0]), atol=1e-5)


def test_synthesize_returns_audio_and_is_seeded(engine, voices):
    first = synthesize("Hello there.", voices[0], seed=3, models=engine)
    again = synthesize("Hello there.", voices[0], seed=3, models=engine)
    other = synthesize("Hello there.", voices[0], seed=4, models=engine)
    assert isinstance(first, Audio) and first.sample_rate == 24000
    assert first.samples.dtype == np.float32 and first.duration > 0.1
    assert np.array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples) or first.samples.shape != other.samples.shape


def test_streaming_concatenates_to_the_whole_output(engine, voices):
    text = "One more sentence. And another one, please."
    whole = synthesize(text, voices[0], seed=7, models=engine)
    chunks = list(synthesize(text, voices[0], seed=7, models=engine, stream=True))
    assert len(chunks) > 2
    streamed = np.concatenate([chunk.samples for chunk in chunks])
    assert streamed.shape == whole.samples.shape
    np.testing.assert_allclose(streamed, whole.samples, atol=1e-3)


def test_the_engine_is_the_one_the_models_belong_to_else_the_default(engine):
    from tts.synthesis import DEFAULT_ENGINE, SYNTHESIS_ENGINES, _engine_of

    assert DEFAULT_ENGINE == SYNTHESIS_ENGINES[0] == "dit"  # the studio's Speak view starts on the first
    assert _engine_of(None) == "dit" and _engine_of(engine) == "ar" and _engine_of("something else") == "dit"


def test_verify_renders_a_misheard_chunk_again_and_keeps_the_best(engine, voices, scripted_asr):
    plain = synthesize("Good morning.", voices[0], seed=5, models=engine, watermark=False)
    checked = scripted_asr(["something else entirely", "good morning"])
    verified = synthesize("Good morning.", voices[0], seed=5, models=engine, watermark=False, verify=True)
    assert len(checked) == 2 and np.array_equal(checked[0].samples, plain.samples)
    assert np.array_equal(verified.samples, checked[1].samples) and not np.array_equal(verified.samples, plain.samples)
    checked = scripted_asr(["good evening", "nothing like it at all", "no"])  # never right: the closest is kept
    kept = synthesize("Good morning.", voices[0], seed=5, models=engine, watermark=False, verify=True, max_tries=3)
    assert len(checked) == 3 and np.array_equal(kept.samples, plain.samples)


def test_speed_changes_the_length(engine, voices):
    sampling = dict(seed=1, models=engine)
    normal = synthesize("Counting to ten takes a while.", voices[0], speed=1.0, **sampling)
    fast = synthesize("Counting to ten takes a while.", voices[0], speed=2.0, **sampling)
    assert fast.duration < 0.65 * normal.duration
    pieces = list(synthesize("Counting to ten takes a while.", voices[0], speed=2.0, stream=True, **sampling))
    np.testing.assert_allclose(np.concatenate([p.samples for p in pieces]), fast.samples, atol=1e-3)


@pytest.mark.parametrize("speed", [0.5, 0.82, 1.12, 1.5, 2.0])
def test_mel_stretcher_interpolates_and_streams_like_the_whole(speed):
    ramp = torch.arange(40, dtype=torch.float32).repeat(3, 1)  # (M, F): every band counts frames
    whole = MelStretcher(speed).stretch(ramp)
    assert whole.shape == (3, int(39 / speed) + 1)
    torch.testing.assert_close(whole[0], torch.arange(whole.shape[1], dtype=torch.float32) * speed)
    stretcher, pieces = MelStretcher(speed), []
    for piece in torch.split(ramp, [1, 7, 3, 12, 17], dim=-1):
        pieces.append(stretcher.push(piece))
    pieces.append(stretcher.finish())
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole)
    assert MelStretcher(1.0).stretch(ramp) is ramp


def test_long_text_is_chunked_with_progress(engine, voices):
    calls = []
    text = " ".join(["This sentence is one of several in a row."] * 4)
    audio = synthesize(text, voices[0], seed=0, models=engine, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] >= 1
    assert audio.duration > 0.5


def test_chunks_the_lm_cannot_hold_after_the_prompt_are_split_further():
    from tts.lm.stream import text_units
    from tts.style import Style
    from tts.synthesis import fit_chunks, plan_chunks
    from tts.text import prepare_text

    text = ("The committee met on Tuesday morning, discussed the budget for the coming year, argued about the new "
            "library and its opening hours, and finally agreed to meet again next week. Short one.")
    plan = plan_chunks(text, Style("happy"), max_chars=250)
    assert len(plan) == 1

    def units(chunk: str) -> int:
        return len(text_units(list(prepare_text(chunk).words)))

    fitted = fit_chunks(plan, 60)
    assert len(fitted) > 1 and all(units(chunk) <= 60 for chunk, _ in fitted)
    assert " ".join(chunk for chunk, _ in fitted).split() == text.split()  # every word, in order, once
    assert {conditioning for _, conditioning in fitted} == {plan[0][1]}
    assert fit_chunks(plan, 10_000) == plan  # what fits is left as it is
    with pytest.raises(TextError, match="use a shorter reference clip"):
        fit_chunks(plan, 3)


def test_a_long_prompt_leaves_less_room_and_its_text_is_still_said_whole(engine, voices):
    from tts.lm.generate import max_target_units

    voice = voices[0]
    room = max_target_units(engine.lm.config, prepare_prompt(engine, voice).utterance)
    words = " ".join(["banana"] * (room // 3))  # about 7 units a word: more than one generation holds
    audio = synthesize(words + ".", voice, seed=1, models=engine)
    assert audio.duration > 0.5


def test_two_voices_at_once_do_not_mix(engine, voices):
    expected = [synthesize("Good morning.", voice, seed=11, models=engine).samples for voice in voices]
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        results[index] = synthesize("Good morning.", voices[index], seed=11, models=engine).samples

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in (0, 1):
        assert np.array_equal(results[index], expected[index])
    assert not np.array_equal(expected[0][: len(expected[1])], expected[1][: len(expected[0])])


def test_user_errors_are_clear(engine, voices):
    with pytest.raises(TextError, match="empty"):
        synthesize("   ", voices[0], models=engine)
    with pytest.raises(ValueError, match="speed"):
        synthesize("Hi.", voices[0], speed=5, models=engine)
    with pytest.raises(ValueError, match="unknown style"):
        synthesize("Hi.", voices[0], style="bored", models=engine)
    with pytest.raises(ValueError, match="engine"):
        synthesize("Hi.", voices[0], engine="nope", models=engine)


def test_parts_that_do_not_fit_are_refused(engine):
    other = SpeechTokenLM(replace(engine.lm.config, codebook_size=engine.lm.config.codebook_size + 1))
    with pytest.raises(CheckpointError, match="codebook"):
        ArEngine(engine.tokenizer, other, engine.refiner, engine.vocoder)


def test_public_api_and_missing_engine_message(tmp_path, monkeypatch, voices):
    import tts
    from tts import synthesis

    assert tts.synthesize is synthesize
    monkeypatch.setattr("tts.engines.list_shipped", lambda: [])
    with pytest.raises(CheckpointError, match="not trained yet"):
        synthesis.load_engine()


def test_say_command_writes_audio_and_shows_the_voices_consent(tmp_path, monkeypatch, capsys, engine, voices):
    from tts import synthesis
    from tts.cli import main

    monkeypatch.setattr(synthesis, "load_engine", lambda **_: engine)
    replace(voices[0], name="Slt", consent="the speaker agreed").save(tmp_path / "slt.voice")
    assert main(["say", "Hello there.", "--voice", str(tmp_path / "slt.voice"), "-o", str(tmp_path / "out.wav"),
                 "--seed", "1", "--stream"]) == 0
    from tts.audio import load_audio

    assert load_audio(tmp_path / "out.wav").duration > 0.1
    assert "voice Slt (consent: \u201cthe speaker agreed\u201d)" in capsys.readouterr().out
    voices[1].save(tmp_path / "rms.voice")
    assert main(["say", "Hi.", "--voice", str(tmp_path / "rms.voice"), "-o", str(tmp_path / "b.wav")]) == 0
    assert "(no consent recorded)" in capsys.readouterr().out


def test_convert_keeps_the_timing_and_takes_the_target_voice(tmp_path, monkeypatch, engine, voices):
    from tts import synthesis
    from tts.cli import main
    from tts.synthesis import convert

    source = voices[1].audio
    out = convert(source, voices[0], engine="ar", seed=0, models=engine)
    frames_per_token = engine.refiner.config.frames_per_token
    assert abs(out.duration - source.duration) < 2 * frames_per_token * 256 / 24000
    assert np.array_equal(out.samples, convert(source, voices[0], engine="ar", seed=0, models=engine).samples)
    monkeypatch.setattr(synthesis, "load_engine", lambda **_: engine)
    source.save(tmp_path / "src.wav")
    voices[0].save(tmp_path / "slt.voice")
    assert main(["convert", str(tmp_path / "src.wav"), "--voice", str(tmp_path / "slt.voice"), "--engine", "ar",
                 "-o", str(tmp_path / "out.wav")]) == 0
    assert (tmp_path / "out.wav").stat().st_size > 1000


def test_swap_timbre_runs_the_token_path_on_the_self_distilled_refiner(tmp_path, monkeypatch, engine, voices):
    from tts import synthesis
    from tts.cli import main
    from tts.engines import DISTILLED_REFINER
    from tts.synthesis import convert, swap_timbre

    asked = []
    monkeypatch.setattr(synthesis, "load_engine", lambda **names: asked.append(names) or engine)
    source = voices[1].audio
    swapped = swap_timbre(source, voices[0], seed=0, watermark=False)
    assert asked == [{"refiner": DISTILLED_REFINER}]
    same_models = convert(source, voices[0], engine="ar", seed=0, models=engine, watermark=False)
    assert np.array_equal(swapped.samples, same_models.samples)  # the engines differ only by their refiner
    source.save(tmp_path / "src.wav")
    voices[0].save(tmp_path / "slt.voice")
    assert main(["convert", str(tmp_path / "src.wav"), "--voice", str(tmp_path / "slt.voice"), "--engine",
                 "distilled", "-o", str(tmp_path / "out.wav")]) == 0
    assert asked[-1] == {"refiner": DISTILLED_REFINER}


def test_the_distilled_engine_says_what_is_missing(shipped_root, voices):
    from tts.errors import CheckpointError
    from tts.synthesis import swap_timbre

    with pytest.raises(CheckpointError, match="'distilled' engine is unavailable: not trained yet.*flow_refiner_distilled"):
        swap_timbre(voices[1].audio, voices[0])


def test_output_is_watermarked_unless_asked_not_to(engine, voices):
    """The mark is the fixed-depth filter on the same samples (detection on real speech: test_shipped_engine)."""
    from tts.watermark import embed_fixed

    text = "One more sentence. And another one, please, for the mark."
    marked = synthesize(text, voices[0], seed=2, models=engine)
    plain = synthesize(text, voices[0], seed=2, models=engine, watermark=False)
    assert not np.array_equal(marked.samples, plain.samples)
    np.testing.assert_allclose(marked.samples, embed_fixed(plain).samples, atol=1e-6)
