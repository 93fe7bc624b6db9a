"""DSNs are redacted by parsing, never by searching for the password (issue 8, item 10).

A property test builds DSNs of every shape users write (URLs with the password raw or
percent-encoded, in the user info or the query; ``key=value`` strings, quoted) around
random passwords, and checks that what the store shows (the redacted DSN, the host, a
configuration error, the error of a failed connection) does not depend on the password
at all, so it can never contain it.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import pydantic
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from runtime.store import (
    DatabaseUnavailable,
    InvalidArgument,
    StoreConfig,
    _db,
    check_dsn,
    dsn_host,
    redact_dsn,
)
from runtime.store.dsn import UNPARSABLE

USERS = st.sampled_from(["warden", "u", "app_user"])
HOSTS = st.sampled_from(["db.internal", "127.0.0.1", "10.0.0.5", "localhost"])
DBNAMES = st.sampled_from(["warden", "w", "prod_db"])
PORTS = st.sampled_from(["", "5432", "6543"])
PASSWORDS = st.text(
    alphabet=st.sampled_from(list("abcXYZ0189@:/?#%&=+ '\\\"!$*()[]{}~é✓")),
    min_size=1,
    max_size=16,
)


def _key_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


SHAPES = ["url-raw", "url-encoded", "url-query", "key-value"]


def _build(shape: str, user: str, host: str, port: str, db: str, password: str) -> str:
    at = f"{host}:{port}" if port else host
    if shape == "url-raw":
        return f"postgresql://{user}:{password}@{at}/{db}"
    if shape == "url-encoded":
        return f"postgres://{user}:{quote(password, safe='')}@{at}/{db}"
    if shape == "url-query":
        return f"postgresql://{user}@{at}/{db}?password={quote(password, safe='')}"
    port_part = f" port={port}" if port else ""
    return f"host={host}{port_part} user={user} password={_key_value(password)} dbname={db}"


@st.composite
def dsns(draw: st.DrawFn) -> tuple[str, str]:
    """A DSN, and the same DSN with a harmless password instead."""
    shape, user, host, port, db, password = (
        draw(st.sampled_from(SHAPES)),
        draw(USERS),
        draw(HOSTS),
        draw(PORTS),
        draw(DBNAMES),
        draw(PASSWORDS),
    )
    return (
        _build(shape, user, host, port, db, password),
        _build(shape, user, host, port, db, "placeholder"),
    )


#: Every message check_dsn may give: fixed texts, and a port only when it is all digits.
REFUSALS = re.compile(
    r"invalid dsn: (cannot be parsed as a libpq connection string or postgresql:// URL"
    r"|the URL's user name or password holds an unencoded '@' or '/'; percent-encode it"
    r" \(e\.g\. '@' as %40\)"
    r"|a host may not contain '@'"
    r"|the port( '\d+')? is not a number from 1 to 65535)"
)


def _refusal(dsn: str) -> str | None:
    """check_dsn's message for ``dsn``, or ``None`` if it takes it."""
    try:
        check_dsn(dsn)
    except InvalidArgument as exc:
        return str(exc)
    return None


@settings(max_examples=400)
@example(
    (
        "postgresql://warden:?@/@db.internal/warden",
        "postgresql://warden:placeholder@/@db.internal/warden",
    )
)
@given(dsns())
def test_no_password_ever_shows(case: tuple[str, str]) -> None:
    dsn, reference = case
    refusal = _refusal(dsn)
    if refusal is not None:
        # Refused with a fixed message: nothing of the DSN is repeated.
        assert REFUSALS.fullmatch(refusal), refusal
        assert redact_dsn(dsn) == dsn_host(dsn) == UNPARSABLE
        with pytest.raises(pydantic.ValidationError) as caught:
            StoreConfig(dsn=dsn)  # type: ignore[arg-type]  # pydantic: a SecretStr
        [error] = caught.value.errors()
        assert error["msg"] == f"Value error, {refusal}"
        assert "input_value" not in str(caught.value)
        return
    # Parsed as libpq will: the same fields, the password replaced.
    original = conninfo_to_dict(dsn)
    redacted = conninfo_to_dict(redact_dsn(dsn))
    if "password" in original:
        assert redacted.pop("password") == "***"
        original.pop("password")
    assert redacted == original
    config = StoreConfig(dsn=dsn)  # type: ignore[arg-type]
    assert f"dsn={config.redacted_dsn()!r}" in repr(config)
    # What is shown does not depend on the password at all.
    assert redact_dsn(dsn) == redact_dsn(reference)
    assert dsn_host(dsn) == dsn_host(reference)


def _connection_error(password: str, shape: str) -> str:
    """What a failed connection (nothing listens on port 1) says, for this password."""
    if shape == "url":
        dsn = f"postgresql://warden:{quote(password, safe='')}@127.0.0.1:1/warden"
    else:
        dsn = f"host=127.0.0.1 port=1 user=warden password={_key_value(password)} dbname=warden"

    async def connect() -> str:
        try:
            await _db.connect(_db.conninfo(dsn, StoreConfig(connect_timeout=2)))
        except DatabaseUnavailable as exc:
            return str(exc)
        raise AssertionError("port 1 accepted a connection")

    return asyncio.run(connect())


@settings(max_examples=40, deadline=None)
@given(PASSWORDS, st.sampled_from(["url", "key-value"]))
def test_no_password_shows_in_a_connection_error(password: str, shape: str) -> None:
    # The message does not depend on the password at all: it names the host.
    message = _connection_error(password, shape)
    assert message == _connection_error("placeholder", shape)
    assert message.startswith("database unavailable at host '127.0.0.1'")


def test_a_short_password_that_is_part_of_the_host_is_not_scrubbed_from_it() -> None:
    # Replacing the password's text once turned 127.0.0.1 into ***.0.0.1, revealing it.
    dsn = "postgresql://u:127@127.0.0.1:5432/w"
    assert dsn_host(dsn) == "127.0.0.1"
    assert conninfo_to_dict(redact_dsn(dsn))["host"] == "127.0.0.1"
    assert conninfo_to_dict(redact_dsn(dsn))["password"] == "***"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@ss@db.internal/w",  # libpq: password "p", host "ss@db.internal"
        "postgresql://u:pa/ss@db.internal/w",  # libpq: host "u", port "pa", dbname "ss@..."
        "postgresql://u:pw@db.internal:99999/w",
        "postgresql://u:pw@db.internal:abc/w",
        "host=db.internal port=abc password=pw",
        "host=db.internal password",
        "postgresql://[bad",
    ],
)
def test_a_dsn_libpq_would_misread_is_refused_without_repeating_it(dsn: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_dsn(dsn)
    assert caught.value.name == "dsn"
    for secret in ("pw", "p@ss", "pa/ss", "ss@"):
        assert secret not in str(caught.value)
    assert redact_dsn(dsn) == dsn_host(dsn) == UNPARSABLE


def test_a_percent_encoded_password_works() -> None:
    dsn = "postgresql://u:p%40ss%2Fword@db.internal/w"
    check_dsn(dsn)
    assert conninfo_to_dict(dsn)["password"] == "p@ss/word"
    assert dsn_host(dsn) == "db.internal"
    assert "p@ss" not in redact_dsn(dsn)
