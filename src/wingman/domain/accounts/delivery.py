"""Carrying a one-time code to its destination: ``log``, ``smtp``, ``webhook`` or ``twilio``.

- ``log`` (development): one structured log line, ``otp_code``, holding the code. It is the only
  line anywhere that ever does; production refuses this backend (``config.validate``).
- ``smtp``: a plain-text email through ``aiosmtplib`` (host, port, TLS mode and credentials from
  ``delivery.smtp``).
- ``webhook``: ``POST`` of ``{"channel", "destination", "code", "request_id"}`` as JSON to an SMS
  (or email) gateway, signed so the gateway can reject forgeries and replays:
  ``X-Wingman-Timestamp: <unix seconds>`` and
  ``X-Wingman-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.
- ``twilio`` (SMS only): the de-facto SMS API that Twilio defined and others copy: a form-encoded
  ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with HTTP basic auth
  (``account_sid:auth_token``) and the fields ``To``, ``From`` (or ``MessagingServiceSid``) and
  ``Body``; ``201`` with a JSON message resource is success, an error is JSON with ``code`` and
  ``message`` (the provider's error code, quoted in the failure).
- ``disabled``: the channel is not offered; code requests for it are refused before any job.

A failure raises :class:`DeliveryError`, whose message never holds the code (exceptions end up in
logs and in the job's stored error), and the queue retries the job with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from email.message import EmailMessage

import aiosmtplib
import httpx
import msgspec
import structlog

from wingman.config import DeliverySettings, Settings
from wingman.domain.accounts.destinations import mask

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Wingman-Signature"
TIMESTAMP_HEADER = "X-Wingman-Timestamp"


class OtpMessage(msgspec.Struct, frozen=True):
    """What a delivery job carries (kept in Redis, never in the job's arguments)."""

    request_id: str
    channel: str
    destination: str
    code: str


class DeliveryError(Exception):
    """A backend could not hand the code over; safe to log (no code in the message)."""


def backend_for(delivery: DeliverySettings, channel: str) -> str:
    backend: str = delivery.email if channel == "email" else delivery.sms
    return backend


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``"<timestamp>." + body``: what the gateway recomputes to verify."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


async def deliver(settings: Settings, message: OtpMessage) -> str:
    """Send ``message`` with the backend configured for its channel; returns the backend name."""
    backend = backend_for(settings.delivery, message.channel)
    if backend == "log":
        _deliver_to_log(message)
    elif backend == "smtp":
        await _deliver_by_smtp(settings, message)
    elif backend == "twilio":
        await _deliver_by_twilio(settings, message)
    elif backend == "webhook":
        await _deliver_by_webhook(settings.delivery, message)
    else:
        # A code asked for before the channel was disabled: no way to send it.
        raise DeliveryError(
            f"the {message.channel} channel is disabled (delivery.{message.channel})"
        )
    return backend


def _deliver_to_log(message: OtpMessage) -> None:
    log.info(
        "otp_code",
        request_id=message.request_id,
        channel=message.channel,
        destination=message.destination,
        code=message.code,
    )


async def _deliver_by_smtp(settings: Settings, message: OtpMessage) -> None:
    smtp = settings.delivery.smtp
    minutes = max(1, settings.otp.code_ttl_seconds // 60)
    email = EmailMessage()
    email["From"] = smtp.sender
    email["To"] = message.destination
    email["Subject"] = smtp.subject
    email.set_content(
        f"Your Wingman sign-in code is {message.code}\n\n"
        f"It expires in {minutes} minutes. If you did not ask for it, ignore this email.\n"
    )
    try:
        await aiosmtplib.send(
            email,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username or None,
            password=smtp.password or None,
            use_tls=smtp.tls == "tls",
            start_tls=smtp.tls == "starttls",
            timeout=smtp.timeout,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        # The class name says what went wrong; the server's text may quote the message.
        raise DeliveryError(f"smtp delivery failed: {type(exc).__name__}") from None


async def _deliver_by_webhook(delivery: DeliverySettings, message: OtpMessage) -> None:
    webhook = delivery.webhook
    body = msgspec.json.encode(
        {
            "channel": message.channel,
            "destination": message.destination,
            "code": message.code,
            "request_id": message.request_id,
        }
    )
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(webhook.secret, timestamp, body),
    }
    try:
        async with httpx.AsyncClient(timeout=webhook.timeout) as client:
            response = await client.post(webhook.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook delivery failed: {type(exc).__name__}") from None
    if not response.is_success:
        raise DeliveryError(f"webhook delivery failed: the gateway answered {response.status_code}")


async def _deliver_by_twilio(settings: Settings, message: OtpMessage) -> None:
    twilio = settings.delivery.twilio
    minutes = max(1, settings.otp.code_ttl_seconds // 60)
    form = {"To": message.destination, "Body": sms_text(message.code, minutes)}
    if twilio.messaging_service_sid:
        form["MessagingServiceSid"] = twilio.messaging_service_sid
    else:
        form["From"] = twilio.from_number
    try:
        async with httpx.AsyncClient(timeout=twilio.timeout) as client:
            response = await client.post(
                twilio.messages_url,
                data=form,
                auth=(twilio.account_sid, twilio.auth_token),
                headers={"Accept": "application/json"},
            )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"sms delivery failed: {type(exc).__name__}") from None
    if response.status_code not in (200, 201):
        reason = provider_error(response)
        # Providers quote the number in some messages; the log gets the masked form only.
        reason = reason.replace(message.destination, mask("sms", message.destination))
        raise DeliveryError(
            f"sms delivery failed: the provider answered {response.status_code}{reason}"
        )


def sms_text(code: str, minutes: int) -> str:
    return f"Your Wingman sign-in code is {code}. It expires in {minutes} minutes."


def provider_error(response: httpx.Response) -> str:
    """`` (code 20003: Authenticate)`` from a Twilio-style error body, or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or "code" not in body:
        return ""
    text = str(body.get("message", "")).strip()[:200]
    return f" (code {body['code']}: {text})" if text else f" (code {body['code']})"
