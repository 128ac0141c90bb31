"""Importing the packages is light and touches neither the network nor a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access at import time")
socket.socket.connect = refuse
socket.create_connection = refuse
import tts, tts.audio, tts.checkpoints, tts.text, tts.preprocess, tts.engines, converter, vocoder, app
import tts.layers, tts.dit, tts.tokenizer, tts.refiner, tts.data, tts.data.corpus, tts.data.sentences, tts.evaluation
import torch
heavy = [m for m in ("gradio", "librosa", "transformers", "diffusers", "faster_whisper", "onnxruntime", "parselmouth", "resemblyzer", "accelerate") if m in sys.modules]
print(json.dumps({"heavy": heavy, "cuda_initialized": torch.cuda.is_initialized()}))
"""


def test_import_is_light_and_offline():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "cuda_initialized": False}


def test_no_logging_configuration_at_import():
    probe = "import logging, tts, tts.audio, tts.checkpoints, tts.text; print(len(logging.getLogger().handlers))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
