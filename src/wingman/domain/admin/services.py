"""Admin reads and audited writes on user accounts.

Writes never commit: the controller commits, then drops its own process's status-cache entry so
a disabled account is refused on its very next request to this process, and announces the
change, which the other processes follow at once (within ``auth.status_cache_seconds`` when they
cannot hear it).

**There is always an active admin.** Two admins demoting or disabling each other at the same
moment would each see the other still active and both commit. So every change of a role or a
status (here and in ``wingmanctl users``) first takes one transaction-level advisory lock,
:func:`lock_admin_changes`, and only then reads the account and the other active admins: such
changes run one at a time, each reading what the previous one committed, and the one that would
remove the last active admin is refused (409 ``last-admin``). The lock is held until commit or
rollback; admin changes are rare, so nothing else waits on it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.db.models import User, UserRole, UserStatus
from wingman.domain.admin.schemas import AdminUserPatch
from wingman.domain.catalog.services import Actor, audit
from wingman.server.errors import Problem
from wingman.server.keyset import newest_first

USERS_CURSOR = "admin-users"
LIKE_ESCAPE = "\\"
# The advisory lock that serialises role and status changes (any constant unique in this
# database; these are the bytes of "wingADMN").
ADMIN_CHANGES_LOCK = 0x77696E6741444D4E


def like_prefix(text: str) -> str:
    """A ``LIKE`` pattern matching strings that start with ``text`` literally."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return escaped + "%"


def user_not_found() -> Problem:
    return Problem(404, "user-not-found", "No such user.")


class LastAdminError(Exception):
    """The change would leave no active admin."""


async def lock_admin_changes(session: AsyncSession) -> None:
    """Wait for any other role or status change to commit or roll back, and keep others waiting
    until this transaction ends. Take it before reading the accounts the change depends on."""
    await session.execute(select(func.pg_advisory_xact_lock(ADMIN_CHANGES_LOCK)))


def active_admin(role: UserRole, status: UserStatus) -> bool:
    return role is UserRole.ADMIN and status is UserStatus.ACTIVE


async def keep_an_active_admin(
    session: AsyncSession, user_id: UUID, *, was: bool, is_: bool
) -> None:
    """Raise :class:`LastAdminError` if ``user_id`` ``was`` an active admin, ``is_`` not one after
    the change, and no other account is. Call it after :func:`lock_admin_changes`, in the same
    transaction."""
    if not was or is_:
        return
    another = await session.scalar(
        select(
            exists().where(
                User.role == UserRole.ADMIN,
                User.status == UserStatus.ACTIVE,
                User.id != user_id,
            )
        )
    )
    if not another:
        raise LastAdminError


def last_admin() -> Problem:
    return Problem(
        409,
        "last-admin",
        "This is the last active admin: promote another account to admin first.",
    )


class AdminUserService:
    """User accounts as an admin sees them; every change is written to ``audit_log``."""

    def __init__(self, session: AsyncSession, cursor_key: bytes) -> None:
        self.session = session
        self.cursor_key = cursor_key

    async def search(
        self, query: str | None, cursor: str | None, limit: int
    ) -> tuple[list[User], str | None]:
        """One page of accounts, newest first by (created_at desc, id), optionally those whose
        email (any case) or phone starts with ``query``."""
        if query and "\x00" in query:
            # PostgreSQL text cannot hold NUL, so no stored email or phone can match.
            return [], None
        statement = select(User)
        if query:
            pattern = like_prefix(query.lower())
            # lower(email) matches the uq_users_email_lower index; phone has its unique index.
            statement = statement.where(
                or_(
                    func.lower(User.email).like(pattern, escape=LIKE_ESCAPE),
                    User.phone.like(like_prefix(query), escape=LIKE_ESCAPE),
                )
            )
        return await newest_first(
            self.session,
            statement,
            User.created_at,
            User.id,
            key=self.cursor_key,
            kind=USERS_CURSOR,
            cursor=cursor,
            limit=limit,
        )

    async def get_user(self, user_id: UUID) -> User:
        user = await self.session.get(User, user_id)
        if user is None:
            raise user_not_found()
        return user

    async def patch_user(self, user_id: UUID, data: AdminUserPatch, actor: Actor) -> User:
        """Apply the changed fields and audit them as ``users.update`` with old and new values.

        An admin cannot demote or disable their own account (another admin can do it for them),
        and no change may leave no active admin (see the module docstring).
        """
        if data.role is not msgspec.UNSET or data.status is not msgspec.UNSET:
            await lock_admin_changes(self.session)
        user = await self.session.get(User, user_id, with_for_update=True, populate_existing=True)
        if user is None:
            raise user_not_found()
        wanted: dict[str, Any] = {
            name: value
            for name, value in msgspec.structs.asdict(data).items()
            if value is not msgspec.UNSET
        }
        if "status" in wanted:
            wanted["status"] = UserStatus(wanted["status"])
        changes = {name: value for name, value in wanted.items() if getattr(user, name) != value}
        if not changes:
            return user
        if user.id == actor.user_id and (
            changes.get("role", UserRole.ADMIN) is not UserRole.ADMIN
            or changes.get("status", UserStatus.ACTIVE) is not UserStatus.ACTIVE
        ):
            raise Problem(
                409,
                "cannot-demote-self",
                "Admins cannot remove their own admin role or disable their own account;"
                " ask another admin.",
            )
        if user.status is UserStatus.DELETED and "status" in changes:
            raise Problem(409, "user-deleted", "A deleted account cannot be enabled or disabled.")
        try:
            await keep_an_active_admin(
                self.session,
                user.id,
                was=active_admin(user.role, user.status),
                is_=active_admin(
                    changes.get("role", user.role), changes.get("status", user.status)
                ),
            )
        except LastAdminError:
            raise last_admin() from None
        old = {name: str(getattr(user, name)) for name in changes}
        for name, value in changes.items():
            setattr(user, name, value)
        await self.session.flush()
        audit(
            self.session,
            actor,
            "users.update",
            f"user:{user.id}",
            old=old,
            new={name: str(value) for name, value in changes.items()},
        )
        return user
