"""The development layout of ``wingmanctl tune --apply --data-dir``: the PostgreSQL drop-in,
Redis configs and ``tuning.toml`` of a ``wingmanctl dev`` stack, and its own processes.

The one tuning module that depends on ``wingman.devstack``; the appliance's never load it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wingman.devstack.postgres import PostgresError
from wingman.devstack.processes import stop_process_group
from wingman.devstack.redis import RedisError
from wingman.ops.tune_activation import (
    ActivationError,
    app_processes_to_restart,
    by_kind,
    postgres_decision,
    redis_needs_restart,
    reload_postgres,
    set_redis_live,
)
from wingman.ops.tune_files import ROLES, FileChange, RenderedFile, Report
from wingman.tuning.plan import TuningPlan
from wingman.tuning.render import postgres_conf, redis_conf, redis_plan, redis_size, tuning_toml

if TYPE_CHECKING:
    from wingman.devstack.redis import RedisServer
    from wingman.devstack.stack import DevStack


@dataclass
class DevLayout:
    """A ``wingmanctl dev`` stack: its drop-in, Redis configs and ``tuning.toml``."""

    data_dir: Path

    def _stack(self) -> DevStack:
        # Imported when used: the dev stack pulls in migrations and an HTTP client.
        from wingman.devstack.stack import DevStack  # noqa: PLC0415

        return DevStack(self.data_dir)

    def render(self, plan: TuningPlan) -> list[RenderedFile]:
        stack = self._stack()
        state = stack.state()
        pg = stack.postgres(state)
        files = [
            RenderedFile(
                "postgres",
                pg.dropin,
                postgres_conf(plan, port=pg.port, socket_dir=""),
                owner=pg.run_as,
            )
        ]
        for role in ROLES:
            server = stack.redis(role, state)
            text = redis_conf(
                plan,
                role,
                port=server.port,
                password=server.password,
                dir=server.dir,
                daemonize=True,
            )
            files.append(
                RenderedFile(
                    f"redis-{role}", server.conf_file, text, mode=0o600, owner=server.run_as
                )
            )
        files.append(RenderedFile("tuning", stack.root / "tuning.toml", tuning_toml(plan)))
        return files

    def activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None:
        """Reload or restart the stack's servers and app processes whose files changed; a
        server that fails to stop or start is an :class:`ActivationError`."""
        try:
            self._activate(plan, changes, report)
        except (PostgresError, RedisError) as exc:
            raise ActivationError(str(exc)) from exc

    def _activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None:
        stack = self._stack()
        state = stack.state()
        kinds = by_kind(changes)
        pg = stack.postgres(state)
        if not pg.running():
            report("postgres: not running; the drop-in takes effect when it starts")
        else:
            reload, restart = postgres_decision(pg.conninfo(), plan)
            if restart:
                pg.stop()
                pg.start()
                report(f"postgres: restarted: {', '.join(restart)} need a restart")
            elif reload:
                reload_postgres(pg.conninfo())
                report(f"postgres: reloaded: {', '.join(reload)} change at runtime")
            else:
                report("postgres: running values already match the plan")
        for role in ROLES:
            server = stack.redis(role, state)
            change = kinds[f"redis-{role}"]
            if not server.running():
                report(f"redis-{role}: not running; the config takes effect when it starts")
            elif change.changed and redis_needs_restart(change):
                server.stop()
                _start_redis(server, plan, role)
                report(f"redis-{role}: restarted: its config changed beyond maxmemory")
            elif set_redis_live(server.url(), plan, role):
                report(f"redis-{role}: maxmemory set live (CONFIG SET), no restart")
            else:
                report(f"redis-{role}: running values already match the plan")
        for name in app_processes_to_restart(kinds.get("tuning")):
            if _restart_dev_process(stack, name):
                report(f"{name}: restarted: tuning.toml changed its settings")


def _start_redis(server: RedisServer, plan: TuningPlan, role: str) -> None:
    """Start a dev Redis with the planned maxmemory (its start renders the same template)."""
    server.maxmemory = redis_size(redis_plan(plan, role).maxmemory_mb.value)
    server.start()


def _restart_dev_process(stack: DevStack, name: str) -> bool:
    """Stop a running dev web/worker process gracefully and start it as `dev up` does."""
    pid = stack._app_pid(name)
    if pid is None:
        return False
    stop_process_group(pid, 30)
    stack._spawn(name, stack._app_commands()[name])
    return True
