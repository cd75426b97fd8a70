"""``wingmanctl status`` rows for the members of a cluster (``node.role`` app or data).

Members are the nodes whose web processes report themselves in the queue-role Redis
(:mod:`wingman.server.cluster`); a data node runs no web process and is judged by its
PostgreSQL and Redis rows instead.
"""

from __future__ import annotations

import time

import msgspec

from wingman.config import NodeRole, Settings
from wingman.ops.health import RowState, StatusRow, human_duration
from wingman.server.cluster import MEMBER_DOWN_AFTER_SECONDS, read_members
from wingman.server.redis import client as redis_client

# Status's unit names (wingman.ops.units) a node of each role does not run.
UNITS_NOT_HERE: dict[NodeRole, tuple[str, ...]] = {
    "all-in-one": (),
    "app": ("postgres", "redis-queue", "redis-cache"),
    "data": ("web", "worker-ai", "worker-default", "worker-heavy", "proxy"),
}


async def cluster_rows(settings: Settings) -> list[StatusRow]:
    """One row per known member: up (seen lately), draining, or down (silent)."""
    # Through the shared factory: a ``redis+sentinel://`` URL asks the Sentinels for the master.
    client = redis_client(settings.redis.queue_url, timeout=3)
    try:
        members = await read_members(client)
    except Exception as exc:  # noqa: BLE001 - the Redis row says why; here: no member list
        return [StatusRow(group="cluster", name="members", state="fail", value=f"unknown: {exc}")]
    finally:
        await client.aclose()
    if not members:
        return [
            StatusRow(group="cluster", name="members", state="warn", value="no app node reports in")
        ]
    now = time.time()
    rows = []
    for member in members:
        age = member.age(now)
        state: RowState
        if age > MEMBER_DOWN_AFTER_SECONDS:
            state, word = "fail", "down"
        elif member.state == "draining":
            state, word = "warn", "draining"
        else:
            state, word = "ok", "up"
        rows.append(
            StatusRow(
                group="cluster",
                name=member.name,
                state=state,
                value=f"{word}, {member.role} at {member.address}, version {member.version}, "
                f"seen {human_duration(age)} ago",
                figures={**msgspec.to_builtins(member), "age_s": round(age, 1)},
            )
        )
    return rows
