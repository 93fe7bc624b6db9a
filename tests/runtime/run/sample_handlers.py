"""Handlers for the registry tests to load by ``module:attr``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.run import RunContext
    from runtime.store import JSON


async def summarize(ctx: RunContext) -> JSON:
    return "summary"


async def review(ctx: RunContext) -> JSON:
    return "review"


review.run_type = "code-review"  # type: ignore[attr-defined]


def not_async(ctx: RunContext) -> JSON:
    return None


class Agents:
    async def triage(self, ctx: RunContext) -> JSON:
        return "triage"


agents = Agents()
BY_TYPE = {"sum": summarize, "rev": review}
NOT_A_HANDLER = 42
