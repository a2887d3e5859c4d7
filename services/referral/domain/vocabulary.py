"""The referral service's code systems and extensions (project CodeSystems).

Norwegian codes where the thing has a Norwegian legal name; each is glossed once here.
"""

from __future__ import annotations

from enum import StrEnum

from shared.codes import CODE_SYSTEM_BASE
from shared.fhir import extensions as ext


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


class Step(StrEnum):
    """Task.businessStatus: the Norwegian step within a status (CodeSystem
    referral-step)."""

    SENDT = "sendt"
    """sent, not yet received"""
    MOTTATT = "mottatt"
    """received: the ansiennitetsdato is set"""
    RETT_TIL_HELSEHJELP = "rett-til-helsehjelp"
    """accepted: the patient has a right to necessary specialist care, with a frist"""
    AVSLATT = "avslatt"
    """rejected"""
    VIDERESENDT = "videresendt"
    """redirected: formally a rejection, a named municipal service takes over"""
    UNDER_BEHANDLING = "under-behandling"
    """care has started"""
    AVSLUTNING_VARSLET = "avslutning-varslet"
    """the patient has been warned that treatment will be closed after no-shows"""
    PA_VENT = "pa-vent"
    """on hold"""
    UTSKREVET = "utskrevet"
    """discharged (tilbakeført) to the municipality with a follow-up plan"""
    AVSLUTTET = "avsluttet"
    """closed by the receiver"""
    TRUKKET = "trukket"
    """withdrawn by the referrer"""


class RejectionReason(StrEnum):
    """Task.statusReason of a rejection (CodeSystem referral-rejection-reason)."""

    INGEN_RETT = "ingen-rett"
    """no right to necessary specialist care"""
    UFULLSTENDIG = "ufullstendig"
    """the referral is incomplete"""
    FEIL_MOTTAKER = "feil-mottaker"
    """wrong recipient"""
    ANNET = "annet"
    """other"""


class LegalCriterion(StrEnum):
    """The criteria a rejection must refer to (CodeSystem referral-legal-criterion):
    prioriteringsforskriften §2 (alvorlighet, nytte, kostnad) as applied by the
    prioriteringsveileder for psykisk helsevern for barn og unge."""

    ALVORLIGHETSKRITERIET = "alvorlighetskriteriet"
    NYTTEKRITERIET = "nyttekriteriet"
    KOSTNADSKRITERIET = "kostnadskriteriet"
    PRIORITERINGSVEILEDEREN = "prioriteringsveilederen"


class CloseReason(StrEnum):
    """Task.statusReason of a cancellation (CodeSystem referral-close-reason)."""

    GJENTATTE_UTEBLIVELSER = "gjentatte-uteblivelser"
    """repeated no-shows"""
    TRUKKET = "trukket"
    """withdrawn by the referrer"""
    ANNET = "annet"


class Attachment(StrEnum):
    """What a referral attachment is (DocumentReference.type, CodeSystem
    referral-attachment)."""

    KOMMUNAL_KARTLEGGING = "kommunal-kartlegging"
    """the municipality's assessment summary: what was assessed and tried"""
    PPT_VURDERING = "ppt-vurdering"
    """the educational-psychological service's (PPT) assessment"""
    SOMATISK_VURDERING = "somatisk-vurdering"
    """a somatic assessment"""
    BARNETS_STEMME = "barnets-stemme"
    """the child's own view"""
    ANNET = "annet"


class Completeness(StrEnum):
    """The completeness marker of a referral (CodeSystem referral-completeness)."""

    KOMPLETT = "komplett"
    MANGLER_KOMMUNAL_KARTLEGGING = "mangler-kommunal-kartlegging"
    MANGLER_BARNETS_STEMME = "mangler-barnets-stemme"
    MANGLER_SOMATISK_VURDERING = "mangler-somatisk-vurdering"
    MANGLER_FORLOPSKOORDINATOR_KOMMUNE = "mangler-forlopskoordinator-kommune"
    MANGLER_FORLOPSKOORDINATOR_BUP = "mangler-forlopskoordinator-bup"


class ArrivalSource(StrEnum):
    """How a referral reached its receiver (CodeSystem referral-arrival-source): the
    source of its ansiennitetsdato."""

    BARNEBRO = "barnebro"
    """submitted here: the submission is the arrival (recorded by the server)"""
    NHN_MELDING = "nhn-melding"
    """an electronic referral message over Norsk Helsenett, named by its message id"""
    PAPIR = "papir"
    """on paper (post, fax, by hand), stamped mottatt on arrival"""


class Output(StrEnum):
    """Task.output.type (CodeSystem referral-output)."""

    ANSVARLIG_OPPFOLGING = "ansvarlig-oppfolging"
    """the municipal service responsible for follow-up"""
    OPPFOLGINGSPLAN = "oppfolgingsplan"
    """the follow-up plan on discharge"""


class Breach(StrEnum):
    """A legal deadline passed (CodeSystem referral-deadline-breach)."""

    ASSESSMENT_OVERDUE = "assessment-overdue"
    FRIST_BREACHED = "frist-breached"


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
