"""Does reading a conversation stay flat as the tables grow? (benchmark, not a test)

Starts a private PostgreSQL and Redis and a real `wingmanctl serve`, gives one probe user 20
sessions of 30 messages, and measures the session list and a message page over HTTP on the
empty database. Then it bulk-loads other users' data server-side (INSERT ... SELECT over
generate_series, UUIDv7 ids made in SQL, default 100k users, 1M sessions, 10M messages), runs
ANALYZE and measures the same requests again. Prints the figures, writes them to
bench/results/<date>-chat-scale.{json,md} and exits 1 when a p95 grew more than 2x.

    .venv/bin/python scripts/bench_chat_scale.py [--users N] [--sessions-per-user N]
        [--messages-per-session N] [--requests N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import httpx
import msgspec
import psycopg
from benchkit import private_services

from wingman.config import Settings
from wingman.devstack.processes import free_port, wait_for
from wingman.server.auth import issue_access_token

REPO = Path(__file__).resolve().parents[1]
MAX_P95_GROWTH = 2.0

# UUIDv7 in SQL: 48-bit Unix milliseconds, version 7, variant 10, random rest.
UUID7_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.uuid7(ts timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0')
          || '7' || substr(md5(random()::text), 1, 3)
          || to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid
$$;
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def seed_user_data(
    conn: psycopg.Connection, first: int, last: int, sessions: int, messages: int
) -> None:
    """Users first..last, each with `sessions` sessions of `messages` messages each.

    Runs inside the caller's transaction (the temporary tables drop at its commit).
    """
    params = {"first": first, "last": last, "sessions": sessions, "messages": messages}
    conn.execute(
        """
        CREATE TEMP TABLE batch_users ON COMMIT DROP AS
        SELECT pg_temp.uuid7(now() - g * interval '1 second') AS id, g
        FROM generate_series(%(first)s::int, %(last)s::int) AS g
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO users (id, email, tier, role, status, created_at, updated_at)
        SELECT id, 'seed' || g || '@example.org', 'free', 'user', 'active', now(), now()
        FROM batch_users
        """
    )
    # The LATERAL subquery mentions s so that random() is drawn for every session.
    conn.execute(
        """
        CREATE TEMP TABLE batch_sessions ON COMMIT DROP AS
        SELECT pg_temp.uuid7(t.ts) AS id, u.id AS user_id, t.ts
        FROM batch_users u
        CROSS JOIN generate_series(1, %(sessions)s::int) AS s
        CROSS JOIN LATERAL (
            SELECT now() - random() * interval '365 days' - s * interval '1 ms' AS ts
        ) AS t
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO chat_sessions (id, user_id, title, status, message_count, last_message_at,
                                   created_at, updated_at)
        SELECT id, user_id, 'seeded', 'active', %(messages)s, ts, ts, ts FROM batch_sessions
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO messages (id, session_id, sender, content, processing_status,
                              created_at, updated_at)
        SELECT pg_temp.uuid7(b.ts + n * interval '1 second'), b.id,
               CASE WHEN n %% 2 = 0 THEN 'ai' ELSE 'user' END,
               'a seeded line of conversation, about as long as a real one', 'done',
               b.ts + n * interval '1 second', b.ts + n * interval '1 second'
        FROM batch_sessions b CROSS JOIN generate_series(1, %(messages)s::int) AS n
        """,
        params,
    )


def measure(
    base: str, headers: dict[str, str], session_id: UUID, requests: int
) -> dict[str, dict[str, float]]:
    """p50/p95/p99 in ms of the session list and a message page, after a warm-up."""
    targets = {
        "sessions_list": "/api/v1/sessions?limit=20",
        "messages_page": f"/api/v1/sessions/{session_id}/messages?limit=50",
    }
    figures: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for name, path in targets.items():
            for _ in range(30):
                client.get(path).raise_for_status()
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            cuts = statistics.quantiles(samples, n=100)
            figures[name] = {
                "p50_ms": round(cuts[49], 2),
                "p95_ms": round(cuts[94], 2),
                "p99_ms": round(cuts[98], 2),
            }
    return figures


def load_bulk(conninfo: str, args: argparse.Namespace) -> tuple[dict[str, int], float]:
    """Seed the other users' data in batches of 10,000 users; returns row counts and seconds."""
    total = args.users
    batch = 10_000
    started = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(UUID7_SQL)
        conn.execute("SET synchronous_commit = off")
        for first in range(1, total + 1, batch):
            last = min(total, first + batch - 1)
            with conn.transaction():
                seed_user_data(conn, first, last, args.sessions_per_user, args.messages_per_session)
            log(f"seeded users {last:,}/{total:,} ({time.monotonic() - started:.0f} s)")
        conn.execute("VACUUM ANALYZE")
        counts = {}
        for table in ("users", "chat_sessions", "messages"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            counts[table] = row[0] if row else 0
    seed_seconds = round(time.monotonic() - started, 1)
    log(f"seeded {counts} in {seed_seconds} s")
    return counts, seed_seconds


def start_web(root: Path, settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
    """A real `wingmanctl serve` reading exactly `settings`; returns it and its base URL."""
    config = root / "wingman.toml"
    config.write_bytes(msgspec.toml.encode(settings))
    config.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(WINGMAN_CONFIG=str(config), WINGMAN_TUNING=str(root / "tuning.toml"))
    env["WINGMAN_LOG__LEVEL"] = "WARNING"
    server = subprocess.Popen(
        [sys.executable, "-m", "wingman", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    if not wait_for(lambda: _ready(base), 60, interval=0.25):
        server.terminate()
        raise SystemExit("web server did not become ready")
    return server, base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sessions-per-user", type=int, default=10)
    parser.add_argument("--messages-per-session", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--name", default="chat-scale")
    args = parser.parse_args()

    server: subprocess.Popen[bytes] | None = None
    config = {"shared_buffers": "1GB", "max_wal_size": "8GB", "work_mem": "64MB"}
    with private_services("chat-scale", config, pool={}) as services:
        try:
            settings = services.settings
            server, base = start_web(services.root, settings)

            conninfo = services.conninfo
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(UUID7_SQL)
                with conn.transaction():
                    seed_user_data(conn, 0, 0, 20, 30)  # the probe user: seed0@example.org
                probe = conn.execute(
                    "SELECT u.id, s.id FROM users u JOIN chat_sessions s ON s.user_id = u.id "
                    "WHERE u.email = 'seed0@example.org' ORDER BY s.updated_at DESC LIMIT 1"
                ).fetchone()
                conn.execute("ANALYZE")
            if probe is None:
                raise SystemExit("the probe user was not seeded")
            user_id, session_id = probe
            token = issue_access_token(settings, user_id, "free", "user")
            headers = {"Authorization": f"Bearer {token}"}

            log("measuring on the empty database")
            before = measure(base, headers, session_id, args.requests)

            counts, seed_seconds = load_bulk(conninfo, args)

            log("measuring on the loaded database")
            after = measure(base, headers, session_id, args.requests)
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)

    return write_report(args, counts, seed_seconds, before, after)


def write_report(
    args: argparse.Namespace,
    counts: dict[str, int],
    seed_seconds: float,
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
) -> int:
    """Print the figures, write them as JSON and Markdown; 1 when the budget was missed."""
    ratios = {name: round(after[name]["p95_ms"] / before[name]["p95_ms"], 2) for name in before}
    held = all(ratio <= MAX_P95_GROWTH for ratio in ratios.values())
    result = {
        "name": args.name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "rows": counts,
        "seed_seconds": seed_seconds,
        "requests_per_figure": args.requests,
        "empty": before,
        "loaded": after,
        "p95_growth": ratios,
        "budget": f"p95 loaded <= {MAX_P95_GROWTH}x p95 empty",
        "held": held,
    }
    out = REPO / "bench" / "results" / f"{dt.date.today().isoformat()}-{args.name}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# {args.name} ({result['date']})",
        "",
        f"Rows: {counts['users']:,} users, {counts['chat_sessions']:,} sessions, "
        f"{counts['messages']:,} messages (seeded in {seed_seconds} s). "
        f"{args.requests} sequential requests per figure, one client, after 30 warm-up requests.",
        "",
        "| request | empty p50 / p95 / p99 (ms) | loaded p50 / p95 / p99 (ms) | p95 growth |",
        "| --- | --- | --- | --- |",
    ]
    for name, b in before.items():
        a = after[name]
        lines.append(
            f"| {name} | {b['p50_ms']} / {b['p95_ms']} / {b['p99_ms']} | "
            f"{a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']} | {ratios[name]}x |"
        )
    lines += ["", f"Budget {result['budget']}: {'held' if held else 'MISSED'}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if held else 1


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
