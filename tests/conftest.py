"""Suite-wide fixtures. Async tests run through anyio's pytest plugin.

The default backend is asyncio, which runtime/ and transport/ need; the kernel's test
folders override ``anyio_backend`` to run every test on asyncio and trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog
from blockbuster import BlockBuster, blockbuster_ctx

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test whose code makes a blocking call inside the event loop
    (as anyio's own suite does)."""
    with blockbuster_ctx() as detector:
        # psycopg loads the server's time zone from the tz database once per connection
        # (then caches it): a library's one-off file read, not ours to move.
        for function in detector.functions.values():
            function.can_block_in("psycopg/_tz.py", "get_tzinfo")
        yield detector


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Leave structlog's global configuration as each test found it."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)
