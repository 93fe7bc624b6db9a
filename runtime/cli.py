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
import datetime as dt
import importlib.metadata
import importlib.util
import logging
import re
import sys
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pydantic

from runtime.config import NodeConfig
from runtime.logs import LEVELS, configure_logging
from runtime.node.errors import NodeError
from runtime.run.errors import HandlerLoadError
from runtime.store import EmbeddedPostgres, Store, StoreConfig, StoreError, apply_migrations
from transport.errors import TransportError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence

__all__ = [
    "COMMANDS",
    "Command",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "NODE_FLAGS",
    "main",
    "resolve_dsn",
]

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
        settings: the ``NodeConfig`` fields its flags set (they win over ``WARDEN_*``),
            by field name.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, NodeConfig], Coroutine[Any, Any, int]]
    settings: Callable[[argparse.Namespace], dict[str, Any]] = field(default=lambda args: {})


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
    parser.add_argument(
        "--kernel",
        action="store_true",
        help="run the kernel-only demo instead (a supervision tree, no database)",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop of the kernel demo (--kernel)",
    )
    parser.add_argument("--verbose", action="store_true", help="also print structured logs")


async def _demo(args: argparse.Namespace, config: NodeConfig) -> int:
    # The demo narrates what happens itself; --verbose adds the structured logs.
    configure_logging(level=logging.INFO if args.verbose else logging.CRITICAL)
    if args.kernel:
        from runtime.demo import run_demo

        return await run_demo()
    from runtime.node._demo import run_demo as run_node_demo

    return await run_node_demo(config)


#: ``warden node`` flags and the NodeConfig field each sets.
NODE_FLAGS: dict[str, str] = {
    "host": "--host",
    "port": "--port",
    "node_name": "--name",
    "lease_ttl": "--lease-ttl",
    "heartbeat_interval": "--heartbeat-interval",
    "max_active_runs": "--max-active-runs",
    "handlers": "--handlers",
    "drain_timeout": "--drain-timeout",
    "run_control_capacity": "--control-capacity",
    "run_data_capacity": "--data-capacity",
    "run_telemetry_capacity": "--telemetry-capacity",
    "log_format": "--log-format",
    "log_level": "--log-level",
}


def _node_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", help="address the gateway listens on (WARDEN_HOST, default 127.0.0.1)")
    add("--port", type=int, help="gateway port, 0 for any free one (WARDEN_PORT, default 8000)")
    add("--name", help="node name; the id is NAME:<boot uuid> (WARDEN_NODE_NAME, host name)")
    add("--lease-ttl", type=float, metavar="SECONDS", help="run lease TTL (WARDEN_LEASE_TTL)")
    add(
        "--heartbeat-interval",
        type=float,
        metavar="SECONDS",
        help="lease renewal and membership heartbeat (default lease TTL / 3)",
    )
    add("--max-active-runs", type=int, metavar="N", help="admission bound (default 1000)")
    add(
        "--handlers",
        action="append",
        metavar="MODULE:ATTR",
        help="register handlers from MODULE:ATTR (repeatable; adds to WARDEN_HANDLERS)",
    )
    add(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="time handlers get to finish on SIGTERM/SIGINT (default 10)",
    )
    add("--control-capacity", type=int, metavar="N", help="run actors' control lane")
    add("--data-capacity", type=int, metavar="N", help="run actors' data lane")
    add("--telemetry-capacity", type=int, metavar="N", help="run actors' telemetry lane")
    add("--log-format", choices=("auto", "json", "console"), help="default auto")
    add("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    add(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop; uvloop needs the extra: pip install 'warden-runtime[uvloop]'",
    )


def _node_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        name: getattr(args, flag.removeprefix("--").replace("-", "_"))
        for name, flag in NODE_FLAGS.items()
    }
    if settings["handlers"]:
        # Flags add to the handlers configured in the environment.
        settings["handlers"] = (*NodeConfig().handlers, *settings["handlers"])
    return {name: value for name, value in settings.items() if value is not None}


async def _node(args: argparse.Namespace, config: NodeConfig) -> int:
    from runtime.node import serve
    from transport import default_key_file, gateway_factory, load_keyring

    configure_logging(level=LEVELS[config.log_level], log_format=config.log_format)
    # A missing token key for a public address is a configuration error: say so before
    # anything starts (the gateway loads the same keys again when it starts).
    key_file = default_key_file(config)
    await anyio.to_thread.run_sync(
        lambda: load_keyring(config.gateway, host=config.host, key_file=key_file)
    )
    return await serve(config, gateway=gateway_factory)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> dt.timedelta:
    """``90``, ``90s``, ``15m``, ``1h`` or ``7d`` as a positive duration."""
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 1h, 7d")
    return dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--sub", required=True, metavar="PRINCIPAL", help="who the token speaks for (owner)")
    add(
        "--scope",
        action="append",
        choices=("runs:read", "runs:write", "admin"),
        help="a scope to grant (repeatable; default runs:write, which implies runs:read)",
    )
    add(
        "--ttl",
        type=_duration,
        default=dt.timedelta(hours=1),
        help="lifetime: 90s, 15m, 1h, 7d (default 1h)",
    )
    add("--run-id", type=uuid.UUID, metavar="RUN_ID", help="bind the token to one run")
    add("--session-id", metavar="SESSION_ID", help="bind the token to one session")


async def _token(args: argparse.Namespace, config: NodeConfig) -> int:
    from transport import default_key_file, load_keyring, mint_token

    key_file = default_key_file(config)
    keyring = await anyio.to_thread.run_sync(
        lambda: load_keyring(config.gateway, host=config.host, key_file=key_file)
    )
    if not args.sub.strip() or len(args.sub) > 200:
        return _fail("--sub must be 1 to 200 characters", EXIT_USAGE)
    token = mint_token(
        keyring,
        subject=args.sub,
        scopes=args.scope or ["runs:write"],
        ttl=args.ttl,
        run_id=args.run_id,
        session_id=args.session_id,
    )
    print(token)
    return EXIT_OK


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
        pruned = f", pruned up to seq {report.floor}" if report.floor else ""
        print(
            f"run {report.run_id}: chain ok ({report.events} events, last seq"
            f" {report.last_seq}{pruned})"
        )
        return EXIT_OK
    print(
        f"run {report.run_id}: chain broken at seq {report.first_bad_seq}: {report.reason}",
        file=sys.stderr,
    )
    return EXIT_FAILURE


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "watch five runs stream, survive a crash and a cancel (nothing to set up)",
        _demo_arguments,
        _demo,
    ),
    "node": Command(
        "run a node until SIGTERM/SIGINT, then drain it",
        _node_arguments,
        _node,
        _node_settings,
    ),
    "migrate": Command("apply pending database migrations", _no_arguments, _migrate),
    "verify": Command("verify a run's event hash chain", _verify_arguments, _verify),
    "token": Command(
        "mint a gateway token (signed with the configured or the local key)",
        _token_arguments,
        _token,
    ),
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
    configure_logging(level=level, log_format="console")


def _config_problem(error: Mapping[str, Any], flags: Mapping[str, Any]) -> str:
    """One problem of a configuration, named by the flag that set it, else its variable
    (the store's settings are nested under ``store`` but read from flat variables)."""
    loc = [str(part) for part in error["loc"] if str(part) != "store"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[0] in flags:
        return f"{NODE_FLAGS.get(loc[0], loc[0])}: {message}"
    return f"WARDEN_{'_'.join(loc).upper()}: {message}"


def _config(settings: dict[str, Any]) -> NodeConfig:
    """The node's configuration: the environment, then the flags' ``settings`` on top
    (those of the store's fields go to its ``StoreConfig``)."""
    fields = StoreConfig.model_fields
    store = {name: settings.pop(name) for name in list(settings) if name in fields}
    if store:
        settings["store"] = StoreConfig(**store)
    return NodeConfig(**settings)


def _backend(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The anyio backend and its options for the command."""
    if getattr(args, "loop", "asyncio") == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return getattr(args, "backend", "asyncio"), {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``warden`` command line; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    command = COMMANDS[args.command]
    _configure_logging()
    flags: dict[str, Any] = {}
    try:
        flags = command.settings(args)
        config = _config(dict(flags))
    except pydantic.ValidationError as exc:
        problems = "; ".join(_config_problem(error, flags) for error in exc.errors())
        return _fail(f"invalid configuration: {problems}", EXIT_USAGE)
    backend, options = _backend(args)
    if options.get("use_uvloop") and importlib.util.find_spec("uvloop") is None:
        return _fail("--loop uvloop needs uvloop: pip install 'warden-runtime[uvloop]'", EXIT_USAGE)
    try:
        return anyio.run(command.run, args, config, backend=backend, backend_options=options)
    except (HandlerLoadError, TransportError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (StoreError, NodeError) as exc:
        return _fail(str(exc), EXIT_FAILURE)
    except psycopg.Error as exc:
        # The store translates every database failure; this is the last line, so a
        # missed one still reads as one line, never as a traceback.
        reason = exc.diag.message_primary or str(exc)
        return _fail(f"database error ({type(exc).__name__}): {reason}", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
