"""An inaudible, robust watermark in the studio's output (`embed`, `embed_fixed`, `StreamingEmbedder`) and
its detector (`detect`).

    from tts.watermark import embed, embed_fixed, embed_stream, detect
    marked = embed(audio)                 # any Audio; the default key is public
    detect(marked).present                # True, also after MP3, 16 kHz, gain, or any 3 s excerpt
    marked = embed_fixed(audio)           # the mark a stream gets ...
    chunks = embed_stream(audio_chunks)   # ... chunk by chunk, 64 ms later

The scheme: a key-seeded ripple in the magnitude spectrum that flips once a second
---------------------------------------------------------------------------------
The 1-7 kHz band is cut into cells of 31.25 Hz; the key's hash picks half of the cells of every 500 Hz
group to raise and the other half to lower, by a depth of the group's own (log-magnitude, in nepers).
`embed` adds to the audio ``m(t)`` times the audio through a zero-phase FIR filter of that ripple
(``tanh(depth * pattern)`` inside the band, 0 outside): at ``m = 1`` the result has the key's ripple, at
``m = -1`` its mirror image (raised and lowered cells swapped), at ``m = 0`` it is the input. ``m(t)`` is a
1 Hz sine, overdriven by 1.5 and clipped (at full depth 54 % of the time), counted from the clip's or
stream's first sample. `detect` resamples to 16 kHz, takes the log power of every cell in every frame
that carries signal, and correlates it over time with the cosine and the sine of the modulation (both
made zero-mean), so whatever stays put in the spectrum drops out; each 500 Hz group's smooth shape (a
least-squares cubic) is removed from those two components and what is left is correlated with the key's
pattern, each group weighted by its depth. Each correlation times the square root of its degrees of
freedom is N(0, 1) over keys for audio without this key's mark; the two (per window of 3 s or more)
make a chi-square whatever the modulation's phase in the excerpt, reported as the standard normal
quantile of the same tail probability: a z-score, N(0, 1) without the mark (measured: standard deviation
1.00 over 24,920 clip x key pairs, synthesized, base-speaker and non-speech audio) and about 6-10 for
marked speech.

Why the modulation (version 2; version 1 held the ripple still): the studio's own vocoder leaves a fine
structure of its own in the spectrum of everything it says, strongest as lines at the multiples of its
frame rate (24 kHz / 256 = 93.75 Hz, three cells, falling on cell edges), nearly the same in every clip and
every voice (correlation 0.98 between clips). In a clip's time-averaged log spectrum it is 5 to 10 times
the size of the ripple, and a still ripple cannot be told from a still structure: on 3 s of the studio's
own speech the version-1 detector scored 2-3.5 (against 6-10 on natural speech). A ripple that flips is
told from anything that does not, natural speech's own fine structure included. The price: the phase of
the flip is unknown in an excerpt, so the detector takes two correlations where one did (a chi-square with
2 degrees of freedom instead of a signed z, about a third of the score where nothing still hides the
mark), and the mark's timing must survive: it does through codec delay, padding, excerpts and splices,
and mostly through a time stretch of 10 % (86-99.5 % detected), because the phase is only followed within
windows of 3 s or more (or an eighth of the audio), whose evidence adds up whatever their phases.

Why this scheme rather than spread spectrum with frame synchronization:

* No synchronization: the ripple sits at fixed frequencies and the detector tries every phase of the
  modulation at once (cosine and sine), so any excerpt at any offset carries the pattern, with no
  offset search to raise the false-positive floor.
* Gain and level: a gain adds the same constant to every log-magnitude, which both the group fit and the
  zero-mean modulation remove. Clipping prevention (a gain below 1) is a gain.
* Resampling: everything lies between 1 and 7 kHz, inside a 16 kHz file's band, and cells are defined in
  Hz, so any sample rate above 15.6 kHz keeps the whole pattern (the detector uses the groups a lower rate
  keeps).
* Lossy codecs: MP3 at 64 kbps keeps the 1-7 kHz spectrum at this resolution well enough
  (`tts.evaluation.watermark` measures it); the detector floors each frame's log power relative to its own
  level so cells a codec zeroes do not dominate.
* Inaudibility: the ripple is far finer than the ear's frequency resolution (an auditory filter at 3 kHz is
  about 350 Hz wide, some 11 cells, about half raised and half lowered, which stays true while they swap),
  so the excitation pattern the ear hears moves by less than a level JND; each 500 Hz group's depth is
  allocated from the clip's own spectrum (deep where the clip is quiet, shallow where it is loud, at most
  `WatermarkConfig.max_depth`, about 1.3 dB) so that the change stays `WatermarkConfig.min_snr_db` (30 dB)
  below the signal even at full depth. The flip is slow (1 Hz, below the rates at which the ear is most
  sensitive to level changes) and smooth. Zero phase because a minimum-phase filter of the same ripple
  spends half of that SNR budget on phase changes the detector cannot use and that PESQ hears (PESQ-WB 3.9
  against 4.4 at equal SNR); its cost is a ripple echo spread over +-32 ms around each sound (the inverse
  of the cell width) about 30 dB down. Silence stays silent: a filter maps zeros to zeros, and runs of
  digital zeros in the input are kept exactly zero in the output.
* Cost: one FFT convolution per clip, no model; deterministic (the pattern comes from SHAKE-256 of the
  key, no random generator whose stream could change between numpy versions).

Whole clips and streams. A stream's spectrum is not known when its first chunk must go out, so
`embed_fixed` and `StreamingEmbedder` give the ripple fixed depths with a spectral shape that suits speech
(`fixed_depths`) and follow the audio with a gain instead: sample by sample, the ripple is scaled down
(never up) as far as needed to stay `WatermarkConfig.min_snr_db` below the input's energy of the last
50 ms, so a loud bright sound (a vocoder's fricative can hold 40 % of a clip's energy, most of it at
3.5-5 kHz) gets a shallower mark, and the change stays 30 dB or more below any input, speech or noise.
The filter and the gain need nothing of the future but the filter's half length, so the streaming
embedder holds back 64 ms and its output, concatenated, is `embed_fixed` of the whole stream whatever the
chunking. Where a request can be served whole or streamed, use the fixed variant for both so the two
agree.

Limits, on purpose not hidden: the mark is not secure against someone who knows the scheme (averaging the
spectra of many outputs in phase reveals the ripple, and a matching time-varying equalizer removes it);
pitch shifting or playing at another speed moves the cells and destroys it (2 % is enough); loud added
noise weakens it (white noise at 20 dB SNR: a third to four fifths still detected); and any resynthesis
from a mel spectrogram (a vocoder, the tone-color converter) erases it, because 100 mel bands cannot
represent a 31 Hz ripple. So embed *last*, on the final waveform. The default key is public: the default mark says
"made with Timbre Studio" to anyone; a private key gives a private mark.

Shapes: ``T`` samples, ``N`` STFT frames, ``K`` pattern cells, ``G`` groups of cells, ``C`` cells per group.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from tts.audio import Audio, load_audio, resample
from tts.errors import AudioError

logger = logging.getLogger(__name__)

DEFAULT_KEY = "timbre-studio"
"""The public key every studio output is marked with unless the caller passes its own."""

Key = int | str

NYQUIST_MARGIN = 0.45
"""Only groups below this fraction of a sample rate count as carried by audio at that rate (resamplers
roll off before Nyquist)."""


@dataclass(frozen=True)
class WatermarkConfig:
    """Every constant of the scheme. Changing any of them makes earlier marks undetectable: bump `version`.

    Attributes:
        band_low_hz, band_high_hz: the band the ripple lives in (below 16 kHz audio's Nyquist).
        cell_hz: width of one pattern cell; a whole number (2 or more) of analysis bins.
        cells_per_group: cells per group (``C``); each group has as many raised as lowered cells, its own
            depth, and its own cubic removed by the detector.
        max_depth: the deepest ripple, in nepers of magnitude (0.15 is about +-1.3 dB).
        min_snr_db: the depth allocation (`embed`), and the gain (`embed_fixed`, `StreamingEmbedder`),
            keep the watermark (output - input) this far below the input at full depth.
        reference_level_db, reference_tilt_db_per_octave: the streaming variant (`embed_fixed`,
            `StreamingEmbedder`) allocates its depths against this reference spectrum instead of the clip's:
            the first group holds `reference_level_db` of the total energy and each group's energy falls
            by `reference_tilt_db_per_octave`. Only the shape matters much (the gain sets the level): a
            speech-like tilt, full depth from 3 kHz up. The detector weights the groups by these depths;
            changing them keeps earlier marks detectable.
        gain_seconds: time constant of the streaming variant's gain (one-pole smoothing of the input's and
            the ripple's energies).
        filter_seconds: length of the (centered, Hann-tapered) embedding filter.
        silence_run_seconds: runs of exact zeros at least this long stay exactly zero.
        analysis_sample_rate, analysis_n_fft, analysis_hop: the detector's STFT.
        detrend_degree: degree of the polynomial removed from each group's modulated log spectrum.
        active_range_db: frames whose band power lies more than this below the loud frames' are ignored.
        silence_floor: band power per bin (at the analysis STFT) below which a frame counts as silence
            (about -120 dBFS).
        modulation_seconds: the period of the mark's modulation in time: the ripple crossfades from the
            key's pattern to its mirror image (every cell's sign flipped) and back along a sine of this
            period.
        modulation_overdrive: the sine is multiplied by this and clipped at +-1, so the mark spends most of
            the time at full depth (1.5: 54 % of the time at +-1; 1.0 would be a plain sine).
        window_seconds, max_windows: `detect` follows the modulation's phase within windows of at least
            `window_seconds` of signal (at most `max_windows` of them) and adds up the windows' evidence
            without assuming one phase across them, so a time stretch of a few percent or a splice does
            not cancel it.
        threshold: the score from which `detect` says present.
        min_seconds: less active audio than this is never called marked.
        version: the scheme's version, part of the pattern's hash (1: the unmodulated ripple).
    """

    band_low_hz: float = 1000.0
    band_high_hz: float = 7000.0
    cell_hz: float = 31.25
    cells_per_group: int = 16
    max_depth: float = 0.15
    min_snr_db: float = 30.0
    reference_level_db: float = -13.0
    reference_tilt_db_per_octave: float = 6.0
    gain_seconds: float = 0.05
    filter_seconds: float = 0.128
    silence_run_seconds: float = 0.01
    analysis_sample_rate: int = 16_000
    analysis_n_fft: int = 2048
    analysis_hop: int = 512
    detrend_degree: int = 3
    active_range_db: float = 40.0
    silence_floor: float = 1e-9
    modulation_seconds: float = 1.0
    modulation_overdrive: float = 1.5
    window_seconds: float = 3.0
    max_windows: int = 8
    threshold: float = 5.0
    min_seconds: float = 1.0
    version: int = 2

    @property
    def num_groups(self) -> int:
        """``G``: whole groups that fit in the band."""
        return int((self.band_high_hz - self.band_low_hz) // (self.cell_hz * self.cells_per_group))

    @property
    def num_cells(self) -> int:
        """``K = G * C``."""
        return self.num_groups * self.cells_per_group

    def group_edges_hz(self) -> np.ndarray:
        """``(G + 1,)`` group boundaries in Hz."""
        return self.band_low_hz + self.cell_hz * self.cells_per_group * np.arange(self.num_groups + 1)

    def __post_init__(self) -> None:
        bin_hz = self.analysis_sample_rate / self.analysis_n_fft
        bins_per_cell, low_bin = self.cell_hz / bin_hz, self.band_low_hz / bin_hz
        if bins_per_cell < 2 or not float(bins_per_cell).is_integer() or not float(low_bin).is_integer():
            raise ValueError("cell_hz must be 2 or more analysis bins wide and the band start on a bin")
        if self.num_groups < 1 or self.band_high_hz > NYQUIST_MARGIN * self.analysis_sample_rate:
            raise ValueError(f"the band must hold a group and lie below {NYQUIST_MARGIN} x the analysis rate")
        if self.cells_per_group % 2 or self.cells_per_group <= self.detrend_degree + 1:
            raise ValueError("cells_per_group must be even and larger than detrend_degree + 1")
        if not self.modulation_seconds > 0 or not self.modulation_overdrive >= 1:
            raise ValueError("modulation_seconds must be positive and modulation_overdrive at least 1")
        if not self.window_seconds >= self.modulation_seconds or self.max_windows < 1:
            raise ValueError("window_seconds must hold a modulation period and max_windows be 1 or more")



DEFAULT_CONFIG = WatermarkConfig()


@dataclass(frozen=True)
class Detection:
    """What `detect` found.

    Attributes:
        present: the score reached the threshold on at least `WatermarkConfig.min_seconds` of signal.
        score: z-score of the correlation with the key's modulated pattern (N(0, 1) without the mark:
            the standard normal quantile of the statistic's tail probability); 0.0 when too little signal
            was analyzed to compute one.
        threshold: the score from which the mark counts as present.
        seconds_analyzed: seconds of audio with signal in the watermark band that the score rests on
            (silence is not counted).
    """

    present: bool
    score: float
    threshold: float
    seconds_analyzed: float

    def __str__(self) -> str:
        if self.present:
            verdict = "watermark present"
        elif self.seconds_analyzed < DEFAULT_CONFIG.min_seconds and self.score == 0.0:
            verdict = "too little signal to decide"
        else:
            verdict = "no watermark"
        relation = ">=" if self.score >= self.threshold else "<"
        return (
            f"{verdict} (score {self.score:.2f} {relation} threshold {self.threshold:.2f}, "
            f"{self.seconds_analyzed:.1f} s of signal analyzed)"
        )


# ---------------------------------------------------------------------------------------------------------
# The key's pattern


def _key_bytes(key: Key, config: WatermarkConfig) -> bytes:
    """Canonical bytes of a key: an int and its decimal string are the same key (the CLI passes strings)."""
    if isinstance(key, bool) or not isinstance(key, (numbers.Integral, str)):
        raise ValueError(f"a watermark key is an int or a str, got {type(key).__name__}")
    text = str(int(key)) if isinstance(key, numbers.Integral) else key
    if not text:
        raise ValueError("a watermark key must not be empty")
    return f"timbre-watermark/v{config.version}/{config.num_groups}x{config.cells_per_group}:{text}".encode()


def watermark_pattern(key: Key = DEFAULT_KEY, config: WatermarkConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The key's ``(K,)`` pattern of +1 and -1, as many of each in every group of ``C`` cells."""
    groups, per_group = config.num_groups, config.cells_per_group
    digest = hashlib.shake_256(_key_bytes(key, config)).digest(8 * groups * per_group)
    draws = np.frombuffer(digest, dtype="<u8").reshape(groups, per_group)
    ranks = np.argsort(np.argsort(draws, axis=1, kind="stable"), axis=1, kind="stable")
    return np.where(ranks < per_group // 2, 1.0, -1.0).reshape(-1)


# ---------------------------------------------------------------------------------------------------------
# Embedding

FRAME_BLOCK = 256
"""STFT frames transformed at a time, so memory stays small for a 20-minute input."""

def _group_depths(samples: np.ndarray, sample_rate: int, strength: float, config: WatermarkConfig) -> np.ndarray:
    """``(G,)`` ripple depths (nepers) for this clip: the most total depth whose change stays
    `min_snr_db` below the clip, no group deeper than `max_depth`, groups the rate cannot carry at 0.

    Water-filling: a ripple of depth d changes a group of energy E by about d^2 E, and maximizing
    sum(depth) under sum(depth^2 energy) <= budget gives depth ~ 1 / energy,
    capped at `max_depth`; the cap's level comes from a bisection on the Lagrange multiplier.
    """
    power, bins = _average_power_spectrum(samples, sample_rate)
    total = float(power.sum())
    if total <= 0.0:
        return np.zeros(config.num_groups)
    return _allocate_depths(_group_energies(power, bins, config), total, sample_rate, config) * strength


def _group_energies(power: np.ndarray, bins: np.ndarray, config: WatermarkConfig) -> np.ndarray:
    """``(G,)`` the energy of each group in a power spectrum `power` at frequencies `bins` (Hz)."""
    edges = config.group_edges_hz()
    return np.array([power[(bins >= low) & (bins < high)].sum() for low, high in pairwise(edges)])


def _allocate_depths(energy: np.ndarray, total: float, sample_rate: int, config: WatermarkConfig) -> np.ndarray:
    """``(G,)`` depths for groups holding `energy` ``(G,)`` of a signal of energy `total`: water-filling
    under the `min_snr_db` budget (see `_group_depths`)."""
    usable = config.group_edges_hz()[1:] <= NYQUIST_MARGIN * sample_rate
    if not usable.any():
        return np.zeros(config.num_groups)
    budget = total * 10.0 ** (-config.min_snr_db / 10.0)

    def depths_for(level: float) -> np.ndarray:
        depth = np.minimum(config.max_depth, level / np.maximum(energy, 1e-300))  # silent groups: max_depth
        return np.where(usable, depth, 0.0)

    if float(np.sum(depths_for(math.inf) ** 2 * energy)) > budget:
        low, high = 0.0, config.max_depth * float(energy[usable].max())
        for _ in range(100):  # fixed iteration count: bit-exact results
            middle = 0.5 * (low + high)
            if float(np.sum(depths_for(middle) ** 2 * energy)) > budget:
                high = middle
            else:
                low = middle
        return depths_for(low)
    return depths_for(math.inf)


def fixed_depths(sample_rate: int, strength: float = 1.0, config: WatermarkConfig = DEFAULT_CONFIG) -> np.ndarray:
    """``(G,)`` ripple depths (nepers) of `embed_fixed` and `StreamingEmbedder` (before their gain), known
    before any audio arrives: water-filling against the config's reference spectrum rather than the
    clip's own. `detect` weights the groups by them.

    With the defaults (5 % of the energy in 1-1.5 kHz, -6 dB per octave above) the groups from 1 to 3 kHz
    get 0.024 to 0.117 nepers and the groups above 3 kHz `max_depth`; groups a `sample_rate` cannot carry
    get 0.
    """
    edges = config.group_edges_hz()
    octaves = np.log2(0.5 * (edges[:-1] + edges[1:]) / (0.5 * (edges[0] + edges[1])))
    energy = 10.0 ** ((config.reference_level_db - config.reference_tilt_db_per_octave * octaves) / 10.0)
    return _allocate_depths(energy, 1.0, sample_rate, config) * strength


def _average_power_spectrum(samples: np.ndarray, sample_rate: int, n_fft: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Welch's average power spectrum (Hann frames, half overlap, in blocks so long clips stay small in
    memory) and its bin frequencies. Only ratios of it are used."""
    hop = n_fft // 2
    padded = np.pad(samples.astype(np.float64), (hop, hop + n_fft))
    window = np.hanning(n_fft + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    power = np.zeros(n_fft // 2 + 1)
    for start in range(0, len(frames), FRAME_BLOCK):
        power += (np.abs(np.fft.rfft(frames[start : start + FRAME_BLOCK] * window, axis=1)) ** 2).sum(axis=0)
    return power, np.fft.rfftfreq(n_fft, 1.0 / sample_rate)


def _ripple_filter(
    pattern: np.ndarray, depths: np.ndarray, sample_rate: int, config: WatermarkConfig
) -> np.ndarray:
    """``(L,)`` zero-phase FIR taps (odd length, centered) of the ripple's odd part: a response of
    ``tanh(depth * pattern)`` inside the band and 0 outside (cell edges softened over half a cell), so that
    ``x + m * (taps * x)`` has the log magnitude ``m * depth * pattern`` (less ``log cosh(depth)``) at
    ``m = +-1`` and is ``x`` itself at ``m = 0``."""
    size = 1 << math.ceil(math.log2(16 * sample_rate / config.cell_hz))
    bins = np.fft.rfftfreq(size, 1.0 / sample_rate)
    cell = np.floor((bins - config.band_low_hz) / config.cell_hz).astype(np.int64)
    inside = (cell >= 0) & (cell < config.num_cells)
    ripple = np.zeros(len(bins))
    ripple[inside] = (np.repeat(depths, config.cells_per_group) * pattern)[cell[inside]]
    half_width = max(1, round(0.25 * config.cell_hz * size / sample_rate))
    smoothing = np.hanning(2 * half_width + 3)[1:-1]
    ripple = np.convolve(ripple, smoothing / smoothing.sum(), mode="same")
    impulse = np.fft.irfft(np.tanh(ripple), size)  # real and even: zero phase
    half = round(config.filter_seconds * sample_rate / 2)
    return np.concatenate([impulse[size - half :], impulse[: half + 1]]) * np.hanning(2 * half + 3)[1:-1]


def _modulation(start: int, count: int, sample_rate: int, config: WatermarkConfig) -> np.ndarray:
    """``(count,)`` the mark's signed depth at samples ``start .. start + count - 1`` of a clip or stream
    (counted from its first sample): a sine of period `WatermarkConfig.modulation_seconds`, overdriven by
    `WatermarkConfig.modulation_overdrive` and clipped at +-1. A function of the sample index alone, so
    every chunking of a stream gets the same values; it is 0 at every multiple of half a period."""
    period = config.modulation_seconds * sample_rate
    phase = np.mod(np.arange(start, start + count, dtype=np.float64), period) / period
    return np.clip(config.modulation_overdrive * np.sin(2.0 * np.pi * phase), -1.0, 1.0)


def _silence_run(sample_rate: int, config: WatermarkConfig) -> int:
    """Samples in the shortest run of digital zeros that stays exactly zero."""
    return max(1, round(config.silence_run_seconds * sample_rate))


def _zero_run_mask(zero: np.ndarray, min_length: int) -> np.ndarray:
    """``(T,)`` bool: which of the middle ``T`` entries of `zero` ``(T + 2 (min_length - 1),)`` lie in a run
    of at least `min_length` True entries. Only ``min_length - 1`` entries either side matter, which is
    what lets the streaming embedder decide with bounded lookahead; pad with False outside the signal."""
    counts = np.concatenate([[0], np.cumsum(zero, dtype=np.int64)])
    full = counts[min_length:] - counts[:-min_length] == min_length  # window [s, s + min_length) all True
    # Entry i of the middle (i + min_length - 1 of `zero`) lies in the windows starting at i .. i + min_length - 1.
    covered = np.concatenate([[0], np.cumsum(full, dtype=np.int64)])
    return covered[min_length:] - covered[:-min_length] > 0


DIRECT_CONVOLUTION_MAX = 256
"""Segments of at most this many output samples are filtered directly, longer ones by FFT (either way the
result is the same to about 1e-15)."""


def _filtered(padded: np.ndarray, taps: np.ndarray, context: int) -> np.ndarray:
    """``(T,)``: the middle of `padded` ``(T + 2 context,)`` through the centered `taps`."""
    from scipy.signal import oaconvolve

    count, half = len(padded) - 2 * context, len(taps) // 2
    segment = padded[context - half : context + count + half]
    return (np.convolve if count <= DIRECT_CONVOLUTION_MAX else oaconvolve)(segment, taps, mode="valid")


def _mixed(
    padded: np.ndarray, inside: np.ndarray, ripple: np.ndarray, modulation: np.ndarray, run: int, context: int
) -> np.ndarray:
    """``(T,)`` float64: the middle of `padded` ``(T + 2 context,)`` plus `modulation` ``(T,)`` times
    `ripple` ``(T,)`` (that middle through the ripple filter, `_filtered`), with runs of at least `run`
    zeros of the signal (`inside` marks it) kept zero. Depends only on `context` samples either side: the
    streaming unit of `StreamingEmbedder` and `embed`."""
    count = len(padded) - 2 * context
    marked = padded[context : context + count] + modulation * ripple
    zero = (padded == 0.0) & inside
    marked[_zero_run_mask(zero[context - run + 1 : context + count + run - 1], run)] = 0.0
    return marked


EMBED_BLOCK = 1 << 18
"""Output samples `embed` filters at a time, so memory stays small for a 20-minute input."""


def embed(
    audio: Audio, key: Key = DEFAULT_KEY, strength: float = 1.0, config: WatermarkConfig = DEFAULT_CONFIG
) -> Audio:
    """`audio` with the key's watermark, at the same rate and length; the depths come from the whole
    clip's spectrum.

    Args:
        audio: any rate; 15.6 kHz or more keeps the whole pattern (lower rates mark the groups they carry).
        key: an int or a str (an int and its decimal string are the same key).
        strength: multiplies the ripple depth: 2.0 is about 6 dB louder and more robust, 0.5 the opposite.

    Digital silence stays exactly silent; an all-zero input comes back unchanged. The output's peak only
    exceeds 1.0 where the input's did (otherwise it is scaled back by the fraction of a dB the ripple added).
    Deterministic: the same input and key give the same samples, bit for bit.

    Raises:
        AudioError: empty or non-finite audio.
        ValueError: a key that is not an int or a str, or a strength outside (0, 4].
    """
    samples = _checked_samples(audio, "watermark")
    strength = _checked_strength(strength)
    depths = _group_depths(samples, audio.sample_rate, strength, config)
    if not depths.any():
        return Audio(samples.copy(), audio.sample_rate)
    logger.debug("watermark depths per group (nepers): %s", np.round(depths, 4))
    taps = _ripple_filter(watermark_pattern(key, config), depths, audio.sample_rate, config)
    run = _silence_run(audio.sample_rate, config)
    context = max(len(taps) // 2, run - 1)
    padded = np.pad(samples.astype(np.float64), context)
    inside = np.pad(np.ones(len(samples), dtype=bool), context)
    marked = np.empty(len(samples))
    for start in range(0, len(samples), EMBED_BLOCK):
        count = min(EMBED_BLOCK, len(samples) - start)
        window = slice(start, start + count + 2 * context)
        modulation = _modulation(start, count, audio.sample_rate, config)
        ripple = _filtered(padded[window], taps, context)
        marked[start : start + count] = _mixed(padded[window], inside[window], ripple, modulation, run, context)
    ceiling = max(1.0, float(np.max(np.abs(samples))))
    peak = float(np.max(np.abs(marked)))
    if peak > ceiling:
        marked *= ceiling / peak
    return Audio(marked.astype(np.float32), audio.sample_rate)


def _checked_strength(strength: float) -> float:
    if isinstance(strength, bool) or not (isinstance(strength, numbers.Real) and 0.0 < float(strength) <= 4.0):
        raise ValueError(f"strength must be in (0, 4] (1.0 is the default depth), got {strength!r}")
    return float(strength)


# ---------------------------------------------------------------------------------------------------------
# Streams: fixed depths and a gain that follows the audio, the same mark for whole clips and for streams


class StreamingEmbedder:
    """Watermarks a stream chunk by chunk; what it returns, concatenated, is `embed_fixed` of the whole
    stream (to float rounding, about 1e-7), however the stream was cut.

        embedder = StreamingEmbedder(24_000)
        for chunk in chunks:                  # (T,) arrays of any length, empty ones included
            play(embedder.push(chunk))        # everything that is final so far
        play(embedder.flush())                # the last `latency_samples`

    The filter is zero phase, so an output sample needs the input up to `latency_samples` after it
    (``(L - 1) / 2`` for the ``L``-tap filter: 64 ms with the default config, whatever the rate).

    Depths: a stream's spectrum is not known in advance, so the ripple has `fixed_depths` (a spectral
    shape that suits speech), and its level follows the audio instead: a gain of at most 1, set sample by
    sample from the energies of the input and of the ripple over the last `WatermarkConfig.gain_seconds`
    (one-pole smoothing from the stream's first sample), keeps the change `WatermarkConfig.min_snr_db`
    below the input at every moment, so a loud bright sound (a vocoder's fricative) gets a shallower mark
    and the mark spills no pre-echo into a quiet stretch. Both depend only on the input up to the sample,
    so any chunking gives the same output.

    Digital silence stays exactly silent, as in `embed`. Peaks: samples are clipped one by one at full
    scale (at the input sample's own magnitude where that is larger), which depends on nothing else and so
    gives the same result for any chunking; the ripple raises speech peaks by a few percent at most (see
    docs/reliability.md), so it only acts on input within a fraction of a dB of full scale.

    One embedder per stream: it holds the stream's last samples (at most ``2 x latency_samples``) and the
    two smoothed energies.
    """

    def __init__(
        self,
        sample_rate: int,
        key: Key = DEFAULT_KEY,
        strength: float = 1.0,
        config: WatermarkConfig = DEFAULT_CONFIG,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        strength = _checked_strength(strength)
        self._config = config
        depths = fixed_depths(self.sample_rate, strength, config)
        pattern = watermark_pattern(key, config)
        # A rate too low for any group leaves nothing to mark: the stream passes through without delay.
        self._taps = _ripple_filter(pattern, depths, self.sample_rate, config) if depths.any() else None
        self._run = _silence_run(self.sample_rate, config)
        self.latency_samples: int = 0 if self._taps is None else max(len(self._taps) // 2, self._run - 1)
        """Samples of input a pushed sample waits for before it comes out."""
        # The gain's budget scales with the strength like the depths do (strength 2: 6 dB more change).
        self._budget = strength**2 * 10.0 ** (-config.min_snr_db / 10.0)
        self._smoothing = 1.0 - math.exp(-1.0 / (config.gain_seconds * self.sample_rate))
        self._energies = np.zeros((2, 1))  # smoothed input and ripple energies (lfilter states)
        self._buffer = np.zeros(0)  # input from `_emitted - _history` to `_received`
        self._history = 0
        self._received = 0
        self._emitted = 0
        self._flushed = False

    @property
    def latency_seconds(self) -> float:
        """`latency_samples` in seconds."""
        return self.latency_samples / self.sample_rate

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add ``(T,)`` samples to the stream and return the ``(T',)`` float32 output that is now final
        (empty while the stream is shorter than `latency_samples`).

        Raises:
            AudioError: not 1-D, or non-finite samples.
            ValueError: after `flush`.
        """
        if self._flushed:
            raise ValueError("this stream was flushed: start a new StreamingEmbedder for the next stream")
        chunk = np.asarray(samples)
        if chunk.ndim != 1 or chunk.dtype.kind not in "fiu":
            raise AudioError(f"push 1-D real samples, got shape {chunk.shape} of {chunk.dtype}")
        if not np.all(np.isfinite(chunk)):
            raise AudioError("cannot watermark audio that contains NaN or infinite samples")
        self._buffer = np.concatenate([self._buffer, chunk.astype(np.float64)])
        self._received += len(chunk)
        return self._render(self._received - self.latency_samples)

    def flush(self) -> np.ndarray:
        """End the stream and return the rest of the output (``(latency_samples,)`` or less); after the
        first call, an empty array."""
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        return self._render(self._received)

    def _render(self, end: int) -> np.ndarray:
        """Output from `_emitted` to `end`; the input past `_received` counts as zeros (the stream's end)."""
        count = end - self._emitted
        if count <= 0:
            return np.zeros(0, np.float32)
        context = self.latency_samples
        after = self._received - end  # input held beyond `end`: `context`, or 0 at the end of the stream
        padded = np.concatenate([
            np.zeros(context - self._history), self._buffer, np.zeros(context - after)
        ])  # (count + 2 context,): zeros outside the stream
        inside = np.zeros(len(padded), dtype=bool)
        inside[context - self._history : context - self._history + len(self._buffer)] = True
        start, self._emitted = self._emitted, end
        self._history = min(context, end)
        self._buffer = self._buffer[len(self._buffer) - after - self._history :]
        original = padded[context : context + count]
        if self._taps is None:
            return original.astype(np.float32)
        ripple = _filtered(padded, self._taps, context)
        ripple *= self._gain(original, ripple)
        modulation = _modulation(start, count, self.sample_rate, self._config)
        marked = _mixed(padded, inside, ripple, modulation, self._run, context)
        ceiling = np.maximum(1.0, np.abs(original))
        return np.clip(marked, -ceiling, ceiling).astype(np.float32)

    def _gain(self, original: np.ndarray, ripple: np.ndarray) -> np.ndarray:
        """``(T,)`` the gain in [0, 1] of the ripple at the next ``T`` samples: the largest that keeps the
        smoothed ripple energy `_budget` times the smoothed input energy or less."""
        from scipy.signal import lfilter

        squares = np.stack([original**2, ripple**2])
        smoothing = self._smoothing
        energies, self._energies = lfilter([smoothing], [1.0, smoothing - 1.0], squares, axis=1, zi=self._energies)
        allowed = self._budget * energies[0]
        return np.sqrt(np.minimum(1.0, allowed / np.maximum(energies[1], 1e-300)))


def embed_fixed(
    audio: Audio, key: Key = DEFAULT_KEY, strength: float = 1.0, config: WatermarkConfig = DEFAULT_CONFIG
) -> Audio:
    """`audio` with the key's watermark as a stream gets it: exactly what a `StreamingEmbedder` makes of
    the same samples pushed in any chunks (fixed depths, a gain that follows the audio). Use it (rather
    than `embed`) where whole clips and streams of the same request must agree.

    Same arguments, errors and silence guarantee as `embed`; peaks are clipped sample by sample at full
    scale (see `StreamingEmbedder`).
    """
    samples = _checked_samples(audio, "watermark")
    embedder = StreamingEmbedder(audio.sample_rate, key, strength, config)
    # Pushed in blocks, which changes nothing but keeps memory small for a 20-minute input.
    chunks = [embedder.push(samples[start : start + EMBED_BLOCK]) for start in range(0, len(samples), EMBED_BLOCK)]
    return Audio(np.concatenate([*chunks, embedder.flush()]), audio.sample_rate)


def embed_stream(
    chunks: Iterable[Audio], key: Key = DEFAULT_KEY, strength: float = 1.0, config: WatermarkConfig = DEFAULT_CONFIG
) -> Iterator[Audio]:
    """A generator of marked chunks from a generator of chunks (all at one rate): `StreamingEmbedder`
    around a stream of `Audio`. Yields no empty chunks; concatenated, the output is `embed_fixed` of the
    concatenated input, `StreamingEmbedder.latency_samples` later.

    Raises:
        AudioError: chunks at different sample rates, or non-finite samples.
    """
    embedder: StreamingEmbedder | None = None
    for chunk in chunks:
        if not isinstance(chunk, Audio):
            raise ValueError(f"expected Audio chunks, got {type(chunk).__name__}")
        if embedder is None:
            embedder = StreamingEmbedder(chunk.sample_rate, key, strength, config)
        elif chunk.sample_rate != embedder.sample_rate:
            raise AudioError(f"a stream changed rate from {embedder.sample_rate} to {chunk.sample_rate} Hz")
        marked = embedder.push(chunk.samples)
        if len(marked):
            yield Audio(marked, embedder.sample_rate)
    if embedder is not None:
        tail = embedder.flush()
        if len(tail):
            yield Audio(tail, embedder.sample_rate)


def watermark_snr_db(original: Audio, marked: Audio) -> float:
    """Energy of `original` over the energy of ``marked - original``, in dB (inf when identical)."""
    if original.sample_rate != marked.sample_rate or len(original) != len(marked):
        raise ValueError("compare a clip with its own marked version (same rate and length)")
    reference = original.samples.astype(np.float64)
    noise = float(np.sum((marked.samples.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal, 1e-300) / noise)


# ---------------------------------------------------------------------------------------------------------
# Detection


def _checked_samples(audio: Audio, what: str) -> np.ndarray:
    if not isinstance(audio, Audio):
        raise ValueError(f"expected an Audio value, got {type(audio).__name__}")
    if len(audio) == 0:
        raise AudioError(f"cannot {what} empty audio (0 samples)")
    if not np.all(np.isfinite(audio.samples)):
        raise AudioError(f"cannot {what} audio that contains NaN or infinite samples")
    return audio.samples


def _detrend_projection(size: int, degree: int) -> np.ndarray:
    """``(C, C)`` projection that removes a least-squares polynomial of `degree` from a group."""
    basis = np.vander(np.linspace(-1.0, 1.0, size), degree + 1)
    q, _ = np.linalg.qr(basis)
    return np.eye(size) - q @ q.T


def _modulated_cell_spectra(samples: np.ndarray, config: WatermarkConfig) -> tuple[np.ndarray, float]:
    """``(W, 2, K)``: in each of ``W`` windows of the active frames, the log of every cell's mean interior
    power in each frame, summed over the window's frames weighted by the cosine and by the sine of the
    mark's modulation at the frame's center (both made zero-mean over the window, so whatever is constant
    in time drops out: the voice's average spectrum, and any fixed fine structure such as a vocoder's);
    and the seconds of active signal (frames x hop)."""
    n_fft, hop = config.analysis_n_fft, config.analysis_hop
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1]
    bin_hz = config.analysis_sample_rate / n_fft
    low_bin = round(config.band_low_hz / bin_hz)
    high_bin = round((config.band_low_hz + config.num_cells * config.cell_hz) / bin_hz)
    # Each cell's interior bins (its middle half), away from the softened edges and the window's leakage.
    position = (np.arange(low_bin, high_bin) * bin_hz - config.band_low_hz) / config.cell_hz
    offset = position - np.floor(position)
    interior = (offset >= 0.25 - 1e-9) & (offset <= 0.75 + 1e-9)
    to_cells = np.zeros((high_bin - low_bin, config.num_cells))
    to_cells[np.flatnonzero(interior), np.floor(position[interior]).astype(np.int64)] = 1.0
    to_cells /= to_cells.sum(axis=0)
    band = np.empty(len(frames))
    cells = np.empty((len(frames), config.num_cells), dtype=np.float32)  # (N, K); float32 keeps 20 min small
    for start in range(0, len(frames), FRAME_BLOCK):
        block = frames[start : start + FRAME_BLOCK] * window
        power = np.abs(np.fft.rfft(block, axis=1)[:, low_bin:high_bin]) ** 2
        band[start : start + len(block)] = power.mean(axis=1)
        cells[start : start + len(block)] = power @ to_cells
    loud = float(np.percentile(band, 90))
    active = np.flatnonzero((band > config.silence_floor) & (band >= loud * 10.0 ** (-config.active_range_db / 10.0)))
    seconds = len(active) * hop / config.analysis_sample_rate
    count = int(np.clip(seconds // config.window_seconds, 1, config.max_windows))
    sums = np.zeros((count, 2, config.num_cells))
    period = config.modulation_seconds * config.analysis_sample_rate
    for index, chosen in enumerate(np.array_split(active, count)):
        if not len(chosen):
            continue
        angle = 2.0 * np.pi * (chosen * hop + n_fft / 2) / period
        basis = np.stack([np.cos(angle), np.sin(angle)])  # (2, frames of the window)
        basis -= basis.mean(axis=1, keepdims=True)
        for start in range(0, len(chosen), FRAME_BLOCK):
            rows = chosen[start : start + FRAME_BLOCK]
            # A floor relative to each frame's own level: cells a codec zeroed do not dominate.
            log_power = np.log(cells[rows] + 1e-6 * band[rows, None])
            sums[index] += basis[:, start : start + FRAME_BLOCK] @ log_power
    return sums, seconds


def _chi_square_log_tail(chi_square: float, degrees: int) -> float:
    """log P(X >= chi_square) for X chi-square with an even number of `degrees` (closed form, in logs so
    the tail of a long marked file does not underflow)."""
    half = 0.5 * chi_square
    terms = [k * math.log(half) - math.lgamma(k + 1) for k in range(degrees // 2)] if half > 0 else [0.0]
    top = max(terms)
    return min(-half + top + math.log(sum(math.exp(t - top) for t in terms)), 0.0)


def _detection_weights(carried: np.ndarray, config: WatermarkConfig) -> np.ndarray:
    """``(G',)`` weights of the carried groups: their `fixed_depths`, the spectral shape of the studio's
    mark (a matched filter; on `embed`'s marks too, they did better than the clip's own depths). They
    depend on neither the audio nor the key, which keeps the score N(0, 1) without the mark."""
    weights = fixed_depths(config.analysis_sample_rate, 1.0, config)[carried]
    return weights if weights.any() else np.ones(int(carried.sum()))


def detect(audio: Audio, key: Key = DEFAULT_KEY, config: WatermarkConfig = DEFAULT_CONFIG) -> Detection:
    """Whether `audio` (any rate, any length, any level) carries the watermark of `key`.

    Audio with less than `WatermarkConfig.min_seconds` of signal (silence, a short blip) is reported as not
    present with score 0.0 and the seconds it had.

    Raises:
        AudioError: empty (0 samples) or non-finite audio.
        ValueError: a key that is not an int or a str.
    """
    samples = _checked_samples(audio, "look for a watermark in")
    pattern = watermark_pattern(key, config)
    carried = config.group_edges_hz()[1:] <= NYQUIST_MARGIN * min(audio.sample_rate, config.analysis_sample_rate)
    samples = resample(samples, audio.sample_rate, config.analysis_sample_rate)
    sums, seconds = _modulated_cell_spectra(samples, config)
    score = _score(sums, carried, pattern, config) if seconds >= config.min_seconds and carried.any() else None
    if score is None:
        return Detection(False, 0.0, config.threshold, round(seconds, 3))
    return Detection(bool(score >= config.threshold), score, config.threshold, round(seconds, 3))


def _score(sums: np.ndarray, carried: np.ndarray, pattern: np.ndarray, config: WatermarkConfig) -> float | None:
    """The z-score of `_modulated_cell_spectra`'s `sums` ``(W, 2, K)`` against the key's `pattern` ``(K,)``
    over the `carried` ``(G,)`` groups; None when nothing is left to correlate."""
    from scipy.special import ndtri_exp

    per_group = config.cells_per_group
    projection = _detrend_projection(per_group, config.detrend_degree)
    # (2 W, K'): every window's cosine and sine components, each group's smooth shape removed, weighted by
    # the groups' depths (a matched filter).
    components = sums.reshape(len(sums) * 2, -1, per_group)[:, carried] @ projection
    residuals = (_detection_weights(carried, config)[:, None] * components).reshape(len(components), -1)
    residuals = residuals[np.linalg.norm(residuals, axis=1) > 0]
    template = (pattern.reshape(-1, per_group)[carried] @ projection).reshape(-1)
    if not len(residuals) or not template.any():
        return None
    # Each component's normalized correlation with the key's pattern, times sqrt(degrees of freedom), is
    # N(0, 1) over keys for any audio without this key's mark, and two components are correlated as their
    # residuals are: z' inv(R) z is then chi-square with rank(R) degrees of freedom, whatever the
    # modulation's phase in each window (an excerpt starts anywhere).
    unit = residuals / np.linalg.norm(residuals, axis=1, keepdims=True)
    degrees_of_freedom = int(carried.sum()) * (per_group - config.detrend_degree - 1)
    z = unit @ template / np.linalg.norm(template) * math.sqrt(degrees_of_freedom)
    eigenvalues, eigenvectors = np.linalg.eigh(unit @ unit.T)
    kept = eigenvalues > 1e-9 * eigenvalues.max()
    chi_square = float(np.sum((eigenvectors[:, kept].T @ z) ** 2 / eigenvalues[kept]))
    degrees = 2 * math.ceil(int(kept.sum()) / 2)  # rounded up to even: conservative
    # Reported as the standard normal quantile with the same tail probability (N(0, 1) without the mark).
    log_tail = min(_chi_square_log_tail(chi_square, degrees), -1e-15)
    return round(float(-ndtri_exp(log_tail)), 4)


# ---------------------------------------------------------------------------------------------------------
# Command line: `timbre detect FILE...`


def register(subparsers) -> None:
    """Add ``timbre detect``."""
    parser = subparsers.add_parser("detect", help="say whether audio files carry the studio's watermark")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files (any common format and rate)")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the watermark key (default: the studio's public key)")
    parser.set_defaults(func=_run_detect)


def _run_detect(args) -> int:
    failed = False
    for path in args.files:
        try:
            result = detect(load_audio(path), args.key)
        except AudioError as error:
            print(f"timbre detect: error: {error}", file=sys.stderr)
            failed = True
            continue
        print(f"{path}: {result}")
    return 2 if failed else 0
