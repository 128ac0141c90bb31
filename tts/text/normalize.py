"""Text normalization: written English -> the words a reader would say, keeping sentence punctuation.

`normalize_text` runs a fixed pipeline: unicode clean-up, URLs and emails, abbreviations and initials,
Roman numerals in safe contexts, numbers of every kind (`tts.text.numeric`), symbols, and a final pass
that keeps only words and the punctuation that carries prosody (. , ? ! ; : and "...").
"""

from __future__ import annotations

import re
import unicodedata

from tts.text.numbers import cardinal, ordinal
from tts.text.numeric import expand_numeric

# --- unicode -----------------------------------------------------------------------------------------

_CHAR_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2039": '"', "\u203a": '"',
    "\u2212": "-", "\u2010": "-", "\u2011": "-",  # minus sign, hyphens
    "\u2012": "\u2014", "\u2013": "\u2014", "\u2015": "\u2014",  # figure/en/horizontal dash -> em dash
    "\u2026": "...", "\u2044": "/", "\u00b7": " ", "\u2022": " ",
    "\u00b2": " squared", "\u00b3": " cubed", "\u00d7": " times ", "\u00f7": " divided by ",
    "\u00a7": " section ", "\u00a9": " copyright ", "\u00ae": " ", "\u2122": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
})


def _clean_unicode(text: str) -> str:
    text = text.translate(_CHAR_MAP)
    text = unicodedata.normalize("NFKC", text).replace("\u2044", "/")  # full-width digits, "½" -> "1/2"
    # A dash between numbers is a range ("1990–1995"); elsewhere it is a pause.
    return re.sub(r"(?<=\d)\s*\u2014\s*(?=\d)", "-", text)


# --- URLs and emails ---------------------------------------------------------------------------------

# Domains written without "https://" or "www." are recognised only with these endings, in lower case:
# "the end.It was" and "done.No" are typos, not addresses.
_BARE_DOMAIN_TLDS = (
    "com|org|net|edu|gov|io|ai|dev|app|co|uk|de|fr|eu|info|biz|tv|ly|gg|xyz|tech|online|site|studio"
    "|blog|cloud|news|store|shop|fm"
)
_SPOKEN_TLDS = {"io": "I O", "ai": "A I", "uk": "U K", "us": "U S", "eu": "E U", "tv": "T V", "fm": "F M"}
_URL = re.compile(
    r"\b(?i:https?://|ftp://|www\.)[^\s<>\"]+"
    r"|\b(?:[A-Za-z0-9-]+\.)+(?:" + _BARE_DOMAIN_TLDS + r")\b(?:/[^\s<>\"]*)?"
)
_FILE_NAME = re.compile(
    r"\b([\w-]+)\.(pdf|txt|docx?|xlsx?|pptx?|png|jpe?g|gif|svg|mp3|mp4|wav|flac|ogg|py|csv|tsv|json|yaml"
    r"|zip|exe|html?|md|js|ts|cpp|rs)\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL_SYMBOLS = {
    ".": " dot ", "/": " slash ", "-": " dash ", "_": " underscore ", "@": " at ", ":": " colon ",
    "?": " question mark ", "=": " equals ", "&": " and ", "#": " hash ", "+": " plus ", "~": " tilde ",
    "%": " percent ",
}


def _speak_address(address: str) -> str:
    """Spell out the punctuation of a URL or email ("example.com" -> "example dot com")."""
    address = re.sub(r"^(?:https?|ftp)://", "", address, flags=re.IGNORECASE)
    address = re.sub(r"^www\.", "w w w.", address, flags=re.IGNORECASE).rstrip("/")
    parts = re.split(r"([./\-_@:?=&#+~%])", address)
    spoken = []
    for index, part in enumerate(parts):
        if part in _URL_SYMBOLS:
            spoken.append(_URL_SYMBOLS[part])
        elif part:
            after_dot = index >= 2 and parts[index - 1] == "."
            spoken.append(_SPOKEN_TLDS.get(part.lower(), part) if after_dot else part)
    return " ".join("".join(spoken).split())


MAX_ADDRESS_CHARS = 256
"""Longest run of non-space characters read as a URL, email or file name; longer runs are left to the
final clean-up. The address patterns backtrack over a run once per word boundary in it (quadratic time),
and nobody listens to a 20,000-character address."""


def _expand_addresses(text: str) -> str:
    def url(match: re.Match[str]) -> str:
        address = match[0]
        trailing = re.search(r"[.,;:!?)\]'\"]+$", address)  # sentence punctuation after a URL
        tail = trailing[0] if trailing else ""
        return _speak_address(address[: len(address) - len(tail)]) + tail

    def token(match: re.Match[str]) -> str:
        # No address pattern crosses whitespace, so each run is expanded on its own, exactly as in place.
        run = match[0]
        if len(run) > MAX_ADDRESS_CHARS:
            return run
        run = _EMAIL.sub(lambda m: _speak_address(m[0]), run)
        run = _URL.sub(url, run)
        return _FILE_NAME.sub(r"\1 dot \2", run)

    return re.sub(r"\S+", token, text)


# --- abbreviations, initials --------------------------------------------------------------------------

# Abbreviations that name or title someone; they never end a sentence.
_TITLES = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Mx": "Mix", "Prof": "Professor", "Gen": "General",
    "Capt": "Captain", "Lt": "Lieutenant", "Col": "Colonel", "Sgt": "Sergeant", "Rev": "Reverend",
    "Hon": "Honorable", "Gov": "Governor", "Sen": "Senator", "Rep": "Representative", "Mt": "Mount",
    "Ft": "Fort", "Pres": "President", "Supt": "Superintendent", "Cmdr": "Commander",
}
# Abbreviations that may end a sentence: their period is kept when a new sentence follows.
_TRAILING = {
    "Jr": "Junior", "Sr": "Senior", "Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation",
    "Co": "Company", "Bros": "Brothers", "Ave": "Avenue", "Blvd": "Boulevard", "Rd": "Road", "Ln": "Lane",
    "Hwy": "Highway", "Apt": "Apartment", "Dept": "Department", "Univ": "University", "Assn": "Association",
    "etc": "et cetera", "approx": "approximately", "dept": "department", "misc": "miscellaneous",
    "incl": "including", "esp": "especially", "fig": "figure",
    "Fig": "figure", "est": "established", "vol": "volume", "Vol": "volume",
}
_DOTTED = {"e.g.": "for example", "i.e.": "that is", "a.k.a.": "also known as", "cf.": "compare",
           "vs.": "versus", "viz.": "namely", "ca.": "circa", "et al.": "and others"}

_TITLE_RE = re.compile(r"\b(" + "|".join(_TITLES) + r")\.(?=\s)")
_TRAILING_RE = re.compile(r"\b(" + "|".join(_TRAILING) + r")\.")
_DOTTED_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(_DOTTED, key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)
_ACRONYM = re.compile(r"(?<![\w.])((?:[A-Za-z]\.){2,})(?!\w)")  # "U.S.A." -> "U S A"
_INITIAL = re.compile(r"(?<![\w.])([A-Z])\.(?=\s+(?:[A-Z]\.|[A-Z][a-z]))")  # "J. K. Rowling"
_NAME_BEFORE = re.compile(r"\b[A-Z][a-z]+\s*$")  # "Elm St.": a capitalized word before "St."


def _ends_sentence(text: str, end: int) -> bool:
    """Whether a period at text[end - 1] is also the end of a sentence."""
    rest = text[end:]
    return not rest.strip() or re.match(r"\s+[\"'(\[]*[A-Z]", rest) is not None


def _expand_abbreviations(text: str) -> str:
    def dr_st(match: re.Match[str]) -> str:
        word, end, source = match[1], match.end(), match.string
        # Only the 64 characters before are searched: searching all the text before every "St." is quadratic.
        after_name = _NAME_BEFORE.search(source, max(0, match.start() - 64), match.start()) is not None
        next_is_name = re.match(r"\s+[A-Z]", source[end:]) is not None  # "St. Louis", "Dr. Smith"
        if next_is_name and not after_name:
            return "Doctor" if word == "Dr" else "Saint"
        spoken = "Drive" if word == "Dr" else "Street"
        return spoken + ("." if _ends_sentence(source, end) else "")

    def trailing(match: re.Match[str]) -> str:
        return _TRAILING[match[1]] + ("." if _ends_sentence(match.string, match.end()) else "")

    def dotted(match: re.Match[str]) -> str:
        spoken = _DOTTED[match[1].lower()]
        return spoken + ("." if match[1].endswith(".") and not match.string[match.end():].strip() else "")

    text = _DOTTED_RE.sub(dotted, text)
    text = re.sub(r"\b(Dr|St)\.", dr_st, text)
    text = _TITLE_RE.sub(lambda m: _TITLES[m[1]], text)
    text = re.sub(r"\b(No|Nos|no)\.\s?(?=\d)", "number ", text)
    text = re.sub(r"\b(?:p|pp)\.\s?(?=\d)", "page ", text)
    text = _TRAILING_RE.sub(trailing, text)
    text = re.sub(r"\bvs\b|\bv\.(?=\s)", "versus", text)

    def acronym(match: re.Match[str]) -> str:
        letters = " ".join(match[1].replace(".", ""))
        return letters + ("." if _ends_sentence(match.string, match.end()) else "")

    text = _ACRONYM.sub(acronym, text)
    return _INITIAL.sub(r"\1", text)


# --- Roman numerals ------------------------------------------------------------------------------------

_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_ROMAN_VALID = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
# Words after which a Roman numeral is a count: "Chapter IV" -> "Chapter four".
_COUNTED = (
    "Chapter|Part|Book|Volume|Act|Scene|Section|Article|Appendix|Phase|Level|Episode|Season|Stage"
    "|Round|Class|Type|Title|Grade|Tier|Psalm|Canto|Movement|Symphony|World War|Super Bowl|Apollo|Vatican"
)
# Names after which a Roman numeral is a regnal number: "Henry VIII" -> "Henry the Eighth".
_REGNAL = (
    "Henry|Louis|Elizabeth|George|Edward|Charles|James|William|Richard|John|Paul|Pius|Benedict|Gregory"
    "|Leo|Innocent|Clement|Urban|Boniface|Alexander|Philip|Frederick|Peter|Catherine|Mary|Victor"
    "|Ramesses|Ramses|Napoleon|Constantine|Nicholas|Ivan|Francis|Otto|Ludwig|Carlos|Felipe|Juan"
    "|Alfonso|Ferdinand|Gustav|Haakon|Olaf|Christian|Harald|Wilhelm|Rudolf|Sixtus|Stephen|Malcolm|David"
    "|Robert|Anne|Victoria"
)
_COUNTED_RE = re.compile(r"\b(" + _COUNTED + r")\s+([IVXLC]+)\b(?!['\w])")
_REGNAL_RE = re.compile(r"\b(" + _REGNAL + r")\s+([IVX]+)\b(?!['\w])")


def roman_to_int(numeral: str) -> int | None:
    """The value of a well-formed upper-case Roman numeral, or None ("IIII", "IC" are not numerals)."""
    if not numeral or not _ROMAN_VALID.fullmatch(numeral):
        return None
    total = 0
    for current, following in zip(numeral, numeral[1:] + " "):
        value = _ROMAN_VALUES[current]
        total += -value if following != " " and _ROMAN_VALUES[following] > value else value
    return total


def _expand_roman(text: str) -> str:
    def counted(match: re.Match[str]) -> str:
        value = roman_to_int(match[2])
        return match[0] if value is None else f"{match[1]} {cardinal(value)}"

    def regnal(match: re.Match[str]) -> str:
        value = roman_to_int(match[2])
        rest = match.string[match.end():]
        # A lone "I" after a name is usually the pronoun ("Elizabeth I think"); read it only before a
        # pause or "of" ("Elizabeth I of England").
        if value is None or match[2] == "I" and not re.match(r"\s*(?:$|[.,;:!?)]|of\b)", rest):
            return match[0]
        return f"{match[1]} the {ordinal(value).capitalize()}"

    text = _COUNTED_RE.sub(counted, text)
    return _REGNAL_RE.sub(regnal, text)


# --- symbols and final clean-up ----------------------------------------------------------------------

_SYMBOLS = [
    (re.compile(r"\b([A-G])#(?!\w)"), r"\1 sharp"),  # C#, F#
    (re.compile(r"#(?=\d)"), " number "),
    (re.compile(r"#(?=\w)"), " hashtag "),
    (re.compile(r"\band/or\b"), "and or"),
    (re.compile(r"\bw/o\b"), "without"),
    (re.compile(r"\bw/(?=\s)"), "with"),
    (re.compile(r"(?<=\w)/(?=\w)"), " slash "),
    (re.compile(r"&"), " and "),
    (re.compile(r"@"), " at "),
    (re.compile(r"\+"), " plus "),
    (re.compile(r"="), " equals "),
    (re.compile(r"(?<!\w)~(?=\s?\w)"), " about "),
    (re.compile(r"<"), " less than "),
    (re.compile(r">"), " greater than "),
    (re.compile(r"%"), " percent "),
    (re.compile(r"°"), " degrees "),
    (re.compile(r"\$"), " dollars "),
]
_PAUSE_CHARS = re.compile(r"\s*(?:\u2014+|(?<!\w)-{1,3}(?!\w)|--+|[()\[\]{}|])\s*")
_SPEAKABLE = re.compile(r"[^\w\s.,?!;:'\-]|_")
_PUNCT_RUN = re.compile(r"(?:\s*(?:\.\.\.|[.,?!;:]))+")
_PRIORITY = ("?", "!", "...", ".", ";", ":", ",")


def _merge_punctuation(match: re.Match[str]) -> str:
    marks = re.findall(r"\.\.\.|[.,?!;:]", match[0])
    if "..." not in marks and marks.count(".") >= 3:
        marks.append("...")
    return next(mark for mark in _PRIORITY if mark in marks)


def _cleanup(text: str) -> str:
    # Whitespace is collapsed at the end anyway; collapsing it first keeps the patterns below that start
    # with \s* from rescanning a long run of spaces at every position of it (quadratic time).
    text = re.sub(r"\s+", " ", text)
    text = _PAUSE_CHARS.sub(", ", text)
    text = text.replace('"', " ")
    text = re.sub(r"(?<!\w)'+|'+(?!\w)", " ", text)  # quotes, not apostrophes ("don't" stays)
    text = re.sub(r"(?<!\w)-+|-+(?!\w)", " ", text)  # hyphens that join nothing
    text = re.sub(r"\s+", " ", _SPEAKABLE.sub(" ", text))  # emoji, symbols, controls; collapsed as above
    text = _PUNCT_RUN.sub(_merge_punctuation, text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+(?=\.\.\.|[.,?!;:])", "", text)
    text = re.sub(r"(\.\.\.|[.,?!;:])(?=[^\s.,?!;:])", r"\1 ", text)
    return re.sub(r"^(?:\.\.\.|[.,?!;:]\s*)+", "", text).strip()


def normalize_text(text: str) -> str:
    """Rewrite `text` as the English words a reader would say, keeping sentence punctuation.

    Numbers, money, dates, times, units, percentages, abbreviations, symbols, URLs and emails become
    words; Roman numerals become numbers only in safe contexts ("Chapter IV", "Henry VIII"); unicode
    quotes, dashes and ellipses are normalized. Returns "" when nothing speakable is left (for example
    emoji only); never raises for any string.
    """
    text = _clean_unicode(text)
    text = _expand_addresses(text)
    text = _expand_roman(text)
    text = _expand_abbreviations(text)
    text = re.sub(r"#(?=\d)", " number ", text)  # "#1", before the digits become words
    text = expand_numeric(text)
    for pattern, spoken in _SYMBOLS:
        text = pattern.sub(spoken, text)
    return _cleanup(text)
