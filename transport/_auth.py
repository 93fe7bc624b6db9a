"""Who is asking, and may they: signed tokens, scopes, bindings, ownership (DESIGN §10).

A request carries ``Authorization: Bearer <JWT>`` (HS256, with the ``kid`` of one of the
configured keys). Claims: ``sub`` (the principal), ``scope`` (space separated:
``runs:read``, ``runs:write``, ``admin``; ``runs:write`` implies ``runs:read``, ``admin``
implies both), ``iat``, ``exp``, ``jti``, and optionally ``run_id`` or ``session_id``
binding the token to one run or session.

* :func:`authorize` checks the token and the scope. A mutating request (any method but
  GET and HEAD) also spends the token's ``jti`` in the cluster-wide replay table: the
  first mutating request presenting it spends it, whatever its outcome, and any later one
  is refused with ``token_replayed``. So a mutating token is single-use: mint one per
  request.
* :func:`check_owner` checks a run against the principal: its ``owner`` column (from the
  database, never from the request) must be the token's ``sub`` (``admin`` may read and
  act on any run), and a bound token only reaches its own run or session.

The stream route also takes the token as ``?token=`` (a browser ``EventSource`` cannot
send headers); such a token must be read-only and bound to the run it streams. Tokens
are never logged: the gateway's access log leaves the query string out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import jwt

from transport._errors import ApiError
from transport._keyring import ALGORITHM
from transport._state import KEYRING, NODE

if TYPE_CHECKING:
    from aiohttp import web

    from runtime.store import Run
    from transport._keyring import KeyRing

__all__ = ["Principal", "Scope", "authorize", "check_owner", "decode_token", "spend_token"]

Scope = Literal["runs:read", "runs:write", "admin"]

SCOPES: Final[frozenset[str]] = frozenset({"runs:read", "runs:write", "admin"})
#: What each scope grants besides itself.
_IMPLIES: Final[dict[str, frozenset[str]]] = {
    "runs:read": frozenset(),
    "runs:write": frozenset({"runs:read"}),
    "admin": frozenset({"runs:read", "runs:write"}),
}
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_LEEWAY: Final = 5  # seconds of clock skew tolerated between the minting and the node
_MAX_CLAIM: Final = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: the token's ``sub``: who owns the runs it starts.
        scopes: the scopes the token grants, implied ones included.
        run_id, session_id: the run or session the token is bound to, if any.
        token_id: the token's ``jti``.
        expires_at: the token's ``exp``.
    """

    subject: str
    scopes: frozenset[str]
    run_id: uuid.UUID | None
    session_id: str | None
    token_id: str | None
    expires_at: dt.datetime

    def allows(self, scope: Scope) -> bool:
        """Whether the token grants ``scope``."""
        return scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


def _unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="warden"'})


def decode_token(keyring: KeyRing, token: str) -> Principal:
    """The principal of a signed, unexpired ``token``.

    Raises:
        ApiError: 401 ``invalid_token`` (malformed, forged, unknown key, bad claims) or
            ``token_expired``.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise _unauthenticated("invalid_token", "the token is not a well-formed JWT") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keyring.keys:
        raise _unauthenticated("invalid_token", "the token is not signed with a known key")
    try:
        claims = jwt.decode(
            token,
            keyring.keys[kid],
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
            leeway=_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise _unauthenticated("token_expired", "the token has expired") from None
    except jwt.InvalidTokenError as error:
        raise _unauthenticated("invalid_token", f"the token is invalid: {error}") from None
    return _principal(claims)


def _principal(claims: dict[str, object]) -> Principal:
    def text(name: str, *, required: bool) -> str | None:
        value = claims.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM or "\x00" in value:
            raise _unauthenticated("invalid_token", f"the token's {name!r} claim is malformed")
        return value

    subject = text("sub", required=True)
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise _unauthenticated("invalid_token", "the token's 'scope' claim is malformed")
    granted = set(scope.split())
    if not granted <= SCOPES:
        unknown = ", ".join(sorted(granted - SCOPES))
        raise _unauthenticated("invalid_token", f"the token names unknown scopes: {unknown}")
    scopes = set(granted)
    for each in granted:
        scopes |= _IMPLIES[each]
    run_text = text("run_id", required=False)
    try:
        run_id = uuid.UUID(run_text) if run_text is not None else None
    except ValueError:
        raise _unauthenticated("invalid_token", "the token's 'run_id' is not a UUID") from None
    exp = claims["exp"]
    assert isinstance(exp, int | float)  # PyJWT checked it is numeric
    assert subject is not None
    return Principal(
        subject=subject,
        scopes=frozenset(scopes),
        run_id=run_id,
        session_id=text("session_id", required=False),
        token_id=text("jti", required=False),
        expires_at=dt.datetime.fromtimestamp(exp, dt.UTC),
    )


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("invalid_token", "Authorization must be 'Bearer <token>'")
    return token.strip()


async def authorize(
    request: web.Request, scope: Scope, *, query_token: bool = False, spend: bool = True
) -> Principal:
    """The caller of ``request``, who must hold ``scope``.

    ``query_token`` lets the token come as ``?token=`` (the stream route): it must then
    grant reading only and be bound to a run (checked against the run by
    :func:`check_owner`). A mutating request (any method but GET, HEAD, OPTIONS) spends
    the token's ``jti`` here; a handler that validates its input and checks ownership
    first passes ``spend=False`` and calls :func:`spend_token` right before it acts, so a
    refused request writes nothing at all.

    Raises:
        ApiError: 401 (``unauthenticated``, ``invalid_token``, ``token_expired``,
            ``token_replayed``) or 403 ``forbidden``.
    """
    token = _bearer(request)
    from_query = False
    if token is None and query_token and "token" in request.query:
        token, from_query = request.query["token"], True
    if token is None:
        raise _unauthenticated("unauthenticated", "a bearer token is required")
    principal = decode_token(request.app[KEYRING], token)
    if not principal.allows(scope):
        raise ApiError(403, "forbidden", f"the token does not grant {scope}")
    if from_query:
        if principal.scopes != {"runs:read"}:
            raise ApiError(403, "forbidden", "a ?token= may grant runs:read only")
        if principal.run_id is None:
            raise ApiError(403, "forbidden", "a ?token= must be bound to the run it streams")
    if spend and request.method not in _SAFE_METHODS:
        await spend_token(request, principal)
    return principal


async def spend_token(request: web.Request, principal: Principal) -> None:
    """Spend the token's ``jti`` in the cluster-wide replay table.

    Raises:
        ApiError: 401 ``token_replayed`` (spent before) or ``invalid_token`` (no jti).
    """
    if principal.token_id is None:
        raise _unauthenticated(
            "invalid_token", "a mutating request needs a token with a 'jti' (token id)"
        )
    fresh = await request.app[NODE].store.consume_token_id(
        principal.token_id, subject=principal.subject, expires_at=principal.expires_at
    )
    if not fresh:
        raise _unauthenticated(
            "token_replayed", "the token was already used for a request that changes state"
        )


def check_owner(principal: Principal, run: Run) -> None:
    """Refuse (403 ``forbidden``) unless ``principal`` may reach ``run``: its owner (or
    an admin), and within the token's run or session binding."""
    if principal.run_id is not None and principal.run_id != run.run_id:
        raise ApiError(403, "forbidden", "the token is bound to another run")
    if principal.session_id is not None and principal.session_id != run.session_id:
        raise ApiError(403, "forbidden", "the token is bound to another session")
    if run.owner != principal.subject and not principal.is_admin:
        raise ApiError(403, "forbidden", f"run {run.run_id} belongs to another principal")
