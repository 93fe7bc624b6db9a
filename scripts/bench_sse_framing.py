"""SSE framing cost on fan-out: aiohttp-sse's ``send()`` against pre-encoded frames.

One aiohttp server on loopback streams the same ``--events`` events to ``--clients``
concurrent clients, twice: once framing every event per client with
``EventSourceResponse.send(data, id=, event=)`` (what aiohttp-sse offers), once writing
a frame encoded once for everyone with ``EventSourceResponse.write()`` (what the gateway
does). No database: only the framing differs. Reports delivered events per second at the
clients for both, and their ratio (pre-encoded is the baseline)::

    python scripts/bench_sse_framing.py --clients 200 --events 500 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

import aiohttp
import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

if TYPE_CHECKING:
    from collections.abc import Callable

PAYLOAD = {"text": "x" * 120, "n": 1}


def event_json(seq: int) -> bytes:
    return orjson.dumps(
        {
            "run_id": "0b6b9b8e-3f5c-4b8e-9a57-3c1d5b7e0a11",
            "seq": seq,
            "type": "token",
            "payload": PAYLOAD,
            "created_at": "2026-01-01T00:00:00+00:00",
        }
    )


def app(events: int, mode: str, start: asyncio.Event) -> web.Application:
    encoded = [
        b"id: %d\nevent: token\ndata: %s\n\n" % (seq, event_json(seq))
        for seq in range(1, events + 1)
    ]
    texts = [event_json(seq).decode() for seq in range(1, events + 1)]

    async def stream(request: web.Request) -> web.StreamResponse:
        response = EventSourceResponse(sep="\n", ping_interval=60)
        await response.prepare(request)
        await response.write(b": open\n\n")
        await start.wait()
        async with response:
            if mode == "send":
                for seq, text in enumerate(texts, 1):
                    await response.send(text, id=str(seq), event="token")
            else:
                for frame in encoded:
                    await response.write(frame)
        return response

    application = web.Application()
    application.router.add_get("/stream", stream)
    return application


async def measure(clients: int, events: int, mode: str) -> float:
    start = asyncio.Event()
    runner = web.AppRunner(app(events, mode, start), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    opened = 0
    all_open = asyncio.Event()
    delivered = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal opened, delivered
            async with session.get(f"http://127.0.0.1:{port}/stream") as response:
                first = await response.content.readuntil(b"\n\n")
                assert first == b": open\n\n"
                opened += 1
                if opened == clients:
                    all_open.set()
                seen = 0
                last = b""
                async for chunk in response.content.iter_any():
                    # A frame's blank line may straddle two chunks.
                    seen += (last + chunk).count(b"\n\n") - last.count(b"\n\n")
                    last = chunk[-1:]
                delivered += seen

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.wait_for(all_open.wait(), 60)
        began = time.perf_counter()
        start.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        elapsed = time.perf_counter() - began
    await runner.cleanup()
    assert delivered == clients * events, (delivered, clients * events)
    return delivered / elapsed


async def main_async(args: argparse.Namespace) -> list[dict[str, object]]:
    rounds: dict[str, list[float]] = {"send": [], "pre_encoded": []}
    for _ in range(args.rounds):
        for mode in ("pre_encoded", "send"):
            rounds[mode].append(await measure(args.clients, args.events, mode))
    best: Callable[[list[float]], float] = max
    baseline = best(rounds["pre_encoded"])
    rows: list[dict[str, object]] = []
    for mode in ("pre_encoded", "send"):
        value = best(rounds[mode])
        rows.append(
            {
                "metric": f"sse_{mode}_eps_{args.clients}",
                "value": round(value),
                "unit": "events/s",
                "baseline": round(baseline),
                "ratio": round(value / baseline, 3),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds per mode")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    for row in rows:
        print(f"{row['metric']:<28} {row['value']:>10} {row['unit']}  ratio {row['ratio']}")
    if args.json:
        with open(args.json, "wb") as out:
            out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
