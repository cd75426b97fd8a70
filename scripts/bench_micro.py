"""Requests/s of Wingman's hot routes as a share of a bare Litestar endpoint (benchmark).

Starts private PostgreSQL and Redis, one `wingmanctl serve` process (one worker) and one serving a
bare Litestar app with the same Granian settings (`wingmanctl serve --app
wingman.loadtest.bare:create_app`): the ceiling. Then, in alternating rounds so drift hits all
alike, drives over keep-alive connections:

  (a) GET /bare                                  the ceiling
  (a2) GET /bare/users/{id}                      the ceiling for a route that reads PostgreSQL:
                                                 one row by key, same engine and pool settings
  (b) GET /api/v1/sessions                       authenticated, served from the read cache
                                                 (also against a second server without the
                                                 request limiter, to show its share)
  (c) GET /api/v1/sessions/{id}/messages         authenticated, uncached page from PostgreSQL
  (d) POST /api/v1/sessions/{id}/messages        a message post (user + queued AI message,
                                                 events, enqueue; no AI worker runs)

Each figure is the median round, and every case is reported as a ratio of (a) from the same run,
and per core as a ratio of (a2) too (the database routes against what the stack allows).
"One worker" is one Granian process; PostgreSQL, Redis and the client share the same cores.

With ``--baseline SRC`` (a folder holding another ``wingman`` package, e.g. ``git archive
<commit> src migrations | tar -x -C /tmp/base`` then ``/tmp/base/src``; the package finds its
migrations beside ``src``) a third server runs that code and
(b), (c) and (d) are measured against it too, in the same rounds: a change's effect without the
drift between runs.

Prints the figures and writes bench/results/<date>-micro.{json,md}.

    .venv/bin/python scripts/bench_micro.py [--seconds 4] [--rounds 5] [--connections 16]
        [--baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import msgspec
from benchkit import (
    LOAD_GENERATOR,
    Case,
    CpuPerRequest,
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

from wingman.config import ServerSettings
from wingman.server.auth import issue_access_token

BARE = [sys.executable, "-m", "wingman", "serve", "--workers", "1", "--app"]
BARE.append("wingman.loadtest.bare:create_app")
MESSAGES = 20
BARE_CASE = "(a) bare JSON endpoint"
ONE_ROW_CASE = "(a2) bare one-row database endpoint"


def seed_session(port: int, token: str) -> str:
    """A session with a page of messages, made through the API."""
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}/api/v1/sessions"
    for n in range(5):
        httpx.post(base, json={"title": f"Chat {n}"}, headers=headers).raise_for_status()
    session = httpx.post(base, json={"title": "Bench"}, headers=headers).json()["id"]
    for n in range(MESSAGES // 2):
        httpx.post(
            f"{base}/{session}/messages", json={"content": f"message {n}"}, headers=headers
        ).raise_for_status()
    return str(session)


def baseline_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline-code",
        default="the tree given by --baseline",
        help="what the baseline tree is, for the results (e.g. its commit)",
    )
    parser.add_argument(
        "--baseline", metavar="SRC", help="also serve (b), (c) and (d) from this source tree"
    )


def main() -> int:
    args = bench_arguments(__doc__.splitlines()[0], baseline_option)
    servers: list[subprocess.Popen[bytes]] = []
    with private_services("micro") as services:
        try:
            user_id = seed_user(services.database_url)
            token = issue_access_token(services.settings, user_id, "free", "user")
            bare, bare_port = start_web(services.root, services.settings, "bare", BARE)
            servers.append(bare)
            web, port = start_web(services.root, services.settings, "web")
            servers.append(web)
            # The same server without the request limiter, to show the limiter's share.
            unlimited = msgspec.structs.replace(
                services.settings, server=ServerSettings(rate_limits=False)
            )
            bare_limits, open_port = start_web(services.root, unlimited, "web-unlimited")
            servers.append(bare_limits)
            session = seed_session(port, token)
            body = json.dumps({"content": "How was your weekend?"}).encode()
            cases = {
                BARE_CASE: (bare_port, http_request("GET", "/bare", token), 200),
                ONE_ROW_CASE: (
                    bare_port,
                    http_request("GET", f"/bare/users/{user_id}", token),
                    200,
                ),
                "(b) cached GET /sessions": (
                    port,
                    http_request("GET", "/api/v1/sessions", token),
                    200,
                ),
                "(b) without the request limiter": (
                    open_port,
                    http_request("GET", "/api/v1/sessions", token),
                    200,
                ),
                "(c) uncached message page": (
                    port,
                    http_request("GET", f"/api/v1/sessions/{session}/messages", token),
                    200,
                ),
                "(d) message post": (
                    port,
                    http_request("POST", f"/api/v1/sessions/{session}/messages", token, body),
                    202,
                ),
            }
            servers_of = {bare_port: bare, port: web, open_port: bare_limits}
            if args.baseline:
                base, base_port = start_web(
                    services.root, services.settings, "web-baseline", source=args.baseline
                )
                servers.append(base)
                servers_of[base_port] = base
                cases["(b) cached GET /sessions, baseline code"] = (
                    base_port,
                    http_request("GET", "/api/v1/sessions", token),
                    200,
                )
                cases["(c) uncached message page, baseline code"] = (
                    base_port,
                    http_request("GET", f"/api/v1/sessions/{session}/messages", token),
                    200,
                )
                cases["(d) message post, baseline code"] = (
                    base_port,
                    http_request("POST", f"/api/v1/sessions/{session}/messages", token, body),
                    202,
                )
            cpu = CpuPerRequest(
                {
                    label: {"server": servers_of[case[0]].pid, **services.pids}
                    for label, case in cases.items()
                }
            )
            medians, rounds = alternating_rounds(cases, args, cpu)
            results = figures(cases, medians, rounds, cpu)
        finally:
            stop_all(servers)
    write_report(args, results)
    return 0


def figures(
    cases: dict[str, Case],
    medians: dict[str, float],
    rounds: dict[str, list[float]],
    cpu: CpuPerRequest,
) -> dict[str, dict[str, Any]]:
    """Per case: requests/s and its share of (a); the server side's CPU per request (the web
    process tree, PostgreSQL and both Redis servers; the load generator apart) and the requests
    per core-second that gives, with its share of (a)'s."""

    def server_side(label: str) -> float:
        """Microseconds of server-side CPU per request of ``label`` (the generator left out)."""
        return sum(v for tree, v in cpu.medians(label).items() if tree != LOAD_GENERATOR)

    ceiling = medians[BARE_CASE]
    per_core_ceiling = 1e6 / server_side(BARE_CASE)
    per_core_one_row = 1e6 / server_side(ONE_ROW_CASE)
    results: dict[str, dict[str, Any]] = {}
    for label in cases:
        used = cpu.medians(label)
        client = used.pop(LOAD_GENERATOR)
        per_core = 1e6 / server_side(label)
        results[label] = {
            "rps": medians[label],
            "ratio_to_bare": round(medians[label] / ceiling, 3),
            "cpu_us_per_request": {k: round(v, 1) for k, v in used.items()},
            "load_generator_cpu_us_per_request": round(client, 1),
            "requests_per_core_second": round(per_core),
            "per_core_ratio_to_bare": round(per_core / per_core_ceiling, 3),
            "per_core_ratio_to_one_row": round(per_core / per_core_one_row, 3),
            "rounds": rounds[label],
        }
        log(
            f"{label}: {medians[label]:.0f}/s ({medians[label] / ceiling:.3f} of bare),"
            f" {server_side(label):.0f} us server-side CPU per request"
            f" ({per_core / per_core_ceiling:.3f} of bare, {per_core / per_core_one_row:.3f} of"
            " one-row per core)"
        )
    return results


def write_report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    """Print the figures and write bench/results/<date>-micro.{json,md}."""
    body = [
        f"One Granian worker per server (same settings for Wingman and the bare app),"
        f" {args.connections} keep-alive connections, median of {args.rounds} alternating rounds"
        f" of {args.seconds:g} s; {os.cpu_count()} cores shared by client, servers, PostgreSQL"
        " and Redis.",
        "",
        "Server-side CPU is the web process (all its threads), PostgreSQL and both Redis servers,"
        " read from /proc; per core is requests per second of that CPU. The load generator's own"
        " CPU is shown apart and counted nowhere else.",
        "",
        "| case | requests/s | share of (a) | server CPU µs/request (web + PostgreSQL + Redis)"
        " | per core | share of (a) per core | share of (a2) per core"
        " | load generator µs/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, row in results.items():
        used = row["cpu_us_per_request"]
        parts = used["server"], sum(v for k, v in used.items() if k != "server")
        body.append(
            f"| {label} | {row['rps']:.0f} | {row['ratio_to_bare']:.3f}"
            f" | {sum(parts):.0f} ({parts[0]:.0f} + {parts[1]:.0f})"
            f" | {row['requests_per_core_second']} | {row['per_core_ratio_to_bare']:.3f}"
            f" | {row['per_core_ratio_to_one_row']:.3f}"
            f" | {row['load_generator_cpu_us_per_request']:.0f} |"
        )
    if args.baseline:
        body[1:1] = ["", f"Baseline code: {args.baseline_code}."]
    fields = {
        "baseline_code": args.baseline_code if args.baseline else None,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "cases": results,
    }
    write_results("micro", fields, body, args.tag)


if __name__ == "__main__":
    sys.exit(main())
