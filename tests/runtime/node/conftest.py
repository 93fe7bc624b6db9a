"""Fixtures for node tests: a node configuration on the test's own database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from runtime.config import NodeConfig
from runtime.node import Node
from runtime.store import StoreConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
def node_config(dsn: str) -> NodeConfig:
    """A node on the test's database: any free port, short leases, quick janitor."""
    return NodeConfig(
        store=StoreConfig(
            dsn=SecretStr(dsn),
            pool_min_size=1,
            pool_max_size=8,
            lease_ttl=3.0,
            listener_poll_interval=1.0,
        ),
        node_name="test-node",
        port=0,
        janitor_interval=0.2,
        drain_timeout=5.0,
    )


@pytest.fixture
async def node(node_config: NodeConfig) -> AsyncIterator[Node]:
    """A running node (drained when the test ends)."""
    async with Node(node_config) as running:
        yield running
