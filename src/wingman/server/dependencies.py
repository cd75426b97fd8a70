"""Handler dependencies resolved one after another instead of in a task group per batch.

Litestar resolves a handler's dependencies in batches (a dependency comes after those it takes),
and a batch of more than one in an anyio task group: a task per dependency. Wingman's providers
are plain functions that return process-wide objects, the request's user or its database
session; none waits on anything that could overlap with another, so the task group buys nothing
and costs: measured in one run of ``scripts/bench_micro.py`` against the same code without this
(``bench/results/2026-12-06-micro-deps-variant.md``), about 74 µs of web CPU per request on
the message page (three dependencies in one batch) and on the message post (six), 7 % and 5 %
of their web CPU. The order within a batch does not matter (its members do not depend on each
other), the batches keep their order, cleanups are registered as before, and a dependency that
raises stops the request with its own exception, as the task group's first exception did.

:func:`install` replaces ``KwargsModel.resolve_dependencies`` for the process, once. The
replacement uses Litestar's own per-dependency step (``resolve_dependency``) and its cleanup
group, so only the scheduling differs; the test checks both that it is installed and that a
request's dependencies run in the request's own task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar._kwargs.dependencies import resolve_dependency
from litestar._kwargs.kwargs_model import KwargsModel

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection


async def resolve_in_sequence(
    self: KwargsModel, connection: ASGIConnection[Any, Any, Any, Any], kwargs: dict[str, Any]
) -> DependencyCleanupGroup:
    """``KwargsModel.resolve_dependencies``, each batch's dependencies awaited in turn."""
    cleanup_group = DependencyCleanupGroup()
    for batch in self.dependency_batches:
        for dependency in batch:
            await resolve_dependency(dependency, connection, kwargs, cleanup_group)
    return cleanup_group


def install() -> None:
    """Resolve every handler's dependencies in sequence from now on (idempotent)."""
    KwargsModel.resolve_dependencies = resolve_in_sequence  # type: ignore[method-assign]
