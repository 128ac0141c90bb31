"""How well the studio's watermark (`tts.watermark`) survives and how audible it is: the transformations it must
survive, the clips it is measured on, and the robustness and quality tables of docs/reliability.md.

    python -m tts.evaluation.watermark --measure 200 --kokoro 4           # robustness, base-speaker speech
    python -m tts.evaluation.watermark --measure 200 --fixed --synthesized  # the studio's own outputs
    python -m tts.evaluation.watermark --quality 20                       # WER / SIM / PESQ of marked speech

The transformations (`mp3_round_trip`, `change_gain`, `excerpt`, `ROBUSTNESS_TRANSFORMS`) are shared with the
tests. Nothing heavy happens on import.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tts.audio import SAMPLE_RATE, Audio, load_audio
from tts.errors import TimbreError
from tts.watermark import DEFAULT_CONFIG, DEFAULT_KEY, Detection, Key, detect, embed, embed_fixed, watermark_snr_db

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# The transformations the mark must survive (shared by the tests and `measure_robustness`)


def mp3_round_trip(audio: Audio, bitrate: int = 64_000) -> Audio:
    """`audio` encoded to MP3 at `bitrate` bits/s (LAME through PyAV, at the audio's rate) and decoded."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=audio.sample_rate)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.clip(audio.samples, -1.0, 1.0)[None, :], format="fltp", layout="mono")
        frame.sample_rate = audio.sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return load_audio(buffer.getvalue(), sample_rate=audio.sample_rate, max_seconds=None)


def change_gain(audio: Audio, factor: float) -> Audio:
    """`audio` times `factor`, scaled back to a peak of 1.0 where that would clip (clipping prevention)."""
    samples = audio.samples.astype(np.float64) * factor
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 1.0:
        samples /= peak
    return Audio(samples.astype(np.float32), audio.sample_rate)


def excerpt(audio: Audio, seconds: float, start_seconds: float) -> Audio:
    """`seconds` of `audio` from `start_seconds` (clamped so the excerpt stays inside the clip)."""
    length = min(len(audio), round(seconds * audio.sample_rate))
    start = min(max(0, round(start_seconds * audio.sample_rate)), len(audio) - length)
    return Audio(audio.samples[start : start + length].copy(), audio.sample_rate)


def _random_excerpt(audio: Audio, rng: np.random.Generator, seconds: float = 3.0) -> Audio:
    return excerpt(audio, seconds, float(rng.uniform(0.0, max(0.0, audio.duration - seconds))))


def _add_noise(audio: Audio, rng: np.random.Generator, snr_db: float = 20.0) -> Audio:
    power = float(np.mean(audio.samples.astype(np.float64) ** 2))
    noise = rng.normal(0.0, math.sqrt(power * 10 ** (-snr_db / 10)), len(audio))
    return Audio((audio.samples + noise).astype(np.float32), audio.sample_rate)


def _time_stretch(audio: Audio, rate: float) -> Audio:
    from tts.data.system_voices import time_stretch

    return Audio(time_stretch(audio.samples, rate), audio.sample_rate)


Transform = Callable[[Audio, np.random.Generator], Audio]

ROBUSTNESS_TRANSFORMS: dict[str, Transform] = {
    "none": lambda audio, rng: audio,
    "resample to 16 kHz": lambda audio, rng: audio.resample(16_000),
    "resample to 16 kHz and back": lambda audio, rng: audio.resample(16_000).resample(audio.sample_rate),
    "MP3 64 kbps": lambda audio, rng: mp3_round_trip(audio, 64_000),
    "gain x0.3": lambda audio, rng: change_gain(audio, 0.3),
    "gain x2 (peak-limited)": lambda audio, rng: change_gain(audio, 2.0),
    "random 3 s excerpt": _random_excerpt,
    "3 s excerpt + 16 kHz + MP3 64 kbps": lambda audio, rng: mp3_round_trip(
        _random_excerpt(audio, rng).resample(16_000)
    ),
    "white noise at 20 dB SNR": _add_noise,
    "time stretch x0.9 (pitch kept)": lambda audio, rng: _time_stretch(audio, 0.9),
    "speed x1.02 (pitch +2 %)": lambda audio, rng: Audio(audio.samples, round(audio.sample_rate * 1.02)),
}
"""Name -> transformation. The first seven are the issue's requirements; the rest probe beyond them, and
the last one (a 2 % speed change, which moves every cell) is a known limit."""


# ---------------------------------------------------------------------------------------------------------
# Measurement: heavy work happens only when called

MEASURE_VOICES = (
    "flite:slt", "flite:rms", "flite:awb", "flite:kal16",
    "espeak:en-us", "espeak:en-us+m3", "espeak:en-us+f3", "espeak:en-us+f4",
    "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts", "piper:joe",
)
"""The fast offline base speakers the measurement speaks with (Kokoro is added separately: it is slow)."""


@dataclass
class SpeechClip:
    """One measurement clip: speech, who spoke it and what was said."""

    audio: Audio
    voice: str
    text: str


def speech_clips(
    count: int, seed: int, voices: Sequence[str] = MEASURE_VOICES, min_seconds: float = 3.5
) -> list[SpeechClip]:
    """`count` clips of generated sentences spoken by `voices` in turn (unavailable engines skipped),
    each at least `min_seconds` long (sentences are joined until it is)."""
    from tts.data.sentences import sample_sentences
    from tts.data.speakers import parse_voice_id, speaker_status, synthesize_voice_id

    status = speaker_status()
    usable = [voice for voice in voices if status.get(parse_voice_id(voice)[0]) is None]
    if not usable:
        raise TimbreError(f"none of the voices {', '.join(voices)} can run here (see `timbre doctor`)")
    sentences = iter(sentence.text for sentence in sample_sentences(8 * count + 16, seed=seed))
    clips = []
    for index in range(count):
        voice = usable[index % len(usable)]
        text = next(sentences)
        output = synthesize_voice_id(voice, text)
        while output.audio.duration < min_seconds:
            text = f"{text} {next(sentences)}"
            output = synthesize_voice_id(voice, text)
        clips.append(SpeechClip(output.audio, voice, output.text))
    return clips


SYNTHESIS_VOICES = ("flite:awb", "piper:joe", "kokoro:jm_kumo", "pw0108")
"""Held-out voices (three base speakers and a pseudo-speaker) whose clones speak the synthesized
measurement clips."""
SYNTHESIS_PROMPT = "Please call Stella and ask her to bring these things with her from the store."
"""What each of `SYNTHESIS_VOICES` says for its clone's reference clip."""


def synthesized_clips(count: int, seed: int, voices: Sequence[str] = SYNTHESIS_VOICES) -> list[SpeechClip]:
    """`count` unmarked clips the studio itself made: `tts.synthesis.synthesize` with the shipped `ar`
    engine, in clones of `voices` in turn (each cloned from `SYNTHESIS_PROMPT` in that voice; voices whose
    engine is missing are skipped), saying held-out sentences of 40 to 80 characters (about 3 s each).

    Raises:
        CheckpointError: the `ar` engine is unavailable.
        TimbreError: none of `voices` can speak here.
    """
    from tts.data import voicebank
    from tts.data.sentences import sentence_stream
    from tts.synthesis import load_engine, synthesize
    from tts.voice import clone_voice

    engine = load_engine()
    cloned = []
    for voice_id in voices:
        try:
            reference = voicebank.synthesize(voice_id, SYNTHESIS_PROMPT, seed=0).audio
        except TimbreError as error:
            logger.warning("skipping %s: %s", voice_id, error)
            continue
        cloned.append((voice_id, clone_voice(reference, SYNTHESIS_PROMPT)))
    if not cloned:
        raise TimbreError(f"none of the voices {', '.join(voices)} can run here (see `timbre doctor`)")
    sentences = (sentence.text for sentence in sentence_stream(seed, "heldout") if 40 <= len(sentence.text) <= 80)
    clips = []
    for index in range(count):
        voice_id, voice = cloned[index % len(cloned)]
        text = next(sentences)
        audio = synthesize(text, voice, seed=index, models=engine, watermark=False)
        clips.append(SpeechClip(audio, voice_id, text))
    return clips


def non_speech_clips(count: int, seed: int, seconds: float = 4.0) -> list[SpeechClip]:
    """`count` clips that are not speech: noises of several colors and levels, tones, harmonic sweeps,
    clicks, digital silence and near-silence (for the false-positive measurement)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    makers: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("white noise", lambda: rng.normal(0.0, 10 ** rng.uniform(-3, -0.7), len(t))),
        ("pink noise", lambda: _colored_noise(rng, len(t), 1.0)),
        ("brown noise", lambda: _colored_noise(rng, len(t), 2.0)),
        ("tone", lambda: 0.5 * np.sin(2 * np.pi * rng.uniform(50, 8000) * t)),
        ("harmonic sweep", lambda: _harmonic_sweep(rng, t)),
        ("clicks", lambda: _clicks(rng, len(t))),
        ("silence", lambda: np.zeros(len(t))),
        ("near-silence", lambda: rng.normal(0.0, 3e-5, len(t))),
    ]
    clips = []
    for index in range(count):
        name, make = makers[index % len(makers)]
        clips.append(SpeechClip(Audio(np.clip(make(), -1, 1).astype(np.float32)), name, ""))
    return clips


def _colored_noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(size=length))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** (exponent / 2)
    noise = np.fft.irfft(spectrum, length)
    return 0.3 * noise / np.max(np.abs(noise))


def _harmonic_sweep(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    f0 = rng.uniform(80, 300) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 40) if k * f0.max() < SAMPLE_RATE / 2)
    return 0.5 * wave / np.max(np.abs(wave))


def _clicks(rng: np.random.Generator, length: int) -> np.ndarray:
    wave = np.zeros(length)
    wave[rng.integers(0, length, 40)] = rng.uniform(-0.8, 0.8, 40)
    return wave


@dataclass
class RobustnessRow:
    """Detections of one kind of input: how many of `total` were called present, and their scores."""

    name: str
    detected: int
    total: int
    scores: list[float] = field(repr=False, default_factory=list)

    @property
    def rate(self) -> float:
        return self.detected / self.total if self.total else float("nan")


@dataclass
class RobustnessReport:
    """The result of `measure_robustness`."""

    detection: list[RobustnessRow]
    false_positives: list[RobustnessRow]
    snr_db: list[float]
    embed_real_time_factor: float
    threshold: float
    seconds: float
    voices: list[str]
    peak_ratios: list[float] = field(default_factory=list)
    marker: str = "embed"

    def to_markdown(self) -> str:
        """The tables of docs/reliability.md."""
        lines = _table("marked clips, after | detected | rate | min score | 1st pct.", self.detection, np.min, 1)
        lines += [""]
        header = "unmarked input | called present | rate | max score | 99th pct."
        lines += _table(header, self.false_positives, np.max, 99)
        snr, peaks = np.asarray(self.snr_db), np.asarray(self.peak_ratios or [math.nan])
        lines += [
            "",
            (
                f"Marked with `{self.marker}`. Threshold {self.threshold:.1f}. Watermark SNR over the marked "
                f"clips: min {snr.min():.1f} dB, median {np.median(snr):.1f} dB. Peak of marked over original: "
                f"max {peaks.max():.3f}, median {np.median(peaks):.3f}. "
                f"Embedding cost: {100 * self.embed_real_time_factor:.2f} % of "
                f"real time on one core. Voices: {', '.join(sorted(set(self.voices)))}. Took {self.seconds:.0f} s."
            ),
        ]
        return "\n".join(lines)


def _table(header: str, rows: list[RobustnessRow], extreme: Callable, percentile: float) -> list[str]:
    lines = [f"| {header} | median |", "|---|---|---|---|---|---|"]
    for row in (row for row in rows if row.scores):  # a small run may have no non-speech clip
        scores = np.asarray(row.scores)
        lines.append(
            f"| {row.name} | {row.detected}/{row.total} | {100 * row.rate:.1f} % | {extreme(scores):.2f} | "
            f"{np.percentile(scores, percentile):.2f} | {np.median(scores):.2f} |"
        )
    return lines


def measure_robustness(
    num_clips: int = 200,
    seed: int = 0,
    kokoro_clips: int = 4,
    key: Key = DEFAULT_KEY,
    progress: Callable[[int, int], None] | None = None,
    marker: Callable[[Audio, Key], Audio] = embed,
    synthesized: bool = False,
) -> RobustnessReport:
    """Detection rate after each of `ROBUSTNESS_TRANSFORMS` on `num_clips` speech clips marked by `marker`
    (`embed` or `embed_fixed`), and the false-positive rate on as many unmarked clips (speech of the same
    voices with other sentences, 15 % non-speech), on 3 s excerpts of them, and with a wrong key on the
    marked clips.

    The speech is the base speakers' (`speech_clips`; `kokoro_clips` of each set spoken by Kokoro voices
    when Kokoro is installed, about 8 s each here), or with `synthesized` the studio's own
    (`synthesized_clips`, about 3 s each).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    unmarked_count = num_clips - num_clips * 15 // 100
    if synthesized:
        marked_set = synthesized_clips(num_clips, seed)
        unmarked_set = synthesized_clips(unmarked_count, seed + 1)
    else:
        marked_set = _measure_speech(num_clips, seed, kokoro_clips)
        unmarked_set = _measure_speech(unmarked_count, seed + 1, kokoro_clips)
    unmarked_set += non_speech_clips(num_clips - unmarked_count, seed)
    detection = {name: RobustnessRow(name, 0, 0) for name in ROBUSTNESS_TRANSFORMS}
    wrong_key = RobustnessRow("marked, another key per clip", 0, 0)
    snr, peak_ratios, embed_seconds, audio_seconds = [], [], 0.0, 0.0
    total_steps = len(marked_set) + len(unmarked_set)
    for index, clip in enumerate(marked_set):
        tick = time.perf_counter()
        marked = marker(clip.audio, key)
        embed_seconds += time.perf_counter() - tick
        audio_seconds += clip.audio.duration
        snr.append(watermark_snr_db(clip.audio, marked))
        peak_ratios.append(float(np.max(np.abs(marked.samples)) / np.max(np.abs(clip.audio.samples))))
        for name, transform in ROBUSTNESS_TRANSFORMS.items():
            _record(detection[name], detect(transform(marked, rng), key))
        _record(wrong_key, detect(marked, f"wrong-{index}-{key}"))
        if progress:
            progress(index + 1, total_steps)
    false_positives = [
        RobustnessRow(name, 0, 0) for name in ("speech", "non-speech", "speech, 3 s excerpts", "speech, MP3 64 kbps")
    ]
    for index, clip in enumerate(unmarked_set):
        is_speech = bool(clip.text)
        _record(false_positives[0 if is_speech else 1], detect(clip.audio, key))
        if is_speech:
            _record(false_positives[2], detect(_random_excerpt(clip.audio, rng), key))
            _record(false_positives[3], detect(mp3_round_trip(clip.audio), key))
        if progress:
            progress(len(marked_set) + index + 1, total_steps)
    false_positives.append(wrong_key)
    return RobustnessReport(
        list(detection.values()), false_positives, snr, embed_seconds / audio_seconds, DEFAULT_CONFIG.threshold,
        time.perf_counter() - started, [clip.voice for clip in marked_set + unmarked_set if clip.text],
        peak_ratios, marker.__name__,
    )


def _record(row: RobustnessRow, detection: Detection) -> None:
    row.total += 1
    row.detected += int(detection.present)
    row.scores.append(detection.score)


def _measure_speech(count: int, seed: int, kokoro_clips: int) -> list[SpeechClip]:
    from tts.data.speakers import get_speaker, speaker_status

    kokoro = []
    if kokoro_clips > 0 and speaker_status().get("kokoro") is None:
        voices = [f"kokoro:{voice}" for voice in get_speaker("kokoro").voices()]
        kokoro = speech_clips(min(kokoro_clips, count), seed + 1000, voices)
    return speech_clips(count - len(kokoro), seed) + kokoro


@dataclass
class QualityReport:
    """What the mark does to intelligibility, speaker identity and perceived quality (`measure_quality`)."""

    clips: int
    wer_original: float
    wer_marked: float
    sim_to_other_original: float
    sim_to_other_marked: float
    sim_marked_to_original: float
    pesq_wb: float
    stoi: float

    def to_markdown(self) -> str:
        return "\n".join([
            "| measure (mean over clips) | original | marked | difference |",
            "|---|---|---|---|",
            (
                f"| WER, Whisper tiny.en | {100 * self.wer_original:.2f} % | {100 * self.wer_marked:.2f} % | "
                f"{100 * (self.wer_marked - self.wer_original):+.2f} points |"
            ),
            (
                f"| SIM (Resemblyzer) to another clip of the same voice | {self.sim_to_other_original:.4f} | "
                f"{self.sim_to_other_marked:.4f} | {self.sim_to_other_marked - self.sim_to_other_original:+.4f} |"
            ),
            f"| SIM (Resemblyzer), marked vs original | | {self.sim_marked_to_original:.4f} | |",
            f"| PESQ-WB, marked vs original (max 4.64) | | {self.pesq_wb:.3f} | |",
            f"| STOI, marked vs original | | {self.stoi:.4f} | |",
            "",
            f"{self.clips} clips.",
        ])


def measure_quality(
    num_clips: int = 20, seed: int = 7, marker: Callable[[Audio], Audio] = embed, synthesized: bool = False
) -> QualityReport:
    """WER (Whisper tiny.en) and SIM (Resemblyzer) of `num_clips` speech clips (the base speakers', or
    with `synthesized` the studio's own) before and after marking with `marker`, plus PESQ-WB and STOI of
    each marked clip against its original. Needs the ``eval`` extras."""
    from tts.evaluation.asr import transcribe
    from tts.evaluation.quality import pesq_wb, stoi
    from tts.evaluation.similarity import similarity
    from tts.evaluation.wer import wer

    make_clips = synthesized_clips if synthesized else speech_clips
    clips = make_clips(num_clips, seed)
    others = {clip.voice: clip for clip in make_clips(len({c.voice for c in clips}), seed + 1)}
    rows = []
    for clip in clips:
        marked = marker(clip.audio)
        other = others.get(clip.voice)
        rows.append([
            wer(clip.text, transcribe(clip.audio)),
            wer(clip.text, transcribe(marked)),
            similarity(other.audio, clip.audio) if other else math.nan,
            similarity(other.audio, marked) if other else math.nan,
            similarity(clip.audio, marked),
            pesq_wb(clip.audio, marked),
            stoi(clip.audio, marked),
        ])
    means = np.nanmean(np.asarray(rows, dtype=np.float64), axis=0)
    return QualityReport(len(clips), *(float(value) for value in means))




def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.evaluation.watermark --measure N [--quality M]``: print the tables of docs/reliability.md."""
    parser = argparse.ArgumentParser(prog="python -m tts.evaluation.watermark", description=main.__doc__)
    parser.add_argument("--measure", type=int, default=0, metavar="N", help="clips for the robustness table")
    parser.add_argument("--quality", type=int, default=0, metavar="N", help="clips for the WER/SIM/PESQ table")
    parser.add_argument("--kokoro", type=int, default=4, metavar="N", help="clips of each set spoken by Kokoro (slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fixed", action="store_true", help="measure embed_fixed (the streaming-compatible variant) instead of embed"
    )
    parser.add_argument(
        "--synthesized", action="store_true",
        help="speech made by the studio's own synthesis (the shipped ar engine) instead of the base speakers",
    )
    args = parser.parse_args(argv)
    if not args.measure and not args.quality:
        parser.error("ask for --measure N and/or --quality N")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("command: python -m tts.evaluation.watermark " + " ".join(argv if argv is not None else sys.argv[1:]))
    marker = embed_fixed if args.fixed else embed
    if args.measure:
        def progress(done: int, total: int) -> None:
            if done % 25 == 0 or done == total:
                print(f"  {done}/{total} clips", file=sys.stderr, flush=True)

        report = measure_robustness(
            args.measure, args.seed, args.kokoro, progress=progress, marker=marker, synthesized=args.synthesized
        )
        print(report.to_markdown())
    if args.quality:
        print(measure_quality(args.quality, marker=marker, synthesized=args.synthesized).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
