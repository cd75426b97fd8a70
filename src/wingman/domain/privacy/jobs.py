"""The ``heavy`` queue's privacy jobs: ``export_account``, ``purge_account`` and the
``privacy_sweep`` cron.

All three are safe to run twice and to be killed at any point (the queue retries a killed
worker's job): the export starts over from an empty partial file and flips its row to
``ready`` once; the purge carries on in batches and records itself once; the sweep only
enqueues keyed jobs (one per export or account at a time) and updates rows by their status.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from saq.job import CronJob
from sqlalchemy import select, update

from wingman.config import Settings
from wingman.db.models import DataExport, DataExportStatus, User, UserStatus, utcnow
from wingman.domain.privacy import exports
from wingman.domain.privacy.archive import ArchiveWriter
from wingman.domain.privacy.deletion import enqueue_purge
from wingman.domain.privacy.export_rows import write_export
from wingman.domain.privacy.purge import purge_account as run_purge
from wingman.domain.privacy.schemas import export_out
from wingman.domain.realtime.event_frames import ExportReady, ExportReadyData

if TYPE_CHECKING:
    from wingman.worker import WorkerContext

log = structlog.get_logger(__name__)

# Accounts whose purge the sweep enqueues per round (the rest wait a minute).
SWEEP_BATCH = 100


def _final_attempt(ctx: WorkerContext) -> bool:
    job = ctx.get("job")
    return job is None or not job.retryable


async def export_account(ctx: WorkerContext, *, export_id: str) -> dict[str, Any]:
    """Write the archive of an export's account, then announce ``export.ready``."""
    settings, wanted = ctx["settings"], UUID(export_id)
    async with ctx["db_sessions"]() as session:
        user_id = await exports.claim(session, wanted)
    if user_id is None:
        return exports.job_result(export_id=wanted, skipped="not owed")
    folder = exports.export_dir(settings)
    partial = exports.partial_path(folder, wanted)
    partial.unlink(missing_ok=True)  # a killed run's leftover: start over
    started = time.perf_counter()
    archive = ArchiveWriter(partial)
    try:
        await write_export(ctx["db_engine"], user_id, archive)
        manifest = archive.close(user_id, utcnow())
    except BaseException:
        archive.abandon()
        if _final_attempt(ctx):
            async with ctx["db_sessions"]() as session:
                await exports.mark_failed(session, wanted)
        raise
    final = folder / exports.final_name(wanted)
    os.replace(partial, final)
    exports.fsync_dir(folder)
    async with ctx["db_sessions"]() as session:
        row = await exports.mark_ready(session, settings, wanted, final.stat().st_size)
    if row is None:
        # The row went meanwhile (the account was purged): its file must not stay behind.
        exports.remove_files(folder, wanted)
        return exports.job_result(export_id=wanted, skipped="export gone")
    out = export_out(row)
    if out.download_url is not None:  # always, for a ready export
        ready = ExportReady(data=ExportReadyData(id=out.id, download_url=out.download_url))
        await ctx["events"].publish_event_quietly(user_id, ready)
    rows = {table.name: table.rows for table in manifest.tables}
    seconds = round(time.perf_counter() - started, 3)
    log.info("export_ready", export_id=export_id, user_id=str(user_id), seconds=seconds)
    return exports.job_result(export_id=wanted, rows=rows, bytes=row.size_bytes, seconds=seconds)


async def purge_account(ctx: WorkerContext, *, user_id: str) -> dict[str, Any]:
    """Purge a deleted account whose grace period is over (nothing otherwise)."""
    result = await run_purge(ctx["db_sessions"], ctx["redis"].queue, ctx["settings"], UUID(user_id))
    return {
        "user_id": user_id,
        "purged": result.purged,
        "rows": result.rows,
        "reason": result.reason,
    }


async def privacy_sweep(ctx: WorkerContext) -> dict[str, Any]:
    """Enqueue due purges, expire old export files, fail exports whose jobs are long gone."""
    settings = ctx["settings"]
    now = utcnow()
    async with ctx["db_sessions"]() as session:
        due = list(
            await session.scalars(
                select(User.id)
                .where(
                    User.purge_after.is_not(None),
                    User.purge_after <= now,
                    User.status == UserStatus.DELETED,
                )
                .order_by(User.purge_after)
                .limit(SWEEP_BATCH)
            )
        )
        expired = list(
            await session.scalars(
                update(DataExport)
                .where(
                    DataExport.status == DataExportStatus.READY,
                    DataExport.expires_at <= now,
                )
                .values(status=DataExportStatus.EXPIRED, updated_at=now)
                .returning(DataExport.id)
            )
        )
        # A job is retried within its timeout and heartbeat; an export still unfinished long
        # after every attempt could have ended lost its job (a flushed queue): say so.
        heavy = settings.worker.queue("heavy")
        abandoned_before = now - timedelta(seconds=2 * heavy.timeout * (heavy.retries + 1))
        abandoned = (
            await session.execute(
                update(DataExport)
                .where(
                    DataExport.status.in_(exports.IN_PROGRESS),
                    DataExport.updated_at < abandoned_before,
                )
                .values(status=DataExportStatus.FAILED, updated_at=now)
            )
        ).rowcount  # type: ignore[attr-defined]
        await session.commit()
    # Not created here: a host that never wrote an export has nothing to delete.
    folder = Path(settings.exports.dir)
    for export_id in expired:
        exports.remove_files(folder, export_id)
    queue = ctx["worker"].queue
    for user_id in due:
        await enqueue_purge(queue, settings, user_id)
    return {"purges": len(due), "expired": len(expired), "abandoned": abandoned}


def privacy_sweep_cron(settings: Settings) -> CronJob[Any]:
    """Every minute: the scan reads a partial index of deleted accounts and the small
    ``data_exports`` table."""
    return CronJob(privacy_sweep, cron="* * * * *", timeout=60)
