"""Routes: ``/api/v1/tones``, ``/api/v1/config`` (signed in) and their admin counterparts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog
from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.domain.catalog import registry
from wingman.domain.catalog.cache import CatalogCache, announce_change
from wingman.domain.catalog.schemas import ConfigItemOut, ToneCreate, ToneOut, TonePatch, ToneRecord
from wingman.domain.catalog.services import (
    ConfigService,
    ToneService,
    active_tones,
    api_actor,
    current_config,
    tone_record,
)
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.errors import Problem
from wingman.server.guards import requires_admin

log = structlog.get_logger(__name__)


async def committed_and_announced(
    cache: CatalogCache, redis: Redis, session: AsyncSession, what: str
) -> None:
    """Commit, drop this process's cache at once, and tell every other process to drop theirs."""
    await session.commit()
    cache.drop()
    try:
        await announce_change(redis, what)
    except (RedisError, OSError) as exc:
        # The change is committed; other processes pick it up when their entries expire.
        log.warning("catalog_announce_failed", what=what, error=type(exc).__name__)


def unknown_key(key: str) -> Problem:
    return Problem(
        404,
        "config-key-not-found",
        f"No config key {key!r}; known keys: {', '.join(registry.REGISTRY)}.",
    )


class CatalogController(Controller):
    tags = ("catalog",)
    dependencies = {"current_user": Provide(provide_current_user, sync_to_thread=False)}  # noqa: RUF012

    @get("/tones", summary="Active tones, in display order")
    async def list_tones(
        self,
        current_user: NamedDependency[AuthUser],
        catalog: NamedDependency[CatalogCache],
        db_session: NamedDependency[AsyncSession],
    ) -> list[ToneOut]:
        return [tone.public() for tone in await active_tones(catalog, db_session)]

    @get(
        "/config",
        summary="Client-facing config: feature switches and limits",
        description="Only the public keys, and of each only its public fields.",
    )
    async def public_config(
        self,
        current_user: NamedDependency[AuthUser],
        catalog: NamedDependency[CatalogCache],
        db_session: NamedDependency[AsyncSession],
    ) -> dict[str, dict[str, Any]]:
        return registry.public_view(await current_config(catalog, db_session))


class AdminToneController(Controller):
    path = "/admin/tones"
    tags = ("admin",)
    guards = [requires_admin]  # noqa: RUF012
    dependencies = {"current_user": Provide(provide_current_user, sync_to_thread=False)}  # noqa: RUF012

    @get("", summary="Every tone, inactive ones included, with its prompt fragment")
    async def list_all(self, db_session: NamedDependency[AsyncSession]) -> list[ToneRecord]:
        return await ToneService(session=db_session).list_ordered(active_only=False)

    @get("/{tone_id:uuid}", summary="One tone")
    async def get_one(
        self, tone_id: FromPath[UUID], db_session: NamedDependency[AsyncSession]
    ) -> ToneRecord:
        return tone_record(await ToneService(session=db_session).get_tone(tone_id))

    @post("", status_code=HTTP_201_CREATED, summary="Create a tone (409 when the slug is taken)")
    async def create(
        self,
        data: JSONBody[ToneCreate],
        current_user: NamedDependency[AuthUser],
        catalog: NamedDependency[CatalogCache],
        queue_redis: NamedDependency[Redis],
        db_session: NamedDependency[AsyncSession],
    ) -> ToneRecord:
        actor = await api_actor(db_session, current_user.id)
        tone = await ToneService(session=db_session).create_tone(data, actor)
        record = tone_record(tone)
        await committed_and_announced(catalog, queue_redis, db_session, "tones")
        return record

    @patch("/{tone_id:uuid}", summary="Change a tone's fields (is_active true re-activates it)")
    async def update(
        self,
        *,
        tone_id: FromPath[UUID],
        data: JSONBody[TonePatch],
        current_user: NamedDependency[AuthUser],
        catalog: NamedDependency[CatalogCache],
        queue_redis: NamedDependency[Redis],
        db_session: NamedDependency[AsyncSession],
    ) -> ToneRecord:
        actor = await api_actor(db_session, current_user.id)
        tone = await ToneService(session=db_session).patch_tone(tone_id, data, actor)
        record = tone_record(tone)
        await committed_and_announced(catalog, queue_redis, db_session, "tones")
        return record

    @delete(
        "/{tone_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Deactivate a tone",
        description=(
            "Tones are never deleted: sessions and settings that chose one keep it. A deactivated"
            " tone is no longer listed to clients; PATCH is_active=true brings it back."
        ),
    )
    async def deactivate(
        self,
        tone_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        catalog: NamedDependency[CatalogCache],
        queue_redis: NamedDependency[Redis],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        actor = await api_actor(db_session, current_user.id)
        if await ToneService(session=db_session).deactivate_tone(tone_id, actor):
            await committed_and_announced(catalog, queue_redis, db_session, "tones")


class AdminConfigController(Controller):
    path = "/admin/config"
    tags = ("admin",)
    guards = [requires_admin]  # noqa: RUF012
    dependencies = {"current_user": Provide(provide_current_user, sync_to_thread=False)}  # noqa: RUF012

    @get("", summary="Every known config key with its value in force and its default")
    async def list_all(self, db_session: NamedDependency[AsyncSession]) -> list[ConfigItemOut]:
        return await ConfigService(db_session).items()

    @get("/{key:str}", summary="One config key")
    async def get_one(
        self, key: FromPath[str], db_session: NamedDependency[AsyncSession]
    ) -> ConfigItemOut:
        try:
            return await ConfigService(db_session).item(key)
        except registry.UnknownConfigKey:
            raise unknown_key(key) from None

    @put(
        "/{key:str}",
        summary="Replace a config key's value",
        description=(
            "The body is the whole value, checked against the key's schema: omitted fields take"
            " their defaults, unknown fields and wrong types are refused with 422"
            " `validation-failed` naming the field."
        ),
    )
    async def replace(
        self,
        *,
        key: FromPath[str],
        data: JSONBody[dict[str, Any]],
        current_user: NamedDependency[AuthUser],
        catalog: NamedDependency[CatalogCache],
        queue_redis: NamedDependency[Redis],
        db_session: NamedDependency[AsyncSession],
    ) -> ConfigItemOut:
        service = ConfigService(db_session)
        try:
            registry.lookup(key)
            actor = await api_actor(db_session, current_user.id)
            await service.set(key, data, actor)
        except registry.UnknownConfigKey:
            raise unknown_key(key) from None
        except registry.InvalidConfigValue as exc:
            raise Problem(
                422,
                "validation-failed",
                str(exc),
                extra={
                    "errors": [
                        {"key": exc.error.field, "message": exc.error.message, "source": "body"}
                    ]
                },
            ) from None
        await committed_and_announced(catalog, queue_redis, db_session, f"config:{key}")
        return await service.item(key)
