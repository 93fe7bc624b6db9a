"""NodeConfig: the node's settings hold the store's, read from the same variables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.config import NodeConfig
from runtime.store import StoreConfig

if TYPE_CHECKING:
    import pytest


def test_the_node_composes_the_store_settings_from_the_same_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDEN_DSN", "postgresql://u:pw@db.example:5433/w")
    monkeypatch.setenv("WARDEN_LEASE_TTL", "9")
    config = NodeConfig()
    assert isinstance(config.store, StoreConfig)
    assert config.store.dsn_value() == "postgresql://u:pw@db.example:5433/w"
    assert config.store.lease_ttl == 9
    assert "pw@" not in repr(config)
