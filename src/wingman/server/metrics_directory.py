"""The folder where one Wingman instance's processes keep their Prometheus values.

prometheus-client decides between single- and multi-process mode when it is first imported,
from ``PROMETHEUS_MULTIPROC_DIR``. So the entry points (``wingmanctl serve``, ``wingmanctl worker``)
call :func:`use_for_web` / :func:`use_for_worker` *before* importing the app or the worker, and
this module must not import prometheus-client itself.

Layout under the instance folder (``[metrics] dir``):

- ``web/``: every Granian worker of ``wingmanctl serve``. Wiped once by the serving process before
  it starts its workers (a worker that wiped it would delete its siblings' live files).
- ``worker-<queue>-<pid>/``: one SAQ worker process. A new process gets a new folder; folders of
  processes that no longer exist are removed when a worker of the same queue starts, so a
  restarted worker's counters start again from zero, as Prometheus expects of a restart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from wingman.config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def instance_folder(settings: Settings, port: int | None = None) -> Path:
    """``[metrics] dir``, or a temp folder named for the web port when that is empty.

    ``port`` is the one ``wingmanctl serve --port`` binds, when it differs from the settings';
    workers only know the settings' port, so such an instance should set ``[metrics] dir``.
    """
    if settings.metrics.dir:
        return Path(settings.metrics.dir)
    return Path(tempfile.gettempdir()) / f"wingman-metrics-{port or settings.server.port}"


def _use(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # Children (Granian's workers) inherit the environment.
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def use_for_web(settings: Settings, port: int | None = None) -> Path:
    """Wipe and select ``web/`` for this process and the workers it starts."""
    folder = instance_folder(settings, port) / "web"
    shutil.rmtree(folder, ignore_errors=True)
    return _use(folder)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def use_for_worker(settings: Settings, queue: str) -> Path:
    """Select a fresh ``worker-<queue>-<pid>/``, removing the folders of exited workers."""
    root = instance_folder(settings)
    prefix = f"worker-{queue}-"
    if root.is_dir():
        for old in root.glob(f"{prefix}*"):
            pid = old.name.removeprefix(prefix)
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    folder = root / f"{prefix}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    return _use(folder)
