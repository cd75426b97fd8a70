"""Cluster membership: every web process reports its node in the queue-role Redis.

Several app nodes share one queue-role Redis, so that is where they meet: each web process
writes its node's entry (name, role, address, version, state, time) into one hash every
:data:`HEARTBEAT_SECONDS`, and ``wingmanctl status`` on any node reads the hash. An entry not
refreshed for :data:`MEMBER_DOWN_AFTER_SECONDS` is a node that is down (killed, powered off or
cut off); one not refreshed for :data:`MEMBER_FORGOTTEN_AFTER_SECONDS` is dropped by the next
writer, so a node taken out of the cluster for good disappears from the list a day later.

Every web worker of a node writes the same entry (idempotent), so the entry lives as long as
any of them does. A stopping process marks it ``draining`` while the balancer takes it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wingman import __version__
from wingman.config import NodeRole, Settings

log = structlog.get_logger(__name__)

MEMBERS_KEY = "wingman:cluster:members"
HEARTBEAT_SECONDS = 5.0
MEMBER_DOWN_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
MEMBER_FORGOTTEN_AFTER_SECONDS = 24 * 3600.0

MemberState = Literal["up", "draining"]


class Member(msgspec.Struct, kw_only=True):
    """One node as its web processes last reported it."""

    name: str
    role: NodeRole
    address: str
    version: str
    state: MemberState
    seen_at: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.seen_at)


def node_name(settings: Settings) -> str:
    return settings.node.name or socket.gethostname()


def node_address(settings: Settings) -> str:
    return settings.node.address or f"{settings.server.host}:{settings.server.port}"


def member_of(settings: Settings, state: MemberState, now: float) -> Member:
    return Member(
        name=node_name(settings),
        role=settings.node.role,
        address=node_address(settings),
        version=__version__,
        state=state,
        seen_at=now,
    )


async def report(client: Redis, member: Member) -> None:
    """Write ``member``'s entry and forget the ones silent for a day."""
    await client.hset(MEMBERS_KEY, member.name, msgspec.json.encode(member))
    stale = [
        m.name
        for m in await read_members(client)
        if m.age(member.seen_at) > MEMBER_FORGOTTEN_AFTER_SECONDS
    ]
    if stale:
        await client.hdel(MEMBERS_KEY, *stale)


async def read_members(client: Redis) -> list[Member]:
    """Every known member, by name; an unreadable entry is skipped."""
    members = []
    for raw in (await client.hgetall(MEMBERS_KEY)).values():
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            members.append(msgspec.json.decode(raw, type=Member))
    return sorted(members, key=lambda m: m.name)


@asynccontextmanager
async def membership(client: Redis, settings: Settings, draining: Draining) -> AsyncIterator[None]:
    """Report this node while the process runs (a web process's lifespan)."""

    async def beat() -> None:
        while True:
            state: MemberState = "draining" if draining.active else "up"
            try:
                await report(client, member_of(settings, state, time.time()))
            except RedisError as exc:
                # Redis away: readiness says so; the next beat reports again.
                log.warning("cluster_heartbeat_failed", error=str(exc))
            await asyncio.sleep(HEARTBEAT_SECONDS if not draining.active else 1.0)

    task = asyncio.create_task(beat(), name="cluster-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Draining:
    """Set when this web process was told to stop: /health/ready answers 503 from then on, so a
    load balancer takes the node out while it still serves (``node.drain_seconds``)."""

    def __init__(self) -> None:
        self.since: float | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()
