"""NodeConfig: the node's settings hold the store's, read from the same variables."""

from __future__ import annotations

import pytest

from runtime.config import NodeConfig, default_node_name
from runtime.store import StoreConfig


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


def test_node_settings_have_working_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARDEN_NODE_NAME", "WARDEN_LEASE_TTL", "WARDEN_HEARTBEAT_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    config = NodeConfig()
    assert config.node_name == default_node_name()
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.effective_heartbeat_interval == config.store.lease_ttl / 3
    assert config.drain_timeout == 10.0
    assert config.executor_lost_budget == 3
    assert config.handlers == ()


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("myapp.agents:summarize", ("myapp.agents:summarize",)),
        ("a:b, c.d:e ,", ("a:b", "c.d:e")),
        ('["a:b", "review=c:d"]', ("a:b", "review=c:d")),
        ("", ()),
    ],
)
def test_handlers_come_from_the_environment_as_a_list_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, parsed: tuple[str, ...]
) -> None:
    monkeypatch.setenv("WARDEN_HANDLERS", value)
    assert NodeConfig().handlers == parsed


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"handlers": ("no-colon",)}, "handlers"),
        ({"handlers": (":attr",)}, "handlers"),
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"node_name": "has:colon"}, "node_name"),
        ({"node_name": ""}, "node_name"),
        ({"max_active_runs": 0}, "max_active_runs"),
        ({"drain_timeout": -1}, "drain_timeout"),
        ({"store": StoreConfig(lease_ttl=3), "heartbeat_interval": 1.5}, "heartbeat_interval"),
        ({"retention_window": -1}, "retention_window"),
        ({"retention_windows": {"chat": -5}}, "retention_windows"),
        ({"retention_windows": {"chat": float("nan")}}, "retention_windows"),
        ({"retention_batch_size": 0}, "retention_batch_size"),
    ],
)
def test_bad_node_settings_are_refused_naming_the_field(
    settings: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        NodeConfig(**settings)  # type: ignore[arg-type]  # deliberately wrong values


def test_retention_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_RETENTION_WINDOW", "86400")
    monkeypatch.setenv("WARDEN_RETENTION_WINDOWS", '{"chat": 3600, "batch": 0}')
    monkeypatch.setenv("WARDEN_RETENTION_BATCH_SIZE", "50")
    config = NodeConfig()
    assert config.retention_window == 86400
    assert config.retention_windows == {"chat": 3600, "batch": 0}
    assert config.retention_batch_size == 50


def test_the_default_node_name_is_a_valid_name() -> None:
    assert NodeConfig(node_name=default_node_name()).node_name


def test_with_changes_routes_the_store_settings_and_validates() -> None:
    config = NodeConfig(store=StoreConfig(lease_ttl=30), node_name="a")
    changed = config.with_changes(node_name="b", lease_ttl=9, pool_max_size=30)
    assert (changed.node_name, changed.store.lease_ttl, changed.store.pool_max_size) == (
        "b",
        9,
        30,
    )
    assert (config.node_name, config.store.lease_ttl) == ("a", 30)  # the original stays
    with pytest.raises(ValueError, match="heartbeat_interval"):
        config.with_changes(heartbeat_interval=20)
    with pytest.raises(ValueError, match="port"):
        config.with_changes(port=-1)
