"""Rendered speaking styles: parametric prosody transforms with an intensity from 0 to 1.

A style is a label (`STYLES`) and an intensity. Intensity 0 is neutral speech for every label; intensity 1
is the full setting of `STYLE_TABLE`; in between, every parameter moves on a straight line in its natural
scale (semitones, dB, log ratios). The transforms act on rendered audio, so they apply to any base speaker
or pseudo-speaker (and to a user's recording):

* pitch: mean shift in semitones, excursion range around the median (a factor in the log-F0 domain) and a
  final rise, by PSOLA resynthesis (Praat's Manipulation, through ``praat-parselmouth``);
* formants: a small vocal-tract scaling ("smile" raises formants), by the resampling trick of Praat's
  "Change gender", compensated in the same PSOLA pass, so a voice warp and a style cost one resynthesis;
* rate: a factor on the engine's own speed control (cleaner than stretching audio), or a PSOLA duration
  change for audio that comes without an engine (`apply_style(..., stretch=True)`);
* energy: the level of the active frames relative to `NEUTRAL_LEVEL_DBFS`, with a soft limiter;
* spectral tilt: dB per octave around `TILT_PIVOT_HZ` (tense speech is brighter, sad speech darker);
* aperiodicity: the share of noise excitation (whisper): the voiced stretches re-excited by seeded white noise
  through their own spectral envelope, the unvoiced ones (consonants, pauses) kept as they are.

Every rendered sample can log `style_params(...).to_dict()`: the labels are reproducible and consistent.
Measured effects (F0, level, rate, WER per style) are in docs/corpus.md.

Shapes: ``T`` samples.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from typing import Iterable

import numpy as np

from tts.audio import Audio, resample
from tts.errors import TimbreError
from tts.preprocess import active_rms_dbfs

STYLE_VERSION = 3
"""Changes whenever a table value or a transform changes, so a corpus records what rendered it. 3: a final rise
ends above the median (session 19); 2: whispers keep their unvoiced stretches and take a finer envelope (session
19); 1 re-excited the whole signal through an LPC envelope."""

NEUTRAL_LEVEL_DBFS = -26.0
"""Active-frame RMS level of every rendered sample at energy 0 (the loudest style is 5 dB above)."""

LEVEL_GATE_DB = 40.0
"""Frames more than this far below the loudest frame are pauses and do not count towards the level."""

LIMITER_THRESHOLD = 0.8
"""Samples above this magnitude are compressed smoothly towards `LIMITER_CEILING`."""

LIMITER_CEILING = 0.99

TILT_PIVOT_HZ = 1000.0
"""Spectral tilt leaves this frequency unchanged and turns the spectrum around it."""

MAX_TILT_GAIN_DB = 12.0
"""The tilt filter's gain is clamped to +-this, so the band edges are not boosted without bound."""

PITCH_FLOOR_HZ = 60.0
PITCH_CEILING_HZ = 500.0
"""Pitch analysis range for PSOLA: wide enough for every base voice here, male and female."""

PSOLA_TIME_STEP = 0.01

FINAL_RISE_SECONDS = 0.6
"""The final rise spans this much of the end of the voiced speech."""

FINAL_LEVEL_SECONDS = 0.1
"""A final rise glides up over the last `FINAL_RISE_SECONDS` of voicing so that the speech ends `final_rise`
semitones above its median (the median of the contour's last `FINAL_LEVEL_SECONDS` before the rise is where it
would have ended), or that far above where it would have ended, whichever is higher. STYLE_VERSION 1 and 2 only
added the rise, so a sentence that falls at its end still ended below its median: "surprised" sounded like a
statement."""

WHISPER_ENVELOPE_SECONDS = 0.004
"""A whisper keeps each frame's log spectrum below this quefrency (its vocal-tract envelope), tapered to nothing
at it by a raised cosine, and drops what lies above: the harmonics of a voice up to 250 Hz go entirely, those of
higher voices mostly (a third of the way down the taper at 333 Hz)."""

WHISPER_FRAME_SECONDS = 0.04
WHISPER_HOP_FRACTION = 4
"""STFT frames of about 40 ms (a power of two in samples), hopped by a quarter frame."""

VOICING_SMOOTHING_SECONDS = 0.05
"""The voiced/unvoiced mask of a whisper is a moving average over this long, so the two cross-fade."""

VOICING_THRESHOLD = 0.3
"""Praat's voicing threshold for that mask (its default is 0.45): a whisper had rather take a weakly voiced frame
than leave it voiced."""

_PRAAT_RANDOM_LOCK = threading.Lock()
_PRAAT_SEED_MODULUS = 2**31 - 1


@dataclass(frozen=True)
class StyleParams:
    """The prosody settings of one rendered style at one intensity.

    Attributes:
        pitch_shift: semitones added to the whole F0 contour.
        pitch_range: factor on F0 excursions around the utterance median (log-F0 domain); < 1 flattens.
        rate: speaking-rate factor (> 1 faster); multiplies the engine's speed.
        energy_db: active level relative to `NEUTRAL_LEVEL_DBFS`.
        tilt_db: spectral tilt in dB per octave around `TILT_PIVOT_HZ`; > 0 brighter.
        formant_ratio: vocal-tract scaling of the formants (> 1 shorter tract, brighter vowels).
        aperiodicity: share of noise excitation, 0 voiced, 1 whispered.
        final_rise: semitones above its median at which the voiced speech ends (`FINAL_LEVEL_SECONDS`).
    """

    pitch_shift: float = 0.0
    pitch_range: float = 1.0
    rate: float = 1.0
    energy_db: float = 0.0
    tilt_db: float = 0.0
    formant_ratio: float = 1.0
    aperiodicity: float = 0.0
    final_rise: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """JSON-able values, rounded to what the transforms resolve."""
        return {key: round(float(value), 4) for key, value in asdict(self).items()}


NEUTRAL = StyleParams()

STYLE_TABLE: dict[str, StyleParams] = {
    "neutral": NEUTRAL,
    "happy": StyleParams(pitch_shift=3.0, pitch_range=1.4, rate=1.08, energy_db=2.0, tilt_db=1.5, formant_ratio=1.04),
    "sad": StyleParams(pitch_shift=-2.5, pitch_range=0.6, rate=0.82, energy_db=-5.0, tilt_db=-2.5, formant_ratio=0.97),
    "angry": StyleParams(pitch_shift=1.5, pitch_range=1.35, rate=1.12, energy_db=5.0, tilt_db=3.0, formant_ratio=1.02),
    "surprised": StyleParams(pitch_shift=4.5, pitch_range=1.7, rate=0.95, energy_db=3.0, tilt_db=1.0, final_rise=4.0),
    "calm": StyleParams(pitch_shift=-1.5, pitch_range=0.7, rate=0.9, energy_db=-3.0, tilt_db=-1.5),
    "whisper": StyleParams(rate=0.92, energy_db=-8.0, tilt_db=-1.0, aperiodicity=1.0),
}
"""Every style at intensity 1. Intensity 0 is `NEUTRAL` for all of them."""

STYLES: tuple[str, ...] = tuple(STYLE_TABLE)

LOG_FIELDS = frozenset({"pitch_range", "rate", "formant_ratio"})
"""Settings that are ratios: interpolated, combined and compared in the log domain (the others linearly); 1 is
neutral."""


def check_style(style: str) -> str:
    """`style` if it is a known label, else `TimbreError` listing them."""
    if isinstance(style, str) and style.strip().lower() in STYLE_TABLE:
        return style.strip().lower()
    raise TimbreError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")


def check_intensity(intensity: float) -> float:
    """`intensity` as a float in [0, 1], else `TimbreError`."""
    try:
        value = float(intensity)
    except (TypeError, ValueError):
        raise TimbreError(f"intensity must be a number from 0 to 1, got {intensity!r}") from None
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise TimbreError(f"intensity must be from 0 to 1, got {value}")
    return value


def style_params(style: str, intensity: float = 1.0) -> StyleParams:
    """The settings of `style` at `intensity` (0 neutral, 1 the full `STYLE_TABLE` entry)."""
    amount = check_intensity(intensity)
    return combine_params([(NEUTRAL, 1 - amount), (STYLE_TABLE[check_style(style)], amount)])


def combine_params(parts: Iterable[tuple[StyleParams, float]]) -> StyleParams:
    """The weighted sum of settings in their natural scales: ratios (`pitch_range`, `rate`, `formant_ratio`)
    as logarithms, the others (semitones, dB, shares) as they are.

    `NEUTRAL` is the zero of every scale, so weights need not sum to 1: ``[(a, 1), (b, -1)]`` is what must
    be added to `b` to reach `a`, and ``[(a, 2)]`` doubles `a`'s departure from neutral. No range is
    checked (an aperiodicity can leave [0, 1]); callers clamp what they render.
    """
    parts = list(parts)
    values = {}
    for item in fields(StyleParams):
        if item.name in LOG_FIELDS:
            values[item.name] = math.exp(sum(weight * math.log(getattr(p, item.name)) for p, weight in parts))
        else:
            values[item.name] = sum(weight * getattr(p, item.name) for p, weight in parts)
    return StyleParams(**values)


# ---------------------------------------------------------------------------------------------------------
# Transforms


def _praat():
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError:
        raise TimbreError("style and voice transforms need Praat: pip install praat-parselmouth") from None
    return parselmouth, call


def praat_versions() -> dict[str, str]:
    """Versions of the Praat binding that renders styles and warps (for corpus records)."""
    parselmouth, _ = _praat()
    return {"parselmouth": parselmouth.VERSION, "praat": parselmouth.PRAAT_VERSION}


def psola(
    audio: Audio,
    *,
    pitch_ratio: float = 1.0,
    pitch_range: float = 1.0,
    formant_ratio: float = 1.0,
    final_rise: float = 0.0,
    duration_factor: float = 1.0,
    seed: int = 0,
    melody: tuple[np.ndarray, np.ndarray] | None = None,
) -> Audio:
    """One PSOLA resynthesis that scales formants, F0 (mean, range, final rise) and duration.

    F0 becomes ``median * pitch_ratio * (f0 / median) ** pitch_range``, and with a `final_rise` it glides up over
    the last `FINAL_RISE_SECONDS` of voicing to end that many semitones above its median (`FINAL_LEVEL_SECONDS`);
    or, given `melody` (``(times, f0)``: seconds of `audio`, ascending, and Hz), that contour instead of the
    audio's own (the other pitch settings are then not used).
    Formants scale by `formant_ratio` (the signal is
    resampled so that it plays `formant_ratio` times higher, then PSOLA restores its duration and sets
    the new F0, as Praat's "Change gender" does). `duration_factor` > 1 makes it longer. Praat's
    overlap-add draws random numbers (for unvoiced stretches when durations change): it runs with Praat's
    generator seeded by `seed`, so the result is reproducible.
    """
    if formant_ratio <= 0 or pitch_ratio <= 0 or pitch_range < 0 or duration_factor <= 0:
        raise ValueError("psola: ratios must be positive")
    parselmouth, call = _praat()
    rate = audio.sample_rate
    samples = audio.samples
    if abs(formant_ratio - 1.0) > 1e-6:
        # Played back at `rate`, a signal resampled to rate / r has every frequency times r.
        samples = resample(samples, rate, int(round(rate / formant_ratio)))
    sound = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=rate)
    manipulation = call(
        sound, "To Manipulation", PSOLA_TIME_STEP, PITCH_FLOOR_HZ * formant_ratio, PITCH_CEILING_HZ * formant_ratio
    )
    tier = call(manipulation, "Extract pitch tier")
    count = int(call(tier, "Get number of points"))
    if melody is not None:
        new_tier = call("Create PitchTier", "melody", sound.xmin, sound.xmax)
        for time, value in zip(*melody):  # the resampled signal runs formant_ratio times faster
            call(new_tier, "Add point", float(time) / formant_ratio, float(value))
        call([manipulation, new_tier], "Replace pitch tier")
    elif count:
        times = np.array([call(tier, "Get time from index", i + 1) for i in range(count)])
        f0 = np.array([call(tier, "Get value at index", i + 1) for i in range(count)]) / formant_ratio
        median = float(np.median(f0))
        semitones = 12 * np.log2(f0 / median) * pitch_range + 12 * math.log2(pitch_ratio)
        if final_rise:
            scale = min(1.0, 1.0 / formant_ratio)  # tier times run formant_ratio times faster
            start = times[-1] - FINAL_RISE_SECONDS * scale
            ramp = np.clip((times - start) / max(times[-1] - start, 1e-3), 0.0, 1.0)
            lift = final_rise
            if final_rise > 0:
                # A statement's own terminal fall (deepened by a wide range) would swallow a plain added rise.
                ending = float(np.median(semitones[times >= times[-1] - FINAL_LEVEL_SECONDS * scale]))
                lift = max(final_rise, 12 * math.log2(pitch_ratio) + final_rise - ending)
            semitones = semitones + lift * ramp**2
        target = median * 2 ** (semitones / 12)
        new_tier = call("Create PitchTier", "target", sound.xmin, sound.xmax)
        for time, value in zip(times, target):
            call(new_tier, "Add point", float(time), float(value))
        call([manipulation, new_tier], "Replace pitch tier")
    stretch = duration_factor * formant_ratio
    if abs(stretch - 1.0) > 1e-6:
        durations = call("Create DurationTier", "duration", sound.xmin, sound.xmax)
        call(durations, "Add point", 0.0, float(stretch))
        call([manipulation, durations], "Replace duration tier")
    with _PRAAT_RANDOM_LOCK:  # Praat's generator is global: seed it, resynthesize, unseed it
        parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed) % _PRAAT_SEED_MODULUS})")
        try:
            result = call(manipulation, "Get resynthesis (overlap-add)")
        finally:
            parselmouth.praat.run("random_initializeSafelyAndUnpredictably ()")
    out = np.asarray(result.values[0], dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise TimbreError("the PSOLA resynthesis produced invalid samples")
    return Audio(out, rate)


def spectral_tilt(audio: Audio, tilt_db: float) -> Audio:
    """Turn the spectrum by `tilt_db` dB per octave around `TILT_PIVOT_HZ` (zero phase, gain clamped)."""
    if tilt_db == 0:
        return audio
    n = len(audio.samples)
    size = 1 << max(1, (n - 1).bit_length())
    spectrum = np.fft.rfft(audio.samples.astype(np.float64), size)
    freqs = np.fft.rfftfreq(size, 1.0 / audio.sample_rate)
    octaves = np.log2(np.maximum(freqs, 50.0) / TILT_PIVOT_HZ)
    gain_db = np.clip(tilt_db * octaves, -MAX_TILT_GAIN_DB, MAX_TILT_GAIN_DB)
    out = np.fft.irfft(spectrum * 10 ** (gain_db / 20), size)[:n]
    return Audio(out.astype(np.float32), audio.sample_rate)


def voicing_mask(audio: Audio) -> np.ndarray:
    """``(T,)`` in [0, 1]: 1 where Praat's pitch (`PITCH_FLOOR_HZ` to `PITCH_CEILING_HZ`) hears voicing, 0 where
    not, cross-faded over `VOICING_SMOOTHING_SECONDS`."""
    parselmouth, _ = _praat()
    sound = parselmouth.Sound(audio.samples.astype(np.float64), sampling_frequency=audio.sample_rate)
    pitch = sound.to_pitch_ac(time_step=PSOLA_TIME_STEP, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ,
                              voicing_threshold=VOICING_THRESHOLD)
    times = np.asarray(pitch.xs(), dtype=np.float64)
    if len(times) == 0:
        return np.zeros(len(audio.samples))
    voiced = (np.asarray(pitch.selected_array["frequency"]) > 0).astype(np.float64)
    width = max(1, int(round(VOICING_SMOOTHING_SECONDS / PSOLA_TIME_STEP)))
    half = width // 2
    # Widened by half the fade on each side first, so the fades lie outside the voiced frames: no voicing is kept.
    padded = np.pad(voiced, half)
    voiced = np.max(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    voiced = np.convolve(voiced, np.ones(width) / width)[(width - 1) // 2 :][: len(times)]  # centred, any length
    return np.interp(np.arange(len(audio.samples)) / audio.sample_rate, times, voiced, left=0.0, right=0.0)


def whispered(audio: Audio, seed: int = 0) -> Audio:
    """`audio` whispered, same words: every STFT frame re-excited by white noise through its own spectral envelope
    (the log magnitude cepstrally smoothed below `WHISPER_ENVELOPE_SECONDS`), the whole brought to the input's
    active level, and the result used where the speech is voiced (`voicing_mask`); unvoiced consonants and pauses
    stay as they were.

    Measured on 23 of the `dit` engine's neutral sentences against the LPC re-excitation of the whole signal it
    replaces (docs/styles.md, session 19): WER 0.094 -> 0.071 (the sentences' own 0.033), SIM to the voice's reference
    0.628 -> 0.645, voiced frames 1 %.

    The noise comes from ``numpy.random.default_rng(seed)``, so the result is reproducible.
    """
    import scipy.signal

    rate = audio.sample_rate
    frame = 1 << int(round(math.log2(WHISPER_FRAME_SECONDS * rate)))
    # A clip shorter than one frame or than Praat's pitch window is padded with silence, then cut back.
    shortest = max(frame, math.ceil(3.5 / PITCH_FLOOR_HZ * rate))
    if len(audio.samples) < shortest:
        padded = Audio(np.pad(audio.samples, (0, shortest - len(audio.samples))), rate)
        return Audio(whispered(padded, seed).samples[: len(audio.samples)], rate)
    samples = audio.samples.astype(np.float64)
    hop = frame // WHISPER_HOP_FRACTION
    stft = dict(fs=rate, nperseg=frame, noverlap=frame - hop)
    _, _, spectrum = scipy.signal.stft(samples, **stft)
    cepstrum = np.fft.irfft(np.log(np.abs(spectrum) + 1e-9), n=frame, axis=0)
    # A raised-cosine lifter: a hard cut would leave a ripple of 1 / WHISPER_ENVELOPE_SECONDS Hz in the envelope,
    # which the noise then carries as a faint pitch.
    keep = max(2, int(WHISPER_ENVELOPE_SECONDS * rate))
    lifter = np.zeros(frame)
    taper = 0.5 * (1.0 + np.cos(np.pi * np.arange(keep) / keep))
    lifter[:keep] = taper
    lifter[frame - keep + 1 :] = taper[1:][::-1]
    cepstrum *= lifter[:, None]
    envelope = np.exp(np.fft.rfft(cepstrum, axis=0).real)
    _, _, noise = scipy.signal.stft(np.random.default_rng(seed).standard_normal(len(samples)), **stft)
    _, noisy = scipy.signal.istft(noise * envelope, **stft)
    noisy = np.pad(noisy[: len(samples)], (0, max(0, len(samples) - len(noisy))))
    # One gain for the whole clip: vowels whose harmonics are gone come out weaker against the consonants, as
    # whispered vowels are (matching each frame's energy instead, tried with a hard lifter, lost that: 2 of 23
    # outputs fewer were heard as whispers).
    noisy = set_level(Audio(noisy.astype(np.float32), rate), active_rms_dbfs(audio, gate_db=-LEVEL_GATE_DB)).samples
    mask = voicing_mask(audio)
    out = (mask * noisy + (1.0 - mask) * samples).astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise TimbreError("the whisper resynthesis produced invalid samples")
    return Audio(out, rate)


def set_level(audio: Audio, level_dbfs: float) -> Audio:
    """Scale the active frames to `level_dbfs`; peaks above `LIMITER_THRESHOLD` are softly limited."""
    current = active_rms_dbfs(audio, gate_db=-LEVEL_GATE_DB)
    if not math.isfinite(current):
        return audio
    samples = audio.samples.astype(np.float64) * 10 ** ((level_dbfs - current) / 20)
    magnitude = np.abs(samples)
    over = magnitude > LIMITER_THRESHOLD
    if np.any(over):
        room = LIMITER_CEILING - LIMITER_THRESHOLD
        squeezed = LIMITER_THRESHOLD + room * np.tanh((magnitude[over] - LIMITER_THRESHOLD) / room)
        samples[over] = np.sign(samples[over]) * squeezed
    return Audio(samples.astype(np.float32), audio.sample_rate)


def apply_style(
    audio: Audio,
    params: StyleParams,
    *,
    seed: int = 0,
    pitch_ratio: float = 1.0,
    pitch_range: float = 1.0,
    formant_ratio: float = 1.0,
    stretch: bool = False,
    relative_level: bool = False,
) -> Audio:
    """Render `params` on `audio` (24 kHz speech), together with a voice warp if one is given.

    Args:
        audio: the speech, usually a base speaker's neutral output.
        params: the style settings (`style_params`).
        seed: seeds the whisper noise and Praat's overlap-add; the same inputs and seed give the same samples.
        pitch_ratio, pitch_range, formant_ratio: a pseudo-speaker's warp, folded into the same PSOLA pass.
        stretch: apply `params.rate` to the audio by PSOLA; leave it False when the engine already spoke
            at ``speed * params.rate``.
        relative_level: `params.energy_db` is a change of the input's own active level (for audio that an
            engine has already styled, `tts.style`) instead of a level relative to `NEUTRAL_LEVEL_DBFS`.

    Returns:
        the styled speech at the level ``NEUTRAL_LEVEL_DBFS + params.energy_db`` (with `relative_level`:
        the input's level ``+ params.energy_db``).
    """
    start_level = active_rms_dbfs(audio, gate_db=-LEVEL_GATE_DB) if relative_level else NEUTRAL_LEVEL_DBFS
    total_pitch = pitch_ratio * 2 ** (params.pitch_shift / 12)
    total_range = pitch_range * params.pitch_range
    total_formant = formant_ratio * params.formant_ratio
    duration = 1.0 / params.rate if stretch else 1.0
    changes = (total_pitch, total_range, total_formant, duration)
    if any(abs(value - 1.0) > 1e-6 for value in changes) or params.final_rise:
        audio = psola(
            audio,
            pitch_ratio=total_pitch,
            pitch_range=total_range,
            formant_ratio=total_formant,
            final_rise=params.final_rise,
            duration_factor=duration,
            seed=seed,
        )
    audio = spectral_tilt(audio, params.tilt_db)
    if params.aperiodicity > 0:
        noisy = whispered(audio, seed)
        share = min(1.0, params.aperiodicity)
        if share >= 1.0:
            audio = noisy
        else:
            # Mix at equal levels: the square-root weights keep the sum's power constant.
            level = active_rms_dbfs(audio, gate_db=-LEVEL_GATE_DB)
            noisy = set_level(noisy, level)
            audio = Audio(
                math.sqrt(1 - share) * audio.samples + math.sqrt(share) * noisy.samples, audio.sample_rate
            )
    return set_level(audio, start_level + params.energy_db)
