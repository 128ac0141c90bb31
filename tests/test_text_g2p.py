"""Grapheme-to-phoneme through espeak-ng, the user lexicon, the phoneme table and `prepare_text`."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from tts.errors import TextError
from tts.text import PHONEME_TABLE, Lexicon, PhonemeTable, TextInput, Word, normalize_text, phonemize, prepare_text
from tts.text import g2p
from tts.text.phonemes import table_path

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None and shutil.which("espeak") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")


def _ipa(word: str) -> tuple[str, ...]:
    (only,) = phonemize(word)
    return only.phonemes


# --- G2P ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("word", "phonemes"),
    [
        ("cat", ("k", "ˈ", "æ", "t")),
        ("church", ("tʃ", "ˈ", "ɜː", "tʃ")),
        ("judge", ("dʒ", "ˈ", "ʌ", "dʒ")),
        ("see", ("s", "ˈ", "iː")),
        ("my", ("m", "ˈ", "aɪ")),
        ("go", ("ɡ", "ˈ", "oʊ")),
        ("sing", ("s", "ˈ", "ɪ", "ŋ")),
        ("thin", ("θ", "ˈ", "ɪ", "n")),
        ("car", ("k", "ˈ", "ɑː", "ɹ")),
    ],
)
def test_known_words(word: str, phonemes: tuple[str, ...]) -> None:
    assert _ipa(word) == phonemes


def test_stress_marks_are_elements_where_espeak_puts_them() -> None:
    phonemes = _ipa("understanding")
    assert "ˈ" in phonemes and "ˌ" in phonemes  # primary and secondary stress
    index = phonemes.index("ˈ")
    assert phonemes[index + 1] in {"æ", "ɛ", "ɪ", "ʌ", "ə", "ɑː"}  # espeak marks the stressed vowel
    father = _ipa("father")
    assert "ɑː" in father and "ː" not in father  # the length mark stays on its vowel


def test_word_count_and_order_are_kept() -> None:
    text = "The cat sat on the mat, and I put it on the table out of the room."
    words = phonemize(text)
    assert [w.text for w in words] == re.findall(r"\w+|[.,]", normalize_text(text))
    assert all(w.phonemes for w in words if w.text not in {",", "."})
    # espeak merges "on the" into one word inside a sentence; we still get one Word each
    assert [w.text for w in words[3:5]] == ["on", "the"] and words[4].phonemes[0] == "ð"


def test_punctuation_words_have_no_phonemes() -> None:
    words = phonemize("Wait, what? No; yes: fine! Well...")
    marks = [w for w in words if w.is_punctuation]
    assert [w.text for w in marks] == [",", "?", ";", ":", "!", "..."]
    assert all(w.phonemes == () for w in marks)


def test_phonemize_normalizes_first() -> None:
    texts = [w.text for w in phonemize("Dr. Smith paid $3.50 in 1999.")]
    assert texts == ["Doctor", "Smith", "paid", "three", "dollars", "fifty", "cents", "in", "nineteen",
                     "ninety-nine", "."]


def test_unspeakable_input_gives_no_words() -> None:
    assert phonemize("\U0001f600\U0001f389") == []
    assert phonemize("") == []


def test_cache_hit_does_not_call_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    sentence = "Seven quiet wizards judged the boxing match near the old stone bridge at dawn today."
    first = phonemize(sentence)
    calls = []
    real = g2p._espeak
    monkeypatch.setattr(g2p, "_espeak", lambda lines: calls.append(lines) or real(lines))
    assert phonemize(sentence) == first
    assert calls == []


def test_twenty_words_are_fast_after_warm_up() -> None:
    sentence = ("The quick brown fox jumps over the lazy dog while seven wizards quietly judge the "
                "boxing match near the old river.")
    phonemize("warm up the backend")
    g2p.clear_cache()
    start = time.perf_counter()
    phonemize(sentence)
    uncached = time.perf_counter() - start
    start = time.perf_counter()
    phonemize(sentence)
    cached = time.perf_counter() - start
    print(f"20-word sentence: {uncached * 1e3:.2f} ms uncached, {cached * 1e3:.2f} ms cached")
    assert uncached < 0.1  # the contract is "well under 100 ms"; this bound only catches a broken cache


def test_threads_get_the_same_answers() -> None:
    sentences = [f"Thread number {i} reads sentence {i} about {w}." for i, w in
                 enumerate(["apples", "rivers", "engines", "music", "quiet", "zebras", "knights", "yachts"])]
    g2p.clear_cache()
    expected = [phonemize(s) for s in sentences]
    g2p.clear_cache()
    results: dict[int, list[Word]] = {}

    def work(index: int) -> None:
        for _ in range(5):
            results[index] = phonemize(sentences[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sentences))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [results[i] for i in range(len(sentences))] == expected


# --- lexicon -----------------------------------------------------------------------------------------

def test_lexicon_overrides_espeak_case_insensitively() -> None:
    lexicon = Lexicon({"Nguyen": "ˈŋ w ɪ n", "tomato": "təmˈɑːtoʊ"})
    words = phonemize("Mr. NGUYEN likes a tomato.", lexicon)
    by_text = {w.text: w.phonemes for w in words}
    assert by_text["NGUYEN"] == ("ˈ", "ŋ", "w", "ɪ", "n")
    assert by_text["tomato"] == ("t", "ə", "m", "ˈ", "ɑː", "t", "oʊ")  # run-together IPA, longest match
    assert phonemize("Mr. Nguyen")[1].phonemes != by_text["NGUYEN"]  # without the lexicon: espeak


def test_spaces_keep_symbols_apart() -> None:
    assert Lexicon({"x": "t ʃ"}).get("X") == ("t", "ʃ")
    assert Lexicon({"x": "tʃ"}).get("x") == ("tʃ",)


def test_lexicon_files(tmp_path: Path) -> None:
    tsv = tmp_path / "lexicon.tsv"
    tsv.write_text("# names\nNguyen\tˈŋ w ɪ n\n\nGIF dʒ ˈɪ f\n", encoding="utf-8")
    lexicon = Lexicon.load(tsv)
    assert len(lexicon) == 2 and "nguyen" in lexicon and lexicon.get("gif") == ("dʒ", "ˈ", "ɪ", "f")
    js = tmp_path / "lexicon.json"
    js.write_text(json.dumps({"Nguyen": "ˈŋwɪn"}, ensure_ascii=False), encoding="utf-8")
    assert Lexicon.load(js).get("NGUYEN") == ("ˈ", "ŋ", "w", "ɪ", "n")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"cat": "k @ t"}, "@"),
        ({"cat": "kæt9"}, "9"),
        ({"cat": "k <pad> t"}, "<"),
        ({"cat": "k , t"}, ","),
        ({"cat": ""}, "empty"),
        ({"two words": "t uː"}, "single word"),
    ],
)
def test_lexicon_refuses_bad_entries(entries: dict[str, str], message: str) -> None:
    with pytest.raises(TextError, match=re.escape(message)):
        Lexicon(entries)


def test_lexicon_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("Nguyen\n", encoding="utf-8")
    with pytest.raises(TextError, match="line 1"):
        Lexicon.load(bad)
    with pytest.raises(TextError, match="Cannot read"):
        Lexicon.load(tmp_path / "missing.tsv")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(TextError, match="JSON"):
        Lexicon.load(broken)


# --- phoneme table -----------------------------------------------------------------------------------

def test_table_v1_is_frozen() -> None:
    """v1 ids are what trained models depend on: a change here means a new phonemes_v2.json."""
    assert PHONEME_TABLE.version == 1
    assert len(PHONEME_TABLE) == 160
    assert PHONEME_TABLE.symbols[:24] == (
        "<pad>", "<unk>", "<bos>", "<eos>", "<wb>", ".", ",", "?", "!", ";", ":", "...", "<pause>",
        "ˈ", "ˌ", "ː", "ˑ", "ʲ", "ʰ", "ʷ", "\u0329", "\u0303", "ə", "ɚ",
    )
    digest = hashlib.sha256("\n".join(PHONEME_TABLE.symbols).encode()).hexdigest()
    assert digest == "122da58b7bf7d2d2764d4809cd2a8d2bf708ff31b2ff51e92fda7d015bc07e17"
    raw = json.loads(table_path(1).read_text(encoding="utf-8"))
    assert raw["version"] == 1 and tuple(raw["symbols"]) == PHONEME_TABLE.symbols
    assert [PHONEME_TABLE.pad_id, PHONEME_TABLE.unk_id, PHONEME_TABLE.bos_id, PHONEME_TABLE.eos_id,
            PHONEME_TABLE.word_boundary_id] == [0, 1, 2, 3, 4]


def test_encode_decode_round_trip_and_word_spans() -> None:
    words = phonemize("Hello, big world!")
    ids = PHONEME_TABLE.encode(words)
    expected: list[str] = []
    for index, word in enumerate(words):
        expected += (["<wb>"] if index else []) + (list(word.phonemes) or [word.text])
    assert PHONEME_TABLE.decode(ids) == expected
    spans = PHONEME_TABLE.word_spans(words)
    assert len(spans) == len(words) and spans[-1][1] == len(ids)
    for word, (start, end) in zip(words, spans):
        assert PHONEME_TABLE.decode(ids[start:end]) == (list(word.phonemes) or [word.text])
    assert all(ids[end] == PHONEME_TABLE.word_boundary_id for _, end in spans[:-1])


def test_unknown_symbols_encode_as_unk_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = PhonemeTable.from_symbols(["<pad>", "<unk>", "<bos>", "<eos>", "<wb>", ".", "<pause>", "k", "t"], 1)
    with caplog.at_level(logging.WARNING, logger="tts.text.phonemes"):
        ids = table.encode([Word("kat", ("k", "æ", "t")), Word("\u2014", ())])
    assert ids == [7, 1, 8, 4, 6]  # unknown phoneme -> <unk>, unknown mark -> <pause>
    assert "'æ'" in caplog.text


def test_table_lookups_and_errors() -> None:
    assert PHONEME_TABLE.decode([PHONEME_TABLE.id("tʃ")]) == ["tʃ"]
    with pytest.raises(KeyError, match="@"):
        PHONEME_TABLE.id("@")
    with pytest.raises(ValueError, match="outside"):
        PHONEME_TABLE.decode([len(PHONEME_TABLE)])
    with pytest.raises(ValueError, match="starts with"):
        PhonemeTable.from_symbols(["a", "b"], 1)
    with pytest.raises(ValueError, match="duplicate"):
        PhonemeTable.from_symbols(["<pad>", "<unk>", "<bos>", "<eos>", "<wb>", "<pause>", "a", "a"], 1)


def test_tokenizer_takes_the_longest_symbol() -> None:
    assert PHONEME_TABLE.tokenize("tʃˈaɪld") == ["tʃ", "ˈ", "aɪ", "l", "d"]
    assert PHONEME_TABLE.tokenize("t ʃ") == ["t", "ʃ"]
    assert PHONEME_TABLE.tokenize("kˈɑːɹ") == ["k", "ˈ", "ɑː", "ɹ"]
    assert PHONEME_TABLE.tokenize("k@") == ["k", "@"]  # unknown characters are kept, never dropped


# A varied list: function words, vowels of every kind, clusters, loans, names, spelled letters.
COVERAGE_WORDS = """
a the of to and in is it you that he was for on are with as I his they be at one have this from or had
by hot but some what there we can out other were all your when up use word how said an each she which
do their time if will way about many then them would write like so these her long make thing see him two
has look more day could go come did my sound no most number who over know water than call first people
bird car fire tour near air sure hour poor heir choir lure mirror sorry hurry borrow bottle button kitten
mountain little rhythm prism chasm church judge ship measure vision thin this sing finger young yes where
whale wheat huge beautiful music cute usual azure pleasure genre beige loch Bach Nguyen Zurich facade
jalapeno Dvorak smorgasbord Schadenfreude crepe naive cafe resume fiance Bjork Muller Gdansk Sao Paulo
FBI NASA UNESCO ABC XYZ Mr Mrs Ms Dr quixotic rhythmic strengths twelfths sixths anxiety exactly luxury
onomatopoeia antidisestablishmentarianism supercalifragilisticexpialidocious squirrel colonel Wednesday
February library probably government comfortable vegetable chocolate temperature literature nuclear
realtor athlete espresso pronunciation often almond salmon yacht island debt receipt psychology pneumonia
knight gnome wrist honest herb route roof root aunt tomato potato caramel pecan mayonnaise
""".split()


def test_phoneme_table_covers_espeak_en_us() -> None:
    words = phonemize(" ".join(COVERAGE_WORDS))
    symbols = [s for w in words for s in w.phonemes]
    assert len(words) == len(COVERAGE_WORDS)
    assert PHONEME_TABLE.unknown_symbols(symbols) == []
    assert all(PHONEME_TABLE.is_phoneme(s) for s in symbols)


CMU_DICT = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")  # installed with festival by the Makefile


@pytest.mark.skipif(not CMU_DICT.exists(), reason="festival's CMU dictionary is not installed")
def test_phoneme_table_covers_a_large_word_list() -> None:
    names = re.findall(r'^\("([a-z]+)"', CMU_DICT.read_text(encoding="latin-1"), flags=re.MULTILINE)
    sample = sorted(set(names))[::40]  # ~2,600 words, spread over the alphabet
    ipa_lines = g2p._espeak(sample)
    symbols = {s for line in ipa_lines for s in PHONEME_TABLE.tokenize(line)}
    assert PHONEME_TABLE.unknown_symbols(symbols) == []


# --- prepare_text ------------------------------------------------------------------------------------

def test_prepare_text_is_consistent() -> None:
    result = prepare_text("Dr. Smith paid $3.50, didn't he?")
    assert isinstance(result, TextInput)
    assert result.text == "Dr. Smith paid $3.50, didn't he?"
    assert result.normalized == "Doctor Smith paid three dollars fifty cents, didn't he?"
    assert [w.text for w in result.words][-3:] == ["didn't", "he", "?"]
    assert list(result.ids) == PHONEME_TABLE.encode(list(result.words))
    assert list(result.word_spans) == PHONEME_TABLE.word_spans(list(result.words))
    assert PHONEME_TABLE.unk_id not in result.ids
    with pytest.raises(AttributeError):
        result.text = "changed"  # type: ignore[misc]


def test_prepare_text_uses_the_lexicon() -> None:
    lexicon = Lexicon({"Nguyen": "ˈŋ w ɪ n"})
    result = prepare_text("Nguyen.", lexicon=lexicon)
    assert result.words[0].phonemes == ("ˈ", "ŋ", "w", "ɪ", "n")


def test_words_next_to_an_espeak_merge_keep_their_context():
    """espeak merges "on the"; the split that follows must not say "a" as the letter name."""
    words = phonemize("It is in a box on the table.")
    assert [w.text for w in words] == ["It", "is", "in", "a", "box", "on", "the", "table", "."]
    article = words[3]
    assert "eɪ" not in article.phonemes and article.phonemes in (("ɐ",), ("ə",))
