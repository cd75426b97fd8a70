"""The distribution's Chromium for the web client's browser tests, driven by Playwright.

Playwright never downloads a browser here: it drives Debian's ``chromium`` package, which
``scripts/bootstrap`` installs when it runs as root, as CI does; there a missing browser is a
failure. A developer who bootstraps without root gets a skip that says what to install.
"""

from __future__ import annotations

import os
import shutil

import pytest

CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The path of Chromium; fails as root or in CI when it is missing, else skips with a reason."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    why = (
        "chromium is missing: install it with `sudo apt-get install chromium` "
        "(or run scripts/bootstrap as root)"
    )
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
