"""Token signing keys: the configured ones, or a generated local key for one machine.

Production names its keys (``WARDEN_GATEWAY__KEYS``, with ``WARDEN_GATEWAY__SIGNING_KEY``
when there are several). With no key configured, ``warden node`` and ``warden token``
share one generated key in ``key_file`` (by default ``gateway-key.json`` next to the
embedded server's data directory, created 0600), so ``warden node``, ``warden token`` and
``curl`` work on a fresh machine; that fallback is only for a gateway listening on a
loopback address, and the node says in its log which key file it uses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import stat
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import jwt
import orjson

from transport.errors import KeyConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from uuid import UUID

    from runtime.config import GatewayConfig, NodeConfig

__all__ = ["KeyRing", "default_key_file", "is_loopback", "load_keyring", "mint_token"]

ALGORITHM: Final = "HS256"
_LOCAL_PREFIX: Final = "local-"


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys tokens are verified with (by key id) and the one new tokens are signed
    with. ``local_file`` is the generated key's file when no key was configured."""

    keys: dict[str, bytes]
    current: str
    local_file: Path | None = None

    def __repr__(self) -> str:  # never the secrets
        return f"KeyRing(kids={sorted(self.keys)}, current={self.current!r})"


def default_key_file(config: NodeConfig) -> Path:
    """Where the generated local key lives: ``config.gateway.key_file``, else
    ``gateway-key.json`` next to the embedded server's data directory."""
    if config.gateway.key_file is not None:
        return config.gateway.key_file
    return config.store.pg_data_dir.parent / "gateway-key.json"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_keyring(
    gateway: GatewayConfig,
    *,
    host: str = "127.0.0.1",
    key_file: Path | None = None,
    create: bool = True,
) -> KeyRing:
    """The keys of ``gateway``: the configured ones, else the local key in ``key_file``
    (by default ``gateway.key_file``; generated when missing and ``create``), which
    serves only a gateway on the loopback ``host``. May read a file: call it off the
    event loop. (:func:`default_key_file` is where ``warden node`` keeps its local key.)

    Raises:
        KeyConfigError: no key configured for a gateway on a non-loopback address, or an
            unusable key file (unreadable, malformed, readable by others).
    """
    current = gateway.current_key
    if current is not None:
        keys = {kid: secret.get_secret_value().encode() for kid, secret in gateway.keys.items()}
        return KeyRing(keys, current)
    if not is_loopback(host):
        raise KeyConfigError(
            f"the gateway listens on {host}, not a loopback address, and no token key"
            " is configured: set WARDEN_GATEWAY__KEYS (see docs/gateway.md)"
        )
    path = key_file or gateway.key_file
    if path is None:
        raise KeyConfigError(
            "no token key is configured (WARDEN_GATEWAY__KEYS) and no local key file given"
        )
    kid, secret = _read_or_create(path, create=create)
    return KeyRing({kid: secret}, kid, local_file=path)


def _read_or_create(path: Path, *, create: bool) -> tuple[str, bytes]:
    try:
        return _read(path)
    except FileNotFoundError:
        if not create:
            raise KeyConfigError(
                f"no token key is configured and {path} does not exist: start `warden node`"
                " once, or set WARDEN_GATEWAY__KEYS"
            ) from None
    kid = f"{_LOCAL_PREFIX}{uuid.uuid4().hex[:8]}"
    secret = secrets.token_hex(32)
    body = orjson.dumps({"kid": kid, "secret": secret}, option=orjson.OPT_INDENT_2)
    try:
        # The directory stays traversable (the key file itself is 0600): by default it is
        # the embedded PostgreSQL's parent, which its server user must be able to reach.
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)  # another process created it first: use theirs
    except OSError as error:
        raise KeyConfigError(f"cannot create the local token key {path}: {error}") from error
    with os.fdopen(fd, "wb") as file:
        file.write(body + b"\n")
    return kid, secret.encode()


def _read(path: Path) -> tuple[str, bytes]:
    try:
        info = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise KeyConfigError(f"cannot read the local token key {path}: {error}") from error
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyConfigError(
            f"the local token key {path} is accessible by other users; chmod 600 it"
        )
    try:
        data = orjson.loads(raw)
        kid, secret = data["kid"], data["secret"]
        if not (isinstance(kid, str) and isinstance(secret, str) and len(secret) >= 32):
            raise ValueError("kid and a secret of 32+ characters expected")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise KeyConfigError(f"the local token key {path} is malformed: {error}") from error
    return kid, secret.encode()


def mint_token(
    keyring: KeyRing,
    *,
    subject: str,
    scopes: Iterable[str],
    ttl: dt.timedelta,
    run_id: UUID | None = None,
    session_id: str | None = None,
    token_id: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """A signed token (HS256, ``kid`` header of the current key) for ``subject``.

    Claims: ``sub``, ``scope`` (space separated), ``iat``, ``exp`` (``now + ttl``), ``jti``
    (``token_id`` or a fresh random one) and, when given, the ``run_id`` or
    ``session_id`` the token is bound to.
    """
    issued = now or dt.datetime.now(dt.UTC)
    claims: dict[str, object] = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": token_id or uuid.uuid4().hex,
    }
    if run_id is not None:
        claims["run_id"] = str(run_id)
    if session_id is not None:
        claims["session_id"] = session_id
    return jwt.encode(
        claims, keyring.keys[keyring.current], algorithm=ALGORITHM, headers={"kid": keyring.current}
    )
