"""``wingman_tls_certificate_expiry_timestamp_seconds`` is the served certificate's notAfter.

A real certificate (made by ``openssl``) served by a real TLS server on loopback, in the place
of the front proxy; the gauge must hold that certificate's notAfter.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY

from tests.support.certificates import self_signed, valid_for
from wingman.config import PublicSettings
from wingman.devstack.processes import free_port
from wingman.server.certificate_expiry import sample_certificate_expiry

GAUGE = "wingman_tls_certificate_expiry_timestamp_seconds"


def make_certificate(folder: Path, name: str, days: int) -> tuple[Path, Path, datetime]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    return cert, key, self_signed(cert, key, name, not_after=valid_for(days))


class TlsServer:
    """Accepts connections on loopback and completes the TLS handshake with one certificate."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        # accept() wakes up to see the stop: closing a socket does not end a blocked accept.
        self.listener.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TlsServer, datetime]]:
    cert, key, not_after = make_certificate(tmp_path, "wingman.example", days=40)
    server = TlsServer(cert, key)
    try:
        yield server, not_after
    finally:
        server.close()


def test_gauge_holds_the_served_certificates_not_after(served: tuple[TlsServer, datetime]) -> None:
    server, not_after = served
    public = PublicSettings(domain="wingman.example", https_port=server.port)
    sample_certificate_expiry(public)
    assert REGISTRY.get_sample_value(GAUGE) == not_after.timestamp()
    # An imported certificate is read the same way.
    imported = msgspec.structs.replace(public, domain="", certificate="imported")
    sample_certificate_expiry(imported)
    assert REGISTRY.get_sample_value(GAUGE) == not_after.timestamp()


def test_no_proxy_or_the_internal_ca_leaves_the_gauge_alone(
    served: tuple[TlsServer, datetime], tmp_path: Path
) -> None:
    server, not_after = served
    sample_certificate_expiry(PublicSettings(domain="wingman.example", https_port=server.port))
    # The internal CA: the proxy answers, with a certificate that is not read.
    other_cert, other_key, other_end = make_certificate(tmp_path, "other.example", days=5)
    other = TlsServer(other_cert, other_key)
    try:
        sample_certificate_expiry(PublicSettings(https_port=other.port))
    finally:
        other.close()
    assert other_end != not_after
    # Nothing listening.
    sample_certificate_expiry(PublicSettings(domain="wingman.example", https_port=free_port()))
    assert REGISTRY.get_sample_value(GAUGE) == not_after.timestamp()
