"""The referral service's code systems and extensions (project CodeSystems).

Norwegian codes where the thing has a Norwegian legal name; each is declared once here,
with its display and definition, beside the canonical URL stored resources name as its
`system`. `CODE_SYSTEMS` lists them for the consent service to serve as CodeSystems and
ValueSets.
"""

from __future__ import annotations

from enum import StrEnum

from shared.codes import CODE_SYSTEM_BASE, CodedEnum
from shared.fhir import extensions as ext
from shared.fhir.code_systems import CodeSystemSource
from shared.fhir.profiles import ProfileRules


class TaskStatus(StrEnum):
    """FHIR Task.status values the referral workflow uses."""

    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Step(CodedEnum):
    """Task.businessStatus: the Norwegian step of a referral within its FHIR Task status
    (CodeSystem referral-step)."""

    SENDT = "sendt", "Sendt", "Sent to the receiver, not yet received"
    MOTTATT = "mottatt", "Mottatt", "Received by the receiver: the ansiennitetsdato is set"
    RETT_TIL_HELSEHJELP = (
        "rett-til-helsehjelp",
        "Rett til nødvendig helsehjelp",
        "Accepted: the patient has a right to necessary specialist care, with a frist",
    )
    AVSLATT = "avslatt", "Avslått", "Rejected by the receiver"
    VIDERESENDT = (
        "videresendt",
        "Videresendt",
        "Redirected: formally a rejection, and a named municipal service takes over",
    )
    UNDER_BEHANDLING = "under-behandling", "Under behandling", "Care has started"
    AVSLUTNING_VARSLET = (
        "avslutning-varslet",
        "Avslutning varslet",
        "The patient has been warned that treatment will be closed after repeated no-shows",
    )
    PA_VENT = "pa-vent", "På vent", "On hold"
    UTSKREVET = (
        "utskrevet",
        "Utskrevet",
        "Discharged (tilbakeført) to the municipality with a follow-up plan",
    )
    AVSLUTTET = "avsluttet", "Avsluttet", "Closed by the receiver"
    TRUKKET = "trukket", "Trukket", "Withdrawn by the referrer"


class RejectionReason(CodedEnum):
    """Task.statusReason of a rejection (CodeSystem referral-rejection-reason)."""

    INGEN_RETT = (
        "ingen-rett",
        "Ingen rett til nødvendig helsehjelp",
        "The patient has no right to necessary specialist care",
    )
    UFULLSTENDIG = "ufullstendig", "Ufullstendig henvisning", "The referral is incomplete"
    FEIL_MOTTAKER = "feil-mottaker", "Feil mottaker", "The referral was sent to the wrong receiver"
    ANNET = "annet", "Annet", "Another reason, stated in the rejection"


class LegalCriterion(CodedEnum):
    """The criteria a rejection must refer to (CodeSystem referral-legal-criterion):
    prioriteringsforskriften §2 (alvorlighet, nytte, kostnad) as applied by the
    prioriteringsveileder for psykisk helsevern for barn og unge."""

    ALVORLIGHETSKRITERIET = (
        "alvorlighetskriteriet",
        "Alvorlighetskriteriet",
        "The severity criterion (prioriteringsforskriften §2)",
    )
    NYTTEKRITERIET = (
        "nyttekriteriet",
        "Nyttekriteriet",
        "The benefit criterion (prioriteringsforskriften §2)",
    )
    KOSTNADSKRITERIET = (
        "kostnadskriteriet",
        "Kostnadskriteriet",
        "The cost criterion (prioriteringsforskriften §2)",
    )
    PRIORITERINGSVEILEDEREN = (
        "prioriteringsveilederen",
        "Prioriteringsveilederen",
        "The priority guideline for mental health care for children and adolescents",
    )


class CloseReason(CodedEnum):
    """Task.statusReason of a cancellation (CodeSystem referral-close-reason)."""

    GJENTATTE_UTEBLIVELSER = (
        "gjentatte-uteblivelser",
        "Gjentatte uteblivelser",
        "Closed after repeated no-shows, the patient having been warned",
    )
    TRUKKET = "trukket", "Trukket", "Withdrawn by the referrer"
    ANNET = "annet", "Annet", "Another reason, stated when closing"


class Attachment(CodedEnum):
    """What a referral attachment is (DocumentReference.type, CodeSystem
    referral-attachment)."""

    KOMMUNAL_KARTLEGGING = (
        "kommunal-kartlegging",
        "Kommunal kartlegging",
        "The municipality's assessment summary: what was assessed and tried",
    )
    PPT_VURDERING = (
        "ppt-vurdering",
        "PPT-vurdering",
        "The educational-psychological service's (PPT) assessment",
    )
    SOMATISK_VURDERING = "somatisk-vurdering", "Somatisk vurdering", "A somatic assessment"
    BARNETS_STEMME = "barnets-stemme", "Barnets stemme", "The child's own view"
    ANNET = "annet", "Annet", "Another document"


class Completeness(CodedEnum):
    """The completeness marker of a referral (CodeSystem referral-completeness): complete,
    or each thing it lacks."""

    KOMPLETT = "komplett", "Komplett", "The referral has everything the guidelines ask for"
    MANGLER_KOMMUNAL_KARTLEGGING = (
        "mangler-kommunal-kartlegging",
        "Mangler kommunal kartlegging",
        "No municipal assessment summary is attached",
    )
    MANGLER_BARNETS_STEMME = (
        "mangler-barnets-stemme",
        "Mangler barnets stemme",
        "The child's own view is not attached",
    )
    MANGLER_SOMATISK_VURDERING = (
        "mangler-somatisk-vurdering",
        "Mangler somatisk vurdering",
        "No somatic assessment is attached",
    )
    MANGLER_FORLOPSKOORDINATOR_KOMMUNE = (
        "mangler-forlopskoordinator-kommune",
        "Mangler forløpskoordinator i kommunen",
        "A referral in nasjonalt forløp names no municipal forløpskoordinator",
    )
    MANGLER_FORLOPSKOORDINATOR_BUP = (
        "mangler-forlopskoordinator-bup",
        "Mangler forløpskoordinator i BUP",
        "A referral in nasjonalt forløp names no forløpskoordinator at BUP",
    )


class ArrivalSource(CodedEnum):
    """How a referral reached its receiver (CodeSystem referral-arrival-source): the
    source of its ansiennitetsdato."""

    BARNEBRO = (
        "barnebro",
        "Barnebro",
        "Submitted here: the submission is the arrival (recorded by the server)",
    )
    NHN_MELDING = (
        "nhn-melding",
        "Melding over Norsk Helsenett",
        "An electronic referral message over Norsk Helsenett, named by its message id",
    )
    PAPIR = "papir", "Papir", "On paper (post, fax, by hand), stamped mottatt on arrival"


class Output(CodedEnum):
    """Task.output.type (CodeSystem referral-output)."""

    ANSVARLIG_OPPFOLGING = (
        "ansvarlig-oppfolging",
        "Ansvarlig for oppfølging",
        "The municipal service responsible for follow-up",
    )
    OPPFOLGINGSPLAN = "oppfolgingsplan", "Oppfølgingsplan", "The follow-up plan on discharge"


class Breach(CodedEnum):
    """A legal deadline passed (CodeSystem referral-deadline-breach)."""

    ASSESSMENT_OVERDUE = (
        "assessment-overdue",
        "Vurderingsfrist oversittet",
        "The referral was not assessed within 10 working days of its receipt (pbrl §2-2)",
    )
    FRIST_BREACHED = (
        "frist-breached",
        "Frist for helsehjelp oversittet",
        "Care did not start by the frist the assessment set (pbrl §2-2)",
    )


STEP_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-step"
REJECTION_REASON_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-rejection-reason"
LEGAL_CRITERION_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-legal-criterion"
CLOSE_REASON_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-close-reason"
ATTACHMENT_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-attachment"
COMPLETENESS_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-completeness"
OUTPUT_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-output"
BREACH_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-deadline-breach"
ARRIVAL_SOURCE_SYSTEM = f"{CODE_SYSTEM_BASE}/referral-arrival-source"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"

CODE_SYSTEMS = (
    CodeSystemSource(STEP_SYSTEM, "Referral steps", Step),
    CodeSystemSource(REJECTION_REASON_SYSTEM, "Referral rejection reasons", RejectionReason),
    CodeSystemSource(LEGAL_CRITERION_SYSTEM, "Referral legal criteria", LegalCriterion),
    CodeSystemSource(CLOSE_REASON_SYSTEM, "Referral close reasons", CloseReason),
    CodeSystemSource(ATTACHMENT_SYSTEM, "Referral attachments", Attachment),
    CodeSystemSource(COMPLETENESS_SYSTEM, "Referral completeness", Completeness),
    CodeSystemSource(OUTPUT_SYSTEM, "Referral outputs", Output),
    CodeSystemSource(BREACH_SYSTEM, "Referral deadline breaches", Breach),
    CodeSystemSource(ARRIVAL_SOURCE_SYSTEM, "Referral arrival sources", ArrivalSource),
)
"""The referral service's code systems, served by the consent service."""

TASK_PROFILE = ProfileRules(
    required=("focus", "for", "owner", "requester", "authoredOn", "code"),
    fixed=(("intent", "order"),),
    bindings=(("businessStatus", STEP_SYSTEM),),
)
"""What every referral Task has: the server makes it with the referral (`new_task`: its
intent from here, its step from the status) and no update changes those elements."""
SERVICE_REQUEST_PROFILE = ProfileRules(required=("subject", "performer"))
"""What every referral names: the child and exactly one receiver (`intake`)."""
ATTACHMENT_PROFILE = ProfileRules(required=("type",), bindings=(("type", ATTACHMENT_SYSTEM),))
"""What every attachment says: what it is, by a referral-attachment code."""

ANSIENNITETSDATO_EXT = ext.REFERRAL_ANSIENNITETSDATO.url
ARRIVAL_EXT = ext.REFERRAL_ARRIVAL.url
"""When and how the referral reached its receiver: `at` (dateTime), `source` (Coding from
referral-arrival-source), `identifier` (the NHN message id, a paper's journal number) and,
from the server, `recorded` (when) and `by` (the receiver's organisasjonsnummer)."""
ASSESSMENT_DEADLINE_EXT = ext.REFERRAL_ASSESSMENT_DEADLINE.url
FRIST_EXT = ext.REFERRAL_FRIST.url
BREACH_EXT = ext.REFERRAL_DEADLINE_BREACH.url
CRITERION_EXT = ext.REFERRAL_LEGAL_CRITERION.url
APPEAL_EXT = ext.REFERRAL_APPEAL_INFORMATION.url
NO_SHOWS_EXT = ext.REFERRAL_NO_SHOW_COUNT.url
CLOSURE_WARNED_EXT = ext.REFERRAL_CLOSURE_WARNED.url
TRANSITION_EXT = ext.REFERRAL_TRANSITION.url
COMPLETENESS_EXT = ext.REFERRAL_COMPLETENESS.url
SHARED_WITH_EXT = ext.SHARED_WITH.url
FORLOP_COORDINATOR_EXT = ext.REFERRAL_FORLOPSKOORDINATOR.url
"""A forløpskoordinator of a referral in a pakkeforløp: `role`
(forlopskoordinator-kommune | forlopskoordinator-bup) and `coordinator` (a Reference)."""

APPEAL_TEXT = (
    "Avslaget kan påklages til Statsforvalteren (pasient- og brukerrettighetsloven §7-2)."
    " The rejection can be appealed to Statsforvalteren (the county governor)."
)
"""Added by the server to every rejection: the patient's right to appeal."""

NO_SHOW_CLOSURE_DEFAULT = 3
"""DOMAIN §5: treatment is closed after repeated no-shows, 3 in the services' rules and
4-5 in practice. The fewest recorded no-shows before closure after no-shows; a deployment
may ask for more (`BARNEBRO_REFERRAL_NO_SHOW_CLOSURE`), never fewer."""
NO_SHOW_CLOSURE_MAX = 10
"""The most no-shows a deployment may require before closure."""
ASSESSMENT_WORKING_DAYS = 10
"""pbrl §2-2: the referral is assessed within 10 working days of its receipt."""
