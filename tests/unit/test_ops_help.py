"""Each ops command's help names every option, what it shows and its exit statuses."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from wingman.ctl.main import main

COMMANDS = {
    ("status",): ["--data-dir", "--metrics-window", "--json", "Exit status", "degraded", "down"],
    ("backup",): ["--to", "--keep", "--data-dir", "--json", "Exit status", "sha256", "list"],
    ("backup", "list"): ["--dir", "--data-dir", "--json", "Exit status"],
    ("restore",): [
        "FILE",
        "--yes",
        "--with-files",
        "--json",
        "--data-dir",
        "Exit status",
        "64",
        "--single-transaction",
    ],
    ("doctor",): [
        "--data-dir",
        "--json",
        "Exit status",
        "fix",
        "secrets",
        "tuning",
        "clock",
        "delivery",
        "STARTTLS",
    ],
    ("logs",): ["--follow", "--lines", "--data-dir", "journalctl", "worker-heavy"],
    ("top",): [
        "--data-dir",
        "--interval",
        "--history",
        "--once",
        "--json",
        "Exit status",
        "Ctrl-C",
    ],
    ("updates", "show"): ["--json", "Exit status", "security", "reboot"],
    ("updates", "restart"): ["--scheduled", "--dry-run", "--json", "Exit status", "restart_window"],
}


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_help_is_complete(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    for word in COMMANDS[command]:
        assert word in result.output, f"{' '.join(command)} --help lacks {word!r}"


def test_top_level_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    for name in ("status", "top", "backup", "restore", "doctor", "logs", "updates"):
        assert name in result.output
