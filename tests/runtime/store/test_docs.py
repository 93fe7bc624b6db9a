"""Every example in ``docs/store.md`` runs, as written, against a fresh database.

Each ```python block is run on its own, as the body of an async function, with ``dsn``
bound to a fresh, migrated database (migrating it again, as the quick start does, is a
no-op) and ``data_dir`` to a fresh directory. The examples
assert what they claim, so a changed behaviour fails here before it misleads a reader.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[3] / "docs" / "store.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.M | re.S)


def test_the_user_guide_has_examples() -> None:
    assert len(BLOCKS) >= 8


def _compile(block: str) -> Callable[..., Awaitable[Any]]:
    source = "async def example(dsn, data_dir):\n" + textwrap.indent(block, "    ")
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    example: Callable[..., Awaitable[Any]] = namespace["example"]
    return example


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example-{i + 1}" for i in range(len(BLOCKS))])
async def test_an_example_of_the_user_guide_runs(block: str, dsn: str, private_dir: Path) -> None:
    await _compile(block)(dsn, private_dir)
