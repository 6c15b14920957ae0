"""go-yaml v2's reading of a plain YAML scalar (YAML 1.1 rules as that library implements them): what the
runtimes' CDI library gets for `y`, `0o17`, `1e3`, `.inf`... Stdlib only: the spec writer quotes every string
that would read as something else, and the plugin process writes specs without loading the decoder."""

from __future__ import annotations

import math
import re

__all__ = ["INT64", "Uint64", "go_parse_int", "resolve_yaml11"]

_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_TIMESTAMP_RE = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(([Tt]|[ ]+)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]*)?([ ]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?)?$"
)
INT64 = (-(2**63), 2**63 - 1)


class Uint64(int):
    """An integer go-yaml only fits in uint64 (above int64)."""


def go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), falling back to ParseUint: base prefixes, a leading 0 means octal."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if text[:1] in "+-" and text[1:2] in "+-":
        return None
    base, digits = 10, body
    lowered = body[:2].lower()
    if lowered in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[lowered], body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    if not digits or not all(c in "0123456789abcdefABCDEF"[: base if base <= 10 else 22] for c in digits):
        return None
    value = sign * int(digits, base)
    if INT64[0] <= value <= INT64[1]:
        return value
    if sign > 0 and value < 2**64 and not text.startswith("+"):
        return Uint64(value)
    if sign > 0 and value < 2**64:
        return None  # ParseUint refuses a sign
    return None


def _go_parse_float(text: str) -> float | None:
    try:
        return float(text) if not re.search(r"[_xXpP]", text) else None
    except ValueError:
        return None


def resolve_yaml11(text: str) -> object:
    """go-yaml v2's value for a plain scalar (YAML 1.1 rules as that library implements them)."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if text == "<<":
        return text
    hint = text[:1]
    if hint == ".":
        value = _go_parse_float(text)
        return value if value is not None and not re.search(r"(?i)inf|nan", text) else text
    if hint and ((hint.isdigit() and hint.isascii()) or hint in "+-"):
        if _TIMESTAMP_RE.match(text):
            return text  # v2 keeps timestamp-looking scalars as their text when decoding into interface{}
        plain = text.replace("_", "")
        parsed = go_parse_int(plain)
        if parsed is not None:
            return parsed
        if _FLOAT_RE.match(plain):
            return float(plain)
        if plain.startswith("0b"):
            binary = go_parse_int("0b" + plain[2:])
            if binary is not None:
                return binary
        elif plain.startswith("-0b"):
            binary = go_parse_int("-0b" + plain[3:])
            if binary is not None:
                return binary
    return text
