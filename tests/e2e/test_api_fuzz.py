"""Schemathesis over the whole OpenAPI document against a real `wingmanctl serve` process.

Every operation is called with generated (valid and invalid) input as a signed-in admin, so the
admin routes are covered too. The checks: no 5xx, and every response matches the documented
status codes, content types and schemas.

Schemathesis sends well-formed JSON only; a second pass takes its cases and breaks them the way
a hostile client would: bytes that are not UTF-8 inside the JSON or its query string, and bodies
nested far deeper than any request needs. Every answer must be a 4xx problem (or a success).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.accounts import Caller, create_caller
from tests.support.services import PrivateServices, child_env, wait_until_ready
from wingman.config import DatabaseSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import UserRole
from wingman.devstack.processes import free_port
from wingman.server.database import create_engine
from wingman.server.request_body import MAX_DEPTH

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fuzz_settings(services: PrivateServices, settings: Settings) -> Iterator[Settings]:
    """Its own migrated database: the fuzzer writes tones, users and config as an admin."""
    services.postgres.ensure_database("wingman_fuzz")
    url = services.postgres.url("wingman_fuzz")
    upgrade_to_head(url)
    try:
        yield msgspec.structs.replace(settings, database=DatabaseSettings(url=url))
    finally:
        services.postgres.drop_database("wingman_fuzz")


@pytest.fixture(scope="module")
def server(fuzz_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    folder = tmp_path_factory.mktemp("fuzz")
    log = (folder / "web.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wingman", "serve", "--port", str(port)],
        env=child_env(fuzz_settings, folder),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    try:
        assert wait_until_ready(base), Path(log.name).read_text()[-2000:]
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
async def admin(fuzz_settings: Settings) -> AsyncIterator[Caller]:
    engine = create_engine(fuzz_settings.database, "wingman-tests")
    try:
        yield await create_caller(engine, fuzz_settings, role=UserRole.ADMIN)
    finally:
        await engine.dispose()


def described(exc: BaseException) -> str:
    """The failure and, for Hypothesis' "unreliable results" group, what actually failed."""
    causes = [repr(cause)[:500] for cause in getattr(exc, "exceptions", ())]
    return f"{str(exc)[:1500]} {causes}" if causes else str(exc)[:1500]


def test_api_conforms_and_never_fails(server: str, admin: Caller) -> None:
    # positive_data_acceptance is left out: rules the schema cannot state (a phone number for the
    # sms channel, a cursor this server issued, a tone that exists) rightly refuse schema-valid
    # input with a documented 400/422 problem.
    # Driven by hand rather than through schemathesis' pytest plugin, which does not load under
    # the pytest version pinned here; the checks and the generation are schemathesis' own.
    schema = schemathesis.openapi.from_url(f"{server}/api/docs/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=server, headers=admin.headers, excluded_checks=[positive_data_acceptance]
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation
            failures.append(f"{operation.label}: {described(exc)}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


# A lone byte that never starts a character, a cut two-byte sequence, an encoded surrogate, an
# overlong encoding, a code point past U+10FFFF, a lone continuation byte.
NOT_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80")


@st.composite
def broken_body(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` (JSON) broken one way: a byte that is not UTF-8 inside it, or wrapped in (or
    given a field of) arrays or objects nested from just past the cap to far past the
    interpreter's recursion limit."""
    how = draw(st.sampled_from(["not-utf8", "deep-arrays", "deep-objects", "deep-field"]))
    if how == "not-utf8":
        bad = draw(st.sampled_from(NOT_UTF8))
        quotes = [i for i, byte in enumerate(body) if byte == ord('"')]
        if not quotes:
            return b'{"text":"' + bad + b'"}'
        at = draw(st.sampled_from(quotes)) + 1
        return body[:at] + bad + body[at:]
    depth = draw(st.integers(MAX_DEPTH, 20_000))
    if how == "deep-arrays":
        return b"[" * depth + body + b"]" * depth
    if how == "deep-objects":
        return b'{"a":' * depth + body + b"}" * depth
    deep = b"[" * depth + b"]" * depth
    rest = b"," + body[1:] if body.startswith(b"{") and body != b"{}" else b"}"
    return b'{"field":' + deep + rest


def broken_query(params: dict[str, Any], bad: bytes) -> bytes:
    """The case's query string with a value that decodes to bytes that are not UTF-8."""
    pairs = {str(k): str(v) for k, v in params.items()}
    name = next(iter(pairs), "q")
    pairs.pop(name, None)
    encoded = "".join(f"%{byte:02x}" for byte in bad)
    head = urlencode(pairs)
    return (head + "&" if head else "").encode() + f"{name}=x{encoded}".encode()


def test_broken_encodings_and_deep_nesting_never_fail(server: str, admin: Caller) -> None:
    schema = schemathesis.openapi.from_url(f"{server}/api/docs/openapi.json")
    failures: list[str] = []
    with httpx.Client(timeout=60) as client:
        for result in schema.get_all_operations():
            operation = result.ok()

            # No shrinking: the first failing request is reported as it is (shrinking one
            # through a server would take minutes).
            @given(case=operation.as_strategy(), data=st.data())
            @settings(
                max_examples=8,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            def check(case: schemathesis.Case, data: st.DataObject) -> None:
                sent = case.as_transport_kwargs(base_url=server, headers=admin.headers)
                params = sent.get("params") or {}
                if "json" in sent:
                    body = msgspec.json.encode(sent["json"])
                    content = data.draw(broken_body(body), label="body")
                    query = urlencode({str(k): str(v) for k, v in params.items()}).encode()
                else:
                    content = None
                    query = broken_query(params, data.draw(st.sampled_from(NOT_UTF8)))
                response = client.request(
                    sent["method"],
                    httpx.URL(sent["url"], query=query),
                    headers={**sent["headers"], "Content-Type": "application/json"},
                    content=content,
                )
                assert response.status_code < 500, (response.status_code, response.text[:500])
                if response.status_code >= 400:
                    assert response.headers["content-type"] == "application/problem+json"

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation
                failures.append(f"{operation.label}: {described(exc)}")
    assert not failures, "\n\n".join(failures)
