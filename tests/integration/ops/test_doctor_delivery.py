"""``doctor``'s delivery checks against real local peers: SMTP (STARTTLS, AUTH), a webhook
gateway, an SMS provider, and dead ports. Nothing is ever sent by a check."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.certificates import self_signed, valid_for
from tests.support.sms_provider import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    SmsProvider,
    running_sms_provider,
)
from tests.support.smtp import MailServer, running_smtp
from wingman.config import (
    DeliverySettings,
    Settings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
)
from wingman.devstack.processes import free_port
from wingman.ops.delivery_probe import delivery_findings
from wingman.ops.findings import Finding

PASSWORD = "mail-password-0123"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (cert, key)."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    self_signed(cert, key, "localhost", not_after=valid_for(1), san="DNS:localhost,IP:127.0.0.1")
    return cert, key


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[MailServer]:
    """Submission-style: STARTTLS required before AUTH and mail."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with running_smtp(PASSWORD, tls_context=context) as server:
        yield server


@pytest.fixture
def plain_server() -> Iterator[MailServer]:
    """A server without TLS that still takes AUTH (a relay on a trusted network)."""
    with running_smtp(PASSWORD) as server:
        yield server


def check(delivery: DeliverySettings) -> list[Finding]:
    return delivery_findings(Settings(delivery=delivery))


def smtp(port: int, **changes: Any) -> DeliverySettings:
    values: dict[str, Any] = {
        "host": "localhost",
        "port": port,
        "tls": "starttls",
        "username": "wingman",
        "password": PASSWORD,
        "timeout": 5,
        **changes,
    }
    return DeliverySettings(email="smtp", sms="disabled", smtp=SmtpSettings(**values))


def only_email(findings: list[Finding]) -> Finding:
    email = [f for f in findings if f.check.startswith("email")]
    assert len(email) == 1, findings
    return email[0]


def no_secret(finding: Finding, secret: str) -> None:
    assert secret not in msgspec.json.encode(finding).decode()


def test_smtp_starttls_and_auth_pass_without_sending(
    starttls_server: MailServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    finding = only_email(check(smtp(starttls_server.port)))
    assert finding.state == "ok", finding
    assert finding.detail == "EHLO, STARTTLS, EHLO, AUTH accepted; nothing sent"
    assert starttls_server.mailbox.messages == []
    no_secret(finding, PASSWORD)


def test_smtp_certificate_that_does_not_verify_fails(starttls_server: MailServer) -> None:
    finding = only_email(check(smtp(starttls_server.port)))
    assert finding.state == "fail"
    assert "certificate does not verify" in finding.detail
    assert "name on the server's certificate" in finding.fix


def test_smtp_wrong_password_names_the_fix(plain_server: MailServer) -> None:
    wrong = "not-the-password-42"
    finding = only_email(check(smtp(plain_server.port, tls="none", password=wrong)))
    assert finding.state == "fail"
    assert finding.detail.startswith("AUTH refused for 'wingman': 535")
    assert "delivery.smtp.username and password" in finding.fix
    no_secret(finding, wrong)


def test_smtp_without_starttls_and_without_implicit_tls_fail(plain_server: MailServer) -> None:
    no_starttls = only_email(check(smtp(plain_server.port)))
    assert (no_starttls.state, no_starttls.detail) == ("fail", "the server offers no STARTTLS")
    assert "587" in no_starttls.fix
    no_tls = only_email(check(smtp(plain_server.port, tls="tls")))
    assert no_tls.state == "fail"
    assert no_tls.detail.startswith(f"no TLS on port {plain_server.port}")
    plain = only_email(check(smtp(plain_server.port, tls="none", username="", password="")))
    assert (plain.state, plain.detail) == ("ok", "EHLO accepted (no AUTH configured); nothing sent")
    assert plain_server.mailbox.messages == []


def test_smtp_dead_port_fails() -> None:
    finding = only_email(check(smtp(free_port())))
    assert finding.state == "fail"
    assert finding.detail == "cannot connect: Connection refused"
    assert "delivery.smtp.host and port" in finding.fix


@dataclass
class Gateway:
    url: str
    methods: list[str] = field(default_factory=list)
    status: int = 0  # 0: answer HEAD as a gateway that does not implement it


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    port = free_port()
    state = Gateway(url=f"http://127.0.0.1:{port}/otp")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.methods.append("POST")
            self.send_response(204)
            self.end_headers()

        def do_HEAD(self) -> None:
            # 501 is what a gateway that does not implement HEAD answers (as the stdlib does).
            state.methods.append("HEAD")
            self.send_response(state.status or 501)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def webhook(url: str) -> DeliverySettings:
    return DeliverySettings(
        email="webhook",
        sms="webhook",
        webhook=WebhookSettings(url=url, secret="s" * 32, timeout=5),
    )


def test_webhook_reachability_by_head(gateway: Gateway) -> None:
    [finding] = check(webhook(gateway.url))
    assert finding.check == "email+sms webhook"
    assert (finding.state, finding.detail) == (
        "ok",
        "reachable (HEAD answered 501); nothing sent",
    )
    gateway.status = 503
    [failing] = check(webhook(gateway.url))
    assert failing.state == "warn"
    assert "answered 503" in failing.detail
    assert gateway.methods == ["HEAD", "HEAD"]


def test_webhook_dead_port_fails() -> None:
    [finding] = check(webhook(f"http://127.0.0.1:{free_port()}/otp"))
    assert finding.state == "fail"
    assert finding.detail.startswith("no answer: ConnectError")
    assert "delivery.webhook.url" in finding.fix


@pytest.fixture
def provider() -> Iterator[SmsProvider]:
    with running_sms_provider() as running:
        yield running


def twilio(base_url: str, token: str = AUTH_TOKEN) -> DeliverySettings:
    return DeliverySettings(
        email="disabled",
        sms="twilio",
        twilio=TwilioSettings(
            base_url=base_url,
            account_sid=ACCOUNT_SID,
            auth_token=token,
            from_number=FROM_NUMBER,
            timeout=5,
        ),
    )


def sms_finding(findings: list[Finding]) -> Finding:
    [finding] = [f for f in findings if f.check.startswith("sms")]
    return finding


def test_sms_provider_credentials_are_checked_without_a_message(provider: SmsProvider) -> None:
    good = sms_finding(check(twilio(provider.base_url)))
    assert good.state == "ok", good
    assert good.detail.startswith("credentials accepted, account active")
    wrong = "wrong-token-0123456789abcdef"
    refused = sms_finding(check(twilio(provider.base_url, wrong)))
    assert refused.state == "fail"
    assert "401 (code 20003: Authenticate)" in refused.detail
    assert "account_sid and auth_token" in refused.fix
    no_secret(refused, wrong)
    no_secret(good, AUTH_TOKEN)
    provider.account_status = "suspended"
    suspended = sms_finding(check(twilio(provider.base_url)))
    assert (suspended.state, suspended.detail) == ("fail", f"account {ACCOUNT_SID} is suspended")
    assert provider.account_reads == 2
    assert provider.messages == []


def test_sms_provider_dead_port_fails() -> None:
    finding = sms_finding(check(twilio(f"http://127.0.0.1:{free_port()}")))
    assert finding.state == "fail"
    assert "delivery.twilio.base_url" in finding.fix
