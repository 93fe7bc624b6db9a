"""The Warden node: store, leases, run and session actors, CLI (asyncio)."""

__all__: list[str] = []
