"""The monitoring tools (Debian's prometheus and exporter packages) for the monitoring tests.

Found by :func:`tests.support.tools.required_tool`: a failure as root or in CI (where
``scripts/bootstrap`` installs them), a skip naming the package otherwise.
"""

from __future__ import annotations

from tests.support.tools import required_tool

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
}


def monitoring_tool(name: str) -> str:
    """The path of ``name``; fails as root or in CI when it is missing, else skips with a reason."""
    return required_tool(name, PACKAGES[name])
