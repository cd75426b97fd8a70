"""The ``heavy`` queue's import jobs: ``import_transcript`` and the ``reconcile_imports`` cron.

``import_transcript`` holds the import's row lock for its whole transaction: a second run of the
same import (a retry after a crash, a reconciler's enqueue) waits, then finds it finished and
only removes the file. Parsing and storing happen in that one transaction, so a transcript is
imported entirely or not at all; a failed one records its errors and stores no message.

PostgreSQL is the source of truth for what is owed: the reconciler enqueues a job for every
import still ``queued`` ``imports.stale_after_seconds`` after its upload when SAQ holds no live
job for it (the enqueue after commit failed, the queue was lost), fails imports still queued a
day after upload (every run of theirs failed), and removes upload files that no queued import
owns (an upload whose row never committed, a file left by a crash).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from redis.exceptions import RedisError
from saq import Queue
from saq.job import CronJob
from sqlalchemy import insert, select, update
from uuid_utils.compat import uuid7

from wingman.config import Settings
from wingman.db.models import (
    ChatSession,
    ImportStatus,
    Message,
    MessageSender,
    ProcessingStatus,
    SessionImport,
    utcnow,
)
from wingman.domain.catalog.registry import MessageLimits
from wingman.domain.catalog.services import config_value
from wingman.domain.imports.parsing import TranscriptLine, parse
from wingman.domain.imports.schemas import import_out
from wingman.domain.imports.storage import (
    PARTIAL_SUFFIX,
    UPLOAD_SUFFIX,
    imports_folder,
    remove_upload,
    upload_path,
)
from wingman.domain.realtime.event_frames import ImportFinished
from wingman.job_recovery import RecoveringQueue
from wingman.queues import enqueue
from wingman.server.cache import invalidate_user

if TYPE_CHECKING:
    from wingman.worker import WorkerContext

log = structlog.get_logger(__name__)

# Rows per INSERT statement (all in one transaction).
INSERT_CHUNK = 1000
RECONCILE_BATCH = 100
# An import its jobs could not finish in this long is failed (its upload removed).
GIVE_UP_AFTER = timedelta(hours=24)
GAVE_UP = "the import could not be processed; upload it again"


def import_job_key(import_id: UUID) -> str:
    return f"import:{import_id}"


async def enqueue_import(queue: Queue, settings: Settings, import_id: UUID) -> bool:
    job = await enqueue(
        queue,
        settings,
        "import_transcript",
        key=import_job_key(import_id),
        import_id=str(import_id),
    )
    return job is not None


def _message_chunks(
    row: SessionImport, lines: list[TranscriptLine], start: datetime
) -> Iterator[list[dict[str, Any]]]:
    """The rows to insert, :data:`INSERT_CHUNK` at a time (built per chunk: a large transcript's
    rows never sit in memory all at once). Line ``n`` is created ``start`` + ``n`` microseconds:
    the transcript's order is the (created_at, id) order."""
    for first in range(0, len(lines), INSERT_CHUNK):
        chunk = []
        for position in range(first, min(first + INSERT_CHUNK, len(lines))):
            line, at = lines[position], start + timedelta(microseconds=position)
            chunk.append(
                {
                    "id": uuid7(),
                    "session_id": row.session_id,
                    "sender": MessageSender.USER if line.mine else MessageSender.CONTACT,
                    "content": line.content,
                    "processing_status": ProcessingStatus.DONE,
                    "import_id": row.id,
                    "created_at": at,
                    "updated_at": at,
                    "completed_at": at,
                }
            )
        yield chunk


async def import_transcript(ctx: WorkerContext, *, import_id: str) -> dict[str, Any]:
    """Parse the upload of ``import_id`` and store its messages, all or nothing."""
    settings = ctx["settings"]
    target = UUID(import_id)
    started = time.perf_counter()
    async with ctx["db_sessions"]() as db, db.begin():
        row = await db.scalar(
            select(SessionImport).where(SessionImport.id == target).with_for_update()
        )
        if row is None or row.status is not ImportStatus.QUEUED:
            outcome = "gone" if row is None else "already_" + row.status.value
            remove_upload(settings, target)
            return {"import_id": import_id, "outcome": outcome}
        path = upload_path(settings, target)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        limits = await config_value(ctx["catalog"], db, "limits.message", MessageLimits)
        if data is None:
            errors = [{"line": 0, "message": "the uploaded file is gone; upload it again"}]
            lines: list[TranscriptLine] = []
        else:
            parsed = parse(row.format, data, row.me, limits.max_content_length)
            del data  # the parsed lines are all that is needed from here on
            errors = [error.to_json() for error in parsed.errors]
            lines = parsed.lines
        now = utcnow()
        if errors:
            row.status, row.errors = ImportStatus.FAILED, errors
        else:
            # Ending now, one microsecond apart.
            start = now - timedelta(microseconds=len(lines))
            for chunk in _message_chunks(row, lines, start):
                await db.execute(insert(Message), chunk)
            await db.execute(
                update(ChatSession)
                .where(ChatSession.id == row.session_id)
                .values(
                    message_count=ChatSession.message_count + len(lines),
                    last_message_at=start + timedelta(microseconds=len(lines) - 1),
                    updated_at=now,
                )
            )
            row.status, row.message_count = ImportStatus.DONE, len(lines)
        row.finished_at = now
        user_id, finished = row.user_id, ImportFinished(data=import_out(row))
    remove_upload(settings, target)
    if not errors:
        await _invalidate_reads(ctx, user_id)
    await ctx["events"].publish_event_quietly(user_id, finished)
    log.info(
        "transcript_imported" if not errors else "transcript_refused",
        import_id=import_id,
        messages=len(lines),
        errors=len(errors),
        seconds=round(time.perf_counter() - started, 3),
    )
    return {"import_id": import_id, "outcome": "done" if not errors else "failed"}


async def _invalidate_reads(ctx: WorkerContext, user_id: UUID) -> None:
    """The user's cached session list and details are stale once messages were added."""
    try:
        await invalidate_user(ctx["redis"].queue_mux, user_id)
    except RedisError as exc:
        # Stored; cached reads show the session without them until their TTL.
        log.warning("cache_invalidation_failed", user_id=str(user_id), error=type(exc).__name__)


async def reconcile_imports(ctx: WorkerContext) -> dict[str, int]:
    """Enqueue lost imports again; remove upload files that no queued import owns."""
    settings = ctx["settings"]
    queue = ctx["worker"].queue
    if not isinstance(queue, RecoveringQueue):  # pragma: no cover - create_worker makes one
        raise TypeError("the heavy worker runs on a RecoveringQueue")
    stale = timedelta(seconds=settings.imports.stale_after_seconds)
    given_up = await _give_up_old(ctx)
    async with ctx["db_sessions"]() as db:
        lost = (
            await db.scalars(
                select(SessionImport.id)
                .where(
                    SessionImport.status == ImportStatus.QUEUED,
                    SessionImport.created_at < utcnow() - stale,
                )
                .order_by(SessionImport.created_at)
                .limit(RECONCILE_BATCH)
            )
        ).all()
    counts = {"stale": len(lost), "enqueued": 0, "given_up": given_up, "files_removed": 0}
    for import_id in lost:
        if await queue.is_live(await queue.job(import_job_key(import_id))):
            continue
        if await enqueue_import(queue, settings, import_id):
            counts["enqueued"] += 1
    counts["files_removed"] = await _remove_orphan_files(ctx, stale)
    if counts["enqueued"] or counts["files_removed"] or given_up:
        log.warning("imports_reconciled", **counts)
    return counts


async def _give_up_old(ctx: WorkerContext) -> int:
    """Fail imports still queued :data:`GIVE_UP_AFTER` after upload: every run of theirs failed
    (a bug, a broken file system), so enqueueing them again forever would help nobody."""
    async with ctx["db_sessions"]() as db, db.begin():
        failed = (
            await db.scalars(
                update(SessionImport)
                .where(
                    SessionImport.status == ImportStatus.QUEUED,
                    SessionImport.created_at < utcnow() - GIVE_UP_AFTER,
                )
                .values(
                    status=ImportStatus.FAILED,
                    errors=[{"line": 0, "message": GAVE_UP}],
                    finished_at=utcnow(),
                )
                .returning(SessionImport)
            )
        ).all()
        given_up = [(row.user_id, ImportFinished(data=import_out(row))) for row in failed]
    for user_id, finished in given_up:
        remove_upload(ctx["settings"], finished.data.id)
        await ctx["events"].publish_event_quietly(user_id, finished)
    return len(given_up)


async def _remove_orphan_files(ctx: WorkerContext, older_than: timedelta) -> int:
    folder = imports_folder(ctx["settings"])
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than.total_seconds()
    candidates: dict[UUID, Any] = {}
    for path in folder.iterdir():
        if path.suffix not in (UPLOAD_SUFFIX, PARTIAL_SUFFIX):
            continue
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            candidates[UUID(path.stem)] = path
        except (ValueError, FileNotFoundError):
            continue
    if not candidates:
        return 0
    async with ctx["db_sessions"]() as db:
        owned = set(
            (
                await db.scalars(
                    select(SessionImport.id).where(
                        SessionImport.id.in_(list(candidates)),
                        SessionImport.status == ImportStatus.QUEUED,
                    )
                )
            ).all()
        )
    removed = 0
    for import_id, path in candidates.items():
        # A queued import's finished upload waits for its job; its half-written one never will.
        if import_id in owned and path.suffix == UPLOAD_SUFFIX:
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def reconcile_imports_cron(settings: Settings) -> CronJob[Any]:
    return CronJob(reconcile_imports, cron="* * * * *", timeout=60)
