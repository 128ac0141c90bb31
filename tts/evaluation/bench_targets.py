"""The built-in `timbre bench` targets: the base speakers (two of them the references), the text front
end, and the evaluation's own models; plus the studio engines, listed as skipped until they exist.

Each target's functions run inside its worker process; nothing here loads a model at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from tts.audio import Audio
from tts.evaluation.bench import BenchResult, BenchTarget

if TYPE_CHECKING:
    import torch

BENCH_TEXTS: tuple[str, ...] = (
    "The kettle clicked off just as the phone began to ring.",
    "On the second of June, the small bookshop raised $1,250 for the animal shelter down the road.",
    "When the rain finally stopped, we walked along the harbour, counting the boats that had come in with "
    "the evening tide and listening to the gulls.",
)
"""Short, medium and long; not held-out texts (those stay unseen by anything that tunes on the bench)."""

QUICK_TEXTS: tuple[str, ...] = BENCH_TEXTS[:2]

WARMUP_TEXT = "A short sentence to warm up the engine."

BASE_SPEAKER_TARGETS: tuple[str, ...] = (
    "kokoro:jf_alpha",
    "piper:joe",
    "flite:slt",
    "festival:kal_diphone",
    "festival:cmu_us_slt_arctic_hts",
    "espeak:en-us",
)

QUICK_TARGETS: tuple[str, ...] = ("base:kokoro:jf_alpha", "base:piper:joe", "base:flite:slt", "base:espeak:en-us", "text:frontend")

_REFERENCE_NOTES = {"kokoro:jf_alpha": "reference: Kokoro-82M int8 ONNX", "piper:joe": "reference: Piper en_US-joe-medium (VITS)"}


def _base_speaker_target(voice_id: str) -> BenchTarget:
    engine, _, voice = voice_id.partition(":")

    def load():
        from tts.data.speakers import get_speaker

        speaker = get_speaker(engine)
        speaker.synthesize("Load.", voice)  # models load lazily: the first call is the load
        return speaker

    def run(speaker, text: str) -> Audio:
        return speaker.synthesize(text, voice).audio

    def unavailable() -> str | None:
        from tts.data.speakers import speaker_status

        return speaker_status().get(engine, f"unknown base speaker {engine!r}")

    note = _REFERENCE_NOTES.get(voice_id, "base speaker")
    return BenchTarget(f"base:{voice_id}", "base speaker", f"{note}; end to end, 24 kHz output", load, run,
                       unavailable=unavailable)


def _text_frontend_target() -> BenchTarget:
    def load():
        from tts.text import prepare_text

        prepare_text("Load.")  # starts espeak-ng
        return prepare_text

    def run(prepare_text, text: str) -> None:
        from tts.text.g2p import clear_cache

        clear_cache()  # phonemes are cached per word run; time the uncached work
        prepare_text(text)
        return None

    return BenchTarget("text:frontend", "component", "text front end: normalize + espeak-ng G2P + phoneme ids",
                       load, run)


class _AudioInputs:
    """Component state: a model plus the flite clips of the bench texts it is timed on."""

    def __init__(self, model) -> None:
        self.model = model
        self.clips: dict[str, Audio] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        from tts.data.speakers import synthesize_voice_id

        for text in texts:
            self.clips[text] = synthesize_voice_id("flite:slt", text).audio


def _analysis_target(name: str, description: str, load_model, analyse) -> BenchTarget:
    def run(state: _AudioInputs, text: str) -> float:
        clip = state.clips[text]
        analyse(state.model, clip)
        return clip.duration

    def unavailable() -> str | None:
        from tts.data.speakers import speaker_status

        reason = speaker_status().get("flite")
        return f"needs flite for its input audio: {reason}" if reason else None

    return BenchTarget(name, "component", description, lambda: _AudioInputs(load_model()), run,
                       prepare=lambda state, texts: state.prepare(texts), unavailable=unavailable)


def _load_whisper():
    from tts.evaluation.asr import get_asr

    asr = get_asr()
    asr.transcribe(Audio([0.0] * 16_000, 16_000))
    return asr


def _load_resemblyzer():
    from tts.evaluation import similarity

    similarity._encoder(similarity.DEFAULT_SIM_MODEL)
    return similarity


def _load_dnsmos():
    from tts.evaluation import quality

    quality._dnsmos()
    return quality


ENGINE_BENCH_VOICE = ("flite:rms", "Please call Stella and ask her to bring these things with her from the store.")
"""The studio engines' bench voice: a clip of a base speaker with its transcript (rendered, then cloned)."""


def _engine_loader(engine: str):
    if engine == "dit":
        from tts.dit.engine import load_dit_engine

        return load_dit_engine()
    from tts.synthesis import load_engine

    return load_engine()


def _bench_voice():
    """`ENGINE_BENCH_VOICE` rendered and cloned."""
    from tts.data.speakers import synthesize_voice_id
    from tts.voice import clone_voice

    voice_id, transcript = ENGINE_BENCH_VOICE
    return clone_voice(synthesize_voice_id(voice_id, transcript).audio, transcript)


def _studio_engine_unavailable(engine: str, needs_flite_for: str) -> str | None:
    """Why a target on the studio engine `engine` cannot run here: its checkpoints, or flite (which renders
    `needs_flite_for`)."""
    from tts.data.speakers import speaker_status
    from tts.engines import engine_status

    status = next(s for s in engine_status() if s.name == engine)
    if not status.available:
        return status.reason
    reason = speaker_status().get("flite")
    return f"needs flite for {needs_flite_for}: {reason}" if reason else None


class _EngineState:
    """A studio engine's shipped models and the bench voice, warmed up by one short text (part of the timed
    load, as a user's first request pays it)."""

    def __init__(self, engine: str) -> None:
        from tts.synthesis import synthesize

        self.name = engine
        self.models = _engine_loader(engine)
        self.voice = _bench_voice()
        self.synthesize = synthesize
        self.say(WARMUP_TEXT)

    def say(self, text: str, stream: bool = False):
        return self.synthesize(text, self.voice, engine=self.name, seed=0, models=self.models, stream=stream)


def _engine_target(engine: str, description: str, streams: bool) -> BenchTarget:
    return BenchTarget(
        f"engine:{engine}", "engine", f"studio engine {engine}: {description} (shipped checkpoints)",
        lambda: _EngineState(engine), lambda state, text: state.say(text),
        stream=(lambda state, text: state.say(text, stream=True)) if streams else None,
        unavailable=lambda: _studio_engine_unavailable(engine, "its voice prompt"),
    )


def _conversion_target() -> BenchTarget:
    """`DitEngine.convert`: flite's slt saying each bench text said again in the bench voice (transcripts given, so
    the ASR is not timed); RTF over the recording's duration."""

    def load() -> _AudioInputs:
        from tts.data.speakers import synthesize_voice_id
        from tts.dit.engine import load_dit_engine

        models, voice = load_dit_engine(), _bench_voice()
        models.convert(synthesize_voice_id("flite:slt", WARMUP_TEXT).audio, voice, WARMUP_TEXT)
        return _AudioInputs((models, voice))

    def run(state: _AudioInputs, text: str) -> float:
        models, voice = state.model
        clip = state.clips[text]
        models.convert(clip, voice, text)
        return clip.duration

    return BenchTarget("convert:dit", "engine", "voice conversion with the dit engine: a recording said again in the "
                       "bench voice (shipped checkpoints)", load, run,
                       prepare=lambda state, texts: state.prepare(texts),
                       unavailable=lambda: _studio_engine_unavailable("dit", "its recordings and voice prompt"))


class _RefinerInputs(_AudioInputs):
    """The `ar` engine's parts with the bench voice's prompt, and the speech tokens of flite's clip of each text."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.tokens: dict[str, torch.Tensor] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        import torch

        super().prepare(texts)
        with torch.inference_mode():
            for text in texts:
                self.tokens[text] = self.model[0].tokenizer.tokenize(self.clips[text])


def _refiner_target() -> BenchTarget:
    """Issue #6's refiner + vocoder: speech tokens (of flite's slt saying each bench text) said in the bench voice
    by the shipped flow refiner (`tts.synthesis.SynthesisOptions`' steps and guidance) and the vocoder; RTF over
    the audio made; streamed (`refine_token_stream`), the time to its first audio."""

    def load() -> _RefinerInputs:
        from tts.synthesis import load_engine, prepare_prompt

        engine = load_engine()
        return _RefinerInputs((engine, prepare_prompt(engine, _bench_voice())))

    def run(state: _RefinerInputs, text: str) -> Audio:
        from tts.synthesis import SynthesisOptions, refine_tokens

        engine, prompt = state.model
        return refine_tokens(engine, prompt, state.tokens[text], SynthesisOptions(), seed=0)

    def stream(state: _RefinerInputs, text: str) -> Iterator[Audio]:
        from tts.synthesis import SynthesisOptions, refine_token_stream

        engine, prompt = state.model
        for piece in refine_token_stream(engine, prompt, state.tokens[text], SynthesisOptions(), seed=0):
            yield Audio(piece, engine.vocoder.sample_rate)

    return BenchTarget("refiner:flow", "component", "flow refiner + vocoder: speech tokens of a clip said in the bench "
                       "voice (shipped checkpoints; streams by refiner chunks)", load, run, stream=stream,
                       prepare=lambda state, texts: state.prepare(texts),
                       unavailable=lambda: _studio_engine_unavailable("ar", "its input clips and voice prompt"))


def _load_vocoder():
    from vocoder.cli import load_vocoder

    return load_vocoder()


def _vocode(vocoder, clip: Audio) -> Audio:
    from tts.audio import log_mel

    return vocoder.decode(log_mel(clip.to_tensor()))


def _griffin_lim(_, clip: Audio) -> Audio:
    from tts.audio import log_mel
    from vocoder.griffin_lim import griffin_lim_decode

    return griffin_lim_decode(log_mel(clip.to_tensor()))


def bench_targets() -> list[BenchTarget]:
    """The built-in targets."""
    targets = [_base_speaker_target(voice_id) for voice_id in BASE_SPEAKER_TARGETS]
    targets.append(_engine_target("ar", "token LM + flow refiner + vocoder", streams=True))
    targets.append(_engine_target("dit", "DiT infilling after the reference + vocoder (streams a short first piece, "
                                  "then by chunk)", streams=True))
    targets.append(_conversion_target())
    targets.append(_refiner_target())
    targets.append(_text_frontend_target())
    targets.append(_analysis_target("vocoder:vocos", "vocoder: shipped Vocos (clip -> studio mel -> audio)",
                                    _load_vocoder, _vocode))
    targets.append(_analysis_target("vocoder:griffin-lim", "vocoder baseline: Griffin-Lim, 32 iterations (clip -> studio mel -> audio)",
                                    lambda: None, _griffin_lim))
    targets.append(_analysis_target("eval:asr-whisper-tiny.en", "evaluation: Whisper tiny.en int8 transcription",
                                    _load_whisper, lambda asr, clip: asr.transcribe(clip)))
    targets.append(_analysis_target("eval:sim-resemblyzer", "evaluation: Resemblyzer speaker embedding",
                                    _load_resemblyzer, lambda sim, clip: sim.speaker_embedding(clip)))
    targets.append(_analysis_target("eval:dnsmos", "evaluation: DNSMOS P.835", _load_dnsmos,
                                    lambda quality, clip: quality.dnsmos(clip)))
    return targets


def studio_engine_skips(targets: dict[str, BenchTarget]) -> list[BenchResult]:
    """A skipped result for each studio engine that cannot be measured, saying why."""
    from tts.engines import engine_status

    skips = []
    for status in engine_status("synthesis"):
        name = f"engine:{status.name}"
        if not status.available:
            skips.append(BenchResult(name, "engine", "studio engine", "skipped", status.reason))
        elif name not in targets:
            skips.append(BenchResult(name, "engine", "studio engine", "skipped",
                                     "ready, but no bench target is registered for it yet"))
    return skips
