"""CPU per Redis call: redis-py's pooled client against the pipelined connection (benchmark).

Starts a private Redis and runs the same calls both ways in this process, in alternating rounds:
a small script (`EVALSHA`, two keys read, as the read cache's read was before its version moved
into the request limiter's call) with 1 and with 16 calls in flight, the way a web worker makes
them. The figure is this process's CPU time per call (`time.process_time`), so
waiting for Redis is not counted; the median round is reported.

Prints the figures and writes bench/results/<date>-redis-mux.{json,md}.

    .venv/bin/python scripts/bench_redis_mux.py [--calls 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from benchkit import write_results
from redis.asyncio import Redis

from wingman.config import RedisSettings
from wingman.devstack.services import private_redis
from wingman.server.redis import connect
from wingman.server.redis_mux import RedisMux

Call = Callable[[], Awaitable[object]]

# A version, then the entry stored under it.
_READ = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ARGV[2])}
"""


async def cpu_per_call(call: Call, calls: int, in_flight: int) -> float:
    """Microseconds of this process's CPU per call, ``in_flight`` calls at a time."""
    start = time.process_time()
    for _ in range(calls // in_flight):
        if in_flight == 1:
            await call()
        else:
            await asyncio.gather(*(call() for _ in range(in_flight)))
    return (time.process_time() - start) / calls * 1e6


async def measure(url: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    client: Redis = connect(url, RedisSettings(queue_url=url), "bench")
    mux = RedisMux(url, name="bench-mux")
    script = client.register_script(_READ)
    keys, args = ["wingman:cache:v:bench"], ["wingman:cache:e:bench:", ":k"]
    await client.set("wingman:cache:e:bench:0:k", b"x" * 200)

    async def pooled() -> object:
        return await script(keys=keys, args=args)

    async def pipelined() -> object:
        return await mux.evalsha(_READ, keys, args)

    if await pooled() != await pipelined():
        raise SystemExit("the two clients disagree")
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        for warm in (pooled, pipelined):
            await cpu_per_call(warm, 500, 16)
        for _ in range(rounds):
            for in_flight in (1, 16):
                for name, call in (("redis-py", pooled), ("pipelined", pipelined)):
                    value = await cpu_per_call(call, calls, in_flight)
                    figures.setdefault(name, {}).setdefault(str(in_flight), []).append(value)
    finally:
        await mux.close()
        await client.aclose()
    return {
        name: {k: round(statistics.median(v), 1) for k, v in by.items()}
        for name, by in figures.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_redis("wingman-bench-mux-", role="cache") as server:
        results = asyncio.run(measure(server.url(), args.calls, args.rounds))
    body = [
        "CPU of the calling process per read-cache script call (median of"
        f" {args.rounds} alternating rounds of {args.calls} calls), {os.cpu_count()} cores.",
        "",
        "| client | 1 in flight | 16 in flight |",
        "| --- | ---: | ---: |",
    ]
    for name, by in results.items():
        body.append(f"| {name} | {by['1']:.0f} µs | {by['16']:.0f} µs |")
    fields = {"calls_per_round": args.calls, "rounds": args.rounds, "cpu_us_per_call": results}
    write_results("redis-mux", fields, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
