"""Quality gates on the shipped `ar` checkpoints: a held-out voice says held-out sentences intelligibly, in about
the right time, and the vocoder keeps a voice through copy synthesis.

The bounds sit below what the shipped models measured (docs/benchmarks.md), so a retrained checkpoint that is
worse fails here before it ships. They run the real models on CPU: a few seconds each.
"""

from __future__ import annotations

import numpy as np
import pytest

from tts.engines import engine_status

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.skipif(not next(s for s in engine_status() if s.name == "ar").available,
                       reason="the ar engine's checkpoints are not shipped"),
]

PROMPT = ("flite:awb", "Please call Stella and ask her to bring these things with her from the store.")
"""A held-out voice (no training recipe may use flite:awb) and its transcript."""
SENTENCES = (
    "The sun was shining brightly over the quiet little town.",
    "Please remember to bring your umbrella tomorrow morning.",
)
GATE_MEAN_WER = 0.35
GATE_MAX_WER = 0.6
GATE_VOCODER_SIM = 0.88


def held_out_sentence_wers(voice, **options) -> list[float]:
    """WER of each of `SENTENCES` said by `synthesize` (seeded by its index, `options` passed on) in `voice`, each
    asserted to take about the time its words need."""
    from tts.evaluation.asr import transcribe
    from tts.evaluation.wer import wer
    from tts.synthesis import synthesize

    errors = []
    for index, text in enumerate(SENTENCES):
        audio = synthesize(text, voice, seed=index, **options)
        words = len(text.split())
        assert 0.15 * words < audio.duration < 0.8 * words, f"{audio.duration:.2f} s for {words} words"
        errors.append(wer(text, transcribe(audio)))
    return errors


def held_out_prompt():
    """``(voice, reference clip)`` of `PROMPT`; skips the test where flite is not installed."""
    from tts.data.speakers import speaker_status, synthesize_voice_id
    from tts.voice import clone_voice

    if speaker_status().get("flite"):
        pytest.skip(f"flite is needed for the prompt: {speaker_status()['flite']}")
    voice_id, transcript = PROMPT
    reference = synthesize_voice_id(voice_id, transcript).audio
    return clone_voice(reference, transcript), reference


@pytest.fixture(scope="module")
def shipped():
    from tts.synthesis import load_engine

    return load_engine(), *held_out_prompt()


def test_held_out_voice_says_held_out_sentences(shipped):
    engine, voice, _ = shipped
    errors = held_out_sentence_wers(voice, models=engine)
    assert max(errors) <= GATE_MAX_WER, errors
    assert float(np.mean(errors)) <= GATE_MEAN_WER, errors


def test_vocoder_keeps_the_voice_in_copy_synthesis(shipped):
    from tts.audio import log_mel
    from tts.evaluation.similarity import similarity

    engine, _, reference = shipped
    copy = engine.vocoder.decode(log_mel(reference.to_tensor()))
    assert abs(copy.duration - reference.duration) < 0.02
    assert similarity(copy, reference) >= GATE_VOCODER_SIM


def test_the_shipped_refiner_renders_angry_itself_and_a_whisper_is_rendered_on_its_audio(shipped):
    """The refiner was trained with the corpus style labels: `ar` renders a plain label itself (no post-processing),
    and the shipped style classifier hears it. A whisper is always rendered on the audio (`SIGNAL_RENDERED`: the
    refiner's own whisper stays voiced), and heard as one."""
    from tts.data.styles import STYLES
    from tts.evaluation.style_classifier import load_style_classifier
    from tts.style import Style
    from tts.synthesis import plan_chunks, synthesize

    engine, voice, _ = shipped
    assert engine.refiner.config.styles == STYLES
    classifier = load_style_classifier()
    for label in ("whisper", "angry"):
        [(_, conditioning)] = plan_chunks(SENTENCES[0], Style(label), labels=engine.refiner.config.styles,
                                          native_rate=False)
        if label == "whisper":
            assert conditioning.emotion == "neutral" and conditioning.residual.aperiodicity == 1.0
        else:
            assert conditioning.emotion == label and not conditioning.has_residual
        audio = synthesize(SENTENCES[0], voice, emotion=label, seed=0, models=engine, watermark=False)
        assert classifier.classify(audio).label == label


def test_refiner_stream_equals_its_whole_output_and_the_bench_times_it(shipped):
    """`refine_token_stream` (what `ar` streams and `timbre bench`'s ``refiner:flow`` times) gives the samples of
    `refine_tokens` (within the vocoder's streaming tolerance), on the reference clip's own tokens; the bench target
    measures an RTF and a time to first audio."""
    import torch

    from tts.evaluation.bench import run_bench
    from tts.synthesis import SynthesisOptions, prepare_prompt, refine_token_stream, refine_tokens

    engine, voice, reference = shipped
    prompt = prepare_prompt(engine, voice)
    with torch.inference_mode():
        tokens = engine.tokenizer.tokenize(reference)
    whole = refine_tokens(engine, prompt, tokens, SynthesisOptions(), seed=3).samples
    pieces = list(refine_token_stream(engine, prompt, tokens, SynthesisOptions(), seed=3))
    assert len(pieces) > 1
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-3
    result = run_bench(["refiner:flow"], texts=[SENTENCES[0]], repeats=1, isolate=False, references=()
                       ).result("refiner:flow")
    assert result.status == "measured", result.reason
    assert result.rtf > 0 and result.ttfa_seconds is not None
