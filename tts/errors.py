"""The project's error types. Each is a `ValueError`, so callers that catch bad input keep working.

Messages say what was wrong and what the user can do about it.
"""

from __future__ import annotations


class TimbreError(ValueError):
    """Base class of every error that the studio raises for bad input or a missing resource."""


class AudioError(TimbreError):
    """Audio that cannot be read, is empty, too long, too short, silent or clipped."""


class TextError(TimbreError):
    """Text that is empty, has nothing speakable, or is too long."""


class CheckpointError(TimbreError):
    """A checkpoint that is missing, unreachable, tampered with, of the wrong version or shape."""


class VoiceError(TimbreError):
    """A voice file that is unreadable, of an unknown version, or inconsistent."""


class ManifestError(TimbreError):
    """A batch manifest line that cannot be used."""


class OutputError(TimbreError):
    """An output folder or file that cannot be written: a full disk, no permission, a read-only disk, or a
    file where a folder should be. The message names the path, the cause and what to do."""
