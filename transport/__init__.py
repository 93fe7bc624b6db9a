"""The HTTP gateway: the ``/v1`` API, SSE streams, tokens and metrics (DESIGN §10, §11).

Every node serves :func:`create_app`'s application in its gateway slot
(``Node(config, gateway=gateway_factory)``; ``warden node`` does). The contract, in
brief — the full list of routes, codes and settings is ``docs/gateway.md`` and
``transport/openapi.yaml``:

* JSON in and out; every refusal is ``{"error": {"code", "message"}}`` with a stable
  code; no request is answered with a 500 (a database that is down is a 503), and a
  refused request writes nothing.
* Tokens are HS256 JWTs signed with one of the configured keys (``kid`` header), carrying
  ``sub``, ``scope``, ``iat``, ``exp``, ``jti`` and optionally a ``run_id`` or
  ``session_id`` binding. A mutating request spends its token's ``jti``
  (cluster-wide), so such tokens are single-use. A run belongs to the ``sub`` that
  started it, as its row in the database says.
* Streams are read from the event log, so any node serves any run; they resume exactly
  from ``Last-Event-ID`` or ``?cursor=``, hold a bounded buffer per connection, drop a
  client that stalls past the send timeout, and end after the terminal event.
* Logs carry ``node_id``, ``trace_id`` (from ``traceparent``), ``run_id`` and
  ``session_id``; ``/metrics`` never labels a series with an id.
"""

from transport._keyring import KeyRing, default_key_file, load_keyring, mint_token
from transport.app import create_app, gateway_factory
from transport.errors import KeyConfigError, TransportError

__all__ = [
    "KeyConfigError",
    "KeyRing",
    "TransportError",
    "create_app",
    "default_key_file",
    "gateway_factory",
    "load_keyring",
    "mint_token",
]

KeyRing.__module__ = "transport"
