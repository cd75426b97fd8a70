"""``wingmanctl``'s commands are imported on use, and each name leads to its command; it is the
one command line (``python -m wingman``, no ``wingman`` console script)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wingman.ctl.main import COMMANDS, SERVICE_COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted({*COMMANDS, *SERVICE_COMMANDS}))
def test_each_name_leads_to_its_command(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


OPERATOR_COMMANDS = ["status", "logs", "backup", "restore", "doctor", "users", "tls", "audit"]


def test_operator_commands_do_not_load_the_web_app_or_the_models() -> None:
    # What made every command start seconds late: the ORM models, Litestar, the migrations. One
    # interpreter loads all these commands: none of them may bring any of those in.
    probe = (
        "import sys; from wingman.ctl.main import main; import click;"
        f" [main.get_command(click.Context(main), n) for n in {OPERATOR_COMMANDS!r}];"
        " print(sorted(m for m in ('wingman.app', 'wingman.db.models', 'litestar',"
        " 'wingman.db.migrations') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"these commands load {loaded}"


def test_help_lists_the_service_commands_apart() -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    admin, _, services = result.stdout.partition("Service commands (run by the systemd units):")
    for name in SERVICE_COMMANDS:
        assert f"  {name} " in services
        assert f"  {name} " not in admin
    assert "  status " in admin
    assert "  status " not in services


def test_python_m_wingman_is_wingmanctl() -> None:
    by_module = subprocess.run(
        [sys.executable, "-m", "wingman", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert by_module.startswith("Usage: wingmanctl [OPTIONS] COMMAND")
    # Not compared verbatim: click wraps and cuts the help to the terminal's width.
    assert "Administer Wingman:" in by_module
    assert "Service commands (run by the systemd units):" in by_module
    for name in {*COMMANDS, *SERVICE_COMMANDS}:
        assert f"\n  {name} " in by_module


def test_wingmanctl_is_the_only_console_script() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"wingmanctl": "wingman.ctl:main"}


def test_service_commands_keep_their_options() -> None:
    serve = CliRunner().invoke(main, ["serve", "--help"]).stdout
    for option in ("--host", "--port", "--workers"):
        assert option in serve
    # Hidden (benchmarks only) but still accepted: an unknown option would be a usage error.
    assert "--app" not in serve
    assert "--app" in {
        o for p in main.get_command(click.Context(main), "serve").params for o in p.opts
    }
    worker = CliRunner().invoke(main, ["worker", "--help"]).stdout
    for word in ("--queue", "--processes", "ai", "default", "heavy"):
        assert word in worker
