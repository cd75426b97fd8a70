"""The web client is type-checked against the server's schemas (docs/web-client.md).

The declarations the client's JSDoc names (src/wingman/web/types/) are generated from the
OpenAPI and AsyncAPI documents the app builds; these tests fail when they are not what the
generator makes of the current code, when ``tsc`` finds a type error in the client, and, as a
control, when a copy of the client reads a field the server does not send.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import missing, required_tool
from wingman.web import client_types

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "web-tools"
STATIC = ROOT / "src" / "wingman" / "web" / "static"


@pytest.fixture(scope="module")
def tsc() -> Path:
    """The pinned tsc (and openapi-typescript): scripts/bootstrap runs `npm ci` in web-tools/."""
    required_tool("npm", "npm")
    found = TOOLS / "node_modules" / ".bin" / "tsc"
    if not (found.exists() and client_types.GENERATOR.exists()):
        missing("web-tools/node_modules is incomplete: run scripts/bootstrap (it runs npm ci)")
    return found


def type_check(tsc: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tsc), "--noEmit", "--pretty", "false", "-p", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("tsc")
def test_the_checked_in_declarations_are_what_the_generator_makes_now() -> None:
    generated = client_types.generate()
    assert set(generated) == {client_types.TYPES / "api.d.ts", client_types.TYPES / "realtime.d.ts"}
    for path, text in generated.items():
        assert path.read_text() == text, f"{path.name} is out of date: run scripts/web-types"
    # What the client leans on is in them.
    assert "MessageOut: {" in generated[client_types.TYPES / "api.d.ts"]
    assert 'type: "message.delta";' in generated[client_types.TYPES / "realtime.d.ts"]


def test_the_realtime_unions_name_every_frame_each_side_sends() -> None:
    schemas = client_types.realtime_document()["components"]["schemas"]
    client = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ClientFrame"]["oneOf"]}
    server = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ServerFrame"]["oneOf"]}
    assert client == {"AuthFrame", "ResumeFrame", "PingFrame", "PongFrame"}
    assert {"HelloFrame", "ResyncRequiredFrame", "MessageDelta", "ExportReady"} <= server
    assert not client & server


def test_the_client_type_checks(tsc: Path) -> None:
    checked = type_check(tsc, TOOLS / "tsconfig.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every module opts in, so an editor checks them too.
    for script in STATIC.glob("*.js"):
        assert script.read_text().startswith("// @ts-check\n"), script.name


@pytest.mark.parametrize(
    ("module", "field", "wrong"),
    [
        ("chat.js", "detail.messages.next_cursor", "detail.messages.next_page"),
        ("realtime.js", "frame.data.heartbeat_seconds", "frame.data.heartbeat_interval"),
    ],
)
def test_a_client_reading_a_field_the_server_does_not_send_fails(
    tsc: Path, tmp_path: Path, module: str, field: str, wrong: str
) -> None:
    shutil.copytree(STATIC, tmp_path / "static")
    shutil.copytree(client_types.TYPES, tmp_path / "types")
    script = tmp_path / "static" / module
    source = script.read_text()
    assert field in source
    script.write_text(source.replace(field, wrong))
    config = tmp_path / "tsconfig.json"
    config.write_text(
        json.dumps(
            {
                "extends": str(TOOLS / "tsconfig.json"),
                "include": ["static/**/*.js", "types/*.d.ts"],
            }
        )
    )
    checked = type_check(tsc, config)
    assert checked.returncode != 0
    wrong_name = wrong.rsplit(".", 1)[1]
    assert f"Property '{wrong_name}' does not exist" in checked.stdout, checked.stdout
    assert f"static/{module}(" in checked.stdout
