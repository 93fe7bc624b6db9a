"""``warden demo``: the README's first command, on a fresh machine, read by a person."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import anyio
import pytest
from rich.console import Console

from runtime.node._demo import run_demo
from tests.runtime._helpers import cli_env, run_cli_async

if TYPE_CHECKING:
    from pathlib import Path

    from runtime.config import NodeConfig

pytestmark = pytest.mark.anyio


async def test_the_demo_streams_kills_cancels_and_checks_what_it_showed(
    node_config: NodeConfig,
) -> None:
    out = io.StringIO()
    assert await run_demo(node_config, Console(file=out, width=110)) == 0
    text = out.getvalue()
    assert "five chat runs" in text
    assert "#2  its run actor is killed after seq" in text
    assert "replayed the log and went on at seq" in text
    assert "#4  cancel requested" in text
    for part in ("store", "listener", "membership", "janitor", "sessions", "runs", "gateway"):
        assert f"── {part} " in text
    assert "RunActor" in text  # the runs' subtrees, while they streamed
    summary = text.split("summary", 1)[1]
    rows = [line for line in summary.splitlines() if line.startswith("│  #")]
    assert len(rows) == 5
    assert "canceled" in rows[3]
    assert "lost, succeeded" in rows[1]
    assert "yes" in rows[1].split("│")[5]  # recovered
    assert text.rstrip().endswith("the killed run resumed from its log.")


async def test_warden_demo_on_a_fresh_machine_needs_no_database(private_dir: Path) -> None:
    # Only the embedded server's data directory is chosen, so that the test starts a
    # server of its own (the default is ~/.local/share/warden/pg, /var/lib/warden/pg as
    # root): no DSN, nothing else configured, a directory that does not exist yet.
    data_dir = private_dir / "pg"
    env = cli_env(HOME=str(private_dir), COLUMNS="100", WARDEN_PG_DATA_DIR=str(data_dir))
    result = await run_cli_async("demo", env=env, seconds=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"the embedded PostgreSQL in {data_dir}" in result.stdout.replace("\n", "")
    assert "Done." in result.stdout
    assert await anyio.Path(data_dir / "PG_VERSION").is_file()
