"""Stopping a running generation within a second, from any web process.

``POST /messages/{id}/cancel`` marks the message ``cancelled`` in PostgreSQL (the truth: a run
that finishes later writes nothing, see ``generation``), then announces the id on one Redis
pub/sub channel (``domain/chat/replies.py``). Every ``ai`` worker process listens there with
one connection and cancels its local task for that message, if it runs one; the announcement
reaches the right process in milliseconds instead of waiting for a poll. A worker that misses
it (disconnected from Redis) only wastes the rest of that generation; nothing it produces is
kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wingman.domain.chat.replies import CANCEL_CHANNEL

log = structlog.get_logger(__name__)

RECONNECT_DELAY = 1.0


class RunningReplies:
    """This process's generations by message id, cancellable by announcement."""

    def __init__(self) -> None:
        self._tasks: dict[UUID, asyncio.Task[object]] = {}
        self._cancelled: set[UUID] = set()

    @contextlib.contextmanager
    def running(self, message_id: UUID, task: asyncio.Task[object]) -> Iterator[None]:
        self._tasks[message_id] = task
        try:
            yield
        finally:
            self._tasks.pop(message_id, None)
            self._cancelled.discard(message_id)

    def cancel(self, message_id: UUID) -> bool:
        task = self._tasks.get(message_id)
        if task is None or task.done():
            return False
        self._cancelled.add(message_id)
        task.cancel()
        return True

    def was_cancelled(self, message_id: UUID) -> bool:
        return message_id in self._cancelled

    async def listen(self, redis: Redis) -> None:
        """Cancel announced generations until cancelled; reconnects after Redis errors."""
        while True:
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CANCEL_CHANNEL)
                    async for message in pubsub.listen():
                        self._on_message(message.get("data"))
            except RedisError as exc:
                log.warning("cancel_listener_reconnecting", error=str(exc))
                await asyncio.sleep(RECONNECT_DELAY)

    def _on_message(self, data: object) -> None:
        try:
            message_id = UUID(data.decode() if isinstance(data, bytes) else str(data))
        except ValueError:
            return
        if self.cancel(message_id):
            log.info("reply_cancelled", message_id=str(message_id))
