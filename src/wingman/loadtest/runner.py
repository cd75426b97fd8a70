"""One load run against a running development stack: ramp up, hold, measure, check, report.

The users are driven by K generator processes (``generator.py``; an asyncio driver each: one
socket and one task per simulated user, which holds thousands of WebSockets in a few tens of MB,
yet costs about 0.6 of a core per 1,000 users, so a big host needs several). This process is
their coordinator: it splits the users between them, starts measuring in all of them at once,
samples the server's and the generators' CPU from ``/proc`` and the Redis servers' command
counts, merges the generators' latency histograms (bucket counts add up exactly, see
``histogram.py``) and checks every reply they asked for in the database: a reply is *lost* when
its AI message is not ``done`` when the run has drained, *duplicated* when two AI messages
answer one post or a socket delivered ``message.completed`` twice for one message. The CPU the
server spent is also kept per user-minute, the cost model ``wingmanctl bench project`` projects
other hosts from (``costmodel.py``).

All simulated users come from one address, which the per-IP allowances (``anon``, ``otp``) exist
to stop; the run widens those two in global config for its duration (an audited change, put back
afterwards) and leaves every per-user allowance as it is.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
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
from wingman.loadtest.costmodel import Usage, cost_model
from wingman.loadtest.fleet import Fleet, split_users
from wingman.loadtest.generator import DRAIN_SECONDS, Finished, GeneratorPlan
from wingman.loadtest.histogram import RELATIVE_PRECISION
from wingman.loadtest.processes import ProcessSampler
from wingman.loadtest.redisstats import all_calls, calls_between, redis_servers
from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import REST_KINDS
from wingman.server.database import create_engine, session_maker
from wingman.server.redis import RedisClients

# Per-IP allowances for the run: every simulated user shares the generator's address.
WIDE_PER_IP = {"limit": 1_000_000, "period": "hour"}
# Past this share of a core a generator may be what sets the latencies.
GENERATOR_BUSY_WARNING = 0.7
# The idle stack is measured this long before the users arrive.
IDLE_SECONDS = 5.0
# Beyond the ramp itself: starting the generator processes and the last sign-ins.
RAMP_GRACE_SECONDS = 120.0


@dataclass(frozen=True)
class Budget:
    """DESIGN section 10's budgets. The first delta's: enqueue -> first ``message.delta``
    overhead under 50 ms beyond the provider. The client sees neither the enqueue nor the
    provider, so it takes the median of post -> first delta (the post's own time included)
    less the provider's first token (``provider_first_token_ms``, known for the offline
    provider only; 0 otherwise, which only makes the check stricter). The median: replies
    waiting for a worker slot move it by seconds, the tail is the REST budgets' business."""

    rest_p95_ms: float = 100.0
    rest_p99_ms: float = 250.0
    max_errors: int = 0
    first_delta_overhead_ms: float = 50.0
    provider_first_token_ms: float = 0.0


@dataclass(frozen=True)
class LoadPlan:
    users: int
    duration: float
    data_dir: Path
    ramp: float = 30.0
    cycle_seconds: float = 60.0
    name: str = "load"
    budget: Budget = Budget()
    generators: int = 1


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


def _codes_log(stack: DevStack) -> Path:
    path = stack.log_dir / "worker-default.log"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no worker log (is the stack running?)")
    return path


def _server_roots(stack: DevStack) -> dict[str, int]:
    return {row.name: row.pid for row in stack.status() if row.pid is not None}


async def run_load(plan: LoadPlan, progress: Any = print) -> dict[str, Any]:
    settings, stack = stack_settings(plan.data_dir)
    state = stack.state()
    run_tag = datetime.now(UTC).strftime("%H%M%S") + os.urandom(2).hex()
    fleet = Fleet(
        [
            GeneratorPlan(
                name=f"generator-{n + 1}",
                base_url=f"http://127.0.0.1:{state.web_port}",
                codes_log=str(_codes_log(stack)),
                first_index=first,
                users=count,
                ramp=plan.ramp,
                cycle_seconds=plan.cycle_seconds,
                run_tag=run_tag,
            )
            for n, (first, count) in enumerate(split_users(plan.users, plan.generators))
        ]
    )
    if (await _current_config(settings, "ai")).get("provider") == "offline":
        first_token = settings.ai.offline.token_interval_ms
        plan = replace(plan, budget=replace(plan.budget, provider_first_token_ms=first_token))
    saved = await _current_config(settings, "rate_limits")
    widened = {**saved, "anon": WIDE_PER_IP, "otp": WIDE_PER_IP}
    await _set_config(settings, "rate_limits", widened)
    try:
        result = await _drive(plan, fleet, settings, _server_roots(stack), progress)
    finally:
        await _set_config(settings, "rate_limits", saved)
    replies = await _check_replies(settings, result.pop("posted_ids"))
    posted = result["replies"]["posted"]
    result["replies"] |= {
        "done": replies["done"],
        "lost": posted - replies["done"],
        "duplicated": replies["answered_twice"] + result["replies"]["duplicated"],
    }
    result["verdict"] = verdict(result, plan.budget)
    return result


async def _drive(
    plan: LoadPlan, fleet: Fleet, settings: Settings, roots: dict[str, int], progress: Any
) -> dict[str, Any]:
    redis = redis_servers(settings.redis)
    progress(f"measuring the idle stack for {IDLE_SECONDS:.0f} s")
    idle = await _idle(roots, redis)
    try:
        await fleet.start()
        progress(f"{len(fleet.plans)} generator(s); {fleet.pinning}")
        progress(f"ramping up {plan.users} users over {plan.ramp:.0f} s")
        async with asyncio.timeout(plan.ramp + RAMP_GRACE_SECONDS):
            await fleet.wait_ramped()
        # Give the last users time to sign in before measuring.
        await asyncio.sleep(min(10.0, plan.ramp / 3 + 2))
        servers = ProcessSampler(roots)
        generators = ProcessSampler(fleet.pids)
        calls_before = await all_calls(redis)
        await fleet.send("measure")
        servers.start()
        generators.start()
        started = time.monotonic()
        progress(f"holding for {plan.duration:.0f} s")
        while time.monotonic() - started < plan.duration:
            servers.sample()
            generators.sample()
            await asyncio.sleep(1.0)
        await fleet.send("stop")
        servers.stop()
        generators.stop()
        measured = time.monotonic() - started
        calls = calls_between(calls_before, await all_calls(redis))
        progress(f"draining (replies in flight, up to {DRAIN_SECONDS:.0f} s)")
        async with asyncio.timeout(DRAIN_SECONDS + RAMP_GRACE_SECONDS):
            finished = await fleet.finish()
    except TimeoutError:
        raise RuntimeError("the load generators did not report in time") from None
    finally:
        await fleet.close()
    recorder = Recorder()
    for report in finished:
        recorder.merge(Recorder.decode(report.measured))
    held = sum(report.users_held for report in finished)
    rest = recorder.combined(REST_KINDS)
    generator_report = generator_rows(fleet, finished, generators, measured)
    return {
        "name": plan.name,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": _host(),
        "users": plan.users,
        "users_held": held,
        "duration_s": round(measured, 1),
        "requests_per_s": round(rest.count / measured, 1),
        "rest": rest.summary(),
        "by_kind": {kind: recorder.summary(kind) for kind in sorted(recorder.histograms)},
        "latency_precision": f"percentiles at most {RELATIVE_PRECISION:.0%} + 1 us above exact",
        "errors": dict(recorder.errors),
        "processes": servers.report(measured),
        "generators": generator_report,
        "cost_model": cost_model(
            Usage(servers.cpu_seconds(), calls, measured), idle, held, plan.cycle_seconds
        ),
        "replies": {
            "posted": sum(len(report.posted) for report in finished),
            "duplicated": sum(report.completed_twice for report in finished),
        },
        "posted_ids": [ai_id for report in finished for ai_id in report.posted],
    }


async def _idle(roots: dict[str, int], redis: dict[str, str]) -> Usage:
    """What the stack spends with no user: SAQ's polling, heartbeats, cron; the cost model
    counts it once, not per user."""
    sampler = ProcessSampler(roots)
    before = await all_calls(redis)
    sampler.start()
    started = time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    sampler.stop()
    seconds = time.monotonic() - started
    return Usage(sampler.cpu_seconds(), calls_between(before, await all_calls(redis)), seconds)


def generator_rows(
    fleet: Fleet, finished: list[Finished], sampler: ProcessSampler, measured: float
) -> dict[str, Any]:
    """Each generator's CPU, the generators' CPU per user-minute, and a warning for any near a
    full core (then the generator, not the server, may be setting the latencies)."""
    used = sampler.cpu_seconds()
    held = {report.name: report.users_held for report in finished}
    rows = []
    warnings = []
    for index, gen in enumerate(fleet.plans):
        percent = round(100 * used[gen.name] / measured, 1)
        rows.append(
            {
                "name": gen.name,
                "users": gen.users,
                "users_held": held.get(gen.name, 0),
                "cpu": fleet.cpus[index] if fleet.cpus is not None else None,
                "cpu_percent": percent,
            }
        )
        if percent > GENERATOR_BUSY_WARNING * 100:
            warnings.append(
                f"{gen.name} used {percent} % of a core (above "
                f"{GENERATOR_BUSY_WARNING:.0%}): add generators (--generators)"
            )
    users = sum(held.values())
    total = sum(used.values())
    return {
        "count": len(fleet.plans),
        "pinning": fleet.pinning,
        "processes": rows,
        "cpu_ms_per_user_minute": (
            round(1000 * total / (users * measured / 60), 3) if users else None
        ),
        "warnings": warnings,
    }


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
    first = result.get("by_kind", {}).get("reply_first_delta", {}).get("p50_ms")
    overhead = None if first is None else round(first - budget.provider_first_token_ms, 1)
    if overhead is not None and overhead >= budget.first_delta_overhead_ms:
        failures.append(
            f"first delta p50 {first} ms, {overhead} ms beyond the provider's first token "
            f"(budget < {budget.first_delta_overhead_ms})"
        )
    if result["users_held"] < result["users"]:
        failures.append(f"held {result['users_held']} of {result['users']} users")
    replies = result.get("replies", {})
    if replies.get("lost") or replies.get("duplicated"):
        failures.append(f"{replies['lost']} replies lost, {replies['duplicated']} duplicated")
    return {
        "passed": not failures,
        "failures": failures,
        "first_delta_overhead_ms": overhead,
        "provider_first_token_ms": budget.provider_first_token_ms,
    }
