"""Splitting long text into chunks that one synthesis call handles well.

Chunks are whole sentences packed together up to the bound; a sentence over the bound is split at its
clauses (after , ; : and around dashes), and a clause over the bound at word boundaries, into parts of
even length. Splits happen only between whitespace-separated words, so no word is ever cut and joining
the chunks with spaces gives back the text's words in order.
"""

from __future__ import annotations

import re

from tts.errors import TextError

# Abbreviations whose period does not end a sentence (compared lower-cased, without the final period).
_NON_FINAL_ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof st mt ft gen capt lt col sgt rev hon gov sen rep jr sr vs e.g i.e etc approx "
    "no nos fig vol p pp cf ca al inc ltd co corp dept est a.m p.m u.s u.k".split()
)
_SENTENCE_END = re.compile(r"(?:[.!?\u2026]+|\.\.\.)[\"'\u2019\u201d)\]]*$")
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013][\"'\u2019\u201d)\]]*$")
_DASHES = frozenset({"-", "--", "\u2013", "\u2014", "\u2015"})


def _ends_sentence(word: str, next_word: str | None) -> bool:
    if not _SENTENCE_END.search(word):
        return False
    stem = word.rstrip("\"'\u2019\u201d)]").rstrip(".").lstrip("\"'(\u2018\u201c[").lower()
    if word.rstrip("\"'\u2019\u201d)]").endswith(".") and not word.endswith("..."):
        if stem in _NON_FINAL_ABBREVIATIONS or re.fullmatch(r"[a-z]", stem):
            return False  # "Dr. Smith", "J. Smith"
        if next_word is not None and next_word[:1].islower():
            return False  # "approx. five", an abbreviation we do not know
    return True


def _ends_clause(word: str, next_word: str | None) -> bool:
    return bool(_CLAUSE_END.search(word)) or word in _DASHES or (next_word is not None and next_word in _DASHES)


def _groups(words: list[str], breaks: list[bool]) -> list[list[str]]:
    """Cut `words` after every index where `breaks` is True."""
    groups: list[list[str]] = [[]]
    for word, cut in zip(words, breaks):
        groups[-1].append(word)
        if cut:
            groups.append([])
    return [group for group in groups if group]


def _length(words: list[str]) -> int:
    return sum(len(word) for word in words) + max(len(words) - 1, 0)


def _pack(units: list[list[str]], max_chars: int) -> list[list[str]]:
    """Greedily join consecutive units (lists of words) while the joined text fits `max_chars`."""
    chunks: list[list[str]] = []
    for unit in units:
        if chunks and _length(chunks[-1]) + 1 + _length(unit) <= max_chars:
            chunks[-1] = chunks[-1] + unit
        else:
            chunks.append(list(unit))
    return chunks


def _split_words_evenly(words: list[str], max_chars: int) -> list[list[str]]:
    """Split a run of words into the fewest parts that fit, of about even length (no tiny last part).

    A single word longer than `max_chars` is a part of its own.
    """
    parts: list[list[str]] = []
    remaining = list(words)
    while remaining:
        total = _length(remaining)
        if total <= max_chars:
            parts.append(remaining)
            break
        n_parts = -(-total // max_chars)  # ceil
        target = min(max_chars, -(-total // n_parts))
        part: list[str] = [remaining[0]]
        for word in remaining[1:]:
            if _length(part) + 1 + len(word) > target:
                break
            part.append(word)
        parts.append(part)
        remaining = remaining[len(part):]
    return parts


def _split_long(sentence: list[str], max_chars: int) -> list[list[str]]:
    """Split one over-long sentence at clauses, then words."""
    nexts = sentence[1:] + [None]
    clauses = _groups(sentence, [_ends_clause(w, n) for w, n in zip(sentence, nexts)])
    pieces: list[list[str]] = []
    for clause in clauses:
        pieces.extend([clause] if _length(clause) <= max_chars else _split_words_evenly(clause, max_chars))
    return _pack(pieces, max_chars)


def split_sentences(text: str) -> list[str]:
    """Split `text` into sentences (at . ! ? ... and at blank lines), whitespace collapsed."""
    return [" ".join(sentence) for sentence in _sentences(text)]


def _sentences(text: str) -> list[list[str]]:
    words: list[str] = []
    breaks: list[bool] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph_words = paragraph.split()
        if not paragraph_words:
            continue
        nexts = paragraph_words[1:] + [None]
        words.extend(paragraph_words)
        breaks.extend(_ends_sentence(w, n) for w, n in zip(paragraph_words, nexts))
        breaks[-1] = True
    return _groups(words, breaks)


def chunk_text(text: str, max_chars: int = 250) -> list[str]:
    """Split `text` into chunks of at most `max_chars` characters for synthesis.

    Whole sentences are packed together while they fit; a longer sentence is split at clause
    boundaries (, ; : dashes), then at word boundaries. Words are never cut: a single word longer than
    `max_chars` becomes a chunk on its own. Punctuation stays with its words, whitespace is collapsed,
    and ``" ".join(chunks).split() == text.split()``. Empty text gives ``[]``.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise TextError(f"max_chars must be a positive whole number of characters, not {max_chars!r}.")
    pieces: list[list[str]] = []
    for sentence in _sentences(text):
        pieces.extend([sentence] if _length(sentence) <= max_chars else _split_long(sentence, max_chars))
    return [" ".join(chunk) for chunk in _pack(pieces, max_chars)]


# Words a phrase often starts with: a cut before one splits a clause where a speaker could pause.
_PHRASE_STARTS = frozenset(
    "and but or nor so yet as because since while when whenever where which who whom whose that if unless though "
    "although until before after for to in on at with without from into onto by about over under through during "
    "against between across behind beside near around inside outside".split()
)


def split_head(text: str, max_chars: int, min_rest_words: int = 3) -> tuple[str, str]:
    """`text` cut into a short head of about `max_chars` characters (to be spoken first, soon) and the rest.

    The head is the first sentence where it fits; else the most of the first sentence's clauses (, ; : dashes)
    that fit; else its words up to a phrase's start (a word such as "and", "when", "with" that does not follow
    another such word) that keeps the head between half of `max_chars` and `max_chars` (the last such); else
    up to the first clause end or phrase start within 1.5 times `max_chars`; else up to the last phrase start
    before; else the most of its words that fit. ``(text, "")`` where the text fits, where no head is found
    (a part of a sentence takes two words or more), or where the rest would be shorter than `min_rest_words`
    words. Words are never
    cut: ``(head + " " + rest).split() == text.split()``.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise TextError(f"max_chars must be a positive whole number of characters, not {max_chars!r}.")
    words = text.split()
    sentences = _sentences(text)
    if _length(words) <= max_chars or not sentences:
        return " ".join(words), ""
    first = sentences[0]
    cut = len(first) if _length(first) <= max_chars else _head_cut(first, max_chars)
    if cut < (1 if cut == len(first) else 2) or len(words) - cut < min_rest_words:
        return " ".join(words), ""
    return " ".join(words[:cut]), " ".join(words[cut:])


def _head_cut(sentence: list[str], max_chars: int) -> int:
    """How many words of an over-long `sentence` `split_head` takes as the head (0: none)."""
    nexts = sentence[1:] + [None]

    def starts_phrase(i: int) -> bool:
        return sentence[i].lower().strip("\"'(\u2018\u201c") in _PHRASE_STARTS

    def length(cut: int) -> int:
        return _length(sentence[:cut])

    clauses = [i + 1 for i, (w, n) in enumerate(zip(sentence, nexts))
               if _ends_clause(w, n) and 2 <= i + 1 < len(sentence)]  # a head of two words or more
    phrases = [i for i in range(2, len(sentence)) if starts_phrase(i) and not starts_phrase(i - 1)]
    over = sorted(cut for cut in clauses + phrases if max_chars < length(cut) <= 1.5 * max_chars)
    for choice in ([cut for cut in clauses if length(cut) <= max_chars],
                   [cut for cut in phrases if max_chars / 2 <= length(cut) <= max_chars],
                   over[:1],
                   [cut for cut in phrases if length(cut) < max_chars / 2]):
        if choice:
            return choice[-1]
    return max((cut for cut in range(2, len(sentence)) if length(cut) <= max_chars), default=0)
