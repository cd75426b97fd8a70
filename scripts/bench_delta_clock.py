"""Queue-Redis CPU per delta event: replies on a shared clock against each at its own moments.

Starts a private Redis and, in this process, K replies streaming text pieces at a hosted model's
pace (one every 20-46 ms) into the AI worker's ``DeltaCoalescer``, whose events go through the
event bus over the pipelined connection, as in the worker; a pub/sub reader subscribed to every
user's channel stands for the web processes. Two rules, in alternating rounds:

- ``shared clock``: the coalescer as it is (``domain/ai/generation.py``): pending pieces go out
  at the next whole multiple of the interval, the same instant for every reply in the process;
- ``own moments``: the rule before it: a piece that arrives at least one interval after the
  last event is sent at once with those before it.

The figures are the Redis server's CPU per event (from ``/proc``), this process's CPU per
event, and events per second; the median round is reported.

Prints the figures and writes bench/results/<date>-delta-clock.{json,md}.

    .venv/bin/python scripts/bench_delta_clock.py [--replies 20 60] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchkit import write_results
from redis.asyncio import Redis

from wingman.devstack.services import private_redis
from wingman.domain.ai.generation import DeltaCoalescer
from wingman.domain.realtime.events import EventBus, user_channel
from wingman.server.redis_mux import RedisMux

INTERVAL = 0.1
Send = Callable[[int, str], Awaitable[None]]


class OwnMoments:
    """The coalescing rule before the shared clock: first piece at once, then a piece arriving
    an interval or more after the last event goes out at once with those before it."""

    def __init__(self, send: Send, interval: float) -> None:
        self._send, self._interval = send, interval
        self._pending: list[str] = []
        self._offset = 0
        self._last: float | None = None

    async def add(self, text: str) -> None:
        self._pending.append(text)
        now = time.monotonic()
        if self._last is None or now - self._last >= self._interval:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._last = time.monotonic()
            offset, self._offset = self._offset, self._offset + len(text)
            await self._send(offset, text)

    def cancel(self) -> None:
        pass


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:13]) / os.sysconf("SC_CLK_TCK")


async def one_round(
    url: str, pid: int, rule: str, replies: int, seconds: float
) -> dict[str, float]:
    mux = RedisMux(url, name="bench-delta")
    redis = Redis.from_url(url)
    bus = EventBus(redis, history_size=200, history_seconds=300, mux=mux)
    users = [uuid.uuid4() for _ in range(replies)]
    stop, done = asyncio.Event(), asyncio.Event()
    sent = [0]
    received = [0]
    listener = Redis.from_url(url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(*[user_channel(user) for user in users])

    async def read() -> None:
        while not done.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                received[0] += 1

    async def stream(user: uuid.UUID) -> None:
        async def send(offset: int, text: str) -> None:
            await bus.publish(user, "message.delta", {"offset": offset, "text": text})
            sent[0] += 1

        coalescer: DeltaCoalescer | OwnMoments = (
            DeltaCoalescer(send, INTERVAL, max_pieces=100)
            if rule == "shared clock"
            else OwnMoments(send, INTERVAL)
        )
        try:
            while not stop.is_set():
                await asyncio.sleep(random.uniform(0.020, 0.046))  # noqa: S311 - pacing
                await coalescer.add("word ")
            await coalescer.flush()
        finally:
            coalescer.cancel()

    reader = asyncio.create_task(read())
    tasks = [asyncio.create_task(stream(user)) for user in users]
    await asyncio.sleep(1.0)
    cpu0, client0, sent0, at0 = server_cpu(pid), time.process_time(), sent[0], time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, client1, sent1, at1 = server_cpu(pid), time.process_time(), sent[0], time.monotonic()
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(0.5)  # the last events reach the reader
    done.set()
    await reader
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await listener.aclose()
    await mux.close()
    await redis.aclose()
    if received[0] != sent[0]:
        raise SystemExit(f"{rule}: {sent[0]} events published, {received[0]} received")
    events = sent1 - sent0
    return {
        "events_per_s": events / (at1 - at0),
        "redis_us_per_event": 1e6 * (cpu1 - cpu0) / events,
        "client_us_per_event": 1e6 * (client1 - client0) / events,
    }


async def measure(
    url: str, pid: int, replies: list[int], seconds: float, rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    figures: dict[str, dict[str, dict[str, list[float]]]] = {}
    for count in replies:
        for _ in range(rounds):
            for rule in ("own moments", "shared clock"):
                result = await one_round(url, pid, rule, count, seconds)
                by = figures.setdefault(str(count), {}).setdefault(rule, {})
                for key, value in result.items():
                    by.setdefault(key, []).append(value)
    return {
        count: {
            rule: {key: round(statistics.median(values), 1) for key, values in by.items()}
            for rule, by in rules.items()
        }
        for count, rules in figures.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, nargs="+", default=[20, 60])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with private_redis("wingman-bench-delta-") as server:
        pid = server.pid()
        if pid is None:
            raise SystemExit("the private Redis did not start")
        results = asyncio.run(measure(server.url(), pid, args.replies, args.seconds, args.rounds))
    body = [
        f"Replies streaming at once in one process, pieces every 20-46 ms, interval {INTERVAL} s;"
        f" median of {args.rounds} alternating rounds of {args.seconds} s; {os.cpu_count()} cores"
        " shared by this process and Redis.",
        "",
        "| replies | rule | events/s | Redis CPU µs per event | this process's CPU µs per event |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for count, rules in results.items():
        for rule, by in rules.items():
            body.append(
                f"| {count} | {rule} | {by['events_per_s']:.0f} | {by['redis_us_per_event']:.1f}"
                f" | {by['client_us_per_event']:.1f} |"
            )
    fields = {
        "interval_s": INTERVAL,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "results": results,
    }
    write_results("delta-clock", fields, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
