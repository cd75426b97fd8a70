"""An answer given before the request body was read closes the connection, and says so.

Many answers come before the body is read: a 401 for a missing token, a 429 for a spent
allowance, a 413 for a body past the size limit, a refused connection over the per-address cap.
The rest of the body is still on the wire. Granian then closes the connection, but does not
always tell the client: measured against Granian alone, one keep-alive client posting 100 kB
bodies to an endpoint that answers at once lost 84 of 200 follow-up requests ("server
disconnected without sending a response") and none of 200 once the answer carried
``Connection: close``, which tells the client not to reuse the connection (RFC 9112 §9.6).

Draining the body instead would keep the connection, but would make the server read up to the
size limit for every refused request, which is what the refusals exist to avoid.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

CONNECTION_CLOSE = (b"connection", b"close")


def expects_body(scope: Scope) -> bool:
    """True when the request announces a body (a non-zero length, or chunked)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


class CloseOnUnreadBody:
    """ASGI wrapper: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not expects_body(scope):
            await self.app(scope, receive, send)
            return
        read_to_end = False

        async def tracking_receive() -> ReceiveMessage:
            nonlocal read_to_end
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                read_to_end = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not read_to_end:
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, CONNECTION_CLOSE]}
            await send(message)

        await self.app(scope, tracking_receive, closing_send)
