"""The extensions barnebro defines, declared once: canonical URL, where each may stand
(its context), and its value type, or the parts of a complex extension.

The code takes its URL constants from here (`CONSENT_SIGNATURE.url`, ...), and the
conformance resources (`shared.fhir.conformance`) publish one StructureDefinition per
declaration, so what the code writes and what the published definitions say are one.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.codes import STRUCTURE_DEFINITION_BASE


@dataclass(frozen=True)
class ExtensionDeclaration:
    """An extension of the project. `value` is the value[x] type (without `value`), or ""
    for a complex extension made of the sub-extensions named in `parts` (name, type)."""

    slug: str
    title: str
    contexts: tuple[str, ...]
    value: str = ""
    parts: tuple[tuple[str, str], ...] = ()
    base: str = STRUCTURE_DEFINITION_BASE

    @property
    def url(self) -> str:
        return f"{self.base}/{self.slug}"

    @property
    def value_key(self) -> str:
        """The JSON key of the value (`valueDate`); "" for a complex extension."""
        return f"value{self.value[0].upper()}{self.value[1:]}" if self.value else ""


def _ext(
    slug: str, title: str, contexts: tuple[str, ...] | str, value: str = "",
    parts: tuple[tuple[str, str], ...] = (), base: str = STRUCTURE_DEFINITION_BASE,
) -> ExtensionDeclaration:  # fmt: skip
    where = (contexts,) if isinstance(contexts, str) else contexts
    return ExtensionDeclaration(slug, title, where, value, parts, base)


SUBSCRIPTION_BASE = "https://barnebro.no/fhir/StructureDefinition"
"""Where the subscription extensions were first published (kept: partners use them)."""


# Shared by several services
LEGAL_REGIME = _ext(
    "legal-regime", "The legal regime a plan or statement is made under",
    ("CarePlan", "Provenance"), "code",
)  # fmt: skip
STATEMENT_PROVENANCE = _ext(
    "statement-provenance", "Who made a statement, when, and from what source", "Element"
)
CHANGED_BY = _ext(
    "changed-by", "Who changed the resource, and what kind of change it was",
    ("Resource.meta", "CarePlan"),
    parts=(("change", "code"), ("system", "string"), ("person", "Reference"),
           ("organization", "Identifier"), ("practitioner", "Identifier")),
)  # fmt: skip

# Consent
CONSENT_SIGNATURE = _ext(
    "consent-signature", "A grantor's signature: who, decision, method, collected by, date",
    "Consent",
    parts=(("grantor", "Reference"), ("decision", "code"), ("method", "code"),
           ("collectedBy", "string"), ("date", "date")),
)  # fmt: skip
CHILD_VIEW = _ext(
    "child-view", "The child's view: whether and by whom heard, the statement, objection",
    "Consent",
    parts=(("heard", "boolean"), ("statement", "string"), ("heardBy", "string"),
           ("date", "date"), ("notHeardReason", "string"), ("objects", "boolean")),
)  # fmt: skip
CONSENT_CIRCUMSTANCE = _ext(
    "consent-circumstance", "A circumstance the consent rules weigh", "Consent", "code"
)
OTHER_PARENT_HEARD = _ext(
    "other-parent-heard", "A parent with responsibility who was heard", "Consent", "Reference"
)
STATUS_REASON = _ext("status-reason", "Why the rules gave the status", "Consent", "string")
STATUS_MISSING = _ext("status-missing", "What the consent still lacks", "Consent", "string")
OBLIGATION = _ext("obligation", "An obligation on those the consent releases to", "Consent", "code")
AUTHORITY_VALID_UNTIL = _ext(
    "authority-valid-until", "The day the grantors' authority ends", "Consent", "date"
)
ENDED_BECAUSE = _ext("ended-because", "Why the consent ended", "Consent", "code")
WITHDRAWAL = _ext(
    "withdrawal", "Who withdrew the consent, when and why", "Consent",
    parts=(("by", "Reference"), ("date", "date"), ("reason", "string")),
)  # fmt: skip
RECIPIENT_KIND = _ext(
    "recipient-kind", "A kind of organisation the consent releases to", "Consent.provision",
    "Coding",
)  # fmt: skip
RECIPIENT_ROLE = _ext(
    "recipient-role", "A care role the consent releases to", "Consent.provision", "Coding"
)
GRANTOR_ORGANIZATION = _ext(
    "grantor-organization", "An organisation a grantor acts for", "Consent",
    parts=(("organization", "Reference"), ("orgnr", "string")),
)  # fmt: skip
CONSENT_COLLECTION = _ext(
    "consent-collection",
    "How and by whom the consent was collected",
    "Consent",
)
EMERGENCY_REVIEW = _ext(
    "emergency-review", "The review of an emergency access (nødrett)", "AuditEvent"
)
DISCLOSURE_CLOSED = _ext(
    "disclosure-closed", "When and why a §33 disclosure was closed", "AuditEvent"
)

# Care plans
CAREPLAN_NEXT_REVISION = _ext(
    "careplan-next-revision", "The day the plan is next to be revised", "CarePlan", "date"
)
CAREPLAN_REVISION_DUE = _ext(
    "careplan-revision-due", "The revision day that has come without a revision", "CarePlan",
    "date",
)  # fmt: skip
INDIVIDUELL_PLAN_MISSING = _ext(
    "individuell-plan-missing", "A point of the individual plan regulation still missing",
    "CarePlan", "Coding",
)  # fmt: skip
CAREPLAN_COLLABORATION = _ext(
    "careplan-collaboration", "How the services collaborate on the plan", "CarePlan", "string"
)
CHANGE_REASON = _ext("change-reason", "Why the plan was changed", "CarePlan", "string")
CAREPLAN_ACTIVITY_EXTENT = _ext(
    "careplan-activity-extent", "The extent of a planned activity", "CarePlan.activity.detail",
    "string",
)  # fmt: skip
COORDINATOR_HANDOVER = _ext(
    "coordinator-handover", "The handover from the coordinator before", "CareTeam.participant"
)
COORDINATOR_SUBSTITUTE_FOR = _ext(
    "coordinator-substitute-for", "The coordinator this one stands in for",
    "CareTeam.participant", "string",
)  # fmt: skip
STATEMENT_QUOTATION = _ext(
    "statement-quotation", "A statement quoted from another record", "Element"
)

# Referrals
REFERRAL_ANSIENNITETSDATO = _ext(
    "referral-ansiennitetsdato", "Ansiennitetsdato: the day the deadlines count from", "Task",
    "date",
)  # fmt: skip
REFERRAL_ARRIVAL = _ext(
    "referral-arrival", "When and how the referral reached its receiver", "ServiceRequest",
    parts=(("at", "dateTime"), ("source", "Coding"), ("identifier", "Identifier"),
           ("recorded", "dateTime"), ("by", "Identifier")),
)  # fmt: skip
REFERRAL_ASSESSMENT_DEADLINE = _ext(
    "referral-assessment-deadline", "The day the assessment must be done", "Task", "date"
)
REFERRAL_FRIST = _ext("referral-frist", "The day treatment must start (frist)", "Task", "date")
REFERRAL_DEADLINE_BREACH = _ext(
    "referral-deadline-breach", "A legal deadline the referral has passed", "Task", "Coding"
)
REFERRAL_LEGAL_CRITERION = _ext(
    "referral-legal-criterion", "The criterion the right to treatment is judged by", "Task",
    "Coding",
)  # fmt: skip
REFERRAL_APPEAL_INFORMATION = _ext(
    "referral-appeal-information", "How a rejection may be appealed", "Task", "string"
)
REFERRAL_NO_SHOW_COUNT = _ext(
    "referral-no-show-count", "How many appointments the patient missed", "Task", "unsignedInt"
)
REFERRAL_CLOSURE_WARNED = _ext(
    "referral-closure-warned", "The day the patient was warned of closure", "Task", "date"
)
REFERRAL_TRANSITION = _ext(
    "referral-transition", "Who made the last change of status or step, and when", "Task"
)
REFERRAL_COMPLETENESS = _ext(
    "referral-completeness", "Something the referral lacks", ("ServiceRequest", "Task"), "Coding"
)
SHARED_WITH = _ext(
    "shared-with", "An organisation the referral is shared with", ("ServiceRequest", "Task"),
    "Identifier",
)  # fmt: skip
REFERRAL_FORLOPSKOORDINATOR = _ext(
    "referral-forlopskoordinator", "A forløpskoordinator of a referral in a pakkeforløp",
    "ServiceRequest", parts=(("role", "code"), ("coordinator", "Reference")),
)  # fmt: skip

# Subscriptions
SUBSCRIPTION_NATS_SUBJECT = _ext(
    "subscription-nats-subject", "The NATS subject of a nats channel", "Subscription.channel",
    "string", base=SUBSCRIPTION_BASE,
)  # fmt: skip
SUBSCRIPTION_SIGNING_SECRET = _ext(
    "subscription-signing-secret", "The secret rest-hook notifications are signed with",
    "Subscription.channel", "string", base=SUBSCRIPTION_BASE,
)  # fmt: skip

EXTENSIONS: tuple[ExtensionDeclaration, ...] = tuple(
    value for value in globals().values() if isinstance(value, ExtensionDeclaration)
)
"""Every extension the project defines."""
