"""Open file descriptors for the connections a web worker is planned to hold.

Every client connection is a file descriptor in the Granian worker that holds it, and a process
starts with the soft limit its parent had (often 1,024 in a login shell), far below the
``server.connections_per_worker`` a tuned host plans for. Past the limit, accept() fails with
EMFILE and clients wait unanswered, which looks like the connection wall the setting exists to
remove. So ``wingmanctl serve`` raises its own soft limit before Granian starts its workers (they
inherit it), up to the hard limit (the unit's ``LimitNOFILE``, or the shell's ``ulimit -Hn``),
and holds fewer connections than configured when even the hard limit is too low, saying so.
Under the appliance's unit, ``LimitNOFILE`` sets the soft limit as high as the hard one, so
nothing is raised there (the unit's system-call filter refuses ``setrlimit`` anyway).
"""

from __future__ import annotations

import resource

import msgspec

# Descriptors a worker needs besides client connections: database and Redis pools, log and
# metrics files, the listening socket, imported modules' files.
RESERVED_DESCRIPTORS = 1024


class ConnectionAllowance(msgspec.Struct, frozen=True, kw_only=True):
    """What a web worker may hold, given the open-file limits it runs under."""

    connections: int
    soft_limit: int
    hard_limit: int
    # False when the hard limit forced fewer connections than configured.
    as_configured: bool


def allowance(wanted: int, soft: int, hard: int) -> ConnectionAllowance:
    """The soft limit to set and the connections it allows, for ``wanted`` connections.

    Pure, so the decision is tested for any pair of limits; ``resource.RLIM_INFINITY`` (-1)
    as the hard limit means no ceiling.
    """
    needed = wanted + RESERVED_DESCRIPTORS
    ceiling = needed if hard == resource.RLIM_INFINITY else hard
    new_soft = max(soft, min(needed, ceiling))
    connections = min(wanted, max(1, new_soft - RESERVED_DESCRIPTORS))
    return ConnectionAllowance(
        connections=connections,
        soft_limit=new_soft,
        hard_limit=hard,
        as_configured=connections == wanted,
    )


def raise_for_connections(wanted: int) -> ConnectionAllowance:
    """Raise this process's soft open-file limit for ``wanted`` connections (children inherit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    plan = allowance(wanted, soft, hard)
    if plan.soft_limit != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (plan.soft_limit, hard))
    return plan
