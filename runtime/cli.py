"""The ``warden`` command line (also ``python -m runtime``).

Each subcommand is one async function registered in :data:`COMMANDS` with the function
that adds its arguments, so a new subcommand (``node``, ...) is one entry.
Expected failures print one line, ``warden: error: ...``, on stderr and exit non-zero:
1 for an operational failure (database unreachable, broken chain), 2 for bad usage or
configuration. A database error names the DSN's host, never its password.

``warden`` with no arguments prints this help; ``warden --version`` prints the version.

Exit codes: 0 success, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pydantic
import structlog

from runtime.config import NodeConfig
from runtime.store import EmbeddedPostgres, Store, StoreError, apply_migrations
from runtime.store.logs import DroppingLoggerFactory

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence

__all__ = ["COMMANDS", "Command", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main", "resolve_dsn"]

EXIT_OK = 0
"""Exit code: success."""
EXIT_FAILURE = 1
"""Exit code: an operational failure (database unreachable or refusing, broken chain)."""
EXIT_USAGE = 2
"""Exit code: bad usage or configuration."""


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand.

    Attributes:
        help: one line for ``warden --help``.
        add_arguments: adds the subcommand's own arguments to its parser.
        run: does the work; returns the exit code.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, NodeConfig], Coroutine[Any, Any, int]]


@contextlib.asynccontextmanager
async def resolve_dsn(config: NodeConfig) -> AsyncIterator[str]:
    """Yield the configured DSN, or start (or join) the embedded server for the block."""
    dsn = config.store.dsn_value()
    if dsn is not None:
        yield dsn
        return
    async with EmbeddedPostgres.for_config(config.store) as embedded:
        yield embedded.dsn


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--verbose", action="store_true", help="also print structured logs")


async def _demo(args: argparse.Namespace, config: NodeConfig) -> int:
    from runtime.demo import run_demo

    # The demo narrates supervision events itself; --verbose adds the structured logs.
    _configure_logging(logging.INFO if args.verbose else logging.CRITICAL)
    return await run_demo()


async def _migrate(args: argparse.Namespace, config: NodeConfig) -> int:
    async with resolve_dsn(config) as dsn:
        applied = await apply_migrations(dsn, config.store)
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("database is up to date")
    return EXIT_OK


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", type=uuid.UUID, metavar="RUN_ID", help="the run to check")


async def _verify(args: argparse.Namespace, config: NodeConfig) -> int:
    async with resolve_dsn(config) as dsn, Store(dsn, config.store) as store:
        report = await store.verify_chain(args.run_id)
    if report.ok:
        print(f"run {report.run_id}: chain ok ({report.events} events, last seq {report.last_seq})")
        return EXIT_OK
    print(
        f"run {report.run_id}: chain broken at seq {report.first_bad_seq}: {report.reason}",
        file=sys.stderr,
    )
    return EXIT_FAILURE


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "watch a supervision tree restart a crashing actor (no database needed)",
        _demo_arguments,
        _demo,
    ),
    "migrate": Command("apply pending database migrations", _no_arguments, _migrate),
    "verify": Command("verify a run's event hash chain", _verify_arguments, _verify),
}
"""Subcommands by name; register new ones here."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warden",
        description="Warden: supervised actors, durable runs and resumable event streams.",
        epilog="Settings come from WARDEN_* environment variables (e.g. WARDEN_DSN); "
        "with no WARDEN_DSN an embedded PostgreSQL is used.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("warden-runtime")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown (not installed)"


def _fail(message: str, code: int) -> int:
    print(f"warden: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _configure_logging(level: int = logging.WARNING) -> None:
    # The command line is an application entry point, so it (not the library) decides
    # where logs go: warnings and errors as one line each on stderr, stdout stays clean.
    # A closed stderr (piped into `head`) drops log lines, never fails a command.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=DroppingLoggerFactory(sys.stderr),
    )


def _config_problem(error: Mapping[str, Any]) -> str:
    field = "_".join(str(part) for part in error["loc"]).upper()
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"WARDEN_{field}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``warden`` command line; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    _configure_logging()
    try:
        config = NodeConfig()
    except pydantic.ValidationError as exc:
        problems = "; ".join(_config_problem(error) for error in exc.errors())
        return _fail(f"invalid configuration: {problems}", EXIT_USAGE)
    try:
        backend = getattr(args, "backend", "asyncio")
        return anyio.run(COMMANDS[args.command].run, args, config, backend=backend)
    except StoreError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    except psycopg.Error as exc:
        # The store translates every database failure; this is the last line, so a
        # missed one still reads as one line, never as a traceback.
        reason = exc.diag.message_primary or str(exc)
        return _fail(f"database error ({type(exc).__name__}): {reason}", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
