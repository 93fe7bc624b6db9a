"""Checking the store's arguments before anything is sent to the database.

A wrong type is the caller's bug: ``TypeError``. A value of the right type that the store
cannot take is ``InvalidArgument`` (a ``ValueError``) naming the argument: text holding
NUL (PostgreSQL's ``text`` cannot store it), text longer than its bound, or a number
outside what its column holds. Nothing reaches SQL, so no database error can be mistaken
for a caller's mistake (a ``run_id`` of ``7`` once came back as "run warden migrate").

Bounds, in characters: identifiers (owner, session id, run type, idempotency key, frame
id and kind, memory scope id and key, node ids) :data:`MAX_ID_LENGTH`, so that every
unique index over them stays far below PostgreSQL's limit on an index entry (about
2.7 kB); free text (a dead letter's reason, an error class, type or message)
:data:`MAX_TEXT_LENGTH` (error messages are cut to it instead).
"""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

from runtime.store.errors import InvalidArgument

__all__ = [
    "INT32",
    "INT64",
    "MAX_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "identifier",
    "integer",
    "run_id",
    "text",
    "traceparent",
]

MAX_ID_LENGTH: Final = 256
"""Longest identifier, in characters (at most 1 kB of UTF-8)."""

MAX_TEXT_LENGTH: Final = 4000
"""Longest free text, in characters."""

INT64: Final = (-(2**63), 2**63 - 1)
INT32: Final = (-(2**31), 2**31 - 1)


def run_id(value: object, name: str = "run_id") -> UUID:
    """``value`` if it is a ``uuid.UUID``, else ``TypeError`` (a str is not parsed)."""
    if not isinstance(value, UUID):
        raise TypeError(f"{name} must be a uuid.UUID, not {type(value).__name__}")
    return value


def text(value: object, name: str, *, max_length: int | None = MAX_TEXT_LENGTH) -> str:
    """``value`` if it is a str the database can store, at most ``max_length`` long
    (``None``: any length).

    Raises:
        TypeError: not a str.
        InvalidArgument: it holds NUL (U+0000) or is longer than ``max_length``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidArgument(name, "contains a NUL character (U+0000)")
    if max_length is not None and len(value) > max_length:
        raise InvalidArgument(name, f"is {len(value)} characters long, over {max_length}")
    return value


def identifier(value: object, name: str) -> str:
    """A non-empty :func:`text` of at most :data:`MAX_ID_LENGTH` characters."""
    checked = text(value, name, max_length=MAX_ID_LENGTH)
    if not checked:
        raise InvalidArgument(name, "must not be empty")
    return checked


def integer(value: object, name: str, *, low: int = INT64[0], high: int = INT64[1]) -> int:
    """``value`` if it is an int (not a bool) from ``low`` to ``high``.

    Raises:
        TypeError: not an int.
        InvalidArgument: out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(name, f"{value} is not from {low} to {high}")
    return value


# W3C Trace Context, version 00 (https://www.w3.org/TR/trace-context/#traceparent-header):
# version, trace id, parent id, flags; lowercase hex.
_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def traceparent(value: object, name: str = "traceparent") -> str | None:
    """``value`` if it is ``None`` or a valid W3C ``traceparent`` header value.

    Raises:
        TypeError: neither ``None`` nor a str.
        InvalidArgument: not ``version-trace_id-parent_id-flags`` in lowercase hex, version
            ``ff``, or an all-zero trace or parent id.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    match = _TRACEPARENT.fullmatch(value)
    if (
        match is None
        or value.startswith("ff")
        or not match[1].strip("0")
        or not match[2].strip("0")
    ):
        raise InvalidArgument(
            name, "is not a W3C traceparent (00-<32 hex trace id>-<16 hex parent id>-<2 hex>)"
        )
    return value
