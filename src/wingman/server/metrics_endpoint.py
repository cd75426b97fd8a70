"""``GET /metrics``: the Prometheus text of every web and worker process of this instance.

Open to loopback clients (a Prometheus or ``wingmanctl status`` on the host) without a token;
anyone else needs an admin's access token. The client address is the one the rate limits use,
so behind a trusted proxy a remote caller is not mistaken for the proxy's loopback address.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from redis.exceptions import RedisError
from saq import Queue
from saq.queue.redis import RedisQueue

from wingman.config import PublicSettings, Settings
from wingman.ops.backups import latest_backup
from wingman.queues import Queues
from wingman.server.auth import ALGORITHM, AccessToken, AuthUser, retrieve_user
from wingman.server.certificate_expiry import sample_certificate_expiry
from wingman.server.client_ip import ClientAddresses
from wingman.server.errors import Problem
from wingman.server.metrics import (
    BACKUP_LAST_SUCCESS,
    CONTENT_TYPE,
    QUEUE_DEPTH,
    QUEUE_OLDEST,
    exposition,
)

# The exposition format's media type without its charset parameter, which Litestar appends.
EXPOSITION_MEDIA_TYPE = CONTENT_TYPE.split("; charset=")[0]

log = structlog.get_logger(__name__)


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _require_admin(request: Request[Any, Any, Any], settings: Settings) -> None:
    """401 without a valid token, 403 ``admin-only`` for a signed-in non-admin."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not encoded:
        raise NotAuthorizedException("Authentication required")
    token = AccessToken.decode(
        encoded_token=encoded,
        secret=settings.security.jwt_key,
        algorithm=ALGORITHM,
        issuer=[settings.auth.issuer],
        require_claims=["exp", "iat", "sub"],
    )
    user: AuthUser = await retrieve_user(token, request)
    if not user.is_admin:
        raise Problem(403, "admin-only", "Metrics are for the host and for admins.")


async def oldest_waiting_seconds(queue: Queue) -> float:
    """How long the job at the head of ``queue``'s waiting list has waited to be taken.

    SAQ appends to the right of its ``queued`` list and workers take from the left, so the head
    is the oldest; 0 when nothing waits (or the job record is already gone). The wait counts
    from the latest of: enqueued, put back for a retry (SAQ's ``touched``; the retry delay is
    counted too), due (a scheduled job), so a retried or scheduled job is not taken for stuck.
    """
    if not isinstance(queue, RedisQueue):
        return 0.0
    head = await queue.redis.lindex(queue.namespace("queued"), 0)
    if head is None:
        return 0.0
    job = queue.deserialize(await queue.redis.get(head))
    if job is None or not job.queued:
        return 0.0
    since = max(job.queued / 1000, job.touched / 1000, float(job.scheduled))
    return max(0.0, time.time() - since)


async def sample_queue_depths(queues: Mapping[str, Queue]) -> None:
    """Set ``wingman_queue_depth`` and ``wingman_queue_oldest_seconds`` from the queue Redis.

    Skipped (and logged) for a queue whose Redis is unreachable.
    """
    for name, queue in queues.items():
        try:
            queued = await queue.count("queued")
            active = await queue.count("active")
            incomplete = await queue.count("incomplete")
            oldest = await oldest_waiting_seconds(queue)
        except (RedisError, OSError) as exc:
            log.warning("queue_depth_unavailable", queue=name, error=type(exc).__name__)
            continue
        QUEUE_DEPTH.labels(name, "queued").set(queued)
        QUEUE_DEPTH.labels(name, "active").set(active)
        QUEUE_DEPTH.labels(name, "scheduled").set(max(0, incomplete - queued - active))
        QUEUE_OLDEST.labels(name).set(round(oldest, 3))


def sample_backup_time(folder: Path) -> None:
    """Set ``wingman_backup_last_success_timestamp_seconds`` from the newest backup's manifest.

    Left unset while the folder holds no backup (a new host, a development stack), so an alert
    on the backup's age speaks only of an appliance that has made backups before.
    """
    try:
        newest = latest_backup(folder)
    except OSError as exc:
        log.warning("backup_time_unavailable", folder=str(folder), error=type(exc).__name__)
        return
    if newest is not None:
        BACKUP_LAST_SUCCESS.set(newest.created_at.timestamp())


def _read_everything(backup_folder: Path, public: PublicSettings) -> bytes:
    sample_backup_time(backup_folder)
    sample_certificate_expiry(public)
    return exposition()


@get(
    "/metrics",
    summary="Prometheus metrics of every web and worker process",
    description="Loopback clients need no token; anyone else needs an admin's access token.",
    exclude_from_auth=True,
    cache=False,
    tags=["ops"],
    # Prometheus text, not JSON (the charset is added to the header when it is sent).
    media_type=EXPOSITION_MEDIA_TYPE,
    # Anonymous from loopback, an admin's bearer token from anywhere else.
    security=[{}, {"BearerToken": []}],
)
async def metrics(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    queues: NamedDependency[Queues],
    client_addresses: NamedDependency[ClientAddresses],
) -> Response[bytes]:
    if not is_loopback(client_addresses.of(request.scope)):
        await _require_admin(request, settings)
    await sample_queue_depths(queues)
    # The backup manifests, the proxy's certificate and every process's metric files are read
    # with blocking calls: off the event loop.
    backup_folder = Path(settings.backup.dir)
    body = await anyio.to_thread.run_sync(_read_everything, backup_folder, settings.public)
    return Response(body)
