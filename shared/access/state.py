"""The replicated access state of one patient: what the consent records add up to.

Computed by the consent service whenever a consent, a parental responsibility or a care
order changes, published through its outbox into the consent-view key-value bucket under
the patient's id, and mirrored by every service. It holds only what a decision needs: no
names, no free text.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class Grant(BaseModel):
    """An active consent, as the recipients and data it covers.

    Recipients are organisations (organisasjonsnummer), organisation kinds or care roles.
    An empty `purposes_of_use` covers every purpose. `start`/`end` bound the days it
    covers (the end is also where the authority of its grantors ends, e.g. the day before
    the child turns 16 for a parents' consent).
    """

    consent: str
    categories: list[str]
    purpose: str | None = None
    """What the consent is for (consent-purpose code, e.g. kontaktinfo-videreformidling)."""
    orgs: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    purposes_of_use: list[str] = Field(default_factory=list)
    start: date | None = None
    end: date | None = None
    on_behalf: bool = False
    """Given by the parents or a care-order holder on the child's behalf, without the
    child's own consent: it releases nothing the child keeps from the parents."""

    def covers_day(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


class HiddenFromParents(BaseModel):
    """Information a child of 12-15 consented to alone, to be kept from the parents
    (pbrl §3-4 second ledd): what these organisations hold in these categories. Neither
    the parents nor anyone under a consent given on the child's behalf see it."""

    consent: str
    orgs: list[str]
    categories: list[str]


class Disclosure(BaseModel):
    """A disclosure without consent under a named legal basis (hpl §33 opplysningsplikt):
    these recipients may see exactly these versions (`Type/id/_history/<version>`), the
    ones current when it was reported: not a later version, not the earlier history. A
    closed disclosure is not in the state; an entry without a version (a state stored
    before versions were recorded) releases nothing."""

    record: str
    basis: str
    recipients: list[str]
    resources: list[str]


class PatientAccessState(BaseModel):
    """Everything the access decisions about one patient depend on."""

    patient: str
    parents: list[str] = Field(default_factory=list)
    """`RelatedPerson/<id>` of the holders of parental responsibility."""
    parents_until: date | None = None
    """The last day parents see the child's information by parental responsibility (the
    day before the 16th birthday); None when no reliable birth date is recorded."""
    grants: list[Grant] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)
    """Organisations (organisasjonsnummer) that wrote or are named on a record about the
    child in any service: a relation to the child (they see its directory record)."""
    care_order_holders: list[str] = Field(default_factory=list)
    """Organisations holding a care order for the child that has not ended."""
    parents_end: dict[str, date] = Field(default_factory=dict)
    """The last day of a holder's parental responsibility, where the register has set an
    end that has not come yet: decided by the day, not by the next publication."""
    care_order_ends: dict[str, date] = Field(default_factory=dict)
    """The last day of a holder's care orders, where every one it holds has an end."""

    def is_parent(self, person: str | None, day: date) -> bool:
        """Whether `person` (`RelatedPerson/<id>`) holds parental responsibility on `day`
        and the child is young enough for it to reach its information."""
        return (
            person is not None
            and person in self.parents
            and self.parents_until is not None
            and day <= self.parents_until
            and day <= self.parents_end.get(person, day)
        )

    def holds_care_order(self, orgnr: str | None, day: date) -> bool:
        return (
            bool(orgnr)
            and orgnr in self.care_order_holders
            and (day <= self.care_order_ends.get(str(orgnr), day))
        )

    hidden_from_parents: list[HiddenFromParents] = Field(default_factory=list)
    disclosures: list[Disclosure] = Field(default_factory=list)

    def recipient_keys(self) -> set[str]:
        """Index keys of every actor this state may permit something to."""
        keys = {f"parent:{parent}" for parent in self.parents}
        keys.update(f"org:{org}" for org in (*self.related, *self.care_order_holders))
        for grant in self.grants:
            keys.update(f"org:{org}" for org in grant.orgs)
            keys.update(f"kind:{kind}" for kind in grant.kinds)
            keys.update(f"role:{role}" for role in grant.roles)
        for disclosure in self.disclosures:
            keys.update(f"org:{org}" for org in disclosure.recipients)
        return keys
