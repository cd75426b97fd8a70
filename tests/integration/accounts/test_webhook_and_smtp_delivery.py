"""Delivery backends against real local servers: an HTTP gateway and an SMTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.integration.accounts.conftest import start_worker, stop_worker
from tests.support.smtp import Mailbox, running_smtp
from wingman.app import create_app
from wingman.config import DeliverySettings, Settings, SmtpSettings, WebhookSettings
from wingman.devstack.processes import free_port
from wingman.domain.accounts.delivery import DeliveryError, OtpMessage, deliver
from wingman.domain.accounts.jobs import METRICS_KEY

SECRET = "gateway-shared-secret-0123456789"


@dataclass
class Gateway:
    """An SMS gateway stand-in: checks the signature, records bodies, fails on request."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    # When set, the first delivery of each request id is answered 503 (a flaky gateway).
    fail_first: bool = False
    seen: set[str] = field(default_factory=set)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    port = free_port()
    state = Gateway(url=f"http://127.0.0.1:{port}/send")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            timestamp = self.headers.get("X-Wingman-Timestamp", "")
            expected = (
                "sha256="
                + hmac.new(
                    SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
                ).hexdigest()
            )
            signature = self.headers.get("X-Wingman-Signature", "")
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
            if not (fresh and hmac.compare_digest(expected, signature)):
                state.rejected += 1
                self.send_response(401)
            elif state.fail_first and json.loads(body)["request_id"] not in state.seen:
                state.seen.add(json.loads(body)["request_id"])
                self.send_response(503)
            else:
                state.received.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def with_delivery(settings: Settings, delivery: DeliverySettings) -> Settings:
    return msgspec.structs.replace(settings, delivery=delivery)


def webhook_delivery(url: str, secret: str = SECRET) -> DeliverySettings:
    return DeliverySettings(
        email="webhook", sms="webhook", webhook=WebhookSettings(url=url, secret=secret, timeout=5)
    )


def message(channel: str = "sms", destination: str = "+14155550123") -> OtpMessage:
    return OtpMessage(str(uuid.uuid4()), channel, destination, "042917")


async def test_webhook_posts_a_signed_body(settings: Settings, gateway: Gateway) -> None:
    sent = message()
    backend = await deliver(with_delivery(settings, webhook_delivery(gateway.url)), sent)
    assert backend == "webhook"
    assert gateway.rejected == 0
    assert gateway.received == [
        {
            "channel": "sms",
            "destination": "+14155550123",
            "code": "042917",
            "request_id": sent.request_id,
        }
    ]


async def test_webhook_with_the_wrong_secret_is_rejected_and_raises(
    settings: Settings, gateway: Gateway
) -> None:
    forged = with_delivery(settings, webhook_delivery(gateway.url, secret="x" * 32))
    with pytest.raises(DeliveryError, match="answered 401") as caught:
        await deliver(forged, message())
    assert gateway.rejected == 1
    assert "042917" not in str(caught.value)


async def test_webhook_unreachable_raises_without_the_code(settings: Settings) -> None:
    dead = with_delivery(settings, webhook_delivery(f"http://127.0.0.1:{free_port()}/send"))
    with pytest.raises(DeliveryError) as caught:
        await deliver(dead, message())
    assert "042917" not in str(caught.value)


MAIL_PASSWORD = "mail-password"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    with running_smtp(MAIL_PASSWORD) as server:
        yield server.mailbox, server.port


def smtp_delivery(port: int, password: str = MAIL_PASSWORD) -> DeliverySettings:
    return DeliverySettings(
        email="smtp",
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            tls="none",
            username="wingman",
            password=password,
            sender="Wingman <codes@wingman.test>",
            timeout=5,
        ),
    )


async def test_smtp_sends_the_code_by_email(
    settings: Settings, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp_server
    sent = message("email", "someone@example.org")
    assert await deliver(with_delivery(settings, smtp_delivery(port)), sent) == "smtp"

    assert len(mailbox.messages) == 1
    envelope, raw = mailbox.messages[0]
    assert envelope.rcpt_tos == ["someone@example.org"]
    assert envelope.mail_from == "codes@wingman.test"
    email = message_from_bytes(raw)
    assert email["Subject"] == "Your Wingman sign-in code"
    assert "042917" in email.get_payload(decode=True).decode()  # type: ignore[union-attr]


async def test_smtp_bad_credentials_raise(
    settings: Settings, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp_server
    refused = smtp_delivery(port, "wrong")
    refused = msgspec.structs.replace(
        refused, smtp=msgspec.structs.replace(refused.smtp, timeout=2)
    )
    with pytest.raises(
        DeliveryError, match="smtp delivery failed: SMTPAuthenticationError"
    ) as caught:
        await deliver(with_delivery(settings, refused), message("email"))
    assert mailbox.messages == []
    assert "wrong" not in str(caught.value)


async def test_failed_delivery_is_retried_logged_and_counted(
    settings: Settings, gateway: Gateway, tmp_path: Path, redis_queue: Redis
) -> None:
    """The full path: request over HTTP, a real worker, a gateway that fails once."""
    configured = with_delivery(settings, webhook_delivery(gateway.url))
    gateway.fail_first = True
    before = await redis_queue.hgetall(METRICS_KEY)
    worker = start_worker(configured, tmp_path)
    try:
        async with AsyncTestClient(app=create_app(configured)) as client:
            response = await client.post(
                "/api/v1/auth/otp/request",
                json={"channel": "sms", "destination": "+14155550188"},
            )
            assert response.status_code == 202
            request_id = response.json()["request_id"]
        worker.wait_for("otp_delivered", request_id=request_id)
        failure = worker.wait_for("otp_delivery_failed", request_id=request_id)
    finally:
        stop_worker(worker)

    assert failure["destination"].startswith("+1415")
    assert "*" in failure["destination"]
    assert "+14155550188" not in json.dumps(failure)
    mine = [body for body in gateway.received if body["request_id"] == request_id]
    assert len(mine) == 1
    assert request_id in gateway.seen
    code = mine[0]["code"]
    # Not in any line, SAQ's "Error processing job" included (as a whole number: timestamps
    # may hold its digits by chance).
    whole = re.compile(rf"(?<!\d){code}(?!\d)")
    assert not [entry for entry in worker.lines() if whole.search(json.dumps(entry))]
    assert any("Error processing" in str(entry.get("event")) for entry in worker.lines())
    after = await redis_queue.hgetall(METRICS_KEY)
    for field_name in (b"sms:webhook:failed", b"sms:webhook:sent"):
        assert int(after[field_name]) >= int(before.get(field_name, 0)) + 1
