"""Connection strings: checking one, where it points, and showing it without its password.

Everything here parses the DSN the way libpq will (``psycopg.conninfo.conninfo_to_dict``),
never by searching for the password's text: a short password such as ``127`` also occurs
in ``127.0.0.1``, and blanking it there would reveal it. A DSN libpq would read
differently from what its author meant is refused outright. The typical case is a URL
whose password holds an unencoded ``@`` or ``/``: ``postgresql://u:p@ss@host/db`` is read
by libpq as password ``p`` on host ``ss@host``, so the host, printed in any error, would
carry part of the password. Such a password must be percent-encoded (``p%40ss``).

Only these functions turn a DSN into text for people (logs, errors, ``repr``).
"""

from __future__ import annotations

from typing import Final

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runtime.store.errors import InvalidArgument

__all__ = ["UNPARSABLE", "check_dsn", "dsn_host", "redact_dsn"]

UNPARSABLE: Final = "<unparsable dsn>"
"""What :func:`redact_dsn` and :func:`dsn_host` show for a DSN :func:`check_dsn` refuses."""

_URL_SCHEMES: Final = ("postgresql://", "postgres://")


def _parse(dsn: str) -> dict[str, str]:
    """The DSN's parameters as libpq reads them, or ``InvalidArgument`` (never echoing it)."""
    if not isinstance(dsn, str):
        raise InvalidArgument("dsn", f"must be a str, not {type(dsn).__name__}")
    try:
        params = conninfo_to_dict(dsn)
    except (ProgrammingError, UnicodeError):  # e.g. a raw "%80" decodes to no UTF-8
        # libpq's message quotes the DSN around the fault, password included: not shown.
        raise InvalidArgument(
            "dsn", "cannot be parsed as a libpq connection string or postgresql:// URL"
        ) from None
    if dsn.startswith(_URL_SCHEMES):
        # libpq takes the user info up to the first "@" that comes before any "/" (a "?"
        # does not end it); another "@" before the query means a password (or user) held
        # an unencoded "@" or "/", and libpq would read a host or database out of it.
        rest = dsn.split("://", 1)[1]
        at, slash = rest.find("@"), rest.find("/")
        if at != -1 and (slash == -1 or at < slash):
            rest = rest[at + 1 :]
        if "@" in rest.split("?", 1)[0]:
            raise InvalidArgument(
                "dsn",
                "the URL's user name or password holds an unencoded '@' or '/';"
                " percent-encode it (e.g. '@' as %40)",
            )
    if any("@" in host for host in str(params.get("host", "")).split(",")):
        raise InvalidArgument("dsn", "a host may not contain '@'")
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            shown = f" {port!r}" if port.isdigit() else ""
            raise InvalidArgument("dsn", f"the port{shown} is not a number from 1 to 65535")
    return {key: str(value) for key, value in params.items() if value is not None}


def check_dsn(dsn: str) -> None:
    """Refuse a DSN that libpq cannot parse, or would read differently than written.

    Raises:
        InvalidArgument: it cannot be parsed; a URL's user name or password holds an
            unencoded ``@`` or ``/``; a host contains ``@``; or a port is not a number
            from 1 to 65535. The message never repeats the DSN.
    """
    _parse(dsn)


def redact_dsn(dsn: str) -> str:
    """The DSN as libpq reads it, in ``key=value`` form, with its password as ``***``.

    A DSN :func:`check_dsn` refuses is shown as :data:`UNPARSABLE`: it may hold a password
    we cannot locate.
    """
    try:
        params = _parse(dsn)
    except InvalidArgument:
        return UNPARSABLE
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def dsn_host(dsn: str) -> str:
    """The host a DSN points at (a socket directory for local sockets), for messages.

    Never includes the password. Falls back to ``localhost``, libpq's own default, and to
    :data:`UNPARSABLE` for a DSN :func:`check_dsn` refuses.
    """
    try:
        host = _parse(dsn).get("host")
    except InvalidArgument:
        return UNPARSABLE
    return host or "localhost"
