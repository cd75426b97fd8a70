"""A real SMTP server for tests (aiosmtpd on a free loopback port), with AUTH and optional TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from wingman.devstack.processes import free_port

USERNAME = "wingman"


@dataclass
class Mailbox:
    """What the server accepted: each envelope with its raw content."""

    messages: list[tuple[Envelope, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope, bytes(envelope.original_content or b"")))
        return "250 OK"


@dataclass
class MailServer:
    port: int
    mailbox: Mailbox


@contextmanager
def running_smtp(
    password: str, *, tls_context: ssl.SSLContext | None = None
) -> Iterator[MailServer]:
    """A server that takes AUTH as ``USERNAME``/``password``: with ``tls_context``,
    submission-style (STARTTLS required before AUTH and mail); without, a relay on a trusted
    network (AUTH in the clear)."""

    def authenticate(
        server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USERNAME.encode(),
            password.encode(),
        )
        # handled=False: aiosmtpd answers 535 itself (the default leaves the client waiting).
        return AuthResult(success=good, handled=False)

    mailbox, port = Mailbox(), free_port()
    tls: dict[str, Any] = (
        {"tls_context": tls_context, "require_starttls": True}
        if tls_context
        else {"auth_require_tls": False}
    )
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=authenticate, **tls
    )
    controller.start()
    try:
        yield MailServer(port, mailbox)
    finally:
        controller.stop()
