"""Which units run on a node of each role (``node.role``), and how systemd is told.

One image serves every role, and ``wingman.target`` pulls in every unit. What a role does not
need is kept from starting by a marker file that ``wingmanctl tune --apply`` writes at boot
(before the units start) and each unit's condition reads:

- ``/etc/wingman/no-data`` (role ``app``): PostgreSQL, both Redis roles, their exporters and the
  backup job carry ``ConditionPathExists=!/etc/wingman/no-data``;
- ``/etc/wingman/no-app`` (role ``data``): web, workers, migrations and the front proxy carry
  ``ConditionPathExists=!/etc/wingman/no-app``.

An ``all-in-one`` node has neither file, so a host that was never tuned starts everything, as
before roles existed. A unit skipped by its condition counts as neither failed nor started:
``Requires=`` on it (web on migrations) is still met, and ``systemctl status`` says why.
"""

from __future__ import annotations

from pathlib import Path

from wingman.config import NodeRole

NO_APP_MARKER = "no-app"
NO_DATA_MARKER = "no-data"

# Units (as systemd names them, instances included) by the side of the cluster they belong to.
APP_UNITS: tuple[str, ...] = (
    "wingman-migrate.service",
    "wingman-web.service",
    "wingman-worker@ai.service",
    "wingman-worker@default.service",
    "wingman-worker@heavy.service",
    "wingman-proxy.service",
)
DATA_UNITS: tuple[str, ...] = (
    "postgresql@15-main.service",
    "wingman-redis@queue.service",
    "wingman-redis@cache.service",
    "wingman-postgres-exporter.service",
    "wingman-redis-exporter@queue.service",
    "wingman-redis-exporter@cache.service",
    "wingman-backup.service",
)
# Every node: settings and tuning at boot, and the host's own monitoring.
COMMON_UNITS: tuple[str, ...] = (
    "wingman-firstboot.service",
    "wingman-tune.service",
    "wingman-node-exporter.service",
    "wingman-prometheus.service",
    "wingman-alertmanager.service",
)


def marker_for(role: NodeRole) -> str | None:
    """The marker file (a name in /etc/wingman) a node of ``role`` needs, if any."""
    return {"app": NO_DATA_MARKER, "data": NO_APP_MARKER}.get(role)


def units_for(role: NodeRole) -> tuple[str, ...]:
    """The units that start on a node of ``role``."""
    app = APP_UNITS if role != "data" else ()
    data = DATA_UNITS if role != "app" else ()
    return COMMON_UNITS + data + app


def skipped_units(role: NodeRole) -> tuple[str, ...]:
    """The units a node of ``role`` keeps from starting."""
    return {"app": DATA_UNITS, "data": APP_UNITS}.get(role, ())


def marker_text(role: NodeRole) -> str:
    skipped = "\n".join(f"#   {unit}" for unit in skipped_units(role))
    return (
        f"# Written by `wingmanctl tune` for node.role = {role!r}; these units do not start here\n"
        f"# (their ConditionPathExists= names this file):\n{skipped}\n"
    )


def apply_markers(etc: Path, role: NodeRole) -> list[str]:
    """Write the marker ``role`` needs into ``etc`` and remove the other; what was done."""
    wanted = marker_for(role)
    done: list[str] = []
    for name in (NO_APP_MARKER, NO_DATA_MARKER):
        path = etc / name
        if name == wanted:
            text = marker_text(role)
            if not path.is_file() or path.read_text() != text:
                etc.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                done.append(f"{path}: written ({len(skipped_units(role))} units skipped here)")
        elif path.exists():
            path.unlink()
            done.append(f"{path}: removed")
    skipped = skipped_units(role)
    done.append(
        f"node.role {role}: "
        + (f"skipping {', '.join(skipped)}" if skipped else "every unit starts")
    )
    return done
