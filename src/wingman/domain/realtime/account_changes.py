"""Account changes announced to every web process, so open sockets follow them at once.

An access token is good for 15 minutes and a socket is authenticated once, so without this a
disabled account kept receiving events until its token expired. Whoever changes an account's
status, tier or role (the admin API, ``wingmanctl users``) calls
:func:`announce_account_change` *after the commit*; the message goes out on the dispatchers'
control channel (:data:`.events.CONTROL_CHANNEL`), which every web process listens to, and
each process then:

- forgets the account in its status cache, so REST answers the next request from the database
  (401 ``account-disabled`` for an account that is no longer active);
- closes the user's sockets with 4003 when the account is no longer active, and refuses the
  user's sockets still between their status check and their subscription;
- sends ``account_updated`` with the new tier and role to the user's sockets otherwise: the
  socket stays open, and the client refreshes its access token, whose claims are now stale.

When Redis cannot take the message the change still stands (it is committed): sockets of a
disabled account then close at the latest when their token expires, and REST refuses it within
``auth.status_cache_seconds``, as before.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wingman.db.models import UserRole, UserTier
from wingman.domain.realtime.events import CONTROL_CHANNEL

log = structlog.get_logger(__name__)


class AccountChange(msgspec.Struct, tag="account", tag_field="kind", kw_only=True):
    """The account's standing after a change, as committed."""

    user_id: UUID
    status: str
    tier: UserTier
    role: UserRole

    @property
    def active(self) -> bool:
        return self.status == "active"


_encoder = msgspec.json.Encoder()


async def announce_account_change(
    redis: Redis, user_id: UUID, *, status: str, tier: str, role: str
) -> None:
    """Tell every web process that ``user_id``'s account changed; call after the commit.

    Never raises for Redis: the change is committed whatever happens here.
    """
    change = AccountChange(user_id=user_id, status=status, tier=UserTier(tier), role=UserRole(role))
    try:
        await redis.publish(CONTROL_CHANNEL, _encoder.encode(change))
    except (RedisError, OSError) as exc:
        log.warning("account_change_not_announced", user_id=str(user_id), error=str(exc))
