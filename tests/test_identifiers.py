"""Tests for shared.identifiers (DOMAIN.md section 3, "Identifiers")."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.identifiers import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    HERID_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENUMMER_SYSTEM,
    ORGNR_SYSTEM,
    PERSON_SYSTEMS,
    RESH_SYSTEM,
    CheckRule,
    InvalidIdentifier,
    PersonNumber,
    PersonNumberKind,
    check_her_id,
    check_hpr,
    check_kommunenummer,
    check_orgnr,
    check_resh,
    parse_person_number,
    validate_identifier,
)

K1_REASON = "check digit K1 does not match under the classic or the 2032 rule"
K2_REASON = "check digit K2 does not match"

FNR = PersonNumberKind.FNR
DNR = PersonNumberKind.D_NUMMER
HNR = PersonNumberKind.H_NUMMER
FHN = PersonNumberKind.FHN
SYN = PersonNumberKind.SYNTHETIC
CLASSIC = CheckRule.CLASSIC
RULE_2032 = CheckRule.RULE_2032


# --- test-side check-digit helpers (independent of the module under test) -----------------

_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_WORG = (3, 2, 7, 6, 5, 4, 3, 2)


def _wsum(digits: str, weights: tuple[int, ...]) -> int:
    assert len(digits) == len(weights)
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


def k1_remainder(number: str) -> int:
    """(weighted sum of the first 9 digits + K1) mod 11."""
    return (_wsum(number[:9], _W1) + int(number[9])) % 11


def k2_remainder(number: str) -> int:
    """(weighted sum of the first 10 digits + K2) mod 11."""
    return (_wsum(number[:10], _W2) + int(number[10])) % 11


def with_check_digits(first9: str, k1_rem: int = 0) -> str | None:
    """Append K1 (so that the K1 remainder is ``k1_rem``) and K2; None if a digit would be 10."""
    k1 = (k1_rem - _wsum(first9, _W1)) % 11
    if k1 == 10:
        return None
    first10 = first9 + str(k1)
    k2 = -_wsum(first10, _W2) % 11
    if k2 == 10:
        return None
    return first10 + str(k2)


def make(first9: str, k1_rem: int = 0) -> str:
    number = with_check_digits(first9, k1_rem)
    assert number is not None, f"{first9} has no check digits with K1 remainder {k1_rem}"
    return number


def orgnr_with_check_digit(first8: str) -> str | None:
    remainder = _wsum(first8, _WORG) % 11
    if remainder == 1:
        return None
    return first8 + str(0 if remainder == 0 else 11 - remainder)


# --- DOMAIN.md vectors ---------------------------------------------------------------------


def test_helper_reproduces_the_classic_domain_vectors() -> None:
    for vector in ("21030550231", "15076500565", "12050050295", "70019950032", "10915596784"):
        assert make(vector[:9]) == vector
    assert make("301082999", k1_rem=1) == "30108299939"


def test_2032_vectors_have_the_documented_remainders() -> None:
    # 30108299939: K1 remainder 1 (not classic, allowed from 2032); K2 fine.
    assert (k1_remainder("30108299939"), k2_remainder("30108299939")) == (1, 0)
    # 02013299997: K1 remainder 0, so it satisfies the classic rule and the 2032 rule.
    assert (k1_remainder("02013299997"), k2_remainder("02013299997")) == (0, 0)


@pytest.mark.parametrize(
    ("value", "system", "kind", "rule", "birth_date"),
    [
        ("21030550231", FNR_SYSTEM, FNR, CLASSIC, date(2005, 3, 21)),
        ("15076500565", FNR_SYSTEM, FNR, CLASSIC, date(1965, 7, 15)),
        ("12050050295", FNR_SYSTEM, FNR, CLASSIC, date(2000, 5, 12)),
        ("70019950032", DNR_SYSTEM, DNR, CLASSIC, None),
        ("10915596784", FNR_SYSTEM, SYN, CLASSIC, date(1955, 11, 10)),
        # Valid only under the 2032 rule: no birth date is derived.
        ("30108299939", FNR_SYSTEM, FNR, RULE_2032, None),
        # Valid under both: classic is reported, so the century table applies (999, yy<40).
        ("02013299997", FNR_SYSTEM, FNR, CLASSIC, date(2032, 1, 2)),
    ],
)
def test_domain_valid_vectors(
    value: str,
    system: str,
    kind: PersonNumberKind,
    rule: CheckRule,
    birth_date: date | None,
) -> None:
    assert parse_person_number(value, system) == PersonNumber(value, kind, rule, birth_date)


def test_domain_invalid_vector_fails_on_k2() -> None:
    # K1 remainder is 2 (acceptable under the 2032 rule), but K2 does not match.
    assert k1_remainder("13057444850") == 2
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number("13057444850")
    assert excinfo.value.reason == K2_REASON
    assert excinfo.value.value == "13057444850"
    assert excinfo.value.system == FNR_SYSTEM


def test_default_system_is_fnr() -> None:
    assert parse_person_number("21030550231").kind is FNR
    with pytest.raises(InvalidIdentifier, match="is a D-nummer"):
        parse_person_number("70019950032")


# --- check digits ---------------------------------------------------------------------------


@pytest.mark.parametrize("k1_rem", [1, 2, 3])
def test_k1_remainders_1_to_3_are_rule_2032(k1_rem: int) -> None:
    value = make("150765008", k1_rem)
    assert parse_person_number(value) == PersonNumber(value, FNR, RULE_2032, None)


@pytest.mark.parametrize("k1_rem", [4, 5, 6, 7, 8, 9, 10])
def test_k1_remainders_4_to_10_are_invalid(k1_rem: int) -> None:
    value = with_check_digits("150765005", k1_rem)
    if value is None:  # K1 would be 10 for this remainder; use another individnummer
        value = make("150765006", k1_rem)
    assert k2_remainder(value) == 0
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number(value)
    assert excinfo.value.reason == K1_REASON


def test_wrong_k2_is_invalid() -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number("21030550232")
    assert excinfo.value.reason == K2_REASON


# --- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "system", "kind", "rule", "birth_date", "synthetic"),
    [
        # H-nummer: month + 40; never a birth date.
        (make("214305502"), FNR_SYSTEM, HNR, CLASSIC, None, False),
        (make("315290123"), FNR_SYSTEM, HNR, CLASSIC, None, False),
        (make("214305502", 2), FNR_SYSTEM, HNR, RULE_2032, None, False),
        # Synthetic: month + 80, birth date through the century table.
        (make("018199123"), FNR_SYSTEM, SYN, CLASSIC, date(1999, 1, 1), True),
        (make("319201600"), FNR_SYSTEM, SYN, CLASSIC, date(2001, 12, 31), True),
        (make("018199123", 3), FNR_SYSTEM, SYN, RULE_2032, None, True),
        # D-nummer: first digit + 4, any of 4-7; synthetic D-nummer (month + 80) too.
        (make("410101123"), DNR_SYSTEM, DNR, CLASSIC, None, False),
        (make("711290123"), DNR_SYSTEM, DNR, CLASSIC, None, False),
        (make("618155123"), DNR_SYSTEM, DNR, CLASSIC, None, True),
        (make("410101123", 1), DNR_SYSTEM, DNR, RULE_2032, None, False),
        # Felles hjelpenummer: first digit 8 or 9, no date part at all.
        (make("812345678"), FHN_SYSTEM, FHN, CLASSIC, None, False),
        (make("999999991"), FHN_SYSTEM, FHN, CLASSIC, None, False),
        (make("800000000"), FHN_SYSTEM, FHN, CLASSIC, None, False),
        (make("812345678", 2), FHN_SYSTEM, FHN, RULE_2032, None, False),
        # Plain fødselsnummer.
        (make("290200500"), FNR_SYSTEM, FNR, CLASSIC, date(2000, 2, 29), False),
    ],
)
def test_kinds(
    value: str,
    system: str,
    kind: PersonNumberKind,
    rule: CheckRule,
    birth_date: date | None,
    synthetic: bool,
) -> None:
    parsed = parse_person_number(value, system)
    assert parsed == PersonNumber(value, kind, rule, birth_date)
    assert parsed.is_synthetic is synthetic


def test_person_number_is_frozen() -> None:
    parsed = parse_person_number("21030550231")
    with pytest.raises(AttributeError):
        parsed.value = "15076500565"  # type: ignore[misc]


def test_enum_values() -> None:
    assert [k.value for k in PersonNumberKind] == [
        "fnr",
        "d-nummer",
        "h-nummer",
        "fhn",
        "synthetic",
    ]
    assert [r.value for r in CheckRule] == ["classic", "2032"]
    assert isinstance(PersonNumberKind.D_NUMMER, str)
    assert f"{PersonNumberKind.D_NUMMER}" == "d-nummer"


# --- century table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ddmmyy", "individ", "birth_date"),
    [
        # 000-499 -> 1900s
        ("020100", "000", date(1900, 1, 2)),
        ("150539", "250", date(1939, 5, 15)),
        ("311299", "499", date(1999, 12, 31)),
        # 500-749 with year >= 54 -> 1854-1899
        ("010154", "500", date(1854, 1, 1)),
        ("301299", "749", date(1899, 12, 30)),
        # 500-999 with year < 40 -> 2000s
        ("010100", "500", date(2000, 1, 1)),
        ("010120", "750", date(2020, 1, 1)),
        ("311239", "999", date(2039, 12, 31)),
        # 900-999 with year >= 40 -> 1940-1999
        ("010140", "900", date(1940, 1, 1)),
        ("301299", "999", date(1999, 12, 30)),
        # Outside the table: no reliable century, so valid but no birth date.
        ("010140", "500", None),  # 500-749 with year 40-53
        ("311253", "749", None),
        ("010140", "750", None),  # 750-899 with year >= 40
        ("311299", "899", None),
    ],
)
def test_century_table(ddmmyy: str, individ: str, birth_date: date | None) -> None:
    value = make(ddmmyy + individ)
    assert parse_person_number(value) == PersonNumber(value, FNR, CLASSIC, birth_date)


def test_century_table_applies_to_synthetic_numbers() -> None:
    value = make("018154600")  # month 81 -> January; 600 with year 54 -> 1854
    assert parse_person_number(value) == PersonNumber(value, SYN, CLASSIC, date(1854, 1, 1))


# --- system / kind mismatches ---------------------------------------------------------------

_H_NUMMER = make("214305502")
_SYNTHETIC_D = make("618155123")
_FHN = make("812345678")


@pytest.mark.parametrize(
    ("value", "system", "reason"),
    [
        ("70019950032", FNR_SYSTEM, f"is a D-nummer; use system {DNR_SYSTEM}"),
        (_SYNTHETIC_D, FNR_SYSTEM, f"is a D-nummer; use system {DNR_SYSTEM}"),
        (_FHN, FNR_SYSTEM, f"is a felles hjelpenummer; use system {FHN_SYSTEM}"),
        ("21030550231", DNR_SYSTEM, f"is a fødselsnummer; use system {FNR_SYSTEM}"),
        ("30108299939", DNR_SYSTEM, f"is a fødselsnummer; use system {FNR_SYSTEM}"),
        (_H_NUMMER, DNR_SYSTEM, f"is an H-nummer; use system {FNR_SYSTEM}"),
        (
            "10915596784",
            DNR_SYSTEM,
            f"is a synthetic test fødselsnummer; use system {FNR_SYSTEM}",
        ),
        (_FHN, DNR_SYSTEM, f"is a felles hjelpenummer; use system {FHN_SYSTEM}"),
        ("21030550231", FHN_SYSTEM, f"is a fødselsnummer; use system {FNR_SYSTEM}"),
        ("70019950032", FHN_SYSTEM, f"is a D-nummer; use system {DNR_SYSTEM}"),
        (_H_NUMMER, FHN_SYSTEM, f"is an H-nummer; use system {FNR_SYSTEM}"),
        (
            "10915596784",
            FHN_SYSTEM,
            f"is a synthetic test fødselsnummer; use system {FNR_SYSTEM}",
        ),
    ],
)
def test_system_kind_mismatch(value: str, system: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number(value, system)
    assert excinfo.value.reason == reason
    assert excinfo.value.system == system


@pytest.mark.parametrize("system", [ORGNR_SYSTEM, HPR_SYSTEM, "urn:oid:1.2.3"])
def test_parse_person_number_rejects_non_person_system(system: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number("21030550231", system)
    assert excinfo.value.reason == "system is not a person-number system"


# --- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2103055023",  # 10 digits
        "210305502311",  # 12 digits
        "2103055023a",
        " 21030550231",
        "21030550231 ",
        "210305 50231",
        "21030-50231",
        "+1030550231",
        "2103055023\u0661",  # ARABIC-INDIC DIGIT ONE: isdigit() but not 0-9
        "２1030550231",  # FULLWIDTH DIGIT TWO
    ],
)
@pytest.mark.parametrize("system", sorted(PERSON_SYSTEMS))
def test_person_number_format(value: str, system: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number(value, system)
    assert excinfo.value.reason == "must be 11 digits"
    assert excinfo.value.value == value


# --- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first9", "system", "reason"),
    [
        # Classic fødselsnummer: the full date must exist (century from the table).
        ("310290123", FNR_SYSTEM, "date 1990-02-31 does not exist"),
        ("300290123", FNR_SYSTEM, "date 1990-02-30 does not exist"),
        ("290200100", FNR_SYSTEM, "date 1900-02-29 does not exist"),  # 1900: not a leap year
        ("290201502", FNR_SYSTEM, "date 2001-02-29 does not exist"),
        ("310465005", FNR_SYSTEM, "date 1965-04-31 does not exist"),
        # Classic synthetic number: likewise (month - 80).
        ("318290123", FNR_SYSTEM, "date 1990-02-31 does not exist"),
        # Month and day ranges, every kind with a date part.
        ("011390123", FNR_SYSTEM, "month 13 is not a valid month"),
        ("010090124", FNR_SYSTEM, "month 00 is not a valid month"),
        ("012090124", FNR_SYSTEM, "month 20 is not a valid month"),
        ("014090123", FNR_SYSTEM, "month 40 is not a valid month"),
        ("015390123", FNR_SYSTEM, "month 53 is not a valid month"),
        ("018090123", FNR_SYSTEM, "month 80 is not a valid month"),
        ("019390123", FNR_SYSTEM, "month 93 is not a valid month"),
        ("019990123", FNR_SYSTEM, "month 99 is not a valid month"),
        ("000190123", FNR_SYSTEM, "day 00 is not a valid day"),
        ("320190123", FNR_SYSTEM, "day 32 is not a valid day"),
        ("394190123", FNR_SYSTEM, "day 39 is not a valid day"),  # H-nummer
        ("008190123", FNR_SYSTEM, "day 00 is not a valid day"),  # synthetic
        ("400190123", DNR_SYSTEM, "day 00 is not a valid day"),  # D-nummer: day = dd - 40
        ("720190123", DNR_SYSTEM, "day 32 is not a valid day"),
        ("791290123", DNR_SYSTEM, "day 39 is not a valid day"),
        ("411390123", DNR_SYSTEM, "month 13 is not a valid month for a D-nummer"),
        ("414590123", DNR_SYSTEM, "month 45 is not a valid month for a D-nummer"),
        ("419390123", DNR_SYSTEM, "month 93 is not a valid month for a D-nummer"),
    ],
)
def test_impossible_dates(first9: str, system: str, reason: str) -> None:
    value = make(first9)  # classic check digits, so the number is otherwise valid
    with pytest.raises(InvalidIdentifier) as excinfo:
        parse_person_number(value, system)
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    ("first9", "k1_rem", "system", "kind", "rule"),
    [
        # Where the year (or whether the date is a birth date) is not reliable, only
        # day 1-31 and month 1-12 are checked, so 31 February passes.
        ("710290124", 0, DNR_SYSTEM, DNR, CLASSIC),  # D-nummer
        ("314290123", 0, FNR_SYSTEM, HNR, CLASSIC),  # H-nummer
        ("310290123", 1, FNR_SYSTEM, FNR, RULE_2032),  # valid only under the 2032 rule
        ("318290123", 2, FNR_SYSTEM, SYN, RULE_2032),
        ("310250751", 0, FNR_SYSTEM, FNR, CLASSIC),  # 750-899 with year >= 40: no century
    ],
)
def test_dates_without_reliable_year_are_checked_loosely(
    first9: str, k1_rem: int, system: str, kind: PersonNumberKind, rule: CheckRule
) -> None:
    value = make(first9, k1_rem)
    assert parse_person_number(value, system) == PersonNumber(value, kind, rule, None)


# --- organisasjonsnummer --------------------------------------------------------------------


def test_orgnr_valid() -> None:
    check_orgnr("974760673")
    check_orgnr("974760673", enforce_check_digit=False)


def test_orgnr_wrong_check_digit() -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        check_orgnr("974760674")
    assert excinfo.value.reason == "check digit does not match"
    assert excinfo.value.system == ORGNR_SYSTEM
    check_orgnr("974760674", enforce_check_digit=False)


def _first8_with_remainder(remainder: int) -> str:
    for n in range(80000000, 80001000):
        if _wsum(str(n), _WORG) % 11 == remainder:
            return str(n)
    raise AssertionError(f"no prefix with remainder {remainder}")


def test_orgnr_remainder_zero_means_check_digit_zero() -> None:
    first8 = _first8_with_remainder(0)
    check_orgnr(first8 + "0")
    for digit in "123456789":
        with pytest.raises(InvalidIdentifier, match="check digit does not match"):
            check_orgnr(first8 + digit)


def test_orgnr_remainder_one_has_no_valid_check_digit() -> None:
    first8 = _first8_with_remainder(1)
    assert orgnr_with_check_digit(first8) is None
    for digit in "0123456789":
        with pytest.raises(InvalidIdentifier) as excinfo:
            check_orgnr(first8 + digit)
        assert excinfo.value.reason == "no valid check digit exists for the first 8 digits"
        check_orgnr(first8 + digit, enforce_check_digit=False)


@pytest.mark.parametrize("remainder", range(2, 11))
def test_orgnr_other_remainders(remainder: int) -> None:
    first8 = _first8_with_remainder(remainder)
    check_orgnr(first8 + str(11 - remainder))


@pytest.mark.parametrize(
    "value", ["", "97476067", "9747606730", "97476067a", " 974760673", "97476067\u0663"]
)
@pytest.mark.parametrize("enforce", [True, False])
def test_orgnr_format_always_enforced(value: str, enforce: bool) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        check_orgnr(value, enforce_check_digit=enforce)
    assert excinfo.value.reason == "must be 9 digits"


# --- HPR, HER-id, RESH, kommunenummer -------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "system"),
    [(check_hpr, HPR_SYSTEM), (check_her_id, HERID_SYSTEM), (check_resh, RESH_SYSTEM)],
)
@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1", True),
        ("9144900", True),
        ("123456789", True),
        ("", False),
        ("1234567890", False),
        ("12a", False),
        ("-1", False),
        (" 1", False),
        ("1.0", False),
        ("\u0661\u0662", False),
    ],
)
def test_digit_only_identifiers(
    check: Callable[[str], None], system: str, value: str, valid: bool
) -> None:
    if valid:
        check(value)
    else:
        with pytest.raises(InvalidIdentifier) as excinfo:
            check(value)
        assert excinfo.value.reason == "must be 1 to 9 digits"
        assert excinfo.value.system == system


@pytest.mark.parametrize("check", [check_hpr, check_resh])
def test_hpr_and_resh_may_start_with_zero(check: Callable[[str], None]) -> None:
    check("0012")


@pytest.mark.parametrize("value", ["0", "000000000", "08142519", "0012"])
def test_her_ids_are_positive_numbers_without_leading_zeros(value: str) -> None:
    """One HER-id has one spelling: `08142519` would otherwise be a second holder beside
    `8142519`, and 0 is no HER-id."""
    with pytest.raises(InvalidIdentifier) as excinfo:
        check_her_id(value)
    assert excinfo.value.reason == "must be a positive number without leading zeros"
    assert excinfo.value.system == HERID_SYSTEM


@pytest.mark.parametrize("value", ["0301", "5001", "4601"])
def test_kommunenummer_valid(value: str) -> None:
    check_kommunenummer(value)


@pytest.mark.parametrize("value", ["", "301", "03011", "03a1", " 301", "\u0660301"])
def test_kommunenummer_invalid(value: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        check_kommunenummer(value)
    assert excinfo.value.reason == "must be 4 digits"
    assert excinfo.value.system == KOMMUNENUMMER_SYSTEM


# --- validate_identifier --------------------------------------------------------------------


def test_validate_identifier_person_systems() -> None:
    assert validate_identifier(FNR_SYSTEM, "21030550231") == PersonNumber(
        "21030550231", FNR, CLASSIC, date(2005, 3, 21)
    )
    assert validate_identifier(DNR_SYSTEM, "70019950032") == PersonNumber(
        "70019950032", DNR, CLASSIC, None
    )
    assert validate_identifier(FHN_SYSTEM, _FHN) == PersonNumber(_FHN, FHN, CLASSIC, None)
    with pytest.raises(InvalidIdentifier, match="is a D-nummer"):
        validate_identifier(FNR_SYSTEM, "70019950032")


def test_validate_identifier_orgnr_enforcement() -> None:
    assert validate_identifier(ORGNR_SYSTEM, "974760673") is None
    with pytest.raises(InvalidIdentifier, match="check digit does not match"):
        validate_identifier(ORGNR_SYSTEM, "974760674")
    assert validate_identifier(ORGNR_SYSTEM, "974760674", enforce_orgnr_check_digit=False) is None
    with pytest.raises(InvalidIdentifier, match="must be 9 digits"):
        validate_identifier(ORGNR_SYSTEM, "97476067", enforce_orgnr_check_digit=False)


@pytest.mark.parametrize(
    ("system", "valid", "invalid", "reason"),
    [
        (HPR_SYSTEM, "9144900", "HPR-1", "must be 1 to 9 digits"),
        (HERID_SYSTEM, "8142519", "1234567890", "must be 1 to 9 digits"),
        (RESH_SYSTEM, "4001031", "", "must be 1 to 9 digits"),
        (KOMMUNENUMMER_SYSTEM, "0301", "301", "must be 4 digits"),
    ],
)
def test_validate_identifier_other_known_systems(
    system: str, valid: str, invalid: str, reason: str
) -> None:
    assert validate_identifier(system, valid) is None
    with pytest.raises(InvalidIdentifier) as excinfo:
        validate_identifier(system, invalid)
    assert (excinfo.value.system, excinfo.value.reason) == (system, reason)


@pytest.mark.parametrize(
    "system", ["urn:oid:2.16.578.1.12.4.1.4.999", "https://example.org/ids", ""]
)
def test_validate_identifier_unknown_system_accepted_unchanged(system: str) -> None:
    assert validate_identifier(system, "anything at all, not digits") is None


# --- InvalidIdentifier ----------------------------------------------------------------------


def test_invalid_identifier_message_and_attributes() -> None:
    error = InvalidIdentifier(FNR_SYSTEM, "123", "must be 11 digits")
    assert isinstance(error, ValueError)
    assert (error.system, error.value, error.reason) == (FNR_SYSTEM, "123", "must be 11 digits")
    assert str(error) == f"Identifier '123' (system {FNR_SYSTEM}) is invalid: must be 11 digits."


def test_invalid_identifier_pickles() -> None:
    error = InvalidIdentifier(ORGNR_SYSTEM, "974760674", "check digit does not match")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, InvalidIdentifier)
    assert (copy.system, copy.value, copy.reason, str(copy)) == (
        error.system,
        error.value,
        error.reason,
        str(error),
    )


# --- properties -----------------------------------------------------------------------------


def _individ_ranges(year: int) -> list[range]:
    """Individnummer ranges that the century table maps to ``year`` (pre-2032 numbers)."""
    if year < 1900:
        return [range(500, 750)]
    if year < 1940:
        return [range(0, 500)]
    if year < 2000:
        return [range(0, 500), range(900, 1000)]
    return [range(500, 1000)]


@st.composite
def classic_birth_numbers(draw: st.DrawFn) -> tuple[str, date, bool]:
    """A classic-rule fødselsnummer or synthetic number, with its birth date."""
    birth = draw(st.dates(min_value=date(1854, 1, 1), max_value=date(2039, 12, 31)))
    individ = draw(st.sampled_from(_individ_ranges(birth.year)).flatmap(st.sampled_from))
    synthetic = draw(st.booleans())
    month = birth.month + (80 if synthetic else 0)
    number = with_check_digits(f"{birth.day:02d}{month:02d}{birth.year % 100:02d}{individ:03d}")
    assume(number is not None)
    assert number is not None
    return number, birth, synthetic


@settings(max_examples=300)
@given(classic_birth_numbers())
def test_classic_numbers_round_trip_birth_date(case: tuple[str, date, bool]) -> None:
    number, birth, synthetic = case
    kind = SYN if synthetic else FNR
    assert parse_person_number(number) == PersonNumber(number, kind, CLASSIC, birth)


@st.composite
def valid_person_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """Any valid person number (every kind, both rules) with the system it belongs to."""
    k1_rem = draw(st.integers(min_value=0, max_value=3))
    variant = draw(st.sampled_from(["fnr", "synthetic", "h", "d", "synthetic-d", "fhn"]))
    if variant == "fhn":
        first9 = str(draw(st.integers(min_value=8, max_value=9))) + draw(
            st.text(alphabet="0123456789", min_size=8, max_size=8)
        )
        system = FHN_SYSTEM
    else:
        day = draw(st.dates(min_value=date(1854, 1, 1), max_value=date(2039, 12, 31)))
        individ = draw(st.sampled_from(_individ_ranges(day.year)).flatmap(st.sampled_from))
        dd = day.day + (40 if variant in ("d", "synthetic-d") else 0)
        mm = day.month + {"fnr": 0, "synthetic": 80, "h": 40, "d": 0, "synthetic-d": 80}[variant]
        first9 = f"{dd:02d}{mm:02d}{day.year % 100:02d}{individ:03d}"
        system = DNR_SYSTEM if variant in ("d", "synthetic-d") else FNR_SYSTEM
    number = with_check_digits(first9, k1_rem)
    assume(number is not None)
    assert number is not None
    return number, system


@settings(max_examples=300)
@given(
    valid_person_numbers(),
    st.integers(min_value=0, max_value=10),
    st.integers(min_value=1, max_value=9),
)
def test_any_single_digit_change_breaks_the_check_digits(
    case: tuple[str, str], position: int, delta: int
) -> None:
    # K2's weights over all 11 digits (5,4,3,2,7,6,5,4,3,2,1) are non-zero mod 11 and 11 is
    # prime, so any single-digit substitution changes the K2 remainder. K2 is the same under
    # both rules, so the changed number is always rejected, and always for a check digit.
    number, system = case
    parse_person_number(number, system)  # the original is valid
    digit = (int(number[position]) + delta) % 10
    changed = number[:position] + str(digit) + number[position + 1 :]
    assert changed != number
    assert k2_remainder(changed) != 0
    for any_system in PERSON_SYSTEMS:
        with pytest.raises(InvalidIdentifier) as excinfo:
            parse_person_number(changed, any_system)
        assert excinfo.value.reason in (K1_REASON, K2_REASON)
