"""Expansion of written numbers in running text: money, dates, times, units, percentages, ordinals,
years, ranges, phone numbers, decimals and plain numbers. `expand_numeric` is the one entry point;
`tts.text.normalize` calls it after URLs and abbreviations are spoken.

Patterns run from the most specific to the most general, so "$3.50" is money before it could be a
decimal, and "2024-03-05" a date before it could be a range.
"""

from __future__ import annotations

import re

from tts.text.numbers import (
    MAX_CARDINAL_DIGITS,
    cardinal,
    decimal,
    digits,
    fraction,
    ordinal,
    year,
)

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
_MONTH_BY_PREFIX = {name[:3].lower(): name for name in MONTHS}
_MONTH_NAME = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
# Thousands groups start only where no "digit," comes before: from inside "1,000,000,...", every group
# would otherwise rescan the rest of the run (quadratic time).
_NUMBER = r"(?<!\d,)\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_ORD_SUFFIX = r"(?:st|nd|rd|th)"

# symbol: (unit singular, unit plural, sub-unit singular, sub-unit plural)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_CURRENCY_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
_MAGNITUDES = {
    "k": "thousand", "K": "thousand", "thousand": "thousand", "m": "million", "M": "million",
    "mn": "million", "million": "million", "b": "billion", "B": "billion", "bn": "billion",
    "billion": "billion", "t": "trillion", "T": "trillion", "tn": "trillion", "trillion": "trillion",
}

# unit as written: (singular, plural). Case matters: "m" is meters, "M" (million) is no unit.
_UNITS = {
    "mm": ("millimeter", "millimeters"), "cm": ("centimeter", "centimeters"), "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"), "in": ("inch", "inches"), "ft": ("foot", "feet"),
    "yd": ("yard", "yards"), "mi": ("mile", "miles"), "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"), "kg": ("kilogram", "kilograms"), "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"), "t": ("ton", "tons"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"), "L": ("liter", "liters"), "gal": ("gallon", "gallons"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"), "kmh": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"), "ms": ("millisecond", "milliseconds"),
    "s": ("second", "seconds"), "sec": ("second", "seconds"), "min": ("minute", "minutes"),
    "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "V": ("volt", "volts"), "mAh": ("milliamp hour", "milliamp hours"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "dB": ("decibel", "decibels"),
    "bpm": ("beat per minute", "beats per minute"), "fps": ("frame per second", "frames per second"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
# Units that are also words or letters: expanded only when written right after the digits ("5in", "3s").
_AMBIGUOUS_SPACED_UNITS = {"in", "s", "h", "t", "l"}
_UNIT_ALTERNATION = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))


def _plural_number_word(words: str) -> str:
    """ "nineteen ninety" -> "nineteen nineties", "six" -> "sixes", "hundred" -> "hundreds"."""
    head, space, last = words.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith(("x", "s")):
        last += "es"
    else:
        last += "s"
    return head + space + last


def _number_words(text: str) -> str:
    """Words of a written number: integer (with or without thousands commas) or decimal."""
    text = text.replace(",", "")
    if "." in text:
        return decimal(text)
    if len(text) > 1 and text.startswith("0"):
        return digits(text)
    return cardinal(text)


def _is_one(text: str) -> bool:
    return text.replace(",", "") in ("1", "1.0")


# --- money -----------------------------------------------------------------------------------------

_MONEY = re.compile(
    r"(?P<neg>-)?(?P<sym>[$€£¥₹])\s?(?P<num>" + _NUMBER + r")"
    r"(?:(?P<mag>[kKmMbBtT]|mn|bn|tn)\b|\s(?P<magword>thousand|million|billion|trillion)\b)?"
    r"(?:\s?/\s?(?P<per>[A-Za-z]+)\b)?"  # "$20/month"
)
_MONEY_CODE = re.compile(r"\b(?P<num>" + _NUMBER + r")\s?(?P<code>" + "|".join(_CURRENCY_CODES) + r")\b")


def _money_words(number: str, symbol: str, magnitude: str | None) -> str:
    unit, units, sub, subs = _CURRENCIES[symbol]
    number = number.replace(",", "")
    if magnitude:
        return f"{_number_words(number)} {_MAGNITUDES[magnitude]} {units}"
    whole, _, frac = number.partition(".")
    if len(frac) > 2 or (frac and not sub) or len(whole.lstrip("0")) > MAX_CARDINAL_DIGITS:
        return f"{decimal(number)} {units}"
    whole_value = int(whole or "0")
    cents = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if whole_value or not cents:
        parts.append(f"{cardinal(whole_value)} {unit if whole_value == 1 else units}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub if cents == 1 else subs}")
    return " ".join(parts)


def _expand_money(text: str) -> str:
    def spoken(match: re.Match[str]) -> str:
        words = _money_words(match["num"], match["sym"], match["mag"] or match["magword"])
        per = f" per {match['per']}" if match["per"] else ""
        return ("minus " if match["neg"] else "") + words + per

    text = _MONEY.sub(spoken, text)
    return _MONEY_CODE.sub(lambda m: _money_words(m["num"], _CURRENCY_CODES[m["code"]], None), text)


# --- dates and times -------------------------------------------------------------------------------

def _month(name: str) -> str:
    return _MONTH_BY_PREFIX[name[:3].lower()]


def _valid_day(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= (29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)


def _us_date(month: int, day: int, year_text: str | None) -> str:
    words = f"{MONTHS[month - 1]} {ordinal(day)}"
    if year_text:
        words += f", {year(year_text)}"
    return words


_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b")
_MONTH_DAY = re.compile(
    r"\b(?P<month>" + _MONTH_NAME + r")\s+(?P<day>\d{1,2})" + _ORD_SUFFIX + r"?\b(?:,?\s+(?P<year>\d{4})\b)?"
)
_DAY_MONTH = re.compile(
    r"\b(?:(?P<the>[Tt]he)\s+)?(?P<day>\d{1,2})" + _ORD_SUFFIX + r"?\s+(?:(?P<of>of)\s+)?(?P<month>"
    + _MONTH_NAME + r")(?!\w)(?:,?\s+(?P<year>\d{4})\b)?"
)
_SLASH_PAIR = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])")


def _expand_dates(text: str) -> str:
    def iso(match: re.Match[str]) -> str:
        month, day = int(match[2]), int(match[3])
        if not _valid_day(month, day):
            return match[0]
        return _us_date(month, day, match[1])

    def slash(match: re.Match[str]) -> str:
        month, day, year_text = int(match[1]), int(match[2]), match[3]
        if not _valid_day(month, day) and _valid_day(day, month):
            month, day = day, month  # day/month/year, the order outside the US
        if not _valid_day(month, day):
            return match[0]
        if len(year_text) == 2:
            year_text = ("20" if int(year_text) < 50 else "19") + year_text
        return _us_date(month, day, year_text)

    def month_day(match: re.Match[str]) -> str:
        day = int(match["day"])
        if not 1 <= day <= 31:
            return match[0]
        words = f"{_month(match['month'])} {ordinal(day)}"
        return words + (f", {year(match['year'])}" if match["year"] else "")

    def day_month(match: re.Match[str]) -> str:
        day = int(match["day"])
        if not 1 <= day <= 31:
            return match[0]
        words = f"{match['the'] or 'the'} {ordinal(day)} of {_month(match['month'])}"
        return words + (f" {year(match['year'])}" if match["year"] else "")

    def slash_pair(match: re.Match[str]) -> str:
        first, second = int(match[1]), int(match[2])
        if (first, second) == (24, 7) or (first == second and first > 12):
            return f"{cardinal(first)} {cardinal(second)}"  # "24/7", "50/50"
        if 0 < first < second <= 10:
            return fraction(first, second)  # 3/4: a fraction more often than the third of April
        if _valid_day(first, second):
            return f"{MONTHS[first - 1]} {ordinal(second)}"  # en-us: month/day
        return f"{cardinal(first)} over {cardinal(second)}"

    text = _ISO_DATE.sub(iso, text)
    text = _SLASH_DATE.sub(slash, text)
    text = _MONTH_DAY.sub(month_day, text)
    text = _DAY_MONTH.sub(day_month, text)
    return _SLASH_PAIR.sub(slash_pair, text)


_MERIDIEM = r"(?P<mer>[AaPp]\.?\s?[Mm]\b\.?)"
_CLOCK = re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?(?:\s?" + _MERIDIEM + r")?")
_RATIO = re.compile(r"(?<![\d:])(\d+):(\d+)(?![\d:])")
_HOUR_MERIDIEM = re.compile(r"\b(?P<h>\d{1,2})\s?" + _MERIDIEM)


def _meridiem(text: str | None) -> str:
    return "" if not text else (" a m" if text[0] in "Aa" else " p m")


def _expand_times(text: str) -> str:
    def clock(match: re.Match[str]) -> str:
        hour, minute = int(match["h"]), int(match["m"])
        if hour > 24 or minute > 59:
            return match[0]
        words = cardinal(hour)
        if minute == 0:
            if not match["mer"]:
                words += " o'clock" if 1 <= hour <= 12 else " hundred"
        elif minute < 10:
            words += f" oh {cardinal(minute)}"
        else:
            words += f" {cardinal(minute)}"
        if match["s"] and int(match["s"]):
            words += f" and {cardinal(int(match['s']))} seconds"
        return words + _meridiem(match["mer"]) + _kept_period(match)

    def hour_only(match: re.Match[str]) -> str:
        hour = int(match["h"])
        if not 1 <= hour <= 12:
            return match[0]
        return cardinal(hour) + _meridiem(match["mer"]) + _kept_period(match)

    text = _CLOCK.sub(clock, text)
    text = _HOUR_MERIDIEM.sub(hour_only, text)
    return _RATIO.sub(r"\1 to \2", text)  # "16:9", a score "2:1"


def _kept_period(match: re.Match[str]) -> str:
    """A "p.m." that ends a sentence also carries the sentence's full stop: keep one."""
    if not match[0].endswith("."):
        return ""
    rest = match.string[match.end():]
    return "." if not rest.strip() or re.match(r"\s+[\"'(]*[A-Z]", rest) else ""


# --- plain numbers ---------------------------------------------------------------------------------

_PHONE = re.compile(
    r"(?:\((\d{3})\)\s?|(?<![\d-])(\d{3})[-.])(\d{3})[-.](\d{4})(?![\d-])"  # (555) 123-4567, 555-123-4567
    r"|(?<![\d-])()()([2-9]\d{2})-(\d{4})(?![\d-])"  # 555-1234
)
_FEET_INCHES = re.compile(r"\b(\d{1,2})'\s?(\d{1,2})(?:\"|'')")
# A number starts after a non-digit: trying every digit of a long run as a start takes quadratic time.
_PERCENT = re.compile(r"(?P<neg>(?<![\w.])-)?(?<!\d)(?P<num>" + _NUMBER + r")\s?%")
_UNIT = re.compile(
    r"(?P<neg>(?<![\w.])-)?(?<!\d)(?P<num>" + _NUMBER + r")(?P<space>\s?)(?P<unit>" + _UNIT_ALTERNATION
    + r")(?![\w/])"
)
_ORDINAL = re.compile(r"\b((?<!\d,)\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)\b")  # (?<!\d,): see _NUMBER
_DECADE = re.compile(r"(?:\b|')(\d{1,3}0)'?s\b")
_RANGE = re.compile(r"(?<![\w.,-])(\d+)\s?-\s?(\d+)(?![\w.,]\d|-)")
_VERSION = re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?![\d.]\d)")
_NEGATIVE = re.compile(r"(?<![\w.,])-(?=\.?\d)")
_NUMBER_TOKEN = re.compile(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])\.\d+")
_LEFTOVER_DIGITS = re.compile(r"\d+")
_YEAR = re.compile(r"\b(1[1-9]\d\d|20\d\d)\b")
_LETTER_THEN_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)")
_DIGIT_THEN_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])")


def _expand_units(text: str) -> str:
    def spoken(match: re.Match[str]) -> str:
        unit = match["unit"]
        if match["space"] and unit in _AMBIGUOUS_SPACED_UNITS:
            return match[0]
        singular, plural = _UNITS[unit]
        sign = "minus " if match["neg"] else ""
        return f"{sign}{_number_words(match['num'])} {singular if _is_one(match['num']) else plural}"

    return _UNIT.sub(spoken, text)


def _expand_plain_numbers(text: str) -> str:
    def phone(match: re.Match[str]) -> str:
        return ", ".join(digits(group) for group in match.groups() if group)

    def feet_inches(match: re.Match[str]) -> str:
        feet, inches = match[1], match[2]
        return f"{cardinal(feet)} {'foot' if feet == '1' else 'feet'} {cardinal(inches)}"

    def decade(match: re.Match[str]) -> str:
        number = match[1]
        words = year(number) if len(number) == 4 else cardinal(number)
        return _plural_number_word(words)

    text = _PHONE.sub(phone, text)
    text = _FEET_INCHES.sub(feet_inches, text)  # 5'10" -> five feet ten
    text = _VERSION.sub(lambda m: " point ".join(cardinal(part) for part in m[0].split(".")), text)
    text = _RANGE.sub(r"\1 to \2", text)  # "5-10 km" -> "5 to 10 km", before units and percentages
    text = _DECADE.sub(decade, text)  # before units: "1990s" is not 1990 seconds
    text = _ORDINAL.sub(lambda m: ordinal(m[1].replace(",", "")), text)
    text = _PERCENT.sub(lambda m: ("minus " if m["neg"] else "") + f"{_number_words(m['num'])} percent", text)
    text = _expand_units(text)
    text = _NEGATIVE.sub("minus ", text)
    text = _DIGIT_THEN_LETTER.sub(" ", text)  # "3D" -> "3 D", after "1st", "5km", "1990s" are read

    def number(match: re.Match[str]) -> str:
        token = match[0]
        if _YEAR.fullmatch(token):
            return year(token)
        if token.startswith("."):
            return "point " + digits(token[1:])
        return _number_words(token)

    text = _NUMBER_TOKEN.sub(number, text)
    return _LEFTOVER_DIGITS.sub(lambda m: f" {digits(m[0])} ", text)  # "A.0", "1.2.": say every digit


def expand_numeric(text: str) -> str:
    """Speak every written number in `text`: money, dates, times, units, percentages, ordinals, years,
    ranges, phone numbers, decimals, negatives and plain integers. Other text passes through."""
    text = _LETTER_THEN_DIGIT.sub(" ", text)  # "MP3" -> "MP 3", "v1.2" -> "v 1.2"
    text = _expand_money(text)
    text = _expand_dates(text)
    text = _expand_times(text)
    return _expand_plain_numbers(text)
