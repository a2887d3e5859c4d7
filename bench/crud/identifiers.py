"""Valid, unique Norwegian identifiers for the resources a run creates."""

from __future__ import annotations

import random
from collections.abc import Iterator

_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_FNR_SPACE = 28 * 12 * 100 * 1000
"""Day 1-28 (always a real date), month 1-12, two-digit year, individnummer 000-999."""


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    """The mod-11 check digit of `digits`, or None when none exists (remainder 1)."""
    remainder = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    if remainder == 1:
        return None
    return 0 if remainder == 0 else 11 - remainder


def orgnr_for(base: int) -> str | None:
    """The organisasjonsnummer with the 8-digit prefix `base`, if its check digit exists."""
    digits = f"{base:08d}"
    check = _mod11(digits, _ORGNR_WEIGHTS)
    return None if check is None else digits + str(check)


def synthetic_fnr_for(index: int) -> str | None:
    """The synthetic fødselsnummer (month + 80) number `index`, if its check digits exist."""
    index %= _FNR_SPACE
    index, day = divmod(index, 28)
    index, month = divmod(index, 12)
    individ, year = divmod(index, 100)
    digits = f"{day + 1:02d}{month + 81:02d}{year:02d}{individ:03d}"
    k1 = _mod11(digits, _K1_WEIGHTS)
    if k1 is None:
        return None
    k2 = _mod11(digits + str(k1), _K2_WEIGHTS)
    if k2 is None:
        return None
    return f"{digits}{k1}{k2}"


class Identifiers:
    """Unique, valid business identifiers: each call moves a counter, so none repeats."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self._orgnr = self._counter(80_000_000 + rng.randrange(10_000_000))
        self._fnr = self._counter(rng.randrange(_FNR_SPACE))
        self._hpr = self._counter(1_000_000 + rng.randrange(8_000_000))

    @staticmethod
    def _counter(start: int) -> Iterator[int]:
        value = start
        while True:
            yield value
            value += 1

    def orgnr(self) -> str:
        while True:
            value = orgnr_for(next(self._orgnr) % 100_000_000)
            if value is not None:
                return value

    def fnr(self) -> str:
        while True:
            value = synthetic_fnr_for(next(self._fnr))
            if value is not None:
                return value

    def hpr(self) -> str:
        return str(next(self._hpr))
