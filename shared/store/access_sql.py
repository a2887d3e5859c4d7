"""The access columns of a stored resource and the SQL that filters searches by them.

Each current resource row carries the patient it is about, its data category (NULL when
it is not information about a patient), the organisation that first wrote it and the
organisations named on it. `AccessFilter` is the decision of `shared.access.decision`
for a whole result set; `access_clause` turns it into one SQL condition, applied to the
matches, the `_total` count, included resources and history alike.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from shared.store.database import IN_TEXT_LIST, text_list


@dataclass(frozen=True)
class ResourceAccess:
    """The access columns written with a resource version."""

    patient: str | None = None
    category: str | None = None
    author: str | None = None
    parties: tuple[str, ...] = ()

    @property
    def parties_text(self) -> str | None:
        """Parties as stored: space-separated, with a space on each side (LIKE '% x %')."""
        return f" {' '.join(self.parties)} " if self.parties else None


NO_ACCESS_COLUMNS = ResourceAccess()


def parties_of(text: str | None) -> tuple[str, ...]:
    return tuple((text or "").split())


@dataclass(frozen=True)
class AccessFilter:
    """Which rows of a patient-data category a caller may see.

    Rows it wrote or is named on (`orgs`; named on only for rows about `named_within`,
    when that is given); every row about `patients`; rows about each patient of
    `patients_except` except those written by or naming the listed organisations; single
    resources (`Type/id`) in `resources`; and the versions `disclosed` about each patient.
    """

    orgs: tuple[str, ...] = ()
    named_within: tuple[str, ...] | None = None
    patients: tuple[str, ...] = ()
    patients_except: tuple[tuple[str, tuple[str, ...]], ...] = ()
    patients_except_records: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Rows about each patient except these single records (`Type/id`)."""
    resources: tuple[str, ...] = ()
    disclosed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Single versions (`Type/id/_history/<version>`) disclosed about each patient: a row
    is released only at that version and while it is about that patient (a disclosure
    about one child opens nothing of another's, and a later version nothing at all)."""
    by_category: tuple[tuple[str, AccessFilter], ...] = ()
    """For a type whose rows hold several categories: each category's own filter (the
    fields above are then unused)."""

    def within(self, patients: Collection[str]) -> AccessFilter:
        """The filter for a search that matches only rows about `patients`: it allows the
        same rows about them as this one. What this one allows about other patients by
        patient (parents, consents, disclosures) is left out, so its size is that of the
        search, not of all the patients the caller may see."""
        wanted = sorted(set(patients))
        return replace(
            self,
            named_within=(
                None
                if self.named_within is None
                else tuple(p for p in wanted if p in self._named_set)
            ),
            patients=tuple(p for p in wanted if p in self._patient_set),
            patients_except=tuple(e for e in self.patients_except if e[0] in wanted),
            patients_except_records=tuple(
                e for e in self.patients_except_records if e[0] in wanted
            ),
            disclosed=tuple(d for d in self.disclosed if d[0] in wanted),
            by_category=tuple((c, inner.within(wanted)) for c, inner in self.by_category),
        )

    @cached_property
    def _patient_set(self) -> frozenset[str]:
        return frozenset(self.patients)

    @cached_property
    def _named_set(self) -> frozenset[str]:
        return frozenset(self.named_within or ())


def _marks(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join("?" * len(values))


def _held_by(
    orgs: tuple[str, ...], alias: str, named_within: tuple[str, ...] | None = None
) -> tuple[str, list[Any]]:
    conditions = [f"COALESCE({alias}.author, '') IN ({_marks(orgs)})"]
    args: list[Any] = [*orgs]
    if named_within == ():
        return "(" + conditions[0] + ")", args
    named, named_args = [], []
    for org in orgs:
        named.append(f"COALESCE({alias}.parties, '') LIKE ? ESCAPE '\\'")
        escaped = org.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        named_args.append(f"% {escaped} %")
    if named_within is None:
        conditions += named
    else:
        within = f"{alias}.patient {IN_TEXT_LIST}"
        conditions.append(f"(({' OR '.join(named)}) AND {within})")
        named_args.append(text_list(named_within))
    return "(" + " OR ".join(conditions) + ")", args + named_args


def access_clause(access: AccessFilter | None, alias: str = "r") -> tuple[str, list[Any]]:
    """One SQL condition (with its arguments) that keeps the rows `access` allows.

    None means no filter at all (a trusted internal caller)."""
    if access is None:
        return "1 = 1", []
    if access.by_category:
        parts, args = [f"{alias}.category IS NULL"], []
        for category, inner in access.by_category:
            sql, more = access_clause(inner, alias)
            parts.append(f"({alias}.category = ? AND {sql})")
            args += [category, *more]
        return "(" + " OR ".join(parts) + ")", args
    alternatives = [f"{alias}.category IS NULL"]
    args = []
    if access.orgs:
        sql, more = _held_by(access.orgs, alias, access.named_within)
        alternatives.append(sql)
        args += more
    if access.patients:
        alternatives.append(f"{alias}.patient {IN_TEXT_LIST}")
        args.append(text_list(access.patients))
    for patient, excluded in access.patients_except:
        held, more = _held_by(excluded, alias)
        alternatives.append(f"({alias}.patient = ? AND NOT {held})")
        args += [patient, *more]
    reference = f"({alias}.res_type || '/' || {alias}.res_id)"
    for patient, records in access.patients_except_records:
        alternatives.append(f"({alias}.patient = ? AND {reference} NOT IN ({_marks(records)}))")
        args += [patient, *records]
    if access.resources:
        alternatives.append(f"{reference} IN ({_marks(access.resources)})")
        args += access.resources
    versioned = f"({reference} || '/_history/' || CAST({alias}.version AS TEXT))"
    for patient, disclosed in access.disclosed:
        alternatives.append(f"({alias}.patient = ? AND {versioned} IN ({_marks(disclosed)}))")
        args += [patient, *disclosed]
    return "(" + " OR ".join(alternatives) + ")", args
