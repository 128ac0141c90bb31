"""`timbre bench`: the measuring loop, the target registry, skips, ratios and the worker process.

Speed itself is never asserted (benchmarks print ratios; tests check behaviour). The targets here are
test doubles for the engines being measured, plus real base speakers for the worker and CLI runs.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tts.audio import Audio
from tts.cli import main
from tts.evaluation import bench
from tts.evaluation.bench import BenchTarget, measure_target, register_target, run_bench
from tts.evaluation.cli import format_bench


class FakeEngine:
    """A stand-in engine that counts its calls and returns one second of audio per text."""

    def __init__(self) -> None:
        self.loads = 0
        self.runs = 0

    def load(self):
        self.loads += 1
        return self

    def run(self, state, text: str) -> Audio:
        self.runs += 1
        return Audio(np.zeros(24_000, dtype=np.float32))

    def stream(self, state, text: str):
        for _ in range(3):
            yield Audio(np.zeros(2_400, dtype=np.float32))


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(bench, "_registered", {})
    engines = {name: FakeEngine() for name in ("ref-a", "ref-b", "streamer", "plain")}
    for name, engine in engines.items():
        register_target(BenchTarget(name, "engine", f"fake {name}", engine.load, engine.run,
                                    stream=engine.stream if name == "streamer" else None))
    register_target(BenchTarget("absent", "engine", "fake", engines["plain"].load, engines["plain"].run,
                                unavailable=lambda: "needs a GPU we do not have"))

    def explode():
        raise RuntimeError("load failed")

    register_target(BenchTarget("broken", "engine", "fake", explode, engines["plain"].run))
    return engines


def test_measure_target_warms_up_then_repeats():
    engine = FakeEngine()
    target = BenchTarget("x", "engine", "fake", engine.load, engine.run)
    result = measure_target(target, ["one", "two"], "warm", repeats=3)
    assert engine.loads == 1 and engine.runs == 1 + 3 * 2
    assert result.status == "measured" and len(result.repeats) == 3
    assert result.rtf == pytest.approx(result.seconds_per_text / 1.0, rel=1e-6)  # 1 s of audio per text
    assert result.ttfa_seconds is None
    assert result.peak_rss_mb > 0 and result.load_seconds >= 0


def test_run_bench_measures_skips_and_compares(fakes, shipped_root):
    report = run_bench(["streamer", "plain", "absent", "broken"], texts=["a", "b"], repeats=2, isolate=False,
                       references=("ref-a", "ref-b"))
    results = {r.name: r for r in report.results}
    assert [r.name for r in report.results][:3] == ["engine:ar", "engine:dit", "engine:base+convert"]
    assert all(results[f"engine:{n}"].status == "skipped" and "not trained" in results[f"engine:{n}"].reason
               for n in ("ar", "dit", "base+convert"))
    assert results["ref-a"].status == results["ref-b"].status == "measured"
    assert results["streamer"].ttfa_seconds is not None and results["plain"].ttfa_seconds is None
    assert results["absent"].status == "skipped" and "GPU" in results["absent"].reason
    assert results["broken"].status == "failed" and "load failed" in results["broken"].reason
    ratios = report.ratios(results["plain"])
    assert set(ratios) == {"ref-a", "ref-b"}
    assert ratios["ref-a"]["rtf"] == pytest.approx(results["plain"].rtf / results["ref-a"].rtf)
    assert report.ratios(results["ref-a"])["ref-a"]["rtf"] == pytest.approx(1.0)
    table = format_bench(report)
    assert "xref-a" in table and "needs a GPU" in table and "engine:ar: skipped" in table


def test_unknown_target_is_refused(fakes):
    with pytest.raises(ValueError, match="unknown bench target"):
        run_bench(["nope"], isolate=False, references=())


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_worker_process_measures_a_base_speaker(shipped_root):
    report = run_bench(["base:espeak:en-us"], texts=["A short test."], repeats=1, references=())
    result = report.result("base:espeak:en-us")
    assert result.status == "measured", result.reason
    assert result.isolated and result.rtf > 0 and result.peak_rss_mb > result.rss_before_load_mb > 0
    assert result.children_peak_rss_mb  # espeak-ng runs as a child process


@pytest.mark.slow
def test_bench_quick_runs_end_to_end(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "base:kokoro:jf_alpha" in out and "base:piper:joe" in out and "engine:base+convert: skipped" in out
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.md").is_file()


def test_bench_list(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "base:kokoro:jf_alpha" in out and "eval:asr-whisper-tiny.en" in out
