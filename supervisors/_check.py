"""Checks shared by child specs and supervisor flags, which are often built from
configuration and so are checked at run time, whatever their annotations say."""

from __future__ import annotations

import enum
import math
from typing import TypeVar

__all__ = ["is_count", "is_seconds", "member"]

E = TypeVar("E", bound=enum.StrEnum)


def is_seconds(value: object, *, zero: bool = False) -> bool:
    """Whether ``value`` is a finite number of seconds above 0 (or at least 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0


def is_count(value: object, *, minimum: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def member(enum_type: type[E], value: object, what: str, error: type[ValueError]) -> E:
    """The member of ``enum_type`` whose value is ``value``; else ``error`` naming them."""
    if isinstance(value, str):
        for candidate in enum_type:
            if candidate.value == value:
                return candidate
    allowed = ", ".join(candidate.value for candidate in enum_type)
    raise error(f"unknown {what} {value!r}; expected one of: {allowed}")
