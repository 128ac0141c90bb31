"""``timbre align in.wav "text"``: word timings of a recording's transcript, from the speech tokenizer."""

from __future__ import annotations

import json

from tts.checkpoints import checkpoints_dir
from tts.errors import CheckpointError

DEFAULT_CHECKPOINT = "speech_tokenizer"
"""Name of the shipped speech tokenizer under ``checkpoints/``."""


def register(subparsers) -> None:
    """Add ``timbre align``."""
    parser = subparsers.add_parser(
        "align", help="word and phoneme timings of a transcript in a recording",
        description="Force-align TEXT to the recording IN with the speech tokenizer's CTC head and print each word's "
        "start and end in seconds (punctuation marks appear as pauses, or zero-length).",
    )
    parser.add_argument("audio", metavar="IN", help="the recording (wav, flac, mp3, ...)")
    parser.add_argument("text", help="what is said in it")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"speech tokenizer: a folder, a shipped name or a hub id (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--json", action="store_true", help="print JSON with phoneme timings")
    parser.set_defaults(func=_run_align)


def load_tokenizer(name_or_path: str = DEFAULT_CHECKPOINT):
    """The speech tokenizer `name_or_path`; a clear `CheckpointError` while the default is not shipped yet."""
    from pathlib import Path

    from tts.tokenizer.model import SpeechTokenizer

    if name_or_path == DEFAULT_CHECKPOINT and not Path(name_or_path).is_dir() and not (checkpoints_dir() / name_or_path).is_dir():
        raise CheckpointError(
            f"the default speech tokenizer is not trained yet (no checkpoints/{DEFAULT_CHECKPOINT}). Train one with "
            "`python -m tts.tokenizer.train --corpus CORPUS --out RUN` and pass --checkpoint RUN/export."
        )
    return SpeechTokenizer.from_pretrained(name_or_path)


def _run_align(args) -> int:
    from tts.audio import load_audio
    from tts.tokenizer.align import align

    model = load_tokenizer(args.checkpoint)
    timings = align(load_audio(args.audio), args.text, model)
    if args.json:
        print(json.dumps([timing.to_dict() for timing in timings], ensure_ascii=False, indent=2))
        return 0
    for timing in timings:
        print(f"{timing.start:8.3f} {timing.end:8.3f}  {timing.word}")
    return 0
