"""`timbre eval`: engine names, a run on a small meta file with a real base speaker, and --pairs."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tts.cli import build_parser, main
from tts.errors import TimbreError
from tts.evaluation.adapters import register_engine, resolve_engine

has_speakers = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None, reason="espeak-ng and flite are needed"
)


def test_commands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["eval", "--engine", "base:flite:slt", "--set", "smoke", "--limit", "2"])
    assert args.engine == "base:flite:slt" and args.testset == "smoke" and args.limit == 2
    assert parser.parse_args(["bench", "--quick"]).quick


def test_eval_needs_an_engine(capsys):
    assert main(["eval"]) == 2
    assert "--engine" in capsys.readouterr().err


def test_untrained_studio_engine_says_why(shipped_root, capsys):
    assert main(["eval", "--engine", "ar", "--set", "smoke"]) == 2
    assert "not trained yet" in capsys.readouterr().err


def test_unknown_engines_list_the_choices(shipped_root):
    with pytest.raises(TimbreError, match="base:ENGINE:VOICE"):
        resolve_engine("tacotron")
    with pytest.raises(TimbreError, match="choose one of"):
        resolve_engine("base:flite:nobody")


def test_ready_engine_without_an_adapter_and_with_one(monkeypatch):
    from tts.engines import EngineStatus
    from tts.evaluation import adapters

    monkeypatch.setattr("tts.engines.engine_status", lambda kind=None: [EngineStatus("ar", True, "ready")])
    monkeypatch.setattr(adapters, "_adapters", {})
    monkeypatch.setattr(adapters, "ENGINE_BUILDERS", {})
    with pytest.raises(TimbreError, match="no evaluation adapter"):
        resolve_engine("ar")
    sentinel = object()
    register_engine("ar", lambda seed=0: (sentinel, seed))
    assert resolve_engine("ar") == (sentinel, 0) and resolve_engine("ar", seed=7) == (sentinel, 7)
    # `timbre eval --seed N` builds the engine with that seed.
    seen = []
    monkeypatch.setattr(adapters, "resolve_engine", lambda name, seed=0: seen.append((name, seed)) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["eval", "--engine", "ar", "--seed", "3", "--metrics", "wer"])
    assert seen == [("ar", 3)]


@has_speakers
def test_eval_runs_a_base_speaker_on_a_meta_file(tmp_path, capsys):
    prompt = tmp_path / "prompt.wav"
    subprocess.run(["espeak-ng", "-w", str(prompt), "A prompt clip that says a few words."], check=True)
    (tmp_path / "meta.lst").write_text(
        "u1|A prompt clip that says a few words.|prompt.wav|The green door was open.\n"
        "u2|A prompt clip that says a few words.|missing.wav|Nobody came.\n"
    )
    out = tmp_path / "run"
    code = main(["eval", "--engine", "base:flite:slt", "--set", str(tmp_path / "meta.lst"), "--out", str(out),
                 "--metrics", "wer,sim", "--no-plots"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    u1, u2 = report["utterances"]
    assert u1["status"] == "ok" and u1["metrics"]["wer_whisper_tiny_en"] == 0.0
    assert u1["metrics"]["sim_resemblyzer"] < 0.9  # flite ignores the espeak prompt: no cloning
    assert u2["status"] == "failed" and u2["failure_stage"] == "prompt"
    assert "wer_whisper_tiny_en" in capsys.readouterr().out


@has_speakers
def test_pairs_give_a_ceiling_above_the_floor(tmp_path):
    out = tmp_path / "pairs"
    assert main(["eval", "--pairs", "--voices", "flite:slt,flite:awb,espeak:en-us,flite:nobody", "--out", str(out)]) == 0
    data = json.loads((out / "pairs.json").read_text())
    assert data["voices"] == ["flite:slt", "flite:awb", "espeak:en-us"]
    assert "flite:nobody" in data["skipped"]
    summary = data["summary"]
    assert summary["ceiling_same_voice"]["count"] == 3 and summary["floor_different_voices"]["count"] == 3
    assert summary["ceiling_same_voice"]["min"] > summary["floor_different_voices"]["max"]
    assert (out / "pairs.md").is_file()


def test_importing_the_evaluation_package_is_light():
    import subprocess
    import sys

    probe = (
        "import json, sys, socket\n"
        "socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(RuntimeError('network at import'))\n"
        "import tts.evaluation.cli, tts.evaluation.harness, tts.evaluation.bench, tts.evaluation.bench_targets\n"
        "import tts.evaluation.pairs, tts.evaluation.plots, tts.evaluation.prosody, tts.evaluation.quality\n"
        "import tts.evaluation.testsets, tts.evaluation.report\n"
        "heavy = ['librosa', 'faster_whisper', 'ctranslate2', 'onnxruntime', 'resemblyzer', 'speechmos',\n"
        "         'matplotlib', 'transformers', 'whisper_normalizer', 'pesq', 'pystoi']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
