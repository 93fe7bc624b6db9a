"""Bounded text for error reports: every repr and message the kernel logs or keeps.

DESIGN §11: error reports are bounded — never a mailbox's contents, reprs truncated. The
kernel and the supervisors truncate through :func:`bounded_repr` and :func:`bounded`
only, so the bound is one number.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_REPORT", "bounded", "bounded_repr"]

#: Longest text (in characters) the kernel keeps of a repr or an error message.
MAX_REPORT: Final = 200


def bounded(text: str, limit: int = MAX_REPORT) -> str:
    """``text``, cut to ``limit`` characters with a trailing ``…`` when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded_repr(value: object, limit: int = MAX_REPORT) -> str:
    """``repr(value)``, bounded; a ``__repr__`` that raises is reported, never raised."""
    try:
        text = repr(value)
    except Exception as error:
        text = f"<{type(value).__qualname__} object; repr() raised {type(error).__name__}>"
    return bounded(text, limit)
