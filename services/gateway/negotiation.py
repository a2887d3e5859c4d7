"""Which format an answer is sent in: JSON (FHIR R4) or nothing.

One decision for every path of the API (the CapabilityStatement too), so a client that asks
for XML, or for another FHIR version, is told so the same way wherever it asks. `_format`,
when given, overrides the Accept header (FHIR R4 http.html#mime-type), so a browser's
`Accept: text/html` with `_format=json` is served JSON. A media type may name the FHIR
version it wants (`application/fhir+json; fhirVersion=4.0`); only 4.0 (R4) is served.
"""

from __future__ import annotations

from shared.fhir.errors import error

JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
ANY_FORMATS = frozenset({"*/*", "application/*"})
SERVED_VERSION = "4.0"
"""The FHIR version served, as a `fhirVersion` media type parameter names it."""


def _media(value: str) -> tuple[str, dict[str, str]]:
    """A media type, lower case, and its parameters (names lower case)."""
    kind, *parts = value.split(";")
    found = {}
    for part in parts:
        name, _, given = part.partition("=")
        found[name.strip().lower()] = given.strip().strip('"')
    return kind.strip().lower(), found


def _served(parameters: dict[str, str]) -> bool:
    version = parameters.get("fhirversion")
    if version is not None and version.split(".")[:2] != SERVED_VERSION.split("."):
        return False
    return parameters.get("q", "1").strip() not in ("0", "0.0", "0.00", "0.000")


def negotiate(formats: list[str], accept: str | None) -> None:
    """Refuse (406) an answer in anything but FHIR R4 JSON; `formats`: the `_format`
    values of the query (more than one is a 400), `accept`: the Accept header."""
    if len(formats) > 1:
        raise error(400, "invalid", "Give _format once", "_format")
    if formats:
        # An unescaped `+` (`_format=application/fhir+json`) arrives decoded as a space.
        kind, parameters = _media(formats[0].replace(" ", "+"))
        accepted = kind in JSON_FORMATS and _served(parameters)
    else:
        ranges = [_media(part) for part in (accept or "").split(",") if part.strip()]
        accepted = not ranges or any(
            kind in JSON_FORMATS | ANY_FORMATS and _served(parameters)
            for kind, parameters in ranges
        )
    if not accepted:
        raise error(
            406,
            "not-supported",
            f"Only FHIR R4 JSON is served (application/fhir+json; fhirVersion={SERVED_VERSION})",
        )
