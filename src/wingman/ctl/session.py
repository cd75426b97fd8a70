"""What the database-backed `wingmanctl` commands share: settings, one transaction, the actor."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings, SettingsError, load_settings
from wingman.ctl.output import EXIT_DOWN

T = TypeVar("T")


def cli_settings() -> Settings:
    """The settings, or a click error naming the bad key (exit 1) instead of a traceback."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from None


def cli_actor() -> str:
    """How audit_log names a change made from this command line: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def run_in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on a short-lived engine, committing when it returns."""
    from wingman.server.database import create_engine, session_maker

    async def main() -> T:
        engine = create_engine(settings.database, application_name="wingmanctl")
        try:
            async with session_maker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (OSError, OperationalError) as exc:
        # OperationalError: psycopg's refused or dropped connection, as SQLAlchemy wraps it.
        reason = getattr(exc, "orig", None) or exc
        first = str(reason).strip().splitlines()
        click.echo(f"error: cannot reach the database: {first[0] if first else reason}", err=True)
        raise SystemExit(EXIT_DOWN) from None
