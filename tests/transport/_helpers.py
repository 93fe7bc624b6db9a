"""Helpers for gateway tests: SSE parsing, run set-up over HTTP, row counts."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tests.runtime._helpers import query

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import aiohttp

    from tests.transport.conftest import Gateway


@dataclass
class SseBlock:
    """One SSE block: its fields, comments and the parsed ``data``."""

    id: str | None = None
    event: str | None = None
    data: Any = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def parse_sse(text: str) -> list[SseBlock]:
    """Every block of an SSE body (a trailing partial block is left out)."""
    blocks = []
    for raw in text.split("\n\n")[:-1]:
        block = SseBlock()
        for line in raw.split("\n"):
            if line.startswith(":"):
                block.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(": ")
            if name == "id":
                block.id = value
            elif name == "event":
                block.event = value
            elif name == "data":
                block.data = orjson.loads(value)
            elif name == "retry":
                block.retry = int(value)
        blocks.append(block)
    return blocks


def events_of(blocks: list[SseBlock]) -> list[SseBlock]:
    return [b for b in blocks if b.event is not None]


async def start(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    *,
    owner: str = "alice",
    run_type: str = "echo",
    input: Any = None,
) -> str:
    """Start a run over HTTP; its id."""
    async with http.post(
        f"{gateway.url}/v1/runs",
        json={"run_type": run_type, "input": input},
        headers=gateway.auth(owner),
    ) as response:
        body = await response.json()
        assert response.status == 201, body
    return str(body["run"]["run_id"])


async def frame(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    run_id: str,
    frame_id: str,
    *,
    owner: str = "alice",
    kind: str = "message",
    payload: Any = None,
) -> None:
    async with http.post(
        f"{gateway.url}/v1/runs/{run_id}/frames",
        json={"frame_id": frame_id, "kind": kind, "payload": payload},
        headers=gateway.auth(owner),
    ) as response:
        assert response.status in (200, 201), await response.text()


async def row_counts(dsn: str) -> dict[str, int]:
    """Rows of the tables a request could write to (the token table apart)."""
    counts = {}
    for table in ("runs", "run_events", "run_frames", "run_attempts"):
        [(count,)] = await query(dsn, f"SELECT count(*) FROM {table}")
        counts[table] = count
    return counts


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str]:
    """The status and the error code of a refusal."""
    body = await response.json()
    return response.status, body["error"]["code"]


@contextlib.contextmanager
def node_process(env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, Path]]:
    """A ``warden node`` process with ``env``; its gateway's base URL and its log file
    (stderr), which it holds until it has stopped (SIGTERM)."""
    log_path = log_dir / "node.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "node"], env=env, stdout=subprocess.PIPE, stderr=log
        )
        assert process.stdout is not None
        try:
            ready = process.stdout.readline().decode()
            assert " ready: gateway http://" in ready, log_path.read_text()
            yield ready.split(" ready: gateway ", 1)[1].split(",", 1)[0], log_path
        finally:
            process.terminate()
            process.wait(timeout=30)
            process.stdout.close()
