"""Routes: ``/api/v1/sessions/{id}/imports`` (upload a transcript, then follow its import)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import structlog
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import (
    HTTP_202_ACCEPTED,
    HTTP_403_FORBIDDEN,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
)
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from wingman.config import Settings
from wingman.db.models import ImportFormat, SessionImport
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import Features
from wingman.domain.catalog.services import config_value
from wingman.domain.chat.controllers import provide_chat
from wingman.domain.chat.services import ChatService
from wingman.domain.imports.jobs import enqueue_import
from wingman.domain.imports.schemas import ImportOut, import_out
from wingman.domain.imports.storage import TooLarge, remove_upload, store_upload
from wingman.queues import Queues
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.errors import Problem

log = structlog.get_logger(__name__)

# Not blank, and no NUL (PostgreSQL text cannot hold one).
Me = Annotated[
    str, QueryParameter(min_length=1, max_length=100, pattern=r"^[^\x00]*[^\x00\s][^\x00]*$")
]


def import_not_found() -> Problem:
    return Problem(404, "import-not-found", "No such import.")


class SessionImportController(Controller):
    path = "/sessions/{session_id:uuid}/imports"
    tags = ("chat",)
    dependencies = {  # noqa: RUF012
        "current_user": Provide(provide_current_user, sync_to_thread=False),
        "chat": Provide(provide_chat, sync_to_thread=False),
    }

    @post(
        "",
        status_code=HTTP_202_ACCEPTED,
        summary="Upload a chat transcript; a job parses it into the session's messages",
        description=(
            "The body is the transcript itself (any content type), `text` (`Name: text` lines)"
            " or `telegram` (Telegram Desktop's JSON export); `me` is the transcript's name for"
            " the caller. Streamed to disk; over `imports.max_bytes` answers 413 `import-too-"
            "large`. Poll the returned import: `done` with its message count, or `failed` with"
            " line-numbered errors and nothing stored. See docs/privacy.md."
        ),
        # Counted while streaming against imports.max_bytes instead (a 413 problem).
        request_max_body_size=None,
        # Problem bodies (server/openapi.py fills in their schema).
        responses={
            HTTP_403_FORBIDDEN: ResponseSpec(None, description="Imports are switched off"),
            HTTP_413_REQUEST_ENTITY_TOO_LARGE: ResponseSpec(
                None, description="Larger than imports.max_bytes"
            ),
        },
    )
    async def upload(
        self,
        *,
        session_id: FromPath[UUID],
        request: Request[AuthUser, object, State],
        settings: NamedDependency[Settings],
        catalog: NamedDependency[CatalogCache],
        queues: NamedDependency[Queues],
        current_user: NamedDependency[AuthUser],
        chat: NamedDependency[ChatService],
        db_session: NamedDependency[AsyncSession],
        kind: Annotated[ImportFormat, QueryParameter(name="format")],
        me: Me,
    ) -> ImportOut:
        features = await config_value(catalog, db_session, "features", Features)
        if not features.transcript_imports:
            raise Problem(403, "feature-disabled", "Transcript imports are switched off.")
        await chat.get_session(session_id)
        # Hand the connection back to the pool while the body streams in (a slow upload must
        # not hold one); the row is written in a transaction of its own afterwards.
        await db_session.commit()
        import_id = uuid7()
        try:
            size = await store_upload(settings, import_id, request.stream(), request.content_length)
        except TooLarge:
            raise Problem(
                413,
                "import-too-large",
                f"The transcript is larger than {settings.imports.max_bytes} bytes.",
            ) from None
        if size == 0:
            remove_upload(settings, import_id)
            raise Problem(422, "import-empty", "The transcript is empty.")
        row = SessionImport(
            id=import_id,
            session_id=session_id,
            user_id=current_user.id,
            format=kind,
            me=me.strip(),
            size_bytes=size,
        )
        try:
            db_session.add(row)
            await db_session.flush()
            out = import_out(row)
            # The job may only look for the row once it is committed.
            await db_session.commit()
        except BaseException:
            remove_upload(settings, import_id)
            raise
        try:
            await enqueue_import(queues["heavy"], settings, import_id)
        except RedisError as exc:
            # The reconcile_imports cron enqueues it once the queue answers again.
            log.warning("import_enqueue_failed", import_id=str(import_id), error=type(exc).__name__)
        return out

    @get("/{import_id:uuid}", summary="An import's status, message count and errors")
    async def get_import(
        self,
        session_id: FromPath[UUID],
        import_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
    ) -> ImportOut:
        row = await db_session.scalar(
            select(SessionImport).where(
                SessionImport.id == import_id,
                SessionImport.session_id == session_id,
                SessionImport.user_id == current_user.id,
            )
        )
        if row is None:
            raise import_not_found()
        return import_out(row)
