"""The `timbre` command: version, doctor, checkpoints; errors reach users as messages, not tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tts import __version__
from tts.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_every_documented_command_is_registered():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("studio", "doctor", "checkpoints"):
        assert name in commands


def test_doctor_reports_installed_tools(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("espeak-ng", "torch", "phonemizer", "faster-whisper", "silero-vad", "whisper tiny.en", "speaker kokoro", "speaker piper", "speaker flite", "speaker festival"):
        line = next(l for l in out.splitlines() if f" {name} " in f" {l} ")
        assert line.startswith("ok"), line



def test_doctor_says_why_an_engine_cannot_run(shipped_root, capsys):
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for engine in ("ar", "dit", "base+convert", "distilled"):
        line = next(l for l in lines if f" engine {engine} " in l)
        assert line.startswith("MISSING") and "not trained yet" in line, line
    assert "flow_refiner_distilled" in next(l for l in lines if " engine distilled " in l)


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "tts.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and __version__ in out.stdout


def test_checkpoints_command_verifies(shipped_root, capsys):
    import torch

    from tests.test_checkpoints import make_model
    from tts.checkpoints import write_manifest

    make_model().save_pretrained(shipped_root / "tiny", dtype=torch.float16)
    write_manifest(shipped_root)
    assert main(["checkpoints"]) == 0
    assert "ok        tiny" in capsys.readouterr().out
    (shipped_root / "tiny/config.json").write_text("{}")
    assert main(["checkpoints"]) == 1
    assert "REFUSED   tiny" in capsys.readouterr().out


def test_timbre_threads_sets_the_commands_torch_threads(monkeypatch, capsys):
    import torch

    previous = torch.get_num_threads()
    target = 3 if previous != 3 else 2
    monkeypatch.setenv("TIMBRE_THREADS", str(target))
    try:
        assert main(["bench", "--list"]) == 0
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(previous)
