"""Header values that carry text beyond ASCII, such as a reason written in Norwegian.

HTTP header values are ASCII (Latin-1 at most) in standard clients, so æ, ø and å travel
as an RFC 8187 ext-value: `UTF-8''%C3%A6rlig%20grunn` (the charset, an optional language
between the two quotes, then the UTF-8 bytes percent-encoded). A value without that
prefix is taken as it is.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

from shared.fhir.errors import error

EXT_VALUE = re.compile(r"([A-Za-z0-9!#$&+\-^_`{}~]+)'([A-Za-z0-9-]*)'(.*)", re.DOTALL)
"""charset ' [ language ] ' value-chars (RFC 8187 §3.2.1)."""
VALUE_CHARS = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+\-.^_`|~])*")


def decoded(name: str, value: str) -> str:
    """The text a header value carries: an RFC 8187 ext-value decoded, any other value as
    it is. A malformed ext-value, another charset than UTF-8, or control, format or
    line-separating characters in the text (which change how it reads where it is shown)
    are a 400 naming the header."""
    match = EXT_VALUE.fullmatch(value.strip())
    text = value if match is None else _ext_value(name, *match.groups())
    if any(unicodedata.category(char) in UNSHOWN for char in text):
        raise error(
            400, "invalid", f"{name} must not contain control, format or separator characters"
        )
    return text


UNSHOWN = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode categories a reason may not hold: controls (tab, NUL), format characters (bidi
overrides, zero-width) and line or paragraph separators."""


def _ext_value(name: str, charset: str, _language: str, encoded: str) -> str:
    example = f"{name}: UTF-8''%C3%A6rlig%20grunn"
    if charset.upper() != "UTF-8":
        raise error(400, "invalid", f"{name} is encoded as UTF-8 (e.g. {example}), not {charset}")
    if not VALUE_CHARS.fullmatch(encoded):
        raise error(
            400,
            "invalid",
            f"{name} is not a valid RFC 8187 value: percent-encode every byte outside"
            f" letters, digits and !#$&+-.^_`|~ (e.g. {example})",
        )
    try:
        return unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(400, "invalid", f"{name} does not decode as UTF-8 (e.g. {example})") from exc
