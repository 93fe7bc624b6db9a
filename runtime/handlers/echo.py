"""The ``echo`` handler: emits every frame it consumes back as an ``echo`` event."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.run import RunContext
    from runtime.store import JSON

__all__ = ["END_KIND", "echo"]

END_KIND = "end"
"""A frame of this kind ends the run."""


async def echo(ctx: RunContext) -> JSON:
    """Emit ``echo`` ``{"frame_id", "kind", "payload"}`` for each frame, in order.

    Ends at a frame of kind ``"end"``, or after ``input["frames"]`` frames when the run's
    input gives that number. Returns ``{"echoed": n}``.
    """
    limit = ctx.run.input.get("frames") if isinstance(ctx.run.input, dict) else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"echo input 'frames' must be a positive integer, got {limit!r}")
    echoed = 0
    if limit == 0:
        return {"echoed": echoed}
    async for frame in ctx.frames():
        if frame.kind == END_KIND:
            break
        await ctx.emit(
            "echo", {"frame_id": frame.frame_id, "kind": frame.kind, "payload": frame.payload}
        )
        echoed += 1
        if echoed == limit:
            break
    return {"echoed": echoed}
