"""``wingmanctl doctor``'s delivery checks: talk to each configured code backend, send nothing.

A setting that validates can still point at a server that is not there, refuses the password or
offers no TLS; sign-in then fails for every user at once, so the doctor asks the real peer:

- ``smtp``: connect (implicit TLS for ``tls = "tls"``), ``EHLO``, ``STARTTLS`` and ``EHLO``
  again for ``tls = "starttls"``, ``AUTH`` when ``username`` is set, then ``QUIT``. No
  ``MAIL FROM``: nothing is sent. Certificates are verified as delivery verifies them.
- ``webhook``: ``HEAD`` of ``delivery.webhook.url``, unsigned. A gateway need not implement
  ``HEAD``: any HTTP answer below 500 (a 405 or a 401 included) shows the gateway is there; a
  5xx is a warning; no answer (refused, timed out, DNS, TLS) is a failure. A ``POST`` probe was
  rejected: a gateway cannot tell it from a code to send.
- ``twilio``: ``GET {base_url}/2010-04-01/Accounts/{account_sid}.json`` with the account's
  credentials: it reads the account (status ``active`` expected), proving the SID and token,
  and sends no message.
- ``log`` (development only; production settings refuse it) and ``disabled`` are reported, not
  probed.

A finding never holds a password or token; the server's own words (``535 5.7.8 ...``) may be
quoted, since they are what a mail provider's help pages are searched by.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from typing import Any

import httpx

from wingman.config import Settings, SmtpSettings, TwilioSettings, WebhookSettings
from wingman.ops.findings import Finding, ok, problem

AREA = "delivery"


def delivery_findings(settings: Settings) -> list[Finding]:
    """One finding per backend in use (a backend serving both channels is probed once)."""
    delivery = settings.delivery
    channels: dict[str, list[str]] = {}
    for channel in ("email", "sms"):
        channels.setdefault(getattr(delivery, channel), []).append(channel)
    found = []
    for backend, uses in channels.items():
        label = "+".join(uses)
        if backend == "disabled":
            found.append(ok(AREA, label, "disabled: codes are not offered on this channel"))
        elif backend == "log":
            found.append(
                ok(AREA, f"{label} log", "codes are written to the worker log (development only)")
            )
        elif backend == "smtp":
            found.append(smtp_finding(delivery.smtp, label))
        elif backend == "webhook":
            found.append(webhook_finding(delivery.webhook, label))
        else:
            found.append(twilio_finding(delivery.twilio, label))
    return found


# -- SMTP ----------------------------------------------------------------------------------------


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {text}".strip()


def smtp_finding(smtp: SmtpSettings, label: str = "email") -> Finding:
    """Handshake with the mail server as delivery would, up to AUTH; then QUIT."""
    check = f"{label} smtp {smtp.host}:{smtp.port}"
    context = ssl.create_default_context()
    address_fix = (
        f"check delivery.smtp.host and port ({smtp.host}:{smtp.port}) against your mail "
        'provider\'s submission server (587 with tls = "starttls", or 465 with tls = "tls") '
        "and that this host may connect out to it"
    )
    try:
        if smtp.tls == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout, context=context
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    except ssl.SSLCertVerificationError as exc:
        return _certificate_problem(check, smtp, exc)
    except ssl.SSLError as exc:
        return problem(
            AREA,
            check,
            "fail",
            f"no TLS on port {smtp.port} ({exc.reason or exc})",
            'implicit TLS (tls = "tls") is spoken on port 465; for port 587 set tls = "starttls"',
        )
    except (OSError, smtplib.SMTPException) as exc:
        return problem(AREA, check, "fail", f"cannot connect: {_os_reason(exc)}", address_fix)
    try:
        return _smtp_session(client, smtp, check, context, address_fix)
    finally:
        client.close()


class _Stop(Exception):
    """Ends the SMTP session early with the finding that says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.detail)
        self.finding = finding


def _smtp_session(
    client: smtplib.SMTP, smtp: SmtpSettings, check: str, context: ssl.SSLContext, fix: str
) -> Finding:
    steps = ["TLS", "EHLO"] if smtp.tls == "tls" else ["EHLO"]
    try:
        code, _ = client.ehlo()
        if code != 250:
            raise _Stop(problem(AREA, check, "fail", f"EHLO refused ({code})", fix))
        if smtp.tls == "starttls":
            _starttls(client, smtp, check, context)
            steps += ["STARTTLS", "EHLO"]
        if smtp.username:
            _login(client, smtp, check)
            steps.append("AUTH")
        client.quit()
    except _Stop as stop:
        return stop.finding
    except smtplib.SMTPResponseException as exc:
        return problem(AREA, check, "fail", f"the server answered {_reply(exc)}", fix)
    except (OSError, smtplib.SMTPException) as exc:
        return problem(AREA, check, "fail", f"the session broke off: {_os_reason(exc)}", fix)
    note = "" if smtp.username else " (no AUTH configured)"
    detail = f"{', '.join(steps)} accepted{note}; nothing sent"
    if smtp.username and smtp.tls == "none" and not _loopback(smtp.host):
        return problem(
            AREA,
            check,
            "warn",
            detail + ", but the password crossed the network unencrypted",
            'set delivery.smtp.tls = "starttls" (port 587) or "tls" (port 465)',
        )
    return ok(AREA, check, detail)


def _starttls(
    client: smtplib.SMTP, smtp: SmtpSettings, check: str, context: ssl.SSLContext
) -> None:
    if not client.has_extn("starttls"):
        raise _Stop(
            problem(
                AREA,
                check,
                "fail",
                "the server offers no STARTTLS",
                "use the provider's submission port (587) or implicit TLS (port 465 with "
                'tls = "tls"); tls = "none" only for a relay on a network you trust',
            )
        )
    try:
        client.starttls(context=context)
    except ssl.SSLCertVerificationError as exc:
        raise _Stop(_certificate_problem(check, smtp, exc)) from None
    client.ehlo()


def _login(client: smtplib.SMTP, smtp: SmtpSettings, check: str) -> None:
    if not client.has_extn("auth"):
        after = " after STARTTLS" if smtp.tls == "starttls" else ""
        raise _Stop(
            problem(
                AREA,
                check,
                "fail",
                f"the server offers no AUTH{after}",
                "use the provider's submission port (587), which takes AUTH; or clear "
                "delivery.smtp.username for a relay that needs no login",
            )
        )
    # One attempt with the strongest mechanism both sides have, not smtplib's login(), which
    # tries the next mechanism after a refusal: each failed attempt counts towards a provider's
    # lock-out of the account.
    offered = client.esmtp_features.get("auth", "").upper().split()
    mechanism = next((m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered), "PLAIN")
    client.user, client.password = smtp.username, smtp.password
    answer = getattr(client, "auth_" + mechanism.lower().replace("-", "_"))
    try:
        client.auth(mechanism, answer)
    except smtplib.SMTPAuthenticationError as exc:
        raise _Stop(
            problem(
                AREA,
                check,
                "fail",
                f"AUTH refused for {smtp.username!r}: {_reply(exc)}",
                "set delivery.smtp.username and password to the mail account's (many "
                "providers need an app password or an SMTP key, not the web login)",
            )
        ) from None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _certificate_problem(
    check: str, smtp: SmtpSettings, exc: ssl.SSLCertVerificationError
) -> Finding:
    return problem(
        AREA,
        check,
        "fail",
        f"the server's certificate does not verify: {exc.verify_message}",
        f"set delivery.smtp.host to the name on the server's certificate (not {smtp.host!r} if "
        "it differs), or have the server's certificate fixed",
    )


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- HTTP backends -------------------------------------------------------------------------------


def _http_failure(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause: Any = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"the certificate does not verify: {cause.verify_message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def webhook_finding(webhook: WebhookSettings, label: str) -> Finding:
    """``HEAD`` of the gateway's URL: any HTTP answer below 500 shows it is there."""
    check = f"{label} webhook"
    fix = (
        f"check delivery.webhook.url ({webhook.url}): is the gateway running, and reachable from "
        "this host (firewall, DNS, certificate)?"
    )
    try:
        response = httpx.head(webhook.url, timeout=webhook.timeout)
    except httpx.HTTPError as exc:
        return problem(AREA, check, "fail", f"no answer: {_http_failure(exc)}", fix)
    # 501: the server does not implement HEAD, which still shows it is there.
    if response.status_code >= 500 and response.status_code != 501:
        return problem(
            AREA,
            check,
            "warn",
            f"reachable, but the gateway answered {response.status_code}",
            "look at the gateway's own logs: it fails on its side",
        )
    return ok(AREA, check, f"reachable (HEAD answered {response.status_code}); nothing sent")


def twilio_finding(twilio: TwilioSettings, label: str) -> Finding:
    """Read the provider account with the configured credentials; sends no message."""
    check = f"{label} twilio {twilio.base_url}"
    credentials_fix = (
        "set delivery.twilio.account_sid and auth_token to the account's (the provider's "
        "console shows both)"
    )
    try:
        response = httpx.get(
            twilio.account_url,
            auth=(twilio.account_sid, twilio.auth_token),
            headers={"Accept": "application/json"},
            timeout=twilio.timeout,
        )
    except httpx.HTTPError as exc:
        return problem(
            AREA,
            check,
            "fail",
            f"no answer: {_http_failure(exc)}",
            "check delivery.twilio.base_url and that this host may connect out to it",
        )
    body = _json(response)
    if response.status_code in (401, 403, 404):
        code = f" (code {body['code']}: {body.get('message', '')})" if "code" in body else ""
        return problem(
            AREA,
            check,
            "fail",
            f"the provider refused account {twilio.account_sid}: {response.status_code}{code}",
            credentials_fix,
        )
    if response.status_code != 200:
        return problem(
            AREA,
            check,
            "warn",
            f"the provider answered {response.status_code}",
            "try again later; the provider's status page says whether it is down",
        )
    status = str(body.get("status", "unknown"))
    if status != "active":
        return problem(
            AREA,
            check,
            "fail",
            f"account {twilio.account_sid} is {status}",
            "reactivate the account with the provider, or configure another one",
        )
    sender = twilio.from_number or twilio.messaging_service_sid
    return ok(AREA, check, f"credentials accepted, account active, sender {sender}; nothing sent")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
