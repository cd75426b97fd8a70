"""Small process helpers: free ports, pid files, stopping process groups, the service user."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# PostgreSQL refuses to run as root; when we are root the servers run as this system user.
SERVICE_USER = "wingman"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def child_exit_status(child: subprocess.Popen[bytes], settle_s: float = 2.0) -> int | None:
    """``child``'s exit status (negative: the signal that killed it), None while it runs.

    A multi-threaded process killed by a signal shows as a zombie (what :func:`pid_alive` goes
    by) before its status can be collected, while its other threads are still exiting: seen in
    about half of the SIGKILLs of an eight-thread process. Polling then would report it as
    still running; once it is seen dead, its status is waited for (``settle_s`` at most).
    """
    status = child.poll()
    if status is None and not pid_alive(child.pid):
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = child.wait(timeout=settle_s)
    return status


def read_pid(pidfile: Path) -> int | None:
    """The live pid recorded in ``pidfile``, or None if absent or stale."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_process_group(pid: int, timeout: float) -> bool:
    """SIGTERM the group led by ``pid``; SIGKILL it if it is still there after ``timeout``.

    Returns True when it stopped on SIGTERM (a clean, graceful stop).
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if wait_for(lambda: not pid_alive(pid), timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 5)
    return False


@dataclass(frozen=True, slots=True)
class RunAs:
    """Who the private servers run as: ourselves, or the service user when we are root."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    @property
    def extra_groups(self) -> list[int] | None:
        # Dropping to the service user must also drop root's supplementary groups.
        return None if self.uid is None else []

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


_USER_LOCK = Path("/run/lock/wingman-system-user.lock")


@functools.cache
def service_identity() -> RunAs:
    """Run as ourselves unless we are root; then as the ``wingman`` system user (created once)."""
    if os.geteuid() != 0:
        return RunAs()
    entry = system_user(SERVICE_USER)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=SERVICE_USER)


def system_user(name: str) -> pwd.struct_passwd:
    """The entry of system user ``name``, created first when missing (root only).

    Looked up and created under an exclusive lock: ``useradd`` run by two processes at once for
    one user (two test workers starting on a fresh machine) left it created twice over, and the
    first process then ran PostgreSQL as a uid that no longer existed.
    """
    # /run/lock where the system has it; /etc otherwise (root can write both, users neither).
    folder = _USER_LOCK.parent if _USER_LOCK.parent.is_dir() else Path("/etc")
    with (folder / _USER_LOCK.name).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        created = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(
                f"could not create the {name!r} system user the services run as when "
                f"started by root (useradd: {created.stderr.strip() or created.returncode}); "
                "create it, or run as a normal user"
            ) from None


def launch(argv: list[str], run_as: RunAs, netns: str = "") -> tuple[list[str], dict[str, Any]]:
    """``argv`` and the ``subprocess`` keywords that run it as ``run_as``, inside network
    namespace ``netns`` when one is named (a multi-node topology on one machine).

    ``ip netns exec`` needs root, so inside a namespace the drop to the service user comes after
    it (``setpriv``) rather than from ``subprocess`` itself. It execs the command: the pid is the
    server's, so pid files and process groups work as without a namespace.
    """
    if not netns:
        return argv, {
            "user": run_as.uid,
            "group": run_as.gid,
            "extra_groups": run_as.extra_groups,
        }
    prefix = ["ip", "netns", "exec", netns]
    if run_as.uid is not None:
        prefix += [
            "setpriv",
            f"--reuid={run_as.uid}",
            f"--regid={run_as.gid}",
            "--clear-groups",
            "--",
        ]
    return prefix + argv, {}
