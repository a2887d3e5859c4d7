"""Who a care team's members are: checked against the directory before a team is written.

Who takes part decides who sees the team and who may coordinate, so a member is always one
the rules can recognise: the team's own child, one of the child's own RelatedPersons, an
organisation by organisasjonsnummer, or a registered Practitioner or PractitionerRole acting
for an organisation it names in `onBehalfOf` (a role, only for its own organisation). A
member named by anything else (another child, a number the directory does not hold, a
service, a team) is refused: it would be a party no rule could judge.
"""

from __future__ import annotations

from typing import Any

from services.careplan.records import participants
from shared.directory_client import DirectoryClient, orgnr_in
from shared.fhir.elements import orgnr_of, patient_id
from shared.fhir.errors import error
from shared.fhir.references import reference_target
from shared.identifiers import ORGNR_SYSTEM

PERSONS = ("Patient", "RelatedPerson")
PRACTITIONERS = ("Practitioner", "PractitionerRole")
NAMED_AS = (
    "a care team's member is the child (Patient/<id>), one of its RelatedPersons, a"
    " registered Practitioner or PractitionerRole (with onBehalfOf), or an organisation by"
    " organisasjonsnummer"
)


async def check_members(
    team: dict[str, Any], before: dict[str, Any] | None, child: str, directory: DirectoryClient
) -> None:
    """422 for the first new member that is not who a member may be (members already
    stored are not judged again)."""
    known = {(p.member, p.role, p.start) for p in participants(before or {})}
    entries = team.get("participant") or []
    for index, (entry, participant) in enumerate(zip(entries, participants(team), strict=True)):
        if (participant.member, participant.role, participant.start) in known:
            continue
        problem = await _member_problem(entry, child, directory)
        if problem is not None:
            raise error(422, "business-rule", problem, f"CareTeam.participant[{index}].member")


async def _member_problem(
    entry: dict[str, Any], child: str, directory: DirectoryClient
) -> str | None:
    member = entry.get("member") or {}
    target = reference_target(member)
    if target is None:
        by_number = (member.get("identifier") or {}).get("system") == ORGNR_SYSTEM
        return None if by_number and "reference" not in member else NAMED_AS
    kind, member_id = target
    if kind == "Organization":
        return None
    if kind == "Patient":
        return None if member_id == child else "The only Patient in a care team is its child"
    if kind == "RelatedPerson":
        relative = await directory.read("RelatedPerson", member_id)
        if patient_id((relative or {}).get("patient")) != child:
            return "A RelatedPerson in a care team is one of the child's own"
        return None
    if kind not in PRACTITIONERS:
        return NAMED_AS
    acting_for = orgnr_of(entry.get("onBehalfOf"))
    found = await directory.read(kind, member_id)
    if found is None or acting_for is None:
        return f"A {kind} in a care team is a registered one, acting for an organisation"
    if kind == "PractitionerRole":
        organisation = reference_target(found.get("organization"))
        at = await directory.read(*organisation) if organisation else None
        if acting_for != orgnr_in(at):
            return "A PractitionerRole acts in a care team only for its own organisation"
    return None
