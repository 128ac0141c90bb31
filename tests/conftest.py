"""Shared test fixtures: deterministic seeds, small synthetic audio, an isolated checkpoint folder, the flite speaker."""

from __future__ import annotations

import numpy as np
import pytest

from tts.audio import SAMPLE_RATE, Audio


@pytest.fixture
def tone() -> Audio:
    """1 s of a 220 Hz tone with a little harmonic content at 24 kHz."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    return Audio(samples.astype(np.float32), SAMPLE_RATE)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny-model tests: they gain nothing from threads, and extra threads
    only spin when the machine is shared. Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shipped_root(tmp_path, monkeypatch):
    """An empty stand-in for checkpoints/, selected through TIMBRE_CHECKPOINTS."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    monkeypatch.setenv("TIMBRE_CHECKPOINTS", str(root))
    return root


@pytest.fixture
def scripted_asr(monkeypatch):
    """Stands in for the offline ASR (`tts.evaluation.asr.transcribe`) in `synthesize(verify=True)` tests:
    ``scripted_asr(["heard first", "heard next", ...])`` makes it hear those transcripts in turn (the last one
    after that) and returns the list of the `Audio` it was given, one per rendering it checked."""

    def script(transcripts):
        heard, checked = list(transcripts), []

        def transcribe(audio, model=None):
            checked.append(audio)
            return heard[min(len(checked), len(heard)) - 1]

        monkeypatch.setattr("tts.evaluation.asr.transcribe", transcribe)
        return checked

    return script


COMPAT_DIR = __import__("pathlib").Path(__file__).resolve().parent / "data" / "compat"
"""Copy of the steering repo's compat data (published manifests, tiny golden weights and outputs)."""


@pytest.fixture(scope="module")
def flite():
    """The flite base speaker (real speech in a second); skips the test where flite is not installed."""
    from tts.data.speakers import get_speaker

    speaker = get_speaker("flite")
    if speaker.unavailable_reason():
        pytest.skip(speaker.unavailable_reason())
    return speaker


TONE_CORPUS_ITEMS = (
    ("Hello there.", "h ə l ˈ oʊ | ð ˈ ɛ ɹ | ."),
    ("Red and blue.", "ɹ ˈ ɛ d | æ n d | b l ˈ uː | ."),
    ("Good morning.", "ɡ ˈ ʊ d | m ˈ ɔː ɹ n ɪ ŋ | ."),
)


def write_tone_corpus(folder, voices=(("flite:rms", 110.0), ("flite:slt", 210.0))):
    """A six-item corpus in `folder` for training tests: each voice a harmonic tone at its pitch (vibrato, fade),
    three texts with their phonemes, 1-1.8 s, as WAV files and ``metadata.jsonl``. Returns `folder`."""
    from tts.data.corpus import METADATA_NAME, CorpusItem

    rng = np.random.default_rng(0)
    lines = []
    for voice, pitch in voices:
        for index, (text, phonemes) in enumerate(TONE_CORPUS_ITEMS):
            seconds = 1.0 + 0.4 * index
            t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))) / SAMPLE_RATE
            wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 * np.sin(np.pi * t / seconds)
            name = f"{voice.split(':')[1]}_{index}.wav"
            Audio((wave + 0.005 * rng.standard_normal(len(t))).astype(np.float32)).save(folder / name)
            lines.append(CorpusItem(name, text, voice, phonemes=phonemes, duration=seconds, engine="test").to_json())
    (folder / METADATA_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
