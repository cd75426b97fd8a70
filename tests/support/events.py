"""What the event bus kept for a user: the frames a client resuming from 0 would be sent."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from wingman.domain.realtime.events import decode_frame, history_key


async def events_of(redis: Redis, user_id: UUID, type_: str) -> list[Any]:
    """The user's kept events of ``type_``, oldest first."""
    frames = [decode_frame(f) for f in await redis.zrange(history_key(user_id), 0, -1)]
    return [frame for frame in frames if frame.type == type_]
