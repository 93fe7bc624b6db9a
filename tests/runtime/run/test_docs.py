"""The examples of docs/runs.md run as written, against a fresh migrated database.

The python blocks run in order, as one script (each builds on the helper the first one
defines), with ``WARDEN_DSN`` set; each ``print(...)  # expected`` line must print the
expected text, in order.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import pytest

from tests.runtime._helpers import cli_env

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[3] / "docs" / "runs.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# "print(...)  # expected"; a print the formatter wrapped ends with ")  # expected".
_EXPECTED = re.compile(r"^(?:print\(.*)?\)  # (.*)$")


def _script() -> tuple[str, list[str]]:
    blocks = _BLOCK.findall(DOC.read_text(encoding="utf-8"))
    script = "\n\n".join(blocks)
    expected = [m.group(1) for line in script.splitlines() if (m := _EXPECTED.match(line))]
    return script, expected


def test_the_doc_has_examples_with_expected_output() -> None:
    script, expected = _script()
    assert script.count("asyncio.run(") >= 5
    assert len(expected) >= 8


async def test_the_examples_run_and_print_what_they_say(dsn: str) -> None:
    script, expected = await anyio.to_thread.run_sync(_script)
    with anyio.fail_after(120):
        result = await anyio.run_process(
            [sys.executable, "-c", script], env=cli_env(WARDEN_DSN=dsn), check=False
        )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    printed = [
        line
        for line in result.stdout.decode().splitlines()
        if line and not line[0].isdigit()  # structlog lines start with a timestamp
    ]
    assert printed == expected
