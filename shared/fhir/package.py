"""The conformance resources as a FHIR NPM package (a `.tgz` with `package/package.json`,
one JSON file per resource and `package/.index.json`), as FHIR tools load them: validators,
IG publishers, code generators. `barnebro package export` writes it."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.fhir.conformance import CANONICAL_BASE, FHIR_VERSION
from shared.fhir.profiles import CORE_PACKAGE, NO_BASIS_PACKAGE
from shared.version import software_version

PACKAGE_NAME = "barnebro.fhir"
INDEX_FIELDS = ("resourceType", "id", "url", "version", "kind", "type")
"""What `.index.json` lists of each file (the FHIR NPM package specification)."""


def package_manifest() -> dict[str, Any]:
    """`package/package.json`: name, version (the software's), FHIR version, dependencies."""
    return {
        "name": PACKAGE_NAME,
        "version": software_version(),
        "description": "barnebro's profiles, extensions, value sets, code systems, search"
        " parameters and operations, generated from its code",
        "canonical": CANONICAL_BASE,
        "url": CANONICAL_BASE,
        "type": "Conformance",
        "fhirVersions": [FHIR_VERSION],
        "dependencies": dict([CORE_PACKAGE, NO_BASIS_PACKAGE]),
        "author": "barnebro",
        "license": "Apache-2.0",
    }


def file_name(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}-{resource['id']}.json"


def package_index(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`package/.index.json`: one row per resource file."""
    return {
        "index-version": 1,
        "files": [
            {"filename": file_name(r), **{k: r[k] for k in INDEX_FIELDS if k in r}}
            for r in resources
        ],
    }


def package_bytes(resources: Sequence[dict[str, Any]]) -> bytes:
    """The package as a gzipped tar, every file under `package/`."""
    files: dict[str, Any] = {
        "package.json": package_manifest(),
        ".index.json": package_index(resources),
        **{file_name(r): r for r in resources},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            data = json.dumps(content, ensure_ascii=False, indent=2).encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_package(resources: Sequence[dict[str, Any]], out: Path) -> Path:
    """Write the package into the directory `out`; the path of the `.tgz`."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{PACKAGE_NAME}-{software_version()}.tgz"
    target.write_bytes(package_bytes(resources))
    return target
