"""Deleting an account: locked out at once, restorable until ``purge_after``, then purged.

:func:`mark_deleted` (``DELETE /me``, the admin API, ``wingmanctl users delete``) sets status
``deleted`` with ``deleted_at`` and ``purge_after = now + privacy.deletion_grace_days`` and
revokes every refresh token, in the caller's transaction. After the commit
:func:`after_deletion` tells every web process (open sockets close with 4003, status caches
forget the account) and, with a grace of 0, enqueues the purge at once. Signing in with a
one-time code before ``purge_after`` restores the account (:func:`restore`); after it the
account is refused and the ``privacy_sweep`` cron enqueues ``purge_account`` (``purge``).

Audit entries name the account by id only: they outlive the purge.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from redis.asyncio import Redis
from saq import Queue
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings
from wingman.db.models import RefreshToken, User, UserStatus, utcnow
from wingman.domain.accounts.services import restore_deleted
from wingman.domain.admin.services import (
    active_admin,
    keep_an_active_admin,
    lock_admin_changes,
)
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import PrivacyConfig
from wingman.domain.catalog.services import Actor, audit, config_value
from wingman.domain.realtime.account_changes import announce_account_change
from wingman.queues import enqueue


def account_actor(user_id: UUID) -> Actor:
    """The account acting on itself, named by id (an address would outlive the purge)."""
    return Actor(name=f"user:{user_id}", user_id=user_id)


async def grace_days(session: AsyncSession, catalog: CatalogCache) -> int:
    return (await config_value(catalog, session, "privacy", PrivacyConfig)).deletion_grace_days


class AlreadyPurging(Exception):
    """The grace period is over: the account can no longer be restored."""


async def mark_deleted(session: AsyncSession, user: User, grace: int, actor: Actor) -> bool:
    """Delete ``user`` (locked by the caller with ``FOR UPDATE``); False if it already was.

    Deleting the last active admin is refused (:class:`LastAdminError`), as disabling it is.
    """
    if user.status is UserStatus.DELETED:
        return False
    if active_admin(user.role, user.status):
        await lock_admin_changes(session)
        await keep_an_active_admin(session, user.id, was=True, is_=False)
    now = utcnow()
    user.status = UserStatus.DELETED
    user.deleted_at = now
    user.purge_after = now + timedelta(days=grace)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    audit(
        session,
        actor,
        "users.delete",
        f"user:{user.id}",
        grace_days=grace,
        purge_after=user.purge_after.isoformat(),
    )
    return True


async def restore(session: AsyncSession, user: User, actor: Actor) -> None:
    """Undo :func:`mark_deleted`, or :class:`AlreadyPurging` once the purge is due."""
    if not await restore_deleted(session, user, actor=actor.name, actor_id=actor.user_id):
        raise AlreadyPurging


def purge_job_key(user_id: UUID) -> str:
    """One purge per account at a time: the sweep may ask for it every minute."""
    return f"purge_account:{user_id}"


async def enqueue_purge(queue: Queue, settings: Settings, user_id: UUID) -> None:
    await enqueue(
        queue, settings, "purge_account", key=purge_job_key(user_id), user_id=str(user_id)
    )


async def after_deletion(
    redis: Redis, heavy: Queue, settings: Settings, user: User, *, status: str
) -> None:
    """After the commit of a deletion or a restore: every web process follows the new status;
    a purge already due (grace 0) is enqueued now rather than at the next sweep."""
    await announce_account_change(
        redis, user.id, status=status, tier=str(user.tier), role=str(user.role)
    )
    if status == UserStatus.DELETED.value and user.purge_after and user.purge_after <= utcnow():
        await enqueue_purge(heavy, settings, user.id)
