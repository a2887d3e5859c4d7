"""The demonstration register of the local stack: one organisation of every kind.

`barnebro up` registers these (if they are not already) so that a newcomer can try the
stack at once; `barnebro token --kind KIND` makes a token for the one of that kind. A
real deployment registers its organisations with `barnebro org import`.
"""

from __future__ import annotations

from services.operator.organisations import OrganisationRow

DEMO_KOMMUNE = "0301"
DEMO_ORGANISATIONS: dict[str, OrganisationRow] = {
    row.kind: row
    for row in (
        OrganisationRow("889640782", "Demo legekontor", "fastlege", DEMO_KOMMUNE),
        OrganisationRow("910000012", "Demo BUP", "bup", DEMO_KOMMUNE),
        OrganisationRow("910000071", "Demo BUP akutt", "bupa", DEMO_KOMMUNE),
        OrganisationRow("910000098", "Demo DPS", "dps", DEMO_KOMMUNE),
        OrganisationRow("974760673", "Demo barnevernstjeneste", "barnevernstjeneste", DEMO_KOMMUNE),
        OrganisationRow(
            "910000047", "Demo barneverninstitusjon", "barneverninstitusjon", DEMO_KOMMUNE
        ),
        OrganisationRow("910000101", "Demo Bufetat", "bufetat", DEMO_KOMMUNE),
        OrganisationRow("910000055", "Demo kommunehelse", "kommune-helse", DEMO_KOMMUNE),
        OrganisationRow("910000020", "Demo legevakt", "legevakt", DEMO_KOMMUNE),
        OrganisationRow("910000039", "Demo skole", "skole", DEMO_KOMMUNE),
        OrganisationRow("910000128", "Demo barnehage", "barnehage", DEMO_KOMMUNE),
        OrganisationRow("910000136", "Demo PPT", "ppt", DEMO_KOMMUNE),
        OrganisationRow("910000144", "Demo NAV", "nav", DEMO_KOMMUNE),
    )
}
"""Kind → the demonstration organisation of that kind."""


def demo_orgnr(kind: str) -> str:
    return DEMO_ORGANISATIONS[kind].orgnr
