"""Fixtures for gateway tests: a real node serving the gateway on a loopback socket,
on the test's own database, and a client session to talk to it."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from runtime.config import GatewayConfig, NodeConfig
from runtime.node import Node
from runtime.store import StoreConfig
from transport import KeyRing, create_app, mint_token
from transport._state import METRICS

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator

    from transport._metrics import GatewayMetrics

KEY_ID = "test-2026"
SECRET = "s" * 40
OLD_KEY_ID = "test-2025"
OLD_SECRET = "o" * 40


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp and psycopg need asyncio: transport/ tests never run on trio."""
    return "asyncio"


def gateway_settings(**changes: Any) -> GatewayConfig:
    """Test gateway settings: two keys (the current and the previous), short timings."""
    values: dict[str, Any] = {
        "keys": {KEY_ID: SecretStr(SECRET), OLD_KEY_ID: SecretStr(OLD_SECRET)},
        "signing_key": KEY_ID,
        "heartbeat_interval": 5.0,
        "poll_interval": 1.0,
        "send_timeout": 2.0,
    }
    values.update(changes)
    return GatewayConfig(**values)


@pytest.fixture
def node_config(dsn: str) -> NodeConfig:
    """A node on the test's database with the gateway on any free loopback port."""
    return NodeConfig(
        store=StoreConfig(
            dsn=SecretStr(dsn),
            pool_min_size=1,
            pool_max_size=8,
            lease_ttl=3.0,
            listener_poll_interval=1.0,
        ),
        node_name="gw-test",
        port=0,
        janitor_interval=0.5,
        drain_timeout=0.2,  # runs still waiting for frames are handed over at once
        gateway=gateway_settings(),
    )


@dataclass
class Gateway:
    """A running node, its gateway's application and address."""

    node: Node
    app: web.Application
    url: str
    keyring: KeyRing

    @property
    def metrics(self) -> GatewayMetrics:
        return self.app[METRICS]

    def token(
        self,
        sub: str = "alice",
        *scopes: str,
        ttl: float = 600,
        run_id: uuid.UUID | None = None,
        session_id: str | None = None,
        keyring: KeyRing | None = None,
        now: dt.datetime | None = None,
    ) -> str:
        return mint_token(
            keyring or self.keyring,
            subject=sub,
            scopes=scopes or ("runs:write",),
            ttl=dt.timedelta(seconds=ttl),
            run_id=run_id,
            session_id=session_id,
            now=now,
        )

    def auth(self, sub: str = "alice", *scopes: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, *scopes, **claims)}"}


TEST_KEYRING = KeyRing({KEY_ID: SECRET.encode(), OLD_KEY_ID: OLD_SECRET.encode()}, KEY_ID)


@contextlib.asynccontextmanager
async def serving(config: NodeConfig) -> AsyncIterator[Gateway]:
    """A node on ``config`` serving the gateway application."""
    apps: list[web.Application] = []

    def factory(node: Node) -> web.Application:
        apps.append(create_app(node, node.config.gateway))
        return apps[-1]

    async with Node(config, gateway=factory) as node:
        assert node.address is not None
        host, port = node.address
        yield Gateway(node, apps[-1], f"http://{host}:{port}", TEST_KEYRING)


@pytest.fixture
async def gateway(node_config: NodeConfig) -> AsyncIterator[Gateway]:
    async with serving(node_config) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)  # hundreds of concurrent streams
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield session
