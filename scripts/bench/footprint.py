"""One footprint measurement in a fresh interpreter (``python -m bench.footprint``), so
that no variant inherits another's heap: spawn N idle actors (or raw tasks) after a
warm-up, and print the time and resident memory per actor as JSON::

    python -m bench.footprint warden trio 10000 --traced
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import trio

from bench import raw, workloads
from bench.quiet import quiet_logs

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("system", choices=["warden", "raw"])
    parser.add_argument("backend", choices=["asyncio", "trio"])
    parser.add_argument("actors", type=int)
    parser.add_argument("--traced", action="store_true", help="also count with tracemalloc")
    args = parser.parse_args(argv)
    quiet_logs()
    if args.system == "warden":
        import anyio

        result = anyio.run(workloads.footprint, args.actors, args.traced, backend=args.backend)
    elif args.backend == "asyncio":
        result = asyncio.run(raw.asyncio_footprint(args.actors, args.traced))
    else:
        result = trio.run(raw.trio_footprint, args.actors, args.traced)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
