"""The care plan service's code systems and extensions (project CodeSystems), each code
declared once with its display and definition beside the canonical URL stored resources
name as its `system`; `CODE_SYSTEMS` lists them for the consent service to serve."""

from __future__ import annotations

from shared.codes import CODE_SYSTEM_BASE, CodedEnum
from shared.fhir import extensions as ext
from shared.fhir.code_systems import CodeSystemSource
from shared.fhir.statements import PROVENANCE_EXT as STATEMENT_PROVENANCE_EXT


class PlanCategory(CodedEnum):
    """CarePlan.category (CodeSystem careplan-category)."""

    INDIVIDUELL_PLAN = (
        "individuell-plan",
        "Individuell plan",
        "The individual plan: a right under hol §7-1, sphl §2-5 and pbrl §2-5; one per person",
    )
    KRISEPLAN = (
        "kriseplan",
        "Kriseplan",
        "The crisis plan made 'in peacetime'; legevakt reads it in an emergency",
    )
    BEHANDLINGSPLAN = "behandlingsplan", "Behandlingsplan", "A treatment plan"
    FORLOPSPLAN = "forlopsplan", "Forløpsplan", "The plan in nasjonalt forløp for barnevern"


class Regime(CodedEnum):
    """The law a plan or statement is made under (CodeSystem legal-regime)."""

    HELSE = "helse", "Helse", "Made under the health legislation"
    BARNEVERN = "barnevern", "Barnevern", "Made under the child welfare act (barnevernsloven)"
    BEGGE = "begge", "Begge", "Made under both the health and the child welfare legislation"


class Point(CodedEnum):
    """The nine points an individual plan must contain (forskrift om habilitering,
    rehabilitering, individuell plan og koordinator §21; DOMAIN §6; CodeSystem
    individuell-plan-point)."""

    MAL = "mal", "Mål", "Goals, resources and needs"
    DELTAKERE = "deltakere", "Deltakere", "Who takes part"
    KOORDINATOR = "koordinator", "Koordinator", "Who coordinates"
    BIDRAG = "bidrag", "Bidrag", "What each party contributes"
    TILTAK = "tiltak", "Tiltak", "Measures, their extent and who is responsible"
    GJENNOMFORING = "gjennomforing", "Gjennomføring", "How the measures are carried out"
    PERIODE = "periode", "Periode", "Plan period and revision dates"
    SAMTYKKE = (
        "samtykke",
        "Samtykke",
        "The person's consent to the plan and to sharing confidential information",
    )
    SAMARBEID = "samarbeid", "Samarbeid", "Needed collaboration with other services"


class Phase(CodedEnum):
    """The phases of nasjonalt forløp for barnevern (CodeSystem forlop-phase), in order."""

    AVKLARINGSMOTE = (
        "avklaringsmote",
        "Avklaringsmøte",
        "The clarification meeting, where consent is obtained",
    )
    KARTLEGGING = "kartlegging", "Kartlegging", "Assessment in the municipality"
    UTREDNING = (
        "utredning",
        "Utredning",
        "Examination in the municipality or at BUP after a referral",
    )
    STATUSMOTE = "statusmote", "Statusmøte", "A regular status meeting"
    AVSLUTNING = (
        "avslutning",
        "Avslutning",
        "Closing, when needs are clarified and follow-up is handed over",
    )


COORDINATOR_ROLES = frozenset(
    {"koordinator", "barnekoordinator", "forlopskoordinator-kommune", "forlopskoordinator-bup"}
)

CATEGORY_SYSTEM = f"{CODE_SYSTEM_BASE}/careplan-category"
REGIME_SYSTEM = f"{CODE_SYSTEM_BASE}/legal-regime"
POINT_SYSTEM = f"{CODE_SYSTEM_BASE}/individuell-plan-point"
REGIME_EXT = ext.LEGAL_REGIME.url
NEXT_REVISION_EXT = ext.CAREPLAN_NEXT_REVISION.url
REVISION_DUE_EXT = ext.CAREPLAN_REVISION_DUE.url
MISSING_POINT_EXT = ext.INDIVIDUELL_PLAN_MISSING.url
COLLABORATION_EXT = ext.CAREPLAN_COLLABORATION.url
CHANGE_REASON_EXT = ext.CHANGE_REASON.url
CHANGED_BY_EXT = ext.CHANGED_BY.url
EXTENT_EXT = ext.CAREPLAN_ACTIVITY_EXTENT.url
HANDOVER_EXT = ext.COORDINATOR_HANDOVER.url
SUBSTITUTE_EXT = ext.COORDINATOR_SUBSTITUTE_FOR.url
PHASE_SYSTEM = f"{CODE_SYSTEM_BASE}/forlop-phase"
PROVENANCE_EXT = STATEMENT_PROVENANCE_EXT
QUOTATION_EXT = ext.STATEMENT_QUOTATION.url

CODE_SYSTEMS = (
    CodeSystemSource(CATEGORY_SYSTEM, "Care plan categories", PlanCategory),
    CodeSystemSource(REGIME_SYSTEM, "Legal regimes", Regime),
    CodeSystemSource(POINT_SYSTEM, "Points of an individual plan", Point),
    CodeSystemSource(PHASE_SYSTEM, "Phases of nasjonalt forløp", Phase),
)
"""The care plan service's code systems, served by the consent service."""
