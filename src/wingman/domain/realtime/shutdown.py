"""Closing every socket with 1001 *before* Granian stops serving them.

What Granian 2.8 does when a worker is told to stop (SIGTERM or SIGINT, from the service manager
or from Granian's main process): its signal handler sets the worker's stop signal, the Rust side
stops accepting and stops servicing the open WebSockets at once, and only then does the ASGI
lifespan shutdown run. By that time a close frame can no longer be written: the lifespan's
attempt waits until its timeout and the client sees the TCP connection drop (1006) when the
process exits, not a "going away".

So the worker's signal handler is wrapped: on SIGTERM/SIGINT the process first drains (on an app
node behind a load balancer: ``/health/ready`` answers 503 for ``node.drain_seconds`` while
requests are still served, so the balancer stops sending new ones), then the dispatcher closes
every socket with 1001 (bounded by ``realtime.close_timeout_seconds``), then Granian's own
handler runs and the shutdown proceeds as before: in-flight requests finish. Granian gives no
hook for this; its handler is the function ``signal_handler`` local to
``granian._signals.set_loop_signals``, found once at start-up among the live objects. When it is
not found (another server, or a Granian whose internals changed: the end-to-end test
``tests/e2e/test_realtime.py`` notices), nothing is wrapped and a warning is logged: shutdown
still works, clients just see 1006 instead of 1001 and resume after reconnecting all the same.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from types import FunctionType
from typing import Any

import structlog

from wingman.domain.realtime.dispatcher import Dispatcher
from wingman.server.cluster import Draining

log = structlog.get_logger(__name__)

_GRANIAN_HANDLER = ("granian._signals", "set_loop_signals.<locals>.signal_handler")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def granian_stop_handler() -> Callable[..., Any] | None:
    """Granian's worker signal handler, if this process is a Granian worker."""
    if _GRANIAN_HANDLER[0] not in sys.modules:
        return None
    for obj in gc.get_objects():
        # ``type(...) is``, not ``isinstance``: the heap also holds dead weak proxies.
        if type(obj) is FunctionType and (obj.__module__, obj.__qualname__) == _GRANIAN_HANDLER:
            return obj
    return None


def close_sockets_before_stop(
    dispatcher: Dispatcher, draining: Draining, drain_seconds: float = 0.0
) -> bool:
    """Wrap the worker's stop signals so the process drains for ``drain_seconds`` and sockets
    close with 1001 first; True when wrapped."""
    granian_handler = granian_stop_handler()
    if granian_handler is None:
        log.warning("realtime_shutdown_hook_unavailable")
        return False
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    async def drain_then_stop(signum: int) -> None:
        draining.start()
        if drain_seconds > 0:
            log.info("draining_for_load_balancer", seconds=drain_seconds)
            await asyncio.sleep(drain_seconds)
        closed = await dispatcher.drain()
        log.info("realtime_drained_on_signal", signal=signal.Signals(signum).name, sockets=closed)
        granian_handler(signum, None)

    def on_signal(signum: int) -> None:
        if stopping:
            # A second signal: stop now.
            granian_handler(signum, None)
            return
        stopping.append(loop.create_task(drain_then_stop(signum)))

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    return True
