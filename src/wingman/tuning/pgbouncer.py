"""PgBouncer's numbers for a tuning plan (docs/scale-out.md): a pure function, no I/O.

When several app nodes share one PostgreSQL through PgBouncer in transaction mode, the app's
pools open *client* connections to PgBouncer, and only PgBouncer opens *server* connections to
PostgreSQL. The same budget as without a pooler applies on both sides of it:

- ``max_client_conn``: every pool of every app node full (pool_size per process, as the plan
  sizes it) plus the admin reserve; a client past it is refused, never queued.
- ``default_pool_size``: the busy connections PostgreSQL serves well, about 3 per core of the
  database host (the plan's rule for the pools without a pooler), whatever the number of nodes.
- ``max_db_connections``: PostgreSQL's ``max_connections`` less the admin reserve, which stays
  free for direct connections (migrations, backups, wingmanctl, monitoring).
"""

from __future__ import annotations

import msgspec

from wingman.tuning.plan import ACTIVE_CONNECTIONS_PER_CORE, Tuned, TuningPlan


class PgBouncerPlan(msgspec.Struct, frozen=True, kw_only=True):
    app_nodes: int
    default_pool_size: Tuned[int]
    max_db_connections: Tuned[int]
    max_client_conn: Tuned[int]


def pgbouncer_plan(plan: TuningPlan, app_nodes: int = 1) -> PgBouncerPlan:
    """PgBouncer in front of the PostgreSQL of ``plan``'s host, for ``app_nodes`` app nodes each
    running the processes and pools ``plan`` sizes."""
    if app_nodes < 1:
        raise ValueError("app_nodes must be at least 1")
    app, reserve = plan.app, plan.app.connection_reserve.value
    max_db = plan.postgres.max_connections.value - reserve
    active = ACTIVE_CONNECTIONS_PER_CORE * plan.host.cores
    pool = min(active, max_db)
    clients = app.peak_connections * app_nodes + reserve
    return PgBouncerPlan(
        app_nodes=app_nodes,
        default_pool_size=Tuned(
            pool,
            f"~{ACTIVE_CONNECTIONS_PER_CORE} busy connections per core ({active}) of the "
            f"database host, at most max_db_connections: small pools beat big ones",
        ),
        max_db_connections=Tuned(
            max_db,
            f"max_connections {plan.postgres.max_connections.value} less the reserve {reserve} "
            "kept for direct connections (migrations, backups, wingmanctl, monitoring)",
        ),
        max_client_conn=Tuned(
            clients,
            f"{app_nodes} app node(s) x pools at peak {app.peak_connections} + reserve "
            f"{reserve}; PgBouncer needs about this many open files plus max_db_connections",
        ),
    )


def pgbouncer_tuned(bouncer: PgBouncerPlan) -> dict[str, Tuned[int]]:
    """PgBouncer's settings by name, as pgbouncer.ini spells them, with their reasons."""
    return {
        "default_pool_size": bouncer.default_pool_size,
        "max_db_connections": bouncer.max_db_connections,
        "max_client_conn": bouncer.max_client_conn,
    }
