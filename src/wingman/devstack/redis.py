"""A private Redis server for one role (queue or cache), run from the host's binary."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis
from redis.exceptions import RedisError as RedisClientError

from wingman.devstack.access import unreachable_reason
from wingman.devstack.binaries import find_redis
from wingman.devstack.processes import (
    RunAs,
    launch,
    port_open,
    read_pid,
    service_identity,
    stop_process_group,
    wait_for,
)
from wingman.ops.templates import render, write_private

RedisRole = Literal["queue", "cache"]


class RedisError(RuntimeError):
    """Redis could not be started; carries its log tail."""


@dataclass
class RedisServer:
    """``root/<role>/`` holds the rendered config, data (AOF for the queue role), log and pid."""

    root: Path
    role: RedisRole
    port: int
    password: str
    maxmemory: str = "256mb"
    binary: str = field(default_factory=find_redis)
    run_as: RunAs = field(default_factory=service_identity)
    # The address it listens on, and the network namespace it runs in (empty: the machine's).
    host: str = "127.0.0.1"
    netns: str = ""

    @property
    def dir(self) -> Path:
        return self.root / self.role

    @property
    def conf_file(self) -> Path:
        return self.dir / "redis.conf"

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        return self.pid() is not None

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_as.own(self.dir)
        text = render(
            f"redis/{self.role}.conf.tmpl",
            {
                "bind": self.host,
                "port": self.port,
                "password": self.password,
                "dir": self.dir,
                "pidfile": self.pid_file,
                "logfile": self.log_file,
                "daemonize": "yes",
                "maxmemory": self.maxmemory,
            },
        )
        write_private(self.conf_file, text)
        self.run_as.own(self.conf_file)

    def start(self, timeout: float = 30) -> bool:
        """Start (daemonized) and wait until it serves commands; False if it already ran."""
        if self.running():
            return False
        # Rendered once; afterwards `wingmanctl tune --apply` owns the file (its maxmemory).
        if not self.conf_file.is_file():
            self.write_config()
        reason = unreachable_reason(self.dir, self.run_as)
        if reason is not None:
            raise RedisError(f"redis ({self.role}): {reason}")
        argv, identity = launch([self.binary, str(self.conf_file)], self.run_as, self.netns)
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.dir,
            start_new_session=True,
            **identity,
        )
        if result.returncode != 0 or not wait_for(
            lambda: self.running() and port_open(self.port, self.host) and self._serving(),
            timeout,
        ):
            tail = ""
            if self.log_file.is_file():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-10:])
            raise RedisError(
                f"redis ({self.role}) did not start on port {self.port}: "
                f"{result.stderr.strip() or result.stdout.strip()}\n{tail}".strip()
            )
        return True

    def _serving(self) -> bool:
        """True once PING answers: the port opens before the AOF is read, and until then every
        command is refused with ``LOADING``."""
        client = redis.Redis.from_url(self.url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except RedisClientError:
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM: Redis flushes its AOF and exits."""
        pid = self.pid()
        if pid is None:
            return False
        stop_process_group(pid, timeout)
        return True
