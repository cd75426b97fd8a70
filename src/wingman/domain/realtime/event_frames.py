"""The events the server sends on the WebSocket, one msgspec Struct per event type.

Every publisher builds one of these and hands it to :meth:`.events.EventBus.publish_event`, so a
frame's ``data`` always has the shape its type promises, and the AsyncAPI document
(:mod:`.asyncapi`) is generated from the same Structs. A Struct holds the event's ``type`` (its
tag) and ``data``; the bus adds the :class:`Envelope` fields when it publishes, the time ``at``
and, in the publish script, the ``event_id`` in front (:mod:`.events`).

``session.updated`` is named in the design but not sent yet (a session's changes show in
``GET /sessions``): it gets a Struct here when something sends it, and clients ignore event
types they do not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from wingman.domain.chat.schemas import MessageOut
from wingman.domain.imports.schemas import ImportOut

EventType = Literal[
    "message.created",
    "message.delta",
    "message.completed",
    "message.failed",
    "export.ready",
    "import.finished",
]


class Envelope(msgspec.Struct, kw_only=True):
    """What the bus adds to every event it publishes."""

    # See the numbering in :mod:`.events`.
    event_id: Annotated[
        int,
        msgspec.Meta(
            description="Per user, one more than the previous event's; may jump after a "
            "server-side loss (then resync_required comes first). Below 2**53."
        ),
    ]
    at: Annotated[
        datetime, msgspec.Meta(description="When the event was published (RFC 3339, UTC).")
    ]


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of the events; the tag is the ``type``."""


class MessageCreated(Event, tag="message.created"):
    """A message was stored: the user's (sent from another device) or an AI reply being started
    (``processing_status`` ``queued``)."""

    data: MessageOut


class MessageDeltaData(msgspec.Struct, kw_only=True):
    message_id: UUID
    session_id: UUID
    offset: Annotated[
        int,
        msgspec.Meta(
            description="Where text goes: cut the reply shown at offset and append text (a "
            "retried stream starts again at 0)."
        ),
    ]
    text: str


class MessageDelta(Event, tag="message.delta"):
    """More text of an AI reply (tokens coalesced)."""

    data: MessageDeltaData


class MessageCompleted(Event, tag="message.completed"):
    """An AI reply is finished: ``content`` is the whole stored reply."""

    data: MessageOut


class MessageFailed(Event, tag="message.failed"):
    """An AI reply failed for good, or was cancelled (``processing_status`` says which)."""

    data: MessageOut


class ExportReadyData(msgspec.Struct, kw_only=True):
    id: UUID
    download_url: Annotated[
        str, msgspec.Meta(description="GET it with the access token until the export expires.")
    ]


class ExportReady(Event, tag="export.ready"):
    """An account export is written and can be downloaded."""

    data: ExportReadyData


class ImportFinished(Event, tag="import.finished"):
    """A transcript import ended: ``status`` ``done`` (its messages are in the session) or
    ``failed`` (nothing stored; ``errors`` say why), as ``GET /imports/{id}`` shows it."""

    data: ImportOut


ServerEvent = (
    MessageCreated | MessageDelta | MessageCompleted | MessageFailed | ExportReady | ImportFinished
)
# Every event the server sends; the AsyncAPI document lists exactly these.
SERVER_EVENTS: tuple[type[Event], ...] = (
    MessageCreated,
    MessageDelta,
    MessageCompleted,
    MessageFailed,
    ExportReady,
    ImportFinished,
)
