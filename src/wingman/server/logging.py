"""structlog for every Wingman process, with the standard library's loggers routed through it.

JSON lines in production (and whenever stderr is not a terminal, unless told otherwise), a readable
console renderer on a terminal. Library loggers (saq, granian, sqlalchemy, httpx, alembic) go
through the same processors so that every line of a process has one shape.

Wingman's own lines do not pass through the standard library: structlog renders them (JSON by
msgspec) and writes the bytes to stderr itself, as structlog's performance notes advise. Every
web request writes one line, and the standard library's path (a ``LogRecord``, handler lookup and
lock, ``ProcessorFormatter``, ``json.dumps``) was a fifth of a cached read's time in a profile; the
direct path costs a quarter of that. Library loggers keep the standard library's path (they log
rarely) and render through the same processors, so both kinds of line look alike.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import msgspec
import structlog
from structlog.types import EventDict

from wingman.config import Settings

_LIBRARY_LEVELS = {
    # SAQ logs three INFO lines per job (enqueue, process, finish) with the job's arguments: at
    # one AI reply per user message that would outnumber every other line. Wingman's own lines
    # (reply_done, worker_started, ...) say what happened; SAQ's warnings and errors still show.
    "saq": "WARNING",
    "granian": "INFO",
    "httpx": "WARNING",
    "httpcore": "WARNING",
    "alembic": "INFO",
    "alembic.runtime.plugins": "WARNING",
    "sqlalchemy.engine": "WARNING",
    "asyncio": "WARNING",
}


def _use_json(settings: Settings) -> bool:
    if settings.log.format != "auto":
        return settings.log.format == "json"
    return settings.is_production or not sys.stderr.isatty()


def _encode_unknown(value: object) -> str:
    # What msgspec cannot encode (an exception, a path, an arbitrary object) is logged as text,
    # as structlog's own JSON renderer does.
    return repr(value)


_json = msgspec.json.Encoder(enc_hook=_encode_unknown)


def render_json(_: Any, __: str, event_dict: EventDict) -> bytes:
    """The event as one JSON object (bytes), keys in the order they were added."""
    return _json.encode(event_dict)


def _as_text(render: Any) -> Any:
    """``render`` for the standard library's formatter, which wants text."""

    def rendered(logger: Any, name: str, event_dict: EventDict) -> str:
        out = render(logger, name, event_dict)
        return out.decode() if isinstance(out, bytes) else str(out)

    return rendered


def _as_bytes(render: Any) -> Any:
    """``render`` for :class:`structlog.BytesLogger`, which writes bytes."""

    def rendered(logger: Any, name: str, event_dict: EventDict) -> bytes:
        out = render(logger, name, event_dict)
        return out if isinstance(out, bytes) else str(out).encode()

    return rendered


def configure_logging(settings: Settings, process: str) -> None:
    """Configure structlog and stdlib logging for this process (idempotent)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if _use_json(settings):
        renderer = render_json
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, _as_bytes(renderer)],
        # Named after get_logger's argument, which add_logger_name reads. The stream is the
        # one sys.stderr is now (a test may have replaced it).
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log.level]
        ),
        cache_logger_on_first_use=True,
    )
    levels = dict(_LIBRARY_LEVELS)
    if settings.log.sql:
        levels["sqlalchemy.engine"] = "INFO"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structlog": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        _as_text(renderer),
                    ],
                    "foreign_pre_chain": shared,
                }
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "structlog",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": settings.log.level},
            "loggers": {
                name: {"level": level, "handlers": [], "propagate": True}
                for name, level in levels.items()
            },
        }
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(process=process)


def granian_log_config() -> dict[str, Any]:
    """Granian's own loggers propagate to the root handler configured above."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "_granian": {"level": "INFO", "handlers": [], "propagate": True},
            "granian.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }
