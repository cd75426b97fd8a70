"""The per-process user-status cache: hits skip the loader, entries expire (long only while
account changes are heard), a change during a load wins, size is bounded."""

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


async def test_entries_live_long_only_while_changes_are_heard() -> None:
    cache = UserStatusCache(ttl=0.2, heard_ttl=60)
    loader = Loader(UserStatus.ACTIVE)
    user = uuid4()
    await cache.is_active(user, loader)
    cache.hearing(True)
    assert not cache._entries  # a change may have gone unheard before: everything is dropped
    assert await cache.is_active(user, loader)
    loader.status = UserStatus.DISABLED
    await asyncio.sleep(0.25)  # past the short TTL: the heard entry is still good
    assert await cache.is_active(user, loader)
    assert loader.calls == 2
    cache.hearing(False)
    assert not await cache.is_active(user, loader)  # dropped, and read again
    loader.status = UserStatus.ACTIVE
    await asyncio.sleep(0.25)  # unheard entries keep the short TTL
    assert await cache.is_active(user, loader)
    assert loader.calls == 4


async def test_a_change_during_a_load_keeps_its_result_out() -> None:
    cache = UserStatusCache(ttl=60, heard_ttl=600)
    cache.hearing(True)
    user = uuid4()
    release = asyncio.Event()

    async def slow(user_id: UUID) -> UserStatus:
        await release.wait()
        return UserStatus.ACTIVE

    for change in (lambda: cache.forget(user), lambda: cache.hearing(True)):
        load = asyncio.create_task(cache.is_active(user, slow))
        await asyncio.sleep(0)  # the load is under way
        change()
        release.set()
        assert await load  # the caller gets what was read...
        assert user not in cache._entries  # ...but it may predate the change: not kept
        release.clear()


async def test_a_zero_ttl_keeps_nothing_even_when_heard() -> None:
    cache = UserStatusCache(ttl=0, heard_ttl=600)
    cache.hearing(True)
    loader = Loader(UserStatus.ACTIVE)
    user = uuid4()
    await cache.is_active(user, loader)
    await cache.is_active(user, loader)
    assert loader.calls == 2
