"""The distribution's Chromium for the browser tests (the web client, the API docs page).

Playwright never downloads a browser here: it drives Debian's ``chromium`` package, which
``scripts/bootstrap`` installs when it runs as root, as CI does; there a missing browser is a
failure. A developer who bootstraps without root gets a skip that says what to install.
"""

from __future__ import annotations

from tests.support.tools import required_tool


def chromium_path() -> str:
    """The path of Chromium; fails as root or in CI when it is missing, else skips with a reason."""
    return required_tool("chromium", "chromium")
