"""`timbre bench`: speed and memory of every engine and component that exists, side by side with the
reference engines (Kokoro-82M int8, Piper joe) measured in the same run, on the same texts.

Per target: model load time, seconds per text and real-time factor (median over repeated runs after a
warm-up), time to first audio for targets that stream, and peak RSS. Each target runs in a fresh worker
process (``python -m tts.evaluation.bench --worker NAME``), so load time is a cold load and peak RSS is
that target's own, not the high-water mark of whatever ran before it. Every number is also printed as a
ratio to each reference measured in the run.

Adding a target (a later issue's vocoder, its LM...) is one function: a module that defines
``bench_targets() -> list[BenchTarget]`` and is listed in `TARGET_MODULES` (or `register_target`, for a
target that runs in-process only). Targets that cannot run here are listed with the reason.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

from tts.audio import Audio

logger = logging.getLogger(__name__)

TARGET_MODULES: tuple[str, ...] = ("tts.evaluation.bench_targets",)
"""Modules exposing ``bench_targets() -> list[BenchTarget]``."""

REFERENCE_TARGETS: tuple[str, ...] = ("base:kokoro:jf_alpha", "base:piper:joe")
"""What every result is also shown as a ratio to (Kokoro-82M int8 and Piper joe)."""

WORKER_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class BenchTarget:
    """Something `timbre bench` can measure.

    Attributes:
        name: unique name (``base:piper:joe``, ``text:frontend``, ``vocoder:vocos``).
        kind: ``engine``, ``base speaker`` or ``component``.
        description: one line for the report.
        load: loads the model(s); timed as the load time. Returns a state passed to the other calls.
        run: ``(state, text) -> Audio | float | None``: one synthesis (or one component call) of `text`;
            returns the audio made, or the seconds of audio processed, or None (no real-time factor).
        stream: optional ``(state, text) -> Iterator[Audio]``; measured for time to first audio.
        prepare: optional untimed ``(state, texts)`` step after loading (e.g. making input audio).
        unavailable: ``() -> None`` when it can run here, else the reason.
    """

    name: str
    kind: str
    description: str
    load: Callable[[], Any]
    run: Callable[[Any, str], Audio | float | None]
    stream: Callable[[Any, str], Iterator[Audio]] | None = None
    prepare: Callable[[Any, Sequence[str]], None] | None = None
    unavailable: Callable[[], str | None] = lambda: None


@dataclass
class BenchResult:
    """One target's measurements, or why it was not measured."""

    name: str
    kind: str
    description: str
    status: str
    """``measured``, ``skipped`` (cannot run here) or ``failed`` (raised while measured)."""
    reason: str | None = None
    load_seconds: float | None = None
    seconds_per_text: float | None = None
    """Median over repeats of the mean time per text."""
    rtf: float | None = None
    """Median over repeats of (time / audio seconds) over all texts."""
    ttfa_seconds: float | None = None
    """Median time to the first streamed chunk; None when the target does not stream."""
    peak_rss_mb: float | None = None
    rss_before_load_mb: float | None = None
    children_peak_rss_mb: float | None = None
    """Largest RSS of a child process (the flite, festival and espeak binaries run as children)."""
    isolated: bool = True
    repeats: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_registered: dict[str, BenchTarget] = {}


def register_target(target: BenchTarget) -> None:
    """Add a target for this process (in-process runs; a worker process sees only `TARGET_MODULES`)."""
    _registered[target.name] = target


def all_targets() -> dict[str, BenchTarget]:
    """Every known target by name: those of `TARGET_MODULES`, then the registered ones."""
    targets: dict[str, BenchTarget] = {}
    for module_name in TARGET_MODULES:
        for target in importlib.import_module(module_name).bench_targets():
            targets[target.name] = target
    targets.update(_registered)
    return targets


# ---------------------------------------------------------------------------------------------------------
# Measuring one target


def current_rss_mb() -> float | None:
    """Resident set size of this process now (Linux /proc, else psutil when installed)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        try:
            import psutil
        except ImportError:
            return None
        return psutil.Process().memory_info().rss / 2**20


def machine_info() -> dict:
    """CPU count, Python version and the load average: timings on a busy machine are not comparable."""
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "load_average_1_5_15_min": load}


def _peak_rss_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _audio_seconds(result: Audio | float | None) -> float | None:
    if isinstance(result, Audio):
        return result.duration
    if isinstance(result, (int, float)):
        return float(result)
    return None


def measure_target(
    target: BenchTarget, texts: Sequence[str], warmup_text: str, repeats: int = 3, isolated: bool = False
) -> BenchResult:
    """Load `target`, warm it up, and time it on `texts` `repeats` times (call in a fresh process for a
    cold load and a per-target peak RSS; `isolated` only records which it was)."""
    result = BenchResult(target.name, target.kind, target.description, "measured", isolated=isolated)
    result.rss_before_load_mb = current_rss_mb()
    start = time.perf_counter()
    state = target.load()
    result.load_seconds = time.perf_counter() - start
    if target.prepare is not None:
        target.prepare(state, [warmup_text, *texts])
    target.run(state, warmup_text)
    if target.stream is not None:
        for _ in target.stream(state, warmup_text):
            pass
    per_text, rtfs, ttfas = [], [], []
    for _ in range(max(1, repeats)):
        seconds, audio = [], []
        for text in texts:
            tick = time.perf_counter()
            output = target.run(state, text)
            seconds.append(time.perf_counter() - tick)
            audio.append(_audio_seconds(output))
        total_audio = sum(a for a in audio if a) if all(audio) else None
        per_text.append(statistics.fmean(seconds))
        if total_audio:
            rtfs.append(sum(seconds) / total_audio)
        result.repeats.append({"seconds": seconds, "audio_seconds": audio})
        if target.stream is not None:
            for text in texts:
                tick = time.perf_counter()
                for _chunk in target.stream(state, text):
                    ttfas.append(time.perf_counter() - tick)
                    break
    result.seconds_per_text = statistics.median(per_text)
    result.rtf = statistics.median(rtfs) if rtfs else None
    result.ttfa_seconds = statistics.median(ttfas) if ttfas else None
    result.peak_rss_mb = _peak_rss_mb(resource.RUSAGE_SELF)
    result.children_peak_rss_mb = _peak_rss_mb(resource.RUSAGE_CHILDREN) or None
    return result


def _worker_main(argv: Sequence[str] | None = None) -> int:
    """Worker process: measure one target named on the command line; spec JSON on stdin, result on stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--worker":
        print("usage: python -m tts.evaluation.bench --worker TARGET < spec.json", file=sys.stderr)
        return 2
    spec = json.loads(sys.stdin.read())
    target = all_targets()[args[1]]
    try:
        result = measure_target(target, spec["texts"], spec["warmup_text"], spec["repeats"], isolated=True)
    except Exception as error:  # noqa: BLE001 - reported to the parent as a failed target
        result = BenchResult(target.name, target.kind, target.description, "failed", f"{type(error).__name__}: {error}")
    print("BENCH-RESULT " + json.dumps(result.to_dict()))
    return 0


def _measure_in_worker(target: BenchTarget, spec: dict) -> BenchResult:
    command = [sys.executable, "-m", "tts.evaluation.bench", "--worker", target.name]
    try:
        done = subprocess.run(
            command, input=json.dumps(spec), capture_output=True, text=True, timeout=WORKER_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return BenchResult(target.name, target.kind, target.description, "failed", f"timed out after {WORKER_TIMEOUT_SECONDS:.0f} s")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return BenchResult(**json.loads(line[len("BENCH-RESULT ") :]))
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return BenchResult(target.name, target.kind, target.description, "failed", f"worker exited {done.returncode}: {' '.join(tail)}")


# ---------------------------------------------------------------------------------------------------------
# A whole run


@dataclass
class BenchReport:
    """Every target's result, the texts, and the ratios to the references."""

    texts: list[str]
    repeats: int
    results: list[BenchResult]
    references: list[str]
    started: str

    def result(self, name: str) -> BenchResult | None:
        return next((r for r in self.results if r.name == name), None)

    def ratios(self, result: BenchResult) -> dict[str, dict[str, float | None]]:
        """``{reference: {metric: result / reference}}`` for every measured reference."""
        out = {}
        for ref_name in self.references:
            ref = self.result(ref_name)
            if ref is None or ref.status != "measured" or result.status != "measured":
                continue
            out[ref_name] = {
                metric: (getattr(result, metric) / getattr(ref, metric))
                if getattr(result, metric) is not None and getattr(ref, metric)
                else None
                for metric in ("load_seconds", "seconds_per_text", "rtf", "ttfa_seconds", "peak_rss_mb")
            }
        return out

    def to_dict(self) -> dict:
        return {
            "started": self.started,
            "texts": self.texts,
            "repeats": self.repeats,
            "references": self.references,
            "results": [{**r.to_dict(), "ratios": self.ratios(r)} for r in self.results],
            "machine": machine_info(),
        }


def run_bench(
    names: Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
    repeats: int = 3,
    isolate: bool = True,
    progress: Callable[[BenchResult], None] | None = None,
    references: Sequence[str] = REFERENCE_TARGETS,
) -> BenchReport:
    """Measure the targets `names` (default: all) plus the references, and list what was skipped.

    Args:
        texts: the texts every target speaks (default: `bench_targets.BENCH_TEXTS`).
        references: targets measured first and shown as ratios (default: Kokoro and Piper).
        isolate: one fresh worker process per target (cold load, per-target peak RSS). In-process runs
            are for tests and for targets registered with `register_target`.
    """
    from tts.evaluation.bench_targets import BENCH_TEXTS, WARMUP_TEXT, studio_engine_skips

    texts = list(texts or BENCH_TEXTS)
    targets = all_targets()
    wanted = list(names) if names is not None else list(targets)
    unknown = [name for name in wanted if name not in targets]
    if unknown:
        raise ValueError(f"unknown bench target(s): {', '.join(unknown)}; known: {', '.join(targets)}")
    references = [name for name in references if name in targets]
    order = references + [name for name in wanted if name not in references]
    spec = {"texts": texts, "warmup_text": WARMUP_TEXT, "repeats": repeats}
    report = BenchReport(texts, repeats, [], references, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    for skip in studio_engine_skips(targets):
        report.results.append(skip)
        if progress is not None:
            progress(skip)
    for name in order:
        target = targets[name]
        reason = target.unavailable()
        if reason is not None:
            result = BenchResult(name, target.kind, target.description, "skipped", reason)
        elif isolate and name not in _registered:
            result = _measure_in_worker(target, spec)
        else:
            try:
                result = measure_target(target, texts, WARMUP_TEXT, repeats, isolated=False)
            except Exception as error:  # noqa: BLE001 - one target failing must not stop the run
                result = BenchResult(name, target.kind, target.description, "failed", f"{type(error).__name__}: {error}")
        report.results.append(result)
        if progress is not None:
            progress(result)
    return report


if __name__ == "__main__":
    sys.exit(_worker_main())
