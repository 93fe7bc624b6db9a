"""Payload encoding: the one place JSON bytes are produced for the database.

Every payload is serialised once, with orjson and sorted keys, before any transaction
starts. The same bytes are checked against the size limit, hashed into the event chain and
sent to PostgreSQL as ``jsonb``; so a refused payload never reaches the database.

The bytes are *canonical*: serialising the value PostgreSQL hands back gives the same
bytes again, which is what lets ``verify_chain`` recompute hashes from stored rows.
``jsonb`` keeps numbers as exact decimals and prints them without exponent, so an
integral float such as ``1e16`` or ``1.0`` comes back as an integer; such floats are
therefore written as integers in the first place (JSON has one number type, so no
information is lost). Other floats survive unchanged: orjson prints the shortest
representation, which parses back to the same double.

The codec is *strict*: only values that are JSON already are accepted, and nothing is
silently converted. orjson on its own writes NaN and ±Infinity as ``null`` and turns
datetimes, UUIDs, dataclasses and enums into strings or objects; all of those are refused
(``PayloadNotSerializable``, naming the path to the offending value). Accepted: ``dict``
with ``str`` keys, ``list``, ``tuple`` (stored as an array), ``str``, ``int`` within 64
bits (orjson's range: -2**63 to 2**64 - 1), finite ``float``, ``bool`` and ``None``.
Subclasses of ``dict``, ``list``, ``str`` and ``int`` (``OrderedDict``, ``StrEnum``,
``IntEnum``) are those types and are stored as their plain value; ``float`` subclasses
(numpy scalars) and a plain ``Enum`` are refused.

Staying fast: datetimes and dataclasses are passed through to a ``default`` that refuses
them, and what orjson still converts by itself (non-finite floats, UUIDs, plain enums)
is caught by parsing the bytes back and comparing with the value, both in C, which costs
about as much as the encoding itself. Only when they differ (or for a tuple, which parses
back as a list) does a Python walk run, to find the offending path or accept the tuple.
"""

from __future__ import annotations

import math
import re
from typing import TypeAlias

import orjson

from runtime.store.errors import PayloadNotSerializable, PayloadTooLarge

__all__ = ["JSON", "canonical", "decode", "encode"]

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
"""A JSON value as Python builds it (what payloads, frames and memory values may hold)."""

_OPTIONS = orjson.OPT_SORT_KEYS
_STRICT = _OPTIONS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# A number token that may be an integral float: "1e16", "2.5E+3", "1.0", "-0.00". Strings
# can match too; then the value is merely walked for nothing.
_INTEGRAL_FLOAT_RISK = re.compile(rb"\d(?:[eE]|\.0+(?![0-9]))")
# Integers orjson reads back as integers (i64 and u64); beyond them it reads floats.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _integral_floats_to_int(value: object) -> object:
    if isinstance(value, float):
        if value.is_integer() and _INT_MIN <= value <= _INT_MAX:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: _integral_floats_to_int(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_integral_floats_to_int(v) for v in value]
    return value


def _refuse(value: object) -> object:
    """orjson's ``default``: nothing outside JSON's own types is converted."""
    raise TypeError(f"Type is not JSON serializable: {type(value).__qualname__}")


_MAX_DEPTH = 255  # orjson's own nesting limit; also stops a walk of a cyclic value


def _not_json(value: object, path: str, depth: int = 0) -> str | None:
    """Why ``value`` (found at ``path``) is not JSON, or ``None`` if it is (or if it is
    nested too deeply to tell, which orjson reports itself).

    Mirrors what orjson accepts without conversion; it runs only when the fast check
    in :func:`encode` saw a difference, or on a refusal, so it may be plain Python.
    """
    if depth > _MAX_DEPTH:
        return None
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None  # orjson already refused integers beyond 64 bits
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{value!r} at {path} (JSON has no NaN or Infinity)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"non-str key {key!r} at {path}"
            reason = _not_json(item, f"{path}[{key!r}]", depth + 1)
            if reason is not None:
                return reason
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            reason = _not_json(item, f"{path}[{index}]", depth + 1)
            if reason is not None:
                return reason
        return None
    kind = type(value).__qualname__
    return f"{kind} at {path} (only dict, list, tuple, str, int, float, bool and None)"


def _has_nul(value: object) -> bool:
    """Whether any string or key inside ``value`` holds U+0000 (jsonb cannot store it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def encode(value: object, *, what: str, limit: int, of: str | None = None) -> bytes:
    """Serialise ``value`` canonically (orjson, sorted keys) and enforce ``limit``.

    Args:
        value: the payload.
        what: names the payload in errors, e.g. ``"event payload"``.
        limit: the largest allowed size in bytes.
        of: what the payload belongs to, added to ``what`` in errors (``"payload of
            'step'"``); formatted only when raising, so the common path pays nothing.

    Raises:
        PayloadNotSerializable: the value is not JSON (a type other than dict, list,
            tuple, str, int, float, bool and None; NaN or ±Infinity; a non-string key; an
            integer over 64 bits; a lone surrogate) or it holds a NUL character.
        PayloadTooLarge: the canonical form (the bytes stored) exceeds ``limit``.
    """
    try:
        data = orjson.dumps(value, option=_STRICT, default=_refuse)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        # The refusal path may be slow: name where the offending value is, if it is a
        # type (an oversized integer or a lone surrogate keeps orjson's own words).
        found = _not_json(value, "$") or str(exc)
        raise PayloadNotSerializable(_what(what, of), found) from None
    # The limit is judged on the bytes stored: these, unless integral floats are still
    # to be written as integers (1.0 is stored as 1).
    risky = _INTEGRAL_FLOAT_RISK.search(data) is not None
    if len(data) > limit and not risky:
        # Before the checks below, so a refusal costs one serialisation, whatever the size.
        raise PayloadTooLarge(_what(what, of), len(data), limit)
    if orjson.loads(data) != value:
        # orjson converted something (NaN -> null, a UUID or an Enum -> its string), or
        # the value holds a tuple, which parses back as a list: find out which.
        reason = _not_json(value, "$")
        if reason is not None:
            raise PayloadNotSerializable(_what(what, of), reason)
    if risky:
        data = orjson.dumps(_integral_floats_to_int(value), option=_OPTIONS)
        if len(data) > limit:
            raise PayloadTooLarge(_what(what, of), len(data), limit)
    # orjson writes U+0000 as the escape \u0000; confirm on the value before refusing,
    # since an escaped backslash followed by "u0000" produces the same bytes.
    if b"\\u0000" in data and _has_nul(value):
        raise PayloadNotSerializable(_what(what, of), "strings may not contain NUL (U+0000)")
    return data


def _what(what: str, of: str | None) -> str:
    return what if of is None else f"{what} of {of!r}"


def canonical(value: JSON) -> bytes:
    """Canonical bytes of a value read back from PostgreSQL (no limit applies)."""
    data = orjson.dumps(value, option=_OPTIONS)
    if _INTEGRAL_FLOAT_RISK.search(data):
        data = orjson.dumps(_integral_floats_to_int(value), option=_OPTIONS)
    return data


def decode(data: bytes | str) -> JSON:
    """Parse JSON text coming back from PostgreSQL (the inverse of :func:`encode`)."""
    value: JSON = orjson.loads(data)
    return value
