"""StoreConfig: environment, bounds and a redacted DSN."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from runtime.store import StoreConfig, default_pg_data_dir, dsn_host, redact_dsn


def test_settings_come_from_warden_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDEN_DSN", "postgresql://u:pw@db.example:5433/w")
    monkeypatch.setenv("WARDEN_LEASE_TTL", "9")
    monkeypatch.setenv("WARDEN_PG_DATA_DIR", "/srv/warden/pg")
    config = StoreConfig()
    assert config.dsn_value() == "postgresql://u:pw@db.example:5433/w"
    assert config.lease_ttl == 9
    assert str(config.pg_data_dir) == "/srv/warden/pg"


def test_defaults_are_bounded_and_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARDEN_DSN", "WARDEN_PG_DATA_DIR", "WARDEN_PAYLOAD_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    config = StoreConfig()
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
    config = StoreConfig(dsn=dsn)  # type: ignore[arg-type]  # pydantic coerces str to SecretStr
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config)
    assert "s3cret" not in config.model_dump_json()
    assert config.redacted_dsn() == redact_dsn(dsn)


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError, match="pool_min_size"):
        StoreConfig(pool_min_size=0)


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_dsn_means_no_dsn(monkeypatch: pytest.MonkeyPatch, empty: str) -> None:
    # Not libpq's defaults (the local socket's database): the embedded server.
    monkeypatch.setenv("WARDEN_DSN", empty)
    assert StoreConfig().dsn is None
    assert StoreConfig(dsn=empty).dsn is None  # type: ignore[arg-type]


def test_a_lock_timeout_must_be_below_the_append_timeout() -> None:
    with pytest.raises(ValueError, match="append_lock_timeout"):
        StoreConfig(append_timeout=1.0, append_lock_timeout=1.0)
