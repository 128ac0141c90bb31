"""Hostile text for the front end: arbitrary unicode (controls, bidi marks, emoji, combining marks, very long
words and numbers, punctuation only) through `normalize_text`, `chunk_text`, `split_for_synthesis` and
`prepare_text`, and inline style tags and emotion mixtures through `tts.style`. Each returns a result that
keeps its promises or raises `TextError` (`StyleTagError` at the tag's position) or `TimbreError`; time
grows linearly with the length of the text.
"""

from __future__ import annotations

import re
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzzing import FUZZ
from tts.data.styles import STYLES
from tts.errors import TextError, TimbreError
from tts.style import (
    CONTROL_RANGES,
    NEUTRAL_STYLE,
    Style,
    StyleTagError,
    escape_style_text,
    parse_style_tags,
    strip_style_tags,
)
from tts.text import (
    MAX_TEXT_CHARS,
    PHONEME_TABLE,
    chunk_text,
    normalize_text,
    prepare_text,
    split_for_synthesis,
)

_TRICKY = [
    "Dr.", "St.", "Mr.", "e.g.", "U.S.A.", "Henry", "VIII", "I", "Chapter", "IV", "$", "€", "£", "%", "#", "@",
    "www.", "https://", ".com", "a.b", "x@y.io", "file.pdf", "-", "--", "\u2014", "\u2013", "...", "\u2026", "'",
    '"', "(", ")", "[", "/", "&", "+", "=", "~", "<", "\u00b0", "\u00b0C", "km", "mph", "s", "in", "M", "k", "bn",
    "st", "th", "'s", "a.m.", "p.m.", "Jan", "of", "USD", "\u00bd", "\u00b2", "\u00d7", "\u00a7", "\u0301",
    "\u200b", "\u200f", "\u202e", "\u00ad", "\ufeff", "\U0001f600", "\U0001f44d\U0001f3fd", "\x00", "\x07", "\x1b",
    "\x85", "\u2028", "\u0663", "\U0001d7cf", "\u2460", "\u216b", "\u01c5", "\u00df", "\u0130", "\ufb01",
    "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\ud800", "\udfff",
]
_any_char = st.characters(codec=None, exclude_categories=("Cs",))
_token = st.one_of(
    st.sampled_from(_TRICKY),
    st.from_regex(r"[0-9]{1,60}", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,6}([.,:/][0-9]{1,4}){0,3}", fullmatch=True),
    st.text(_any_char, min_size=1, max_size=8),
)
_separator = st.sampled_from(["", " ", "  ", "\n", "\n\n", "\t", ", ", ". ", "-", "/", ".", ":"])
texts = st.one_of(
    st.lists(st.tuples(_token, _separator), max_size=40).map(lambda pairs: "".join(a + b for a, b in pairs)),
    st.text(_any_char, max_size=200),
)

_SPOKEN = re.compile(r"(?:[^\W_]|['\-])+")  # a spoken word: letters/digits of any script, apostrophes, hyphens
_MARK = re.compile(r"\.\.\.|[.,?!;:]")


@settings(FUZZ, max_examples=500)
@given(texts)
@example("1" * 5000)  # int() refuses more than 4300 digits: crashed with ValueError
@example("$" + "9" * 4400 + ".50")
@example("1" * 4400 + "th")
@example("\u202e\u0301\x00\x85\u2028")
def test_normalize_text_gives_words_and_prosody_marks_only(text):
    normalized = normalize_text(text)
    assert normalized == normalized.strip() and "  " not in normalized
    for token in normalized.split():
        # each token is a word, a word with its trailing marks, or marks alone
        assert re.fullmatch(rf"(?:{_SPOKEN.pattern})?(?:{_MARK.pattern})*", token), (token, normalized)
    assert not normalized.startswith(tuple(".,?!;:")), "no punctuation before the first word"


def _best_of_three(text: str) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        normalize_text(text)
        times.append(time.perf_counter() - start)
    return min(times)


@settings(FUZZ, max_examples=15, deadline=None)
@given(st.lists(st.sampled_from([*"a A1.,-'$%@/:#\u0301\U0001f600\n", "Dr. ", "St. ", "1,111"]), min_size=1, max_size=5)
       .map("".join))
# Each of these took quadratic time (a 20,000-character text: up to 30 s) before the patterns were anchored.
@example(" ")  # _PAUSE_CHARS/_PUNCT_RUN rescanned a run of spaces from every position
@example("a-")  # _FILE_NAME/_EMAIL/_URL backtracked from every word boundary of a long token
@example("a.")
@example("1")  # _UNIT/_PERCENT restarted at every digit
@example(",111")  # thousands groups restarted at every comma (_NUMBER, _ORDINAL)
@example("Dr. ")  # every "Dr." searched the whole text before it
@example("\U0001f600")  # emoji become spaces, which the pause pattern then rescanned
def test_normalize_time_grows_linearly(unit):
    # 8 times the text must take well under 8**2 = 64 times as long (linear: ~8; measured 7.9-8.5).
    short, long = [(unit * (size // len(unit) + 1))[:size] for size in (1000, 8000)]
    ratio = _best_of_three(long) / max(_best_of_three(short), 1e-4)
    assert ratio < 24, f"{unit!r}: 8x the text took {ratio:.0f}x the time"


@settings(FUZZ, max_examples=500)
@given(texts, st.integers(1, 300))
@example("a" * 400 + " b", 10)  # a word longer than max_chars is a chunk of its own
@example("\u2028x\x85y\n\n\u3000z", 1)
def test_chunk_text_keeps_every_word_in_order_within_the_bound(text, max_chars):
    chunks = chunk_text(text, max_chars)
    assert " ".join(chunks).split() == text.split(), "no word lost, added, cut or reordered"
    for chunk in chunks:
        assert chunk and chunk == chunk.strip()
        assert len(chunk) <= max_chars or len(chunk.split()) == 1, (max_chars, chunk)


@settings(FUZZ, max_examples=300)
@given(texts, st.integers(1, 300))
@example("\U0001f600 Hello. \U0001f600\U0001f600. World!", 8)  # unspeakable chunks between speakable ones
@example("   ", 250)
def test_split_for_synthesis_drops_only_unspeakable_chunks(text, max_chars):
    try:
        chunks = split_for_synthesis(text, max_chars)
    except TextError as error:
        assert "empty" in str(error) or "Nothing speakable" in str(error) or "characters long" in str(error)
        assert not any(normalize_text(word) for word in text.split()), "a speakable word was dropped"
        return
    kept = iter(" ".join(chunks).split())
    speakable = [word for word in text.split() if normalize_text(word)]
    assert all(word in kept for word in speakable), "every speakable word is kept, in order"
    assert all(normalize_text(chunk) for chunk in chunks)
    assert all(len(chunk) <= max_chars or len(chunk.split()) == 1 for chunk in chunks)


@settings(FUZZ, max_examples=200)
@given(texts)
@example("\U0001f600\U0001f600")  # emoji only
@example("\x00\x1b[31m")
@example("x" * (MAX_TEXT_CHARS + 1))
def test_prepare_text_encodes_consistently_or_raises_text_error(text):
    try:
        prepared = prepare_text(text)
    except TextError as error:
        reason = str(error)
        too_long = "characters long" in reason and len(text) > MAX_TEXT_CHARS
        assert ("empty" in reason and not text.strip()) or too_long or "Nothing speakable" in reason, reason
        return
    assert prepared.text == text and prepared.normalized == normalize_text(text)
    assert prepared.ids == tuple(PHONEME_TABLE.encode(prepared.words)) and prepared.ids
    assert any(word.phonemes for word in prepared.words)
    position = 0
    for (start, end), word in zip(prepared.word_spans, prepared.words, strict=True):
        assert position <= start < end <= len(prepared.ids)
        assert end - start == max(len(word.phonemes), 1)
        position = end


# ---------------------------------------------------------------------------------------------------------
# Inline style tags and emotion mixtures (tts.style)

_weight_text = st.one_of(
    st.sampled_from(["0", "1", "0.3", "2", "-1", "nan", "inf", "1e400", "1e-400", "1e308", "1.7e308", "5e-324", "1_0",
                     "", "\u0661", "0x1"]),
    st.floats().map(repr),
)
_emotion_spec = st.lists(
    st.tuples(st.sampled_from([*STYLES, "HAPPY", " sad ", "nope", ""]), st.one_of(st.none(), _weight_text)),
    min_size=1,
    max_size=3,
).map(lambda pairs: "+".join(label + ("" if weight is None else ":" + weight) for label, weight in pairs))
_controls = st.lists(
    st.tuples(st.sampled_from([*CONTROL_RANGES, "pitch-range", "volume", ""]), _weight_text), max_size=3
).map(lambda pairs: " ".join(f"{name}={value}" for name, value in pairs))
_tag = st.one_of(
    st.tuples(st.one_of(st.just(""), _emotion_spec), _controls).map(lambda pair: f"[{' '.join(pair).strip()}]"),
    st.sampled_from([*STYLES, "nope", ""]).map(lambda label: f"[/{label}]"),
    st.sampled_from(["[]", "[", "]", "\\", "\\[", "\\]", "\\\\", "\\x"]),
)
tagged_texts = st.lists(st.one_of(_tag, st.text(_any_char, max_size=8)), max_size=12).map("".join)


def _check_style(style: Style) -> None:
    weights = [weight for _, weight in style.emotion]
    assert all(0 < weight <= 1 for weight in weights) and abs(sum(weights) - 1) < 1e-9, style.emotion
    for name, (low, high) in CONTROL_RANGES.items():
        assert low <= getattr(style, name) <= high


@settings(FUZZ, max_examples=400)
@given(tagged_texts)
@example("[happy:1e308+sad:1e308] hi [/] there")
@example("[happy intensity=nan] [pitch=1e400] x")
@example("\\[happy] [ [/sad]")
def test_style_tags_give_styled_segments_or_an_error_at_the_tag(text):
    try:
        segments = parse_style_tags(text)
    except StyleTagError as error:
        assert text[error.position] == "[" and f"character {error.position + 1}" in str(error), error
        return
    for index, (segment, style) in enumerate(segments):
        assert segment, "no empty segments"
        _check_style(style)
        assert index == 0 or style != segments[index - 1][1], "neighbours with one style are merged"
    assert "".join(segment for segment, _ in segments) == strip_style_tags(text)


@settings(FUZZ, max_examples=300)
@given(_emotion_spec)
@example("happy:1e308+sad:1e308")  # the sum overflowed: weights 0 and 0
@example("happy:1.7e308+happy:1.7e308")  # inf / inf: a NaN weight
@example("happy:5e-324+sad:5e-324")
@example("neutral:5e-324+happy:2.0")  # a share of 0 was kept in the mixture
def test_emotion_mixtures_are_normalized_or_refused(spec):
    try:
        style = Style.parse(spec)
    except TimbreError as error:
        assert "emotion" in str(error) or "weight" in str(error) or "style" in str(error), error
        return
    _check_style(style)


@settings(FUZZ, max_examples=300)
@given(st.text(_any_char, max_size=100))
@example("\\[happy\\] \\\\")
def test_escaped_text_is_read_literally(text):
    assert parse_style_tags(escape_style_text(text)) == ([(text, NEUTRAL_STYLE)] if text else [])
