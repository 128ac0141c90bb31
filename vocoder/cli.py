"""`timbre vocode`: copy synthesis (wav -> studio log-mel -> vocoder -> wav), to hear what the vocoder keeps."""

from __future__ import annotations

from pathlib import Path

import torch

from tts.audio import Audio, load_audio, log_mel
from tts.checkpoints import checkpoints_dir, list_shipped
from tts.errors import CheckpointError

DEFAULT_CHECKPOINT = "vocoder"
"""Name of the shipped default vocoder (``checkpoints/vocoder``)."""


def copy_synthesis(audio: Audio, checkpoint: str | None = DEFAULT_CHECKPOINT, griffin_lim: bool = False) -> Audio:
    """`audio` (any rate) rendered back through the studio mel and a vocoder (or Griffin-Lim when asked)."""
    from tts.audio import SAMPLE_RATE

    if audio.sample_rate != SAMPLE_RATE:
        audio = audio.resample(SAMPLE_RATE)
    mel = log_mel(audio.to_tensor())
    if griffin_lim:
        from vocoder.griffin_lim import griffin_lim_decode

        return griffin_lim_decode(mel)
    return load_vocoder(checkpoint or DEFAULT_CHECKPOINT).decode(mel)


def load_vocoder(name_or_path: str = DEFAULT_CHECKPOINT, device: torch.device | str | None = None):
    """A `Vocos` from a studio checkpoint folder, a shipped name, or a hub id, with a clear error when absent."""
    from vocoder.vocos import Vocos

    if name_or_path == DEFAULT_CHECKPOINT and DEFAULT_CHECKPOINT not in list_shipped():
        raise CheckpointError(
            f"the default vocoder is not shipped yet ({checkpoints_dir() / DEFAULT_CHECKPOINT} does not exist). "
            "Pass --checkpoint with a trained vocoder folder (e.g. OUT/export from `python -m vocoder.train`), "
            "or use --griffin-lim, which needs no weights."
        )
    return Vocos.from_pretrained(name_or_path, device=device)


def register(subparsers) -> None:
    """Add ``timbre vocode``."""
    parser = subparsers.add_parser("vocode", help="copy synthesis: audio -> mel -> vocoder -> audio")
    parser.add_argument("input", type=Path, help="audio file (any common format and rate)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (wav, flac, mp3, ogg)")
    parser.add_argument(
        "--checkpoint", default=DEFAULT_CHECKPOINT,
        help=f"vocoder folder, shipped name or hub id (default: the shipped '{DEFAULT_CHECKPOINT}')",
    )
    parser.add_argument("--griffin-lim", action="store_true", help="use Griffin-Lim (32 iterations) instead of a vocoder")
    parser.set_defaults(func=_run_vocode)


def _run_vocode(args) -> int:
    audio = load_audio(args.input)
    result = copy_synthesis(audio, args.checkpoint, griffin_lim=args.griffin_lim)
    path = result.save(args.output)
    print(f"wrote {path} ({result.duration:.2f} s)")
    return 0
