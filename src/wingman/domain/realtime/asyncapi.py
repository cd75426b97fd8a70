"""The AsyncAPI 3.0 document of the WebSocket (``/api/v1/ws``), built from the frames' own types.

Client developers get the REST API from the OpenAPI document; this is its counterpart for the
socket, served beside it at ``/api/docs/asyncapi.json``. Nothing in it is written by hand that
the code already says: the message schemas are msgspec's JSON Schemas of the Structs the server
decodes (:data:`.protocol.CLIENT_FRAMES`) and encodes (:data:`.protocol.SERVER_CONTROL_FRAMES`,
:data:`.event_frames.SERVER_EVENTS`), and the close codes come from :data:`.protocol.CLOSE_CODES`.
A new event type or field therefore shows in the document by itself, and a test
(tests/unit/test_asyncapi.py) fails when an event type or close code is missing from it.

Two facts are added here because no single Struct states them:

- an event frame is the event's Struct plus the :class:`.event_frames.Envelope` the bus adds
  (``event_id``, ``at``), so its schema is the two merged;
- the server encodes every field of its frames (no field is ever omitted), so in the frames it
  sends every property is required, defaults or not.

The document describes the application (the server): it ``receive``s the client's frames and
``send``s its own. Close codes have no place of their own in AsyncAPI 3.0: they are in the
channel's description and, for tools, in its ``x-close-codes`` extension.
"""

from __future__ import annotations

from typing import Any

import msgspec

from wingman.config import RealtimeSettings
from wingman.domain.realtime.event_frames import SERVER_EVENTS, Envelope
from wingman.domain.realtime.protocol import (
    BEARER_SUBPROTOCOL,
    CLIENT_FRAMES,
    CLOSE_CODES,
    MAX_CLIENT_FRAME_BYTES,
    MAX_CLIENT_FRAME_DEPTH,
    SERVER_CONTROL_FRAMES,
    AuthenticatedFrame,
    AuthFrame,
    HelloFrame,
    PingFrame,
    PongFrame,
    ResumedFrame,
    ResumeFrame,
    ResyncRequiredFrame,
    ServerPongFrame,
)

ASYNCAPI_VERSION = "3.0.0"
WS_PATH = "/api/v1/ws"
CHANNEL = "realtime"
SCHEMA_REF = "#/components/schemas/{name}"

# Settings in their default values; an appliance may set others (docs/configuration.md).
_DEFAULTS = RealtimeSettings()
_CHANNEL_DESCRIPTION = f"""\
One WebSocket per client for the user's live events: messages created, AI reply text as it is
written, replies finished or failed, exports ready. The REST API stays the source of truth: the
socket says *that* and *what* changed; after a gap, refetch over REST.

All frames are JSON text frames. Frames with an `event_id` are events; frames without one are
control frames. Ignore event and frame types you do not know.

**Authenticating.** Offer the subprotocols `{BEARER_SUBPROTOCOL}, <access token>` (the server
selects `{BEARER_SUBPROTOCOL}`), or connect without a subprotocol and send an `auth` frame
within {_DEFAULTS.auth_timeout_seconds:g} seconds (by default). The token is never accepted in
the URL. The server then sends `hello`.

**Resuming.** Right after `hello`, send `resume` with the `event_id` of the last event you
processed (or null for a fresh start): the missed events follow in order, then `resumed`. When
they are no longer kept (by default the history holds the newest {_DEFAULTS.history_size}
events for {_DEFAULTS.history_seconds:g} seconds) or the id was never issued,
`resync_required` comes instead: refetch over REST, then carry on with the live events after
its `event_id`. The server also sends `resync_required` when its event
numbering was lost and live ids jump.

**Heartbeats.** The server pings a quiet socket every `heartbeat_seconds` of `hello`; answer
with `pong` (any frame counts). A socket silent for
{_DEFAULTS.heartbeat_timeout_seconds:g} seconds (by default) is closed with 4010.

**Tokens.** Send a fresh access token in an `auth` frame before `expires_at`; the answer is
`authenticated`. Otherwise the socket closes with 4004 when the token expires.

**Limits.** A client frame over {MAX_CLIENT_FRAME_BYTES} bytes closes the socket with 1009; a
malformed frame, an unknown type, or nesting deeper than {MAX_CLIENT_FRAME_DEPTH} levels with
4000.
"""


def _close_code_table() -> str:
    rows = [
        f"| {int(code)} | {code.name} | {meaning.meaning} | {meaning.client_action} |"
        for code, meaning in sorted(CLOSE_CODES.items())
    ]
    header = "| code | name | meaning | what the client does |\n| --- | --- | --- | --- |"
    return "**Close codes.**\n\n" + header + "\n" + "\n".join(rows) + "\n"


def _components(types: tuple[type[msgspec.Struct], ...]) -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(types, ref_template=SCHEMA_REF)
    return schemas


def _all_required(schema: dict[str, Any]) -> None:
    if schema.get("type") == "object" and "properties" in schema:
        schema["required"] = list(schema["properties"])


def message_schemas() -> dict[str, Any]:
    """``components.schemas``: every frame's JSON Schema, by its Struct's name."""
    server = _components((*SERVER_CONTROL_FRAMES, *SERVER_EVENTS, Envelope))
    for schema in server.values():
        _all_required(schema)
    envelope = server.pop(Envelope.__name__)
    for event in SERVER_EVENTS:
        schema = server[event.__name__]
        properties = schema["properties"]
        schema["properties"] = {
            "event_id": envelope["properties"]["event_id"],
            "type": properties.pop("type"),
            "at": envelope["properties"]["at"],
            **properties,
        }
        schema["required"] = list(schema["properties"])
    client = _components(CLIENT_FRAMES)
    shared = set(client) & set(server)
    if shared:  # pragma: no cover - a naming slip caught by the tests
        raise ValueError(f"a client and a server frame share a schema name: {sorted(shared)}")
    return {**client, **server}


def _tag(frame: type[msgspec.Struct]) -> str:
    return str(frame.__struct_config__.tag)


def _message(frame: type[msgspec.Struct], *, direction: str) -> dict[str, Any]:
    doc = (frame.__doc__ or "").strip()
    message: dict[str, Any] = {
        "name": _tag(frame),
        "title": f"{_tag(frame)} ({direction})",
        "contentType": "application/json",
        "payload": {"$ref": SCHEMA_REF.format(name=frame.__name__)},
    }
    if doc:
        message["summary"] = " ".join(line.strip() for line in doc.splitlines())
    return message


def _refs(*frames: type[msgspec.Struct]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{CHANNEL}/messages/{frame.__name__}"} for frame in frames]


def _operation(
    action: str,
    summary: str,
    frames: tuple[type[msgspec.Struct], ...],
    reply: tuple[type[msgspec.Struct], ...] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
        "summary": summary,
        "messages": _refs(*frames),
    }
    if reply:
        operation["reply"] = {
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "messages": _refs(*reply),
        }
    return operation


def _operations() -> dict[str, Any]:
    events = tuple(SERVER_EVENTS)
    return {
        "receiveAuth": _operation(
            "receive",
            "A token: as the first frame (answered with hello) or a fresh one later "
            "(answered with authenticated).",
            (AuthFrame,),
            reply=(HelloFrame, AuthenticatedFrame),
        ),
        "receiveResume": _operation(
            "receive",
            "Where the stream starts: the missed events, then resumed; or resync_required.",
            (ResumeFrame,),
            reply=(ResumedFrame, ResyncRequiredFrame),
        ),
        "receivePing": _operation(
            "receive", "The client's heartbeat.", (PingFrame,), reply=(ServerPongFrame,)
        ),
        "receivePong": _operation("receive", "The answer to the server's ping.", (PongFrame,)),
        "sendControl": _operation(
            "send", "Control frames (no event_id).", tuple(SERVER_CONTROL_FRAMES)
        ),
        "sendEvents": _operation(
            "send", "The user's events, numbered by event_id, in order, each once.", events
        ),
    }


def close_codes() -> list[dict[str, Any]]:
    """Every close code with its meaning and the client's next step (``x-close-codes``)."""
    return [
        {
            "code": int(code),
            "name": code.name,
            "meaning": meaning.meaning,
            "client_action": meaning.client_action,
        }
        for code, meaning in sorted(CLOSE_CODES.items())
    ]


def asyncapi_document(*, version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``/api/v1/ws``; ``version`` is Wingman's."""
    messages: dict[str, Any] = {}
    for frame in CLIENT_FRAMES:
        messages[frame.__name__] = _message(frame, direction="client to server")
    for frame in SERVER_CONTROL_FRAMES:
        messages[frame.__name__] = _message(frame, direction="server to client")
    for event in SERVER_EVENTS:
        messages[event.__name__] = _message(event, direction="event")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Wingman realtime",
            "version": version,
            "description": (
                "The WebSocket of the Wingman conversation assistant: the user's live events, "
                "with resume after a reconnect. The REST API is described by the OpenAPI "
                "document at `/api/docs/openapi.json`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "wingman": {
                "host": "{host}",
                "protocol": "wss",
                "description": "A Wingman appliance behind its front proxy (`ws` on plain HTTP).",
                "variables": {"host": {"default": "localhost:8000", "description": "host[:port]"}},
                "security": [{"$ref": "#/components/securitySchemes/bearerSubprotocol"}],
            }
        },
        "channels": {
            CHANNEL: {
                "address": WS_PATH,
                "title": "The user's event stream",
                "description": _CHANNEL_DESCRIPTION + "\n" + _close_code_table(),
                "servers": [{"$ref": "#/servers/wingman"}],
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Sec-WebSocket-Protocol": {
                                    "type": "string",
                                    "description": (
                                        f"`{BEARER_SUBPROTOCOL}, <access token>`; "
                                        "or none, and an auth frame first"
                                    ),
                                }
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
                "x-close-codes": close_codes(),
            }
        },
        "operations": _operations(),
        "components": {
            "schemas": message_schemas(),
            "messages": messages,
            "securitySchemes": {
                "bearerSubprotocol": {
                    "type": "httpApiKey",
                    "in": "header",
                    "name": "Sec-WebSocket-Protocol",
                    "description": (
                        f"The access token of `POST /api/v1/auth/otp/verify`, offered as the "
                        f"subprotocols `{BEARER_SUBPROTOCOL}, <token>` (in a browser: "
                        f'`new WebSocket(url, ["{BEARER_SUBPROTOCOL}", token])`). Without it, '
                        "the first frame must be `auth` carrying the token."
                    ),
                }
            },
        },
    }
