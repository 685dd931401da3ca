"""What a field's reading means: amounts and dates parsed from the writing, digit patterns, checksums.

`parse_amount("1.250,00")` -> "1250.00"; `parse_date("12/03/24")` -> "2024-03-12"; `luhn_valid("79927398713")`;
`FieldSpec(kind="digits", pattern="digits{5}").check(reading)` -> (valid, value, reason); `shape_problem("26104/1967")`
-> why separators make no shape numbers are written in (None for "26/04/1967"). A reading is anything with
`text` (digits only) and `raw` (the digits with the separators `. , - / :` and group spaces as written): a
ReadResult or one of its alternatives. Pure Python; docs/templates.md describes every rule.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from decimal import Decimal

from digitscan.errors import FieldFormatError

KINDS = ("digits", "amount", "date", "comb")  # comb: digits written one per printed box
DATE_ORDERS = ("dmy", "mdy", "ymd")
VALUE_FORMATS = ("amount", "date", "digits")  # `read --format`: one number per image parsed as a kind
VALUE_KINDS = ("amount", "date")  # kinds whose value is parsed from the writing (and may be taken from an alternative)
DIGIT_KINDS = ("digits", "comb")  # kinds whose value is the text itself, and the only ones a checksum applies to

_AMOUNT_TRAILING = ".,- "  # "15.000." and "15,-" end with a mark that says nothing: dropped
_DATE_SEPARATOR = re.compile(r"\s*([/.\-])\s*|\s+")  # one mark with optional spaces around it, or a gap
_DIGITS_PATTERN = re.compile(r"digits(?:\{(\d+)(?:,(\d+))?\})?")
_TWO_DIGIT_YEAR_PIVOT = 70  # 00-69 -> 2000-2069, 70-99 -> 1970-1999


def parse_amount(raw: str) -> str:
    """A written amount -> its decimal string: "1.250,00" -> "1250.00", "1,250" -> "1250", "12,5" -> "12.5".

    The decimal mark is decided from the writing. With both "." and "," the last one is the decimal mark. With one
    kind only: a mark written twice or more separates thousands; written once, it separates thousands when exactly
    3 digits follow it (and the group before it is not a lone 0: "0.125" is a fraction), and is the decimal mark
    when 1 or 2 follow. Spaces always separate thousands ("1 250,00"). Thousands groups must be consistent: 1-3
    digits, then groups of exactly 3. Trailing marks ("15.000.", "15,-") are dropped; the decimals are kept as
    written ("1250,00" -> "1250.00"). FieldFormatError, with the reason, for anything else.
    """
    text = raw.strip().rstrip(_AMOUNT_TRAILING)
    if not any(c.isdigit() for c in text):
        raise FieldFormatError(f"{raw!r} is not an amount: no digits")
    for character in text:
        if character not in "0123456789., ":
            raise FieldFormatError(f"{raw!r} is not an amount: {character!r} has no place in one")
    text = re.sub(r" +", " ", text)
    parts = re.split(r"([., ])", text)  # digit groups at even indexes, separators between them
    groups, marks = parts[0::2], parts[1::2]
    if "" in groups:
        raise FieldFormatError(f"{raw!r} is not an amount: two separators in a row, or one at the start")
    decimal_at = _decimal_mark_index(raw, groups, marks)
    whole = groups if decimal_at is None else groups[: decimal_at + 1]
    decimals = None if decimal_at is None else groups[decimal_at + 1]
    if len(whole) > 1 and not (1 <= len(whole[0]) <= 3 and all(len(g) == 3 for g in whole[1:])):
        raise FieldFormatError(f"{raw!r} is not an amount: inconsistent digit grouping (thousands are groups of 3)")
    number = "".join(whole) + ("" if decimals is None else "." + decimals)
    return str(Decimal(number))  # drops leading zeros, keeps the decimals as written


def _decimal_mark_index(raw: str, groups: list[str], marks: list[str]) -> int | None:
    """The index in `marks` of the decimal mark, None when the amount is whole (see parse_amount)."""
    kinds = {m for m in marks if m != " "}
    if not kinds:
        return None
    if len(kinds) == 2:
        last = max(i for i, m in enumerate(marks) if m != " ")
        if last != len(marks) - 1 or marks.count(marks[last]) > 1:
            raise FieldFormatError(f"{raw!r} is not an amount: the decimal mark {marks[last]!r} must come once, "
                                   f"after every thousands separator")
        return last
    (kind,) = kinds
    at = [i for i, m in enumerate(marks) if m == kind]
    if len(at) > 1 or at[0] != len(marks) - 1:
        return None  # a decimal mark comes once, last: these separate thousands (their groups checked by the caller)
    after = groups[-1]
    if len(after) in (1, 2) or (len(after) == 3 and groups == ["0", after]):
        return at[0]
    if len(after) == 3:
        return None
    raise FieldFormatError(f"{raw!r} is not an amount: {len(after)} digits after {kind!r} make it neither a "
                           f"decimal mark (1-2 digits) nor a thousands separator (3)")


def parse_date(raw: str, order: str = "dmy") -> str:
    """A written date -> "YYYY-MM-DD": "12/03/2024", "12.3.24", "2024-03-12", "12 03 2024", "120324", "12032024".

    Groups are separated by "/", "." or "-" (the same mark both times; spaces around it are allowed) or by spaces,
    or not at all: 6 digits are DDMMYY, MMDDYY or YYMMDD by `order`, 8 digits DDMMYYYY, MMDDYYYY or YYYYMMDD, except
    that 8 digits starting with a year 1900-2099 and a month 01-12 are always YYYYMMDD (no day-first or month-first
    date with such a year can start like that). A first group of 4 digits is a year: year-month-day whatever the
    order. Two-digit years: 00-69 are 2000-2069, 70-99 are 1970-1999. FieldFormatError for anything else,
    including dates not on the calendar (31/02).
    """
    if order not in DATE_ORDERS:
        raise ValueError(f"unknown date order {order!r}; choose one of: {', '.join(DATE_ORDERS)}")
    text = raw.strip()
    if _ascii_digits(text):
        named = _undelimited_date(raw, text, order)
    else:
        parts = _DATE_SEPARATOR.split(text)
        groups, marks = parts[0::2], {m for m in parts[1::2] if m is not None}
        if len(groups) != 3 or not all(_ascii_digits(g) for g in groups):
            raise FieldFormatError(f"{raw!r} is not a date: expected day, month and year separated by / . - or "
                                   f"spaces")
        if len(marks) > 1:
            raise FieldFormatError(f"{raw!r} is not a date: two different separators")
        if len(groups[0]) == 4:
            order = "ymd"
        named = dict(zip(order, groups))  # {"d": ..., "m": ..., "y": ...}
    if len(named["y"]) not in (2, 4) or len(named["m"]) > 2 or len(named["d"]) > 2:
        raise FieldFormatError(f"{raw!r} is not a date in {'-'.join(order.upper())} order: the year has 2 or 4 "
                               f"digits, the month and the day 1 or 2")
    year = int(named["y"])
    if len(named["y"]) == 2:
        year += 2000 if year < _TWO_DIGIT_YEAR_PIVOT else 1900
    try:
        return datetime.date(year, int(named["m"]), int(named["d"])).isoformat()
    except ValueError as exc:  # month 13, day 31 of February, year 0
        raise FieldFormatError(f"{raw!r} is not a date on the calendar: {exc}") from None


def _undelimited_date(raw: str, text: str, order: str) -> dict[str, str]:
    """{"d", "m", "y"}: the groups of a date written without separators (see parse_date)."""
    if len(text) == 8 and text[:2] in ("19", "20") and 1 <= int(text[4:6]) <= 12:
        order = "ymd"  # ISO 8601's basic form, YYYYMMDD
    elif len(text) not in (6, 8):
        raise FieldFormatError(f"{raw!r} is not a date: without separators a date has 6 or 8 digits")
    named, at = {}, 0
    for part in order:
        width = len(text) - 4 if part == "y" else 2
        named[part] = text[at: at + width]
        at += width
    return named


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone also accepts "²" and other scripts' digits


_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")
_DASHED = re.compile(r"\d+(-\d+)+")  # IDs and telephone numbers: 555-1234, 12-345-67
_MONTH_YEAR = re.compile(r"\d{1,2}/(\d{2}|\d{4})")  # a card's 09/27, a period's 3/2024


def shape_problem(raw: str) -> str | None:
    """Why the separators of a reading with no expected format (a page's field, a template's digits field) make
    none of the shapes numbers are written in, or None when they make one (or there are none: digits and group
    spaces). The shapes: an amount (parse_amount), a date in any order (parse_date), a time (9:30, 12:05:59),
    digit groups joined by dashes (555-1234) and a month with its year (09/27, 3/2024). A separator misread as a
    digit, or a digit as a separator, mostly breaks the shape ("26104/1967", "0.65106393", "19.10.42011"): such a
    reading needs a person's check."""
    text = raw.strip()
    if all(c.isdigit() or c == " " for c in text):
        return None
    if any(pattern.fullmatch(text) for pattern in (_TIME, _DASHED, _MONTH_YEAR)):
        return None
    if _parses(parse_amount, text) or any(_parses(parse_date, text, order) for order in DATE_ORDERS):
        return None
    return f"{raw!r} is no amount, date, time or dashed number: a separator may be misread"


def _parses(parse, *args) -> bool:
    try:
        parse(*args)
    except FieldFormatError:
        return False
    return True


def luhn_valid(text: str) -> bool:
    """The Luhn check (ISO/IEC 7812: payment cards, IMEI): from the right, every second digit doubled (minus 9 when
    over 9), the sum divisible by 10. False for fewer than 2 digits or anything but digits."""
    if len(text) < 2 or not _ascii_digits(text):
        return False
    total = 0
    for position, character in enumerate(reversed(text)):
        digit = int(character)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def mod97_10_valid(text: str) -> bool:
    """ISO 7064 MOD 97-10, the check of IBANs (after their letters become numbers): the number mod 97 is 1. False for
    fewer than 3 digits (a payload and two check digits) or anything but digits."""
    if len(text) < 3 or not _ascii_digits(text):
        return False
    return int(text) % 97 == 1


CHECKSUMS = {"luhn": luhn_valid, "mod97-10": mod97_10_valid}


@dataclass
class FieldSpec:
    """What a field holds and what makes a reading of it valid.

    kind: digits | comb (value = the text) | amount (value = parse_amount(raw)) | date (value = parse_date(raw,
    date_order)). pattern (None: the kind's own: "digits" for digits and comb, else "amount" or "date"):
    "digits" (at least one digit), "digits{5}", "digits{4,6}" (digit counts of the text), "amount", "date" (only
    with their own kind), or "regex:<expression>", which must match the whole raw reading (separators included,
    so "regex:\\d{5}(-\\d{4})?" accepts a ZIP+4). checksum: None, "luhn" or "mod97-10", on the text (digit kinds
    only). A bad combination raises ValueError with the reason.
    """

    kind: str = "digits"
    pattern: str | None = None
    checksum: str | None = None
    date_order: str = "dmy"
    _digit_range: tuple[int, int | None] | None = field(default=None, init=False, repr=False, compare=False)
    _regex: re.Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.date_order not in DATE_ORDERS:
            raise ValueError(f"unknown date order {self.date_order!r}; choose one of: {', '.join(DATE_ORDERS)}")
        if self.checksum is not None and self.checksum not in CHECKSUMS:
            raise ValueError(f"unknown checksum {self.checksum!r}; choose one of: {', '.join(CHECKSUMS)}, or null")
        if self.checksum is not None and self.kind not in DIGIT_KINDS:
            raise ValueError(f"a checksum applies to the digits of a digits or comb field, not to kind {self.kind!r}")
        if self.pattern is None:
            self.pattern = "digits" if self.kind in DIGIT_KINDS else self.kind
        if self.pattern.startswith("regex:"):
            try:
                self._regex = re.compile(self.pattern[len("regex:"):])
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        elif self.pattern in ("amount", "date"):
            if self.pattern != self.kind:
                raise ValueError(f"pattern {self.pattern!r} needs kind {self.pattern!r}, not {self.kind!r}")
        elif (match := _DIGITS_PATTERN.fullmatch(self.pattern)) is not None:
            least = int(match[1]) if match[1] is not None else 1
            most = int(match[2]) if match[2] is not None else (least if match[1] is not None else None)
            if least < 1 or (most is not None and most < least):
                raise ValueError(f"pattern {self.pattern!r}: the counts must be at least 1 and in increasing order")
            self._digit_range = (least, most)
        else:
            raise ValueError(f"unknown pattern {self.pattern!r}; use digits, digits{{N}}, digits{{MIN,MAX}}, "
                             f"amount, date or regex:EXPRESSION")

    def raw(self, reading) -> str:
        """The reading as written in this field: a comb's cells hold one digit each, so the gaps between them
        (which the reader may take for group spaces) are not part of it."""
        raw = reading_raw(reading)
        return raw.replace(" ", "") if self.kind == "comb" else raw

    def check(self, reading) -> tuple[bool, str | None, str | None]:
        """(valid, value, reason) for a reading (.text, .raw): value is the parsed value when valid, else None;
        reason says why it is not valid (None when it is)."""
        text, raw = reading.text, self.raw(reading)
        try:
            if self.kind == "amount":
                value = parse_amount(raw)
            elif self.kind == "date":
                value = parse_date(raw, self.date_order)
            else:
                value = text
        except FieldFormatError as exc:
            return False, None, str(exc)
        if self._digit_range is not None:
            least, most = self._digit_range
            if not text:
                return False, None, "no digits read"
            if len(text) < least or (most is not None and len(text) > most):
                wanted = f"{least}" if least == most else f"at least {least}" if most is None else f"{least} to {most}"
                return False, None, f"{wanted} digit{'s' if most != 1 else ''} expected, {len(text)} read"
        if self._regex is not None and self._regex.fullmatch(raw) is None:
            return False, None, f"{raw!r} does not match {self.pattern!r}"
        if self.checksum is not None and not CHECKSUMS[self.checksum](text):
            return False, None, f"the {self.checksum} checksum of {text!r} fails"
        return True, value, None


    def parse(self, reading) -> tuple[bool, str | None, str | None]:
        """check, except that an amount or a date that does not parse takes its value from the most likely of the
        reading's alternatives that does (a speck read as a separator, a separator read as a 1): then (True,
        value, a note saying so), and the field needs review. Digit patterns and checksums are never corrected
        this way: a Luhn check would let one wrong alternative in ten through by chance."""
        valid, value, reason = self.check(reading)
        if valid or self.kind not in VALUE_KINDS:
            return valid, value, reason
        for alternative in getattr(reading, "alternatives", []):  # best first
            passes, corrected, _ = self.check(alternative)
            if passes:
                return True, corrected, (f"{self.raw(reading)!r} does not parse ({reason}): the value is read from "
                                         f"the alternative {self.raw(alternative)!r}")
        return valid, value, reason


def reading_raw(reading) -> str:
    """The reading as written; its text when the reader gives no separators (raw "" with digits read)."""
    return reading.raw or reading.text
