"""Self-signed test certificates with chosen names and validity dates.

Built with ``cryptography`` rather than the openssl command line: ``openssl x509 -days -1``
(an expired certificate) is refused by OpenSSL 3.5 (Debian 13), and only 3.4+ has
``-not_before``/``-not_after``.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _alt_names(san: str) -> list[x509.GeneralName]:
    """``DNS:a,IP:127.0.0.1`` (openssl's subjectAltName syntax) as general names."""
    names: list[x509.GeneralName] = []
    for entry in filter(None, (part.strip() for part in san.split(","))):
        kind, _, value = entry.partition(":")
        if kind == "DNS":
            names.append(x509.DNSName(value))
        elif kind == "IP":
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            raise ValueError(f"unsupported subjectAltName entry {entry!r}")
    return names


def self_signed(
    cert: Path, key: Path, name: str, *, not_after: datetime, san: str = "", days_before: int = 1
) -> datetime:
    """Write a self-signed P-256 certificate for ``name`` (and ``san``) to ``cert`` and its key
    to ``key`` (PEM), valid from ``days_before`` days ago until ``not_after`` (whole seconds,
    returned as written)."""
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    end = not_after.astimezone(UTC).replace(microsecond=0)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(end, datetime.now(UTC)) - timedelta(days=days_before))
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(_alt_names(san or f"DNS:{name}")), False)
        # As `openssl req -x509` makes them, with the key usage a strict verifier (Python 3.13's
        # default context) wants of a certificate that is its own trust anchor.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(private.public_key()), False
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    return end


def valid_for(days: float) -> datetime:
    """The moment ``days`` from now (negative: in the past)."""
    return datetime.now(UTC) + timedelta(days=days)
