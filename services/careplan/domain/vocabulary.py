"""The care plan service's code systems and extensions (project CodeSystems)."""

from __future__ import annotations

from enum import StrEnum

from shared.codes import CODE_SYSTEM_BASE
from shared.fhir import extensions as ext
from shared.fhir.statements import PROVENANCE_EXT as STATEMENT_PROVENANCE_EXT


class PlanCategory(StrEnum):
    """CarePlan.category (CodeSystem careplan-category)."""

    INDIVIDUELL_PLAN = "individuell-plan"
    """the individual plan: a right under hol §7-1, sphl §2-5, pbrl §2-5; one per person"""
    KRISEPLAN = "kriseplan"
    """the crisis plan made 'in peacetime'; legevakt reads it in an emergency"""
    BEHANDLINGSPLAN = "behandlingsplan"
    """a treatment plan"""
    FORLOPSPLAN = "forlopsplan"
    """the plan in nasjonalt forløp for barnevern"""


class Regime(StrEnum):
    """The law a plan or statement is made under (CodeSystem legal-regime)."""

    HELSE = "helse"
    BARNEVERN = "barnevern"
    BEGGE = "begge"


class Point(StrEnum):
    """The nine points an individual plan must contain (forskrift om habilitering,
    rehabilitering, individuell plan og koordinator §21; DOMAIN §6)."""

    MAL = "mal"
    """goals, resources and needs"""
    DELTAKERE = "deltakere"
    """who takes part"""
    KOORDINATOR = "koordinator"
    """who coordinates"""
    BIDRAG = "bidrag"
    """what each party contributes"""
    TILTAK = "tiltak"
    """measures, their extent and who is responsible"""
    GJENNOMFORING = "gjennomforing"
    """how the measures are carried out"""
    PERIODE = "periode"
    """plan period and revision dates"""
    SAMTYKKE = "samtykke"
    """the person's consent to the plan and to sharing confidential information"""
    SAMARBEID = "samarbeid"
    """needed collaboration with other services"""


class Phase(StrEnum):
    """The phases of nasjonalt forløp for barnevern (CodeSystem forlop-phase), in order."""

    AVKLARINGSMOTE = "avklaringsmote"
    """the clarification meeting, where consent is obtained"""
    KARTLEGGING = "kartlegging"
    """assessment in the municipality"""
    UTREDNING = "utredning"
    """examination in the municipality or at BUP after a referral"""
    STATUSMOTE = "statusmote"
    """a regular status meeting"""
    AVSLUTNING = "avslutning"
    """closing, when needs are clarified and follow-up is handed over"""


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
