"""Does a resource conform to barnebro's profile of its type? A cheap check of what the
generated profiles fix (`shared.fhir.conformance`): it names the profile in
`meta.profile`, has the elements the profile requires with their fixed values, codes
from the project's code systems are codes of those systems (and bound elements use their
system), and every
project extension is declared and carries the declared value type.

It is no general FHIR validator: the shape of each element is checked where the resource
is parsed (`shared.fhir.resources`). The test suite runs it on every resource the API
returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.codes import STRUCTURE_DEFINITION_BASE
from shared.fhir.code_systems import CodeSystemSource
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.extensions import EXTENSIONS, SUBSCRIPTION_BASE
from shared.fhir.profiles import ProfileRules, profile_url
from shared.fhir.search_params import walk

OWN_EXTENSION_BASES = (f"{STRUCTURE_DEFINITION_BASE}/", f"{SUBSCRIPTION_BASE}/")
SUBSETTED = "SUBSETTED"


@dataclass(frozen=True)
class ConformanceChecker:
    """What the profiles fix, by type, ready to check resources against."""

    rules: dict[str, ProfileRules]
    codes: dict[str, frozenset[str]]
    extension_values: dict[str, str] = field(
        default_factory=lambda: {d.url: d.value_key for d in EXTENSIONS}
    )

    @classmethod
    def of(
        cls, definitions: Sequence[ResourceDefinition], code_systems: Sequence[CodeSystemSource]
    ) -> ConformanceChecker:
        return cls(
            {d.resource_type: d.profile for d in definitions},
            {s.url: frozenset(code.value for code in s.codes) for s in code_systems},
        )

    def violations(self, resource: dict[str, Any]) -> list[str]:
        """What in `resource` (and the resources it contains) breaks its profile."""
        found: list[str] = []
        kind = resource.get("resourceType")
        if kind == "Bundle":
            for entry in resource.get("entry") or []:
                inner = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    found += self.violations(inner)
            return found
        rules = self.rules.get(str(kind))
        if rules is None:
            return found  # not a type barnebro profiles (OperationOutcome, Parameters ...)
        where = f"{kind}/{resource.get('id')}"
        meta = resource.get("meta") or {}
        subsetted = any(tag.get("code") == SUBSETTED for tag in meta.get("tag") or [])
        if not subsetted:
            if profile_url(str(kind)) not in (meta.get("profile") or []):
                found.append(f"{where}: meta.profile does not name {profile_url(str(kind))}")
            found += [
                f"{where}: {path} is required by its profile"
                for path in (*rules.required, *(path for path, _ in rules.fixed))
                if next(walk(resource, path.split(".")), None) is None
            ]
        for path, code in rules.fixed:
            found += [
                f"{where}: {path} is fixed to {code!r}, not {value!r}"
                for value in walk(resource, path.split("."))
                if value != code
            ]
        for path, system in rules.bindings:
            for value in walk(resource, path.split(".")):
                codings = value.get("coding", []) if isinstance(value, dict) else []
                if not any(c.get("system") == system for c in codings or [value]):
                    found.append(f"{where}: {path} is bound to {system}, not {value}")
        for coding in _codings(resource):
            known = self.codes.get(str(coding.get("system")))
            if known is not None and coding.get("code") not in known:
                found.append(f"{where}: {coding.get('code')!r} is no code of {coding['system']}")
        for extension in _extensions(resource):
            found += self._extension_violations(where, extension)
        return found

    def _extension_violations(self, where: str, extension: dict[str, Any]) -> list[str]:
        url = str(extension.get("url"))
        if url not in self.extension_values:
            if url.startswith(OWN_EXTENSION_BASES):
                return [f"{where}: extension {url} has no declaration"]
            return []
        value_key = self.extension_values[url]
        values = [key for key in extension if key.startswith("value")]
        if value_key and values != [value_key]:
            return [f"{where}: extension {url} carries {values}, not {value_key}"]
        if not value_key and (values or not extension.get("extension")):
            return [f"{where}: extension {url} is complex: parts, no value"]
        return []


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    """Every Coding-like object (`system` and `code`) anywhere under `node`."""
    if isinstance(node, list):
        for item in node:
            yield from _codings(item)
    elif isinstance(node, dict):
        if "system" in node and "code" in node:
            yield node
        for key, value in node.items():
            if key != "contained" and isinstance(value, dict | list):
                yield from _codings(value)


def _extensions(node: Any) -> Iterator[dict[str, Any]]:
    """Every extension anywhere under `node`, outside contained resources; the parts of
    a complex extension (relative `url`) are not extensions of their own."""
    if isinstance(node, list):
        for item in node:
            yield from _extensions(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                for extension in value:
                    if isinstance(extension, dict) and "://" in str(extension.get("url")):
                        yield extension
                        yield from _extensions(
                            {k: v for k, v in extension.items() if k != "extension"}
                        )
            elif key != "contained" and isinstance(value, dict | list):
                yield from _extensions(value)
