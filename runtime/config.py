"""The node's configuration, read from ``WARDEN_*`` environment variables.

A node is built from one :class:`NodeConfig`. The data layer's settings are its own
:class:`runtime.store.StoreConfig`, held as ``NodeConfig.store``; both read the same flat
variables (``WARDEN_DSN``, ``WARDEN_LEASE_TTL``, ...), so an operator never needs to know
which part of the node a setting belongs to.

Example::

    WARDEN_DSN=postgresql://warden:secret@db.internal:5432/warden warden migrate

With no ``WARDEN_DSN`` (or an empty one) the node starts an embedded PostgreSQL in
``WARDEN_PG_DATA_DIR``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.store import StoreConfig

__all__ = ["NodeConfig"]


class NodeConfig(BaseSettings):
    """Settings of one node, from ``WARDEN_<FIELD>`` environment variables.

    Attributes:
        store: the data layer's settings (:class:`runtime.store.StoreConfig`), read from
            the same environment.
    """

    model_config = SettingsConfigDict(
        env_prefix="WARDEN_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    store: StoreConfig = Field(default_factory=StoreConfig)
