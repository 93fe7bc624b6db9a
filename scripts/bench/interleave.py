"""Alternating slices: each system runs a slice of the work in turn, round after round,
and who goes first rotates, so that a noisy neighbour's burst falls on all of them alike
and no one always follows the same neighbour."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["rotation"]

T = TypeVar("T")


def rotation(systems: list[T], step: int) -> list[T]:
    """``systems`` in the order they run at ``step``: rotated by ``step`` places."""
    shift = step % len(systems)
    return systems[shift:] + systems[:shift]
