"""The ``twilio`` SMS backend against a local provider that checks the exact wire format."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from tests.integration.accounts.conftest import start_worker, stop_worker
from tests.support.sms_provider import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    INVALID_TO,
    SmsProvider,
    running_sms_provider,
)
from wingman.app import create_app
from wingman.config import DeliverySettings, Settings, TwilioSettings
from wingman.devstack.processes import free_port
from wingman.domain.accounts.delivery import DeliveryError, OtpMessage, deliver


@pytest.fixture
def provider() -> Iterator[SmsProvider]:
    with running_sms_provider() as running:
        yield running


def twilio(base_url: str, **changes: str) -> DeliverySettings:
    values = {
        "base_url": base_url,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": FROM_NUMBER,
        **changes,
    }
    return DeliverySettings(
        email="disabled", sms="twilio", twilio=TwilioSettings(timeout=5, **values)
    )


def configured(settings: Settings, delivery: DeliverySettings) -> Settings:
    return msgspec.structs.replace(settings, delivery=delivery)


def sms(destination: str = "+14155550123") -> OtpMessage:
    return OtpMessage(str(uuid.uuid4()), "sms", destination, "042917")


async def test_a_code_goes_out_in_the_providers_wire_format(
    settings: Settings, provider: SmsProvider
) -> None:
    backend = await deliver(configured(settings, twilio(provider.base_url)), sms())
    assert backend == "twilio"
    assert provider.malformed == []
    assert provider.messages == [
        {
            "To": ["+14155550123"],
            "From": [FROM_NUMBER],
            "Body": ["Your Wingman sign-in code is 042917. It expires in 10 minutes."],
        }
    ]


async def test_a_messaging_service_replaces_the_sender_number(
    settings: Settings, provider: SmsProvider
) -> None:
    service = twilio(provider.base_url, from_number="", messaging_service_sid="MG" + "0" * 32)
    await deliver(configured(settings, service), sms())
    assert provider.malformed == []
    assert provider.messages[0]["MessagingServiceSid"] == ["MG" + "0" * 32]
    assert "From" not in provider.messages[0]


async def test_the_providers_error_is_named_without_the_code_or_the_number(
    settings: Settings, provider: SmsProvider
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await deliver(configured(settings, twilio(provider.base_url)), sms(INVALID_TO))
    text = str(caught.value)
    assert text.startswith("sms delivery failed: the provider answered 400 (code 21211:")
    assert "042917" not in text
    assert INVALID_TO not in text
    assert provider.messages == []


async def test_wrong_credentials_and_a_dead_provider_fail(
    settings: Settings, provider: SmsProvider
) -> None:
    wrong = twilio(provider.base_url, auth_token="not-the-token-0123456789")
    with pytest.raises(DeliveryError, match=r"answered 401 \(code 20003: Authenticate\)") as caught:
        await deliver(configured(settings, wrong), sms())
    assert "not-the-token" not in str(caught.value)
    dead = twilio(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DeliveryError, match="sms delivery failed: ConnectError"):
        await deliver(configured(settings, dead), sms())
    assert provider.messages == []


async def test_a_failed_send_is_retried_by_the_queue_until_it_arrives(
    settings: Settings, provider: SmsProvider, tmp_path: Path
) -> None:
    """The whole path: a code request over HTTP, a real worker, a provider that fails once."""
    destination = "+14155550177"
    provider.fail_first.add(destination)
    with_twilio = configured(settings, twilio(provider.base_url))
    worker = start_worker(with_twilio, tmp_path)
    try:
        async with AsyncTestClient(app=create_app(with_twilio)) as client:
            response = await client.post(
                "/api/v1/auth/otp/request", json={"channel": "sms", "destination": destination}
            )
            assert response.status_code == 202, response.text
            request_id = response.json()["request_id"]
            refused = await client.post(
                "/api/v1/auth/otp/request",
                json={"channel": "email", "destination": "sam@example.org"},
            )
        failure = worker.wait_for("otp_delivery_failed", request_id=request_id)
        worker.wait_for("otp_delivered", request_id=request_id)
    finally:
        stop_worker(worker)
    assert failure["backend"] == "twilio"
    assert "provider answered 503" in failure["error"]
    assert [form["To"] for form in provider.messages] == [[destination]]
    code = provider.messages[0]["Body"][0].split()[5].rstrip(".")
    assert code.isdigit()
    assert AUTH_TOKEN not in worker.path.read_text()
    assert not [line for line in worker.lines() if code in json.dumps(line.get("event"))]
    # The email channel is disabled here: refused up front, nothing queued.
    assert refused.status_code == 400
    assert refused.json()["type"].endswith("channel-disabled")
