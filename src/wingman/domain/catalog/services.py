"""Tones and global config: reads (through the per-process cache) and audited admin writes.

Writes never commit: the caller commits, then calls
:func:`wingman.domain.catalog.cache.announce_change` so no process reloads a value before it is
visible in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import structlog
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from wingman.db.models import AuditLogEntry, GlobalConfig, Tone, User, utcnow
from wingman.domain.catalog import registry
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import ConfigValue
from wingman.domain.catalog.schemas import ConfigItemOut, ToneCreate, TonePatch, ToneRecord
from wingman.server.errors import Problem

log = structlog.get_logger(__name__)

V = TypeVar("V", bound=ConfigValue)
TONE_FIELDS = ("slug", "name", "description", "prompt", "is_active", "sort_order")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: a readable name for the audit log, and the user id when there is one."""

    name: str
    user_id: UUID | None = None


async def api_actor(session: AsyncSession, user_id: UUID) -> Actor:
    """The signed-in admin as an actor, named by email or phone (kept if the account goes)."""
    row = (await session.execute(select(User.email, User.phone).where(User.id == user_id))).first()
    name = (row.email or row.phone) if row is not None else None
    return Actor(name=name or f"user:{user_id}", user_id=user_id)


def audit(session: AsyncSession, actor: Actor, action: str, target: str, **details: Any) -> None:
    session.add(
        AuditLogEntry(
            actor=actor.name, actor_id=actor.user_id, action=action, target=target, details=details
        )
    )


# --- Tones ------------------------------------------------------------------------------------


def tone_record(tone: Tone) -> ToneRecord:
    return ToneRecord(
        id=tone.id,
        slug=tone.slug,
        name=tone.name,
        description=tone.description,
        prompt=tone.prompt,
        is_active=tone.is_active,
        sort_order=tone.sort_order,
        updated_at=tone.updated_at,
    )


def _tone_fields(tone: Tone) -> dict[str, Any]:
    return {name: getattr(tone, name) for name in TONE_FIELDS}


class ToneService(SQLAlchemyAsyncRepositoryService[Tone]):
    """Tones through advanced-alchemy's repository; every write is audited."""

    class Repository(SQLAlchemyAsyncRepository[Tone]):
        model_type = Tone

    repository_type = Repository

    async def list_ordered(self, *, active_only: bool) -> list[ToneRecord]:
        query = select(Tone).order_by(Tone.sort_order, Tone.name, Tone.id)
        if active_only:
            query = query.where(Tone.is_active.is_(True))
        rows = await self.repository.session.scalars(query)
        return [tone_record(tone) for tone in rows]

    async def get_tone(self, tone_id: UUID) -> Tone:
        tone = await self.get_one_or_none(Tone.id == tone_id)
        if tone is None:
            raise Problem(404, "tone-not-found", "No such tone.")
        return tone

    async def create_tone(self, data: ToneCreate, actor: Actor) -> Tone:
        tone = Tone(**msgspec.structs.asdict(data))
        await self._flush_unique(tone, data.slug)
        audit(
            self.repository.session,
            actor,
            "tones.create",
            f"tone:{tone.id}",
            new=_tone_fields(tone),
        )
        return tone

    async def patch_tone(self, tone_id: UUID, data: TonePatch, actor: Actor) -> Tone:
        tone = await self.get_tone(tone_id)
        changes = {
            name: value
            for name, value in msgspec.structs.asdict(data).items()
            if value is not msgspec.UNSET and getattr(tone, name) != value
        }
        if not changes:
            return tone
        old = {name: getattr(tone, name) for name in changes}
        for name, value in changes.items():
            setattr(tone, name, value)
        await self._flush_unique(tone, tone.slug)
        audit(
            self.repository.session, actor, "tones.update", f"tone:{tone.id}", old=old, new=changes
        )
        return tone

    async def deactivate_tone(self, tone_id: UUID, actor: Actor) -> bool:
        """Hide the tone from clients; True when it was active. Sessions keep their reference."""
        tone = await self.get_tone(tone_id)
        if not tone.is_active:
            return False
        tone.is_active = False
        await self.repository.session.flush()
        audit(
            self.repository.session,
            actor,
            "tones.deactivate",
            f"tone:{tone.id}",
            old={"is_active": True},
            new={"is_active": False},
        )
        return True

    async def _flush_unique(self, tone: Tone, slug: str) -> None:
        session = self.repository.session
        try:
            async with session.begin_nested():
                session.add(tone)
                await session.flush()
        except IntegrityError:
            raise Problem(
                409,
                "tone-slug-taken",
                f"Another tone already has the slug {slug!r}.",
                extra={"errors": [{"key": "slug", "message": "already taken", "source": "body"}]},
            ) from None
        await session.refresh(tone)


async def active_tones(cache: CatalogCache, session: AsyncSession) -> list[ToneRecord]:
    """Active tones in display order (cached per process)."""

    async def load() -> list[ToneRecord]:
        return await ToneService(session=session).list_ordered(active_only=True)

    tones: list[ToneRecord] = await cache.get("tones", load)
    return tones


# --- Global config ----------------------------------------------------------------------------


def decode_stored(key: str, stored: Any) -> ConfigValue:
    """A stored value as its schema; a row the schema no longer accepts falls back to the
    default (logged) rather than failing every request that reads config."""
    try:
        return registry.validate(key, stored)
    except registry.InvalidConfigValue as exc:
        log.error("config_value_invalid", key=key, error=str(exc))
        return registry.lookup(key).default


async def load_config(session: AsyncSession) -> dict[str, ConfigValue]:
    """Every known key's value in force (stored, or the default)."""
    rows = await session.execute(
        select(GlobalConfig.key, GlobalConfig.value).where(
            GlobalConfig.key.in_(list(registry.REGISTRY))
        )
    )
    stored: dict[str, Any] = dict(rows.all())
    return {
        key: decode_stored(key, stored[key]) if key in stored else spec.default
        for key, spec in registry.REGISTRY.items()
    }


async def current_config(
    cache: CatalogCache, session: AsyncSession | AsyncEngine
) -> dict[str, ConfigValue]:
    """Every known key's value in force (cached per process). Given an engine, a session is
    opened only on a miss (callers outside handlers, on every request)."""

    async def load() -> dict[str, ConfigValue]:
        if isinstance(session, AsyncEngine):
            async with AsyncSession(session) as own:
                return await load_config(own)
        return await load_config(session)

    values: dict[str, ConfigValue] = await cache.get("config", load)
    return values


async def config_value(
    cache: CatalogCache, session: AsyncSession | AsyncEngine, key: str, schema: type[V]
) -> V:
    """One key's value as its schema, e.g. ``config_value(cache, db, "ai", AiConfig)``."""
    value = (await current_config(cache, session))[key]
    if not isinstance(value, schema):
        raise TypeError(f"{key} holds {type(value).__name__}, not {schema.__name__}")
    return value


def _item(key: str, value: ConfigValue, row: GlobalConfig | None) -> ConfigItemOut:
    spec = registry.lookup(key)
    return ConfigItemOut(
        key=key,
        description=spec.description,
        value=registry.to_json(value),
        default=registry.to_json(spec.default),
        public_fields=list(spec.public_fields),
        stored=row is not None,
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
    )


class ConfigService:
    """Admin reads and audited writes of ``global_config`` (never through the cache)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def items(self) -> list[ConfigItemOut]:
        rows = {
            row.key: row
            for row in await self.session.scalars(
                select(GlobalConfig).where(GlobalConfig.key.in_(list(registry.REGISTRY)))
            )
        }
        return [
            _item(
                key,
                decode_stored(key, rows[key].value) if key in rows else spec.default,
                rows.get(key),
            )
            for key, spec in registry.REGISTRY.items()
        ]

    async def item(self, key: str) -> ConfigItemOut:
        spec = registry.lookup(key)
        row = await self.session.get(GlobalConfig, key)
        return _item(key, decode_stored(key, row.value) if row is not None else spec.default, row)

    async def set(self, key: str, raw: Any, actor: Actor) -> tuple[ConfigValue, ConfigValue]:
        """Validate ``raw`` against the key's schema and store it; returns (old, new)."""
        spec = registry.lookup(key)
        new = registry.validate(key, raw)
        # Lock the row (when present) so two concurrent writes audit a true before/after.
        row = await self.session.get(GlobalConfig, key, with_for_update=True)
        old = decode_stored(key, row.value) if row is not None else spec.default
        now = utcnow()
        await self.session.execute(
            insert(GlobalConfig)
            .values(key=key, value=registry.to_json(new), updated_by=actor.user_id, updated_at=now)
            .on_conflict_do_update(
                index_elements=[GlobalConfig.key],
                set_={
                    "value": registry.to_json(new),
                    "updated_by": actor.user_id,
                    "updated_at": func.now(),
                },
            )
        )
        if row is not None:
            await self.session.refresh(row)
        audit(
            self.session,
            actor,
            "config.set",
            f"config:{key}",
            old=registry.to_json(old),
            new=registry.to_json(new),
        )
        return old, new
