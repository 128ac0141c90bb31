"""Base speakers that run a system synthesizer: flite, festival and espeak-ng's own voice.

Each call writes the text to a file in a temporary folder and runs the binary on it (no shell, a time
limit), so no text can be mistaken for an option. The voices come from Debian packages that the Makefile
installs; a missing one raises a `TimbreError` naming the package.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tts.data.speakers import BaseSpeaker, ascii_text, command_timeout, missing_binary, read_wav, run_binary
from tts.errors import TimbreError

if TYPE_CHECKING:
    from tts.text import Word


class FliteSpeaker(BaseSpeaker):
    """CMU flite's built-in voices: ``slt`` (female, US), ``rms`` (male, US), ``awb`` (male, Scottish),
    ``kal16`` (male, US diphone). All at 16 kHz.

    ``kal`` (8 kHz) and ``awb_time`` (a talking clock) are left out on purpose.
    """

    name = "flite"
    native_sample_rate = 16_000
    VOICES = ("slt", "rms", "awb", "kal16")

    def voices(self) -> list[str]:
        return list(self.VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_binary("flite", "flite")

    def _render(self, text: str, words: list[Word], voice: str, speed: float,
                noise_seed: int | None = None) -> tuple[np.ndarray, int, None]:
        with tempfile.TemporaryDirectory(prefix="timbre-flite-") as folder:
            text_path, wav_path = Path(folder) / "text.txt", Path(folder) / "speech.wav"
            text_path.write_text(ascii_text(text), encoding="ascii")
            run_binary(
                ["flite", "-voice", voice, "--setf", f"duration_stretch={1.0 / speed:.6f}",
                 "-f", str(text_path), "-o", str(wav_path)],
                apt_package="flite",
                timeout=command_timeout(text),
            )
            samples, sample_rate = read_wav(wav_path)
        return samples, sample_rate, None


class FestivalSpeaker(BaseSpeaker):
    """Festival voices: ``kal_diphone`` (male, US diphone, 16 kHz) and ``cmu_us_slt_arctic_hts``
    (female, US, HTS statistical parametric, 32 kHz), through ``text2wave``."""

    name = "festival"
    native_sample_rate = 16_000
    """kal_diphone's rate; cmu_us_slt_arctic_hts synthesizes at 32 kHz (both leave as 24 kHz)."""
    VOICE_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}

    def voices(self) -> list[str]:
        return list(self.VOICE_PACKAGES)

    def unavailable_reason(self) -> str | None:
        return missing_binary("text2wave", "festival")

    @staticmethod
    def _voice_expression(voice: str, speed: float) -> str:
        """The Scheme that selects `voice` at `speed`; the voice name comes from our fixed list only."""
        if voice.endswith("_hts"):
            # HTS voices ignore Duration_Stretch; hts_engine's "-r" is its speaking-rate factor.
            rate = f'(list "-r" {speed:.6f})'
            return f"(begin (voice_{voice}) (set! hts_engine_params (append hts_engine_params (list {rate}))))"
        return f"(begin (voice_{voice}) (Parameter.set 'Duration_Stretch {1.0 / speed:.6f}))"

    def _render(self, text: str, words: list[Word], voice: str, speed: float,
                noise_seed: int | None = None) -> tuple[np.ndarray, int, None]:
        with tempfile.TemporaryDirectory(prefix="timbre-festival-") as folder:
            text_path, wav_path = Path(folder) / "text.txt", Path(folder) / "speech.wav"
            text_path.write_text(ascii_text(text), encoding="ascii")
            try:
                run_binary(
                    ["text2wave", "-eval", self._voice_expression(voice, speed), str(text_path), "-o", str(wav_path)],
                    apt_package="festival",
                    timeout=command_timeout(text),
                )
                samples, sample_rate = read_wav(wav_path)
            except TimbreError as error:
                raise TimbreError(
                    f"{error} (the voice {voice} comes from apt-get install -y {self.VOICE_PACKAGES[voice]})"
                ) from error
        return samples, sample_rate, None


class EspeakSpeaker(BaseSpeaker):
    """espeak-ng's own formant voice (US English) and three of its variants; robotic but fast, 22.05 kHz."""

    name = "espeak"
    native_sample_rate = 22_050
    VOICES = ("en-us", "en-us+m3", "en-us+f3", "en-us+f4")
    NORMAL_RATE = 175
    """espeak-ng's default speaking rate (words per minute), our speed 1.0."""
    MIN_RATE = 80
    """espeak-ng's slowest rate; slower speeds are reached by stretching the audio."""

    def voices(self) -> list[str]:
        return list(self.VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_binary("espeak-ng", "espeak-ng")

    def _render(self, text: str, words: list[Word], voice: str, speed: float,
                noise_seed: int | None = None) -> tuple[np.ndarray, int, None]:
        rate = max(self.MIN_RATE, round(self.NORMAL_RATE * speed))
        with tempfile.TemporaryDirectory(prefix="timbre-espeak-") as folder:
            text_path, wav_path = Path(folder) / "text.txt", Path(folder) / "speech.wav"
            text_path.write_text(text, encoding="utf-8")
            run_binary(
                ["espeak-ng", "-v", voice, "-s", str(rate), "-f", str(text_path), "-w", str(wav_path)],
                apt_package="espeak-ng",
                timeout=command_timeout(text),
            )
            samples, sample_rate = read_wav(wav_path)
        stretch = self.NORMAL_RATE * speed / rate
        if stretch < 0.999:
            # Below espeak-ng's slowest rate: slow the rest down with a phase vocoder (pitch kept).
            samples = time_stretch(samples, stretch)
        return samples, sample_rate, None


def time_stretch(samples: np.ndarray, rate: float, n_fft: int = 1024, hop_length: int = 256) -> np.ndarray:
    """``(T,)`` -> ``(about T / rate,)``: `samples` played `rate` times as fast, pitch unchanged.

    A plain phase vocoder (the algorithm of ``librosa.effects.time_stretch``, without its first-call
    compilation cost): magnitudes interpolated between frames, phases advanced by each bin's measured
    frequency, overlap-added with a Hann window.
    """
    samples = np.asarray(samples, dtype=np.float64)
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.pad(samples, (n_fft // 2, n_fft // 2 + n_fft))
    num_frames = 1 + (len(padded) - n_fft) // hop_length
    index = np.arange(n_fft)[None, :] + hop_length * np.arange(num_frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * window, axis=1)  # (frames, bins)
    spectrum = np.concatenate([spectrum, np.zeros_like(spectrum[:1])])  # so frame i + 1 always exists
    expected_advance = 2 * np.pi * hop_length * np.arange(n_fft // 2 + 1) / n_fft
    steps = np.arange(0, num_frames - 1, rate)
    phase = np.angle(spectrum[0])
    out = np.zeros((len(steps), n_fft // 2 + 1), dtype=np.complex128)
    for out_index, step in enumerate(steps):
        left, frac = int(step), step - int(step)
        magnitude = (1 - frac) * np.abs(spectrum[left]) + frac * np.abs(spectrum[left + 1])
        out[out_index] = magnitude * np.exp(1j * phase)
        deviation = np.angle(spectrum[left + 1]) - np.angle(spectrum[left]) - expected_advance
        deviation -= 2 * np.pi * np.round(deviation / (2 * np.pi))
        phase += expected_advance + deviation
    frames = np.fft.irfft(out, n=n_fft, axis=1) * window
    length = n_fft + hop_length * (len(steps) - 1)
    result, norm = np.zeros(length), np.zeros(length)
    for out_index, frame in enumerate(frames):
        start = out_index * hop_length
        result[start:start + n_fft] += frame
        norm[start:start + n_fft] += window**2
    result /= np.maximum(norm, 1e-8)
    target = int(round(len(samples) / rate))
    return result[n_fft // 2: n_fft // 2 + target].astype(np.float32)
