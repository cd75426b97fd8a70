"""The per-process user-status cache: hits skip the loader, entries expire, size is bounded."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

from wingman.db.models import UserStatus
from wingman.server.auth import UserStatusCache


class Loader:
    def __init__(self, status: UserStatus | None) -> None:
        self.status = status
        self.calls = 0

    async def __call__(self, user_id: UUID) -> UserStatus | None:
        self.calls += 1
        return self.status


async def test_hits_do_not_reload_until_the_ttl_passes() -> None:
    cache = UserStatusCache(ttl=0.2)
    loader = Loader(UserStatus.ACTIVE)
    user = uuid4()
    assert await cache.is_active(user, loader)
    assert await cache.is_active(user, loader)
    assert loader.calls == 1
    loader.status = UserStatus.DISABLED
    await asyncio.sleep(0.25)  # the TTL passing is what is tested
    assert not await cache.is_active(user, loader)
    assert loader.calls == 2


async def test_unknown_and_deleted_users_are_not_active() -> None:
    cache = UserStatusCache(ttl=10)
    assert not await cache.is_active(uuid4(), Loader(None))
    assert not await cache.is_active(uuid4(), Loader(UserStatus.DELETED))


async def test_size_stays_bounded() -> None:
    cache = UserStatusCache(ttl=60, max_entries=10)
    loader = Loader(UserStatus.ACTIVE)
    for _ in range(25):
        await cache.is_active(uuid4(), loader)
    assert len(cache._entries) <= 10
