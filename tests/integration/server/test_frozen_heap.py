"""Served processes freeze their start-up heap out of the garbage collector's scans; an app or
worker built for a test does not (the suite builds hundreds and must not keep them)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from litestar.testing import AsyncTestClient

from wingman.app import create_app, serve_app
from wingman.config import Settings
from wingman.worker import WorkerContext, create_worker, serve_worker


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
async def test_a_served_app_freezes_its_heap_once_started(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert gc.get_freeze_count() == 0
    app = serve_app(settings)
    async with AsyncTestClient(app) as client:
        assert gc.get_freeze_count() > 10_000
        # What start-up built is frozen: no generation the collector scans holds the app.
        assert not any(found is app for found in gc.get_objects())
        assert (await client.get("/health/live")).status_code == 200


@pytest.mark.usefixtures("unfrozen")
async def test_a_served_worker_freezes_its_heap_once_started(settings: Settings) -> None:
    for build, frozen in ((create_worker, False), (serve_worker, True)):
        worker = build(settings, "default")
        ctx: WorkerContext = {"worker": worker}
        for hook in worker.startup or ():
            await hook(ctx)
        try:
            assert (gc.get_freeze_count() > 10_000) is frozen
            assert "db_engine" in ctx
        finally:
            # SAQ keeps the shutdown hook as given: one function here.
            assert callable(worker.shutdown)
            await worker.shutdown(ctx)
