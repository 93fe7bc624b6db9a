"""NodeConfig: environment, bounds and a redacted DSN."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from runtime.config import (
    NodeConfig,
    default_node_name,
    default_pg_data_dir,
    dsn_host,
    redact_dsn,
)


def test_settings_come_from_warden_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDEN_DSN", "postgresql://u:pw@db.example:5433/w")
    monkeypatch.setenv("WARDEN_LEASE_TTL", "9")
    monkeypatch.setenv("WARDEN_PG_DATA_DIR", "/srv/warden/pg")
    config = NodeConfig()
    assert config.dsn_value() == "postgresql://u:pw@db.example:5433/w"
    assert config.lease_ttl == 9
    assert str(config.pg_data_dir) == "/srv/warden/pg"


def test_defaults_are_bounded_and_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARDEN_DSN", "WARDEN_PG_DATA_DIR", "WARDEN_PAYLOAD_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    config = NodeConfig()
    assert config.dsn is None
    assert config.payload_limit == 1024 * 1024
    assert config.pg_data_dir == default_pg_data_dir()
    assert config.pg_data_dir.parts[-2:] == ("warden", "pg")
    assert config.append_queue_size > 0
    assert config.append_batch_size <= 128  # keeps one NOTIFY payload under 8000 bytes


@pytest.mark.parametrize(
    ("dsn", "shown", "host"),
    [
        (
            "postgresql://warden:s3cret@db.internal:5432/w",
            "postgresql://warden:***@db.internal:5432/w",
            "db.internal",
        ),
        ("postgresql://warden@db.internal/w", "postgresql://warden@db.internal/w", "db.internal"),
        (
            "host=10.0.0.5 user=w password=s3cret dbname=w",
            "host=10.0.0.5 user=w password=*** dbname=w",
            "10.0.0.5",
        ),
        ("dbname=w", "dbname=w", "localhost"),
    ],
)
def test_the_password_never_shows(dsn: str, shown: str, host: str) -> None:
    assert conninfo_to_dict(redact_dsn(dsn)) == conninfo_to_dict(shown)
    assert dsn_host(dsn) == host
    config = NodeConfig(dsn=dsn)  # type: ignore[arg-type]  # pydantic coerces str to SecretStr
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config)
    assert "s3cret" not in config.model_dump_json()
    assert config.redacted_dsn() == redact_dsn(dsn)


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError, match="pool_min_size"):
        NodeConfig(pool_min_size=0)


def test_node_settings_have_working_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARDEN_NODE_NAME", "WARDEN_LEASE_TTL", "WARDEN_HEARTBEAT_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    config = NodeConfig()
    assert config.node_name == default_node_name()
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.effective_heartbeat_interval == config.lease_ttl / 3
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
        ({"lease_ttl": 3, "heartbeat_interval": 1.5}, "heartbeat_interval"),
    ],
)
def test_bad_node_settings_are_refused_naming_the_field(
    settings: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        NodeConfig(**settings)  # type: ignore[arg-type]  # deliberately wrong values


def test_the_default_node_name_is_a_valid_name() -> None:
    assert NodeConfig(node_name=default_node_name()).node_name


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_dsn_means_the_embedded_server(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WARDEN_DSN", value)
    assert NodeConfig().dsn is None
