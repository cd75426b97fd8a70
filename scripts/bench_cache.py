"""How much does the read cache buy on `GET /api/v1/sessions`? (benchmark, not a test)

Starts a private PostgreSQL and two Redis servers (queue, cache) and two real `wingmanctl serve`
processes (one worker each) that differ only in `[cache] enabled` (on / off), with rate limits
far above what the run sends. One signed-in user with a page of sessions then reads the first
page against both servers in alternating rounds (on, off, on, off, ...) so drift hits both
alike; the figure is the median round. Requests go over keep-alive connections with a minimal
HTTP/1.1 client, so the client costs little next to the server on a small host. The cache
hit ratio of the "on" server comes from its own `/metrics`.

Prints the figures and writes bench/results/<date>-cache.{json,md}.

    .venv/bin/python scripts/bench_cache.py [--seconds 4] [--rounds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import httpx
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
from prometheus_client.parser import text_string_to_metric_families

from wingman.config import CacheSettings
from wingman.server.auth import issue_access_token

PATH = "/api/v1/sessions"
SESSIONS = 20


def seed_sessions(port: int, token: str) -> None:
    """A full first page (through the API, so rows look like a client's)."""
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(SESSIONS):
        response = httpx.post(
            f"http://127.0.0.1:{port}{PATH}", json={"title": f"Chat {n}"}, headers=headers
        )
        response.raise_for_status()


def hit_ratio(port: int) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    counts = {"hit": 0.0, "miss": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "wingman_cache_requests_total"
                and sample.labels["cache"] == "sessions"
            ):
                counts[sample.labels["result"]] += sample.value
    total = counts["hit"] + counts["miss"]
    return round(counts["hit"] / total, 5) if total else None


def write_report(args: argparse.Namespace, result: dict[str, object]) -> None:
    """Print the figures and write bench/results/<date>-cache.{json,md}."""
    body = [
        f"Authenticated `GET {PATH}` (first page, {SESSIONS} sessions). One web worker per"
        f" server, {args.connections} keep-alive connections; median of {args.rounds}"
        f" alternating rounds of {args.seconds:g} s per server; {os.cpu_count()} cores shared"
        " by client, servers, PostgreSQL and Redis.",
        "",
        "| cache on (req/s) | cache off (req/s) | on / off | hit ratio (on) |",
        "| --- | --- | --- | --- |",
        f"| {result['rps_cache_on']:.0f} | {result['rps_cache_off']:.0f}"
        f" | {result['ratio_on_over_off']:.3f} | {result['hit_ratio']} |",
    ]
    fields = {
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "sessions_on_page": SESSIONS,
        "route": result,
    }
    write_results("cache", fields, body, args.tag)


def main() -> int:
    args = bench_arguments(__doc__.splitlines()[0])

    servers: list[subprocess.Popen[bytes]] = []
    with private_services("cache") as services:
        try:
            user_id = seed_user(services.database_url)
            base = services.settings
            token = issue_access_token(base, user_id, "free", "user")
            ports = {}
            for name, enabled in (("on", True), ("off", False)):
                settings = msgspec.structs.replace(base, cache=CacheSettings(enabled=enabled))
                server, ports[name] = start_web(services.root, settings, name)
                servers.append(server)
            log(f"servers ready: {ports}")
            seed_sessions(ports["on"], token)
            request = http_request("GET", PATH, token)
            cases = {name: (port, request, 200) for name, port in ports.items()}
            medians, rounds = alternating_rounds(cases, args)
            on, off = medians["on"], medians["off"]
            result = {
                "path": PATH,
                "rps_cache_on": on,
                "rps_cache_off": off,
                "ratio_on_over_off": round(on / off, 3),
                "hit_ratio": hit_ratio(ports["on"]),
                "rounds": rounds,
            }
            log(f"cache on {on:.0f}/s, off {off:.0f}/s, ratio {on / off:.3f}")
        finally:
            stop_all(servers)

    write_report(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
