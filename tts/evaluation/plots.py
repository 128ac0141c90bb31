"""PNG plots of an evaluation run (matplotlib, Agg backend chosen when drawing, not at import).

* ``per_utterance.png``: WER and SIM bars per utterance (failed ones marked).
* ``f0_contours.png``: F0 of a few outputs next to their prompts.
* ``spectrograms.png``: the studio log-mel of a few outputs.

And one clip's picture, as the studio shows a result (`plot_audio`): waveform, log-mel and F0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tts.evaluation.harness import EvalReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless; set here so importing this module changes nothing
    import matplotlib.pyplot as plt

    return plt


def plot_per_utterance(report: EvalReport, path: Path) -> Path:
    """WER and SIM bars for every utterance; failed utterances are shown as a red X."""
    plt = _pyplot()
    results = report.results
    wer_key = next((k for k in report.summary if k.startswith("wer_")), None)
    sim_key = next((k for k in report.summary if k.startswith("sim_")), None)
    x = np.arange(len(results))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.28 * len(results) + 2), 6), sharex=True)
    for axis, key, title in ((axes[0], wer_key, "WER"), (axes[1], sim_key, "SIM")):
        values = [r.metrics.get(key) if key else None for r in results]
        heights = [v if v is not None else 0.0 for v in values]
        colors = ["tab:orange" if r.status == "flagged" else "tab:blue" for r in results]
        axis.bar(x, heights, color=colors)
        failed = [i for i, r in enumerate(results) if r.status == "failed"]
        axis.scatter(failed, [0.0] * len(failed), marker="x", color="red", zorder=3, label="failed")
        axis.set_ylabel(f"{title}\n({key or 'not measured'})", fontsize=8)
        if failed:
            axis.legend(fontsize=7, loc="upper right")
    axes[0].axhline(0.5, color="gray", linestyle="--", linewidth=0.8)
    axes[1].set_ylim(0, 1)
    axes[1].set_xticks(x)
    axes[1].set_xticklabels([r.utt for r in results], rotation=90, fontsize=6)
    fig.suptitle(f"{report.engine} on {report.testset} (CPU proxies; orange = flagged)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_sample_figure(samples: dict, draw, ylabel: str, path: Path) -> Path:
    """One row per sample; `draw(axis, audio, track, prompt_track)` fills a row."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(samples), 1, figsize=(8, 2.2 * len(samples)), squeeze=False)
    for axis, (utt, (audio, track, prompt_track)) in zip(axes[:, 0], samples.items()):
        draw(axis, audio, track, prompt_track)
        axis.set_title(utt, fontsize=8)
        axis.set_ylabel(ylabel, fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_f0_contours(samples: dict, path: Path) -> Path:
    """F0 contours of outputs (solid) and their prompts (dotted); `samples` maps utt -> (audio, track, prompt track)."""

    def draw(axis, audio, track, prompt_track) -> None:
        axis.plot(track.times, track.f0, label="output", linewidth=1.2)
        axis.plot(prompt_track.times, prompt_track.f0, ":", label="prompt", linewidth=1.0)
        axis.legend(fontsize=7, loc="upper right")

    return _per_sample_figure(samples, draw, "F0 (Hz)", path)


def _draw_log_mel(axis, audio) -> None:
    """The studio log-mel (``tts.audio.log_mel``) of `audio` on `axis`, seconds across, mel bands up."""
    from tts.audio import SAMPLE_RATE, STUDIO_MEL, log_mel

    mel = log_mel(audio.resample(SAMPLE_RATE).samples).numpy()
    seconds = mel.shape[1] / STUDIO_MEL.frame_rate
    axis.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")


def plot_spectrograms(samples: dict, path: Path) -> Path:
    """The studio log-mel (``tts.audio.log_mel``) of each output in `samples`."""

    def draw(axis, audio, track, prompt_track) -> None:
        _draw_log_mel(axis, audio)

    return _per_sample_figure(samples, draw, "mel band", path)


def draw_run_plots(report: EvalReport, samples: dict, folder: Path) -> list[Path]:
    """Every plot of a run into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    if report.results:
        files.append(plot_per_utterance(report, folder / "per_utterance.png"))
    if samples:
        files.append(plot_f0_contours(samples, folder / "f0_contours.png"))
        files.append(plot_spectrograms(samples, folder / "spectrograms.png"))
    return files


def plot_audio(audio, path: Path, title: str = "") -> Path:
    """One clip as a PNG at `path`: its waveform, its studio log-mel (``tts.audio.log_mel``) and its F0 contour
    (Praat's, `tts.evaluation.prosody.f0_track`; left empty for a clip too short or silent to have one).

    Drawn without pyplot (a `matplotlib.figure.Figure` of its own), so threads serving several requests at once
    never share a figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tts.audio import SAMPLE_RATE
    from tts.errors import AudioError
    from tts.evaluation.prosody import f0_track

    clip = audio.resample(SAMPLE_RATE)
    seconds = clip.duration
    figure = Figure(figsize=(8, 4.6))
    FigureCanvasAgg(figure)
    wave, spectrum, pitch = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6, 1]})
    wave.plot(np.arange(len(clip.samples)) / SAMPLE_RATE, clip.samples, linewidth=0.4, color="tab:blue")
    wave.set_ylim(-1, 1)
    wave.set_ylabel("waveform", fontsize=8)
    if len(clip.samples):
        _draw_log_mel(spectrum, clip)
    spectrum.set_ylabel("mel band", fontsize=8)
    try:
        track = f0_track(clip, method="praat")
        pitch.plot(track.times, track.f0, color="tab:orange", linewidth=1.2)
        voiced = track.f0[track.voiced]
        note = f"median {np.median(voiced):.0f} Hz" if len(voiced) else "no voiced frames"
    except AudioError as error:
        note = str(error)
    pitch.set_ylabel("F0 (Hz)", fontsize=8)
    pitch.set_title(note, fontsize=7, loc="right")
    pitch.set_xlabel("seconds")
    pitch.set_xlim(0, max(seconds, 1e-3))
    for axis in (wave, spectrum, pitch):
        axis.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return Path(path)
