"""Test sets: meta-file parsing (bad lines included), the held-out set's definition, building with a cache."""

from __future__ import annotations

import numpy as np
import pytest

from tts.audio import Audio
from tts.errors import TimbreError
from tts.evaluation import testsets
from tts.evaluation.testsets import (
    HELDOUT_VOICES,
    TestItem,
    build_testset,
    builtin_set_dir,
    heard_by,
    load_testset,
    overlaps_heldout,
    parse_meta,
    read_meta,
    write_meta,
)

META = """\
# a comment line
utt1|Prompt text one.|prompts/a.wav|Target text one.

utt2|Prompt two.|/abs/b.wav|Target two.|truth/b.wav
too|few|fields
utt3|Prompt.||Target with no wav.
utt1|Duplicate id.|prompts/c.wav|Target.
utt4|a|b|c|d|e
utt5|Prompt five.|prompts/e.wav|Target five, with a comma.
"""


def test_parse_meta_keeps_good_lines_and_records_bad_ones(tmp_path):
    testset = parse_meta(META, root=tmp_path, name="t")
    assert [item.utt for item in testset.items] == ["utt1", "utt2", "utt5"]
    assert testset.items[0].prompt_wav == tmp_path / "prompts" / "a.wav"
    assert testset.items[1].prompt_wav.as_posix() == "/abs/b.wav"
    assert testset.items[1].reference_wav == tmp_path / "truth" / "b.wav"
    assert testset.items[2].target_text == "Target five, with a comma."
    reasons = {error.line_number: error.reason for error in testset.errors}
    assert set(reasons) == {5, 6, 7, 8}
    assert "found 3" in reasons[5]
    assert "prompt_wav" in reasons[6]
    assert "duplicate" in reasons[7]
    assert "found 6" in reasons[8]


def test_meta_round_trip(tmp_path):
    items = [
        TestItem("a", "Prompt a.", tmp_path / "p" / "a.wav", "Target a."),
        TestItem("b", "Prompt b.", tmp_path / "p" / "b.wav", "Target b.", tmp_path / "t" / "b.wav"),
    ]
    path = write_meta(items, tmp_path / "meta.lst")
    assert "p/a.wav" in path.read_text().splitlines()[0]
    loaded = read_meta(path)
    assert loaded.items == items and loaded.errors == [] and loaded.source == path


def test_unknown_set_is_a_clear_error(tmp_path):
    with pytest.raises(TimbreError, match="heldout-en"):
        load_testset(tmp_path / "nothing-here.lst")


def test_heldout_texts_are_forty_distinct_and_cover_the_cases():
    texts = testsets.HELDOUT_TEXTS
    assert len(texts) == 40 and len(set(texts)) == 40
    assert any("?" in t for t in texts) and any("!" in t for t in texts) and any("$" in t for t in texts)
    assert any(any(ch.isdigit() for ch in t) for t in texts)
    assert max(len(t.split()) for t in texts) >= 28 and min(len(t.split()) for t in texts) <= 5
    assert not set(texts) & set(testsets.HELDOUT_PROMPT_TEXTS)


def test_overlaps_heldout_ignores_case_and_punctuation():
    target = testsets.HELDOUT_TEXTS[10]
    assert overlaps_heldout(target.upper().replace(",", ""))
    assert overlaps_heldout("Intro words. " + target + " More words after.")
    assert not overlaps_heldout("A sentence that nobody held out.")
    assert not overlaps_heldout("Turn left at the")  # part of a held-out text is not the text
    assert overlaps_heldout("Well. Turn right near our bakery!")  # the edit stage's new texts are held out too


def test_heldout_plan_uses_only_heldout_voices_evenly():
    plan = testsets._heldout_plan()
    assert len(plan) == 40
    counts = {voice: sum(p.voice == voice for p in plan) for voice in HELDOUT_VOICES}
    assert set(counts.values()) == {10}
    assert len({p.voice.split(":")[0] for p in plan}) == 4  # four different synthesizers


def test_build_testset_makes_prompts_once_and_caches(tmp_path):
    calls = []

    def fake_prompt(voice_id: str, text: str) -> Audio:  # a test double for the base speakers
        calls.append((voice_id, text))
        return Audio(np.full(24_000, 0.1, dtype=np.float32))

    testset = build_testset("smoke", cache_dir=tmp_path, synthesize=fake_prompt)
    assert len(testset) == 3 and testset.errors == []
    assert all(item.prompt_wav.is_file() for item in testset.items)
    assert all(voice == "flite:awb" for voice, _ in calls) and len(calls) == 2
    again = build_testset("smoke", cache_dir=tmp_path, synthesize=fake_prompt)
    assert len(calls) == 2 and [i.utt for i in again.items] == [i.utt for i in testset.items]
    assert builtin_set_dir("smoke", tmp_path) == testset.source.parent
    assert builtin_set_dir("smoke", tmp_path) != builtin_set_dir("heldout-en", tmp_path)


def test_limit():
    testset = parse_meta("a|p|x.wav|t\nb|p|y.wav|t\n")
    assert [i.utt for i in testset.limit(1).items] == ["a"]
    with pytest.raises(ValueError):
        testset.limit(0)


def test_training_exclusions_cover_the_heldout_speakers():
    assert set(HELDOUT_VOICES) < set(testsets.TRAINING_EXCLUDED_VOICES)
    assert "flite:slt" in testsets.TRAINING_EXCLUDED_VOICES  # the same person as festival's slt voice


def test_a_voice_is_heard_through_its_person_and_the_pseudo_speakers_made_of_it():
    assert heard_by("piper:joe", ["piper:joe"]) and not heard_by("flite:awb", ["piper:joe"])
    # festival's and flite's slt are one recorded person
    assert heard_by("flite:slt", ["festival:cmu_us_slt_arctic_hts"])
    assert heard_by("festival:cmu_us_slt_arctic_hts", ["flite:slt"])
    assert heard_by("pw0009", ["flite:rms"])  # a warp of flite:rms
    assert heard_by("pk0150", ["kokoro:jm_kumo"]) and heard_by("pk0150", ["kokoro:jf_nezumi"])  # a blend of both
    assert not heard_by("pk0150", ["piper:joe"]) and not heard_by("piper:joe", [])


def test_built_in_sets_name_each_prompt_voice(tmp_path):
    testset = build_testset("smoke", cache_dir=tmp_path,
                            synthesize=lambda voice, text: Audio(np.full(24_000, 0.1, dtype=np.float32)))
    assert [item.prompt_voice for item in testset.items] == ["flite:awb"] * 3
    assert parse_meta("a|p|x.wav|t\n").items[0].prompt_voice is None  # a plain meta file does not say
    (testset.source.parent / testsets.VOICES_FILE).write_text("[1, 2]")
    with pytest.raises(TimbreError, match="utterance id -> voice id"):
        read_meta(testset.source)
