"""What does the request limiter cost per request? (benchmark, not a test)

Starts a private PostgreSQL and Redis and two real `wingmanctl serve` processes (one worker each)
that differ only in `server.rate_limits` (on / off), with allowances far above what the run
sends. A signed-in client then drives each route against both servers in alternating rounds
(on, off, on, off, ...) so drift hits both alike; the figure per route is the median round.
Requests go over keep-alive connections with a minimal HTTP/1.1 client, so the client costs
little next to the server on a small host.

Prints the figures and writes bench/results/<date>-limiter.{json,md}.

    .venv/bin/python scripts/bench_limiter.py [--seconds 4] [--rounds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid

import msgspec
from benchkit import (
    alternating_rounds,
    bench_arguments,
    http_request,
    log,
    private_services,
    seed_user,
    start_web,
    stop_all,
    write_results,
)

from wingman.config import RedisSettings, ServerSettings
from wingman.server.auth import issue_access_token
from wingman.server.ratelimit import RateLimiter, RateRule
from wingman.server.redis import RedisClients

ROUTES = {
    # Served from the per-process catalog cache: the limiter's share is largest here.
    "tones (cached read)": "/api/v1/tones",
    # One indexed row from PostgreSQL.
    "me (database read)": "/api/v1/me",
}


async def time_checks(redis_url: str, calls: int = 3000) -> float:
    """Mean microseconds of one allowed check (hit and window figures), in this process, against
    the same Redis: the limiter's own share without HTTP noise."""
    clients = RedisClients.from_settings(RedisSettings(queue_url=redis_url), process="bench")
    try:
        limiter = RateLimiter.on_redis(clients)
        rule = RateRule.parse("api:user", "100000000/hour")
        identifier = uuid.uuid4().hex
        for _ in range(200):
            await limiter.check(rule, identifier)
        start = time.perf_counter()
        for _ in range(calls):
            await limiter.check(rule, identifier)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        await clients.close()


def write_report(
    args: argparse.Namespace, results: dict[str, dict[str, object]], check_us: float
) -> None:
    """Print the figures and write bench/results/<date>-limiter.{json,md}."""
    body = [
        f"One web worker per server, {args.connections} keep-alive connections, a signed-in"
        f" caller; median of {args.rounds} alternating rounds of {args.seconds:g} s per server;"
        f" {os.cpu_count()} cores shared by client, servers, PostgreSQL and Redis.",
        "",
        "| route | limits on (req/s) | limits off (req/s) | on / off | cost per request |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, row in results.items():
        body.append(
            f"| {label} `{row['path']}` | {row['rps_limits_on']:.0f} | {row['rps_limits_off']:.0f}"
            f" | {row['ratio_on_over_off']:.3f} | {row['overhead_us_per_request']} µs |"
        )
    body += [
        "",
        f"One allowed limiter check measured in a single process against the same Redis (one"
        f" script call: count the hit and read the window): {check_us} µs.",
    ]
    fields = {
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "routes": results,
        "check_us_in_process": check_us,
    }
    write_results("limiter", fields, body, args.tag)


def main() -> int:
    args = bench_arguments(__doc__.splitlines()[0])

    servers: list[subprocess.Popen[bytes]] = []
    results: dict[str, dict[str, object]] = {}
    with private_services("limiter") as services:
        try:
            user_id = seed_user(services.database_url)
            base = services.settings
            token = issue_access_token(base, user_id, "free", "user")
            ports = {}
            for name, enabled in (("on", True), ("off", False)):
                settings = msgspec.structs.replace(base, server=ServerSettings(rate_limits=enabled))
                server, ports[name] = start_web(services.root, settings, name)
                servers.append(server)
            log(f"servers ready: {ports}")

            for label, path in ROUTES.items():
                request = http_request("GET", path, token)
                cases = {name: (port, request, 200) for name, port in ports.items()}
                medians, rounds = alternating_rounds(cases, args)
                on, off = medians["on"], medians["off"]
                results[label] = {
                    "path": path,
                    "rps_limits_on": on,
                    "rps_limits_off": off,
                    "ratio_on_over_off": round(on / off, 3),
                    "overhead_us_per_request": round((1 / on - 1 / off) * 1e6, 1),
                    "rounds": rounds,
                }
                log(f"{label}: on {on:.0f}/s, off {off:.0f}/s, ratio {on / off:.3f}")
            check_us = round(asyncio.run(time_checks(services.settings.redis.queue_url)), 1)
            log(f"one limiter check in process: {check_us} µs")
        finally:
            stop_all(servers)

    write_report(args, results, check_us)
    return 0


if __name__ == "__main__":
    sys.exit(main())
