"""`timbre batch` (tts.data.batch) and the corpus plan (tts.data.corpus_build): manifest parsing and
validation, bad lines logged and skipped, determinism, resume after a crash (including repeated SIGKILLs),
write faults (full disk, no permission, read-only disk, a file for a folder) stopping cleanly, sharding, the
quality gate, and the corpus recipe's rules."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from tts.data import batch as batch_module
from tts.data.batch import QualityGate, derive_seed, merge_outputs, run_batch
from tts.data.manifest import MAX_TEXT_CHARS, Manifest, default_seed, parse_manifest, parse_manifest_text
from tts.data.corpus import read_metadata
from tts.data.speakers import speaker_status
from tts.errors import ManifestError, TimbreError

REPO = Path(__file__).resolve().parent.parent

GOOD_LINES = [
    {"id": "u1", "text": "Hello there, how are you today?", "voice": "flite:kal16"},
    {"id": "u2", "text": "We won the game!", "voice": "pw0000", "style": "happy", "intensity": 0.8, "seed": 3},
    {"id": "u3", "text": "Please keep your voice down.", "voice": "flite:rms", "style": "whisper", "speed": 1.1},
    {"id": "u4", "text": "It rained all week.", "voice": "flite:kal16", "style": "sad", "intensity": 0.5, "seed": 9},
]


@pytest.fixture(autouse=True)
def _engines():
    if speaker_status()["flite"] is not None:
        pytest.skip("flite is not installed here")
    pytest.importorskip("parselmouth")


def _write_jsonl(path: Path, records: list) -> Path:
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((folder / "audio").iterdir())}


def _metadata_ids(folder: Path) -> list[str]:
    return [item.extra["id"] for item in read_metadata(folder, strict=True)]


# ---------------------------------------------------------------------------------------------------------
# Parsing and validation


def test_jsonl_lines_parse_with_defaults():
    manifest = parse_manifest_text("\n".join(json.dumps(r) for r in GOOD_LINES) + "\n\n")
    assert not manifest.errors
    first, second, third, fourth = manifest.entries
    assert (first.style, first.intensity, first.speed, first.seed) == ("neutral", 0.0, 1.0, default_seed("u1"))
    assert (second.style, second.intensity, second.seed) == ("happy", 0.8, 3)
    assert third.intensity == 1.0  # a style without an intensity is rendered in full
    assert [e.line for e in manifest.entries] == [1, 2, 3, 4] and [e.index for e in manifest.entries] == [0, 1, 2, 3]
    assert first.file_name == "audio/u1.flac"


BAD_LINES = [
    ({"id": "e1", "text": "", "voice": "flite:rms"}, "empty 'text'"),
    ({"id": "e2", "text": "   ", "voice": "flite:rms"}, "empty 'text'"),
    ({"id": "e3", "text": "Hi.", "voice": "flite:nobody"}, "unknown flite voice"),
    ({"id": "e4", "text": "Hi.", "voice": "martian:zork"}, "unknown speaker engine"),
    ({"id": "e5", "text": "Hi.", "voice": "pk9999"}, "unknown pseudo-speaker"),
    ({"id": "e6", "text": "x" * 5000, "voice": "flite:rms"}, "5,000 characters"),
    ('{"id": "e7", "text": "Hi.", "voice": ', "broken JSON"),
    ({"id": "../etc/passwd", "text": "Hi.", "voice": "flite:rms"}, "not a plain file name"),
    ({"id": "a/b", "text": "Hi.", "voice": "flite:rms"}, "not a plain file name"),
    ({"id": ".hidden", "text": "Hi.", "voice": "flite:rms"}, "not a plain file name"),
    ({"id": "e8", "text": "Hi.", "voice": "clips/me.wav"}, "reference clip"),
    ({"id": "e9", "text": "Hi.", "voice": "flite:rms", "style": "sarcastic"}, "unknown style"),
    ({"id": "e10", "text": "Hi.", "voice": "flite:rms", "intensity": 2}, "intensity"),
    ({"id": "e11", "text": "Hi.", "voice": "flite:rms", "speed": 0.1}, "speed"),
    ({"id": "e12", "text": "Hi.", "voice": "flite:rms", "seed": -1}, "seed"),
    ({"id": "e13", "text": "Hi.", "voice": "flite:rms", "seed": "abc"}, "seed"),
    ({"id": "e14", "text": "Hi.", "voice": "flite:rms", "volume": 3}, "unknown field"),
    ({"text": "Hi.", "voice": "flite:rms"}, "missing 'id'"),
    ({"id": "e15", "text": "Hi."}, "'voice'"),
    ('["not", "an", "object"]', "expected a JSON object"),
]


@pytest.mark.parametrize("record, reason", BAD_LINES, ids=[str(i) for i in range(len(BAD_LINES))])
def test_bad_lines_become_errors_with_reasons(record, reason):
    line = record if isinstance(record, str) else json.dumps(record)
    good = json.dumps(GOOD_LINES[0])
    manifest = parse_manifest_text(f"{good}\n{line}\n{good.replace('u1', 'u9')}\n")
    assert [e.id for e in manifest.entries] == ["u1", "u9"], "a bad line must not stop the others"
    (error,) = manifest.errors
    assert error.line == 2 and reason in error.reason and error.stage == "manifest"


def test_duplicate_ids_are_refused_case_insensitively():
    lines = [GOOD_LINES[0], {**GOOD_LINES[0], "text": "Again."}, {**GOOD_LINES[0], "id": "U1"}]
    manifest = parse_manifest_text("\n".join(json.dumps(r) for r in lines))
    assert [e.text for e in manifest.entries] == [GOOD_LINES[0]["text"]]
    assert [e.line for e in manifest.errors] == [2, 3] and all("duplicate id" in e.reason for e in manifest.errors)


def test_csv_and_tsv_manifests(tmp_path):
    csv_text = (
        "id,text,voice,style,intensity,speed,seed\n"
        'c1,"Hello, world.",flite:rms,,,,\n'
        "c2,Well done!,pw0000,happy,0.5,1.2,7\n"
        "c3,,flite:rms,,,,\n"
        "c4,Too,many,columns,here,1,1,1\n"
    )
    manifest = parse_manifest(_write(tmp_path / "m.csv", csv_text))
    assert [(e.id, e.text, e.style, e.intensity, e.speed, e.seed) for e in manifest.entries] == [
        ("c1", "Hello, world.", "neutral", 0.0, 1.0, default_seed("c1")),
        ("c2", "Well done!", "happy", 0.5, 1.2, 7),
    ]
    assert [(e.line, e.id) for e in manifest.errors] == [(4, "c3"), (5, None)]
    tsv = parse_manifest(_write(tmp_path / "m.tsv", "id\ttext\tvoice\nt1\tHi, you.\tflite:kal16\n"))
    assert tsv.entries[0].text == "Hi, you." and not tsv.errors
    with pytest.raises(ManifestError, match="header"):
        parse_manifest(_write(tmp_path / "bad.csv", "name,words\nx,y\n"))
    with pytest.raises(ManifestError, match="not found"):
        parse_manifest(tmp_path / "missing.jsonl")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_lines_without_a_voice_or_style_take_the_chosen_ones_in_turn(tmp_path):
    from tts.data.manifest import LineDefaults

    defaults = LineDefaults.from_lists(" flite:slt, flite:rms ,", ["happy", "sad", "calm"])
    assert defaults == LineDefaults(("flite:slt", "flite:rms"), ("happy", "sad", "calm"))
    lines = [{"id": "a", "text": "One."}, {"id": "b", "text": "Two.", "voice": "flite:awb"},
             {"id": "c", "text": "Three.", "style": "angry"}, {"id": "d", "text": "Four.", "voice": ""}]
    manifest = parse_manifest_text("\n".join(json.dumps(line) for line in lines), defaults=defaults)
    assert [(e.id, e.voice, e.style) for e in manifest.entries] == [
        ("a", "flite:slt", "happy"), ("b", "flite:awb", "sad"), ("c", "flite:slt", "angry"), ("d", "flite:rms", "happy")]
    assert [e.intensity for e in manifest.entries] == [1.0, 1.0, 1.0, 1.0]
    # Without defaults a line with no voice is a bad line; a CSV may leave the column out only with voices given.
    assert [error.reason for error in parse_manifest_text(json.dumps(lines[0])).errors] == ["missing or empty 'voice'"]
    csv_text = "id,text\nx,Hello there.\ny,Bye now.\n"
    with pytest.raises(ManifestError, match="missing: voice"):
        parse_manifest_text(csv_text, "csv")
    manifest = parse_manifest_text(csv_text, "csv", defaults=LineDefaults(("flite:awb",)))
    assert [(e.voice, e.style) for e in manifest.entries] == [("flite:awb", "neutral"), ("flite:awb", "neutral")]
    for voices, styles, message in ((["flite:nobody"], [], "unknown flite voice"), (["/etc/passwd"], [], "not accepted"),
                                    ([], ["furious"], "unknown style")):
        with pytest.raises(ManifestError, match=message):
            LineDefaults.from_lists(voices, styles)


def test_text_limit_is_inclusive():
    ok = {"id": "x", "text": "a" * MAX_TEXT_CHARS, "voice": "flite:rms"}
    assert parse_manifest_text(json.dumps(ok)).entries


# ---------------------------------------------------------------------------------------------------------
# Running


def test_run_writes_an_audiofolder_and_logs_bad_lines(tmp_path):
    unspeakable = {"id": "u0", "text": "!!! ???", "voice": "flite:rms"}
    lines = [GOOD_LINES[0], BAD_LINES[0][0], BAD_LINES[6][0], GOOD_LINES[1], unspeakable]
    manifest = _write_jsonl(tmp_path / "m.jsonl", lines)
    out = tmp_path / "out"
    summary = run_batch(manifest, out, progress=False)
    assert (summary.written, summary.failed) == (2, 1)
    items = read_metadata(out, strict=True)
    assert [item.extra["id"] for item in items] == ["u1", "u2"]
    happy = items[1]
    assert happy.voice_id == "pw0000" and happy.style == "happy" and happy.intensity == 0.8 and happy.seed == 3
    assert happy.engine == "flite" and happy.synthetic and happy.sample_rate == 24_000
    assert happy.phonemes and "|" in happy.phonemes
    assert happy.extra["style_params"]["pitch_shift"] > 0 and happy.extra["voice_recipe"]["kind"] == "warp"
    assert happy.extra["versions"]["voicebank"] == 1 and "praat" in happy.extra["versions"]
    samples, rate = sf.read(happy.audio_path(out))
    assert rate == 24_000 and len(samples) / rate == pytest.approx(happy.duration, abs=1e-3)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["stage"]) for e in errors] == [(2, "manifest"), (3, "manifest"), (5, "synthesis")]
    assert "empty 'text'" in errors[0]["reason"] and "broken JSON" in errors[1]["reason"]
    assert not list(out.glob("metadata.rank*.jsonl")), "the per-process logs are merged away"
    assert json.loads((out / "summary.json").read_text())["items"] == 2


def test_same_line_and_seed_give_the_same_bytes(tmp_path):
    manifest = Manifest(parse_manifest_text("\n".join(json.dumps(r) for r in GOOD_LINES)).entries)
    run_batch(manifest, tmp_path / "a", progress=False)
    run_batch(manifest, tmp_path / "b", progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = parse_manifest_text(json.dumps({**GOOD_LINES[2], "seed": 12345})).entries
    run_batch(Manifest(other), tmp_path / "c", progress=False)
    assert _files(tmp_path / "c")["u3.flac"] != _files(tmp_path / "a")["u3.flac"], "the seed must matter for whisper"


def test_a_piper_lines_seed_chooses_how_it_is_said(tmp_path):
    """The seed seeds Piper's own noise too: two seeds of one line differ, the same seed gives the same bytes
    (also a seed beyond onnxruntime's 32-bit generator)."""
    if speaker_status()["piper"] is not None:
        pytest.skip("piper is not installed here")
    lines = [{"id": f"p{seed}", "text": "Please keep your voice down.", "voice": "piper:joe", "seed": seed}
             for seed in (1, 2, 1, 2**63 - 1)]
    lines[2]["id"] = "again"
    run_batch(Manifest(parse_manifest_text("\n".join(json.dumps(r) for r in lines)).entries), tmp_path / "a",
              progress=False)
    files = _files(tmp_path / "a")
    assert files["p1.flac"] == files["again.flac"] and files["p1.flac"] != files["p2.flac"]
    assert files[f"p{2**63 - 1}.flac"] not in (files["p1.flac"], files["p2.flac"])


def test_rerun_skips_finished_lines_and_redoes_changed_ones(tmp_path):
    manifest = _write_jsonl(tmp_path / "m.jsonl", GOOD_LINES[:2])
    out = tmp_path / "out"
    run_batch(manifest, out, progress=False)
    before = _files(out)
    again = run_batch(manifest, out, progress=False)
    assert (again.written, again.already_done) == (0, 2)
    _write_jsonl(manifest, [GOOD_LINES[0], {**GOOD_LINES[1], "text": "We lost the game."}])
    changed = run_batch(manifest, out, progress=False)
    assert changed.written == 1
    assert _files(out)["u1.flac"] == before["u1.flac"] and _files(out)["u2.flac"] != before["u2.flac"]
    assert [item.text for item in read_metadata(out)][1] == "We lost the game."


def test_crash_leftovers_are_reconciled(tmp_path):
    """The states a kill -9 can leave: a torn last log line, a line logged twice, an audio file without
    its log line, a log line whose audio is gone, and a temporary file of an unfinished write."""
    manifest = _write_jsonl(tmp_path / "m.jsonl", GOOD_LINES)
    out = tmp_path / "out"
    run_batch(manifest, out, merge=False, shard_index=0, num_shards=1, progress=False)
    log = out / "metadata.rank0.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 4
    log.write_text("\n".join([lines[0], lines[0], lines[1], lines[2]]) + "\n" + lines[3][:40])
    expected = _files(out)
    (out / "audio" / "u2.flac").unlink()  # logged, audio gone
    (out / "audio" / ".u4.flac.999.1.tmp").write_bytes(b"half a file")
    summary = run_batch(manifest, out, progress=False)
    assert summary.written == 2 and summary.already_done == 2  # u2 (audio lost) and u4 (torn line) redone
    assert _metadata_ids(out) == ["u1", "u2", "u3", "u4"]
    files = _files(out)
    assert set(files) == {"u1.flac", "u2.flac", "u3.flac", "u4.flac"}
    assert files == expected, "redone samples must be byte-identical"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


KILLS = 6
"""SIGKILLs in a row in the repeated-kill test: half at a random (seeded) moment, half in the middle of
writing an audio file, each after a random number of finished lines."""


def _kill_manifest(folder: Path, count: int = 24) -> Path:
    records = [
        {"id": f"k{i:03d}", "text": f"This is sentence number {i}, spoken for the crash test.",
         "voice": ("pw0000", "flite:kal16", "pw0001")[i % 3], "style": ("neutral", "sad", "happy")[i % 3]}
        for i in range(count)
    ]
    return _write_jsonl(folder / "m.jsonl", records)


def _log_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _writing_audio(folder: Path, pid: int) -> bool:
    """Whether process `pid` has a temporary audio file open in `folder` (an `atomic_open` name)."""
    try:
        return any(f".{pid}." in name and name.endswith(".tmp") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def _assert_no_half_files(out: Path, reference: dict[str, bytes]) -> None:
    """What a kill may leave: finished audio files equal to the uninterrupted run's, a log whose complete
    lines all point at such a file, and at most temporary files and a torn last log line."""
    for path in (out / "audio").iterdir():
        if not path.name.startswith("."):
            assert path.read_bytes() == reference[path.name], f"{path.name} differs from the uninterrupted run"
    log = out / "metadata.rank0.jsonl"
    if log.is_file():
        for raw in log.read_bytes().split(b"\n")[:-1]:
            record = json.loads(raw)
            assert (out / record["file_name"]).is_file(), f"{record['id']} logged before its audio was complete"


def _kill_at(process: subprocess.Popen, out: Path, lines: int, mid_write: bool, delay: float) -> None:
    """SIGKILL `process` once its log has `lines` more lines: `delay` seconds later, or (`mid_write`) as soon
    as it is writing an audio file."""
    log, audio = out / "metadata.rank0.jsonl", out / "audio"
    target = _log_lines(log) + lines
    deadline = time.monotonic() + 60
    while process.poll() is None and _log_lines(log) < target and time.monotonic() < deadline:
        time.sleep(0.005)
    if mid_write:  # the write takes well under a millisecond: poll without sleeping
        while process.poll() is None and not _writing_audio(audio, process.pid) and time.monotonic() < deadline:
            pass
    else:
        time.sleep(delay)
    assert process.poll() is None, "the batch finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_repeated_sigkills_then_resume_lose_and_duplicate_nothing(tmp_path):
    """`python -m tts.data.batch` killed with SIGKILL again and again, restarted each time, then left to
    finish: the corpus is the uninterrupted run's, byte for byte, with every line exactly once."""
    import random

    manifest = _kill_manifest(tmp_path)
    lines = [json.loads(line)["id"] for line in manifest.read_text().splitlines()]
    reference = tmp_path / "reference"
    run_batch(manifest, reference, progress=False)
    expected = _files(reference)
    out = tmp_path / "out"
    log = out / "metadata.rank0.jsonl"
    command = [sys.executable, "-m", "tts.data.batch", str(manifest), "--out", str(out), "--no-progress"]
    rng = random.Random(13)
    kills = []
    for kill in range(KILLS):
        mid_write = kill % 2 == 1
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _kill_at(process, out, rng.randint(0 if mid_write else 1, 2), mid_write, rng.uniform(0.0, 0.3))
        finally:
            process.kill()
            process.wait()
        assert process.returncode == -signal.SIGKILL
        left_temporary = _writing_audio(out / "audio", process.pid)
        kills.append((_log_lines(log), mid_write, left_temporary))
        _assert_no_half_files(out, expected)
        assert not (out / "metadata.jsonl").exists()
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert _metadata_ids(out) == lines  # every line once, in manifest order
    assert _files(out) == expected  # every line has one audio file, the uninterrupted run's bytes
    for name in ("metadata.jsonl", "errors.jsonl", "summary.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not [path for path in out.rglob("*") if path.name.startswith(".") or "rank" in path.name]
    for path in (out / "audio").iterdir():
        samples, rate = sf.read(path)
        assert rate == 24_000 and len(samples) > 0
    done = [count for count, _, _ in kills]
    assert done == sorted(done) and done[-1] < len(lines), "every kill came before the end"
    assert any(left for _, _, left in kills), "no kill landed in the middle of writing an audio file"
    print(f"{KILLS} kills after {done} finished lines; {sum(left for _, _, left in kills)} left a temporary audio "
          f"file (killed between its creation and its rename; {sum(mid for _, mid, _ in kills)} were aimed there)")


# ---------------------------------------------------------------------------------------------------------
# Write faults: a full disk, no permission, a read-only disk, a file where a folder should be


@pytest.fixture(scope="module")
def fault_reference(tmp_path_factory) -> Path:
    """An uninterrupted run of `GOOD_LINES` (what a run after a write fault must end up equal to)."""
    if speaker_status()["flite"] is not None:
        pytest.skip("flite is not installed here")
    folder = tmp_path_factory.mktemp("fault_reference")
    run_batch(_write_jsonl(folder / "m.jsonl", GOOD_LINES), folder / "out", progress=False)
    return folder / "out"


def _fail_nth_write(monkeypatch, target: str, nth: int, code: int) -> list[str]:
    """Make the `nth` write to a file whose name contains `target` write half its bytes and then raise
    ``OSError(code)``, as a disk that fills up mid-write does. Returns the names written to."""
    write = batch_module._write_bytes
    names: list[str] = []

    def failing_write(handle, data: bytes) -> None:
        name = Path(handle.name).name
        if target in name:
            names.append(name)
            if len(names) == nth:
                write(handle, data[: len(data) // 2])
                raise OSError(code, os.strerror(code))
        write(handle, data)

    monkeypatch.setattr(batch_module, "_write_bytes", failing_write)
    return names


WRITE_FAULTS = [
    ("flac", 3, errno.ENOSPC, "audio/u3.flac"),
    ("flac", 1, errno.EACCES, "audio/u1.flac"),
    ("flac", 4, errno.EROFS, "audio/u4.flac"),
    ("metadata.rank0", 3, errno.ENOSPC, "metadata.rank0.jsonl"),
    ("metadata.rank0", 2, errno.EDQUOT, "metadata.rank0.jsonl"),
    ("metadata.jsonl", 1, errno.ENOSPC, "metadata.jsonl"),
    ("summary.json", 1, errno.EROFS, "summary.json"),
]


@pytest.mark.parametrize("target, nth, code, failed", WRITE_FAULTS,
                         ids=[f"{t}-{n}-{errno.errorcode[c]}" for t, n, c, _ in WRITE_FAULTS])
def test_write_fault_stops_with_a_clear_message_and_a_rerun_finishes(
        tmp_path, monkeypatch, capsys, fault_reference, target, nth, code, failed):
    from tts.cli import main

    manifest = _write_jsonl(tmp_path / "m.jsonl", GOOD_LINES)
    out = tmp_path / "out"
    command = ["batch", str(manifest), "--out", str(out), "--no-progress"]
    names = _fail_nth_write(monkeypatch, target, nth, code)
    assert main(command) == 2
    assert len(names) == nth, "the fault was not reached"
    err = capsys.readouterr().err
    assert f"timbre batch: error: {os.strerror(code).lower()} while writing {out / failed}: " in err, err
    assert "rerun" in err and "Traceback" not in err
    # Nothing half-written: no temporary file, no torn or unparsable log line, no truncated audio.
    assert not [path.name for path in out.rglob("*") if path.name.endswith(".tmp")]
    for path in out.glob("*.jsonl"):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"torn last line in {path.name}"
        assert all(json.loads(line) for line in data.splitlines()), path.name
    expected = _files(fault_reference)
    for name, data in _files(out).items():
        assert data == expected[name], f"{name} was left truncated"

    monkeypatch.undo()  # the disk has space again
    assert main(command) == 0
    assert _files(out) == expected
    for name in ("metadata.jsonl", "errors.jsonl", "summary.json"):
        assert (out / name).read_bytes() == (fault_reference / name).read_bytes(), name


@pytest.mark.parametrize("layout", ["parent is a file", "output is a file"])
def test_output_path_through_a_file_is_refused_with_a_clear_message(tmp_path, capsys, layout):
    from tts.cli import main
    from tts.errors import OutputError

    manifest = _write_jsonl(tmp_path / "m.jsonl", GOOD_LINES[:1])
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    out = blocker / "out" if layout == "parent is a file" else blocker
    with pytest.raises(OutputError, match="not a directory while writing .*notes.txt.*: part of this path is a file"):
        run_batch(manifest, out, progress=False)
    assert main(["batch", str(manifest), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"timbre batch: error: not a directory while writing {out / 'audio'}" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_two_shards_give_the_same_files_as_one_process(tmp_path):
    records = GOOD_LINES + [{**GOOD_LINES[0], "id": "u5", "text": "One more line."}]
    manifest = _write_jsonl(tmp_path / "m.jsonl", records + ["{broken"])
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_batch(manifest, single, progress=False)
    first = run_batch(manifest, sharded, shard_index=0, num_shards=2, progress=False)
    second = run_batch(manifest, sharded, shard_index=1, num_shards=2, progress=False)
    assert (first.assigned, second.assigned) == (3, 2)  # positions 0, 2, 4 and 1, 3
    assert not (sharded / "metadata.jsonl").exists() and (sharded / "metadata.rank1.jsonl").exists()
    merged = merge_outputs(sharded, manifest)
    assert merged.items == 5 and merged.errors == 1
    assert _files(single) == _files(sharded)
    assert (single / "metadata.jsonl").read_bytes() == (sharded / "metadata.jsonl").read_bytes()
    assert (single / "errors.jsonl").read_bytes() == (sharded / "errors.jsonl").read_bytes()


def test_shard_arguments_are_checked(tmp_path):
    with pytest.raises(TimbreError, match="shard"):
        run_batch(Manifest(), tmp_path, shard_index=2, num_shards=2, progress=False)


def test_quality_gate_retries_with_a_derived_seed_then_drops(tmp_path, monkeypatch):
    attempts: list[int] = []

    def fake_score(self, entry, audio):
        attempts.append(len(attempts))
        rejected = entry.id == "u2" or len(attempts) == 1
        return {"wer_whisper_tiny_en": 0.9 if rejected else 0.0}, ("WER 0.90 > 0.3" if rejected else None)

    monkeypatch.setattr(QualityGate, "score", fake_score)
    manifest = _write_jsonl(tmp_path / "m.jsonl", GOOD_LINES[:2])
    out = tmp_path / "out"
    summary = run_batch(manifest, out, gate=QualityGate(max_wer=0.3, retries=2), progress=False)
    assert (summary.written, summary.failed) == (1, 1)
    (item,) = read_metadata(out)
    assert item.extra["attempt"] == 1 and item.seed == derive_seed(default_seed("u1"), 1)
    assert item.extra["wer_whisper_tiny_en"] == 0.0
    (error,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert error["id"] == "u2" and error["stage"] == "quality" and "attempt 3" in error["reason"]


@pytest.mark.slow
def test_real_wer_gate_passes_clear_speech(tmp_path):
    pytest.importorskip("faster_whisper")
    manifest = _write_jsonl(tmp_path / "m.jsonl", [{"id": "w1", "text": "Good morning, everyone.", "voice": "flite:rms"}])
    summary = run_batch(manifest, tmp_path / "out", gate=QualityGate(max_wer=0.5), progress=False)
    assert summary.written == 1
    assert read_metadata(tmp_path / "out")[0].extra["wer_whisper_tiny_en"] <= 0.5


def test_cli_batch_command(tmp_path, capsys):
    from tts.cli import main

    manifest = _write_jsonl(tmp_path / "m.jsonl", [GOOD_LINES[0], BAD_LINES[0][0]])
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "1 items" in capsys.readouterr().out
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), "--merge-only"]) == 0
    assert main(["batch", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out")]) == 2


def test_module_entry_point_exists():
    assert callable(batch_module.main)


# ---------------------------------------------------------------------------------------------------------
# The corpus recipe


def test_corpus_plan_is_deterministic_extends_and_uses_training_material_only():
    from tts.data.corpus_build import plan_corpus, plan_stats
    from tts.data.sentences import split_of
    from tts.data.voicebank import heldout_voice_ids, training_voice_ids
    from tts.evaluation.testsets import TRAINING_EXCLUDED_VOICES, overlaps_heldout

    small, large = plan_corpus(0.1, seed=0), plan_corpus(0.3, seed=0)
    assert small == plan_corpus(0.1, seed=0) and large[: len(small)] == small
    assert plan_corpus(0.1, seed=1) != small
    stats = plan_stats(large)
    assert set(stats["styles"]) == {"neutral", "happy", "sad", "angry", "surprised", "calm", "whisper"}
    voices = {entry.voice for entry in large}
    assert voices <= set(training_voice_ids())
    assert not voices & (set(TRAINING_EXCLUDED_VOICES) | set(heldout_voice_ids()))
    assert len(voices) > 150  # voices come in shuffled cycles: few repeats before every voice had a turn
    assert all(split_of(entry.text) == "train" and not overlaps_heldout(entry.text) for entry in large)
    assert len({entry.text.lower() for entry in large}) == len(large)
    assert len({entry.id for entry in large}) == len(large)


def test_corpus_plan_only_writes_the_manifest(tmp_path, capsys):
    from tts.cli import main

    assert main(["corpus", "build", "--hours", "0.05", "--out", str(tmp_path), "--plan-only"]) == 0
    record = json.loads((tmp_path / "corpus.json").read_text())
    manifest = parse_manifest(tmp_path / "manifest.jsonl")
    assert not manifest.errors and len(manifest.entries) == record["plan"]["lines"] > 10
    assert not (tmp_path / "audio").exists()
    with pytest.raises(TimbreError, match="hours"):
        from tts.data.corpus_build import plan_corpus

        plan_corpus(0)


def test_items_give_their_spoken_words_without_the_g2p():
    from tts.data.corpus import CorpusItem

    item = CorpusItem("audio/a.flac", "Hi, you.", "flite:rms", phonemes="h ˈ aɪ | , | j ˈ uː | .")
    words = item.words()
    assert [w.phonemes for w in words] == [("h", "ˈ", "aɪ"), (), ("j", "ˈ", "uː"), ()]
    assert [w.text for w in words if w.is_punctuation] == [",", "."]
    assert CorpusItem("audio/a.flac", "x", "v").words() == []


def test_pack_corpus_reencodes_to_opus_in_parts_and_resumes(tmp_path):
    import numpy as np

    from tts.audio import load_audio
    from tts.data.corpus import pack_corpus

    source = tmp_path / "corpus"
    (source / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for index in range(3):
        tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(24000) / 24000) + 0.01 * rng.standard_normal(24000)
        sf.write(source / "audio" / f"u{index}.flac", tone.astype(np.float32), 24000)
        lines.append(json.dumps({"file_name": f"audio/u{index}.flac", "text": "a", "voice_id": "v", "duration": 1.0}))
    (source / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    summary = pack_corpus(source, tmp_path / "packed", parts=2)
    assert summary["items"] == 3 and summary["seconds"] == 3.0
    assert sorted(p.name for p in (tmp_path / "packed").iterdir()) == ["metadata.jsonl", "part1", "part2"]
    items = read_metadata(tmp_path / "packed")
    assert [item.file_name for item in items] == ["audio/u0.ogg", "audio/u1.ogg", "audio/u2.ogg"]
    decoded = load_audio(tmp_path / "packed" / "part2" / "audio" / "u1.ogg")
    assert abs(decoded.duration - 1.0) < 0.01
    first = (tmp_path / "packed" / "part1" / "audio" / "u0.ogg").stat().st_mtime_ns
    pack_corpus(source, tmp_path / "packed", parts=2)  # a rerun keeps what is encoded
    assert (tmp_path / "packed" / "part1" / "audio" / "u0.ogg").stat().st_mtime_ns == first


def test_batch_rows_and_zip_of_a_finished_folder(tmp_path):
    import zipfile

    from tts.data.batch import batch_rows, zip_folder

    out = tmp_path / "out"
    (out / "audio").mkdir(parents=True)
    (out / "audio" / "a.flac").write_bytes(b"x")
    (out / "metadata.jsonl").write_text(json.dumps({"id": "a", "voice_id": "flite:rms", "style": "neutral", "duration": 1.5, "text": "hi"}) + "\n")
    (out / "errors.jsonl").write_text(json.dumps({"line": 1, "id": "bad", "reason": "empty text"}) + "\n")
    rows = batch_rows(out / "metadata.jsonl", out / "errors.jsonl", {"a": 2})
    assert rows == [[1, "bad", "error", "", "", 0.0, "empty text"], [2, "a", "ok", "flite:rms", "neutral", 1.5, "hi"]]
    archive = zip_folder(out, tmp_path / "out.zip")
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["audio/a.flac", "errors.jsonl", "metadata.jsonl"]


def test_reference_clip_voices_are_said_by_the_chosen_engine_and_a_new_engine_makes_them_again(tmp_path,
                                                                                                 monkeypatch):
    from tts import synthesis
    from tts.data import manifest as manifest_module
    from tts.dit import engine as dit_module
    from tests.test_dit_engine import tiny_dit_engine
    from tests.test_synthesis import tiny_engine

    flite_reason = speaker_status().get("flite")
    if flite_reason:
        pytest.skip(flite_reason)
    from tts.data.speakers import get_speaker

    transcript = "Please call Stella and ask her to bring these things with her."
    get_speaker("flite").synthesize(transcript, "rms").audio.save(tmp_path / "ref.wav")
    ar_engine, dit_engine = tiny_engine(), tiny_dit_engine()
    monkeypatch.setattr(synthesis, "load_engine", lambda **_: ar_engine)
    monkeypatch.setattr(dit_module, "load_dit_engine", lambda **_: dit_engine)
    asked = []
    monkeypatch.setattr(manifest_module, "clip_engine_unavailable", lambda engine: asked.append(engine))
    lines = [
        {"id": "c1", "text": "Good morning to you.", "voice": "ref.wav", "seed": 1},
        {"id": "c2", "text": "Where is the station?", "voice": "missing.wav"},
        {"id": "b1", "text": "Good morning.", "voice": "flite:slt"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "out"
    run_batch(parse_manifest(tmp_path / "m.jsonl"), out)  # the default: synthesize's, dit
    items = read_metadata(out)
    assert [item.engine for item in items] == ["dit", "flite"] and asked == ["dit"]
    assert items[0].voice_id == str((tmp_path / "ref.wav").resolve())
    assert items[0].extra["voice_recipe"]["kind"] == "clip" and items[0].duration > 0.1
    errors = (out / "errors.jsonl").read_text()
    assert "c2" in errors and "not found" in errors
    first = (out / "audio" / "c1.flac").read_bytes()
    again = run_batch(parse_manifest(tmp_path / "m.jsonl"), out)
    assert (again.already_done, again.written) == (2, 0)  # the same engine: nothing to do
    other = run_batch(parse_manifest(tmp_path / "m.jsonl", engine="ar"), out, engine="ar")
    assert (other.already_done, other.written) == (1, 1)  # the clip line is made again, the base voice's kept
    assert [item.engine for item in read_metadata(out)] == ["ar", "flite"] and asked == ["dit", "dit", "ar"]
    assert (out / "audio" / "c1.flac").read_bytes() != first
    with pytest.raises(ValueError, match="dit, ar"):
        run_batch(parse_manifest(tmp_path / "m.jsonl"), tmp_path / "bad", engine="base+convert")
