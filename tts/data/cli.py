"""`timbre batch`, `timbre corpus build` and `timbre voices list`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    """Add ``timbre batch``, ``timbre corpus`` and ``timbre voices``."""
    from tts.data.batch import add_batch_arguments
    from tts.data.corpus_build import add_corpus_arguments

    batch = subparsers.add_parser(
        "batch",
        help="synthesize a manifest (JSONL or CSV) into an audiofolder corpus",
        description="Synthesize every line of MANIFEST (id, text, voice, style, intensity, speed, seed) into "
        "OUT/audio/*.flac and OUT/metadata.jsonl. Resumable and deterministic; bad lines go to OUT/errors.jsonl. "
        "Parallel: accelerate launch --multi_gpu --num_processes N -m tts.data.batch MANIFEST --out OUT.",
    )
    add_batch_arguments(batch)
    batch.set_defaults(func=_run_batch)

    corpus = subparsers.add_parser("corpus", help="build the bootstrap training corpus")
    corpus_commands = corpus.add_subparsers(dest="corpus_command", metavar="COMMAND")
    build = corpus_commands.add_parser(
        "build",
        help="plan and synthesize the bootstrap corpus (training voices only)",
        description="Plan a corpus of --hours hours over the training voices of the voice bank, every style and "
        "a range of speeds, with sentences from the training split, then synthesize it like `timbre batch`.",
    )
    add_corpus_arguments(build)
    build.set_defaults(func=_run_corpus_build)
    pack = corpus_commands.add_parser(
        "pack", help="copy a corpus with Opus audio (about 38 MB/h) to move it to a training machine",
        description="Re-encode a corpus's audio as Ogg Opus into OUT (resumable); --parts spreads the audio over "
        "OUT/part1..N/audio of similar size, to move in pieces and merge into OUT/audio there.")
    pack.add_argument("corpus", type=Path, help="corpus folder (metadata.jsonl + audio)")
    pack.add_argument("--out", type=Path, required=True, help="packed corpus folder")
    pack.add_argument("--parts", type=int, default=1, help="spread the audio over this many folders (default 1)")
    pack.add_argument("--quality", type=float, default=None, help="Opus compression level 0-1 (default 0.7)")
    pack.set_defaults(func=_run_corpus_pack)
    corpus.set_defaults(func=lambda args: corpus.print_help() or 2)

    voices = subparsers.add_parser("voices", help="the voice bank: base voices and pseudo-speakers")
    voice_commands = voices.add_subparsers(dest="voices_command", metavar="COMMAND")
    listing = voice_commands.add_parser("list", help="list voices with their recipes")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--training", action="store_true", help="only the voices training corpora may use")
    which.add_argument("--heldout", action="store_true", help="only the voices reserved for evaluation")
    listing.add_argument("--json", action="store_true", help="one JSON object per voice")
    listing.set_defaults(func=_run_voices_list)
    voices.set_defaults(func=lambda args: voices.print_help() or 2)


def _run_batch(args: argparse.Namespace) -> int:
    from tts.data.batch import run_from_args

    return run_from_args(args)


def _run_corpus_pack(args: argparse.Namespace) -> int:
    from tts.data.corpus import PACK_QUALITY, pack_corpus

    quality = PACK_QUALITY if args.quality is None else args.quality
    summary = pack_corpus(args.corpus, args.out, quality=quality, parts=max(1, args.parts))
    print(f"{args.out}: {summary['items']} items, {summary['seconds'] / 3600:.2f} h, "
          f"{summary['bytes'] / 2**20:.1f} MiB of Opus audio")
    return 0


def _run_corpus_build(args: argparse.Namespace) -> int:
    from tts.data.corpus_build import run_from_args

    return run_from_args(args)


def voice_rows(selection: str = "all") -> list[dict]:
    """Rows for `timbre voices list`: base voices, then pseudo-speakers; `selection` is all, training or heldout."""
    from tts.data.speakers import all_voice_ids
    from tts.data.voicebank import training_base_voice_ids, voice_bank
    from tts.evaluation.testsets import TRAINING_EXCLUDED_VOICES

    if selection not in ("all", "training", "heldout"):
        raise ValueError(f"selection must be all, training or heldout, got {selection!r}")
    training_base = set(training_base_voice_ids())
    rows = []
    for voice_id in all_voice_ids(available_only=False):
        heldout = voice_id in TRAINING_EXCLUDED_VOICES
        note = "held out for evaluation" if heldout else ("" if voice_id in training_base else "not used in corpora")
        rows.append({"voice_id": voice_id, "kind": "base", "heldout": heldout, "description": note})
    for speaker in voice_bank():
        row = speaker.to_dict()
        row.update(kind=speaker.kind, description=speaker.describe())
        rows.append(row)
    if selection == "training":
        return [row for row in rows if not row["heldout"] and (row["kind"] != "base" or row["voice_id"] in training_base)]
    if selection == "heldout":
        return [row for row in rows if row["heldout"]]
    return rows


def _run_voices_list(args: argparse.Namespace) -> int:
    selection = "training" if args.training else "heldout" if args.heldout else "all"
    rows = voice_rows(selection)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    for row in rows:
        flag = "heldout " if row["heldout"] else "        "
        reason = f" [{row['heldout_reason']}]" if row.get("heldout_reason") else ""
        print(f"{row['voice_id']:<34} {row['kind']:<6} {flag}{row['description']}{reason}")
    print(f"{len(rows)} voices ({sum(row['heldout'] for row in rows)} held out)")
    return 0
