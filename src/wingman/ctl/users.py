"""``wingmanctl users``: create the first admin, list accounts, change tier, disable, enable;
give a one-time sign-in link; export, delete and restore an account (docs/privacy.md).

Every change is written to ``audit_log`` with the actor ``cli:<login name>``, then announced to
the web processes (``domain/realtime/account_changes.py``): a disabled user's requests and open
WebSockets are refused at once (within ``auth.status_cache_seconds`` if Redis is unreachable),
and their refresh tokens are refused at once. Disabling the last active admin is refused
(exit 3), under the same lock as the admin API's changes (domain/admin/services.py), so no
interleaving of the two leaves no admin.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import click
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings
from wingman.ctl.output import (
    EXIT_DOWN,
    EXIT_REFUSED,
    EXIT_USAGE,
    emit,
    emit_object,
    json_option,
    progress,
)
from wingman.ctl.session import cli_actor, cli_settings, run_in_transaction

T = TypeVar("T")
USER_COLUMNS = ["id", "email", "phone", "tier", "role", "status", "created_at", "last_seen_at"]


def _row(user: Any) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "phone": user.phone,
        "tier": str(user.tier),
        "role": str(user.role),
        "status": str(user.status),
        "created_at": user.created_at.isoformat(),
        "last_seen_at": user.last_seen_at.isoformat() if user.last_seen_at else None,
    }


async def _audit(session: AsyncSession, action: str, target: str, **details: Any) -> None:
    from wingman.db.models import AuditLogEntry

    session.add(AuditLogEntry(actor=cli_actor(), action=action, target=target, details=details))


async def _find(session: AsyncSession, who: str, *, for_update: bool = False) -> Any:
    """A user by id, email (any case) or E.164 phone; exit with a usage error if none."""
    from wingman.db.models import User

    condition = or_(func.lower(User.email) == who.lower(), User.phone == who)
    try:
        from uuid import UUID

        condition = or_(condition, User.id == UUID(who))
    except ValueError:
        pass
    query = select(User).where(condition)
    if for_update:
        query = query.with_for_update()
    user = await session.scalar(query)
    if user is None:
        click.echo(f"error: no user matches {who!r}", err=True)
        raise SystemExit(EXIT_USAGE)
    return user


@click.group()
def users() -> None:
    """Manage user accounts (every change is audited)."""


@users.command("create-admin")
@click.option("--email", help="Email address of the admin.")
@click.option("--phone", help="Phone number in international form (+...).")
@json_option
def create_admin(email: str | None, phone: str | None, as_json: bool) -> None:
    """Create an admin who signs in with a code sent to this address (or promote the account)."""
    from wingman.db.models import OtpChannel, UserRole, UserStatus
    from wingman.domain.accounts.destinations import InvalidDestination, normalise
    from wingman.domain.accounts.services import UserService

    if (email is None) == (phone is None):
        click.echo("error: give exactly one of --email or --phone", err=True)
        raise SystemExit(EXIT_USAGE)
    channel = OtpChannel.EMAIL if email is not None else OtpChannel.SMS
    try:
        destination = normalise(channel, email or phone or "")
    except InvalidDestination as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None

    async def work(session: AsyncSession) -> tuple[dict[str, Any], bool]:
        service = UserService(session=session)
        user, created = await service.find_or_create(channel, destination, role=UserRole.ADMIN)
        if not created:
            user.role = UserRole.ADMIN
            user.status = UserStatus.ACTIVE
        await session.flush()
        await _audit(
            session, "users.create_admin", str(user.id), created=created, channel=channel.value
        )
        return _row(user), created

    settings = cli_settings()
    row, created = run_in_transaction(settings, work)
    _announce(settings, row)
    progress("created a new admin account" if created else "promoted the existing account to admin")
    emit_object(row, as_json=as_json)


@users.command("list")
@click.option("--search", help="Part of an email or phone number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--after", help="Show users after this id (the last id of the previous page).")
@json_option
def list_users(search: str | None, limit: int, after: str | None, as_json: bool) -> None:
    """List accounts, oldest first, a page at a time (keyset pagination by id)."""
    from uuid import UUID

    from wingman.db.models import User

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        query = select(User).order_by(User.id).limit(limit)
        if search:
            pattern = f"%{search.lower()}%"
            query = query.where(or_(func.lower(User.email).like(pattern), User.phone.like(pattern)))
        if after:
            query = query.where(User.id > UUID(after))
        return [_row(user) for user in await session.scalars(query)]

    emit(run_in_transaction(cli_settings(), work), USER_COLUMNS, as_json=as_json)


def _announce(settings: Settings, row: dict[str, Any]) -> None:
    """After the commit: tell the web processes (open sockets, status caches) about the change."""
    from uuid import UUID

    from wingman.domain.realtime.account_changes import announce_account_change
    from wingman.server.redis import connect

    async def main() -> None:
        redis = connect(settings.redis.queue_url, settings.redis, "wingmanctl")
        try:
            await announce_account_change(
                redis, UUID(row["id"]), status=row["status"], tier=row["tier"], role=row["role"]
            )
        finally:
            await redis.aclose()

    asyncio.run(main())


def _change(
    who: str,
    action: str,
    apply: Callable[[Any], dict[str, Any]],
    as_json: bool,
    *,
    standing: bool = False,
) -> None:
    """Apply ``apply`` to WHO in one audited transaction. ``standing``: the change may take away
    an admin role or an active status, so it runs under the admin-changes lock and is refused if
    it would leave no active admin."""
    from wingman.domain.admin.services import (
        LastAdminError,
        active_admin,
        keep_an_active_admin,
        lock_admin_changes,
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        if standing:
            await lock_admin_changes(session)
        user = await _find(session, who, for_update=standing)
        was = active_admin(user.role, user.status)
        details = apply(user)
        if standing:
            is_ = active_admin(user.role, user.status)
            try:
                await keep_an_active_admin(session, user.id, was=was, is_=is_)
            except LastAdminError:
                click.echo(
                    f"error: {who} is the last active admin; make another account admin first"
                    " (wingmanctl users create-admin)",
                    err=True,
                )
                raise SystemExit(EXIT_REFUSED) from None
        await session.flush()
        await _audit(session, action, str(user.id), **details)
        return _row(user)

    settings = cli_settings()
    row = run_in_transaction(settings, work)
    _announce(settings, row)
    emit_object(row, as_json=as_json)


@users.command("set-tier")
@click.argument("who")
@click.argument("tier", type=click.Choice(["free", "premium"]))
@json_option
def set_tier(who: str, tier: str, as_json: bool) -> None:
    """Set WHO's tier (WHO is an id, email or phone). Requests see it at once; the token's claim
    changes at its next refresh (open WebSockets are told to refresh)."""
    from wingman.db.models import UserTier

    def apply(user: Any) -> dict[str, Any]:
        before = str(user.tier)
        user.tier = UserTier(tier)
        return {"from": before, "to": tier}

    _change(who, "users.set_tier", apply, as_json)


@users.command()
@click.argument("who")
@json_option
def disable(who: str, as_json: bool) -> None:
    """Lock WHO out: no sign-in, no refresh; live tokens and WebSockets stop at once."""
    from wingman.db.models import UserStatus

    def apply(user: Any) -> dict[str, Any]:
        before = str(user.status)
        user.status = UserStatus.DISABLED
        return {"from": before}

    _change(who, "users.disable", apply, as_json, standing=True)


@users.command()
@click.argument("who")
@json_option
def enable(who: str, as_json: bool) -> None:
    """Let a disabled WHO sign in again."""
    from wingman.db.models import UserStatus

    def apply(user: Any) -> dict[str, Any]:
        if user.status is UserStatus.DELETED:
            click.echo("error: a deleted account cannot be enabled", err=True)
            raise SystemExit(EXIT_USAGE)
        before = str(user.status)
        user.status = UserStatus.ACTIVE
        return {"from": before}

    _change(who, "users.enable", apply, as_json)


def _host_address() -> str:
    """This host's address towards the outside (no packet is sent), for a link without a domain."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decides, nothing is sent
            return str(probe.getsockname()[0])
        except OSError:
            return socket.getfqdn()


@users.command("login-link")
@click.argument("who")
@click.option(
    "--minutes",
    type=click.IntRange(1, 60),
    default=15,
    show_default=True,
    help="How long the link stays valid.",
)
@click.option(
    "--base-url",
    help="Where users reach this server (default: https://<public.domain>, else this host's "
    "address in production, the web server's address in development).",
)
@json_option
def login_link(who: str, minutes: int, base_url: str | None, as_json: bool) -> None:
    """Print a one-time sign-in link for WHO (an id, email or phone), audited.

    For the first admin's sign-in before code delivery works, or a user whose codes do not
    arrive. The link signs in once, within --minutes, and never again; opening it only shows a
    page (link previews do not spend it), and pressing Sign in there does. A newer link does not
    cancel an older one: each expires on its own.

    \b
    Exit status: 0 printed, 64 no such user, 3 the account is disabled or deleted.
    """
    from wingman.db.models import OtpChannel, UserStatus
    from wingman.domain.accounts import login_links
    from wingman.domain.accounts.services import OtpService

    settings = cli_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        user = await _find(session, who)
        if user.status is not UserStatus.ACTIVE:
            click.echo(
                f"error: {who} is {user.status}; `wingmanctl users enable` (or `restore`) first",
                err=True,
            )
            raise SystemExit(EXIT_REFUSED)
        channel = OtpChannel.EMAIL if user.email else OtpChannel.SMS
        destination = user.email or user.phone
        # The link and its audit entry commit together, or neither does.
        issued = await OtpService(session, settings).issue_link(channel, destination, minutes * 60)
        await _audit(
            session,
            "users.login_link",
            str(user.id),
            request_id=str(issued.request_id),
            minutes=minutes,
        )
        token = login_links.link_token(issued.request_id, issued.code)
        base = base_url or login_links.default_base_url(settings, _host_address())
        return {
            "user_id": str(user.id),
            "email": user.email,
            "phone": user.phone,
            "link": login_links.login_link(base, token),
            "token": token,
            "expires_at": issued.expires_at.isoformat(timespec="seconds"),
        }

    row = run_in_transaction(settings, work)
    if as_json:
        emit_object(row, as_json=True)
        return
    progress(
        f"single use, valid until {row['expires_at']}: open it in a browser and press Sign in "
        f'(or POST {{"token": ...}} to {login_links.PATH})'
    )
    click.echo(row["link"])


# --- Privacy: export, delete, restore (domain/privacy) -----------------------------------------


def _heavy(settings: Settings, work: Callable[[Any], Any]) -> None:
    """Run ``work(queue)`` against the ``heavy`` queue (after the caller's commit)."""
    from wingman.queues import create_queue

    async def main() -> None:
        queue = create_queue(settings, "heavy")
        try:
            await work(queue)
        finally:
            await queue.disconnect()

    asyncio.run(main())


@users.command("export")
@click.argument("who")
@click.option("--wait", is_flag=True, help="Wait until the archive is written; print its path.")
@click.option("--timeout", type=click.IntRange(1), default=3600, show_default=True)
@json_option
def export(who: str, wait: bool, timeout: int, as_json: bool) -> None:
    """Export everything WHO's account holds into an archive under exports.dir (audited).

    Exit 3 when an export of the account is already queued or running, 2 when it failed or
    --wait ran out."""
    from wingman.domain.privacy import exports

    async def work(session: AsyncSession) -> dict[str, Any]:
        user = await _find(session, who, for_update=True)
        try:
            row = await exports.start_export(session, user.id)
        except exports.ExportInProgress as exc:
            click.echo(f"error: export {exc.export_id} of {who} is already in progress", err=True)
            raise SystemExit(EXIT_REFUSED) from None
        await _audit(session, "users.export", f"user:{user.id}", export_id=str(row.id))
        return {"id": str(row.id), "user_id": str(user.id), "status": str(row.status)}

    settings = cli_settings()
    row = run_in_transaction(settings, work)
    export_id = UUID(row["id"])
    _heavy(settings, lambda queue: exports.enqueue_export(queue, settings, export_id))
    if wait:
        row = _wait_for_export(settings, export_id, timeout)
    emit_object(row, as_json=as_json)
    if wait and row["status"] != "ready":
        raise SystemExit(EXIT_DOWN)


def _wait_for_export(settings: Settings, export_id: UUID, timeout: int) -> dict[str, Any]:
    from wingman.db.models import DataExport, DataExportStatus

    deadline = time.monotonic() + timeout
    progress(f"waiting for export {export_id} (the heavy worker writes it)")
    while True:

        async def read(session: AsyncSession) -> Any:
            return await session.get(DataExport, export_id)

        found = run_in_transaction(settings, read)
        done = found.status not in (DataExportStatus.PENDING, DataExportStatus.RUNNING)
        if done or time.monotonic() > deadline:
            path = Path(settings.exports.dir) / found.file_path if found.file_path else None
            return {
                "id": str(found.id),
                "user_id": str(found.user_id),
                "status": str(found.status),
                "path": str(path) if path else None,
                "size_bytes": found.size_bytes,
                "expires_at": found.expires_at.isoformat() if found.expires_at else None,
            }
        time.sleep(1)


@users.command("delete")
@click.argument("who")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def delete(who: str, yes: bool, as_json: bool) -> None:
    """Delete WHO: locked out at once, purged after privacy.deletion_grace_days (audited).

    Until the purge, signing in or `users restore` brings the account back. Exit 3 for the
    last active admin."""
    from wingman.db.models import UserStatus
    from wingman.domain.admin.services import LastAdminError
    from wingman.domain.catalog.cache import CatalogCache
    from wingman.domain.catalog.services import Actor
    from wingman.domain.privacy.deletion import grace_days, mark_deleted

    if not yes:
        if not sys.stdin.isatty():
            click.echo("error: add --yes to delete without a prompt", err=True)
            raise SystemExit(EXIT_USAGE)
        click.confirm(f"Delete the account {who}?", abort=True)

    async def work(session: AsyncSession) -> tuple[dict[str, Any], Any]:
        user = await _find(session, who, for_update=True)
        grace = await grace_days(session, CatalogCache())
        try:
            await mark_deleted(session, user, grace, Actor(name=cli_actor(), user_id=None))
        except LastAdminError:
            click.echo(f"error: {who} is the last active admin", err=True)
            raise SystemExit(EXIT_REFUSED) from None
        return _row(user), user

    settings = cli_settings()
    row, user = run_in_transaction(settings, work)
    _after_privacy_change(settings, user, UserStatus.DELETED)
    emit_object(row, as_json=as_json)


@users.command("restore")
@click.argument("who")
@json_option
def restore(who: str, as_json: bool) -> None:
    """Bring back a deleted WHO before its purge (audited). Exit 3 once the purge is due."""
    from wingman.db.models import UserStatus
    from wingman.domain.catalog.services import Actor
    from wingman.domain.privacy.deletion import AlreadyPurging
    from wingman.domain.privacy.deletion import restore as restore_account

    async def work(session: AsyncSession) -> tuple[dict[str, Any], Any]:
        user = await _find(session, who, for_update=True)
        if user.status is not UserStatus.DELETED:
            click.echo(f"error: {who} is not deleted", err=True)
            raise SystemExit(EXIT_USAGE)
        try:
            await restore_account(session, user, Actor(name=cli_actor(), user_id=None))
        except AlreadyPurging:
            click.echo(f"error: the grace period of {who} is over; it is being purged", err=True)
            raise SystemExit(EXIT_REFUSED) from None
        return _row(user), user

    settings = cli_settings()
    row, user = run_in_transaction(settings, work)
    _after_privacy_change(settings, user, UserStatus.ACTIVE)
    emit_object(row, as_json=as_json)


def _after_privacy_change(settings: Settings, user: Any, status: str) -> None:
    from wingman.domain.privacy.deletion import after_deletion
    from wingman.server.redis import connect

    async def work(queue: Any) -> None:
        redis = connect(settings.redis.queue_url, settings.redis, "wingmanctl")
        try:
            await after_deletion(redis, queue, settings, user, status=status)
        finally:
            await redis.aclose()

    _heavy(settings, work)
