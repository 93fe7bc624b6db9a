"""Suite-wide fixtures. Async tests run through anyio's pytest plugin.

The default backend is asyncio, which runtime/ and transport/ need; the kernel's test
folders override ``anyio_backend`` to run every test on asyncio and trio.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
