"""Reading X.509 certificates and keys with the ``openssl`` command line tool.

What ``wingmanctl tls`` shows (subject, names, issuer, expiry, SHA-256 fingerprint) and what it
checks before importing a certificate (the key is the certificate's, the certificate has not
expired). Only public data is ever printed; the key goes through ``openssl`` on stdin.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wingman.config import PublicSettings


class CertificateError(ValueError):
    """A file is not a usable certificate or key; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str
    issuer: str
    names: list[str]
    not_after: datetime
    sha256: str

    @property
    def days_left(self) -> int:
        return int((self.not_after - datetime.now(UTC)).total_seconds() // 86400)


def _openssl(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("openssl") or "/usr/bin/openssl"
    return subprocess.run([binary, *args], input=data, capture_output=True, check=False, timeout=30)


def describe(data: bytes, *, der: bool = False) -> CertificateInfo:
    """The first certificate of ``data`` (PEM, or DER with ``der``)."""
    result = _openssl(
        [
            "x509",
            "-inform",
            "DER" if der else "PEM",
            "-noout",
            "-nameopt",
            "RFC2253",
            "-subject",
            "-issuer",
            "-enddate",
            "-fingerprint",
            "-sha256",
            "-ext",
            "subjectAltName",
        ],
        data,
    )
    if result.returncode != 0:
        raise CertificateError("not a certificate (openssl x509 cannot read it)")
    fields: dict[str, str] = {}
    names: list[str] = []
    for line in result.stdout.decode().splitlines():
        key, sep, value = line.partition("=")
        if line.startswith((" ", "\t")):
            names += [part.strip().split(":", 1)[-1] for part in line.split(",") if part.strip()]
        elif sep:
            fields[key.strip()] = value.strip()
    not_after = datetime.strptime(fields["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    return CertificateInfo(
        subject=fields.get("subject", ""),
        issuer=fields.get("issuer", ""),
        names=names,
        not_after=not_after,
        sha256=fields["sha256 Fingerprint"],
    )


def pair_problems(cert: Path, key: Path) -> list[str]:
    """Why this certificate and key cannot be served together (empty: they can).

    Raises :class:`CertificateError` when a file cannot be read as what it should be.
    """
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {exc.filename}: {exc.strerror}") from None
    cert_key = _openssl(["x509", "-noout", "-pubkey"], cert_pem)
    if cert_key.returncode != 0:
        raise CertificateError(f"{cert}: not a PEM certificate")
    # An empty passphrase: an encrypted key fails here instead of prompting.
    key_pub = _openssl(["pkey", "-pubout", "-passin", "pass:"], key_pem)
    if key_pub.returncode != 0:
        raise CertificateError(f"{key}: not an unencrypted PEM private key")
    problems = []
    if cert_key.stdout.strip() != key_pub.stdout.strip():
        problems.append(f"{key} is not the key of {cert} (their public keys differ)")
    if _openssl(["x509", "-noout", "-checkend", "0"], cert_pem).returncode != 0:
        problems.append(f"{cert} has expired ({describe(cert_pem).not_after.isoformat()})")
    return problems


def served_certificate(public: PublicSettings, timeout: float) -> bytes | None:
    """The certificate (DER) the proxy presents on this host, or None when it does not answer.

    Asked for the site's name (SNI), as a browser would; it is read, not verified.
    """
    server_name = public.domain or next(iter(public.extra_names), None)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", public.https_port), timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as conn,
        ):
            return conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
