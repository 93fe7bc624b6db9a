"""docs/node.md's Python examples run as written and print what their comments say.

Each example runs in its own process with ``WARDEN_DSN`` pointing at a fresh, migrated
database, as a reader would run it against their own.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import pytest

from tests.runtime._helpers import cli_env

DOC = Path(__file__).resolve().parents[3] / "docs" / "node.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)

pytestmark = pytest.mark.anyio


def expected_output(code: str) -> list[str]:
    """What each ``print`` promises: its trailing comment, or the comment line below it."""
    lines = code.splitlines()
    expected = []
    for index, line in enumerate(lines):
        if "print(" not in line:
            continue
        if "  # " in line:
            expected.append(line.split("  # ", 1)[1].strip())
        elif index + 1 < len(lines) and lines[index + 1].strip().startswith("# "):
            expected.append(lines[index + 1].strip()[2:])
    return expected


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS, ids=[f"example-{i + 1}" for i in range(len(BLOCKS))])
async def test_each_example_runs_and_prints_what_it_says(code: str, dsn: str) -> None:
    with anyio.fail_after(120):
        result = await anyio.run_process(
            [sys.executable, "-c", code], env=cli_env(WARDEN_DSN=dsn), check=False
        )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr[-3000:]
    printed = [line.strip() for line in stdout.splitlines() if line.strip()]
    assert printed == expected_output(code), stdout
