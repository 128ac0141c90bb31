"""Forced alignment: CTC Viterbi on constructed posteriors, word timings, errors, the end-to-end call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tts.audio import STUDIO_MEL, Audio
from tts.errors import TextError
from tts.text import PHONEME_TABLE, Word
from tts.tokenizer.align import (
    align,
    align_log_probs,
    ctc_targets,
    ctc_viterbi,
    min_ctc_frames,
)
from tts.tokenizer.model import SpeechTokenizer
from tts.tokenizer.train import PRESETS

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = PRESETS["tiny"].model
VOCAB = CONFIG.phoneme_vocab_size
STEP = CONFIG.mel_frames_per_alignment_frame  # mel frames per alignment posterior (3: the token rate)
HOP = STUDIO_MEL.hop_length / STUDIO_MEL.sample_rate


def posterior(labels_per_frame: list[int], confidence: float = 0.9, seed: int = 0) -> np.ndarray:
    """``(T, V)`` log-probabilities where each frame favours its label (noise elsewhere)."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.5, 1.5, size=(len(labels_per_frame), VOCAB))
    for t, label in enumerate(labels_per_frame):
        probs[t] *= (1 - confidence) / probs[t].sum()
        probs[t, label] = confidence
    return np.log(probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def frames_for(segments: list[tuple[int, int]], num_frames: int) -> list[int]:
    """Label per frame: blank (0) outside the ``(label, length)`` runs laid out with the gaps given as label 0."""
    labels: list[int] = []
    for label, length in segments:
        labels += [label] * length
    assert len(labels) == num_frames
    return labels


def test_viterbi_recovers_known_segments_exactly():
    #            blank  p   blank   q   blank  q   r    blank
    segments = [(0, 3), (30, 3), (0, 1), (31, 2), (0, 1), (31, 3), (32, 3), (0, 4)]
    log_probs = posterior(frames_for(segments, 20))
    spans = ctc_viterbi(log_probs, [30, 31, 31, 32])
    assert spans.tolist() == [[3, 6], [7, 9], [10, 13], [13, 16]]


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_recovers_random_segmentations(seed):
    rng = np.random.default_rng(seed)
    labels, expected, frames, previous = [], [], [], None
    for _ in range(12):
        label = int(rng.integers(22, 40))
        gap = int(rng.integers(0, 3))
        if label == previous:
            gap = max(gap, 1)  # a repeated label needs a blank between
        frames += [0] * gap
        length = int(rng.integers(1, 5))
        expected.append([len(frames), len(frames) + length])
        frames += [label] * length
        labels.append(label)
        previous = label
    frames += [0] * int(rng.integers(0, 3))
    spans = ctc_viterbi(torch.from_numpy(posterior(frames, seed=seed)), labels)
    assert spans.tolist() == expected


def test_viterbi_refuses_too_few_frames():
    assert min_ctc_frames([5, 5, 6]) == 4
    with pytest.raises(ValueError, match="at least 4 frames"):
        ctc_viterbi(posterior([0, 0, 0]), [5, 5, 6])
    with pytest.raises(ValueError, match="no CTC targets"):
        ctc_viterbi(posterior([0, 0, 0]), [])


def word(text: str, *phonemes: str) -> Word:
    return Word(text, tuple(phonemes))


WORDS = [
    word("hello", "h", "ə", "l", "ˈ", "oʊ"),
    Word(",", ()),
    word("bob", "b", "ˈ", "ɑ", "b"),
    word("smith", "s", "m", "ˈ", "ɪ", "θ"),
    Word(".", ()),
]


def test_ctc_targets_drop_stress_and_punctuation():
    assert PHONEME_TABLE.decode(ctc_targets(WORDS)) == ["h", "ə", "l", "oʊ", "b", "ɑ", "b", "s", "m", "ɪ", "θ"]


def constructed_clip():
    """Posteriors and energies of a clip: 10 silent frames, 'hello' (frames 10-29), a 15-frame pause, 'bob'
    (45-59) running straight into 'smith' (60-79), then 12 silent frames. Each phoneme fires on one frame."""
    ids = [PHONEME_TABLE.id(s) for s in ("h", "ə", "l", "oʊ", "b", "ɑ", "b", "s", "m", "ɪ", "θ")]
    fire = [11, 15, 20, 25, 46, 51, 57, 61, 66, 70, 76]
    labels = [0] * 92
    for frame, label in zip(fire, ids):
        labels[frame] = label
    energy = np.full(92, -80.0)
    energy[10:30] = -20.0
    energy[45:80] = -20.0
    return posterior(labels), energy


def test_word_timings_from_constructed_posteriors():
    log_probs, energy = constructed_clip()
    timings = align_log_probs(log_probs, WORDS, energy, CONFIG)
    assert [t.word for t in timings] == ["hello", ",", "bob", "smith", "."]
    hello, comma, bob, smith, stop = timings

    def frame_time(frame: int) -> float:
        return (frame * STEP - 0.5) * HOP

    # Leading silence is left out; sound next to the first and last phoneme belongs to them.
    assert hello.start == pytest.approx(frame_time(10))
    assert hello.end == pytest.approx(frame_time(30))
    # The pause between "hello" and "bob" is the comma's.
    assert comma.start == pytest.approx(hello.end) and comma.end == pytest.approx(bob.start)
    assert bob.start == pytest.approx(frame_time(45))
    # No pause between "bob" and "smith": they touch, the gap split in the middle.
    assert bob.end == pytest.approx(smith.start)
    assert frame_time(57) < bob.end < frame_time(61)
    assert smith.end == pytest.approx(frame_time(80))
    assert stop.start == stop.end == pytest.approx(smith.end)
    # In order, without overlap; one phoneme timing per symbol of the word, stress marks zero-length.
    for earlier, later in zip(timings, timings[1:]):
        assert earlier.start <= earlier.end <= later.start <= later.end
    for timing, source in zip(timings, WORDS):
        assert [p.phoneme for p in timing.phonemes] == list(source.phonemes)
        for p in timing.phonemes:
            assert (p.end == p.start) == (p.phoneme == "ˈ")
        for earlier, later in zip(timing.phonemes, timing.phonemes[1:]):
            assert earlier.end <= later.start + 1e-9
    stress = bob.phonemes[1]
    assert stress.start == bob.phonemes[2].start


def test_text_longer_than_the_audio_is_a_clear_error():
    log_probs, energy = constructed_clip()
    too_many = WORDS * 5  # 55 phonemes in 10 frames
    with pytest.raises(TextError, match="longer than the audio"):
        align_log_probs(log_probs[:10], too_many, energy[:10], CONFIG)
    with pytest.raises(TextError, match="no phonemes"):
        align_log_probs(log_probs, [Word(".", ())], energy, CONFIG)


def test_align_end_to_end_with_an_untrained_model():
    torch.manual_seed(0)
    model = SpeechTokenizer(CONFIG).eval()
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * STUDIO_MEL.sample_rate)) / STUDIO_MEL.sample_rate
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * (t > 0.2) * (t < 1.3) + 0.001 * rng.standard_normal(len(t)))
    audio = Audio(samples.astype(np.float32))
    timings = align(audio, "Hello, world.", model)
    assert [t.word for t in timings] == ["Hello", ",", "world", "."]
    for earlier, later in zip(timings, timings[1:]):
        assert earlier.end <= later.start + 1e-9
    assert all(0.0 <= t.start <= t.end <= audio.duration for t in timings)
    assert timings[0].to_dict()["word"] == "Hello"
    with pytest.raises(TextError, match="longer than the audio"):
        align(Audio(samples[:2400].astype(np.float32)), "Hello, world. " * 4, model)


def _trimmed(samples: np.ndarray, gate_db: float = 40.0) -> np.ndarray:
    frame = STUDIO_MEL.sample_rate // 200  # 5 ms
    count = len(samples) // frame
    power = (samples[: count * frame].reshape(count, frame) ** 2).mean(axis=1)
    level = 10 * np.log10(power + 1e-12)
    active = np.flatnonzero(level > level.max() - gate_db)
    return samples[active[0] * frame : (active[-1] + 1) * frame]


@pytest.mark.slow
def test_shipped_tokenizer_finds_known_word_boundaries():
    """Words synthesized one by one and joined with known gaps: the shipped aligner finds their boundaries."""
    from tts.checkpoints import checkpoints_dir
    from tts.data import synthesize_voice_id
    from tts.tokenizer.cli import DEFAULT_CHECKPOINT, load_tokenizer

    if not (checkpoints_dir() / DEFAULT_CHECKPOINT).is_dir():
        pytest.skip("the speech tokenizer is not shipped yet")
    model = load_tokenizer()
    text = "Seven sheep were sleeping under the old oak tree"
    rate = STUDIO_MEL.sample_rate
    pieces, truth, position = [np.zeros(rate // 4, np.float32)], [], rate // 4
    for index, spoken in enumerate(text.split()):
        samples = _trimmed(synthesize_voice_id("espeak:en-us", spoken).audio.samples)
        truth.append((position / rate, (position + len(samples)) / rate))
        gap = rate // 8 if index % 3 == 2 else 0
        pieces += [samples, np.zeros(gap, np.float32)]
        position += len(samples) + gap
    pieces.append(np.zeros(rate // 4, np.float32))
    timings = [t for t in align(Audio(np.concatenate(pieces)), text, model) if not t.is_punctuation]
    assert len(timings) == len(truth)
    errors = np.abs(np.array([(t.start, t.end) for t in timings]) - np.array(truth))
    assert np.median(errors) < 0.05 and errors.max() < 0.2


def _festival_word_spans(voice: str, text: str, folder) -> tuple[Audio, list[tuple[str, float, float]]]:
    """`voice` of festival saying `text`, and each word's span from festival's own segment timings: a word ends
    where its relation says, and starts where the word before it ends, or after the pause in between."""
    import subprocess

    from tts.audio import load_audio

    script = folder / "say.scm"
    script.write_text(f'(voice_{voice})\n(set! u (utt.synth (eval (list \'Utterance \'Text "{text}"))))\n'
                      f'(utt.save.wave u "{folder}/say.wav" \'riff)\n(utt.save.segs u "{folder}/say.segs")\n'
                      f'(utt.save.words u "{folder}/say.words")\n')
    subprocess.run(["festival", "-b", str(script)], check=True, timeout=120, capture_output=True)

    def rows(name):
        return [(float(line.split()[0]), line.split()[2]) for line in (folder / name).read_text().splitlines()
                if len(line.split()) == 3]

    segments = rows("say.segs")
    pauses = [(segments[i - 1][0] if i else 0.0, end) for i, (end, name) in enumerate(segments) if name == "pau"]
    spans, previous = [], 0.0
    for end, word in rows("say.words"):
        start = next((pause_end for pause_start, pause_end in pauses if abs(pause_start - previous) < 1e-6), previous)
        spans.append((word.lower(), start, end))
        previous = end
    return load_audio(folder / "say.wav"), spans


@pytest.mark.slow
def test_shipped_aligner_matches_festival_timings_of_a_held_out_voice(tmp_path):
    """Natural sentences of a voice no model was trained on (festival's slt HTS voice), against the segment timings
    festival itself used: the shipped aligner's word boundaries within tens of milliseconds (median 19 ms on 36
    held-out texts, docs/benchmarks.md)."""
    import shutil

    from tts.checkpoints import checkpoints_dir
    from tts.tokenizer.cli import DEFAULT_CHECKPOINT, load_tokenizer

    if not (checkpoints_dir() / DEFAULT_CHECKPOINT).is_dir():
        pytest.skip("the speech tokenizer is not shipped yet")
    if shutil.which("festival") is None:
        pytest.skip("festival is not installed (make installs it)")
    model = load_tokenizer()
    errors = []
    for text in ("Nobody answered the door", "Watch out for the ice on the front steps",
                 "When the storm passed the children ran outside to splash in the puddles"):
        audio, spans = _festival_word_spans("cmu_us_slt_arctic_hts", text, tmp_path)
        timings = [t for t in align(audio, text, model) if not t.is_punctuation]
        assert [t.word.lower() for t in timings] == [word for word, _, _ in spans]
        errors += [abs(t.start - start) for t, (_, start, _) in zip(timings, spans)]
        errors += [abs(t.end - end) for t, (_, _, end) in zip(timings, spans)]
    assert np.median(errors) < 0.035 and np.percentile(errors, 90) < 0.08 and max(errors) < 0.15, errors


def test_no_phoneme_is_placed_in_silence():
    log_probs, energy = constructed_clip()
    # The model wrongly fires "h" in the leading silence (frame 3) and a little at its true place.
    h = PHONEME_TABLE.id("h")
    log_probs[3] = np.log(np.full(VOCAB, 0.01 / (VOCAB - 1)))
    log_probs[3, h] = np.log(0.99)
    log_probs[11, h], log_probs[11, 0] = np.log(0.3), np.log(0.6)
    hello = align_log_probs(log_probs, WORDS, energy, CONFIG)[0]
    assert hello.start == pytest.approx((10 * STEP - 0.5) * HOP)
