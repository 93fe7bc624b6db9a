"""The ``chat`` handler: a simulated agent turn, deterministic for its run.

One turn: read the prompt (the run's input ``prompt``, else the first frame), call one or
two tools as tasks, stream the answer as ``token`` events at a configurable rate, write the
turn to session memory, and end with a ``message`` event. Every choice comes from
``ctx.random``, so a replay (after a crash, a kill, a lost node) repeats exactly the same
turn and emits nothing twice.

Input (all optional)::

    {"prompt": "hello", "tokens": 24, "rate": 50, "tools": 2, "tool_delay": 0.05}

``rate`` is tokens per second (0: as fast as the log commits); ``tools`` is 1 or 2
(default: chosen by ``ctx.random``); ``tool_delay`` is each tool call's simulated latency
in seconds.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

if TYPE_CHECKING:
    from runtime.run import RunContext, TaskContext
    from runtime.store import JSON

__all__ = ["ChatOptions", "chat", "lookup"]

_WORDS: Final = (
    "the", "a", "run", "actor", "lease", "event", "log", "replay", "fence", "task",
    "frame", "node", "supervisor", "epoch", "stream", "durable", "token", "tool",
    "memory", "session", "cancel", "commit", "seq", "hash",
)  # fmt: skip
_MAX_TOKENS: Final = 100_000


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """The ``chat`` handler's input, validated (see the module docstring)."""

    prompt: str | None = None
    tokens: int = 24
    rate: float = 0.0
    tools: int | None = None
    tool_delay: float = 0.05

    @classmethod
    def parse(cls, value: JSON) -> ChatOptions:
        """Options from a run's input (``None`` or an object).

        Raises:
            ValueError: an option has the wrong type or range.
        """
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"chat input must be an object, got {type(value).__name__}")
        prompt = value.get("prompt")
        tokens = value.get("tokens", 24)
        rate = value.get("rate", 0.0)
        tools = value.get("tools")
        delay = value.get("tool_delay", 0.05)
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError("chat input 'prompt' must be a string")
        if (
            isinstance(tokens, bool)
            or not isinstance(tokens, int)
            or not 0 <= tokens <= _MAX_TOKENS
        ):
            raise ValueError(f"chat input 'tokens' must be an integer in 0..{_MAX_TOKENS}")
        if not _seconds(rate):
            raise ValueError("chat input 'rate' must be a non-negative number")
        if tools is not None and tools not in (1, 2):
            raise ValueError("chat input 'tools' must be 1 or 2")
        if not _seconds(delay):
            raise ValueError("chat input 'tool_delay' must be a non-negative number")
        return cls(prompt, tokens, float(rate), tools, float(delay))  # type: ignore[arg-type]


def _seconds(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value >= 0
    )


async def lookup(task: TaskContext, query: str, delay: float) -> JSON:
    """The simulated tool: waits ``delay`` seconds, then answers from the query's hash.

    A real tool would send its request here, after ``task.fence.check()``, with
    ``task.tool_call_id`` as the request's idempotency key.
    """
    await anyio.sleep(delay)
    task.fence.check()
    found = hashlib.sha256(query.encode()).digest()[0] % 10
    return {"query": query, "results": found}


async def chat(ctx: RunContext) -> JSON:
    """One simulated agent turn (see the module docstring); returns
    ``{"tokens": n, "tool_calls": k}``."""
    options = ChatOptions.parse(ctx.run.input)
    prompt = options.prompt
    if prompt is None:
        async for frame in ctx.frames():
            payload = frame.payload
            text = payload.get("text") if isinstance(payload, dict) else payload
            prompt = text if isinstance(text, str) else str(text)
            break
    assert prompt is not None
    tools = options.tools if options.tools is not None else ctx.random.choice((1, 2))
    for index in range(tools):
        await ctx.spawn_task(lookup, f"{prompt} #{index + 1}", options.tool_delay, name="lookup")
    words = []
    for index in range(options.tokens):
        word = ctx.random.choice(_WORDS)
        words.append(word)
        await ctx.emit("token", {"index": index, "text": word})
        if options.rate:
            await ctx.sleep(1 / options.rate)
    text = " ".join(words)
    await ctx.memory.session.put(
        "last_turn", {"run_id": str(ctx.run.run_id), "prompt": prompt, "tokens": len(words)}
    )
    await ctx.emit("message", {"role": "assistant", "text": text, "tool_calls": tools})
    return {"tokens": len(words), "tool_calls": tools}
