"""Norwegian identifier systems and their validation.

Every FHIR resource that barnebro stores or forwards carries identifiers from the Norwegian
HL7 no-basis profiles: fødselsnummer, D-nummer, H-nummer, felles hjelpenummer, HPR-nummer,
organisasjonsnummer, RESH-id, HER-id and kommunenummer. The directory service (and the
services built after it) must reject malformed identifiers at the boundary, because a wrong
person identifier links a child's health data to the wrong person. This module holds the
system URIs and the validation rules in one place, as pure functions without I/O.

Person numbers (layout ``DDMMYY III K1 K2``):

* K1 uses the weights 3,7,6,1,8,9,4,5,2 over the first nine digits, K2 the weights
  5,4,3,2,7,6,5,4,3,2 over the first ten. Under the classic rule ``(sum + K) mod 11 == 0``
  for both. Under the rule for numbers issued from 2032, ``(sum + K1) mod 11`` may be
  0, 1, 2 or 3; K2 is unchanged. Both rules are accepted.
* D-nummer: first digit + 4. H-nummer: month + 40. Synthetic test numbers (Skatteetaten's
  test population): month + 80. Felles hjelpenummer: first digit 8 or 9, no date.
* A birth date is derived only where it is reliable: a fødselsnummer or a synthetic number
  that is valid under the classic rule and whose individnummer/year fall in a row of the
  century table. Sex is never derived.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final
from urllib.parse import unquote

__all__ = [
    "DNR_SYSTEM",
    "FHN_SYSTEM",
    "FNR_SYSTEM",
    "HERID_SYSTEM",
    "HPR_SYSTEM",
    "KOMMUNENUMMER_SYSTEM",
    "ORGNR_SYSTEM",
    "PERSON_SYSTEMS",
    "RESH_SYSTEM",
    "CheckRule",
    "InvalidIdentifier",
    "PersonNumber",
    "PersonNumberKind",
    "check_her_id",
    "check_hpr",
    "check_kommunenummer",
    "check_orgnr",
    "check_resh",
    "is_person_number",
    "lookalike_system",
    "parse_person_number",
    "validate_identifier",
]

FNR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.2"
FHN_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.3"
HPR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.101"
RESH_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.102"
HERID_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.2"
KOMMUNENUMMER_SYSTEM: Final = (
    "https://register.geonorge.no/subregister/sosi-kodelister/kartverket/kommunenummer-alle"
)
PERSON_SYSTEMS: Final[frozenset[str]] = frozenset({FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM})


def _oid_arcs(system: str) -> tuple[int, ...]:
    """The numbers in `system`, however it is written (escaped, with look-alike dots,
    spaces or invisible characters between them): what a misspelling keeps."""
    text = unicodedata.normalize("NFKC", unquote(system))
    return tuple(int(arc) for arc in re.findall(r"[0-9]+", text, flags=re.ASCII))


_NORWEGIAN_SYSTEMS: Final[dict[tuple[int, ...], str]] = {
    _oid_arcs(system): system
    for system in (
        FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM, RESH_SYSTEM, HERID_SYSTEM
    )
}  # fmt: skip
_EXACT_SYSTEMS: Final = frozenset(_NORWEGIAN_SYSTEMS.values())


def lookalike_system(system: str) -> str | None:
    """The Norwegian identifier system `system` misspells (any spelling whose numbers are
    that OID's), or None: a number under a misspelt system would escape the checks, the
    uniqueness and the rules made for its real one."""
    if system in _EXACT_SYSTEMS:
        return None
    exact = _NORWEGIAN_SYSTEMS.get(_oid_arcs(system))
    return exact if exact is not None and exact != system else None


def is_person_number(value: str) -> bool:
    """Whether `value` is a valid fødselsnummer, D-nummer, H-nummer or hjelpenummer."""
    for system in PERSON_SYSTEMS:
        try:
            parse_person_number(value, system)
        except InvalidIdentifier:
            continue
        return True
    return False


_K1_WEIGHTS: Final = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2_WEIGHTS: Final = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_K1_REMAINDERS_2032: Final = frozenset({0, 1, 2, 3})
_ORGNR_WEIGHTS: Final = (3, 2, 7, 6, 5, 4, 3, 2)


class InvalidIdentifier(ValueError):
    """An identifier value that is not valid for its system.

    ``reason`` is a short human-readable English explanation; ``str()`` gives a full sentence.
    Note that the sentence contains the identifier value, which may be a personal number.
    """

    system: str
    value: str
    reason: str

    def __init__(self, system: str, value: str, reason: str) -> None:
        self.system = system
        self.value = value
        self.reason = reason
        super().__init__(f"Identifier {value!r} (system {system}) is invalid: {reason}.")

    def __reduce__(self) -> tuple[type[InvalidIdentifier], tuple[str, str, str]]:
        return (type(self), (self.system, self.value, self.reason))


class PersonNumberKind(StrEnum):
    """What kind of 11-digit person number a value is, read from its digits."""

    FNR = "fnr"
    """Fødselsnummer from the population register."""
    D_NUMMER = "d-nummer"
    """D-nummer: first digit + 4 (a synthetic D-nummer also has month + 80)."""
    H_NUMMER = "h-nummer"
    """H-nummer (health-sector auxiliary number): month + 40."""
    FHN = "fhn"
    """Felles hjelpenummer: first digit 8 or 9, no date part."""
    SYNTHETIC = "synthetic"
    """Skatteetaten synthetic test fødselsnummer: month + 80."""


class CheckRule(StrEnum):
    """Which check-digit rule a person number satisfies (classic is tried first)."""

    CLASSIC = "classic"
    RULE_2032 = "2032"


@dataclass(frozen=True)
class PersonNumber:
    """A validated person number.

    ``birth_date`` is set only for a fødselsnummer or synthetic number that is valid under the
    classic rule and whose century follows from the century table; otherwise ``None``.
    """

    value: str
    kind: PersonNumberKind
    check_rule: CheckRule
    birth_date: date | None

    @property
    def is_synthetic(self) -> bool:
        """True for Skatteetaten synthetic test numbers (month + 80), including D-nummer."""
        return self.kind is not PersonNumberKind.FHN and int(self.value[2:4]) > 80


_KIND_LABELS: Final[dict[PersonNumberKind, str]] = {
    PersonNumberKind.FNR: "a fødselsnummer",
    PersonNumberKind.D_NUMMER: "a D-nummer",
    PersonNumberKind.H_NUMMER: "an H-nummer",
    PersonNumberKind.FHN: "a felles hjelpenummer",
    PersonNumberKind.SYNTHETIC: "a synthetic test fødselsnummer",
}

_SYSTEM_FOR_KIND: Final[dict[PersonNumberKind, str]] = {
    PersonNumberKind.FNR: FNR_SYSTEM,
    PersonNumberKind.H_NUMMER: FNR_SYSTEM,
    PersonNumberKind.SYNTHETIC: FNR_SYSTEM,
    PersonNumberKind.D_NUMMER: DNR_SYSTEM,
    PersonNumberKind.FHN: FHN_SYSTEM,
}


def _is_digits(value: str) -> bool:
    """True when ``value`` is non-empty and consists of ASCII digits 0-9 only."""
    return value.isascii() and value.isdigit()


def _weighted_sum(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


def _check_rule(system: str, value: str) -> CheckRule:
    """Return the check-digit rule ``value`` (11 digits) satisfies, or raise."""
    k1_remainder = (_weighted_sum(value[:9], _K1_WEIGHTS) + int(value[9])) % 11
    if k1_remainder == 0:
        rule = CheckRule.CLASSIC
    elif k1_remainder in _K1_REMAINDERS_2032:
        rule = CheckRule.RULE_2032
    else:
        raise InvalidIdentifier(
            system, value, "check digit K1 does not match under the classic or the 2032 rule"
        )
    if (_weighted_sum(value[:10], _K2_WEIGHTS) + int(value[10])) % 11 != 0:
        raise InvalidIdentifier(system, value, "check digit K2 does not match")
    return rule


def _century(individnummer: int, yy: int) -> int | None:
    """Century (1800, 1900 or 2000) from the individnummer and two-digit year, or None.

    Valid only for numbers issued before 2032 (classic rule). Combinations outside the table
    (500-749 with year 40-53, 750-899 with year >= 40) have no reliable century.
    """
    if individnummer <= 499:
        return 1900
    if individnummer <= 749 and yy >= 54:
        return 1800
    if yy < 40:
        return 2000
    if individnummer >= 900:
        return 1900
    return None


def _kind_and_date_parts(system: str, value: str) -> tuple[PersonNumberKind, int, int]:
    """Classify ``value`` by its digits and return (kind, day, month), or raise.

    Checks day 1-31 and month 1-12 only; the full calendar check needs a reliable century.
    For a felles hjelpenummer, day and month are returned as 0 (there is no date part).
    """
    first = int(value[0])
    if first >= 8:
        return PersonNumberKind.FHN, 0, 0

    dd = int(value[0:2])
    mm = int(value[2:4])
    is_d_nummer = first >= 4
    day = dd - 40 if is_d_nummer else dd

    if 1 <= mm <= 12:
        kind = PersonNumberKind.D_NUMMER if is_d_nummer else PersonNumberKind.FNR
        month = mm
    elif 81 <= mm <= 92:
        kind = PersonNumberKind.D_NUMMER if is_d_nummer else PersonNumberKind.SYNTHETIC
        month = mm - 80
    elif 41 <= mm <= 52 and not is_d_nummer:
        kind = PersonNumberKind.H_NUMMER
        month = mm - 40
    elif is_d_nummer:
        raise InvalidIdentifier(
            system, value, f"month {mm:02d} is not a valid month for a D-nummer"
        )
    else:
        raise InvalidIdentifier(system, value, f"month {mm:02d} is not a valid month")

    if not 1 <= day <= 31:
        raise InvalidIdentifier(system, value, f"day {day:02d} is not a valid day")
    return kind, day, month


def parse_person_number(value: str, system: str = FNR_SYSTEM) -> PersonNumber:
    """Validate an 11-digit person number under ``system`` and return what it is.

    Accepted kinds per system: FNR_SYSTEM accepts fødselsnummer, H-nummer and synthetic
    numbers; DNR_SYSTEM accepts D-nummer (including synthetic D-nummer); FHN_SYSTEM accepts
    felles hjelpenummer only. Raises InvalidIdentifier with the reason otherwise.
    """
    if system not in PERSON_SYSTEMS:
        raise InvalidIdentifier(system, value, "system is not a person-number system")
    if len(value) != 11 or not _is_digits(value):
        raise InvalidIdentifier(system, value, "must be 11 digits")

    rule = _check_rule(system, value)
    kind, day, month = _kind_and_date_parts(system, value)

    expected_system = _SYSTEM_FOR_KIND[kind]
    if expected_system != system:
        raise InvalidIdentifier(
            system, value, f"is {_KIND_LABELS[kind]}; use system {expected_system}"
        )

    birth_date: date | None = None
    if rule is CheckRule.CLASSIC and kind in (PersonNumberKind.FNR, PersonNumberKind.SYNTHETIC):
        yy = int(value[4:6])
        century = _century(int(value[6:9]), yy)
        if century is not None:
            year = century + yy
            try:
                birth_date = date(year, month, day)
            except ValueError:
                raise InvalidIdentifier(
                    system, value, f"date {year:04d}-{month:02d}-{day:02d} does not exist"
                ) from None
    return PersonNumber(value=value, kind=kind, check_rule=rule, birth_date=birth_date)


def check_orgnr(value: str, *, enforce_check_digit: bool = True) -> None:
    """Validate an organisasjonsnummer: 9 digits, mod-11 check digit when enforced.

    Some organisation numbers in national test environments fail the check digit, hence
    ``enforce_check_digit``; the 9-digit format is always required.
    """
    if len(value) != 9 or not _is_digits(value):
        raise InvalidIdentifier(ORGNR_SYSTEM, value, "must be 9 digits")
    if not enforce_check_digit:
        return
    remainder = _weighted_sum(value[:8], _ORGNR_WEIGHTS) % 11
    if remainder == 1:
        raise InvalidIdentifier(
            ORGNR_SYSTEM, value, "no valid check digit exists for the first 8 digits"
        )
    expected = 0 if remainder == 0 else 11 - remainder
    if int(value[8]) != expected:
        raise InvalidIdentifier(ORGNR_SYSTEM, value, "check digit does not match")


def _check_short_digits(system: str, value: str) -> None:
    if not 1 <= len(value) <= 9 or not _is_digits(value):
        raise InvalidIdentifier(system, value, "must be 1 to 9 digits")


def check_hpr(value: str) -> None:
    """Validate an HPR-nummer: digits only, 1 to 9 digits, no check digit."""
    _check_short_digits(HPR_SYSTEM, value)


def check_her_id(value: str) -> None:
    """Validate a HER-id: a positive whole number of 1 to 9 digits, no check digit. It is
    written without leading zeros, so that one number has one spelling (`08142519` is not a
    second HER-id beside `8142519`)."""
    _check_short_digits(HERID_SYSTEM, value)
    if value.startswith("0"):
        raise InvalidIdentifier(
            HERID_SYSTEM, value, "must be a positive number without leading zeros"
        )


def check_resh(value: str) -> None:
    """Validate a RESH-id: digits only, 1 to 9 digits."""
    _check_short_digits(RESH_SYSTEM, value)


def check_kommunenummer(value: str) -> None:
    """Validate a kommunenummer: exactly 4 digits."""
    if len(value) != 4 or not _is_digits(value):
        raise InvalidIdentifier(KOMMUNENUMMER_SYSTEM, value, "must be 4 digits")


def validate_identifier(
    system: str, value: str, *, enforce_orgnr_check_digit: bool = True
) -> PersonNumber | None:
    """Validate ``value`` according to ``system``.

    Returns the PersonNumber for person-number systems and None for the other known systems.
    Identifiers with systems this module does not know are accepted unchanged (None).
    Raises InvalidIdentifier when the value is invalid for a known system.
    """
    if system in PERSON_SYSTEMS:
        return parse_person_number(value, system)
    if system == ORGNR_SYSTEM:
        check_orgnr(value, enforce_check_digit=enforce_orgnr_check_digit)
    elif system == HPR_SYSTEM:
        check_hpr(value)
    elif system == HERID_SYSTEM:
        check_her_id(value)
    elif system == RESH_SYSTEM:
        check_resh(value)
    elif system == KOMMUNENUMMER_SYSTEM:
        check_kommunenummer(value)
    return None
