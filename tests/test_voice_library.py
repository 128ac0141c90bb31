"""The voice library: named, consented voices on disk; safe names, atomic writes, clear errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from tts.audio import SAMPLE_RATE, Audio
from tts.errors import VoiceError
from tts.voice import Voice
from tts.voice_library import VoiceLibrary, check_voice_name, default_library_folder

CONSENT = "I recorded this clip myself and agree to its use for voice cloning."


def _voice(seed: int = 0, seconds: float = 2.0, transcript: str = "hello there.") -> Voice:
    samples = (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)
    return Voice(Audio(samples), transcript, source="clip.wav")


@pytest.fixture
def library(tmp_path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices")


def _files(folder) -> list[str]:
    return sorted(path.name for path in folder.rglob("*")) if folder.exists() else []


def test_default_folder_is_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TIMBRE_CACHE", str(tmp_path / "cache"))
    assert default_library_folder() == tmp_path / "cache" / "voices"
    assert VoiceLibrary().folder == tmp_path / "cache" / "voices"
    assert not (tmp_path / "cache").exists()  # constructing touches nothing


def test_add_list_get_round_trip_keeps_consent_and_time(library):
    assert library.list() == []
    entry = library.add(_voice(1, 2.5, "the first voice."), "Ada Lovelace", consent=f"  {CONSENT}  ")
    library.add(_voice(2), "bob_2.0", consent=CONSENT)
    assert entry.name == "Ada Lovelace" and entry.consent == CONSENT and entry.duration == pytest.approx(2.5)
    assert entry.created.endswith("+00:00") and entry.path.parent == library.folder
    listed = library.list()
    assert [e.name for e in listed] == ["Ada Lovelace", "bob_2.0"]
    assert listed[0].transcript == "the first voice." and listed[0].consent == CONSENT
    voice = library.get("ADA LOVELACE")  # any case
    assert voice.name == "Ada Lovelace" and voice.consent == CONSENT and voice.created == entry.created
    assert voice.audio.samples.tobytes() == _voice(1, 2.5).audio.samples.tobytes()
    assert "ada lovelace" in library and "nobody" not in library and "../x" not in library


@pytest.mark.parametrize("consent", ["", "   ", None])
def test_consent_is_required(library, consent):
    with pytest.raises(VoiceError, match="permission"):
        library.add(_voice(), "Ada", consent=consent)
    assert _files(library.folder) == []


@pytest.mark.parametrize("name", [
    "../evil", "..", "a/b", "a\\b", "/etc/passwd", ".hidden", "x..y", "trailing.", "", "   ", "x" * 65,
    "nul", "COM1", "Con.txt", "tab\there", "new\nline", "semi;colon", "star*", "C:evil", "\u202ertl",
])
def test_unsafe_names_are_refused(library, tmp_path, name):
    with pytest.raises(VoiceError, match="name"):
        library.add(_voice(), name, consent=CONSENT)
    assert _files(library.folder) == [] and sorted(p.name for p in tmp_path.iterdir()) == []


def test_names_are_normalized_and_may_use_letters_of_any_script():
    assert check_voice_name("  Zoë ONeil ") == "Zoë ONeil"
    assert check_voice_name("Name-1_a.b") == "Name-1_a.b"
    assert check_voice_name("x" * 64) == "x" * 64


def test_names_are_unique_regardless_of_case(library):
    library.add(_voice(1), "Ada", consent=CONSENT)
    library.add(_voice(2), "Bob", consent=CONSENT)
    with pytest.raises(VoiceError, match="already has a voice named 'Ada'"):
        library.add(_voice(3), "ADA", consent=CONSENT)
    with pytest.raises(VoiceError, match="already has"):
        library.rename("bob", "ada")
    assert library.rename("ada", "ADA").name == "ADA"  # a change of case only
    assert library.names() == ["ADA", "Bob"]
    assert library.get("Bob").audio.samples.tobytes() == _voice(2).audio.samples.tobytes()


def test_rename_delete_export(library, tmp_path):
    library.add(_voice(1), "Ada", consent=CONSENT)
    entry = library.rename("Ada", "Ada 2")
    assert entry.name == "Ada 2" and library.names() == ["Ada 2"] and entry.consent == CONSENT
    assert _files(library.folder) == ["ada 2.voice"]
    out = library.export("ada 2", tmp_path / "out" / "shared.voice")
    assert out.read_bytes() == entry.path.read_bytes()
    assert Voice.load(out).name == "Ada 2"
    library.delete("ADA 2")
    assert library.list() == [] and _files(library.folder) == []


@pytest.mark.parametrize("action", [
    lambda lib, tmp: lib.get("ghost"),
    lambda lib, tmp: lib.rename("ghost", "spirit"),
    lambda lib, tmp: lib.delete("ghost"),
    lambda lib, tmp: lib.export("ghost", tmp / "x.voice"),
    lambda lib, tmp: lib.delete("../ada"),
])
def test_missing_voices_are_reported(library, tmp_path, action):
    library.add(_voice(), "Ada", consent=CONSENT)
    with pytest.raises(VoiceError, match="no voice named"):
        action(library, tmp_path)
    assert library.names() == ["Ada"]


def test_import_uses_the_files_name_and_consent_or_the_given_ones(library, tmp_path):
    other = VoiceLibrary(tmp_path / "other")
    other.add(_voice(5), "Shared", consent=CONSENT)
    shared = other.export("Shared", tmp_path / "shared.voice")
    entry = library.import_file(shared)
    assert (entry.name, entry.consent) == ("Shared", CONSENT)
    renamed = library.import_file(shared, name="Shared copy", consent="The speaker agreed in writing.")
    assert (renamed.name, renamed.consent) == ("Shared copy", "The speaker agreed in writing.")
    with pytest.raises(VoiceError, match="already has"):
        library.import_file(shared)


def test_import_of_a_file_without_consent_needs_it(library, tmp_path):
    path = _voice().save(tmp_path / "Plain Name.voice")  # a voice saved by the API: no consent, no name
    with safe_open(str(path), framework="numpy") as handle:
        assert "consent" not in handle.metadata() and "created" not in handle.metadata()
    assert Voice.load(path).consent == ""  # files without the optional fields load
    with pytest.raises(VoiceError, match="permission"):
        library.import_file(path)
    entry = library.import_file(path, consent=CONSENT)
    assert entry.name == "Plain Name" and entry.created  # the file's stem, and the time it was added


def _rewrite(path, **metadata_changes) -> None:
    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if "samples" in metadata_changes:
        tensors["samples"] = metadata_changes.pop("samples")
    metadata.update(metadata_changes)
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize("change, message", [
    ({"format_version": "2"}, "newer than this studio"),
    ({"samples": np.zeros(SAMPLE_RATE, np.float32)}, "checksum"),
    ({"format": "something-else"}, "not a Timbre voice file"),
])
def test_import_refuses_tampered_and_unknown_files(library, tmp_path, change, message):
    path = _voice().save(tmp_path / "bad.voice")
    _rewrite(path, consent=CONSENT, **change)
    with pytest.raises(VoiceError, match=message):
        library.import_file(path)
    (tmp_path / "junk.voice").write_bytes(b"not a voice at all")
    with pytest.raises(VoiceError, match="not a voice file"):
        library.import_file(tmp_path / "junk.voice", name="Junk", consent=CONSENT)
    assert _files(library.folder) == []


def test_a_damaged_file_in_the_folder_is_skipped_when_listing(library):
    library.add(_voice(), "Good", consent=CONSENT)
    (library.folder / "broken.voice").write_bytes(b"\x00" * 100)
    assert library.names() == ["Good"]


def test_a_crash_while_writing_keeps_the_old_voice(library, monkeypatch):
    library.add(_voice(1), "Ada", consent=CONSENT)
    before = (library.folder / "ada.voice").read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr("tts.files.os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        library.rename("Ada", "Grace")
    with pytest.raises(OSError, match="disk full"):
        library.rename("Ada", "ADA")  # rewrites the same file
    with pytest.raises(OSError, match="disk full"):
        library.add(_voice(2), "Bob", consent=CONSENT)
    monkeypatch.undo()
    assert _files(library.folder) == ["ada.voice"]  # no temporary or half-written file
    assert (library.folder / "ada.voice").read_bytes() == before
    assert library.names() == ["Ada"]


def test_concurrent_adds_of_one_name_store_exactly_one(library):
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def add(index: int, name: str) -> None:
        start.wait()
        try:
            library.add(_voice(index), name, consent=CONSENT)
            outcomes.append(f"ok {name}")
        except VoiceError:
            outcomes.append(f"taken {name}")

    threads = [threading.Thread(target=add, args=(i, "Same" if i < 4 else f"Other {i}")) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok Other 4", "ok Other 5", "ok Same", "taken Same", "taken Same", "taken Same"]
    assert library.names() == ["Other 4", "Other 5", "Same"]
