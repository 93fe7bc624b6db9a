"""The aiohttp gateway: HTTP API, SSE streams, auth and the client (asyncio)."""

__all__: list[str] = []
