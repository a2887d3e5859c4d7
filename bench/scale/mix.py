"""The mix a scale run imports: children with their GP, their parents, referrals, care
teams and plans, each resource with the party entitled to write it.

Pure, so that the unit tests can check what an hour-long run would import. What a child
has depends only on its index (`parents_of`, `referred`, `planned`), so the number of
resources for any number of children is known before anything is made (`children_for`).
Every resource carries a source id (`c12`, `r12-0`, …) that the importer's state file maps
to the id the server gives it: the NDJSON files refer to each other by those ids, as a
FHIR Bulk Data export does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from bench.careplan.requests import api_plan, api_team
from bench.crud import Identifiers
from bench.crud.resources import build_resource
from bench.referral.resources import organisation, patient, referral
from shared.codes import OrganisationKind
from shared.identifiers import FNR_SYSTEM

PARENTS_EVERY = 7
"""Every seventh child has one parent with parental responsibility registered, the others two."""
REFERRED_EVERY = 2
"""Every second child is referred by its GP to a BUP."""
PLANNED_EVERY = 4
"""Every fourth child (each of them referred) has an ansvarsgruppe coordinated by its BUP
and a behandlingsplan naming it."""
IMPORT_ORDER = ("Patient", "RelatedPerson", "ServiceRequest", "CareTeam", "CarePlan")
"""The types in the order their files are imported: each refers only to earlier ones."""
REGISTER = "register"
"""The writer of parental responsibility: the population register's credential."""


def parents_of(index: int) -> int:
    return 1 if index % PARENTS_EVERY == 0 else 2


def referred(index: int) -> bool:
    return index % REFERRED_EVERY == 0


def planned(index: int) -> bool:
    return index % PLANNED_EVERY == 0


def resources_of(index: int) -> int:
    """What child `index` brings: itself, its parents, its referral, its team and plan."""
    return 1 + parents_of(index) + referred(index) + 2 * planned(index)


def children_for(target: int) -> int:
    """The fewest children whose resources number at least `target`."""
    count, total = 0, 0
    while total < target:
        total += resources_of(count)
        count += 1
    return count


def resources_for(children: int) -> int:
    """How many resources the first `children` children bring."""
    return sum(resources_of(index) for index in range(children))


@dataclass(frozen=True)
class Organisations:
    """The organisations of the mix, fixed whatever its size: each one's share of the
    children grows with it."""

    gps: tuple[str, ...]
    bups: tuple[str, ...]
    kommuner: tuple[str, ...]

    @classmethod
    def made(cls, ids: Identifiers, gps: int, bups: int, kommuner: int) -> Organisations:
        def some(count: int) -> tuple[str, ...]:
            return tuple(ids.orgnr() for _ in range(count))

        return cls(some(gps), some(bups), some(kommuner))

    def organizations(self) -> list[dict[str, Any]]:
        """Every organisation, as the operator registers it (each with its kind)."""
        kinds = (
            (self.gps, OrganisationKind.FASTLEGE),
            (self.bups, OrganisationKind.BUP),
            (self.kommuner, OrganisationKind.KOMMUNE_HELSE),
        )
        return [organisation(orgnr, kind) for orgnrs, kind in kinds for orgnr in orgnrs]


@dataclass(frozen=True, slots=True)
class Child:
    """One child of the mix and what the measurement needs to know of it."""

    index: int
    fnr: str
    gp: str
    """The GP office that registers the child and refers it."""
    parents: int
    bup: str | None
    """The BUP it is referred to (and whose team and plan it has), if it is referred."""
    planned: bool
    kommune: str
    """The kommune-helse its plan is shared with."""

    @property
    def patient_key(self) -> str:
        return f"Patient/c{self.index}"

    @property
    def referral_key(self) -> str:
        return f"ServiceRequest/s{self.index}"

    @property
    def team_key(self) -> str:
        return f"CareTeam/t{self.index}"

    @property
    def plan_key(self) -> str:
        return f"CarePlan/p{self.index}"


def _dealt(index: int, pool: tuple[str, ...]) -> str:
    """The organisation of `pool` child `index` has: the children come in blocks of
    `PLANNED_EVERY` (one of each share of the mix), dealt round the pool block by block,
    so every organisation gets referred and planned children alike."""
    return pool[(index // PLANNED_EVERY) % len(pool)]


def make_child(index: int, ids: Identifiers, orgs: Organisations) -> Child:
    return Child(
        index=index,
        fnr=ids.fnr(),
        gp=_dealt(index, orgs.gps),
        parents=parents_of(index),
        bup=_dealt(index, orgs.bups) if referred(index) else None,
        planned=planned(index),
        kommune=_dealt(index, orgs.kommuner),
    )


@dataclass(frozen=True, order=True)
class Part:
    """One NDJSON file: the resources of one type one party writes."""

    resource_type: str
    writer: str
    """An organisasjonsnummer (its token) or `REGISTER` (the register's credential)."""

    @property
    def file_name(self) -> str:
        return f"{self.resource_type}-{self.writer}.ndjson"


def _with_id(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {**resource, "id": key.split("/", 1)[1]}


def family(
    child: Child, ids: Identifiers, gp_ids: Mapping[str, str], day: date
) -> Iterator[tuple[Part, dict[str, Any]]]:
    """Child's resources with the file each goes to, in `IMPORT_ORDER` (`gp_ids`: the
    server ids of the GP offices' Organizations, which a Patient's GP names)."""
    yield (
        Part("Patient", child.gp),
        _with_id(patient(child.fnr, gp_ids[child.gp]), child.patient_key),
    )
    for number in range(child.parents):
        parent = build_resource("RelatedPerson", {"Patient": f"c{child.index}"}, ids)
        yield Part("RelatedPerson", REGISTER), {**parent, "id": f"r{child.index}-{number}"}
    if child.bup is None:
        return
    yield (
        Part("ServiceRequest", child.gp),
        _with_id(referral(child.fnr, child.gp, child.bup), child.referral_key),
    )
    if child.planned:
        # The care plan service takes the child by fødselsnummer (and adds the reference).
        subject = {"identifier": {"system": FNR_SYSTEM, "value": child.fnr}}
        team = api_team(subject, child.patient_key, child.bup, day)
        yield Part("CareTeam", child.bup), _with_id(team, child.team_key)
        plan = api_plan(subject, child.bup, child.kommune, day, care_team=child.team_key)
        yield Part("CarePlan", child.bup), _with_id(plan, child.plan_key)
