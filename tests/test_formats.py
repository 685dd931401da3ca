"""Field formats: amounts and dates parsed from the writing, digit patterns, Luhn and ISO 7064 MOD 97-10."""

import pytest

from digitscan.errors import FieldFormatError
from digitscan.fields.formats import FieldSpec, luhn_valid, mod97_10_valid, parse_amount, parse_date, shape_problem
from digitscan.recognize import Alternative, ReadResult


def reading(raw: str, text: str | None = None) -> ReadResult:
    text = "".join(c for c in raw if c.isdigit()) if text is None else text
    return ReadResult(text=text, confidence=0.99, digits=[], raw=raw)


# ---------------------------------------------------------------------------------------------------------------
# Amounts
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, value", [
    ("1.250,00", "1250.00"),  # both marks: the last one is the decimal mark
    ("1,250.00", "1250.00"),
    ("1.250.000,75", "1250000.75"),
    ("1,250,000.75", "1250000.75"),
    ("1250,00", "1250.00"),  # one mark, 2 digits after it: decimal, and the 2 decimals are kept
    ("12,5", "12.5"),
    ("12.50", "12.50"),
    ("1.250", "1250"),  # one mark, 3 digits after it: thousands
    ("1,250", "1250"),
    ("1.250.000", "1250000"),  # one mark twice: thousands
    ("0,125", "0.125"),  # ... but never after a lone 0
    ("1 250,00", "1250.00"),  # spaces separate thousands
    ("1 250 000", "1250000"),
    ("12 345.6", "12345.6"),
    ("15.000.", "15000"),  # a trailing mark with nothing after it is dropped
    ("15,-", "15"),
    ("007", "7"),
    ("1250", "1250"),
    (" 42 ", "42"),
])
def test_amounts_are_read_as_written(raw, value):
    assert parse_amount(raw) == value


@pytest.mark.parametrize("raw, why", [
    ("1.25.0", "inconsistent digit grouping"),  # thousands groups must have 3 digits
    ("1,25,000", "inconsistent digit grouping"),
    ("1234.567", "inconsistent digit grouping"),  # the first group has 1-3 digits
    ("1,5.000", "inconsistent digit grouping"),
    ("12.3456", "neither a decimal mark"),  # 4 digits after a single mark
    ("1.250,000,00", "must come once"),  # the decimal mark twice
    ("1,250.000,5", "must come once"),
    ("1..5", "two separators in a row"),
    (",50", "two separators in a row, or one at the start"),
    ("12/03", "'/' has no place"),
    ("", "no digits"),
    (".,", "no digits"),
])
def test_bad_amounts_raise_one_clear_line(raw, why):
    with pytest.raises(FieldFormatError) as caught:
        parse_amount(raw)
    message = str(caught.value)
    assert why in message and repr(raw) in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, order, iso", [
    ("12/03/2024", "dmy", "2024-03-12"),
    ("12/03/2024", "mdy", "2024-12-03"),
    ("12.3.24", "dmy", "2024-03-12"),
    ("12-03-2024", "dmy", "2024-03-12"),
    ("12 03 2024", "dmy", "2024-03-12"),
    ("12. 03. 2024", "dmy", "2024-03-12"),
    ("3/12/24", "mdy", "2024-03-12"),
    ("24/03/12", "ymd", "2024-03-12"),
    ("2024-03-12", "dmy", "2024-03-12"),  # a 4-digit first group is a year, whatever the order
    ("2024/3/12", "mdy", "2024-03-12"),
    ("120324", "dmy", "2024-03-12"),  # 6 undelimited digits
    ("031224", "mdy", "2024-03-12"),
    ("240312", "ymd", "2024-03-12"),
    ("12032024", "dmy", "2024-03-12"),  # 8 undelimited digits
    ("03122024", "mdy", "2024-03-12"),
    ("20240312", "dmy", "2024-03-12"),  # starts with a year and a month: ISO 8601's basic form
    ("19121990", "dmy", "1990-12-19"),  # starts with 19, but "19" is no month: day first
    ("29/02/2024", "dmy", "2024-02-29"),  # a leap year
])
def test_dates(raw, order, iso):
    assert parse_date(raw, order) == iso


@pytest.mark.parametrize("raw, year", [("1/1/00", 2000), ("1/1/69", 2069), ("1/1/70", 1970), ("31/12/99", 1999)])
def test_two_digit_years_pivot_at_70(raw, year):
    assert parse_date(raw).startswith(f"{year}-")


@pytest.mark.parametrize("raw, order, why", [
    ("31/02/2024", "dmy", "not a date on the calendar"),
    ("29/02/2023", "dmy", "not a date on the calendar"),
    ("12/13/2024", "dmy", "not a date on the calendar"),  # month 13
    ("13/12/2024", "mdy", "not a date on the calendar"),
    ("12/03", "dmy", "expected day, month and year"),
    ("12/03/2024/1", "dmy", "expected day, month and year"),
    ("12/03.2024", "dmy", "two different separators"),
    ("1/2/345", "dmy", "the year has 2 or 4 digits"),
    ("123/4/2024", "dmy", "the month and the day 1 or 2"),
    ("1234567", "dmy", "6 or 8 digits"),
    ("12:03:2024", "dmy", "expected day, month and year"),
    ("", "dmy", "expected day, month and year"),
])
def test_bad_dates_raise_one_clear_line(raw, order, why):
    with pytest.raises(FieldFormatError) as caught:
        parse_date(raw, order)
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_date_order_is_refused():
    with pytest.raises(ValueError, match="unknown date order"):
        parse_date("12/03/2024", "dym")


# ---------------------------------------------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------------------------------------------

LUHN_VALID = ["79927398713", "4111111111111111", "5555555555554444", "378282246310005"]
# GB82 WEST 1234 5698 7654 32 with the country and check digits moved to the end and letters as numbers (W=32, ...)
IBAN_DIGITS = "3214282912345698765432161182"
MOD97_VALID = [IBAN_DIGITS, "79444"]  # 79444: ISO 7064's example, 794 with check digits 44


@pytest.mark.parametrize("check, number", [(luhn_valid, n) for n in LUHN_VALID]
                         + [(mod97_10_valid, n) for n in MOD97_VALID])
def test_checksums_accept_known_numbers_and_catch_every_single_wrong_digit(check, number):
    assert check(number)
    for at in range(len(number)):
        for digit in "0123456789":
            if digit != number[at]:
                assert not check(number[:at] + digit + number[at + 1:]), (at, digit)


@pytest.mark.parametrize("number", MOD97_VALID)
def test_mod97_catches_neighbours_swapped(number):
    for at in range(len(number) - 1):
        if number[at] != number[at + 1]:
            assert not mod97_10_valid(number[:at] + number[at + 1] + number[at] + number[at + 2:]), at


@pytest.mark.parametrize("check", [luhn_valid, mod97_10_valid])
@pytest.mark.parametrize("text", ["", "0", "1", "12a4", "٧٩٩٢٧٣٩٨٧١٣", "7992 7398 713"])
def test_checksums_refuse_what_is_not_a_digit_string(check, text):
    assert not check(text)


# ---------------------------------------------------------------------------------------------------------------
# Field specs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, text, valid", [
    ("digits{5}", "90210", True), ("digits{5}", "9021", False), ("digits{5}", "902101", False),
    ("digits{4,6}", "123", False), ("digits{4,6}", "1234", True), ("digits{4,6}", "123456", True),
    ("digits{4,6}", "1234567", False), ("digits", "1", True), ("digits", "12345678901234", True),
])
def test_digit_patterns_count_the_text(pattern, text, valid):
    ok, value, reason = FieldSpec(pattern=pattern).check(reading(text))
    assert ok == valid
    assert (value, reason is None) == ((text, True) if valid else (None, False))


def test_digit_reasons_say_what_was_expected():
    assert FieldSpec(pattern="digits{5}").check(reading("9021"))[2] == "5 digits expected, 4 read"
    assert FieldSpec(pattern="digits{4,6}").check(reading("123"))[2] == "4 to 6 digits expected, 3 read"
    assert FieldSpec().check(reading(""))[2] == "no digits read"  # "digits": at least one


def test_amount_and_date_kinds_parse_the_raw_reading():
    assert FieldSpec(kind="amount").check(reading("1.250,00")) == (True, "1250.00", None)
    assert FieldSpec(kind="date", date_order="mdy").check(reading("03/12/2024")) == (True, "2024-03-12", None)
    ok, value, reason = FieldSpec(kind="date").check(reading("31/02/2024"))
    assert not ok and value is None and "not a date on the calendar" in reason
    ok, _, reason = FieldSpec(kind="amount").check(reading("1.25.0"))
    assert not ok and "inconsistent digit grouping" in reason


def test_a_reading_without_separators_is_parsed_from_its_text():
    assert FieldSpec(kind="amount").check(ReadResult(text="1250", confidence=0.9, digits=[])) == (True, "1250", None)


def test_regex_patterns_match_the_whole_raw_reading():
    zip_plus_4 = FieldSpec(pattern=r"regex:\d{5}(-\d{4})?")
    assert zip_plus_4.check(reading("12345-6789")) == (True, "123456789", None)
    assert zip_plus_4.check(reading("12345"))[0]
    assert not zip_plus_4.check(reading("1234-56789"))[0]  # same digits, written otherwise
    assert not zip_plus_4.check(reading("123456"))[0]  # a full match, not a search


def test_checksums_apply_to_the_text():
    card = FieldSpec(checksum="luhn")
    assert card.check(reading("7992 7398 713")) == (True, "79927398713", None)
    ok, value, reason = card.check(reading("79927398710"))
    assert (ok, value) == (False, None) and "luhn checksum" in reason
    assert FieldSpec(kind="comb", pattern="digits{28}", checksum="mod97-10").check(reading(IBAN_DIGITS))[0]


@pytest.mark.parametrize("options, why", [
    ({"kind": "letters"}, "unknown kind"),
    ({"checksum": "crc32"}, "unknown checksum"),
    ({"kind": "amount", "checksum": "luhn"}, "a checksum applies to the digits"),
    ({"kind": "date", "date_order": "ydm"}, "unknown date order"),
    ({"pattern": "amount"}, "needs kind 'amount'"),
    ({"kind": "amount", "pattern": "date"}, "needs kind 'date'"),
    ({"pattern": "regex:(12"}, "not a valid regular expression"),
    ({"pattern": "digit{5}"}, "unknown pattern"),
    ({"pattern": "digits{0}"}, "at least 1"),
    ({"pattern": "digits{6,4}"}, "increasing order"),
])
def test_bad_specs_are_refused(options, why):
    with pytest.raises(ValueError, match=why):
        FieldSpec(**options)


def test_default_patterns_follow_the_kind():
    assert [FieldSpec(kind=k).pattern for k in ("digits", "comb", "amount", "date")] == [
        "digits", "digits", "amount", "date"]


def test_alternatives_are_checked_like_readings():
    spec = FieldSpec(checksum="luhn")
    assert spec.check(Alternative(raw="79927398713", text="79927398713", confidence=0.2))[0]


def with_alternatives(raw: str, *alternatives: str) -> ReadResult:
    result = reading(raw)
    result.alternatives = [Alternative(raw=a, text="".join(c for c in a if c.isdigit()), confidence=0.1 / (i + 1))
                           for i, a in enumerate(alternatives)]
    return result


def test_an_amount_or_date_that_does_not_parse_takes_the_best_alternative_that_does():
    speck = with_alternatives("8.35,620.00", "8.35,620.80", "835,620.00", "835,620.0")  # a speck read as a dot
    valid, value, note = FieldSpec(kind="amount").parse(speck)
    assert (valid, value) == (True, "835620.00") and "'835,620.00'" in note and "does not parse" in note
    slash = with_alternatives("26104/1967", "26/04/1967")  # a slash read as a 1
    assert FieldSpec(kind="date").parse(slash)[:2] == (True, "1967-04-26")
    assert FieldSpec(kind="amount").parse(reading("1.250,00")) == (True, "1250.00", None)  # nothing to correct
    assert FieldSpec(kind="amount").parse(with_alternatives("1.2.5,0", "1.2.5,1"))[0] is False  # none passes


def test_digit_patterns_and_checksums_are_never_corrected_from_alternatives():
    card = with_alternatives("79927398710", "79927398713")  # the alternative passes Luhn: a guess, not a reading
    assert FieldSpec(checksum="luhn").parse(card)[:2] == (False, None)
    assert FieldSpec(pattern="digits{5}").parse(with_alternatives("902101", "90210"))[:2] == (False, None)


# ---------------------------------------------------------------------------------------------------------------
# Shapes of readings with no expected format
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["90210", "12 34", "1 250", "1.250,00", "12.50", "15.000.", "26/04/1967",
                                 "12/31/2024", "2024-03-12", "12.3.24", "9:30", "12:05:59", "555-1234",
                                 "12-345-67", "09/27", "3/2024", ""])
def test_numbers_as_people_write_them_have_a_shape(raw):
    assert shape_problem(raw) is None


@pytest.mark.parametrize("raw", [
    "26104/1967",  # the first "/" of 26/04/1967 read as a 1
    "04/106/1992",
    "19.10.42011",  # a 1 read after a separator
    "0.65106393",  # a speck read as a decimal mark
    "31/02/2024",  # not on the calendar in any order
    "12,34,5",
    "1/2/3/4",
])
def test_separators_that_make_no_shape_say_so(raw):
    reason = shape_problem(raw)
    assert reason is not None and repr(raw) in reason and "separator may be misread" in reason
