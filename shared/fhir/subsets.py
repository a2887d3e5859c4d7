"""The part of each resource a client asks for: `_summary` and `_elements`.

FHIR's result parameters, honoured on searches and on reads: `_summary=true` (the
summary elements of the type), `text` (id, meta, text and the mandatory elements), `data`
(everything but the narrative), `count` (a search's total alone), `false` (everything);
`_elements=a,b` (those top-level elements, with id, meta and the mandatory ones).

Which elements are summary elements and which are mandatory is read from the R4B models'
field metadata (`summary_element_property`, a required element or choice), never kept by
hand. A subset is cut from the resource as the consent step released it, so it can only
hold less; it carries the SUBSETTED tag, so that no client mistakes it for the whole
resource and writes it back.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B.backboneelement import BackboneElement
from pydantic import BaseModel

from shared.fhir.errors import error
from shared.fhir.resources import SUBSETTED_SYSTEM, model_class
from shared.store.stored import StoredResource

SUBSETTED = {
    "system": SUBSETTED_SYSTEM,
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
SUMMARY_MODES = ("true", "text", "data", "count", "false")
CUTTING_MODES = frozenset({"true", "text", "data"})
ALWAYS = frozenset({"resourceType", "id", "meta"})
"""What every subset keeps: what the resource is, and which version."""


@dataclass(frozen=True)
class Subset:
    """What of each resource to return: a `summary` mode, or the top-level `elements`
    (with id, meta and the mandatory ones), or everything (neither)."""

    summary: str | None = None
    elements: frozenset[str] | None = None

    @property
    def count_only(self) -> bool:
        """A search's total, and no resources."""
        return self.summary == "count"

    @property
    def cuts(self) -> bool:
        return self.summary in CUTTING_MODES or self.elements is not None

    @property
    def for_included(self) -> Subset:
        """What of an `_include`d resource to return: `_elements` names the searched
        type's elements and applies to the matches only; `_summary` applies to all."""
        return Subset(self.summary) if self.elements is None else WHOLE


WHOLE = Subset()


@dataclass(frozen=True)
class _Shape:
    """A model's top-level elements, by their JSON names."""

    summary: frozenset[str]
    mandatory: frozenset[str]
    names: dict[str, frozenset[str]]
    """A name a client may give in `_elements` → the JSON names it stands for (a choice,
    `value` or `value[x]`, stands for each of its types)."""
    backbones: dict[str, type[BaseModel]]


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The FHIR model an element's annotation holds (through Optional and List)."""
    klass = getattr(annotation, "get_model_klass", None)
    if callable(klass):
        found = klass()
        return found if isinstance(found, type) and issubclass(found, BaseModel) else None
    for arg in typing.get_args(annotation):
        model = model_of(arg)
        if model is not None:
            return model
    return None


@lru_cache(maxsize=1024)
def _shape(model: type[BaseModel]) -> _Shape:
    summary: set[str] = set()
    mandatory: set[str] = set()
    names: dict[str, set[str]] = {}
    backbones: dict[str, type[BaseModel]] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        key = field.alias or name
        names.setdefault(key, set()).add(key)
        choice = extra.get("one_of_many")
        if isinstance(choice, str):
            names.setdefault(choice, set()).add(key)
            names.setdefault(f"{choice}[x]", set()).add(key)
        if extra.get("summary_element_property"):
            summary.add(key)
        required = extra.get("element_required") or extra.get("one_of_many_required")
        if field.is_required() or required:
            mandatory.add(key)
        inner = model_of(field.annotation)
        if inner is not None and issubclass(inner, BackboneElement):
            backbones[key] = inner
    return _Shape(
        frozenset(summary),
        frozenset(mandatory),
        {k: frozenset(v) for k, v in names.items()},
        backbones,
    )


def _resource_shape(resource_type: str) -> _Shape:
    model = model_class(resource_type)
    if model is None:
        raise error(400, "not-supported", f"{resource_type} is not a FHIR resource type")
    return _shape(model)


def parse_subset(resource_type: str, params: Iterable[tuple[str, str]]) -> Subset:
    """The `_summary` and `_elements` of a request on `resource_type`, checked: an unknown
    mode or element, or both asked for at once, is a 400."""
    params = list(params)
    summaries = [v for k, v in params if k == "_summary"]
    listed = [v for k, v in params if k == "_elements"]
    if len(summaries) > 1:
        raise error(400, "invalid", "_summary is given once", "_summary")
    summary = summaries[0] if summaries else None
    if summary is not None and summary not in SUMMARY_MODES:
        modes = ", ".join(SUMMARY_MODES)
        raise error(400, "invalid", f"_summary takes one of {modes}; not {summary!r}", "_summary")
    if not listed:
        return Subset(summary)
    if summary in CUTTING_MODES:
        raise error(400, "invalid", "_summary and _elements cannot be used together", "_elements")
    shape = _resource_shape(resource_type)
    wanted: set[str] = set()
    unknown: list[str] = []
    for name in (n.strip() for value in listed for n in value.split(",")):
        if name == "resourceType":  # always there; fhirpy's elements() names it
            continue
        keys = shape.names.get(name.removeprefix(f"{resource_type}."))
        if keys is None:
            unknown.append(name)
        else:
            wanted |= keys
    if unknown:
        raise error(
            400,
            "invalid",
            f"_elements names top-level elements of {resource_type}; not {unknown}",
            "_elements",
        )
    return Subset(summary, frozenset(wanted))


def _keep(node: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """The entries of `node` named in `keys`, with their primitives' extensions (`_x`)."""
    return {k: v for k, v in node.items() if k in keys or (k[:1] == "_" and k[1:] in keys)}


def _summary(node: dict[str, Any], model: type[BaseModel], always: frozenset[str]) -> Any:
    """The summary (and mandatory) elements of `node`, and of the backbone elements in
    them, in turn."""
    shape = _shape(model)
    kept = _keep(node, shape.summary | shape.mandatory | always)
    for key, backbone in shape.backbones.items():
        value = kept.get(key)
        if isinstance(value, dict):
            kept[key] = _summary(value, backbone, frozenset())
        elif isinstance(value, list):
            kept[key] = [
                _summary(v, backbone, frozenset()) if isinstance(v, dict) else v for v in value
            ]
    return kept


def cut_body(body: bytes, resource_type: str, subset: Subset) -> bytes:
    """The JSON of a resource as `subset` asks, tagged SUBSETTED."""
    resource = orjson.loads(body)
    if not isinstance(resource, dict):
        return body
    shape = _resource_shape(resource_type)
    if subset.elements is not None:
        kept = _keep(resource, subset.elements | shape.mandatory | ALWAYS)
    elif subset.summary == "true":
        model = model_class(resource_type)
        kept = _summary(resource, model, ALWAYS) if model is not None else resource
    elif subset.summary == "text":
        kept = _keep(resource, shape.mandatory | ALWAYS | {"text"})
    else:  # "data"
        kept = {k: v for k, v in resource.items() if k not in ("text", "_text")}
    meta = dict(kept.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags if isinstance(t, dict)):
        tags.append(SUBSETTED)
    meta["tag"] = tags
    kept["meta"] = meta
    return orjson.dumps(kept)


def cut(stored: StoredResource, subset: Subset) -> StoredResource:
    """A released resource as `subset` asks (a deleted one as it is)."""
    if not subset.cuts or stored.body is None or stored.deleted:
        return stored
    return dataclasses.replace(stored, body=cut_body(stored.body, stored.res_type, subset))
