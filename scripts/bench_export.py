"""Does an account export keep the heavy worker's memory flat whatever the account's size?
(benchmark, not a test)

Starts a private PostgreSQL and Redis. For each size (default 10,000 and 1,000,000 messages) it
seeds one user with that many messages server-side (the chat scale benchmark's loader: 10,000
messages a session), starts a fresh real ``wingmanctl worker --queue heavy``, requests the export
the way the API does (a ``data_exports`` row, then the ``export_account`` job) and waits for it
to be ready. Reports the wall time from enqueue to ready, rows per second, the archive's size
and the worker's peak RSS (the kernel's high-water mark, VmHWM, of the whole process tree), then
checks the archive against its manifest. Writes bench/results/<date>-export.{json,md} and exits 1
when a peak RSS reaches 200 MB.

    .venv/bin/python scripts/bench_export.py [--sizes 10000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import msgspec
import psycopg
from bench_chat_scale import UUID7_SQL, seed_user_data
from benchkit import log, private_services, write_results

from wingman.config import ExportSettings, LogSettings, Settings
from wingman.devstack.processes import wait_for
from wingman.domain.privacy import exports
from wingman.domain.privacy.archive import verify
from wingman.loadtest.processes import process_tree
from wingman.queues import create_queue
from wingman.server.database import create_engine, session_maker

MAX_PEAK_RSS_MB = 200
MESSAGES_PER_SESSION = 10_000


def seed(conninfo: str, number: int, messages: int) -> UUID:
    """User ``seed<number>@example.org`` with ``messages`` messages; returns its id."""
    sessions = max(1, messages // MESSAGES_PER_SESSION)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(UUID7_SQL)
        conn.execute("SET synchronous_commit = off")
        with conn.transaction():
            seed_user_data(conn, number, number, sessions, messages // sessions)
        conn.execute("VACUUM ANALYZE")
        row = conn.execute(
            "SELECT id FROM users WHERE email = %s", (f"seed{number}@example.org",)
        ).fetchone()
    if row is None:
        raise SystemExit("the user was not seeded")
    return UUID(str(row[0]))


def peak_rss_mb(root: int) -> float:
    """The summed VmHWM (peak resident set) of ``root`` and its descendants."""
    total = 0
    for pid in process_tree([root]):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return round(total / 2**20, 1)


async def request_export(settings: Settings, user_id: UUID) -> UUID:
    engine = create_engine(settings.database, "bench-export")
    queue = create_queue(settings, "heavy")
    try:
        async with session_maker(engine)() as session:
            row = await exports.start_export(session, user_id)
            await session.commit()
        await exports.enqueue_export(queue, settings, row.id)
        return row.id
    finally:
        await queue.disconnect()
        await engine.dispose()


def export_status(conninfo: str, export_id: UUID) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT status FROM data_exports WHERE id = %s", (export_id,)).fetchone()
    return str(row[0]) if row else "missing"


def run_one(
    settings: Settings, conninfo: str, root: Path, number: int, size: int
) -> dict[str, float]:
    log(f"seeding a user with {size:,} messages")
    started = time.monotonic()
    user_id = seed(conninfo, number, size)
    log(f"seeded in {time.monotonic() - started:.0f} s; starting a heavy worker")
    home = root / f"worker-{size}"
    home.mkdir()
    config = home / "wingman.toml"
    config.write_bytes(msgspec.toml.encode(settings))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(WINGMAN_CONFIG=str(config), WINGMAN_TUNING=str(home / "tuning.toml"))
    with (home / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", "heavy"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if not wait_for(lambda: b"worker_started" in (home / "worker.log").read_bytes(), 60):
            raise SystemExit("the heavy worker did not start")
        idle_mb = peak_rss_mb(worker.pid)
        started = time.monotonic()
        export_id = asyncio.run(request_export(settings, user_id))
        finished = lambda: export_status(conninfo, export_id) not in ("pending", "running")  # noqa: E731
        if not wait_for(finished, 3600, interval=0.2):
            raise SystemExit("the export did not finish")
        seconds = time.monotonic() - started
        peak_mb = peak_rss_mb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(60)
    status = export_status(conninfo, export_id)
    if status != "ready":
        raise SystemExit(f"export {export_id} ended {status}: see {home / 'worker.log'}")
    archive = Path(settings.exports.dir) / exports.final_name(export_id)
    manifest = verify(archive)
    rows = sum(table.rows for table in manifest.tables)
    figures = {
        "messages": size,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "archive_mb": round(archive.stat().st_size / 2**20, 1),
        "worker_idle_rss_mb": idle_mb,
        "worker_peak_rss_mb": peak_mb,
    }
    log(f"{size:,} messages: {figures}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,1000000", help="messages per run, comma-separated"
    )
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    with private_services("export") as services:
        # The run waits for the worker's worker_started line (INFO, JSON).
        settings = msgspec.structs.replace(
            services.settings,
            exports=ExportSettings(dir=str(services.root / "exports")),
            log=LogSettings(level="INFO", format="json"),
        )
        conninfo = services.database_url.replace("postgresql+psycopg://", "postgresql://")
        runs = [
            run_one(settings, conninfo, services.root, number, size)
            for number, size in enumerate(sizes, start=1)
        ]
    ok = all(run["worker_peak_rss_mb"] < MAX_PEAK_RSS_MB for run in runs)
    body = [
        "| messages | rows | seconds | rows/s | archive MB | worker idle RSS MB"
        " | worker peak RSS MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['messages']:,} | {r['rows']:,} | {r['seconds']} | {r['rows_per_second']:,} |"
            f" {r['archive_mb']} | {r['worker_idle_rss_mb']} | {r['worker_peak_rss_mb']} |"
            for r in runs
        ),
        "",
        f"Peak RSS under {MAX_PEAK_RSS_MB} MB in every run: {'yes' if ok else 'NO'}.",
    ]
    write_results("export", {"runs": runs, "max_peak_rss_mb": MAX_PEAK_RSS_MB, "ok": ok}, body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
