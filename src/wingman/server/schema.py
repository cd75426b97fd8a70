"""What every area of the API shares: where it is mounted and the base of its bodies."""

from __future__ import annotations

import msgspec

# Every route of the versioned API lives under this path.
API_PREFIX = "/api/v1"


class Schema(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base for API bodies: unknown fields are refused (a typo is an error, not ignored)."""
