"""The monitoring tools (Debian's prometheus and exporter packages) for the monitoring tests.

``scripts/bootstrap`` installs them when it runs as root, as CI does; there a missing tool is a
failure. A developer who bootstraps without root gets a skip that says what to install.
"""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
}


def monitoring_tool(name: str) -> str:
    """The path of ``name``; fails as root or in CI when it is missing, else skips with a reason."""
    found = shutil.which(name)
    if found:
        return found
    why = (
        f"{name} is missing: install it with `sudo apt-get install {PACKAGES[name]}` "
        "(or run scripts/bootstrap as root)"
    )
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
