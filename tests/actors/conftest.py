"""Kernel tests run on asyncio and trio, both on virtual time that autojumps."""

from __future__ import annotations

from typing import Any

import pytest

from actors.testing import virtual_time_backend


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return virtual_time_backend(request.param)
