"""The WebSocket's AsyncAPI document: valid AsyncAPI 3.0, and complete for what the server sends.

Validated offline against the official JSON Schema of AsyncAPI 3.0.0 (vendored in
tests/data/asyncapi); every event type, control frame and close code the code defines must be in
it, with the schema msgspec gives for its Struct. That the server's real frames match these
schemas is checked over a real socket in tests/integration/ai/test_ws_frames_documented.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, get_args

import jsonschema_rs
import msgspec
import pytest

from wingman import __version__
from wingman.domain.realtime.asyncapi import SCHEMA_REF, asyncapi_document
from wingman.domain.realtime.event_frames import SERVER_EVENTS, Envelope, EventType
from wingman.domain.realtime.protocol import (
    CLIENT_FRAMES,
    CLOSE_CODES,
    SERVER_CONTROL_FRAMES,
    CloseCode,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "asyncapi"
SRC = Path(__file__).resolve().parents[2] / "src" / "wingman"


def _offline(uri: str) -> Any:
    raise AssertionError(f"the validator tried to fetch {uri}")


@cache
def spec_validator() -> Any:
    schema = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text())
    return jsonschema_rs.validator_for(schema, retriever=_offline)


def document() -> dict[str, Any]:
    return asyncapi_document(version=__version__)


def spec_errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{error.instance_path}: {error.message[:300]}"
        for error in spec_validator().iter_errors(doc)
    ]


def test_the_vendored_schema_is_the_one_the_readme_names() -> None:
    readme = (DATA / "README.md").read_text()
    stated = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", readme, re.MULTILINE))
    assert set(stated) == {"asyncapi-3.0.0.schema.json", "LICENSE", "NOTICE"}
    for name, checksum in stated.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == checksum, name


def test_the_document_is_valid_asyncapi_3() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert spec_errors(doc) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda doc: doc["info"].pop("title"),
        lambda doc: doc["operations"]["sendEvents"].update(action="push"),
        lambda doc: doc["channels"]["realtime"].update(address=5),
        lambda doc: doc["components"]["schemas"]["HelloData"].update(type="objekt"),
    ],
)
def test_the_validator_refuses_a_broken_document(breakage: Any) -> None:
    doc = copy.deepcopy(document())
    breakage(doc)
    assert spec_errors(doc) != []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """What ``ref`` points to, following references to references."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return resolve(doc, node["$ref"])
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


def test_every_reference_resolves_inside_the_document() -> None:
    # The AsyncAPI schema does not follow references; a dangling one would pass it.
    doc = document()
    refs = refs_in(doc)
    assert len(refs) > 30
    for ref in refs:
        resolve(doc, ref)


def message_named(doc: dict[str, Any], name: str, *, event: bool) -> dict[str, Any]:
    """The schema of the frame of ``type`` ``name`` the server sends, an event or a control
    frame (``ping`` is also a client frame)."""
    found = []
    for operation in doc["operations"].values():
        if operation["action"] != "send":
            continue
        for ref in operation["messages"]:
            message = resolve(doc, ref["$ref"])
            schema = resolve(doc, message["payload"]["$ref"])
            if message["name"] == name and ("event_id" in schema["properties"]) == event:
                found.append(schema)
    assert len(found) == 1, (name, len(found))
    return found[0]


def struct_schemas(struct: type[msgspec.Struct]) -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components((struct,), ref_template=SCHEMA_REF)
    return schemas


def test_every_event_type_is_documented_with_its_structs_schema() -> None:
    doc = document()
    sent = {str(event.__struct_config__.tag) for event in SERVER_EVENTS}
    # The registry covers the event type names, and the document lists exactly these events.
    assert sent == set(get_args(EventType))
    documented_events = {
        message["name"]
        for message in doc["components"]["messages"].values()
        if "event_id" in resolve(doc, message["payload"]["$ref"])["properties"]
    }
    assert documented_events == sent
    components = doc["components"]["schemas"]
    for event in SERVER_EVENTS:
        tag = str(event.__struct_config__.tag)
        schema = message_named(doc, tag, event=True)
        assert schema["properties"]["type"] == {"enum": [tag]}
        envelope = struct_schemas(Envelope)["Envelope"]["properties"]
        assert schema["properties"]["event_id"] == envelope["event_id"]
        assert schema["properties"]["at"] == envelope["at"]
        assert set(schema["required"]) == {"event_id", "type", "at", "data"}
        expected = struct_schemas(event)
        assert schema["properties"]["data"] == expected[event.__name__]["properties"]["data"]
        # The payload's own schemas (MessageOut, its enums...) are msgspec's, every field
        # required: the server always encodes every field.
        for name, part in expected.items():
            if name == event.__name__:
                continue
            if "properties" in part:
                assert components[name] == {**part, "required": list(part["properties"])}, name
            else:
                assert components[name] == part, name


def test_every_control_frame_is_documented_with_its_structs_schema() -> None:
    doc = document()
    components = doc["components"]["schemas"]
    for frame in SERVER_CONTROL_FRAMES:
        tag = str(frame.__struct_config__.tag)
        schema = message_named(doc, tag, event=False)
        expected = struct_schemas(frame)[frame.__name__]
        assert schema["properties"] == expected["properties"], tag
        assert schema["required"] == list(expected["properties"]), tag
    for frame in CLIENT_FRAMES:
        tag = str(frame.__struct_config__.tag)
        # Client frames keep msgspec's optional fields: a client may leave them out.
        assert components[frame.__name__] == struct_schemas(frame)[frame.__name__], tag
    receiving = {
        resolve(doc, ref["$ref"])["name"]
        for operation in doc["operations"].values()
        if operation["action"] == "receive"
        for ref in operation["messages"]
    }
    assert receiving == {str(frame.__struct_config__.tag) for frame in CLIENT_FRAMES}


def test_every_close_code_is_documented_with_its_meaning() -> None:
    channel = document()["channels"]["realtime"]
    listed = {entry["code"]: entry for entry in channel["x-close-codes"]}
    assert set(listed) == {int(code) for code in CloseCode}
    assert set(CLOSE_CODES) == set(CloseCode)
    for code in CloseCode:
        assert listed[code]["name"] == code.name
        assert listed[code]["meaning"] == CLOSE_CODES[code].meaning
        assert listed[code]["client_action"] == CLOSE_CODES[code].client_action
        assert f"| {int(code)} | {code.name} |" in channel["description"]


def test_the_server_publishes_only_typed_events() -> None:
    # ``EventBus.publish`` takes any type and data (the transport); the server's own events go
    # through ``publish_event`` with a Struct of event_frames.py, so they match the document.
    untyped = re.compile(r"\.publish\(\s*[^,()]+,\s*[\"']")
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if untyped.search(path.read_text()) or ".publish_quietly(" in path.read_text()
    ]
    assert offenders == []
