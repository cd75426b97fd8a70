"""One-time sign-in links (``wingmanctl users login-link``): a way in before delivery works.

The first admin of a new appliance, or a user whose codes do not arrive, gets a link from the
command line instead of a code. A link is a row of ``otp_requests`` like a code, so it is spent
the same way (:class:`~wingman.domain.accounts.services.OtpService`): single use (``consumed_at``
is set in the same statement that checks it), short-lived (``expires_at``, 15 minutes unless the
admin says otherwise, at most an hour), attempts counted. Its secret is 256 random bits hashed
under its own purpose, so it cannot be redeemed as a code nor a code as a link.

The token, ``<request id>.<secret>``, travels in the link's fragment:
``https://<host>/api/v1/auth/login-link#<token>``. A fragment is never sent to the server, so the
token is in no access log, and a ``GET`` of the link (a browser, a chat app's link preview) only
loads a page: the page's script ``POST``s the token to ``/api/v1/auth/login-link`` when the
person presses *Sign in*. Only that ``POST`` spends it.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from uuid import UUID

from wingman.config import Settings
from wingman.server.errors import Problem

PATH = "/api/v1/auth/login-link"
DEFAULT_MINUTES = 15
MAX_MINUTES = 60


def link_token(request_id: UUID, secret: str) -> str:
    return f"{request_id}.{secret}"


def parse_link_token(token: str) -> tuple[UUID, str]:
    """The request id and secret of ``token``; a 400 problem when it is not one."""
    request_part, _, secret = token.strip().partition(".")
    try:
        request_id = UUID(request_part)
    except ValueError:
        raise Problem(400, "login-link-invalid", "This is not a sign-in link's token.") from None
    if not secret:
        raise Problem(400, "login-link-invalid", "This is not a sign-in link's token.")
    return request_id, secret


def default_base_url(settings: Settings, host_address: str) -> str:
    """Where users reach this server: the public domain; else, in production (the appliance,
    behind its proxy), ``host_address``; else the address Granian serves (development)."""
    public = settings.public
    if public.domain or settings.is_production:
        port = "" if public.https_port == 443 else f":{public.https_port}"
        return f"https://{public.domain or host_address}{port}"
    return f"http://{settings.server.host}:{settings.server.port}"


def login_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{PATH}#{token}"


@functools.cache
def login_link_asset(name: str) -> bytes:
    """The link's page or its script (``login_link_page/``), read once."""
    return (files(__package__) / "login_link_page" / name).read_bytes()
