"""``deliver_otp``: the ``default`` queue's job that sends a one-time code.

The code travels through Redis under its own key (``wingman:otp:delivery:<request id>``, expiring
with the code), not in the job's arguments: SAQ writes a job's full arguments into its log line
when a job fails (and at DEBUG level always), and the code must never reach a log. The job's only
argument is the request id.

Outcomes are counted in the queue Redis hash ``wingman:metrics:otp_delivery`` (fields
``<channel>:<backend>:sent|failed``) for the metrics endpoint and ``wingmanctl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from redis.asyncio import Redis

from wingman.domain.accounts.delivery import DeliveryError, OtpMessage, backend_for, deliver
from wingman.domain.accounts.destinations import mask

if TYPE_CHECKING:
    # Only for annotations: wingman.worker imports this module to register the job.
    from wingman.worker import WorkerContext

log = structlog.get_logger(__name__)

METRICS_KEY = "wingman:metrics:otp_delivery"


def payload_key(request_id: str) -> str:
    return f"wingman:otp:delivery:{request_id}"


async def deliver_otp(ctx: WorkerContext, *, request_id: str) -> dict[str, Any]:
    """Send the code of ``request_id``; raise on failure so the queue retries with backoff."""
    settings = ctx["settings"]
    # The queue's own client: the payload lives on the queue-role Redis, as the job does.
    redis: Redis = ctx["worker"].queue.redis  # type: ignore[attr-defined]
    raw = await redis.get(payload_key(request_id))
    if raw is None:
        # The code expired before it could be sent: retrying cannot help.
        log.warning("otp_delivery_expired", request_id=request_id)
        return {"status": "expired"}
    message = msgspec.json.decode(raw, type=OtpMessage)
    backend = backend_for(settings.delivery, message.channel)
    job = ctx.get("job")
    try:
        await deliver(settings, message)
    except DeliveryError as exc:
        await redis.hincrby(METRICS_KEY, f"{message.channel}:{backend}:failed", 1)
        log.warning(
            "otp_delivery_failed",
            request_id=request_id,
            channel=message.channel,
            backend=backend,
            destination=mask(message.channel, message.destination),
            attempt=getattr(job, "attempts", None),
            error=str(exc),
        )
        raise
    await redis.hincrby(METRICS_KEY, f"{message.channel}:{backend}:sent", 1)
    # Sent: the code need not wait in Redis any longer.
    await redis.delete(payload_key(request_id))
    log.info(
        "otp_delivered",
        request_id=request_id,
        channel=message.channel,
        backend=backend,
        destination=mask(message.channel, message.destination),
    )
    return {"status": "sent", "backend": backend}
