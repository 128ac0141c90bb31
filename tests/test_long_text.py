"""The long-text check (`tts.evaluation.long_text`): sentences skipped or repeated in a transcript are found,
ordinary recognition errors are not; and the shipped `ar` engine says a 2,000-character paragraph with every
sentence once (Whisper tiny.en listening)."""

from __future__ import annotations

import pytest

from tts.engines import engine_status
from tts.evaluation.long_text import LongTextReport, paragraph, sentence_coverage
from tts.text.chunking import split_sentences

TEXT = ("The morning train was late again. Nobody on the platform seemed surprised. A man in a grey coat read his "
        "newspaper slowly. Two children counted the pigeons on the roof. Finally the train arrived at the station.")


def _judged(transcript: str) -> tuple[list[int], list[int]]:
    results, _ = sentence_coverage(TEXT, transcript)
    return [r.index for r in results if r.skipped], [r.index for r in results if r.repeated]


def test_paragraph_is_long_enough_made_of_held_out_sentences():
    from tts.evaluation.testsets import heldout_texts

    text = paragraph(2000)
    assert 2000 <= len(text) < 2000 + max(map(len, heldout_texts())) + 1
    assert text.startswith(heldout_texts()[0]) and paragraph(10) == heldout_texts()[0]
    with pytest.raises(ValueError):
        paragraph(0)


def test_a_faithful_transcript_with_recognition_errors_passes():
    sentences = split_sentences(TEXT)
    assert _judged(TEXT) == ([], [])
    noisy = TEXT.replace("grey", "gray").replace("pigeons", "pigeon").replace("Finally", "Final").lower()
    assert _judged(noisy) == ([], [])
    results, wer = sentence_coverage(TEXT, noisy)
    assert 0 < wer < 0.15 and len(results) == len(sentences)
    assert all(r.words == len(s.split()) for r, s in zip(results, sentences))


def test_a_skipped_sentence_is_found():
    sentences = split_sentences(TEXT)
    without = " ".join(sentences[:2] + sentences[3:])
    assert _judged(without) == ([2], [])
    # A sentence said badly is heard as (wrong) words: misheard, not skipped; a sentence cut short is skipped only
    # when most of it is missing.
    results, _ = sentence_coverage(TEXT, " ".join(sentences[:4] + ["Fine lee the rain a rived."]))
    assert not results[4].skipped and results[4].heard < 0.34 and results[4].missing < 0.34
    assert _judged(" ".join(sentences[:4] + ["Finally the train."])) == ([], [])
    assert _judged(" ".join(sentences[:4] + ["Finally."])) == ([4], [])


def test_a_repeated_sentence_is_found_even_misheard():
    sentences = split_sentences(TEXT)
    again = " ".join(sentences[:2] + [sentences[1].replace("seemed", "seem")] + sentences[2:])
    assert _judged(again) == ([], [1])
    doubled_last = TEXT + " " + sentences[-1]
    assert _judged(doubled_last) == ([], [4])


def test_the_report_says_pass_or_fail_and_writes_its_files(tmp_path):
    sentences = split_sentences(TEXT)
    results, wer = sentence_coverage(TEXT, " ".join(sentences[1:]))
    report = LongTextReport(TEXT, " ".join(sentences[1:]), results, wer)
    assert report.verdict == "FAIL" and [s.index for s in report.skipped] == [0]
    report.write(tmp_path)
    assert "| 1 |" in (tmp_path / "report.md").read_text() and "skipped" in (tmp_path / "report.md").read_text()
    assert '"verdict": "FAIL"' in (tmp_path / "report.json").read_text()


@pytest.mark.usefixtures("single_thread")
@pytest.mark.skipif(not next(s for s in engine_status() if s.name == "ar").available,
                    reason="the ar engine's checkpoints are not shipped")
def test_the_shipped_engine_says_a_2000_character_paragraph_with_every_sentence_once():
    from tests.test_shipped_engine import held_out_prompt
    from tts.evaluation.long_text import evaluate_long_text
    from tts.synthesis import load_engine, synthesize

    engine = load_engine()
    voice, _ = held_out_prompt()
    report, audio = evaluate_long_text(lambda text: synthesize(text, voice, seed=0, models=engine), 2000)
    assert len(report.text) >= 2000 and len(report.sentences) >= 30
    assert report.verdict == "PASS", report.to_markdown()
    words = sum(s.words for s in report.sentences)
    assert 0.2 * words < audio.duration < 0.8 * words  # about the time its words need


def test_eval_long_refuses_bad_settings_before_any_work(capsys):
    from tts.cli import main

    assert main(["eval-long", "--engine", "nope"]) == 2
    assert "unknown engine 'nope'" in capsys.readouterr().err
    assert main(["eval-long", "--chars", "0"]) == 2
    assert "--chars must be at least 1" in capsys.readouterr().err
