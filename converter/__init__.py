"""Tone-color converter (OpenVoice architecture): re-voices speech with another voice's tone color.

Importing ``converter`` is light: the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ConverterConfig": "converter.openvoice",
    "ToneColorConverter": "converter.openvoice",
    "convert_published_state_dict": "converter.openvoice",
    "SpectrogramConfig": "converter.spectrogram",
    "linear_spectrogram": "converter.spectrogram",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'converter' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
