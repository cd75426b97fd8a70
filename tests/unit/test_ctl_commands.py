"""``wingmanctl``'s commands are imported on use, and each name leads to its command."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from wingman.ctl.main import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
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
