"""The text source of the synthetic training corpus: an offline generator of varied English sentences.

    from tts.data.sentences import sample_sentences
    for sentence in sample_sentences(5, seed=0):
        print(sentence.kind, sentence.mood, sentence.text)

The sentences come from a grammar of our own writing (``data/sentence_grammar.json``, no third-party
text, so no license question): sentence templates with slots, recursive clauses (a clause may hold a
"that" clause, a relative clause, a "because" clause ...), a vocabulary of a few hundred nouns, verbs and
adjectives in semantic categories with agreement handled in code (subject and verb, pronouns, a/an,
plurals, tenses with matching time phrases), names of many origins, places, invented companies, and
numbers written as digits (counts, prices, years, dates, times, percentages, phone numbers, ordinals,
decimals, measures), which the text front end speaks. Each template group has a `kind` (`KINDS`) and a
`mood` (`MOODS`; everything not emotional is "neutral"), so an emotion corpus can draw happy, sad,
angry, surprised or calm lines.

Splits. A sentence's split is a function of its text alone: a keyed hash of its lower-cased words
(punctuation ignored, "an" read as "a") puts 1 in 16 of all possible sentences in "heldout", the rest in
"train". So the splits are disjoint by construction, for every seed and every version of the grammar:
no training corpus drawn from this module can contain a held-out sentence, even punctuated differently.
Both splits also drop any text that contains one of the evaluation set's texts
(`tts.evaluation.testsets.overlaps_heldout`, when that module exists).

Grammar syntax, for editing the data file: ``{slot}`` is a rule or a built-in slot; ``[...]`` is
optional (half the time); ``(a|b|c)`` picks one alternative, which may be empty (so no literal
parentheses). Rules under "clauses" open a scope of their own (their own subject, verbs and agreement);
rules under "phrases" share the scope of the template that uses them. Lexicon strings are words separated
by spaces, "_" for a space inside an entry ("ice_cream") and "/" before an irregular plural ("mouse/mice").
Built-in slots:

* ``{subj}`` sets the clause's subject (``subj.3`` third person, ``subj.sg`` singular, ``subj.I``,
  ``subj.you``, ``subj.we``); ``{pron} {objp} {poss} {refl} {be} {was} {have} {do} {dont} {isnt} {wasnt}
  {havent}`` and ``{pres:VERB}`` agree with it.
* Verbs ``{tv.F} {iv.F} {mv.F} {cv.F} {sv.F}`` (transitive, intransitive, motion, "that"-clause, speech),
  F one of base, s, past, part, ing, pres; the transitive verb's object is ``{obj}`` (``obj.a``,
  ``obj.the``, ``{objs}`` plural, ``{objn}`` ``{objns}`` bare). A digit names another verb: ``{tv2.past}
  {obj2}``.
* Nouns of a category: ``{n.C} {ns.C}`` bare, ``{np.C} {nps.C} {a.C} {the.C}`` with a determiner and
  maybe an adjective; ``{list.C}`` three to five of them; ``{adj.K} {adv} {w.K}`` (a lexicon list).
* ``{name} {fullname} {surname} {person} {people} {city} {country} {street} {company} {day} {month}``.
* Numbers ``{int:A-B} {int0:A-B} {intc:A-B} {ord:A-B}``, from which the number rules ({price}, {clock},
  {date} ...) are built.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

SPLITS = ("train", "heldout")
KINDS = ("statement", "question", "exclamation", "command", "numeric", "list", "dialogue")
MOODS = ("neutral", "happy", "sad", "angry", "surprised", "calm")
HELDOUT_BUCKETS = 16
"""One sentence in this many (by the hash of its words) belongs to the held-out split."""
MAX_CHARS = 240
MAX_WORDS = 40
MAX_CLAUSE_DEPTH = 3
_SPLIT_KEY = b"timbre-sentences"  # changing it would move sentences between splits: never change it
_GIVE_UP_AFTER = 200_000  # consecutive draws without a new sentence before the stream gives up

ENGLISH_PHONEMES = (
    "ˈ", "ˌ", "ə", "ɚ", "æ", "ɛ", "ɪ", "i", "iː", "ʊ", "uː", "ʌ", "ɑː", "ɔ", "ɔː", "ɜː", "ɐ", "ᵻ", "oː",
    "aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "p", "b", "t", "d", "k", "ɡ", "m", "n", "ŋ", "f", "v", "θ", "ð", "s",
    "z", "ʃ", "ʒ", "h", "ɹ", "l", "w", "j", "tʃ", "dʒ", "ɾ", "ʔ", "n̩",
)
"""The phoneme-table symbols that espeak-ng (en-us) produces for common English words: every symbol
found in the pronunciations of the 10,000 most frequent words of the Python standard library's
docstrings, less two seen in single odd tokens ("r", "u"). Rarer symbols ("x" in "loch",
nasal vowels in French loans) are not counted. The reference for `phoneme_coverage`."""


@dataclass(frozen=True)
class Sentence:
    """One generated sentence: its `text` (digits and all, as a user would type it), its `kind` (one
    of `KINDS`), its `mood` (one of `MOODS`) and `source`, the template group that made it
    ("grammar:<group>")."""

    text: str
    kind: str
    source: str
    mood: str = "neutral"


class GrammarError(ValueError):
    """A sentence grammar that refers to unknown rules or slots, or is otherwise malformed."""


# ---------------------------------------------------------------------------------------------------------
# Template parsing: a template becomes a tuple of nodes.
#   str                      literal text
#   ("slot", name)           a built-in slot or a rule
#   ("choice", (seq, ...))   one of several sequences; "[x]" is ("choice", (x, ()))

_TEMPLATE_TOKEN = re.compile(r"\{([^{}]+)\}|([\[\]()|])|([^{}\[\]()|]+)")


def parse_template(template: str) -> tuple:
    """Parse a grammar template into nodes; `GrammarError` for unbalanced brackets."""
    tokens = [(m[1], m[2], m[3]) for m in _TEMPLATE_TOKEN.finditer(template)]
    if "".join(m[0] for m in _TEMPLATE_TOKEN.finditer(template)) != template:
        raise GrammarError(f"unbalanced braces in template {template!r}")
    position = 0

    def sequence(closers: str) -> tuple[tuple, str | None]:
        nonlocal position
        nodes: list = []
        while position < len(tokens):
            slot, mark, text = tokens[position]
            position += 1
            if slot is not None:
                nodes.append(("slot", slot.strip()))
            elif text is not None:
                nodes.append(text)
            elif mark in closers:
                return tuple(nodes), mark
            elif mark == "[":
                inner, closer = sequence("]")
                if closer != "]":
                    raise GrammarError(f"unclosed '[' in template {template!r}")
                nodes.append(("choice", (inner, ())))
            elif mark == "(":
                options = []
                while True:
                    inner, closer = sequence("|)")
                    options.append(inner)
                    if closer == ")":
                        break
                    if closer is None:
                        raise GrammarError(f"unclosed '(' in template {template!r}")
                nodes.append(("choice", tuple(options)))
            else:
                raise GrammarError(f"unexpected {mark!r} in template {template!r}")
        return tuple(nodes), None

    nodes, closer = sequence("")
    if closer is not None:
        raise GrammarError(f"unexpected {closer!r} in template {template!r}")
    return nodes


def _slot_names(nodes: tuple) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, tuple) and node[0] == "slot":
            yield node[1]
        elif isinstance(node, tuple):
            for option in node[1]:
                yield from _slot_names(option)


# ---------------------------------------------------------------------------------------------------------
# Morphology

def _words(value: str | Sequence[str]) -> tuple[str, ...]:
    """A lexicon entry list: a space-separated string (``_`` for spaces inside entries) or a list."""
    items = value.split() if isinstance(value, str) else list(value)
    return tuple(item.replace("_", " ") for item in items)


def _noun(entry: str) -> tuple[str, str]:
    """(singular, plural) of a lexicon noun, "box" or "mouse/mice"."""
    singular, _, plural = entry.partition("/")
    return singular, plural or _plural(singular)


def _plural(word: str) -> str:
    head, space, last = word.rpartition(" ")
    if re.search(r"(s|x|z|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return head + space + last


_DOUBLES_FINAL = re.compile(r"^[^aeiou]*[aeiou][^aeiouwxy]$")  # stop -> stopped, but not fix, rain, visit


@dataclass(frozen=True)
class _Verb:
    base: str
    s: str
    past: str
    part: str
    ing: str


def _verb(base: str, irregular: dict[str, str], doubles: frozenset[str]) -> _Verb:
    """All forms of a verb; `irregular` maps base -> "past participle [ing]"."""
    double = base in doubles or bool(_DOUBLES_FINAL.match(base))
    stem = base + base[-1] if double else base
    if base.endswith("e"):
        past = base + "d"
        ing = base[:-2] + "ying" if base.endswith("ie") else base + "ing" if base.endswith(("ee", "ye", "oe")) \
            else base[:-1] + "ing"
    elif re.search(r"[^aeiou]y$", base):
        past, ing = base[:-1] + "ied", base + "ing"
    else:
        past, ing = stem + "ed", stem + "ing"
    part = past
    if base in irregular:
        forms = irregular[base].split()
        past, part = forms[0], forms[1]
        ing = forms[2] if len(forms) > 2 else ing
    if base == "have":
        s = "has"
    elif re.search(r"(s|x|z|ch|sh|^go|^do)$", base):
        s = base + "es"
    elif re.search(r"[^aeiou]y$", base):
        s = base[:-1] + "ies"
    else:
        s = base + "s"
    return _Verb(base, s, past, part, ing)


def _article(word: str) -> str:
    """ "a" or "an" before `word`, by how it is spoken."""
    lower = word.lower().lstrip("$€£")  # "an $8 ticket": the amount is what is heard first
    if lower[:1].isdigit():
        digits = re.sub(r"\D", "", lower.split(".")[0])
        spoken_vowel = digits.startswith("8") or (len(digits) in (2, 5) and digits.startswith(("11", "18")))
        return "an" if spoken_vowel else "a"
    if lower.startswith(("hour", "honest", "honor", "heir")):
        return "an"
    if lower.startswith(("uni", "use", "usu", "uti", "eu", "one", "once", "ewe", "ufo")):
        return "a"
    return "an" if lower[:1] in "aeiou" else "a"


# ---------------------------------------------------------------------------------------------------------
# The grammar


@dataclass(frozen=True)
class _Group:
    """One entry of the grammar's "sentences": templates that share a kind, a mood and a weight."""

    name: str
    kind: str
    mood: str
    weight: float
    templates: tuple[tuple, ...]


class SentenceGrammar:
    """A parsed, validated sentence grammar (the JSON layout of ``data/sentence_grammar.json``).

    ``SentenceGrammar(data)`` takes the decoded JSON; `default_grammar` is the shipped one. Every rule
    and slot a template names is checked here, so a typo fails when the grammar is built.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        try:
            self._build(data)
        except (KeyError, TypeError, AttributeError) as error:
            raise GrammarError(f"malformed sentence grammar: {error!r}") from error

    def _build(self, data: dict[str, Any]) -> None:
        lexicon = data["lexicon"]
        self.words = {key: _words(value) for key, value in lexicon.items()}
        self.names = tuple((name, gender) for key, gender in (("names_female", "f"), ("names_male", "m"),
                                                               ("names_neutral", "n")) for name in self.words[key])
        self.nouns = {cat: tuple(_noun(e) for e in _words(v)) for cat, v in data["nouns"].items()}
        self.adjectives = {key: _words(value) for key, value in data["adjectives"].items()}
        verbs = data["verbs"]
        irregular = dict(verbs.get("irregular", {}))
        doubles = frozenset(_words(verbs.get("double", "")))
        conjugate = functools.partial(_verb, irregular=irregular, doubles=doubles)
        self.transitive = {cat: tuple(conjugate(v) for v in _words(vs)) for cat, vs in verbs["transitive"].items()}
        self.verb_lists = {
            key: tuple(conjugate(v) for v in _words(verbs[name]))
            for key, name in (("iv", "intransitive"), ("mv", "motion"), ("cv", "cognition"), ("sv", "speech"))
        }
        for category in self.transitive:
            if category not in self.nouns:
                raise GrammarError(f"transitive verbs take {category!r}, which is not a noun category")
        self.clauses = {name: tuple(parse_template(t) for t in alts) for name, alts in data["clauses"].items()}
        self.phrases = {name: tuple(parse_template(t) for t in alts) for name, alts in data["phrases"].items()}
        groups = []
        for raw in data["sentences"]:
            group = _Group(raw["name"], raw["kind"], raw.get("mood", "neutral"), float(raw.get("weight", 1)),
                           tuple(parse_template(t) for t in raw["templates"]))
            if group.kind not in KINDS or group.mood not in MOODS or group.weight <= 0 or not group.templates:
                raise GrammarError(f"sentence group {group.name!r}: bad kind, mood, weight or no templates")
            groups.append(group)
        self.groups = tuple(groups)
        both = sorted(set(self.clauses) & set(self.phrases))
        if both:
            raise GrammarError(f"rules {both} are both clauses and phrases")
        self._check_slots()
        self._flat = {name: tuple(i for i, alt in enumerate(alts) if not self._reaches_clause(alt, {}))
                      for name, alts in self.clauses.items()}
        for name, flat in self._flat.items():
            if not flat:
                raise GrammarError(f"clause {name!r} has no alternative without a nested clause")

    def _all_templates(self) -> Iterator[tuple[str, tuple]]:
        for rules in (self.clauses, self.phrases):
            for name, alts in rules.items():
                yield from ((name, alt) for alt in alts)
        for group in self.groups:
            yield from ((group.name, t) for t in group.templates)

    def _check_slots(self) -> None:
        probe = _Renderer(self, random.Random(0))
        for owner, template in self._all_templates():
            for name in _slot_names(template):
                if name not in self.clauses and name not in self.phrases and not probe.knows(name):
                    raise GrammarError(f"{owner!r} uses unknown slot {{{name}}}")

    def _reaches_clause(self, nodes: tuple, memo: dict[str, bool]) -> bool:
        """True when expanding `nodes` can open a clause (directly or through phrases)."""
        for name in _slot_names(nodes):
            if name in self.clauses:
                return True
            if name in self.phrases:
                if name not in memo:
                    memo[name] = False  # a phrase that refers to itself adds no clause
                    memo[name] = any(self._reaches_clause(alt, memo) for alt in self.phrases[name])
                if memo[name]:
                    return True
        return False

    def select(self, kinds: Iterable[str] | None = None, moods: Iterable[str] | None = None) -> tuple[_Group, ...]:
        """The template groups of the given kinds and moods (all when None); `ValueError` when none match."""
        kinds = _check_names(kinds, KINDS, "kind")
        moods = _check_names(moods, MOODS, "mood")
        chosen = tuple(g for g in self.groups
                       if (kinds is None or g.kind in kinds) and (moods is None or g.mood in moods))
        if not chosen:
            raise ValueError(f"No sentence templates have kind in {sorted(kinds or KINDS)} and mood in "
                             f"{sorted(moods or MOODS)}; widen the selection.")
        return chosen

    def render(self, group: _Group, rng: random.Random) -> str:
        """One sentence from `group` (not yet checked for length or split)."""
        return _finish(self._render_draft(group, rng))

    def _render_draft(self, group: _Group, rng: random.Random) -> str:
        """The sentence before spacing, capitals and a/an are fixed; its words decide its split."""
        renderer = _Renderer(self, rng)
        return renderer.sentence(renderer.pick(group.templates))


def _check_names(values: Iterable[str] | None, allowed: tuple[str, ...], what: str) -> frozenset[str] | None:
    if values is None:
        return None
    values = frozenset([values] if isinstance(values, str) else values)
    unknown = sorted(values - set(allowed))
    if unknown:
        raise ValueError(f"Unknown sentence {what} {unknown}; choose from {', '.join(allowed)}.")
    return values


GRAMMAR_PATH = Path(__file__).resolve().parent / "data" / "sentence_grammar.json"


@functools.lru_cache(maxsize=1)
def default_grammar() -> SentenceGrammar:
    """The shipped grammar (``tts/data/data/sentence_grammar.json``), read and checked at first use."""
    with open(GRAMMAR_PATH, encoding="utf-8") as handle:
        return SentenceGrammar(json.load(handle))


# ---------------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class _Subject:
    person: str  # "1s", "2", "3s", "1p", "3p"
    gender: str = "n"  # "m", "f" or "n" (they) for a third person


_PRONOUNS = {  # (subject, object, possessive, reflexive)
    "1s": ("I", "me", "my", "myself"), "2": ("you", "you", "your", "yourself"),
    "1p": ("we", "us", "our", "ourselves"), "3p": ("they", "them", "their", "themselves"),
    "m": ("he", "him", "his", "himself"), "f": ("she", "her", "her", "herself"),
    "n": ("they", "them", "their", "themselves"),
}
_AUXILIARIES = {  # forms for "I", a third person singular, and the other persons
    "be": ("am", "is", "are"), "was": ("was", "was", "were"), "have": ("have", "has", "have"),
    "do": ("do", "does", "do"), "dont": ("don't", "doesn't", "don't"), "isnt": ("am not", "isn't", "aren't"),
    "wasnt": ("wasn't", "wasn't", "weren't"), "havent": ("haven't", "hasn't", "haven't"),
}
_VERB_SLOT = re.compile(r"^(tv|iv|mv|cv|sv)(\d?)\.(base|s|past|part|ing|pres)$")
_OBJECT_SLOT = re.compile(r"^(obj|objs|objn|objns)(\d?)(?:\.(a|the))?$")
_DETERMINERS = ("the", "the", "the", "the", "a", "a", "a", "my", "your", "his", "her", "our", "their", "this", "that")
_PLURAL_DETERMINERS = ("the", "the", "the", "some", "my", "our", "their", "these", "those", "", "", "count")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _form_index(subject: _Subject) -> int:
    """0 for "I", 1 for a third person singular (also "Alex", whose pronoun is "they"), 2 otherwise."""
    return {"1s": 0, "3s": 1}.get(subject.person, 2)


class _Scope:
    """Agreement state of one clause: its subject and its verb frames."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.subject: _Subject | None = None
        self.frames: dict[str, tuple[_Verb, str | None]] = {}


class _Renderer:
    """Expands templates with one random generator; deferred parts wait for their clause's subject."""

    def __init__(self, grammar: SentenceGrammar, rng: random.Random) -> None:
        self.grammar = grammar
        self.rng = rng

    def pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.rng.random() * len(items))]  # faster than randrange, as deterministic

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    # -- expansion --------------------------------------------------------------------------------------

    def sentence(self, template: tuple) -> str:
        parts = self.clause_parts(template, depth=0)
        if any(callable(part) for part in parts):
            raise GrammarError(f"template {template!r} agrees with a subject it never sets")
        return "".join(parts)

    def clause_parts(self, nodes: tuple, depth: int) -> list:
        scope = _Scope(depth)
        parts = self.expand(nodes, scope)
        if scope.subject is None:
            return parts  # agreement, if any, is with the enclosing clause's subject
        return [part(scope.subject) if callable(part) else part for part in parts]

    def expand(self, nodes: tuple, scope: _Scope) -> list:
        out: list = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif node[0] == "choice":
                out.extend(self.expand(self.pick(node[1]), scope))
            else:
                out.extend(self.slot(node[1], scope))
        return out

    def slot(self, name: str, scope: _Scope) -> list:
        grammar = self.grammar
        if name in grammar.clauses:
            alternatives = grammar.clauses[name]
            if scope.depth + 1 >= MAX_CLAUSE_DEPTH:
                alternatives = [alternatives[i] for i in grammar._flat[name]]
            return self.clause_parts(self.pick(alternatives), scope.depth + 1)
        if name in grammar.phrases:
            return self.expand(self.pick(grammar.phrases[name]), scope)
        return [self._builtin(name, scope)]

    def knows(self, name: str) -> bool:
        """True when `name` is a built-in slot (rendering it in a scratch scope succeeds)."""
        try:
            self._builtin(name, _Scope(0))
        except (KeyError, ValueError, IndexError):
            return False
        return True

    # -- built-in slots ---------------------------------------------------------------------------------

    def _builtin(self, name: str, scope: _Scope) -> str | Callable[[_Subject], str]:
        head, _, arg = name.partition(".")
        if head == "subj":
            return self.subject(scope, arg)
        if name in ("pron", "objp", "poss", "refl"):
            index = ("pron", "objp", "poss", "refl").index(name)
            return lambda s: _PRONOUNS[s.gender if s.person == "3s" else s.person][index]
        if name in _AUXILIARIES:
            forms = _AUXILIARIES[name]
            return lambda s: forms[_form_index(s)]
        if name.startswith("pres:"):
            verb = _verb(name.split(":", 1)[1], {}, frozenset())
            return lambda s: verb.base if _form_index(s) != 1 else verb.s
        match = _VERB_SLOT.match(name)
        if match:
            verb, _ = self.frame(scope, match[1] + match[2])
            if match[3] == "pres":
                return lambda s: verb.s if _form_index(s) == 1 else verb.base
            return getattr(verb, match[3])
        match = _OBJECT_SLOT.match(name)
        if match:
            _, category = self.frame(scope, "tv" + match[2])
            form = match[3] or {"obj": "np", "objs": "nps", "objn": "n", "objns": "ns"}[match[1]]
            return self.noun_slot(form, category)
        if head in ("n", "ns", "np", "nps", "a", "the") and arg in self.grammar.nouns:
            return self.noun_slot(head, arg)
        if head == "list":
            return self.listing(arg)
        if head == "adj":
            return self.pick(self.grammar.adjectives[arg or "general"])
        if name == "adv":
            return self.pick(self.grammar.words["adverbs"])
        if head == "w":
            return self.pick(self.grammar.words[arg])
        return self.fixed(name)

    def subject(self, scope: _Scope, arg: str) -> str:
        if scope.subject is not None:
            raise GrammarError("a clause sets its subject twice; use {person} for a second person")
        fixed = {"I": ("I", "1s", "n"), "you": ("you", "2", "n"), "we": ("we", "1p", "n")}
        if arg in fixed:
            text, person, gender = fixed[arg]
        else:
            low, high = {"3": (0.25, 1.0), "sg": (0.25, 0.8)}.get(arg, (0.0, 1.0))
            roll = low + (high - low) * self.rng.random()
            if roll < 0.25:
                text, person, gender = self.pick((("I", "1s", "n"), ("you", "2", "n"), ("we", "1p", "n"),
                                                  ("they", "3p", "n"), ("he", "3s", "m"), ("she", "3s", "f")))
            elif roll < 0.55:
                text, gender = self.named()
                person = "3s"
            elif roll < 0.8:
                text, person, gender = self.noun_slot("np", "person"), "3s", "n"
            elif roll < 0.92:
                text, person, gender = self.noun_slot("nps", "person", plain=True), "3p", "n"
            else:
                text, person, gender = f"{self.named()[0]} and {self.named()[0]}", "3p", "n"
        scope.subject = _Subject(person, gender)
        return text

    def named(self) -> tuple[str, str]:
        """A person's name with its gender: a first name, a full name or a title and surname."""
        words = self.grammar.words
        roll = self.rng.random()
        first, gender = self.pick(self.grammar.names)
        if roll < 0.7:
            return first, gender
        if roll < 0.85:
            return f"{first} {self.pick(words['surnames'])}", gender
        title = self.pick(("Dr.", "Professor", "Captain", "Coach", "Mr.", "Mrs.", "Ms."))
        gender = {"Mr.": "m", "Mrs.": "f", "Ms.": "f"}.get(title, gender)
        return f"{title} {self.pick(words['surnames'])}", gender

    def frame(self, scope: _Scope, key: str) -> tuple[_Verb, str | None]:
        """The verb of frame `key` ("tv", "tv2", "iv" ...) in this clause, chosen at first use."""
        if key not in scope.frames:
            if key.startswith("tv"):
                category = self.pick(tuple(self.grammar.transitive))
                scope.frames[key] = (self.pick(self.grammar.transitive[category]), category)
            else:
                scope.frames[key] = (self.pick(self.grammar.verb_lists[key[:2]]), None)
        return scope.frames[key]

    def noun_slot(self, form: str, category: str | None, plain: bool = False) -> str:
        """A noun of `category`: "n" bare, "ns" bare plural, "np" with a determiner, "a" indefinite, "the"
        definite, "nps" plural with a determiner (`plain`: always "the"); phrases may get an adjective."""
        if category is None:
            raise GrammarError("an object slot refers to a verb frame without an object")
        singular, plural = self.pick(self.grammar.nouns[category])
        if form in ("n", "ns"):
            return singular if form == "n" else plural
        adjectives = self.grammar.adjectives.get(category, self.grammar.adjectives["general"])
        adjective = f"{self.pick(adjectives)} " if self.chance(0.3) else ""
        if form == "nps":
            determiner = "the" if plain else self.pick(_PLURAL_DETERMINERS)
            if determiner == "count":
                determiner = "".join(self.slot("count", _Scope(0)))
            return f"{determiner} {adjective}{plural}".strip()
        determiner = form if form in ("a", "the") else self.pick(_DETERMINERS)
        if determiner == "a" and category == "mass":
            determiner = "some"  # "some rice", never "a rice"
        return f"{determiner} {adjective}{singular}"

    def listing(self, category: str) -> str:
        """Three to five different items joined with commas and "and": nouns, names or cities."""
        size = self.pick((3, 3, 3, 4, 4, 5))
        if category == "names":
            draw = lambda: self.named()[0]  # noqa: E731
        elif category in self.grammar.words:
            draw = functools.partial(self.pick, self.grammar.words[category])
        elif category == "food":
            draw = lambda: (self.pick(self.grammar.nouns["mass"])[0] if self.chance(0.35)  # noqa: E731
                            else self.pick(self.grammar.nouns["food"])[1])
        else:
            draw = lambda: self.pick(self.grammar.nouns[category])[1]  # noqa: E731
        items: list[str] = []
        for _ in range(size * 4):
            item = draw()
            if item not in items:
                items.append(item)
            if len(items) == size:
                break
        joiner = ", and " if self.chance(0.75) else " and "
        return ", ".join(items[:-1]) + joiner + items[-1]

    def fixed(self, name: str) -> str:
        """Names, places and numbers."""
        words = self.grammar.words
        if name == "name":
            return self.pick(self.grammar.names)[0]
        if name == "person":
            return self.named()[0] if self.chance(0.5) else self.noun_slot("np", "person")
        if name == "people":
            return self.noun_slot("nps", "person")
        if name == "fullname":
            return f"{self.pick(self.grammar.names)[0]} {self.pick(words['surnames'])}"
        if name == "surname":
            return self.pick(words["surnames"])
        if name in ("city", "country", "street_name"):
            return self.pick(words[{"city": "cities", "country": "countries", "street_name": "streets"}[name]])
        if name == "street":
            return f"{self.pick(words['streets'])} {self.pick(words['street_types'])}"
        if name == "company":
            return f"{self.pick(words['company_heads'])} {self.pick(words['company_tails'])}"
        if name == "day":
            return self.pick(_DAYS)
        if name == "month":
            return self.pick(_MONTHS)
        return self.number(name)

    def number(self, name: str) -> str:
        """Primitive numbers, from which the grammar's number phrases are built: ``int:2-12`` (digits),
        ``int0:0-59`` (two digits at least), ``intc:1000-99999`` (thousands commas), ``ord:1-31`` (21st)."""
        match = _NUMBER_SLOT.match(name)
        if not match:
            raise KeyError(name)
        value = self.rng.randint(int(match[2]), int(match[3]))
        return {"int": str, "int0": "{:02d}".format, "intc": "{:,}".format, "ord": _ordinal}[match[1]](value)


_NUMBER_SLOT = re.compile(r"^(int|int0|intc|ord):(\d+)-(\d+)$")


def _ordinal(value: int) -> str:
    suffix = "th" if 10 <= value % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
    return f"{value}{suffix}"


_ABBREVIATION_END = re.compile(r"(?:\b[ap]\.m|\bDr|\bMrs?|\bMs|\bSt)\.$")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_MARK = re.compile(r" +([,.!?;:])")
_DOUBLED_MARK = re.compile(r",(?=[,.!?])|\.(?=\.(?!\.))")  # ",." and "a.m.." keep their last mark
_ARTICLE = re.compile(r"\b([Aa])n? (?=([\w$€£]+))")
_QUOTE_START = re.compile(r'(^|\s)"([a-z])')
_SENTENCE_START = re.compile(r'([.!?]) "?[a-z]')


def _finish(text: str) -> str:
    """Spacing, a/an, and capitals at the starts of sentences and quotations."""
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_MARK.sub(r"\1", text)
    text = _DOUBLED_MARK.sub("", text)
    text = _ARTICLE.sub(lambda m: _cased(_article(m[2]), m[1]) + " ", text)
    text = _QUOTE_START.sub(lambda m: f'{m[1]}"{m[2].upper()}', text)

    def after_stop(match: re.Match[str]) -> str:
        if match[1] == "." and _ABBREVIATION_END.search(text[: match.start() + 1]):
            return match[0]
        return match[0][:-1] + match[0][-1].upper()

    text = _SENTENCE_START.sub(after_stop, text)
    return text[:1].upper() + text[1:]


def _cased(article: str, like: str) -> str:
    return article.capitalize() if like[0].isupper() else article


# ---------------------------------------------------------------------------------------------------------
# Splits and the public stream


_WORD = re.compile(r"[a-z0-9]+")


def _plain(text: str) -> str:
    """Lower-cased words; "an" counts as "a", so a sentence's key is the same before and after `_finish`."""
    return " ".join("a" if word == "an" else word for word in _WORD.findall(text.lower()))


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(_plain(text).encode(), digest_size=8, key=_SPLIT_KEY).digest(), "big")


def split_of(text: str) -> str:
    """The split ("train" or "heldout") that `text` belongs to, whoever wrote it; depends on its
    lower-cased words only ("an" counted as "a"), so punctuation and capitals never move a sentence
    across splits."""
    return "heldout" if _digest(text) % HELDOUT_BUCKETS == 0 else "train"


def _evaluation_filter() -> Callable[[str], bool]:
    """True for texts that contain one of the evaluation set's texts: `tts.evaluation.testsets`'s own
    `overlaps_heldout` (one rule for every corpus builder), or an exact match with its `HELDOUT_TEXTS`."""
    try:
        from tts.evaluation import testsets
    except ImportError:  # the evaluation package is optional
        return lambda text: False
    overlaps = getattr(testsets, "overlaps_heldout", None)
    if overlaps is not None:
        return overlaps
    held = {_plain(text) for text in getattr(testsets, "HELDOUT_TEXTS", ())}
    return lambda text: _plain(text) in held


def sentence_stream(
    seed: int,
    split: str = "train",
    *,
    kinds: Iterable[str] | None = None,
    moods: Iterable[str] | None = None,
    unique: bool = True,
    grammar: SentenceGrammar | None = None,
) -> Iterator[Sentence]:
    """An endless, deterministic stream of sentences of one split.

    The same `seed` (and grammar) always gives the same sentences in the same order, whatever
    ``PYTHONHASHSEED`` is. `kinds` and `moods` restrict the template groups (see `KINDS`, `MOODS`).
    With `unique` no sentence comes twice (compared by `split_of`'s key, so "Wait." and "Wait!" count as
    one; the stream keeps a 64-bit hash of each sentence). About 8,000 training or 1,000 held-out
    sentences a second on one CPU core. `ValueError` for an unknown split, kind or mood; `RuntimeError` when the
    selection has no new sentences left.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if not isinstance(seed, int):
        raise ValueError(f"The seed must be an integer, not {type(seed).__name__}.")
    grammar = grammar or default_grammar()
    groups = grammar.select(kinds, moods)
    cumulative, total = [], 0.0
    for group in groups:
        total += group.weight
        cumulative.append(total)
    rng = random.Random(seed)
    excluded = _evaluation_filter()
    seen: set[int] = set()
    misses = 0
    heldout = split == "heldout"
    while True:
        group = rng.choices(groups, cum_weights=cumulative)[0]
        draft = grammar._render_draft(group, rng)
        digest = _digest(draft)
        text = _finish(draft) if (digest % HELDOUT_BUCKETS == 0) == heldout else ""  # skip wrong splits early
        fits = 0 < len(text) <= MAX_CHARS and len(text.split()) <= MAX_WORDS
        if not fits or (unique and digest in seen) or excluded(text):
            misses += 1
            if misses > _GIVE_UP_AFTER:
                raise RuntimeError(f"No new {split} sentences after {misses:,} draws: the selection "
                                   f"(kinds={kinds}, moods={moods}) is exhausted.")
            continue
        misses = 0
        if unique:
            seen.add(digest)
        yield Sentence(text, group.kind, f"grammar:{group.name}", group.mood)


def sample_sentences(n: int, seed: int, split: str = "train", **options: Any) -> list[Sentence]:
    """The first `n` sentences of ``sentence_stream(seed, split, **options)``."""
    if n < 0:
        raise ValueError(f"The number of sentences must be at least 0, not {n}.")
    stream = sentence_stream(seed, split, **options)
    return [next(stream) for _ in range(n)]


def write_sentences(path: str | os.PathLike, n: int, seed: int, split: str = "train", **options: Any) -> int:
    """Write `n` sentences to `path`: JSON lines (text, kind, mood, source) for a ``.jsonl`` path, plain
    text with one sentence a line otherwise. Written to a temporary file and renamed, so an interrupted
    run leaves no partial file. Returns `n`."""
    path = Path(path)
    sentences = sample_sentences(n, seed, split, **options)
    if path.suffix == ".jsonl":
        lines = [json.dumps({"text": s.text, "kind": s.kind, "mood": s.mood, "source": s.source},
                            ensure_ascii=False) for s in sentences]
    else:
        lines = [s.text for s in sentences]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    partial.replace(path)
    return n


def phoneme_coverage(texts: Iterable[str]) -> tuple[float, tuple[str, ...]]:
    """The share of `ENGLISH_PHONEMES` that the pronunciations of `texts` use, and the missing ones."""
    from tts.text import phonemize  # starts espeak-ng: keep it out of import time

    found: set[str] = set()
    for text in texts:
        for word in phonemize(text):
            found.update(word.phonemes)
    missing = tuple(symbol for symbol in ENGLISH_PHONEMES if symbol not in found)
    return 1 - len(missing) / len(ENGLISH_PHONEMES), missing


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tts.data.sentences``: print or write sentences, or statistics about them."""
    parser = argparse.ArgumentParser(prog="python -m tts.data.sentences", description=main.__doc__)
    parser.add_argument("-n", type=int, default=20, help="number of sentences (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--kinds", nargs="*", choices=KINDS)
    parser.add_argument("--moods", nargs="*", choices=MOODS)
    parser.add_argument("--out", help="write to this file (.jsonl for JSON lines) instead of printing")
    parser.add_argument("--stats", action="store_true", help="print counts by kind and mood, lengths, coverage")
    args = parser.parse_args(argv)
    options = {"kinds": args.kinds or None, "moods": args.moods or None}
    if args.out:
        write_sentences(args.out, args.n, args.seed, args.split, **options)
        print(f"wrote {args.n} {args.split} sentences to {args.out}")
        return 0
    sentences = sample_sentences(args.n, args.seed, args.split, **options)
    if not args.stats:
        for sentence in sentences:
            print(f"{sentence.kind}\t{sentence.mood}\t{sentence.text}")
        return 0
    for field in ("kind", "mood"):
        counts: dict[str, int] = {}
        for sentence in sentences:
            counts[getattr(sentence, field)] = counts.get(getattr(sentence, field), 0) + 1
        print(field, dict(sorted(counts.items())))
    lengths = sorted(len(s.text.split()) for s in sentences)
    print(f"words: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}")
    coverage, missing = phoneme_coverage(s.text for s in sentences[:1000])
    print(f"phoneme coverage of the first {min(len(sentences), 1000)}: {coverage:.1%}; missing {' '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
