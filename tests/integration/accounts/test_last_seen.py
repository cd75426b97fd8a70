"""``users.last_seen_at``: noted by requests, written in batches on a real PostgreSQL, kept when
a batch fails, written at shutdown, shown at once to the user themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.accounts import Caller, create_caller
from wingman.app import create_app
from wingman.config import Settings
from wingman.db.models import User
from wingman.devstack.processes import free_port
from wingman.server.app_resources import app_resources
from wingman.server.last_seen import LastSeenTracker


async def row_of(engine: AsyncEngine, user_id: UUID) -> tuple[datetime | None, datetime]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(User.last_seen_at, User.updated_at).where(User.id == user_id)
            )
        ).one()
    return row.last_seen_at, row.updated_at


async def test_notes_are_written_in_one_batch_once_per_interval(
    engine: AsyncEngine, settings: Settings
) -> None:
    tracker = LastSeenTracker()
    callers = [await create_caller(engine, settings) for _ in range(3)]
    _, updated_before = await row_of(engine, callers[0].id)
    for caller in callers:
        tracker.touch(caller.id)
    noted = {caller.id: tracker.noted(caller.id) for caller in callers}
    assert None not in noted.values()
    # Nothing reaches the database until the flush.
    assert (await row_of(engine, callers[0].id))[0] is None

    assert await tracker.flush(engine) == 3
    for caller in callers:
        assert (await row_of(engine, caller.id))[0] == noted[caller.id]
    assert tracker.noted(callers[0].id) is None
    # Being seen is not an edit of the account.
    assert (await row_of(engine, callers[0].id))[1] == updated_before

    # Within the interval a caller is not noted again: nothing to write.
    tracker.touch(callers[0].id)
    assert tracker.noted(callers[0].id) is None
    assert await tracker.flush(engine) == 0


async def test_a_write_only_moves_the_time_forward(engine: AsyncEngine, settings: Settings) -> None:
    caller = await create_caller(engine, settings)
    later = datetime.now(UTC) + timedelta(hours=1)
    async with engine.begin() as connection:
        await connection.execute(
            update(User).where(User.id == caller.id).values(last_seen_at=later)
        )
    tracker = LastSeenTracker()
    tracker.touch(caller.id)
    # Another process saw the user later than this one did: its time stays.
    assert await tracker.flush(engine) == 0
    assert (await row_of(engine, caller.id))[0] == later


async def test_a_failed_batch_is_kept_for_the_next(engine: AsyncEngine, settings: Settings) -> None:
    caller = await create_caller(engine, settings)
    tracker = LastSeenTracker()
    tracker.touch(caller.id)
    noted = tracker.noted(caller.id)
    unreachable = create_async_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 2},
    )
    try:
        try:
            await tracker.flush(unreachable)
        except Exception as exc:  # noqa: BLE001  # whichever error the driver raises
            failed: BaseException | None = exc
        else:
            failed = None
    finally:
        await unreachable.dispose()
    assert failed is not None
    assert tracker.noted(caller.id) == noted
    assert await tracker.flush(engine) == 1
    assert (await row_of(engine, caller.id))[0] == noted


async def test_requests_note_and_shutdown_writes(
    settings: Settings, engine: AsyncEngine, alice: Caller
) -> None:
    app: Litestar = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        me = await client.get("/api/v1/me", headers=alice.headers)
        assert me.status_code == 200
        # The user sees their own activity at once, before any batch is written ...
        shown = datetime.fromisoformat(me.json()["last_seen_at"])
        assert app_resources(app).last_seen.noted(alice.id) == shown
    # ... and the app's shutdown wrote it.
    assert (await row_of(engine, alice.id))[0] == shown
