"""Outside programs some tests drive (promtool, Prometheus and its exporters, a headless browser),
found in one way.

``scripts/bootstrap`` installs their Debian packages when it runs as root, as CI does; there a
missing tool is a failure. A developer who bootstraps without root gets a skip that names the
package to install.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def required_tool(name: str, package: str) -> str:
    """The path of the program ``name`` (from the Debian package ``package``); fails as root or
    in CI when it is missing, else skips, either way saying what to install."""
    found = shutil.which(name)
    if found:
        return found
    missing(
        f"{name} is missing: install it with `sudo apt-get install {package}` "
        "(or run scripts/bootstrap as root)"
    )


def missing(why: str) -> NoReturn:
    """Fail as root or in CI (where scripts/bootstrap installs everything), else skip."""
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
