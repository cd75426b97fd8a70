"""The whole development stack under one folder: PostgreSQL, two Redis roles, web and workers.

``var/`` (or the folder given) holds::

    devstack.json   ports and generated passwords/secrets (owner-only), made on the first ``up``
    wingman.toml    the settings every process reads (WINGMAN_CONFIG points here), owner-only
    postgres/       the cluster (data/ and postgresql.log)
    redis/          queue/ and cache/ (config, AOF, log, pid)
    run/            pid files of web and workers
    log/            web and worker logs

``postgres/`` and ``redis/`` are a :class:`~wingman.devstack.services.PrivateServices` on the
ports and passwords saved in ``devstack.json``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from wingman.config import QUEUE_NAMES
from wingman.devstack.binaries import find_postgres, find_redis
from wingman.devstack.postgres import PostgresCluster
from wingman.devstack.processes import (
    child_exit_status,
    free_port,
    pid_alive,
    port_open,
    read_pid,
    stop_process_group,
    wait_for,
)
from wingman.devstack.redis import RedisServer
from wingman.devstack.services import DATABASE, PrivateServices
from wingman.devstack.supervisor import kill_leftovers, log_line
from wingman.ops.templates import write_private

Report = Callable[[str], None]
DEFAULT_WEB_PORT = 8000


class DevStackError(RuntimeError):
    """The stack could not be brought up; the message says which part and why."""


class DevState(msgspec.Struct, forbid_unknown_fields=True):
    """What stays fixed between runs of one data folder."""

    postgres_port: int
    postgres_password: str
    redis_queue_port: int
    redis_cache_port: int
    redis_password: str
    web_port: int
    secret_key: str
    # Added with the accounts area; empty in a folder made before it, then generated once.
    jwt_key: str = ""
    otp_hash_key: str = ""


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    detail: str


def _pick_web_port(preferred: int | None) -> int:
    if preferred is not None:
        return preferred
    return DEFAULT_WEB_PORT if not port_open(DEFAULT_WEB_PORT) else free_port()


class DevStack:
    def __init__(self, root: Path, *, web_port: int | None = None) -> None:
        self.root = root.resolve()
        self._requested_web_port = web_port
        self.state_file = self.root / "devstack.json"
        self.settings_file = self.root / "wingman.toml"
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "log"
        # Web and worker processes this object started (``dev run`` reaps and restarts them).
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- state ---------------------------------------------------------------------------------

    def load_state(self) -> DevState | None:
        if not self.state_file.is_file():
            return None
        return msgspec.json.decode(self.state_file.read_bytes(), type=DevState)

    def state(self) -> DevState:
        """The saved state, or a new one (free ports, fresh secrets) saved on first use."""
        existing = self.load_state()
        if existing is not None:
            if not existing.jwt_key or not existing.otp_hash_key:
                existing = msgspec.structs.replace(
                    existing,
                    jwt_key=existing.jwt_key or secrets.token_urlsafe(48),
                    otp_hash_key=existing.otp_hash_key or secrets.token_urlsafe(48),
                )
                self._save(existing)
            if self._requested_web_port and self._requested_web_port != existing.web_port:
                existing = msgspec.structs.replace(existing, web_port=self._requested_web_port)
                self._save(existing)
            return existing
        state = DevState(
            postgres_port=free_port(),
            postgres_password=secrets.token_urlsafe(24),
            redis_queue_port=free_port(),
            redis_cache_port=free_port(),
            redis_password=secrets.token_urlsafe(24),
            web_port=_pick_web_port(self._requested_web_port),
            secret_key=secrets.token_urlsafe(48),
            jwt_key=secrets.token_urlsafe(48),
            otp_hash_key=secrets.token_urlsafe(48),
        )
        self._save(state)
        return state

    def _save(self, state: DevState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_private(self.state_file, msgspec.json.format(msgspec.json.encode(state)).decode())
        write_private(self.settings_file, self._settings_toml(state))

    def _settings_toml(self, state: DevState) -> str:
        services = self.services(state)
        settings = {
            "env": "development",
            "database": {"url": services.postgres.url(DATABASE)},
            "redis": {
                "queue_url": services.redis_queue.url(),
                "cache_url": services.redis_cache.url(),
            },
            "server": {"port": state.web_port},
            # Shared by the stack's web and worker processes (GET /metrics merges them).
            "metrics": {"dir": str(self.root / "metrics")},
            # Uploaded transcripts: written by web, read by the heavy worker.
            "imports": {"dir": str(self.root / "imports")},
            "exports": {"dir": str(self.root / "exports")},
            "security": {
                "secret_key": state.secret_key,
                "jwt_key": state.jwt_key,
                "otp_hash_key": state.otp_hash_key,
            },
        }
        header = (
            "# Written by `wingmanctl dev up` for this data folder; holds secrets (owner-only).\n"
        )
        return header + msgspec.toml.encode(settings).decode()

    # -- components ----------------------------------------------------------------------------

    def services(self, state: DevState | None = None) -> PrivateServices:
        """PostgreSQL and both Redis roles on the folder's saved ports and passwords."""
        state = state or self.state()
        return PrivateServices(
            self.root,
            postgres_port=state.postgres_port,
            postgres_password=state.postgres_password,
            redis_queue_port=state.redis_queue_port,
            redis_cache_port=state.redis_cache_port,
            redis_password=state.redis_password,
        )

    def postgres(self, state: DevState | None = None) -> PostgresCluster:
        return self.services(state).postgres

    def redis(self, role: str, state: DevState | None = None) -> RedisServer:
        return self.services(state).redis(role)

    def app_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["WINGMAN_CONFIG"] = str(self.settings_file)
        env.setdefault("WINGMAN_TUNING", str(self.root / "tuning.toml"))
        return env

    def _app_commands(self) -> dict[str, list[str]]:
        python = sys.executable
        commands = {"web": [python, "-m", "wingman", "serve"]}
        for queue in QUEUE_NAMES:
            commands[f"worker-{queue}"] = [python, "-m", "wingman", "worker", "--queue", queue]
        return commands

    def _app_pid(self, name: str) -> int | None:
        pidfile = self.run_dir / f"{name}.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        # Guard against a recycled pid: the process must still be one of ours.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"wingman" in cmdline else None

    # -- commands ------------------------------------------------------------------------------

    def up(self, report: Report = print, ready_timeout: float = 60) -> str:
        """Start whatever is not running yet and return the web base URL. Safe to repeat."""
        # Fail before starting anything when a binary is missing.
        find_postgres()
        find_redis()
        state = self.state()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

        services = self.services(state)
        services.start(database=DATABASE, report=report)

        # Imported here: the migrations pull in the ORM models, which every `wingmanctl` command
        # that only reads the stack's layout (status, logs, backup) would otherwise load too.
        from wingman.db.migrations import upgrade_to_head  # noqa: PLC0415

        upgrade_to_head(services.postgres.url(DATABASE))
        report("migrations: database is at head")

        for name, command in self._app_commands().items():
            if self._app_pid(name):
                report(f"{name}: already running")
                continue
            if name == "web" and port_open(state.web_port):
                raise DevStackError(
                    f"web: port {state.web_port} is taken by another program; "
                    f"choose another with `wingmanctl dev up --port N`"
                )
            pid = self._spawn(name, command)
            report(f"{name}: started (pid {pid}, log {self.log_dir / (name + '.log')})")

        base_url = f"http://127.0.0.1:{state.web_port}"
        if not self._wait_ready(base_url, ready_timeout):
            raise DevStackError(
                f"web did not become ready at {base_url}/health/ready within "
                f"{ready_timeout:.0f} s; see {self.log_dir / 'web.log'}"
            )
        return base_url

    def _spawn(self, name: str, command: list[str]) -> int:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.app_env(),
            cwd=self.root,
            # Own process group: `down` stops the whole group, and Ctrl-C in the terminal that ran
            # `dev run` reaches only the supervisor, which then stops everything in order.
            start_new_session=True,
        )
        log.close()
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        self._children[name] = proc
        return proc.pid

    # -- what the supervisor of `dev run` uses (devstack/supervisor.py) ----------------------

    def app_names(self) -> list[str]:
        return list(self._app_commands())

    def app_pid(self, name: str) -> int | None:
        return self._app_pid(name)

    def exit_status(self, name: str) -> int | None:
        """How a process this object started ended (None: running, not started here, or its
        status not collectable yet)."""
        child = self._children.get(name)
        return None if child is None else child_exit_status(child)

    def started_here(self, name: str) -> bool:
        return name in self._children

    def restart_app(self, name: str) -> int:
        """Start ``name`` again, after killing whatever is left of its old process group."""
        self.exit_status(name)  # reaps our own child, so that its group can empty
        pidfile = self.run_dir / f"{name}.pid"
        with contextlib.suppress(OSError, ValueError):
            kill_leftovers(int(pidfile.read_text().strip()))
        return self._spawn(name, self._app_commands()[name])

    def log_event(self, name: str, event: str, **fields: object) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            log.write(log_line(event, process=name, **fields))

    def stopped_services(self) -> list[str]:
        state = self.load_state()
        if state is None:
            return []
        return self.services(state).stopped()

    def _wait_ready(self, base_url: str, timeout: float) -> bool:
        def ready() -> bool:
            if self._app_pid("web") is None:
                return False
            try:
                return httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            if self._app_pid("web") is None:
                return False
            time.sleep(0.25)
        return False

    @contextlib.contextmanager
    def supervised(self) -> Iterator[None]:
        """While ``dev run`` keeps the stack up: its pid on file, so that a ``dev down`` from
        another terminal stops it first (else it would start the web and workers again)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._supervisor_file.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            self._supervisor_file.unlink(missing_ok=True)

    @property
    def _supervisor_file(self) -> Path:
        return self.run_dir / "dev-run.pid"

    def _stop_supervisor(self, report: Report, timeout: float) -> None:
        """Ask a ``dev run`` of this folder (another process) to stop; it stops the stack."""
        pid = read_pid(self._supervisor_file)
        if pid is None or pid == os.getpid():
            return
        os.kill(pid, signal.SIGTERM)
        if wait_for(lambda: not pid_alive(pid), timeout):
            report(f"dev run (pid {pid}): stopped")
        else:
            report(f"dev run (pid {pid}): still running after {timeout:g} s; stopping the rest")

    def down(self, report: Report = print, timeout: float = 30) -> None:
        """Stop what this folder started: a ``dev run`` keeping it up, web and workers, then
        Redis, then PostgreSQL."""
        state = self.load_state()
        if state is None:
            report(f"nothing to stop: {self.root} holds no dev stack")
            return
        # It stops every process in turn, each within ``timeout``.
        self._stop_supervisor(report, timeout * 2)
        for name in self._app_commands():
            pid = self._app_pid(name)
            if pid is None:
                continue
            clean = stop_process_group(pid, timeout)
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
            report(f"{name}: stopped{'' if clean else ' (killed after the grace period)'}")
        self.services(state).stop(report)

    def status(self) -> list[ComponentStatus]:
        state = self.load_state()
        if state is None:
            return []
        rows = [
            ComponentStatus(name, server.running(), server.pid(), f"127.0.0.1:{server.port}")
            for name, server in self.services(state).servers().items()
        ]
        for name in self._app_commands():
            pid = self._app_pid(name)
            detail = (
                f"http://127.0.0.1:{state.web_port}"
                if name == "web"
                else str(self.log_dir / f"{name}.log")
            )
            rows.append(ComponentStatus(name, pid is not None, pid, detail))
        return rows

    def wait_stopped(self, timeout: float = 30) -> bool:
        return wait_for(lambda: not any(row.running for row in self.status()), timeout)
