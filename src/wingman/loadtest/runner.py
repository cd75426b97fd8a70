"""One load run against a running development stack: ramp up, hold, measure, check, report.

The generator is this process (an asyncio driver: one socket and one task per simulated user,
which holds thousands of WebSockets in a few tens of MB; a thread- or greenlet-per-user tool
spends a core on the generator alone at this scale). It reads the stack's settings to reach the
database afterwards and checks every reply it asked for: a reply is *lost* when its AI message is
not ``done`` when the run has drained, *duplicated* when two AI messages answer one post or the
socket delivered ``message.completed`` twice for one message.

All simulated users come from one address, which the per-IP allowances (``anon``, ``otp``) exist
to stop; the run widens those two in global config for its duration (an audited change, put back
afterwards) and leaves every per-user allowance as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import func, select

from wingman.config import Settings, load_settings
from wingman.db.models import Message, MessageSender, ProcessingStatus
from wingman.devstack.stack import DevStack
from wingman.domain.catalog.cache import announce_change
from wingman.domain.catalog.services import Actor, ConfigService
from wingman.loadtest.codes import LogCodes
from wingman.loadtest.processes import ProcessSampler
from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import REST_KINDS, Shared, SimUser
from wingman.server.database import create_engine, session_maker
from wingman.server.redis import RedisClients

# Per-IP allowances for the run: every simulated user shares the generator's address.
WIDE_PER_IP = {"limit": 1_000_000, "period": "hour"}
DRAIN_SECONDS = 60.0


@dataclass(frozen=True)
class Budget:
    rest_p95_ms: float = 100.0
    rest_p99_ms: float = 250.0
    max_errors: int = 0


@dataclass(frozen=True)
class LoadPlan:
    users: int
    duration: float
    data_dir: Path
    ramp: float = 30.0
    cycle_seconds: float = 60.0
    name: str = "load"
    budget: Budget = Budget()


def stack_settings(data_dir: Path) -> tuple[Settings, DevStack]:
    stack = DevStack(data_dir)
    if stack.load_state() is None:
        raise RuntimeError(f"{data_dir}: no development stack here (start one with `make run`)")
    return load_settings({**os.environ, "WINGMAN_CONFIG": str(stack.settings_file)}), stack


async def _current_config(settings: Settings, key: str) -> dict[str, Any]:
    engine = create_engine(settings.database, application_name="wingman-bench")
    try:
        async with session_maker(engine)() as session:
            item = await ConfigService(session).item(key)
    finally:
        await engine.dispose()
    return dict(item.value)


async def _set_config(settings: Settings, key: str, value: dict[str, Any]) -> None:
    """Set ``key`` (audited, announced to every process)."""
    engine = create_engine(settings.database, application_name="wingman-bench")
    try:
        async with session_maker(engine)() as session, session.begin():
            await ConfigService(session).set(key, value, Actor(name="bench:load"))
    finally:
        await engine.dispose()
    clients = RedisClients.from_settings(settings.redis, process="bench")
    try:
        await announce_change(clients.queue, f"config:{key}")
    finally:
        await clients.close()


async def _check_replies(settings: Settings, ai_ids: list[str]) -> dict[str, int]:
    engine = create_engine(settings.database, application_name="wingman-bench")
    ids = [UUID(i) for i in ai_ids]
    try:
        async with engine.connect() as connection:
            done = (
                await connection.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.id.in_(ids), Message.processing_status == ProcessingStatus.DONE)
                )
                if ids
                else 0
            )
            reply_to = select(Message.reply_to_id).where(Message.id.in_(ids)).scalar_subquery()
            doubled = (
                await connection.scalar(
                    select(func.count()).select_from(
                        select(Message.reply_to_id)
                        .where(
                            Message.reply_to_id.in_(reply_to), Message.sender == MessageSender.AI
                        )
                        .group_by(Message.reply_to_id)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
                if ids
                else 0
            )
    finally:
        await engine.dispose()
    return {"done": int(done or 0), "answered_twice": int(doubled or 0)}


def _host() -> dict[str, Any]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cores": os.cpu_count(), "ram_gb": round(pages / 2**30, 1)}


async def run_load(plan: LoadPlan, progress: Any = print) -> dict[str, Any]:
    settings, stack = stack_settings(plan.data_dir)
    state = stack.state()
    base_url = f"http://127.0.0.1:{state.web_port}"
    roots = {row.name: row.pid for row in stack.status() if row.pid is not None}
    recorder = Recorder()
    stop = asyncio.Event()
    run_tag = datetime.now(UTC).strftime("%H%M%S") + os.urandom(2).hex()
    async with LogCodes(stack.log_dir / "worker-default.log") as codes:
        shared = Shared(
            base_url=base_url,
            tls=ssl.create_default_context(),
            codes=codes,
            recorder=recorder,
            cycle_seconds=plan.cycle_seconds,
            stop=stop,
        )
        saved = await _current_config(settings, "rate_limits")
        widened = {**saved, "anon": WIDE_PER_IP, "otp": WIDE_PER_IP}
        await _set_config(settings, "rate_limits", widened)
        try:
            result = await _drive(plan, shared, roots, progress, run_tag)
        finally:
            await _set_config(settings, "rate_limits", saved)
    replies = await _check_replies(settings, shared.posted)
    posted = len(shared.posted)
    result["replies"] = {
        "posted": posted,
        "done": replies["done"],
        "lost": posted - replies["done"],
        "duplicated": replies["answered_twice"]
        + sum(1 for n in shared.completions.values() if n > 1),
    }
    result["verdict"] = verdict(result, plan.budget)
    return result


async def _drive(
    plan: LoadPlan, shared: Shared, roots: dict[str, int], progress: Any, run_tag: str
) -> dict[str, Any]:
    users = [SimUser(n, shared, run_tag) for n in range(plan.users)]
    tasks: list[asyncio.Task[None]] = []
    spacing = plan.ramp / max(1, plan.users)
    progress(f"ramping up {plan.users} users over {plan.ramp:.0f} s")
    for user in users:
        tasks.append(asyncio.create_task(user.run()))
        await asyncio.sleep(spacing)
    # Give the last users time to sign in before measuring.
    await asyncio.sleep(min(10.0, plan.ramp / 3 + 2))
    sampler = ProcessSampler(roots)
    shared.recorder.measuring = True
    sampler.start()
    generator_cpu = time.process_time()
    started = time.monotonic()
    progress(f"holding for {plan.duration:.0f} s")
    while time.monotonic() - started < plan.duration:
        sampler.sample()
        await asyncio.sleep(1.0)
    held = sum(1 for u in users if u.connected and not u.failed)
    shared.recorder.measuring = False
    sampler.stop()
    measured = time.monotonic() - started
    # The generator is one process: near 100 % it, not the server, sets the latencies.
    generator_percent = round(100 * (time.process_time() - generator_cpu) / measured, 1)
    progress(f"draining (replies in flight, up to {DRAIN_SECONDS:.0f} s)")
    shared.stop.set()
    done, still = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    for task in still:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*still, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            shared.recorder.error(f"user:{type(task.exception()).__name__}")
    rest = shared.recorder.rest_values(REST_KINDS)
    kinds = sorted(shared.recorder.samples)
    return {
        "name": plan.name,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": _host(),
        "users": plan.users,
        "users_held": held,
        "duration_s": round(measured, 1),
        "requests_per_s": round(len(rest) / measured, 1),
        "rest": _summary(rest),
        "by_kind": {kind: shared.recorder.summary(kind) for kind in kinds},
        "errors": dict(shared.recorder.errors),
        "processes": sampler.report(measured),
        "generator_cpu_percent": generator_percent,
    }


def _summary(values: list[float]) -> dict[str, Any]:
    recorder = Recorder(measuring=True)
    for value in values:
        recorder.observe("rest", value)
    return recorder.summary("rest")


def verdict(result: dict[str, Any], budget: Budget) -> dict[str, Any]:
    rest = result["rest"]
    errors = sum(result["errors"].values())
    failures = []
    if rest["p95_ms"] is None or rest["p95_ms"] >= budget.rest_p95_ms:
        failures.append(f"REST p95 {rest['p95_ms']} ms (budget < {budget.rest_p95_ms})")
    if rest["p99_ms"] is None or rest["p99_ms"] >= budget.rest_p99_ms:
        failures.append(f"REST p99 {rest['p99_ms']} ms (budget < {budget.rest_p99_ms})")
    if errors > budget.max_errors:
        failures.append(f"{errors} errors (budget {budget.max_errors})")
    if result["users_held"] < result["users"]:
        failures.append(f"held {result['users_held']} of {result['users']} users")
    replies = result.get("replies", {})
    if replies.get("lost") or replies.get("duplicated"):
        failures.append(f"{replies['lost']} replies lost, {replies['duplicated']} duplicated")
    return {"passed": not failures, "failures": failures}
