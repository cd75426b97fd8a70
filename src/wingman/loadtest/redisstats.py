"""Commands each Redis server ran during a load run, from ``INFO commandstats``."""

from __future__ import annotations

from wingman.config import RedisSettings
from wingman.server.redis import client as redis_client


def redis_servers(settings: RedisSettings) -> dict[str, str]:
    """Component name -> URL of each distinct Redis server (one when both roles share it)."""
    servers = {"redis-queue": settings.queue_url}
    if settings.effective_cache_url != settings.queue_url:
        servers["redis-cache"] = settings.effective_cache_url
    return servers


async def command_calls(url: str) -> dict[str, int]:
    """Calls per command since the server started (``cmdstat_get`` -> ``get``)."""
    client = redis_client(url, timeout=None, name="wingman-bench")
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {
        name.removeprefix("cmdstat_"): int(row["calls"])
        for name, row in stats.items()
        if isinstance(row, dict) and "calls" in row
    }


async def all_calls(servers: dict[str, str]) -> dict[str, dict[str, int]]:
    return {name: await command_calls(url) for name, url in servers.items()}


def calls_between(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Calls per server and command made between two readings (the readings' own ``info`` too)."""
    return {
        server: {
            command: calls - before.get(server, {}).get(command, 0)
            for command, calls in counts.items()
            if calls > before.get(server, {}).get(command, 0)
        }
        for server, counts in after.items()
    }
