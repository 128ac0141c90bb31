"""Hostile files and names for the studio's other input parsers: batch manifests (`tts.data.manifest`),
voice files (`tts.voice.Voice.load`), voice-library names (`tts.voice_library`) and checkpoint folders
(`tts.checkpoints`). Each either works, keeping its promises, or raises its own error type (`ManifestError`
per line, `VoiceError`, `CheckpointError`); nothing is written outside its folder, nothing is unpickled, and a
config is never built for real before it fits its weights.

The budgets are fixed (``derandomize=True``), so every run tries the same inputs; docs/reliability.md
("Hostile inputs") lists them.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzzing import FUZZ, damage, damage_edits
from tts.audio import Audio
from tts.checkpoints import CONFIG_NAME, WEIGHTS_NAME, PretrainedMixin
from tts.data.manifest import AUDIO_DIR, ManifestEntry, parse_manifest_text
from tts.errors import CheckpointError, ManifestError, VoiceError
from tts.voice import Voice, _samples_sha256
from tts.voice_library import VoiceLibrary

_HOSTILE_NAMES = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "a/b", "a\\b", "C:\\Windows\\x", "a\x00b", "CON", "nul.txt",
    " a ", ".hidden", "a..b", "a" * 300, "\u202e\u0301", "\U0001d400" * 64, "\u0390" * 64, "\ufb03" * 64,
    "\u0130stanbul", "x\n", "~", "$HOME", "%s%n", "\ud7ff", "\ud800", "a:b", "*", "?",
]
_names = st.one_of(st.sampled_from(_HOSTILE_NAMES), st.text(max_size=80))
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
              st.sampled_from([10**400, -(10**30), 2**63, 1e308, "1e400", "NaN", "", " 1 "])),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


# ---------------------------------------------------------------------------------------------------------
# Batch manifests


@pytest.fixture
def no_clip_engine(monkeypatch):
    """Reference-clip voices report their engine missing (hermetic and fast: no checkpoint hashing)."""
    import tts.data.manifest as manifest_module

    monkeypatch.setattr(manifest_module, "clip_engine_unavailable", lambda engine: "not in this test")


_manifest_line = st.one_of(
    st.text(max_size=60).map(lambda text: text.replace("\n", " ")),
    _values.map(lambda value: json.dumps(value)),
    st.fixed_dictionaries(
        {"id": _names, "text": st.one_of(st.text(max_size=40), st.just("x" * 1200)),
         "voice": st.one_of(st.sampled_from(["pk0001", "flite:rms", "nope:voice", "../../etc/passwd", "/etc/passwd",
                                              "a/" + "x" * 5000 + ".wav", "clip.wav"]), st.text(max_size=20))},
        optional={"style": st.one_of(st.sampled_from(["happy", "neutral", "HAPPY "]), _values), "intensity": _values,
                  "speed": _values, "seed": _values, "extra": _values},
    ).map(lambda record: json.dumps(record, ensure_ascii=False)),
    st.sampled_from([
        "[" * 50_000,  # RecursionError in json.loads
        '{"id": "a", "seed": ' + "7" * 5000 + "}",  # ValueError: more than 4300 digits
        '{"id": "a", "text": "hi", "voice": "pk0001", "speed": 1' + "0" * 400 + "}",  # OverflowError in float()
        '{"id": "a", "text": "hi\u2028there", "voice": "pk0001"}',  # U+2028 split the line in two
        '{"id": "b", "text": "hi\x85there", "voice": "pk0001"}',
    ]),
)


def _check_manifest_entries(manifest, out: Path) -> None:
    audio_dir = (out / AUDIO_DIR).resolve()
    for entry in manifest.entries:
        target = (out / entry.file_name).resolve()
        assert target.parent == audio_dir and target.name == f"{entry.id}.flac", entry.id
    for error in manifest.errors:
        assert isinstance(error.reason, str) and error.reason and len(error.reason) < 1000
    for line in manifest.entries + manifest.errors:
        line.to_json().encode("utf-8")  # what the batch writes to metadata.jsonl / errors.jsonl


@settings(FUZZ, max_examples=300)
@given(lines=st.lists(st.one_of(_manifest_line, st.just(""), st.just("  \r")), max_size=8),
       endings=st.sampled_from(["\n", "\r\n"]))
@example(lines=["[" * 50_000, '{"id": "ok1", "text": "Hi.", "voice": "pk0001"}'], endings="\n")
@example(lines=['{"id": "a", "seed": ' + "7" * 5000 + "}"], endings="\n")
@example(lines=['{"id": "a", "text": "hi", "voice": "pk0001", "speed": 1' + "0" * 400 + "}"], endings="\n")
@example(lines=['{"id": "a", "text": "hi\u2028there", "voice": "pk0001"}', '{"id": "b", "text": "x", "voice": "pk0001"}'],
         endings="\n")
@example(lines=['{"id": "a", "text": "hi", "voice": "a/' + "x" * 5000 + '.wav"}'], endings="\n")  # ENAMETOOLONG
@example(lines=['{"id": "\\ud800", "text": "hi", "voice": "pk0001"}'], endings="\n")  # a lone surrogate: not UTF-8
def test_jsonl_every_line_is_an_entry_or_an_error_at_its_number(no_clip_engine, tmp_path, lines, endings):
    text = endings.join(lines) + endings
    manifest = parse_manifest_text(text, "jsonl", base_dir=tmp_path)
    reported = sorted([entry.line for entry in manifest.entries] + [error.line for error in manifest.errors])
    expected = [number for number, line in enumerate(lines, 1) if line.strip()]
    assert reported == expected, "each non-blank line once, at its number in an editor"
    _check_manifest_entries(manifest, tmp_path / "out")


_cell = st.one_of(st.text(max_size=20), st.sampled_from(['"', '""', "a,b", "a\nb", "\r", "x" * 140_000, "\x00",
                                                          '"unterminated', "pk0001", "../../x.wav"]))


@settings(FUZZ, max_examples=250)
@given(rows=st.lists(st.lists(_cell, max_size=5), max_size=6), delimiter=st.sampled_from([",", "\t"]))
@example(rows=[["a", "x" * 140_000, "pk0001"], ["b", "hi", "pk0001"]], delimiter=",")  # _csv.Error: field limit
@example(rows=[["a", "b\rc", "pk0001"]], delimiter=",")  # _csv.Error: new-line character in unquoted field
def test_csv_rows_never_crash_and_errors_point_at_real_lines(no_clip_engine, tmp_path, rows, delimiter):
    text = delimiter.join(["id", "text", "voice"]) + "\n" + "".join(delimiter.join(row) + "\n" for row in rows)
    manifest = parse_manifest_text(text, "tsv" if delimiter == "\t" else "csv", base_dir=tmp_path)
    last_line = text.count("\n") + 1
    numbers = [entry.line for entry in manifest.entries] + [error.line for error in manifest.errors]
    assert all(2 <= number <= last_line for number in numbers), (numbers, last_line)
    assert len(set(numbers)) == len(numbers), "one report a record, at the line it starts on"
    _check_manifest_entries(manifest, tmp_path / "out")


@settings(FUZZ, max_examples=400)
@given(_names)
def test_manifest_entries_refuse_ids_that_are_not_plain_file_names(entry_id):
    try:
        entry = ManifestEntry(entry_id, "Hello.", "pk0001")
    except ManifestError:
        return
    assert entry.file_name == f"{AUDIO_DIR}/{entry_id}.flac" and Path(entry.file_name).name == f"{entry_id}.flac"
    assert "/" not in entry_id and "\\" not in entry_id and ".." not in entry_id and not entry_id.startswith(".")


@settings(FUZZ, max_examples=10, deadline=None)
@given(ids=st.lists(st.sampled_from(_HOSTILE_NAMES + ["ok1", "ok.2", "OK1", "u-3"]), min_size=1, max_size=6))
@example(ids=["../../escaped", "/tmp/escaped", "ok1"])
@example(ids=["\ud800", "ok1"])  # its line error crashed the writing of errors.jsonl (UnicodeEncodeError)
@example(ids=["a" * 300])
def test_a_batch_writes_nothing_outside_its_output_folder(no_clip_engine, tmp_path_factory, monkeypatch, ids):
    import tts.data.batch as batch_module
    from tts.data.corpus import CorpusItem

    def fake_synthesis(entry, gate=None, engine=None):
        extra = {"id": entry.id, "render_digest": batch_module.render_digest(entry, engine)}
        item = CorpusItem(file_name=entry.file_name, text=entry.text, voice_id=entry.voice, duration=0.05, extra=extra)
        return item, Audio(np.zeros(1200, dtype=np.float32))

    monkeypatch.setattr(batch_module, "synthesize_entry", fake_synthesis)
    root = tmp_path_factory.mktemp("batch")
    out = root / "corpus" / "out"
    lines = [json.dumps({"id": entry_id, "text": "Hello there.", "voice": "pk0001"}) for entry_id in ids]
    manifest = parse_manifest_text("\n".join(lines) + "\n", "jsonl", base_dir=root)
    batch_module.run_batch(manifest, out, progress=False)
    written = [path for path in root.rglob("*") if path.is_file()]
    assert all(out.resolve() in path.resolve().parents for path in written), written
    for entry_id in ids:  # where a naive join would have put it ("/tmp/escaped" escapes `root` too)
        naive = out / AUDIO_DIR / f"{entry_id}.flac"
        try:
            exists = naive.exists()
        except OSError:  # a name too long to exist
            exists = False
        assert not exists or out.resolve() in naive.resolve().parents, naive
    assert sorted(p.name for p in (out / AUDIO_DIR).iterdir()) == sorted(f"{e.id}.flac" for e in manifest.entries)


# ---------------------------------------------------------------------------------------------------------
# Voice files


@functools.cache
def _voice() -> Voice:
    samples = (0.3 * np.sin(np.arange(2400) / 7.0)).astype(np.float32)
    return Voice(Audio(samples), "hello there", name="Ada", source="ada.wav", consent="Ada agreed.")


@functools.cache
def _voice_bytes() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return _voice().save(Path(folder) / "ada.voice").read_bytes()


def _load_voice(folder: Path, data: bytes) -> Voice | None:
    """`Voice.load` of `data` as a file; None when it raised `VoiceError` (naming the file)."""
    path = folder / "x.voice"
    path.write_bytes(data)
    try:
        voice = Voice.load(path)
    except VoiceError as error:
        assert str(path) in str(error), "the message names the file"
        return None
    assert np.all(np.isfinite(voice.audio.samples)) and voice.audio.sample_rate == 24_000
    return voice


_damage_edits = damage_edits(header_bytes=600, max_position=20_000, max_edits=3)  # the JSON header, then tensors


@settings(FUZZ, max_examples=400)
@given(edits=_damage_edits)
@example(edits=(("truncate", 8, 0),))
@example(edits=(("overwrite", 0, struct.pack("<Q", 2**63)),))  # an 8 EiB header
@example(edits=(("overwrite", 0, struct.pack("<Q", 2**40)),))
def test_damaged_voice_files_are_refused_or_load_their_exact_samples(tmp_path, edits):
    voice = _load_voice(tmp_path, damage(_voice_bytes(), edits))
    if voice is not None:  # the damage missed the samples (a transcript letter, padding): samples are exact
        np.testing.assert_array_equal(voice.audio.samples, _voice().audio.samples)


@settings(FUZZ, max_examples=200)
@given(st.binary(max_size=600) | st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=600))
       .map(lambda pair: struct.pack("<Q", pair[0]) + pair[1]))  # a header length, then anything
@example(b"")
@example(pickle.dumps({"samples": [0.0] * 10}))
def test_random_bytes_are_not_voice_files(tmp_path, data):
    assert _load_voice(tmp_path, data) is None


def _rewritten(samples: np.ndarray, metadata: dict) -> bytes:
    from safetensors.numpy import save

    return save({"samples": samples}, metadata=metadata)


@settings(FUZZ, max_examples=300)
@given(
    changes=st.dictionaries(
        st.sampled_from(["format", "format_version", "sample_rate", "transcript", "transcript_source", "name",
                         "created_with", "consent", "created", "samples_sha256", "unknown"]),
        st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["1", "2", "0", "-1", " 1", "1_0", "\u0661", "01",
                                                                    "9" * 5000, "timbre-voice", "24000", "asr"])),
        max_size=4,
    ),
    nan=st.booleans(),
)
@example(changes={}, nan=True)  # NaN samples with their own checksum loaded as a voice
@example(changes={"format_version": "\u0661"}, nan=False)  # Arabic-Indic one: int() reads it as 1
@example(changes={"format_version": " 1 "}, nan=False)
@example(changes={"format_version": "01"}, nan=False)
def test_voice_metadata_is_checked(tmp_path, changes, nan):
    samples = _voice().audio.samples.copy()
    if nan:
        samples[100] = np.nan
    metadata = {"format": "timbre-voice", "format_version": "1", "sample_rate": "24000", "transcript": "hello there",
                "name": "Ada", "source": "ada.wav", "transcript_source": "user", "created_with": "0.1",
                "samples_sha256": _samples_sha256(samples)}
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    voice = _load_voice(tmp_path, _rewritten(samples, metadata))
    if voice is not None:
        assert not nan and metadata["format_version"] == "1" and metadata["sample_rate"] == "24000"
        assert voice.transcript == metadata["transcript"] and voice.transcript_source in ("user", "asr")


def test_voice_files_are_never_unpickled(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a voice file was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.voice").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(VoiceError, match="not a voice file"):
        Voice.load(tmp_path / "evil.voice")
    assert _load_voice(tmp_path, _voice_bytes()) is not None
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------------------
# Voice-library names


@settings(FUZZ, max_examples=250)
@given(name=_names, other=_names)
@example(name="\U0001d400" * 64, other="a")  # 64 letters of 4 bytes: "File name too long" (OSError) on add/get
@example(name="../../escaped", other="/tmp/escaped")
@example(name="Ada", other="ADA")
def test_voice_names_never_leave_the_library_folder(tmp_path_factory, name, other):
    root = tmp_path_factory.mktemp("library")
    library = VoiceLibrary(root / "voices")
    try:
        entry = library.add(_voice(), name, "The speaker agreed.")
    except VoiceError:
        assert name not in library
        with pytest.raises(VoiceError):
            library.get(name)
    else:
        assert entry.path.parent == library.folder and entry.path.suffix == ".voice"
        assert name in library and library.names() == [entry.name]
        np.testing.assert_array_equal(library.get(name).audio.samples, _voice().audio.samples)
        try:
            renamed = library.rename(name, other)
        except VoiceError:
            pass
        else:
            assert renamed.path.parent == library.folder and library.names() == [renamed.name]
            name = other
        library.delete(name)
        assert library.names() == []
    for action in (library.get, library.delete, library.entry):
        with pytest.raises(VoiceError):
            action(other + "\x00")
    outside = [path for path in root.rglob("*") if path.is_file() and path.parent != library.folder]
    assert not outside, outside
    shutil.rmtree(root)


# ---------------------------------------------------------------------------------------------------------
# Checkpoint folders


@dataclass(frozen=True)
class FuzzConfig:
    dim: int = 8
    layers: int = 2
    scale: float = 1.0
    kernel_sizes: tuple[int, ...] = (3, 5)

    def __post_init__(self) -> None:
        if self.dim % self.layers:  # like SpeechTokenLMConfig's heads check, where "heads": 0 divides by zero
            raise ValueError("dim must be a multiple of layers")


class FuzzModel(PretrainedMixin, torch.nn.Module):
    """A two-layer model that records where each instance was built ("meta" or "cpu")."""

    config_class = FuzzConfig
    built_on: ClassVar[list[str]] = []

    def __init__(self, config: FuzzConfig) -> None:
        super().__init__()
        FuzzModel.built_on.append(torch.empty(0).device.type)
        self.config = config
        self.layers = torch.nn.ModuleList(torch.nn.Linear(config.dim, config.dim) for _ in range(config.layers))
        self.convs = torch.nn.ModuleList(torch.nn.Conv1d(1, 1, k) for k in config.kernel_sizes)


@functools.cache
def _checkpoint() -> tuple[str, bytes, dict[str, torch.Tensor]]:
    """(config.json text, model.safetensors bytes, state dict) of a saved `FuzzModel`."""
    import tempfile

    torch.manual_seed(0)
    model = FuzzModel(FuzzConfig())
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return (Path(folder, CONFIG_NAME).read_text(), Path(folder, WEIGHTS_NAME).read_bytes(),
                {key: value.clone() for key, value in model.state_dict().items()})


def _load_checkpoint(folder: Path, config: str | bytes, weights: bytes) -> FuzzModel | None:
    """`FuzzModel.from_pretrained(folder)`; None when it raised `CheckpointError`. A refused folder never
    built the model for real; a loaded one built it once, and holds exactly the file's weights."""
    folder.mkdir(exist_ok=True)
    (folder / CONFIG_NAME).write_bytes(config.encode() if isinstance(config, str) else config)
    (folder / WEIGHTS_NAME).write_bytes(weights)
    FuzzModel.built_on.clear()
    try:
        model = FuzzModel.from_pretrained(folder)
    except CheckpointError as error:
        assert "cpu" not in FuzzModel.built_on, "a config was built for real before it was checked"
        assert len(str(error)) < 2000
        return None
    assert FuzzModel.built_on.count("cpu") == 1
    return model


@settings(FUZZ, max_examples=300)
@given(edits=_damage_edits)
@example(edits=(("overwrite", 0, struct.pack("<Q", 2**63)),))  # header length: 8 EiB
@example(edits=(("overwrite", 0, struct.pack("<Q", 2**40)),))
@example(edits=(("truncate", 100, 0),))
def test_damaged_weights_are_refused_or_load_exactly(tmp_path, edits):
    config, weights, state = _checkpoint()
    model = _load_checkpoint(tmp_path / "ckpt", config, damage(weights, edits))
    if model is not None:
        loaded = model.state_dict()
        assert loaded.keys() == state.keys()
        assert all(loaded[key].shape == state[key].shape and torch.isfinite(loaded[key]).all() for key in state)


def _config_text(values: dict) -> str:
    config, _, _ = _checkpoint()
    payload = json.loads(config)
    payload["config"].update(values)
    return json.dumps(payload, allow_nan=True)


_config_value = st.one_of(
    st.integers(), st.sampled_from([0, -1, 10**30, 2**63, 4096, 10**12]), st.floats(), st.booleans(), st.none(),
    st.text(max_size=8), st.lists(st.integers(-2, 9), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(FUZZ, max_examples=300)
@given(values=st.dictionaries(st.sampled_from(["dim", "layers", "scale", "kernel_sizes", "unknown"]), _config_value,
                              max_size=3))
@example(values={"dim": 4096})  # was built for real (64 MB a layer) before the shapes were compared
@example(values={"layers": 10**12})  # was a loop of a trillion layers
@example(values={"layers": 10**12, "dim": 0})  # layers without weights: the value budget alone never ran out
@example(values={"layers": 0})  # ZeroDivisionError from the config's own check
@example(values={"layers": 3})  # ValueError from the config's own check
@example(values={"dim": -1})  # RuntimeError from torch
@example(values={"dim": 10**30})  # TypeError from torch
@example(values={"scale": float("nan")})
@example(values={"kernel_sizes": "abc"})  # loaded: a string where a list belongs
@example(values={"dim": True})
def test_config_values_are_checked_before_anything_is_built(tmp_path, values):
    _, weights, state = _checkpoint()
    model = _load_checkpoint(tmp_path / "ckpt", _config_text(values), weights)
    if model is not None:
        assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
        assert isinstance(model.config.dim, int) and not isinstance(model.config.dim, bool)
        assert isinstance(model.config.kernel_sizes, tuple)


@settings(FUZZ, max_examples=200)
@given(edits=_damage_edits)
@example(edits=(("insert", 0, b"[" * 16),))
def test_damaged_config_json_is_refused_or_fits(tmp_path, edits):
    config, weights, _ = _checkpoint()
    _load_checkpoint(tmp_path / "ckpt", damage(config.encode(), edits), weights)


@pytest.mark.parametrize("config", [
    '{"model_class": "FuzzModel", "config": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError
    '{"model_class": "FuzzModel", "config": {"dim": ' + "9" * 5000 + "}}",  # ValueError: over 4300 digits
    " " * (2 << 20),  # 2 MiB of nothing
])
def test_pathological_config_json_is_refused(tmp_path, config):
    _, weights, _ = _checkpoint()
    assert _load_checkpoint(tmp_path / "ckpt", config, weights) is None


def test_weights_holding_nan_are_refused(tmp_path):
    from safetensors.torch import save

    config, _, state = _checkpoint()
    broken = {key: value.clone() for key, value in state.items()}
    broken["layers.0.weight"][0, 0] = float("nan")  # what one flipped exponent bit can do; safetensors has no checksum
    weights = save(broken, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="layers.0.weight hold NaN or infinite values"):
        _load_checkpoint(tmp_path / "ckpt", config, weights) or FuzzModel.from_pretrained(tmp_path / "ckpt")
