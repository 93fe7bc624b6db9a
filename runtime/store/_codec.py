"""Payload encoding: the one place JSON bytes are produced for the database.

Every payload is serialised once, with orjson and sorted keys, before any transaction
starts. The same bytes are checked against the size limit, hashed into the event chain and
sent to PostgreSQL as ``jsonb``; so a refused payload never reaches the database.
"""

from __future__ import annotations

from typing import TypeAlias

import orjson

from runtime.errors import PayloadNotSerializable, PayloadTooLarge

__all__ = ["JSON", "decode", "encode"]

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
"""A JSON value as Python builds it (what payloads, frames and memory values may hold)."""

_OPTIONS = orjson.OPT_SORT_KEYS


def _has_nul(value: object) -> bool:
    """Whether any string or key inside ``value`` holds U+0000 (jsonb cannot store it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def encode(value: object, *, what: str, limit: int) -> bytes:
    """Serialise ``value`` canonically (orjson, sorted keys) and enforce ``limit``.

    Args:
        value: the payload.
        what: names the payload in errors, e.g. ``"event payload"``.
        limit: the largest allowed size in bytes.

    Raises:
        PayloadNotSerializable: orjson refuses the value (unsupported type, non-string
            key, integer over 64 bits, lone surrogate) or it holds a NUL character.
        PayloadTooLarge: the serialised form exceeds ``limit``.
    """
    try:
        data = orjson.dumps(value, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise PayloadNotSerializable(what, str(exc)) from None
    if len(data) > limit:
        raise PayloadTooLarge(what, len(data), limit)
    # orjson writes U+0000 as the escape \u0000; confirm on the value before refusing,
    # since an escaped backslash followed by "u0000" produces the same bytes.
    if b"\\u0000" in data and _has_nul(value):
        raise PayloadNotSerializable(what, "strings may not contain NUL (U+0000)")
    return data


def decode(data: bytes | str) -> JSON:
    """Parse JSON text coming back from PostgreSQL (the inverse of :func:`encode`)."""
    value: JSON = orjson.loads(data)
    return value
