"""`warden demo` must keep working: it is the first command in the README."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from runtime.demo import run_demo


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_demo_shows_a_restart_and_an_escalation(anyio_backend: str) -> None:
    out = io.StringIO()
    assert await run_demo(out) == 0
    text = out.getvalue()
    assert "flaky restarted (restart #1)" in text
    assert "flaky handled, in order: urgent (jumps the queue), 1, 2, 3, 4, 6" in text
    assert "counter never noticed: total = 45" in text
    assert "root supervisor exited with: shutdown: intensity" in text


@pytest.mark.parametrize("flags", [[], ["-O"]], ids=["default", "optimized"])
def test_warden_demo_runs_from_the_command_line(flags: list[str]) -> None:
    # Under -O assert statements vanish: the demo must not rely on them.
    result = subprocess.run(
        [sys.executable, *flags, "-m", "runtime", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Done.")
    assert "Traceback" not in result.stderr
