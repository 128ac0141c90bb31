"""Timbre Studio core: engines and the public API.

Importing ``tts`` is light: the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Audio": "tts.audio",
    "load_audio": "tts.audio",
    "log_mel": "tts.audio",
    "TimbreError": "tts.errors",
    "Voice": "tts.voice",
    "clone_voice": "tts.voice",
    "synthesize": "tts.synthesis",
    "convert": "tts.synthesis",
    "swap_timbre": "tts.synthesis",
    "edit": "tts.dit.engine",
    "change_speed": "tts.dit.engine",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tts' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
