"""Connection strings: where a DSN points, and how to show one without its password.

Only these functions turn a DSN into text for people (logs, errors, ``repr``); nothing
else in the store prints a DSN.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["dsn_host", "redact_dsn"]


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with its password replaced by ``***`` (URL or key=value form).

    A DSN that cannot be parsed is redacted entirely: it may hold a password we cannot see.
    """
    try:
        if _is_url(dsn):
            parts = urlsplit(dsn)
            if parts.password is None:
                return dsn
            netloc = parts.netloc.rsplit("@", 1)
            userinfo = parts.username or ""
            netloc_new = f"{userinfo}:***@{netloc[1]}"
            return urlunsplit(parts._replace(netloc=netloc_new))
        params = conninfo_to_dict(dsn)
        if "password" in params:
            params["password"] = "***"
        return make_conninfo("", **params)
    except Exception:
        return "<unparsable dsn>"


def dsn_host(dsn: str) -> str:
    """The host a DSN points at (a socket directory for local sockets), for messages.

    Never includes the password. Falls back to ``localhost``, libpq's own default.
    """
    try:
        host = conninfo_to_dict(dsn).get("host")
    except Exception:
        return "<unparsable dsn>"
    return str(host) if host else "localhost"
