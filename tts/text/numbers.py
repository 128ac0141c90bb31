"""Numbers to English words (American usage: no "and" inside numbers).

Every function takes the digits as a string or an int and returns lower-case words, hyphenated the way
they are written ("twenty-one"), so that espeak reads them as one word each.
"""

from __future__ import annotations

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = (
    "", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion", "sextillion",
    "septillion", "octillion", "nonillion", "decillion",
)
# Irregular ordinal endings; every other word just takes "th" ("twenty" -> "twentieth" via the y rule).
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
# Above this many digits a number is read digit by digit (serial numbers, not quantities).
MAX_CARDINAL_DIGITS = 3 * len(_SCALES)


def _below_thousand(n: int) -> list[str]:
    """Words of 0 < n < 1000."""
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest:
        words.append(_ONES[rest])
    return words


def cardinal(n: int | str) -> str:
    """Cardinal words of a whole number: ``cardinal(1234) == "one thousand two hundred thirty-four"``.

    Negative numbers start with "minus". Numbers too long to be quantities (more than
    `MAX_CARDINAL_DIGITS` digits) are read digit by digit.
    """
    if isinstance(n, str) and len(n.strip().lstrip("+-").lstrip("0")) > MAX_CARDINAL_DIGITS:
        # Checked on the text: int() refuses strings of more than 4300 digits (sys.get_int_max_str_digits).
        body = n.strip()
        return ("minus " if body.startswith("-") else "") + digits(body.lstrip("+-").lstrip("0"))
    value = int(n)
    if value < 0:
        return "minus " + cardinal(-value)
    if value == 0:
        return "zero"
    if len(str(value)) > MAX_CARDINAL_DIGITS:
        return digits(str(value))
    groups: list[str] = []
    scale = 0
    while value:
        value, group = divmod(value, 1000)
        if group:
            words = _below_thousand(group)
            if _SCALES[scale]:
                words.append(_SCALES[scale])
            groups.insert(0, " ".join(words))
        scale += 1
    return " ".join(groups)


def digits(text: str) -> str:
    """Read a string of digits one by one: ``digits("007") == "zero zero seven"``."""
    return " ".join(_ONES[int(ch)] for ch in text if ch.isdigit())


def ordinal_word(word: str) -> str:
    """The ordinal form of one cardinal word: "twenty-one" -> "twenty-first", "forty" -> "fortieth"."""
    head, sep, last = word.rpartition("-")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def ordinal(n: int | str) -> str:
    """Ordinal words of a whole number: ``ordinal(22) == "twenty-second"``."""
    words = cardinal(n).split(" ")
    words[-1] = ordinal_word(words[-1])
    return " ".join(words)


def year(n: int | str) -> str:
    """A year the way it is said: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand five",
    1900 -> "nineteen hundred", 1905 -> "nineteen oh five", 2024 -> "twenty twenty-four".

    Years outside 1000..9999 read as cardinals, and so do the first ten years of each millennium.
    """
    value = int(n)
    if not 1000 <= value <= 9999 or value % 1000 < 10:
        return cardinal(value)
    high, low = divmod(value, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def decimal(text: str) -> str:
    """A decimal number as written: "3.14" -> "three point one four", "-0.5" -> "minus zero point five".

    The integer part may carry thousands separators ("1,234.5"). Digits after the point are read one
    by one, as people read them.
    """
    text = text.replace(",", "")
    sign = ""
    if text.startswith(("-", "\u2212")):
        sign, text = "minus ", text[1:]
    whole, _, frac = text.partition(".")
    words = cardinal(whole) if whole else "zero"
    if frac:
        words += " point " + digits(frac)
    return sign + words


_FRACTION_DENOMINATORS = {
    2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters"),
}


def fraction(numerator: int, denominator: int) -> str:
    """A simple fraction: (1, 2) -> "one half", (3, 4) -> "three quarters", (5, 8) -> "five eighths"."""
    if denominator in _FRACTION_DENOMINATORS:
        singular, plural = _FRACTION_DENOMINATORS[denominator]
    else:
        singular = ordinal(denominator)
        plural = singular + "s"
    return f"{cardinal(numerator)} {singular if numerator == 1 else plural}"
