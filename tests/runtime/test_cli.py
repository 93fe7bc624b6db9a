"""The ``warden`` command line, run as a real subprocess."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from psycopg.conninfo import make_conninfo

from runtime.store import dsn_host
from tests.runtime._helpers import (
    applied_report,
    cli_env,
    leased_run,
    query,
    run_cli,
    run_cli_async,
)

if TYPE_CHECKING:
    import subprocess

    from runtime.store import Store

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://warden:s3cret-pw@127.0.0.1:1/warden",
        "host=127.0.0.1 port=1 user=warden password=s3cret-pw dbname=warden",
    ],
)
def test_an_unreachable_database_is_one_line_naming_the_host(dsn: str) -> None:
    result = run_cli("migrate", env=cli_env(WARDEN_DSN=dsn, WARDEN_CONNECT_TIMEOUT="2"))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warden: error: database unavailable at host '127.0.0.1'")
    assert "s3cret-pw" not in result.stderr
    assert "Traceback" not in result.stderr


def _one_line_error(result: subprocess.CompletedProcess[str], dsn: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warden: error: ")
    assert f"host {dsn_host(dsn)!r}" in lines[0]
    assert "s3cret-pw" not in result.stderr + result.stdout
    return lines[0]


def test_verify_on_an_unmigrated_database_says_to_migrate(empty_dsn: str) -> None:
    dsn = make_conninfo(empty_dsn, password="s3cret-pw")
    result = run_cli("verify", str(uuid.uuid4()), env=cli_env(WARDEN_DSN=dsn))
    line = _one_line_error(result, dsn)
    assert "is not migrated" in line
    assert line.endswith("run `warden migrate`")


def test_migrate_on_a_read_only_database_is_one_line(empty_dsn: str) -> None:
    dsn = make_conninfo(
        empty_dsn, password="s3cret-pw", options="-c default_transaction_read_only=on"
    )
    result = run_cli("migrate", env=cli_env(WARDEN_DSN=dsn))
    line = _one_line_error(result, dsn)
    assert "(SQLSTATE 25006)" in line
    assert result.stdout == ""


def test_bad_configuration_is_a_usage_error() -> None:
    result = run_cli("migrate", env=cli_env(WARDEN_POOL_MAX_SIZE="many"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "warden: error: invalid configuration: WARDEN_POOL_MAX_SIZE: Input should be a valid"
        " integer, unable to parse string as an integer"
    ]


def test_help_lists_the_subcommands() -> None:
    result = run_cli("--help", env=cli_env())
    assert result.returncode == 0
    assert "migrate" in result.stdout
    assert "verify" in result.stdout


def test_migrate_reports_what_it_applied(empty_dsn: str) -> None:
    first = run_cli("migrate", env=cli_env(WARDEN_DSN=empty_dsn))
    assert (first.returncode, first.stdout) == (0, applied_report())
    second = run_cli("migrate", env=cli_env(WARDEN_DSN=empty_dsn))
    assert (second.returncode, second.stdout) == (0, "database is up to date\n")


async def test_verify_reports_an_intact_and_a_broken_chain(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    for i in range(3):
        await store.append_event(run.run_id, lease.epoch, "step", {"i": i})
    ok = await run_cli_async("verify", str(run.run_id), env=cli_env(WARDEN_DSN=dsn))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"run {run.run_id}: chain ok (3 events, last seq 3)\n"

    await query(dsn, "UPDATE run_events SET payload = '{\"i\": 7}' WHERE seq = 2")
    broken = await run_cli_async("verify", str(run.run_id), env=cli_env(WARDEN_DSN=dsn))
    assert broken.returncode == 1
    assert f"run {run.run_id}: chain broken at seq 2" in broken.stderr


async def test_verify_checks_a_pruned_run_from_its_anchor(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    for i in range(3):
        await store.append_event(run.run_id, lease.epoch, "step", {"i": i})
    await store.append_event(run.run_id, lease.epoch, "run.succeeded", {})
    await store.prune_events(default_window=0)
    ok = await run_cli_async("verify", str(run.run_id), env=cli_env(WARDEN_DSN=dsn))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"run {run.run_id}: chain ok (1 events, last seq 4, pruned up to seq 3)\n"

    await query(dsn, "UPDATE run_events SET payload = '{\"forged\": 1}' WHERE seq = 4")
    broken = await run_cli_async("verify", str(run.run_id), env=cli_env(WARDEN_DSN=dsn))
    assert broken.returncode == 1
    assert f"run {run.run_id}: chain broken at seq 4" in broken.stderr


def test_verify_of_an_unknown_run_and_a_malformed_id(dsn: str) -> None:
    missing = run_cli("verify", "00000000-0000-0000-0000-000000000000", env=cli_env(WARDEN_DSN=dsn))
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "warden: error: run 00000000-0000-0000-0000-000000000000 not found"
    )
    malformed = run_cli("verify", "not-a-uuid", env=cli_env(WARDEN_DSN=dsn))
    assert malformed.returncode == 2
    assert "invalid UUID value" in malformed.stderr


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://warden:s3cret@pw@127.0.0.1/w", "holds an unencoded '@' or '/'"),
        ("postgresql://warden:s3cret-pw@127.0.0.1:99999/w", "the port '99999' is not a number"),
        ("host=127.0.0.1 port=abc password=s3cret-pw", "the port is not a number"),
        ("host=127.0.0.1 password=s3cret-pw junk", "cannot be parsed"),
    ],
)
def test_an_unparsable_dsn_or_a_bad_port_is_a_one_line_usage_error(dsn: str, problem: str) -> None:
    result = run_cli("migrate", env=cli_env(WARDEN_DSN=dsn))
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("warden: error: invalid configuration: WARDEN_DSN: invalid dsn: ")
    assert problem in line
    assert "s3cret" not in result.stderr
