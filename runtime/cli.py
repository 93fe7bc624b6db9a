"""The ``warden`` command line (also ``python -m runtime``).

Each subcommand is one function registered in ``_COMMANDS``; user errors end with a
one-line message on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main"]


def _configure_logging(level: int) -> None:
    """The CLI is an application, so it may configure logging (library code never does)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))


def _cmd_demo(args: argparse.Namespace) -> int:
    from runtime.demo import run_demo

    # The demo narrates supervision events itself; --verbose adds the structured logs.
    _configure_logging(logging.INFO if args.verbose else logging.CRITICAL)
    return anyio.run(run_demo, backend=args.backend)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="watch a supervision tree restart a crashing actor (no database needed)"
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--verbose", action="store_true", help="also print structured logs")
    parser.set_defaults(run=_cmd_demo)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warden", description="Warden: supervised actors and durable runs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
