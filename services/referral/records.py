"""Reading and writing the referral's FHIR resources: ServiceRequest and its Task.

The rules (`domain/`) see a Task as a `TaskState`; this module reads one from the Task's
JSON, builds the workflow Task of a new referral, and sets the elements the server keeps
(extensions it derives, the businessStatus default, the periods, the dates its arrival
gives it).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from services.referral.domain.deadlines import dated
from services.referral.domain.model import Arrival, TaskState
from services.referral.domain.vocabulary import (
    ANSIENNITETSDATO_EXT,
    APPEAL_EXT,
    ARRIVAL_EXT,
    ARRIVAL_SOURCE_SYSTEM,
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
    TASK_PROFILE,
    TRANSITION_EXT,
    ArrivalSource,
    Breach,
    Output,
    Step,
    TaskStatus,
)
from shared.clock import NORWAY
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


def _moment(text: Any, where: str) -> tuple[date, datetime | None]:
    """The Norwegian day and, when it has a time, the instant of a FHIR date or dateTime
    (a time needs its zone)."""
    if isinstance(text, str) and len(text) == 10:
        try:
            return date.fromisoformat(text), None
        except ValueError:
            pass
    elif isinstance(text, str) and "T" in text:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(NORWAY).date(), moment
    raise error(
        422,
        "value",
        "The arrival's `at` is a valueDateTime: a day (2026-03-02) or a time with its zone"
        f" (2026-03-02T09:14:00+01:00); it is {text!r}",
        where,
    )


def arrival_of(task: dict[str, Any]) -> Arrival | None:
    """The arrival a Task records (extension referral-arrival), if any."""
    found = extensions(task, ARRIVAL_EXT)
    if not found:
        return None
    where = "Task.extension"
    if len(found) > 1:
        raise error(422, "structure", "A referral has one arrival (referral-arrival)", where)
    parts = {
        str(part.get("url")): part
        for part in found[0].get("extension") or []
        if isinstance(part, dict)
    }
    day, at = _moment(parts.get("at", {}).get("valueDateTime"), where)
    coding = parts.get("source", {}).get("valueCoding")
    if not isinstance(coding, dict) or coding.get("system") != ARRIVAL_SOURCE_SYSTEM:
        raise error(
            422,
            "required",
            f"The arrival names its source: `source` with a valueCoding from"
            f" {ARRIVAL_SOURCE_SYSTEM} (nhn-melding, papir)",
            where,
        )
    identifier = parts.get("identifier", {}).get("valueIdentifier")
    value = identifier.get("value") if isinstance(identifier, dict) else None
    return Arrival(day, at, str(coding.get("code")), str(value) if value else None)


def _submitted(task: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(task.get("authoredOn")))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


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
        submitted=(submitted := _submitted(task)),
        submitted_day=submitted.astimezone(NORWAY).date() if submitted else None,
        arrival=arrival_of(task),
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


def arrival_extension(
    at: str, source: ArrivalSource | str, identifier: Any = None, **recorded: Any
) -> list[dict[str, Any]]:
    """The parts of a referral-arrival extension; `recorded` adds the server's parts
    (`recorded`: valueDateTime, `by`: valueIdentifier)."""
    parts: list[dict[str, Any]] = [
        {"url": "at", "valueDateTime": at},
        {"url": "source", "valueCoding": {"system": ARRIVAL_SOURCE_SYSTEM, "code": str(source)}},
    ]
    if identifier:
        parts.append({"url": "identifier", "valueIdentifier": identifier})
    for name, value in recorded.items():
        key = "valueIdentifier" if isinstance(value, dict) else "valueDateTime"
        parts.append({"url": name, key: value})
    return parts


def start_clock(task: dict[str, Any]) -> TaskState:
    """Set the ansiennitetsdato and assessment deadline the Task's arrival gives it (only
    when they change); the Task's state with them."""
    state = task_state(task)
    timed = dated(state)
    if timed != state:
        start, deadline = timed.ansiennitetsdato, timed.assessment_deadline
        set_extension(task, ANSIENNITETSDATO_EXT, "valueDate", start and start.isoformat())
        set_extension(task, ASSESSMENT_DEADLINE_EXT, "valueDate", deadline and deadline.isoformat())
    return timed


def new_task(service_request: dict[str, Any], authored: str) -> dict[str, Any]:
    """The workflow Task of a new referral: requested, owned by the receiver, its clock
    running from its submission (`authored`), its arrival at the receiver."""
    task = {
        "resourceType": "Task",
        "status": TaskStatus.REQUESTED.value,
        "businessStatus": step_concept(Step.SENDT),
        "intent": TASK_PROFILE.fixed_value("intent"),
        "priority": service_request.get("priority", "routine"),
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "focus": {"reference": f"ServiceRequest/{service_request['id']}"},
        "for": service_request["subject"],
        "authoredOn": authored,
        "lastModified": authored,
        "requester": service_request["requester"],
        "owner": service_request["performer"][0],
        "extension": [
            {"url": ARRIVAL_EXT, "extension": arrival_extension(authored, ArrivalSource.BARNEBRO)}
        ],
    }
    start_clock(task)
    return task


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
