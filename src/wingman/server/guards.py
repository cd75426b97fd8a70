"""Route guards shared by every area."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from wingman.server.auth import AuthUser
from wingman.server.errors import Problem


def requires_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Only admins pass: no caller is 401, a signed-in non-admin is 403 ``admin-only``."""
    user = connection.scope.get("user")
    if not isinstance(user, AuthUser):
        raise NotAuthorizedException("Authentication required")
    if not user.is_admin:
        raise Problem(403, "admin-only", "This route is for admins.")
