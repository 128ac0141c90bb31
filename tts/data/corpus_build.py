"""`timbre corpus build --hours H`: the bootstrap training corpus every training recipe reads.

    timbre corpus build --hours 5                       # into $TIMBRE_CACHE/corpus (~/.cache/timbre/corpus)
    accelerate launch --multi_gpu --num_processes 2 -m tts.data.corpus_build --hours 5 --out DIR

The recipe (`plan_corpus`) is deterministic: the same seed gives the same manifest on every machine, and
a bigger ``--hours`` extends a smaller build's manifest (the plan is a stream cut at the target length),
so building 5 h into a folder that holds a 0.5 h build reuses all of it. Then `tts.data.batch.run_batch`
renders it (resumable, parallel under accelerate).

* Voices: every training voice (`tts.data.voicebank.training_voice_ids`: the base voices of Kokoro, flite
  and festival and the pseudo-speakers, minus every held-out one), in shuffled cycles so each voice
  appears before any appears again; the faster engines (flite, festival) take more turns per cycle
  (`ENGINE_TURNS`) so the corpus builds faster while keeping every voice.
* Styles: `STYLE_SHARES` of the lines, at intensities `INTENSITIES`; speeds log-uniform in `SPEED_RANGE`.
* Text: the training split of `tts.data.sentences` (never a held-out or evaluation sentence), no
  sentence twice; half of the emotional lines get a sentence of the matching mood.

Files: ``manifest.jsonl`` (the plan), ``corpus.json`` (the recipe, counts and the build log with its
throughput), and the batch outputs (``audio/``, ``metadata.jsonl``, ``errors.jsonl``, ``summary.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Sequence

from tts.data.batch import QualityGate, add_gate_arguments, command_main, gate_from_args, run_batch
from tts.data.manifest import Manifest, ManifestEntry
from tts.errors import TimbreError
from tts.files import atomic_write_text

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1

STYLE_SHARES: dict[str, float] = {
    "neutral": 0.34,
    "happy": 0.11,
    "sad": 0.11,
    "angry": 0.11,
    "surprised": 0.11,
    "calm": 0.11,
    "whisper": 0.11,
}
"""Share of the lines in each style (neutral is the largest class: it anchors every voice)."""

INTENSITIES = (0.25, 0.5, 0.75, 1.0)
SPEED_RANGE = (0.85, 1.2)
"""Speeds are drawn log-uniformly in this range and rounded to 0.05."""

MOOD_MATCH_SHARE = 0.5
"""Share of the emotional lines whose sentence has the style's mood (the rest: any sentence)."""

ENGINE_TURNS: dict[str, int] = {"kokoro": 2, "flite": 4, "festival": 3}
"""Lines per voice per cycle, by engine: flite (RTF ~0.01) and festival (~0.1) are far cheaper than Kokoro."""

CHARS_PER_SECOND = 14.0
"""Characters of text per second of speech at speed 1, for planning (the built corpus reports the truth)."""

PAUSE_SECONDS = 0.35
"""Leading and trailing silence per sample, for planning."""

_MOODS = {"happy": "happy", "sad": "sad", "angry": "angry", "surprised": "surprised", "calm": "calm"}


def default_corpus_dir() -> Path:
    """``$TIMBRE_CACHE/corpus`` or ``~/.cache/timbre/corpus``."""
    configured = os.environ.get("TIMBRE_CACHE")
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "timbre"
    return root / "corpus"


def _voice_cycles(voices: Sequence[str], engines: dict[str, str], rng: random.Random):
    """Endless voice schedule: shuffled cycles in which each voice takes its engine's `ENGINE_TURNS`."""
    while True:
        cycle = [voice for voice in voices for _ in range(ENGINE_TURNS.get(engines[voice], 1))]
        for index in range(len(cycle) - 1, 0, -1):  # Fisher-Yates with Random.random() only
            other = int(rng.random() * (index + 1))
            cycle[index], cycle[other] = cycle[other], cycle[index]
        yield from cycle


def _pick_style(rng: random.Random) -> str:
    draw, total = rng.random(), 0.0
    for style, share in STYLE_SHARES.items():
        total += share
        if draw < total:
            return style
    return "neutral"


def _voice_engines(voices: Sequence[str]) -> dict[str, str]:
    from tts.data.voicebank import get_voice, is_pseudo_id

    return {voice: get_voice(voice).engine if is_pseudo_id(voice) else voice.split(":")[0] for voice in voices}


def planned_seconds(text: str, speed: float, rate: float) -> float:
    """Rough duration of `text` spoken at ``speed * rate``, for planning."""
    return len(text) / CHARS_PER_SECOND / (speed * rate) + PAUSE_SECONDS


def plan_corpus(hours: float, seed: int = 0, voices: Sequence[str] | None = None) -> list[ManifestEntry]:
    """The manifest of a corpus of about `hours` hours (deterministic in `seed`; a prefix of any longer plan).

    Raises `TimbreError` for a non-positive `hours` or if a held-out voice is asked for.
    """
    from tts.data.sentences import sentence_stream
    from tts.data.styles import style_params
    from tts.data.voicebank import training_voice_ids
    from tts.evaluation.testsets import TRAINING_EXCLUDED_VOICES

    if not hours > 0 or math.isinf(hours):
        raise TimbreError(f"--hours must be a positive number, got {hours}")
    voices = list(voices) if voices is not None else training_voice_ids()
    allowed = set(training_voice_ids())
    forbidden = sorted(set(voices) - allowed)
    if forbidden or set(voices) & set(TRAINING_EXCLUDED_VOICES):
        raise TimbreError(f"a training corpus may not use the held-out or unknown voices {forbidden[:5]}")
    if not voices:
        raise TimbreError("no training voices are available (install the base speakers: make setup)")
    rng = random.Random(seed)
    schedule = _voice_cycles(voices, _voice_engines(voices), random.Random(seed + 1))
    any_text = sentence_stream(seed, "train")
    mood_texts = {style: sentence_stream(seed + 10 + index, "train", moods=[mood])
                  for index, (style, mood) in enumerate(_MOODS.items())}
    used: set[str] = set()
    entries: list[ManifestEntry] = []
    total, target = 0.0, hours * 3600.0
    low, high = (math.log(value) for value in SPEED_RANGE)
    while total < target:
        index = len(entries)
        voice = next(schedule)
        style = _pick_style(rng)
        intensity = 0.0 if style == "neutral" else INTENSITIES[int(rng.random() * len(INTENSITIES))]
        speed = round(round(math.exp(low + (high - low) * rng.random()) / 0.05) * 0.05, 2)
        stream = mood_texts[style] if style in mood_texts and rng.random() < MOOD_MATCH_SHARE else any_text
        text = next(stream).text
        while text.lower() in used:
            text = next(stream).text
        used.add(text.lower())
        entry_id = f"c{index:07d}"
        line_seed = int.from_bytes(hashlib.sha256(f"{seed}:{entry_id}".encode()).digest()[:4], "big")
        entries.append(ManifestEntry(entry_id, text, voice, style, intensity, speed, line_seed, index + 1, index))
        total += planned_seconds(text, speed, style_params(style, intensity).rate)
    return entries


def plan_stats(entries: Sequence[ManifestEntry]) -> dict:
    """Counts of a plan: lines, voices, styles, engines."""
    engines = _voice_engines(sorted({entry.voice for entry in entries}))
    counts: dict[str, dict[str, int]] = {"styles": {}, "engines": {}}
    for entry in entries:
        counts["styles"][entry.style] = counts["styles"].get(entry.style, 0) + 1
        engine = engines[entry.voice]
        counts["engines"][engine] = counts["engines"].get(engine, 0) + 1
    return {"lines": len(entries), "voices": len(engines), **{key: dict(sorted(value.items())) for key, value in counts.items()}}


def build_corpus(
    hours: float,
    out_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    gate: QualityGate | None = None,
    plan_only: bool = False,
    progress: bool = True,
) -> dict:
    """Plan and render the bootstrap corpus into `out_dir` (default `default_corpus_dir`).

    Returns the ``corpus.json`` record (recipe, plan counts, and the build log with throughput).
    """
    from tts.data.voicebank import BANK_VERSION, bank_digest

    out = Path(out_dir) if out_dir is not None else default_corpus_dir()
    entries = plan_corpus(hours, seed)
    is_main = int(os.environ.get("RANK", "0")) == 0
    record_path = out / "corpus.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.update({
        "corpus_version": CORPUS_VERSION,
        "hours_requested": hours,
        "seed": seed,
        "voicebank": {"version": BANK_VERSION, "digest": bank_digest()},
        "style_shares": STYLE_SHARES,
        "intensities": list(INTENSITIES),
        "speed_range": list(SPEED_RANGE),
        "engine_turns": ENGINE_TURNS,
        "plan": plan_stats(entries),
    })
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "manifest.jsonl", "".join(entry.to_json() + "\n" for entry in entries))
        atomic_write_text(record_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    if plan_only:
        return record
    before = _corpus_seconds(out)
    started = time.time()
    summary = run_batch(Manifest(entries, base_dir=out), out, gate=gate, progress=progress)
    if summary.rank == 0:
        wall = time.time() - started
        merged = json.loads((out / "summary.json").read_text())
        written = merged["audio_seconds"] - before  # every process's new audio, not only this one's
        written = written if written > 0.01 else 0.0  # (summary.json rounds to milliseconds)
        build = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "wall_seconds": round(wall, 1),
            "processes": summary.world_size,
            "cpu_count": os.cpu_count(),
            "audio_seconds_written": round(written, 1),
            "audio_seconds_per_wall_second": round(written / wall, 3) if wall > 0 else None,
            "failed_rank0": summary.failed,
        }
        record["builds"] = [*record.get("builds", []), build]
        record["result"] = merged
        atomic_write_text(record_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return record


def _corpus_seconds(folder: Path) -> float:
    """Seconds of audio that ``folder/metadata.jsonl`` lists (0 when there is none yet)."""
    path = folder / "metadata.jsonl"
    if not path.is_file():
        return 0.0
    total = 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            total += float(json.loads(line).get("duration", 0.0))
        except (ValueError, AttributeError):
            continue
    return total


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `timbre corpus build` (shared with ``python -m tts.data.corpus_build``)."""
    parser.add_argument("--hours", type=float, required=True, help="hours of speech to plan (e.g. 5)")
    parser.add_argument("--out", type=Path, help="corpus folder (default: $TIMBRE_CACHE/corpus or ~/.cache/timbre/corpus)")
    parser.add_argument("--seed", type=int, default=0, help="recipe seed (default 0)")
    parser.add_argument("--plan-only", action="store_true", help="write manifest.jsonl and corpus.json, synthesize nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_gate_arguments(parser)


def run_from_args(args: argparse.Namespace) -> int:
    """Run `timbre corpus build` with parsed options."""
    record = build_corpus(args.hours, args.out, seed=args.seed, gate=gate_from_args(args),
                          plan_only=args.plan_only, progress=not args.no_progress)
    out = args.out or default_corpus_dir()
    plan = record["plan"]
    print(f"{out}: planned {plan['lines']} lines, {plan['voices']} voices, styles {plan['styles']}")
    if "result" in record and not args.plan_only:
        result = record["result"]
        print(f"built {result['items']} items, {result['audio_hours']:.3f} h, {result['voices']} voices, "
              f"{result['errors']} error(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.data.corpus_build`` (for ``accelerate launch -m tts.data.corpus_build``)."""
    return command_main(argv, "python -m tts.data.corpus_build", "Build the bootstrap training corpus.",
                        add_corpus_arguments, run_from_args)


if __name__ == "__main__":
    sys.exit(main())
