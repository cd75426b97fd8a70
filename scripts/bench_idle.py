"""What a request costs a web process that is idle around it, thread by thread (benchmark).

At the load profile's 600 users one web process is about a quarter busy, so its requests mostly
arrive alone, and one that arrives alone costs two to three times one among 16
(docs/performance.md, sixth round). This measures where that difference sits. Starts private
PostgreSQL and Redis and one ``wingmanctl serve`` process (one worker), then drives an uncached
message page, the cached session list and a message post over 1 and over 16 keep-alive
connections, each also with idle-priority spinners (``SCHED_IDLE`` busy loops, one per CPU: they
run only when nothing else wants the CPU, so the CPUs never go idle and a wake-up never waits for
a halted one). Per case, from ``/proc``:

- the web process's CPU per request, user and system time apart, and for each of its threads
  (the event loop's own, Granian's Rust threads);
- each thread's voluntary context switches per request (how often it went to sleep waiting);
- PostgreSQL's and the two Redis servers' CPU per request.

Rounds alternate so drift hits all alike; each figure is the median round. Prints the figures
and writes bench/results/<date>-idle.{json,md}.

    .venv/bin/python scripts/bench_idle.py [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_micro import seed_session
from benchkit import (
    bench_arguments,
    drive,
    http_request,
    log,
    private_services,
    seed_user,
    start_web,
    stop_all,
    write_results,
)

from wingman.loadtest.processes import CLOCK_TICKS, process_tree, tree_cpu_seconds
from wingman.server.auth import issue_access_token

CONNECTIONS = (1, 16)
SPIN = "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass"


@dataclass(frozen=True)
class ThreadTimes:
    """One thread's counters: CPU ticks (user, system) and voluntary/involuntary switches."""

    name: str
    user: int
    system: int
    voluntary: int
    involuntary: int


def thread_times(pid: int) -> dict[str, ThreadTimes]:
    """Every thread of ``pid``, by "<pid>/<tid>"."""
    found: dict[str, ThreadTimes] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # the thread ended
        fields = stat[stat.rindex(")") + 2 :].split()
        switches = {
            key: int(value)
            for key, _, value in (line.partition(":\t") for line in status.splitlines())
            if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
        }
        found[f"{pid}/{tid}"] = ThreadTimes(
            name=stat[stat.index("(") + 1 : stat.rindex(")")],
            user=int(fields[11]),
            system=int(fields[12]),
            voluntary=switches["voluntary_ctxt_switches"],
            involuntary=switches["nonvoluntary_ctxt_switches"],
        )
    return found


def tree_threads(root: int) -> dict[str, ThreadTimes]:
    found: dict[str, ThreadTimes] = {}
    for pid in process_tree([root]):
        found.update(thread_times(pid))
    return found


@contextmanager
def spinners(on: bool) -> Iterator[None]:
    """One idle-priority busy loop per CPU while the block runs (none when ``on`` is False)."""
    count = (os.cpu_count() or 1) if on else 0
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def measure(
    web: int,
    services: dict[str, int],
    port: int,
    case: tuple[bytes, int],
    *,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """One round: per request, the web threads' CPU and switches, the services' CPU."""
    before, services_before = (
        tree_threads(web),
        {n: tree_cpu_seconds(p) for n, p in services.items()},
    )
    start = time.monotonic()
    request, ok = case
    rps = asyncio.run(drive(port, request, seconds, connections, ok))
    answered = rps * (time.monotonic() - start)
    after = tree_threads(web)
    services_after = {n: tree_cpu_seconds(p) for n, p in services.items()}
    us = 1e6 / CLOCK_TICKS / answered
    threads: dict[str, dict[str, float]] = {}
    user = system = 0
    for key, now in after.items():
        then = before.get(key, ThreadTimes(now.name, 0, 0, 0, 0))
        used_user, used_system = now.user - then.user, now.system - then.system
        user, system = user + used_user, system + used_system
        threads[f"{now.name} {key}"] = {
            "cpu_us": (used_user + used_system) * us,
            "voluntary_switches": (now.voluntary - then.voluntary) / answered,
            "involuntary_switches": (now.involuntary - then.involuntary) / answered,
        }
    return {
        "rps": rps,
        "web_user_us": user * us,
        "web_system_us": system * us,
        "threads": threads,
        "services_us": {
            n: (services_after[n] - services_before[n]) * 1e6 / answered for n in services
        },
    }


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (threads keyed as in the first round)."""

    def med(pick: Any) -> float:
        return round(float(statistics.median(pick(r) for r in rounds)), 2)

    first = rounds[0]
    return {
        "rps": med(lambda r: r["rps"]),
        "web_user_us": med(lambda r: r["web_user_us"]),
        "web_system_us": med(lambda r: r["web_system_us"]),
        "threads": {
            name: {
                k: med(lambda r, name=name, k=k: r["threads"].get(name, {}).get(k, 0.0))
                for k in values
            }
            for name, values in first["threads"].items()
        },
        "services_us": {n: med(lambda r, n=n: r["services_us"][n]) for n in first["services_us"]},
    }


def main() -> int:
    args = bench_arguments(__doc__.splitlines()[0])
    with private_services("idle") as services:
        servers = []
        try:
            user_id = seed_user(services.database_url)
            token = issue_access_token(services.settings, user_id, "free", "user")
            web, port = start_web(services.root, services.settings, "web")
            servers.append(web)
            session = seed_session(port, token)
            body = json.dumps({"content": "How was your weekend?"}).encode()
            cases = {
                "uncached message page": (
                    http_request("GET", f"/api/v1/sessions/{session}/messages", token),
                    200,
                ),
                "cached GET /sessions": (http_request("GET", "/api/v1/sessions", token), 200),
                "message post": (
                    http_request("POST", f"/api/v1/sessions/{session}/messages", token, body),
                    202,
                ),
            }
            for raw, ok in cases.values():  # warm-up: caches, pools, first-call costs
                asyncio.run(drive(port, raw, 1.0, 16, ok))
            rounds: dict[str, list[dict[str, Any]]] = {}
            for number in range(args.rounds):
                for spin in (False, True):
                    with spinners(spin):
                        for connections in CONNECTIONS:
                            for case, case_request in cases.items():
                                label = f"{case}, {connections} connection(s)" + (
                                    ", spinners" if spin else ""
                                )
                                rounds.setdefault(label, []).append(
                                    measure(
                                        web.pid,
                                        services.pids,
                                        port,
                                        case_request,
                                        connections=connections,
                                        seconds=args.seconds,
                                    )
                                )
                log(f"round {number + 1} of {args.rounds} done")
        finally:
            stop_all(servers)
    write_report(args, {label: median_of(r) for label, r in rounds.items()})
    return 0


def write_report(args: Any, results: dict[str, dict[str, Any]]) -> None:
    body = [
        f"One Granian worker, median of {args.rounds} alternating rounds of {args.seconds:g} s;"
        f" {os.cpu_count()} cores shared by client, server, PostgreSQL and Redis. Per request:"
        " the web process's CPU (user + system), its busiest thread's CPU and voluntary context"
        " switches (the event loop's thread), the other threads' CPU, PostgreSQL and Redis.",
        "",
        "| case | requests/s | web CPU µs (user + system) | loop thread µs | loop thread"
        " sleeps | other threads µs | PostgreSQL µs | Redis µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, row in results.items():
        threads = sorted(row["threads"].values(), key=lambda t: -t["cpu_us"])
        loop, others = threads[0], sum(t["cpu_us"] for t in threads[1:])
        services = row["services_us"]
        redis = sum(v for name, v in services.items() if name.startswith("redis"))
        body.append(
            f"| {label} | {row['rps']:.0f}"
            f" | {row['web_user_us'] + row['web_system_us']:.0f}"
            f" ({row['web_user_us']:.0f} + {row['web_system_us']:.0f})"
            f" | {loop['cpu_us']:.0f} | {loop['voluntary_switches']:.1f} | {others:.0f}"
            f" | {services.get('postgresql', 0):.0f} | {redis:.0f} |"
        )
    fields = {"seconds_per_round": args.seconds, "rounds": args.rounds, "cases": results}
    write_results("idle", fields, body, args.tag)


if __name__ == "__main__":
    sys.exit(main())
