"""Train the whole stack (vocoder, speech tokenizer, flow refiner, token LM, DiT, tone-color converter) in one
command, within a window of wall-clock minutes (a GPU machine lent for half an hour).

    python -m tts.train_all --corpus CORPUS --out RUNS --minutes 24 [--gpu-batch-scale 8] [--dry-run]

Each stage is a training recipe run as a subprocess (``python -m ...``), logging to ``RUNS/<stage>.log``, with a
``--max-minutes`` budget (`tts.training.Budget`) so that its learning rate anneals and its final export is
written before the window closes. With a window of ``W`` minutes and ``E`` minutes kept for final exports
(``--export-minutes``, 1):

- t = 0: ``vocoder`` (``vocoder.train --data CORPUS/audio``) and ``converter`` (``converter.train``), each with
  ``W - E`` minutes, and ``tokenizer`` (``tts.tokenizer.train``) with ``--tokenizer-share`` (0.25) of ``W``, side
  by side.
- When the tokenizer is done: ``features`` (``tts.refiner.train extract-tokens`` with ``RUNS/tokenizer/export``
  into ``RUNS/features.safetensors``).
- When the features exist: ``refiner`` (``tts.refiner.train --features``), ``lm_units``
  (``tts.lm.train extract-units``) and ``dit_align`` (``tts.dit.train extract``: forced alignments by
  ``RUNS/tokenizer/export`` into ``RUNS/alignments.safetensors``, beside the features); then, when the units exist,
  ``lm`` (``tts.lm.train --units``), and when the alignments exist, ``dit`` (``tts.dit.train --features``). Each
  training stage gets the minutes left until ``W`` minus ``E`` when it starts (at least `MIN_STAGE_MINUTES`).

The DiT trains from scratch by default. Its recipe can warm-start from a flow refiner export of the same width and
depth, but the refiner trained here runs beside it, so its export is not final (or not written yet) when the DiT
starts: ``--dit-init-from NAME_OR_PATH`` (e.g. the shipped ``flow_refiner``, shaped like the ``small`` DiT, or a
refiner exported by an earlier run) passes ``--init-from`` to the DiT recipe, only when asked.

Self-distillation (``--distill-share S``, off by default): the refiner stops ``S`` of the window early; then
``distill_pairs`` (``tts.refiner.distill`` with ``RUNS/refiner/export`` and the tokenizer, into
``RUNS/distill_pairs``) makes pairs until the middle of that share, and ``distill`` (``tts.refiner.train
--init-from RUNS/refiner/export --distill-pairs``, into ``RUNS/distill``) fine-tunes on them until ``W`` minus ``E``.

A stage whose input failed is skipped; the others go on. ``RUNS/train_all.json`` records each stage's command,
budget, threads, times, exit code and last metrics line (rewritten as stages start and end), and the command
exits non-zero when any stage failed. CPU threads (``TIMBRE_THREADS``, ``OMP_NUM_THREADS``) are split among the
stages that run at the same time. Runs resume: a second call with the same ``--out`` continues every recipe from
its saved state.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tts.files import atomic_write_text
from tts.training import EXPORT_DIR, METRICS_FILE

logger = logging.getLogger(__name__)

TRAINERS = ("vocoder", "tokenizer", "refiner", "lm", "dit", "converter")
"""The stages ``--skip`` may name (skipping ``lm`` or ``dit`` skips its extraction too)."""
DISTILL_STAGES = ("distill_pairs", "distill")
"""Self-distillation after the refiner (``--distill-share``)."""
DISTILL_ARGS = ("--learning-rate", "3e-5", "--warmup-steps", "50")
"""The fine-tuning settings of the ``distill`` stage: from the refiner's end point, at about its final learning
rate (1e-4 made the refiner worse before it helped: docs/benchmarks.md)."""
REPORT_FILE = "train_all.json"
FEATURES_FILE = "features.safetensors"
UNITS_FILE = "lm_units.safetensors"
MIN_STAGE_MINUTES = 0.05
"""A late stage still trains at least one step and exports, even when the window is already spent."""
POLL_SECONDS = 0.5

# Recipe option that sets the per-process batch, scaled by ``--gpu-batch-scale``.
BATCH_OPTIONS = {
    "vocoder": ("vocoder.train", "--batch-size"),
    "tokenizer": ("tts.tokenizer.train", "--batch-frames"),
    "refiner": ("tts.refiner.train", "--batch-size"),
    "lm": ("tts.lm.train", "--batch-size"),
    "dit": ("tts.dit.train", "--batch-size"),
    "converter": ("converter.train", "--batch-size"),
    "distill": ("tts.refiner.train", "--batch-size"),
}
WHOLE_WINDOW = ("vocoder", "converter")
"""Stages that need nothing and train for the whole window."""
LATE = ("refiner", "lm", "dit")
"""Training stages that start once the features exist and train until the end of the window, side by side."""


@dataclass(frozen=True)
class Plan:
    """What to train, where, and within how many minutes."""

    corpus: Path
    out: Path
    minutes: float
    export_minutes: float = 1.0
    tokenizer_share: float = 0.25
    configs: dict[str, str] = field(default_factory=lambda: {name: "small" for name in TRAINERS})
    skip: frozenset[str] = frozenset()
    max_steps: int = 1_000_000
    batch_sizes: dict[str, int] = field(default_factory=dict)
    """Per-process batch option values to pass (``--batch-size`` / ``--batch-frames``); absent: the recipe's."""
    extra_args: dict[str, list[str]] = field(default_factory=dict)
    """More arguments per stage, appended last (so they override)."""
    tokenizer_export: Path | None = None
    """The tokenizer to extract tokens and align with (default ``RUNS/tokenizer/export``)."""
    dit_init_from: str | None = None
    """Flow refiner (shipped name or folder) the DiT warm-starts from; None: from scratch."""
    distill_share: float = 0.0
    """Share of the window kept at its end for self-distillation of the refiner (0: none)."""
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise ValueError("--minutes must be positive")
        if not 0 < self.tokenizer_share < 1:
            raise ValueError("--tokenizer-share must be between 0 and 1")
        if not 0 <= self.export_minutes < self.minutes:
            raise ValueError("--export-minutes must be at least 0 and less than --minutes")
        unknown = set(self.skip) - set(TRAINERS)
        if unknown:
            raise ValueError(f"cannot skip {sorted(unknown)}; choose from {', '.join(TRAINERS)}")
        if self.dit_init_from and "dit" in self.skip:
            raise ValueError("--dit-init-from is given but the dit stage is skipped")
        if not 0 <= self.distill_share < 1:
            raise ValueError("--distill-share must be at least 0 and less than 1")
        if self.distill_share and "refiner" in self.skip:
            raise ValueError("--distill-share is given but the refiner stage is skipped")

    def stages(self) -> list[str]:
        """The stages to run, in launch order."""
        wanted = [name for name in TRAINERS if name not in self.skip]
        stages = [name for name in ("vocoder", "converter", "tokenizer") if name in wanted]
        if any(name in wanted for name in LATE):
            stages.append("features")
        if "refiner" in wanted:
            stages.append("refiner")
            if self.distill_share:
                stages += list(DISTILL_STAGES)
        if "lm" in wanted:
            stages += ["lm_units", "lm"]
        if "dit" in wanted:
            stages += ["dit_align", "dit"]
        return stages

    def needs(self, stage: str) -> tuple[str, ...]:
        """The stages whose success `stage` waits for."""
        present = set(self.stages())
        needs = {"features": ("tokenizer",), "refiner": ("features",), "lm_units": ("features",), "lm": ("lm_units",),
                 "dit_align": ("features",), "dit": ("dit_align",), "distill_pairs": ("refiner",),
                 "distill": ("distill_pairs",)}
        return tuple(name for name in needs.get(stage, ()) if name in present)

    def budget(self, stage: str, elapsed_minutes: float) -> float | None:
        """``--max-minutes`` of a training stage starting `elapsed_minutes` into the window (None: untimed)."""
        end = self.minutes - self.export_minutes
        distill = self.distill_share * self.minutes if "distill" in self.stages() else 0.0
        if stage == "tokenizer":
            minutes = self.tokenizer_share * self.minutes - elapsed_minutes
        elif stage == "refiner":
            minutes = end - distill - elapsed_minutes
        elif stage == "distill_pairs":
            minutes = end - distill / 2 - elapsed_minutes
        elif stage in (*WHOLE_WINDOW, *LATE, "distill"):
            minutes = end - elapsed_minutes
        else:
            return None
        return round(max(MIN_STAGE_MINUTES, minutes), 3)

    def threads(self, stage: str) -> int:
        """CPU threads of `stage`: the stages that run throughout (vocoder, converter) keep their share of the busiest
        phase (they, the refiner, the LM and the DiT side by side); the other stages share the rest with what runs
        beside them."""
        stages = set(self.stages())
        late = [name for name in LATE if name in stages]
        whole = [name for name in WHOLE_WINDOW if name in stages]
        each = self.cores // (len(late) + len(whole)) if whole else 0
        rest = max(1, self.cores - each * len(whole))
        if stage in WHOLE_WINDOW:
            return max(1, each)
        if stage in ("tokenizer", "features"):
            return rest
        if stage in DISTILL_STAGES:  # after the refiner, in its place
            return max(1, rest // max(1, len(late)))
        return max(1, rest // max(1, len(late)))

    @property
    def audio_folder(self) -> Path:
        """The vocoder's data: ``CORPUS/audio`` (a packed corpus) or the corpus folder itself."""
        audio = self.corpus / "audio"
        return audio if audio.is_dir() else self.corpus

    def paths(self) -> dict[str, Path]:
        return {
            "tokenizer_export": self.tokenizer_export or self.out / "tokenizer" / EXPORT_DIR,
            "features": self.out / FEATURES_FILE,
            "units": self.out / UNITS_FILE,
        }

    def command(self, stage: str, max_minutes: float | None) -> list[str]:
        """The argv of `stage` (run from the repository root with this Python)."""
        py, corpus, paths = sys.executable, str(self.corpus), self.paths()
        budget = ["--max-minutes", f"{max_minutes:g}"] if max_minutes is not None else []
        steps = ["--max-steps", str(self.max_steps)]
        if stage == "vocoder":
            argv = [py, "-m", "vocoder.train", "--data", str(self.audio_folder), "--out", str(self.out / "vocoder"),
                    "--config", self.configs["vocoder"], *steps, *budget]
        elif stage == "converter":
            argv = [py, "-m", "converter.train", "--corpus", corpus, "--out", str(self.out / "converter"),
                    "--config", self.configs["converter"], *steps, *budget]
        elif stage == "tokenizer":
            argv = [py, "-m", "tts.tokenizer.train", "--corpus", corpus, "--out", str(self.out / "tokenizer"),
                    "--config", self.configs["tokenizer"], *steps, *budget]
        elif stage == "features":
            argv = [py, "-m", "tts.refiner.train", "extract-tokens", "--corpus", corpus,
                    "--tokenizer", str(paths["tokenizer_export"]), "--out", str(paths["features"])]
        elif stage == "refiner":
            argv = [py, "-m", "tts.refiner.train", "--corpus", corpus, "--features", str(paths["features"]),
                    "--out", str(self.out / "refiner"), "--config", self.configs["refiner"], *steps, *budget]
        elif stage == "lm_units":
            argv = [py, "-m", "tts.lm.train", "extract-units", "--corpus", corpus,
                    "--tokenizer", str(paths["tokenizer_export"]), "--features", str(paths["features"]),
                    "--out", str(paths["units"])]
        elif stage == "lm":
            argv = [py, "-m", "tts.lm.train", "--corpus", corpus, "--features", str(paths["features"]),
                    "--units", str(paths["units"]), "--out", str(self.out / "lm"), "--config", self.configs["lm"],
                    *steps, *budget]
        elif stage == "distill_pairs":
            argv = [py, "-m", "tts.refiner.distill", "--features", str(paths["features"]),
                    "--out", str(self.out / "distill_pairs"), "--refiner", str(self.out / "refiner" / EXPORT_DIR),
                    "--tokenizer", str(paths["tokenizer_export"]), *budget]
        elif stage == "distill":
            argv = [py, "-m", "tts.refiner.train", "--corpus", corpus, "--features", str(paths["features"]),
                    "--out", str(self.out / "distill"), "--config", self.configs["refiner"],
                    "--init-from", str(self.out / "refiner" / EXPORT_DIR), "--distill-pairs",
                    str(self.out / "distill_pairs"), *DISTILL_ARGS, *steps, *budget]
        elif stage == "dit_align":
            argv = [py, "-m", "tts.dit.train", "extract", "--features", str(paths["features"]),
                    "--aligner", str(paths["tokenizer_export"])]
        elif stage == "dit":
            init = ["--init-from", self.dit_init_from] if self.dit_init_from else []
            argv = [py, "-m", "tts.dit.train", "--features", str(paths["features"]), "--out", str(self.out / "dit"),
                    "--config", self.configs["dit"], *init, *steps, *budget]
        else:
            raise ValueError(f"unknown stage {stage!r}")
        if stage in self.batch_sizes:
            argv += [BATCH_OPTIONS[stage][1], str(self.batch_sizes[stage])]
        return argv + list(self.extra_args.get(stage, []))

    def planned(self) -> list[dict]:
        """Every stage with its planned start minute, budget, threads and command, assuming the tokenizer uses
        its whole share and the extractions take no time (what ``--dry-run`` prints)."""
        rows = []
        distill, end = self.distill_share * self.minutes, self.minutes - self.export_minutes
        for stage in self.stages():
            start = 0.0 if stage in (*WHOLE_WINDOW, "tokenizer") or "tokenizer" not in self.stages() else (
                self.tokenizer_share * self.minutes)
            if stage in DISTILL_STAGES:
                start = end - (distill if stage == "distill_pairs" else distill / 2)
            budget = self.budget(stage, start)
            rows.append({"stage": stage, "start_minute": round(start, 3), "max_minutes": budget,
                         "needs": list(self.needs(stage)), "threads": self.threads(stage),
                         "command": self.command(stage, budget)})
        return rows


def scaled_batch_sizes(stages: Sequence[str], scale: int) -> dict[str, int]:
    """Each training stage's default batch option times `scale`, read from its recipe's parser (a recipe that
    cannot be imported, such as an LM not written yet, keeps its own default)."""
    import importlib

    sizes = {}
    for stage in stages:
        if stage not in BATCH_OPTIONS:
            continue
        module_name, option = BATCH_OPTIONS[stage]
        try:
            parser = importlib.import_module(module_name).build_parser()
        except (ImportError, AttributeError) as error:
            logger.warning("%s: batch size not scaled (%s)", stage, error)
            continue
        default = parser.get_default(option.lstrip("-").replace("-", "_"))
        if isinstance(default, int):
            sizes[stage] = default * scale
    return sizes


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass
class _Running:
    process: subprocess.Popen
    log: IO[bytes]
    started: float


def last_metrics(run_folder: Path) -> dict | None:
    """The last logged training record (not a save or validation event) of a recipe's ``metrics.jsonl``."""
    path = run_folder / METRICS_FILE
    if not path.is_file():
        return None
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "event" not in record:
            return record
    return None


def stage_environment(threads: int) -> dict[str, str]:
    """The environment of a stage's process: this one's, with its CPU threads and unbuffered output."""
    env = dict(os.environ)
    for name in ("TIMBRE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(plan: Plan) -> dict:
    """Run every stage of `plan` (see the module docstring); returns the report also written to
    ``RUNS/train_all.json``."""
    plan.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    stages = plan.stages()
    report: dict = {
        "corpus": str(plan.corpus.resolve()),
        "minutes": plan.minutes,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": {name: {"status": "pending", "needs": list(plan.needs(name))} for name in stages},
    }
    running: dict[str, _Running] = {}

    def write() -> None:
        report["elapsed_minutes"] = round((time.monotonic() - start) / 60, 3)
        atomic_write_text(plan.out / REPORT_FILE, json.dumps(report, indent=2) + "\n")

    def launch(name: str) -> None:
        elapsed = (time.monotonic() - start) / 60
        budget = plan.budget(name, elapsed)
        threads = plan.threads(name)
        argv = plan.command(name, budget)
        log_path = plan.out / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the stage writes to it until it ends
        log.write(f"\n# {time.strftime('%H:%M:%S')} {shlex.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=stage_environment(threads))
        running[name] = _Running(process, log, time.monotonic())
        report["stages"][name].update(
            status="running", command=shlex.join(argv), max_minutes=budget, threads=threads, log=str(log_path),
            start_minute=round(elapsed, 3),
        )
        logger.info("%s started at minute %.2f (%s, %d threads): %s", name, elapsed,
                    "untimed" if budget is None else f"{budget:g} min", threads, shlex.join(argv))

    def finish(name: str, code: int) -> None:
        entry = running.pop(name)
        entry.log.close()
        info = report["stages"][name]
        info.update(status="ok" if code == 0 else "failed", exit_code=code,
                    end_minute=round((time.monotonic() - start) / 60, 3),
                    seconds=round(time.monotonic() - entry.started, 1))
        if name in (*TRAINERS, "distill"):
            info["last_metrics"] = last_metrics(plan.out / name)
        (logger.info if code == 0 else logger.error)("%s %s (exit %d) after %.0f s; log: %s", name,
                                                     info["status"], code, info["seconds"], info["log"])

    try:
        pending = list(stages)
        while pending or running:
            for name, entry in list(running.items()):
                code = entry.process.poll()
                if code is not None:
                    finish(name, code)
            for name in list(pending):
                states = [report["stages"][need]["status"] for need in plan.needs(name)]
                if any(state in ("failed", "skipped") for state in states):
                    failed = [need for need in plan.needs(name) if report["stages"][need]["status"] != "ok"]
                    report["stages"][name].update(status="skipped", reason=f"needs {', '.join(failed)}, which did not succeed")
                    logger.error("%s skipped: %s did not succeed", name, ", ".join(failed))
                    pending.remove(name)
                elif all(state == "ok" for state in states):
                    launch(name)
                    pending.remove(name)
            write()
            if pending or running:
                time.sleep(POLL_SECONDS)
    except BaseException:
        # Interrupted: stop the stages (their last periodic save stays resumable) before giving up.
        for entry in running.values():
            entry.process.terminate()
        for name, entry in list(running.items()):
            try:
                entry.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                entry.process.kill()
                entry.process.wait()
            finish(name, entry.process.returncode)
        write()
        raise
    report["ok"] = all(info["status"] == "ok" for info in report["stages"].values())
    write()
    return report


# ---------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m tts.train_all``."""
    parser = argparse.ArgumentParser(prog="python -m tts.train_all", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (metadata.jsonl + audio/)")
    parser.add_argument("--out", type=Path, required=True, help="runs folder: one folder and one log per stage")
    parser.add_argument("--minutes", type=float, required=True, help="the whole window, exports included")
    parser.add_argument("--export-minutes", type=float, default=Plan.export_minutes,
                        help="kept at the end of the window for the final saves and exports")
    parser.add_argument("--tokenizer-share", type=float, default=Plan.tokenizer_share,
                        help="share of the window the tokenizer trains for")
    for name in TRAINERS:
        parser.add_argument(f"--{name}-config", default="small", help=f"preset of the {name} recipe")
        parser.add_argument(f"--{name}-args", default="", metavar="ARGS",
                            help=f"more arguments for the {name} recipe, in one quoted string (they override)")
    parser.add_argument("--skip", action="append", default=[], choices=TRAINERS,
                        help="leave a stage out (repeatable); skipping lm or dit skips its extraction too")
    parser.add_argument("--max-steps", type=int, default=Plan.max_steps,
                        help="step limit of every training recipe (by default the minutes decide)")
    parser.add_argument("--gpu-batch-scale", type=int, default=1, metavar="K",
                        help="multiply each recipe's per-process batch (sized for CPUs) by K")
    parser.add_argument("--tokenizer-export", type=Path, default=None,
                        help="tokenizer to extract tokens and align with (default RUNS/tokenizer/export; for "
                             "--skip tokenizer)")
    parser.add_argument("--dit-init-from", default=None, metavar="NAME_OR_PATH",
                        help="flow refiner the DiT warm-starts from, e.g. the shipped flow_refiner (default: none, from "
                             "scratch; the refiner trained alongside is not final when the DiT starts)")
    parser.add_argument("--distill-share", type=float, default=Plan.distill_share, metavar="S",
                        help="share of the window kept at its end for self-distilling the refiner (pairs, then "
                             "fine-tuning; docs/timbre-swap.md); default 0: none")
    parser.add_argument("--dry-run", action="store_true", help="print the planned stages and commands, run nothing")
    return parser


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The `Plan` of parsed arguments."""
    if args.gpu_batch_scale < 1:
        raise ValueError("--gpu-batch-scale must be at least 1")
    plan = Plan(
        corpus=args.corpus, out=args.out, minutes=args.minutes, export_minutes=args.export_minutes,
        tokenizer_share=args.tokenizer_share, configs={name: getattr(args, f"{name}_config") for name in TRAINERS},
        skip=frozenset(args.skip), max_steps=args.max_steps, tokenizer_export=args.tokenizer_export,
        dit_init_from=args.dit_init_from, distill_share=args.distill_share,
        extra_args={name: shlex.split(getattr(args, f"{name}_args")) for name in TRAINERS if getattr(args, f"{name}_args")},
    )
    if args.gpu_batch_scale > 1:
        plan = Plan(**{**plan.__dict__, "batch_sizes": scaled_batch_sizes(plan.stages(), args.gpu_batch_scale)})
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tts.train_all``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plan = plan_from_args(args)
        if not (plan.corpus / "metadata.jsonl").is_file():
            raise ValueError(f"{plan.corpus}: no metadata.jsonl; give a corpus folder (timbre corpus pack makes one)")
    except ValueError as error:
        print(f"tts.train_all: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for row in plan.planned():
            needs = f", after {', '.join(row['needs'])}" if row["needs"] else ""
            budget = f"{row['max_minutes']:g} min" if row["max_minutes"] is not None else "untimed"
            print(f"# {row['stage']}: minute {row['start_minute']:g}{needs}, {budget}, {row['threads']} threads")
            print(shlex.join(row["command"]))
        return 0
    report = run(plan)
    print(json.dumps({name: {k: info.get(k) for k in ("status", "exit_code", "seconds")}
                      for name, info in report["stages"].items()}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
