"""The voice library: the folder of named, consented voices that the studio keeps.

    library = VoiceLibrary()                      # $TIMBRE_CACHE/voices, or ~/.cache/timbre/voices
    library.add(clone_voice("ref.wav", "What the clip says."), "Ada", consent="Ada agreed to ...")
    voice = library.get("ada")                    # names are case-insensitive
    library.rename("Ada", "Ada Lovelace"); library.export("Ada Lovelace", "ada.voice"); library.delete("Ada Lovelace")

One voice is one file, ``<folder>/<key>.voice`` (the `tts.voice` format), where the key is the validated name
case-folded: the display name, the consent statement and the creation time live inside the file, so an
exported voice carries them. Names are 1-64 characters of letters, digits, spaces and ``- _ .``, with no
leading or trailing dot, no ``..``, no path separator and no Windows device name (``con``, ``nul``, ...),
and unique regardless of case. A file name is never taken from user input that did not pass these rules.

Every write is atomic (`tts.files`): a crash mid-save leaves the old file or the new one, never half of one.
A lock serialises the library's changes between threads (one studio process per folder). Every problem
raises `VoiceError` with a message the user can act on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tts.errors import VoiceError
from tts.files import atomic_write_bytes, cache_root
from tts.voice import VOICE_SUFFIX, Voice

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 64
MAX_NAME_BYTES = 200
"""Longest file stem (the case-folded name in UTF-8): a file name holds 255 bytes, and the atomic write's
temporary name adds about 35 to ``<stem>.voice``. 64 letters outside the Basic Multilingual Plane take 256."""
MAX_CONSENT_CHARS = 2000
NAME_PUNCTUATION = " -_."
"""Characters allowed in a voice name besides letters and digits."""

_RESERVED_STEMS = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
"""Windows device names, which cannot be file names there."""


def default_library_folder() -> Path:
    """Where the studio keeps its voices: ``voices/`` under `tts.files.cache_root` (``$TIMBRE_CACHE``)."""
    return cache_root() / "voices"


def check_voice_name(name: str) -> str:
    """`name` without surrounding spaces (NFC-normalized) if it is a valid voice name; else `VoiceError`."""
    if not isinstance(name, str):
        raise VoiceError(f"a voice name must be text, got {type(name).__name__}")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise VoiceError("give the voice a name (1 to 64 letters, digits, spaces, '-', '_' or '.')")
    if len(name) > MAX_NAME_CHARS:
        raise VoiceError(f"the voice name has {len(name)} characters; at most {MAX_NAME_CHARS}")
    bad = sorted({char for char in name if not _allowed(char)})
    if bad:
        shown = " ".join(repr(char) for char in bad[:5])
        raise VoiceError(
            f"the voice name {name[:70]!r} contains {shown}; use only letters, digits, spaces, '-', '_' and '.' "
            "(no '/' or '\\')"
        )
    if name.startswith(".") or ".." in name or name.endswith("."):
        raise VoiceError(f"the voice name {name!r} may not start or end with '.' or contain '..'")
    if name.casefold().split(".")[0].strip() in _RESERVED_STEMS:
        raise VoiceError(f"{name!r} is a reserved device name on Windows; choose another voice name")
    if len(_key(name).encode("utf-8")) > MAX_NAME_BYTES:
        raise VoiceError(
            f"the voice name {name[:20]!r}... is too long for a file name ({len(_key(name).encode('utf-8'))} bytes "
            f"in UTF-8, at most {MAX_NAME_BYTES}); choose a shorter name"
        )
    return name


def _allowed(char: str) -> bool:
    return char in NAME_PUNCTUATION or unicodedata.category(char)[0] == "L" or unicodedata.category(char) == "Nd"


def _key(name: str) -> str:
    """The file stem of a validated name: case-folded, so names differing only in case share one file."""
    return unicodedata.normalize("NFC", name.casefold())


def check_consent(consent: str) -> str:
    """The consent statement without surrounding spaces; `VoiceError` when it is missing, empty or too long."""
    if not isinstance(consent, str) or not consent.strip():
        raise VoiceError(
            "confirm that you have the speaker's permission: a voice is added to the library only with a consent "
            "statement (for example 'I recorded this myself' or 'the speaker agreed to voice cloning')"
        )
    consent = consent.strip()
    if len(consent) > MAX_CONSENT_CHARS:
        raise VoiceError(f"the consent statement has {len(consent):,} characters; at most {MAX_CONSENT_CHARS:,}")
    return consent


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VoiceEntry:
    """One voice of the library, as listed.

    Attributes:
        name: the display name. duration: seconds of reference audio. transcript: what the reference says.
        consent: the confirmed permission statement. created: ISO 8601 UTC time (may be empty for old files).
        path: the voice file.
    """

    name: str
    duration: float
    transcript: str
    consent: str
    created: str
    path: Path


class VoiceLibrary:
    """The named voices in `folder` (default `default_library_folder`); see the module docstring.

    Constructing one touches no file; the folder is created by the first voice added.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_library_folder()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"VoiceLibrary({str(self.folder)!r})"

    def _path(self, name: str) -> Path:
        return self.folder / f"{_key(name)}{VOICE_SUFFIX}"

    def _existing_path(self, name: str) -> Path:
        try:
            path = self._path(check_voice_name(name))
        except VoiceError:
            path = None
        if path is None or not path.is_file():
            raise VoiceError(f"there is no voice named {str(name)[:70]!r} in the library ({self.folder})")
        return path

    @staticmethod
    def _entry(voice: Voice, path: Path) -> VoiceEntry:
        return VoiceEntry(voice.name, round(voice.duration, 3), voice.transcript, voice.consent, voice.created, path)

    def list(self) -> list[VoiceEntry]:
        """Every readable voice, sorted by name; a damaged file is left out (and logged), never fatal."""
        if not self.folder.is_dir():
            return []
        entries = []
        for path in sorted(self.folder.glob(f"*{VOICE_SUFFIX}")):
            if path.name.startswith("."):
                continue  # an atomic write's temporary file
            try:
                entries.append(self._entry(Voice.load(path), path))
            except VoiceError as error:
                logger.warning("voice library: skipping %s", error)
        return sorted(entries, key=lambda entry: entry.name.casefold())

    def names(self) -> list[str]:
        """The names of `list`, in order."""
        return [entry.name for entry in self.list()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return self._path(check_voice_name(name)).is_file()
        except VoiceError:
            return False

    def _save_new(self, voice: Voice, name: str, replacing: Path | None = None) -> VoiceEntry:
        path = self._path(name)
        if path.exists() and path != replacing:
            try:
                taken = Voice.load(path).name
            except VoiceError:
                taken = name
            raise VoiceError(f"the library already has a voice named {taken!r} (names ignore case); choose another name")
        voice = dataclasses.replace(voice, name=name)
        voice.save(path)
        return self._entry(voice, path)

    def add(self, voice: Voice, name: str, consent: str) -> VoiceEntry:
        """Store `voice` as `name` with the user's `consent` statement (both required).

        Raises:
            VoiceError: an invalid or taken name, no consent, or not a `Voice`.
        """
        if not isinstance(voice, Voice):
            raise VoiceError(f"only a Voice can be added to the library, got {type(voice).__name__}; use clone_voice")
        name, consent = check_voice_name(name), check_consent(consent)
        with self._lock:
            return self._save_new(dataclasses.replace(voice, consent=consent, created=voice.created or _now()), name)

    def get(self, name: str) -> Voice:
        """The voice called `name` (any case); `VoiceError` when there is none or its file is damaged."""
        with self._lock:
            return Voice.load(self._existing_path(name))

    def entry(self, name: str) -> VoiceEntry:
        """The listing of the voice called `name`."""
        with self._lock:
            path = self._existing_path(name)
            return self._entry(Voice.load(path), path)

    def rename(self, old: str, new: str) -> VoiceEntry:
        """Give voice `old` the name `new` (a change of case only is allowed)."""
        with self._lock:
            path = self._existing_path(old)
            new = check_voice_name(new)
            entry = self._save_new(Voice.load(path), new, replacing=path)
            if entry.path != path:
                path.unlink()  # only after the renamed copy is safely written
            return entry

    def delete(self, name: str) -> None:
        """Remove the voice called `name`."""
        with self._lock:
            self._existing_path(name).unlink()

    def export(self, name: str, dest_path: str | os.PathLike) -> Path:
        """Copy the voice file of `name` (verified first) to `dest_path`, atomically; returns the path."""
        with self._lock:
            path = self._existing_path(name)
            Voice.load(path)  # refuse to pass on a damaged file
            data = path.read_bytes()
        return atomic_write_bytes(dest_path, data)

    def import_file(self, path: str | os.PathLike, name: str | None = None, consent: str | None = None) -> VoiceEntry:
        """Add the voice file at `path` (checked like `Voice.load`: format, version, checksum).

        Args:
            path: a ``.voice`` file.
            name: the library name; default: the name stored in the file, else the file's stem.
            consent: the user's consent statement; default: the one stored in the file. A file without one
                needs it given.

        Raises:
            VoiceError: a damaged, tampered or unknown-version file, an invalid or taken name, or no consent.
        """
        voice = Voice.load(path)
        chosen = name if isinstance(name, str) and name.strip() else (voice.name or Path(path).stem)
        try:
            chosen = check_voice_name(chosen)
        except VoiceError as error:
            if name:
                raise
            raise VoiceError(f"the imported voice's name is unusable ({error}); give it a name") from None
        given = consent if isinstance(consent, str) and consent.strip() else voice.consent
        return self.add(voice, chosen, given)
