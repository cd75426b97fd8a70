"""The web client at ``/`` in a real browser (the distribution's Chromium, driven by Playwright)
against real processes: ``wingmanctl serve``, a ``default`` worker that delivers the sign-in codes
(to its log), an ``ai`` worker that streams replies (the offline provider, slowed down so a
reply takes a few seconds) and a ``heavy`` worker that writes exports.

Every test runs with the network cut off from everything but the server: any request to another
host is refused and recorded, and the test fails if one was attempted. A page that breaks its own
Content-Security-Policy fails the test too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import msgspec
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Route,
    WebSocket,
    sync_playwright,
)
from playwright.sync_api import expect as page_expect
from redis import Redis

from tests.integration.accounts.conftest import WorkerLog, start_worker, stop_worker
from tests.support.browser import chromium_path
from tests.support.services import child_env
from tests.support.web import WebServer, running_server
from wingman.config import ExportSettings, Settings
from wingman.domain.realtime.events import user_keys

pytestmark = pytest.mark.e2e

AXE = Path(__file__).parent / "axe" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
# The offline provider's pace: ~60 words at 60 ms, a reply streams for about 4 s.
TOKEN_INTERVAL_MS = "60"
TIMEOUT_MS = 20_000


@dataclass
class Stack:
    server: WebServer
    codes: WorkerLog

    @property
    def api(self) -> str:
        return f"{self.server.url}/api/v1"


def start_queue_worker(
    settings: Settings, folder: Path, queue: str, **env: str
) -> subprocess.Popen[bytes]:
    """``wingmanctl worker --queue QUEUE``, its output in ``folder/worker.log``."""
    child = child_env(settings, folder) | env
    with (folder / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", queue],
            env=child,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("web-client")
    for part in ("default", "ai", "heavy", "web"):
        (folder / part).mkdir()
    # Exports are written where the server can read them back for the download.
    settings = msgspec.structs.replace(
        settings, exports=ExportSettings(dir=str(folder / "exports"))
    )
    codes = start_worker(settings, folder / "default")
    others = [
        start_queue_worker(
            settings, folder / "ai", "ai", WINGMAN_AI__OFFLINE__TOKEN_INTERVAL_MS=TOKEN_INTERVAL_MS
        ),
        start_queue_worker(settings, folder / "heavy", "heavy"),
    ]
    try:
        with running_server(settings, folder / "web") as server:
            try:
                yield Stack(server, codes)
            finally:
                # Every process stops at once (each takes a few seconds to wind down).
                for worker in others:
                    worker.send_signal(signal.SIGTERM)
                codes.process.terminate()
    finally:
        for worker in others:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        stop_worker(codes)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        # Never a browser Playwright downloads: the distribution's, found on PATH.
        yield playwright.chromium.launch(executable_path=executable)


@dataclass
class Watch:
    """What the page tried that it must not: requests to other hosts, CSP violations."""

    foreign: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


@pytest.fixture
def watch() -> Watch:
    return Watch()


def forget_rate_limit_counts(settings: Settings) -> None:
    """Full allowances again (the Playwright thread runs an event loop: a blocking client)."""
    redis = Redis.from_url(settings.redis.queue_url)
    try:
        keys = list(redis.scan_iter(match="wingman:ratelimit*"))
        if keys:
            redis.delete(*keys)
    finally:
        redis.close()


@pytest.fixture
def context(
    browser: Browser, stack: Stack, settings: Settings, watch: Watch
) -> Iterator[BrowserContext]:
    forget_rate_limit_counts(settings)  # each test signs in afresh from one address
    context = browser.new_context(base_url=stack.server.url)
    context.set_default_timeout(TIMEOUT_MS)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.server.url)

    def only_the_host(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.foreign.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_host)
    try:
        yield context
    finally:
        context.close()
    assert watch.foreign == [], "the page reached beyond the host"
    assert watch.violations == [], "the page broke its Content-Security-Policy"


@pytest.fixture
def page(context: BrowserContext, watch: Watch) -> Page:
    page = context.new_page()

    def on_console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Trusted Type" in text:
            watch.violations.append(text)

    page.on("console", on_console)
    return page


def sign_in(page: Page, stack: Stack) -> str:
    """Sign in through the page with the code the ``default`` worker logged; returns the email."""
    email = f"web-{uuid4().hex[:10]}@example.org"
    page.goto("/")
    page.get_by_label("Email address or phone number").fill(email)
    with page.expect_response("**/api/v1/auth/otp/request") as asked:
        page.get_by_role("button", name="Send me a code").click()
    request_id = asked.value.json()["request_id"]
    page.get_by_label("Six-digit code").fill(stack.codes.code_for(request_id))
    page.get_by_role("button", name="Sign in").click()
    page_expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page_expect(page.locator("#connection")).to_have_text("Live")
    return email


def token(page: Page) -> str:
    return str(page.evaluate("JSON.parse(sessionStorage.getItem('wingman.tokens')).access_token"))


def api_get(page: Page, stack: Stack, path: str) -> Any:
    headers = {"Authorization": f"Bearer {token(page)}"}
    response = httpx.get(f"{stack.api}{path}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def start_chat(page: Page, title: str, profile: str | None = None) -> str:
    """Start a chat through the page; returns its id."""
    page.get_by_role("link", name="Chats").click()
    page.get_by_label("Title (optional)").fill(title)
    if profile:
        page.get_by_label("About").select_option(label=profile)
    page.get_by_role("button", name="Start a chat").click()
    page_expect(page.locator("#chat-title")).to_have_text(title)
    return page.evaluate("location.hash").rsplit("/", 1)[-1]


# Records every distinct text of the newest AI reply as the page shows it.
RECORD_REPLY_TEXTS = """() => {
  window.replyTexts = [];
  const record = () => {
    const replies = document.querySelectorAll('#messages li.ai .content');
    const text = replies.length ? replies[replies.length - 1].textContent : '';
    const seen = window.replyTexts;
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  };
  new MutationObserver(record).observe(
    document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
}"""


def send(page: Page, text: str) -> None:
    page.get_by_label("Your message").fill(text)
    with page.expect_response("**/messages") as posted:
        page.get_by_role("button", name="Send", exact=True).click()
    assert posted.value.status == 202


def last_reply(page: Page) -> Any:
    return page.locator("#messages li.ai").last


def stored_reply(page: Page, stack: Stack, session_id: str) -> dict[str, Any]:
    """The session's newest AI reply as the API gives it (pages are newest first)."""
    items = api_get(page, stack, f"/sessions/{session_id}/messages")["items"]
    reply: dict[str, Any] = next(m for m in items if m["sender"] == "ai")
    return reply


def assert_accessible(page: Page, where: str) -> None:
    """axe-core in the page: no serious or critical violation."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{where}: {json.dumps(bad, indent=1)}"


def test_the_vendored_axe_core_is_the_one_named() -> None:
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_SHA256
    assert AXE.read_text()[:40].startswith("/*! axe v4.14.1")


def test_sign_in_profiles_settings_and_a_reply_streamed_token_by_token(
    page: Page, stack: Stack
) -> None:
    answer = page.goto("/")
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert_accessible(page, "sign-in page")
    sign_in(page, stack)

    # A profile, then an edit of it.
    page.get_by_role("link", name="Profiles").click()
    page.get_by_label("Name").fill("Robin")
    page.get_by_label("Interests (separated by commas)").fill("climbing, jazz")
    page.get_by_role("button", name="Save profile").click()
    page_expect(page.locator("#profile-list")).to_contain_text("climbing, jazz")
    page.get_by_label("Notes").fill("Met at the climbing gym.")
    with page.expect_response("**/api/v1/profiles/*") as patched:
        page.get_by_role("button", name="Save profile").click()
    assert patched.value.request.method == "PATCH"
    [profile] = api_get(page, stack, "/profiles")["items"]
    assert (profile["name"], profile["notes"]) == ("Robin", "Met at the climbing gym.")
    assert profile["interests"] == ["climbing", "jazz"]
    assert_accessible(page, "profiles")

    # Settings.
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Reply length").select_option("short")
    page.get_by_label("Language (for example en, de, pt-BR)").fill("en")
    page.get_by_role("button", name="Save settings").click()
    page_expect(page.get_by_role("alert")).to_contain_text("Settings saved")
    saved = api_get(page, stack, "/me/settings")
    assert (saved["reply_length"], saved["language"]) == ("short", "en")
    assert_accessible(page, "settings")

    # A chat about Robin, and a reply that grows on screen as it streams.
    session_id = start_chat(page, "Saturday plans", profile="Robin")
    page.evaluate(RECORD_REPLY_TEXTS)
    send(page, "She asked if I want to go climbing on Saturday")
    page_expect(last_reply(page)).to_have_attribute("data-status", "done")
    texts: list[str] = page.evaluate("window.replyTexts")
    stored = stored_reply(page, stack, session_id)
    assert stored["processing_status"] == "done"
    assert len(texts) >= 3, texts
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert texts[-1] == stored["content"] != ""
    page_expect(last_reply(page).locator(".content")).to_have_text(stored["content"])
    assert_accessible(page, "chat with a reply")

    # Feedback: like, then copy (each is an event the API stored: 201).
    with page.expect_response("**/events") as liked:
        last_reply(page).get_by_role("button", name="Like", exact=True).click()
    assert liked.value.status == 201
    assert json.loads(liked.value.request.post_data or "{}")["type"] == "liked"
    page_expect(last_reply(page).get_by_role("button", name="Like", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    with page.expect_response("**/events") as copied:
        last_reply(page).get_by_role("button", name="Copy").click()
    assert copied.value.status == 201
    assert page.evaluate("navigator.clipboard.readText()") == stored["content"]

    # Regenerate, and stop the new reply while it is written.
    last_reply(page).get_by_role("button", name="Regenerate").click()
    page_expect(page.locator("#messages li.ai")).to_have_count(2)
    page_expect(last_reply(page)).to_have_attribute("aria-busy", "true")
    last_reply(page).get_by_role("button", name="Stop").click()
    page_expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    page_expect(last_reply(page)).to_contain_text("Cancelled")
    items = api_get(page, stack, f"/sessions/{session_id}/messages")["items"]
    assert sorted(m["processing_status"] for m in items if m["sender"] == "ai") == [
        "cancelled",
        "done",
    ]

    # The list follows what was posted (two messages, then the regenerated reply).
    page_expect(page.locator("#session-list")).to_contain_text("3 messages")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_accessible(page, "chat on a phone")

    page.get_by_role("link", name="Account").click()
    assert_accessible(page, "account")


def test_a_reload_mid_stream_shows_the_reply_complete_once(page: Page, stack: Stack) -> None:
    sign_in(page, stack)
    session_id = start_chat(page, "Reload")
    send(page, "What should I answer to a dinner invitation?")
    page_expect(last_reply(page).locator(".content")).not_to_have_text("")
    # Record from the reloaded page's first rendering on (its scripts fetch before they render).
    page.add_init_script(
        f"document.addEventListener('DOMContentLoaded', {RECORD_REPLY_TEXTS}, {{once: true}})"
    )
    page.reload()
    page_expect(page.locator("#chat-title")).to_have_text("Reload")
    page_expect(last_reply(page)).to_have_attribute("data-status", "done")
    stored = stored_reply(page, stack, session_id)
    page_expect(page.locator("#messages li.ai")).to_have_count(1)
    page_expect(last_reply(page).locator(".content")).to_have_text(stored["content"])
    # After the reload the reply was rebuilt from its start (replayed, then live), and at no
    # moment was any of it shown twice.
    texts: list[str] = page.evaluate("window.replyTexts")
    assert len(texts) >= 2, texts
    assert all(stored["content"].startswith(text) for text in texts), texts
    assert texts[-1] == stored["content"]


def test_a_dropped_socket_resumes_from_the_last_event(
    page: Page, context: BrowserContext, stack: Stack
) -> None:
    sent: list[list[str]] = []  # the frames the page sent and received, per socket

    received: list[list[str]] = []

    def opened(socket: WebSocket) -> None:
        frames: list[str] = []
        sent.append(frames)
        socket.on("framesent", lambda payload: frames.append(str(payload)))
        answers: list[str] = []
        received.append(answers)
        socket.on("framereceived", lambda payload: answers.append(str(payload)))

    page.on("websocket", opened)
    sign_in(page, stack)
    session_id = start_chat(page, "Drop")
    page.evaluate(RECORD_REPLY_TEXTS)
    send(page, "How do I say no politely?")
    page_expect(last_reply(page).locator(".content")).not_to_have_text("")
    context.set_offline(True)
    page_expect(page.locator("#connection")).not_to_have_text("Live")
    cut_at = len(page.evaluate("window.replyTexts"))
    # The rest of the reply, its completion included, happens while the page is cut off.
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while stored_reply(page, stack, session_id)["processing_status"] != "done":
        assert time.monotonic() < deadline, "the reply did not finish"
        time.sleep(0.1)
    context.set_offline(False)
    page_expect(last_reply(page)).to_have_attribute("data-status", "done")
    page_expect(page.locator("#connection")).to_have_text("Live")
    stored = stored_reply(page, stack, session_id)
    page_expect(last_reply(page).locator(".content")).to_have_text(stored["content"])
    texts: list[str] = page.evaluate("window.replyTexts")
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert len(texts) > cut_at, "nothing streamed after the drop"
    # A new socket, which resumed from the last event seen instead of starting afresh.
    assert len(sent) >= 2, "the page did not reconnect"
    resumes = [json.loads(frame) for frame in sent[-1] if '"resume"' in frame]
    assert resumes, sent[-1]
    assert isinstance(resumes[0]["last_event_id"], int)
    [resumed] = [json.loads(frame) for frame in received[-1] if '"resumed"' in frame]
    assert resumed["data"]["replayed"] >= 1  # the completion, at least, came from the history


def test_a_rate_limited_request_reads_as_a_sentence(page: Page, stack: Stack) -> None:
    email = f"busy-{uuid4().hex[:10]}@example.org"
    body = {"channel": "email", "destination": email}
    answers = [httpx.post(f"{stack.api}/auth/otp/request", json=body) for _ in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    page.goto("/")
    page.get_by_label("Email address or phone number").fill(email)
    with page.expect_response("**/api/v1/auth/otp/request") as refused:
        page.get_by_role("button", name="Send me a code").click()
    assert refused.value.status == 429
    alert = page.get_by_role("alert")
    page_expect(alert).to_have_text(
        re.compile(r"Too many requests\. Try again in \d+ (second|minute)")
    )
    page_expect(page.get_by_label("Email address or phone number")).to_be_visible()


def test_an_expired_access_token_is_refreshed_for_rest_and_the_socket(
    page: Page, stack: Stack
) -> None:
    # Signing in takes the keyboard alone: the address field has the focus, Enter submits, the
    # code field has the focus next.
    page.goto("/")
    page.keyboard.type(f"keys-{uuid4().hex[:10]}@example.org")
    with page.expect_response("**/api/v1/auth/otp/request") as asked:
        page.keyboard.press("Enter")
    page_expect(page.get_by_label("Six-digit code")).to_be_focused()
    page.keyboard.type(stack.codes.code_for(asked.value.json()["request_id"]))
    page.keyboard.press("Enter")
    page_expect(page.locator("#connection")).to_have_text("Live")
    start_chat(page, "Refresh")
    first = page.evaluate("JSON.parse(sessionStorage.getItem('wingman.tokens'))")
    # A token the server refuses, as an expired one is: every call and the socket must recover.
    page.evaluate(
        """() => {
          const tokens = JSON.parse(sessionStorage.getItem('wingman.tokens'));
          tokens.access_token = 'not-a-token';
          sessionStorage.setItem('wingman.tokens', JSON.stringify(tokens));
        }"""
    )
    with page.expect_response("**/api/v1/auth/refresh") as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    page_expect(page.locator("#connection")).to_have_text("Live")
    page_expect(page.locator("#chat-title")).to_have_text("Refresh")
    second = page.evaluate("JSON.parse(sessionStorage.getItem('wingman.tokens'))")
    assert second["refresh_token"] != first["refresh_token"]
    assert api_get(page, stack, "/me")["email"] == first["user"]["email"]


def test_the_account_page_exports_the_data(page: Page, stack: Stack) -> None:
    sign_in(page, stack)
    user_id = page.evaluate("JSON.parse(sessionStorage.getItem('wingman.tokens')).user.id")
    page.get_by_role("link", name="Account").click()
    page.get_by_role("button", name="Export my data").click()
    page_expect(page.locator("#export-status")).to_have_text("Your export is ready.")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the export").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert (manifest["format"], manifest["user_id"]) == ("wingman-account-export", user_id)


def test_the_account_page_deletes_the_account_with_a_code(page: Page, stack: Stack) -> None:
    email = sign_in(page, stack)
    old_token = token(page)
    page.get_by_role("link", name="Account").click()
    page_expect(page.locator("#account-who")).to_contain_text(email)
    with page.expect_response("**/api/v1/auth/otp/request") as asked:
        page.get_by_role("button", name="Send me a deletion code").click()
    code = stack.codes.code_for(asked.value.json()["request_id"])
    page.get_by_label("Deletion code").fill(code)
    with page.expect_response("**/api/v1/me") as deleted:
        page.get_by_role("button", name="Delete my account").click()
    assert deleted.value.status == 202
    page_expect(page.get_by_role("alert")).to_contain_text("Your account is deleted")
    page_expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    me = httpx.get(f"{stack.api}/me", headers={"Authorization": f"Bearer {old_token}"})
    assert me.status_code == 401


def test_lost_events_make_the_page_refetch_over_rest(
    page: Page, context: BrowserContext, stack: Stack, settings: Settings
) -> None:
    received: list[str] = []
    page.on(
        "websocket",
        lambda socket: socket.on("framereceived", lambda payload: received.append(str(payload))),
    )
    sign_in(page, stack)
    session_id = start_chat(page, "Resync")
    send(page, "First things first")
    page_expect(last_reply(page)).to_have_attribute("data-status", "done")
    user_id = page.evaluate("JSON.parse(sessionStorage.getItem('wingman.tokens')).user.id")
    context.set_offline(True)
    page_expect(page.locator("#connection")).not_to_have_text("Live")
    # The queue Redis lost the user's numbering and history (a flush): nothing to replay.
    redis = Redis.from_url(settings.redis.queue_url)
    try:
        assert redis.delete(*user_keys(UUID(user_id))) >= 1
    finally:
        redis.close()
    posted = httpx.post(
        f"{stack.api}/sessions/{session_id}/messages",
        json={"content": "Posted from another device"},
        headers={"Authorization": f"Bearer {token(page)}"},
    )
    assert posted.status_code == 202, posted.text
    context.set_offline(False)
    page_expect(page.locator("#messages li.user").last).to_contain_text(
        "Posted from another device"
    )
    page_expect(page.locator("#messages li.ai")).to_have_count(2)
    page_expect(last_reply(page)).to_have_attribute("data-status", "done")
    stored = stored_reply(page, stack, session_id)
    page_expect(last_reply(page).locator(".content")).to_have_text(stored["content"])
    assert any('"resync_required"' in str(frame) for frame in received)
