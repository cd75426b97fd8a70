"""Sign-in by one-time code through the HTTP interface, with codes read from the worker's log."""

from __future__ import annotations

import re
import time
import uuid

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.accounts.conftest import WorkerLog, bearer, request_code, sign_in
from tests.support.ratelimits import roomy_rate_limits
from wingman.app import create_app
from wingman.config import Settings


def unique_email() -> str:
    return f"Someone.{uuid.uuid4().hex[:10]}@Example.ORG"


async def test_email_sign_in_creates_a_free_user(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    email = unique_email()
    body = await sign_in(client, otp_worker, "email", email)

    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert body["refresh_expires_in"] == 30 * 86_400
    user = body["user"]
    assert user["email"] == email.lower()
    assert (user["tier"], user["role"], user["status"]) == ("free", "user", "active")

    me = await client.get("/api/v1/me", headers=bearer(body))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"]


async def test_second_sign_in_finds_the_same_account_in_any_case(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    email = unique_email()
    first = await sign_in(client, otp_worker, "email", email)
    second = await sign_in(client, otp_worker, "email", email.upper())
    assert first["user"]["id"] == second["user"]["id"]


async def test_phone_sign_in_normalises_to_e164(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    suffix = f"{time.time_ns() % 10_000:04d}"
    body = await sign_in(client, otp_worker, "sms", f"+1 (415) 555-{suffix}")
    assert body["user"]["phone"] == f"+1415555{suffix}"
    assert body["user"]["email"] is None


async def test_code_appears_only_in_the_log_backend_line(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    request_id = await request_code(client, "email", unique_email())
    code = otp_worker.code_for(request_id)
    otp_worker.wait_for("otp_delivered", request_id=request_id)

    entries = otp_worker.lines()
    # The code as a whole number (a timestamp may contain its digits by chance).
    whole = re.compile(rf"(?<!\d){code}(?!\d)")
    holding = [entry for entry in entries if whole.search(str(entry))]
    assert [entry["event"] for entry in holding] == ["otp_code"]
    assert holding[0]["request_id"] == request_id
    # SAQ's per-job INFO lines (which would carry the job's arguments) are not written at all.
    assert not [e for e in entries if e.get("logger") == "saq" and e.get("level") == "info"]


async def test_unknown_and_known_destinations_look_the_same(
    settings: Settings, otp_worker: WorkerLog
) -> None:
    # A roomy allowance: this test makes more requests from one address than the throttle allows.
    async with roomy_rate_limits(settings), AsyncTestClient(app=create_app(settings)) as client:
        await _compare_known_and_unknown(client, otp_worker)


async def _compare_known_and_unknown(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    known = unique_email()
    await sign_in(client, otp_worker, "email", known)
    unknown = unique_email()

    async def timed(destination: str) -> tuple[int, set[str], float]:
        start = time.perf_counter()
        response = await client.post(
            "/api/v1/auth/otp/request", json={"channel": "email", "destination": destination}
        )
        return response.status_code, set(response.json()), time.perf_counter() - start

    known_status, known_keys, _ = await timed(known)
    unknown_status, unknown_keys, _ = await timed(unknown)
    assert known_status == unknown_status == 202
    assert known_keys == unknown_keys == {"request_id", "expires_in"}

    # Timing: the best of a few rounds each, interleaved so drift hits both alike. Both paths
    # run the same statements, so only noise separates them; the bound is loose for CI.
    known_times, unknown_times = [], []
    for round_ in range(5):
        status, _, elapsed = await timed(known)
        assert status == 202
        known_times.append(elapsed)
        status, _, elapsed = await timed(f"x{round_}{unknown}")
        assert status == 202
        unknown_times.append(elapsed)
    ratio = min(known_times) / min(unknown_times)
    assert 0.33 < ratio < 3.0, (known_times, unknown_times)


async def test_sixth_attempt_fails_even_with_the_right_code(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    request_id = await request_code(client, "email", unique_email())
    code = otp_worker.code_for(request_id)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for attempt in range(1, 6):
        response = await client.post(
            "/api/v1/auth/otp/verify", json={"request_id": request_id, "code": wrong}
        )
        assert response.status_code == 400
        problem = response.json()
        assert problem["type"] == "urn:wingman:problem:otp-code-invalid"
        assert problem["attempts_left"] == 5 - attempt

    response = await client.post(
        "/api/v1/auth/otp/verify", json={"request_id": request_id, "code": code}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:wingman:problem:otp-attempts-exhausted"


async def test_a_used_code_cannot_be_replayed(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    request_id = await request_code(client, "email", unique_email())
    code = otp_worker.code_for(request_id)
    payload = {"request_id": request_id, "code": code}
    assert (await client.post("/api/v1/auth/otp/verify", json=payload)).status_code == 200

    replay = await client.post("/api/v1/auth/otp/verify", json=payload)
    assert replay.status_code == 400
    assert replay.json()["type"] == "urn:wingman:problem:otp-code-used"


async def test_an_expired_code_is_refused(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog, settings: Settings
) -> None:
    request_id = await request_code(client, "email", unique_email())
    code = otp_worker.code_for(request_id)
    engine = create_async_engine(settings.database.url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE otp_requests SET expires_at = now() - interval '1 second'"
                    " WHERE id = :id"
                ),
                {"id": uuid.UUID(request_id)},
            )
    finally:
        await engine.dispose()

    response = await client.post(
        "/api/v1/auth/otp/verify", json={"request_id": request_id, "code": code}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:wingman:problem:otp-code-expired"


async def test_unknown_request_id_is_not_found(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(
        "/api/v1/auth/otp/verify", json={"request_id": str(uuid.uuid4()), "code": "123456"}
    )
    assert response.status_code == 404
    assert response.json()["type"] == "urn:wingman:problem:otp-request-not-found"


async def test_invalid_destination_names_the_field(client: AsyncTestClient[Litestar]) -> None:
    for channel, destination in (("email", "not-an-email"), ("sms", "0301234567")):
        response = await client.post(
            "/api/v1/auth/otp/request", json={"channel": channel, "destination": destination}
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["key"] == "destination"


async def test_stored_request_holds_only_hashes(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog, settings: Settings
) -> None:
    email = unique_email()
    request_id = await request_code(client, "email", email)
    code = otp_worker.code_for(request_id)
    engine = create_async_engine(settings.database.url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT destination_hash, code_hash FROM otp_requests WHERE id = :id"),
                    {"id": uuid.UUID(request_id)},
                )
            ).one()
    finally:
        await engine.dispose()
    assert email.lower() not in row.destination_hash
    assert code not in row.code_hash
    assert len(row.code_hash) == 64
