"""``wingmanctl config``: read and change the global config (``global_config``).

The same key registry and validation as the admin API: a value the key's schema refuses is a
usage error (exit 64) naming the field. Every change is written to ``audit_log`` with the actor
``cli:<login name>`` and announced on Redis, so running web and worker processes drop their
cached copy within a second.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import click
import msgspec
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.ctl.output import (
    EXIT_DEGRADED,
    EXIT_USAGE,
    emit,
    emit_object,
    json_option,
    progress,
)
from wingman.ctl.session import cli_actor, cli_settings, run_in_transaction
from wingman.domain.catalog import registry

T = TypeVar("T")
LIST_COLUMNS = ["key", "value", "stored", "public_fields", "updated_at"]


def _known(key: str) -> None:
    if key not in registry.REGISTRY:
        click.echo(
            f"error: unknown config key {key!r}; known keys: {', '.join(registry.REGISTRY)}",
            err=True,
        )
        raise SystemExit(EXIT_USAGE)


def _plain(item: Any) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(item)
    return data


def _row(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": item["key"],
        "value": msgspec.json.encode(item["value"]).decode(),
        "stored": item["stored"],
        "public_fields": ", ".join(item["public_fields"]) or "-",
        "updated_at": item["updated_at"],
    }


@click.group()
def config() -> None:
    """Read and change the global config: feature switches, limits, AI and rate limits."""


@config.command("list")
@json_option
def list_keys(as_json: bool) -> None:
    """Every known key with the value in force (the default when none is stored)."""
    from wingman.domain.catalog.services import ConfigService

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [_plain(item) for item in await ConfigService(session).items()]

    items = run_in_transaction(cli_settings(), work)
    if as_json:
        emit(items, [], as_json=True)
    else:
        emit([_row(item) for item in items], LIST_COLUMNS, as_json=False)


@config.command("get")
@click.argument("key")
@json_option
def get_key(key: str, as_json: bool) -> None:
    """Show KEY's value in force, its default and which fields clients can read."""
    from wingman.domain.catalog.services import ConfigService

    _known(key)

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _plain(await ConfigService(session).item(key))

    item = run_in_transaction(cli_settings(), work)
    if as_json:
        emit_object(item, as_json=True)
    else:
        emit_object(
            {**_row(item), "default": msgspec.json.encode(item["default"]).decode()}, as_json=False
        )


@config.command("set")
@click.argument("key")
@click.argument("value")
@json_option
def set_key(key: str, value: str, as_json: bool) -> None:
    """Replace KEY's value with VALUE, a JSON object checked against the key's schema.

    Fields left out take their defaults. Example:
    wingmanctl config set limits.message '{"max_content_length": 2000}'
    """
    from wingman.domain.catalog.cache import announce_change
    from wingman.domain.catalog.services import Actor, ConfigService

    _known(key)
    try:
        raw = msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        click.echo(f"error: VALUE is not valid JSON: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    try:
        registry.validate(key, raw)
    except registry.InvalidConfigValue as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    settings = cli_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        service = ConfigService(session)
        old, new = await service.set(key, raw, Actor(name=cli_actor()))
        return {"key": key, "old": registry.to_json(old), "new": registry.to_json(new)}

    change = run_in_transaction(settings, work)

    async def announce() -> None:
        from wingman.server.redis import RedisClients

        clients = RedisClients.from_settings(settings.redis, process="wingmanctl")
        try:
            await announce_change(clients.queue, f"config:{key}")
        finally:
            await clients.close()

    exit_code = 0
    try:
        asyncio.run(announce())
    except (RedisError, OSError) as exc:
        progress(
            f"saved, but the change could not be announced ({type(exc).__name__}); running"
            " processes see it within 30 seconds"
        )
        exit_code = EXIT_DEGRADED
    if as_json:
        emit_object(change, as_json=True)
    else:
        emit_object(
            {
                "key": key,
                "old": msgspec.json.encode(change["old"]).decode(),
                "new": msgspec.json.encode(change["new"]).decode(),
            },
            as_json=False,
        )
    if exit_code:
        raise SystemExit(exit_code)
