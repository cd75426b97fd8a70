"""A local SMS provider that speaks the Twilio-style Messages API, strictly.

It checks what a real provider relies on (method, path, basic auth, form encoding, the fields)
and answers the way such a provider does: ``201`` with a JSON message resource, or a JSON error
with ``code``, ``message``, ``more_info`` and ``status``. Anything off the expected wire format is
recorded in ``malformed`` and answered ``400``, so a test sees exactly what was wrong.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from wingman.devstack.processes import free_port

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "provider-auth-token-0123456789ab"
FROM_NUMBER = "+15005550006"
# A number the provider refuses, as Twilio does with error 21211.
INVALID_TO = "+15005550001"


@dataclass
class SmsProvider:
    base_url: str
    # Form fields of each accepted message, in order.
    messages: list[dict[str, list[str]]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    account_reads: int = 0
    # Answer 503 to the first message for each number listed (a provider's bad minute).
    fail_first: set[str] = field(default_factory=set)
    account_status: str = "active"


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@contextmanager
def running_sms_provider() -> Iterator[SmsProvider]:
    port = free_port()
    state = SmsProvider(base_url=f"http://127.0.0.1:{port}")
    messages_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    account_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def authenticated(self) -> bool:
            if self.headers.get("Authorization") == expected_auth:
                return True
            self.answer(401, _error(20003, "Authenticate", 401))
            return False

        def do_GET(self) -> None:
            if self.path != account_path:
                self.answer(404, _error(20404, "The requested resource was not found", 404))
                return
            if self.authenticated():
                state.account_reads += 1
                self.answer(
                    200,
                    {"sid": ACCOUNT_SID, "status": state.account_status, "friendly_name": "test"},
                )

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != messages_path:
                state.malformed.append(f"path {self.path}")
                self.answer(404, _error(20404, "The requested resource was not found", 404))
                return
            if not self.authenticated():
                return
            content_type = self.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip() != "application/x-www-form-urlencoded":
                state.malformed.append(f"content type {content_type}")
                self.answer(400, _error(20001, "Unsupported content type", 400))
                return
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
            senders = {"From", "MessagingServiceSid"} & form.keys()
            if not {"To", "Body"} <= form.keys() or len(senders) != 1:
                state.malformed.append(f"fields {sorted(form)}")
                self.answer(
                    400, _error(21603, "A 'From' or 'MessagingServiceSid' is required", 400)
                )
                return
            to = form["To"][0]
            if to == INVALID_TO:
                self.answer(
                    400, _error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
                )
                return
            if to in state.fail_first:
                state.fail_first.discard(to)
                self.answer(503, _error(20503, "Service unavailable", 503))
                return
            state.messages.append(form)
            sid = f"SM{len(state.messages):032x}"
            self.answer(
                201,
                {
                    "sid": sid,
                    "account_sid": ACCOUNT_SID,
                    "to": to,
                    "from": form.get("From", [None])[0],
                    "body": form["Body"][0],
                    "status": "queued",
                    "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
                },
            )

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
