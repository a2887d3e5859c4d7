"""The software's version, as the installed package states it, read once: the metadata
lookup parses the package's whole METADATA file, which is too dear to repeat for every
CapabilityStatement and every generated conformance resource."""

from __future__ import annotations

from functools import cache
from importlib.metadata import version


@cache
def software_version() -> str:
    """barnebro's version (`pyproject.toml`), as published resources and documents name it."""
    return version("barnebro")
