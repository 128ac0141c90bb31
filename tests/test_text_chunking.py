"""Chunking long text for synthesis, and the input checks of the front end's entry points."""

from __future__ import annotations

import random
import time

import pytest

from tts.errors import TextError
from tts.text import MAX_TEXT_CHARS, chunk_text, prepare_text, split_for_synthesis
from tts.text.chunking import split_head, split_sentences


def _check_chunks(text: str, chunks: list[str], max_chars: int) -> None:
    assert " ".join(chunks).split() == text.split()  # no word lost, added, cut or reordered
    for chunk in chunks:
        assert chunk and chunk == chunk.strip()
        assert len(chunk) <= max_chars or len(chunk.split()) == 1, (len(chunk), chunk)


def _random_text(seed: int, n_chars: int) -> str:
    rng = random.Random(seed)
    words = []
    while sum(len(w) + 1 for w in words) < n_chars:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12)))
        word += rng.choice(["", "", "", "", ",", ".", "?", "!", ";", ":", " \u2014", "..."])
        words.append(word.capitalize() if rng.random() < 0.1 else word)
    return " ".join(words)[:n_chars]


def test_sentences_are_packed_whole_while_they_fit() -> None:
    text = "First one. Second one! Third one? Fourth one."
    assert chunk_text(text, 25) == ["First one. Second one!", "Third one? Fourth one."]
    assert chunk_text(text, 250) == [text]
    assert chunk_text(text, 12) == ["First one.", "Second one!", "Third one?", "Fourth one."]


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    text = "Dr. Smith paid $3.50 for it. Mrs. J. Doe, e.g. her, did not."
    assert split_sentences(text) == ["Dr. Smith paid $3.50 for it.", "Mrs. J. Doe, e.g. her, did not."]


def test_paragraph_breaks_end_sentences() -> None:
    assert split_sentences("A title\n\nThe body text.") == ["A title", "The body text."]


def test_long_sentence_splits_at_clauses_first() -> None:
    text = ("This sentence, which is rather long, keeps going; it has clauses \u2014 many of them \u2014 "
            "and then it just continues without further punctuation for a very long time until the end.")
    chunks = chunk_text(text, 50)
    _check_chunks(text, chunks, 50)
    assert chunks[0] == "This sentence, which is rather long, keeps going;"
    assert chunks[1] == "it has clauses \u2014 many of them \u2014"
    # the clause without punctuation is split at words into parts of about even length
    tail_lengths = [len(c) for c in chunks[2:]]
    assert max(tail_lengths) - min(tail_lengths) < 20


def test_punctuation_stays_with_its_word() -> None:
    text = "Well, well, well; here: we are! Are we? Yes..."
    for max_chars in (5, 8, 12, 20):
        chunks = chunk_text(text, max_chars)
        _check_chunks(text, chunks, max_chars)
        assert all(not chunk.startswith((",", ";", ":", "!", "?", ".")) for chunk in chunks)


def test_word_longer_than_the_bound_is_its_own_chunk() -> None:
    long_word = "x" * 300
    assert chunk_text(f"a {long_word} b", 50) == ["a", long_word, "b"]


def test_whitespace_is_collapsed_and_empty_text_gives_no_chunks() -> None:
    assert chunk_text("  one\t two \n\n three  ", 250) == ["one two three"]
    assert chunk_text("  one\t two \n\n three  ", 9) == ["one two", "three"]
    assert chunk_text("", 10) == [] and chunk_text(" \n ", 10) == []


@pytest.mark.parametrize("max_chars", [0, -5, 2.5, True])
def test_bad_bound_is_refused(max_chars: object) -> None:
    with pytest.raises(TextError, match="max_chars"):
        chunk_text("text", max_chars)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_chars", [40, 100, 250])
def test_ten_thousand_characters(max_chars: int) -> None:
    text = _random_text(seed=max_chars, n_chars=10_000)
    start = time.perf_counter()
    chunks = chunk_text(text, max_chars)
    assert time.perf_counter() - start < 2.0
    _check_chunks(text, chunks, max_chars)
    assert len(chunks) >= len(text) // max_chars
    # packing: two neighbours never fit together in one chunk
    assert all(len(a) + 1 + len(b) > max_chars for a, b in zip(chunks, chunks[1:]))


def test_split_for_synthesis_drops_unspeakable_chunks() -> None:
    assert split_for_synthesis("Hello there. \U0001f389\U0001f389\U0001f389 Goodbye now.", max_chars=13) == [
        "Hello there.", "Goodbye now."]


@pytest.mark.parametrize("text", ["", "   \n\t ", "\U0001f600\U0001f389", "!!! ... ???"])
def test_nothing_to_say_is_refused(text: str) -> None:
    with pytest.raises(TextError) as error:
        prepare_text(text)
    assert "empty" in str(error.value) or "Nothing speakable" in str(error.value)
    with pytest.raises(TextError):
        split_for_synthesis(text)


def test_over_long_text_is_refused_at_once() -> None:
    text = "word " * 20_000  # 100,000 characters
    start = time.perf_counter()
    for entry_point in (prepare_text, split_for_synthesis):
        with pytest.raises(TextError, match="20,000") as error:
            entry_point(text)
        assert "100,000" in str(error.value) and "split" in str(error.value).lower()
    assert time.perf_counter() - start < 0.5  # refused before any normalization or phonemization


def test_prepare_text_honours_its_own_bound() -> None:
    with pytest.raises(TextError, match="at most 10"):
        prepare_text("a longer sentence", max_chars=10)
    assert MAX_TEXT_CHARS == 20_000


def test_non_string_is_refused() -> None:
    with pytest.raises(TextError, match="string"):
        prepare_text(None)  # type: ignore[arg-type]


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    given = None

if given is not None:

    @settings(max_examples=50, deadline=2000)
    @given(st.text(max_size=400), st.integers(min_value=1, max_value=80))
    def test_chunk_text_never_loses_words(text: str, max_chars: int) -> None:
        _check_chunks(text, chunk_text(text, max_chars), max_chars)


# ---------------------------------------------------------------------------------------------------------
# split_head: the short first piece of a stream


@pytest.mark.parametrize(("text", "head"), [
    ("Hello there. How are you today? Fine, thanks!", "Hello there."),  # the first sentence, where it fits
    ("Hi. We walked along the harbour, counting the boats.", "Hi."),  # however short
    ("Well, we walked along the harbour for an hour and then some more.", "Well, we walked along the harbour"),
    ("When the storm passed, the children ran outside to splash in the puddles.", "When the storm passed,"),
    ("Elena ordered soup, a salad, and a glass of orange juice for lunch.", "Elena ordered soup, a salad,"),
    ("Why did the lights go out in the middle of the concert?", "Why did the lights go out"),  # a phrase start
    ("Doctor Patel will see you in about fifteen minutes.", "Doctor Patel will see you"),  # not between "in about"
    ("The train from Chicago arrived seventeen minutes late because of the snow.",
     "The train from Chicago arrived seventeen minutes late"),  # "The train" alone is too short: up to 1.5 x
    ("After three long years of careful saving, Thomas bought the small blue boat.",
     "After three long years of careful saving,"),  # a clause end just over the bound
    ("Grandmother's enormous copper kettle whistled loudly yesterday morning again.",
     "Grandmother's enormous copper kettle"),  # no break at all: the most words that fit
])
def test_split_head_cuts_at_the_first_natural_break(text: str, head: str) -> None:
    cut_head, rest = split_head(text, 40)
    assert cut_head == head
    assert (cut_head + " " + rest).split() == text.split()


@pytest.mark.parametrize("text", [
    "Turn left at the bakery.",  # fits
    "A ticket to the museum costs twelve dollars for adults.",  # the rest would be two words
    "Supercalifragilisticexpialidociousness-and-then-some is long.",  # no head of two words fits
    "",
])
def test_split_head_keeps_what_it_should_not_cut(text: str) -> None:
    assert split_head(text, 40) == (" ".join(text.split()), "")


@pytest.mark.parametrize("seed", range(20))
def test_split_head_never_loses_or_cuts_a_word(seed: int) -> None:
    text = _random_text(seed, 300)
    head, rest = split_head(text, 40)
    assert (head + " " + rest).split() == text.split()
    assert head and (not rest or len(rest.split()) >= 3)
    assert not rest or len(head.split()) >= 2 or head == split_sentences(text)[0]
    assert len(head) <= 60 or len(head.split()) <= 1 or not rest


def test_split_head_refuses_a_bad_bound() -> None:
    with pytest.raises(TextError, match="max_chars"):
        split_head("Some words here.", 0)
