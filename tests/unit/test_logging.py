"""Log lines: Wingman's own and the libraries' come out as one JSON object per line, alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import logging, pathlib, sys, threading, uuid

    import msgspec, structlog

    from wingman.config import LogSettings, Settings
    from wingman.server.logging import configure_logging

    settings = Settings(env="test")
    level = sys.argv[2]
    settings = msgspec.structs.replace(settings, log=LogSettings(format=sys.argv[1], level=level))
    configure_logging(settings, process="web")
    log = structlog.get_logger("wingman.request")
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        log.info("request", status=200, user_id=uuid.UUID(int=5), where=pathlib.Path("/x"))
    log.debug("not at this level")
    logging.getLogger("saq").warning("library %s", "line")
    logging.getLogger("saq").info("below the library's level")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed")

    def many(n):
        for i in range(200):
            log.info("line", thread=n, i=i)
            logging.getLogger("granian").info("granian %d %d", n, i)

    threads = [threading.Thread(target=many, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def run(fmt: str, level: str = "INFO") -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt, level],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_json_lines_of_wingman_and_libraries_have_one_shape() -> None:
    lines = [json.loads(line) for line in run("json")]
    request, library, failed = lines[:3]
    assert request == {
        "status": 200,
        "user_id": "00000000-0000-0000-0000-000000000005",
        "where": "PosixPath('/x')",  # what JSON cannot hold is written as text
        "event": "request",
        "process": "web",
        "request_id": "req-1",
        "level": "info",
        "logger": "wingman.request",
        "timestamp": request["timestamp"],
    }
    assert request["timestamp"].endswith("Z")
    assert library == {
        "event": "library line",
        "process": "web",
        "level": "warning",
        "logger": "saq",
        "timestamp": library["timestamp"],
    }
    assert failed["level"] == "error"
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError" in failed["exception"]
    # Lines from four threads through both paths: every one whole, none lost.
    rest = lines[3:]
    assert len(rest) == 4 * 200 * 2
    assert sum(1 for line in rest if line["event"] == "line") == 800


@pytest.mark.parametrize("level", ["DEBUG", "WARNING"])
def test_the_level_applies_to_wingman_lines(level: str) -> None:
    events = [json.loads(line)["event"] for line in run("json", level)]
    assert ("not at this level" in events) is (level == "DEBUG")
    assert ("request" in events) is (level == "DEBUG")
    assert "library line" in events
    assert "below the library's level" not in events


def test_console_lines_are_readable_text() -> None:
    lines = run("console")
    assert "request" in lines[0]
    assert "[wingman.request]" in lines[0]
    assert "request_id=req-1" in lines[0]
    assert any("library line" in line and "[saq]" in line for line in lines)
