"""Reading and writing the referral's FHIR resources: ServiceRequest and its Task.

The rules (`domain/`) see a Task as a `TaskState`; this module reads one from the Task's
JSON, builds the workflow Task of a new referral, and sets the elements the server keeps
(extensions it derives, the businessStatus default, the periods).
"""

from __future__ import annotations

from typing import Any

from services.referral.domain.model import TaskState
from services.referral.domain.vocabulary import (
    ANSIENNITETSDATO_EXT,
    APPEAL_EXT,
    ASSESSMENT_DEADLINE_EXT,
    BREACH_EXT,
    BREACH_SYSTEM,
    CLOSURE_WARNED_EXT,
    CRITERION_EXT,
    FRIST_EXT,
    LEGAL_CRITERION_SYSTEM,
    NO_SHOWS_EXT,
    OUTPUT_SYSTEM,
    SHARED_WITH_EXT,
    STEP_SYSTEM,
    TASK_CODE_SYSTEM,
    TRANSITION_EXT,
    Breach,
    Output,
    Step,
    TaskStatus,
)
from shared.fhir.elements import (
    a_date,
    add_extension,
    extension_value,
    extensions,
    keep_unchanged,
    organisation_reference,
    orgnr_of,
    patient_id,
    set_extension,
)
from shared.fhir.elements import keep_server_extensions as keep_kept
from shared.fhir.errors import error
from shared.identifiers import ORGNR_SYSTEM

SERVER_EXTENSIONS = frozenset(
    {ANSIENNITETSDATO_EXT, ASSESSMENT_DEADLINE_EXT, BREACH_EXT, CLOSURE_WARNED_EXT,
     SHARED_WITH_EXT, TRANSITION_EXT, APPEAL_EXT}
)  # fmt: skip
"""Task extensions only the server writes: a client's values are replaced by the stored
ones, so an update based on an older version cannot undo them."""


def keep_server_extensions(resource: dict[str, Any], stored: dict[str, Any] | None) -> None:
    """Drop the client's server-kept extensions and restore the stored ones."""
    keep_kept(resource, stored, SERVER_EXTENSIONS)


def _coding(concept: Any, system: str) -> str | None:
    for coding in (concept or {}).get("coding") or [] if isinstance(concept, dict) else []:
        if isinstance(coding, dict) and coding.get("system") == system:
            code = coding.get("code")
            return str(code) if code else None
    return None


def outputs(task: dict[str, Any], kind: Output) -> list[dict[str, Any]]:
    return [
        output
        for output in task.get("output") or []
        if isinstance(output, dict) and _coding(output.get("type"), OUTPUT_SYSTEM) == kind
    ]


def follow_up_orgnr(task: dict[str, Any]) -> str | None:
    for output in outputs(task, Output.ANSVARLIG_OPPFOLGING):
        found = orgnr_of(output.get("valueReference"))
        if found:
            return found
    return None


def task_state(task: dict[str, Any]) -> TaskState:
    """The rules' view of one version of a referral's Task."""
    reason = task.get("statusReason") if isinstance(task.get("statusReason"), dict) else {}
    reason_coding = next((c for c in (reason or {}).get("coding") or [] if isinstance(c, dict)), {})
    criteria = tuple(
        str(ext["valueCoding"].get("code"))
        for ext in extensions(task, CRITERION_EXT)
        if isinstance(ext.get("valueCoding"), dict)
        and ext["valueCoding"].get("system") == LEGAL_CRITERION_SYSTEM
    )
    no_shows = extension_value(task, NO_SHOWS_EXT, "valueUnsignedInt")
    breaches = tuple(
        Breach(code)
        for ext in extensions(task, BREACH_EXT)
        if (code := (ext.get("valueCoding") or {}).get("code")) in set(Breach)
    )
    status = task.get("status")
    if status not in set(TaskStatus):
        raise error(
            400,
            "code-invalid",
            f"Task.status {status!r} is not a status of a referral ({', '.join(TaskStatus)})",
            "Task.status",
        )
    return TaskState(
        status=TaskStatus(status),
        owner=orgnr_of(task.get("owner")) or "",
        requester=orgnr_of(task.get("requester")) or "",
        step=_coding(task.get("businessStatus"), STEP_SYSTEM),
        reason_system=reason_coding.get("system"),
        reason_code=reason_coding.get("code"),
        justification=str((reason or {}).get("text") or ""),
        criteria=criteria,
        follow_up=follow_up_orgnr(task),
        follow_up_plan=bool(outputs(task, Output.OPPFOLGINGSPLAN)),
        frist=a_date(extension_value(task, FRIST_EXT, "valueDate")),
        ansiennitetsdato=a_date(extension_value(task, ANSIENNITETSDATO_EXT, "valueDate")),
        assessment_deadline=a_date(extension_value(task, ASSESSMENT_DEADLINE_EXT, "valueDate")),
        care_started=a_date((task.get("executionPeriod") or {}).get("start")),
        no_shows=no_shows if isinstance(no_shows, int) else 0,
        closure_warned=a_date(extension_value(task, CLOSURE_WARNED_EXT, "valueDate")),
        breaches=breaches,
    )


def step_concept(step: Step) -> dict[str, Any]:
    return {"coding": [{"system": STEP_SYSTEM, "code": step.value}], "text": step.value}


def breach_coding(breach: Breach) -> dict[str, Any]:
    return {"system": BREACH_SYSTEM, "code": breach.value}


def new_task(service_request: dict[str, Any], authored: str) -> dict[str, Any]:
    """The workflow Task of a new referral: requested, owned by the receiver."""
    return {
        "resourceType": "Task",
        "status": TaskStatus.REQUESTED.value,
        "businessStatus": step_concept(Step.SENDT),
        "intent": "order",
        "priority": service_request.get("priority", "routine"),
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "focus": {"reference": f"ServiceRequest/{service_request['id']}"},
        "for": service_request["subject"],
        "authoredOn": authored,
        "lastModified": authored,
        "requester": service_request["requester"],
        "owner": service_request["performer"][0],
    }


def shared_with(resource: dict[str, Any]) -> list[str]:
    """Organisations a referral's resource was shared with by the server (a re-referral's
    receiver, an attachment's receiver, the services told of a discharge)."""
    found = []
    for ext in extensions(resource, SHARED_WITH_EXT):
        orgnr = (ext.get("valueIdentifier") or {}).get("value")
        if orgnr:
            found.append(str(orgnr))
    return found


def share(resource: dict[str, Any], orgnrs: list[str]) -> bool:
    """Add `orgnrs` to the organisations the resource is shared with; True if any is new."""
    known = set(shared_with(resource))
    added = False
    for orgnr in orgnrs:
        if orgnr not in known:
            known.add(orgnr)
            add_extension(
                resource,
                SHARED_WITH_EXT,
                "valueIdentifier",
                {"system": ORGNR_SYSTEM, "value": orgnr},
            )
            added = True
    return added


__all__ = [
    "a_date",
    "add_extension",
    "extension_value",
    "extensions",
    "keep_unchanged",
    "organisation_reference",
    "orgnr_of",
    "patient_id",
    "set_extension",
]
