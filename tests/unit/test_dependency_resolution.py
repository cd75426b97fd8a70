"""Handler dependencies are resolved in the request's own task, in order, with their cleanups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.di import NamedDependency, Provide
from litestar.testing import create_test_client

from wingman.app import create_app
from wingman.config import Settings
from wingman.server.dependencies import install, resolve_in_sequence


def test_the_app_installs_the_sequential_resolution(settings: Settings) -> None:
    app = create_app(settings)
    assert isinstance(app, Litestar)
    assert KwargsModel.resolve_dependencies is resolve_in_sequence


def test_a_batch_of_dependencies_runs_in_the_handler_s_task_and_cleans_up() -> None:
    install()
    tasks: dict[str, asyncio.Task[object] | None] = {}
    events: list[str] = []

    async def first() -> int:
        tasks["first"] = asyncio.current_task()
        return 1

    async def second() -> AsyncIterator[int]:
        tasks["second"] = asyncio.current_task()
        events.append("second opened")
        yield 2
        events.append("second closed")

    def third(first: NamedDependency[int], second: NamedDependency[int]) -> int:
        return first + second

    @get("/")
    async def handler(
        first: NamedDependency[int], second: NamedDependency[int], third: NamedDependency[int]
    ) -> dict[str, object]:
        tasks["handler"] = asyncio.current_task()
        return {"sum": first + second + third}

    dependencies = {
        "first": Provide(first),
        "second": Provide(second),
        "third": Provide(third, sync_to_thread=False),
    }
    with create_test_client(handler, dependencies=dependencies) as client:
        response = client.get("/")
    assert response.json() == {"sum": 6}
    # The batch (first, second) ran in the request's task: no task per dependency.
    assert tasks["first"] is tasks["second"] is tasks["handler"]
    assert events == ["second opened", "second closed"]


def test_a_dependency_that_raises_reaches_the_handlers_for_its_own_type() -> None:
    """As with the task group (which raised its first exception), not wrapped in a group."""
    install()

    async def fine() -> int:
        return 1

    async def broken() -> int:
        raise ValueError("no")

    @get("/")
    async def handler(fine: NamedDependency[int], broken: NamedDependency[int]) -> int:
        return fine + broken

    def teapot(request: Request[Any, Any, Any], exc: ValueError) -> Response[str]:
        return Response(str(exc), status_code=418)

    with create_test_client(
        handler,
        dependencies={"fine": Provide(fine), "broken": Provide(broken)},
        exception_handlers={ValueError: teapot},
    ) as client:
        response = client.get("/")
    assert (response.status_code, response.text) == (418, "no")
