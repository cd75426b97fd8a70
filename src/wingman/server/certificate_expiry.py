"""``wingman_tls_certificate_expiry_timestamp_seconds``: the served certificate's notAfter.

Read at scrape time from what the front proxy presents on loopback (a TLS handshake, as a
browser would make), so it follows ACME renewals and imported certificates alike. Not read with
the internal CA: Caddy issues those certificates for hours and renews them itself, and their
users were told to trust the root, not a leaf. Parsing a certificate runs ``openssl``; the
result is kept per certificate, so a scrape only repeats the handshake.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import structlog

from wingman.config import PublicSettings
from wingman.ops.certificates import CertificateError, describe, served_certificate
from wingman.ops.proxy import certificate_mode
from wingman.server.metrics import TLS_CERTIFICATE_EXPIRY

# A scrape waits at most this long for the proxy.
HANDSHAKE_TIMEOUT = 2.0

log = structlog.get_logger(__name__)
_not_after: dict[str, datetime] = {}


def sample_certificate_expiry(public: PublicSettings) -> None:
    """Set the gauge from the served certificate; left alone when there is none to read."""
    if certificate_mode(public) == "internal":
        return
    der = served_certificate(public, HANDSHAKE_TIMEOUT)
    if der is None:
        return
    digest = hashlib.sha256(der).hexdigest()
    if digest not in _not_after:
        try:
            not_after = describe(der, der=True).not_after
        except (CertificateError, OSError) as exc:
            log.warning("certificate_unreadable", error=str(exc))
            return
        _not_after.clear()  # only the newest certificate matters
        _not_after[digest] = not_after
    TLS_CERTIFICATE_EXPIRY.set(_not_after[digest].timestamp())
