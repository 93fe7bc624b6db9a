"""Run statuses, spelled once.

Everything that needs to know which statuses end a run (the run record, the writer's
refusals, the SQL of the append and acquire statements, the terminal event types) takes
it from here; SQL text gets :data:`TERMINAL_SQL`, built from the same names. (The schema's
``CHECK`` constraint in ``migrations/0001_init.sql`` lists them too; a test compares it.)
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["TERMINAL_EVENTS", "TERMINAL_SQL", "TERMINAL_STATUSES", "RunStatus", "TerminalStatus"]

TerminalStatus = Literal["succeeded", "failed", "canceled", "timed_out"]
"""A status that ends a run; a run reaches one at most once."""

RunStatus = Literal["pending", "running", TerminalStatus]
"""``pending`` until leased, ``running`` once leased, then one terminal status."""

TERMINAL_STATUSES: Final[frozenset[str]] = frozenset(get_args(TerminalStatus))
"""The terminal statuses, as a set."""

TERMINAL_EVENTS: Final[dict[str, str]] = {
    f"run.{status}": status for status in get_args(TerminalStatus)
}
"""Event types that end a run (``run.succeeded``, ...), and the terminal status each sets."""

TERMINAL_SQL: Final = ", ".join(f"'{status}'" for status in get_args(TerminalStatus))
"""The terminal statuses as an SQL list, for ``status NOT IN (...)``."""
