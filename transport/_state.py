"""What a gateway application holds, under typed ``web.AppKey`` keys (STYLE §16)."""

from __future__ import annotations

import random

from aiohttp import web

from runtime.config import GatewayConfig
from runtime.node import Node
from transport._keyring import KeyRing
from transport._metrics import GatewayMetrics
from transport._sse import LogReader

__all__ = ["CONFIG", "KEYRING", "METRICS", "NODE", "READER", "RNG"]

NODE = web.AppKey[Node]("node")
"""The node the gateway serves (its store, listener and run API)."""
CONFIG = web.AppKey[GatewayConfig]("gateway_config")
"""The gateway's settings."""
KEYRING = web.AppKey[KeyRing]("keyring")
"""The token keys (set when the application starts: reading a key file is I/O)."""
METRICS = web.AppKey[GatewayMetrics]("metrics")
"""The gateway's Prometheus registry and instruments."""
READER = web.AppKey[LogReader]("log_reader")
"""Reads of the event log shared by the streams of one run."""
RNG = web.AppKey[random.Random]("rng")
"""Jitter of the streams' ``retry:`` (seeded; the seed is logged at start)."""
