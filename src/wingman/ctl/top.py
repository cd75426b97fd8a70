"""``wingmanctl top``: a live view of the running stack, refreshed every few seconds.

The figures come from the same places as ``wingmanctl status``: Wingman's own ``/metrics``
(loopback needs no token) and ``/proc`` for the CPU of each unit's process tree, the units found
by the same layout rule. The arithmetic lives in :mod:`wingman.ops.top`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from wingman.ctl.layout import layout_option, resolve
from wingman.ctl.output import EXIT_DOWN, EXIT_OK, json_option
from wingman.ops.top import Frame, History, Sample, frame, parse_sample, series
from wingman.ops.units import UnitSource


class StackReader:
    """Takes samples of one stack: its ``/metrics`` and its units' CPU."""

    def __init__(self, source: UnitSource, url: str) -> None:
        self.source = source
        self.url = url
        self.units_down: list[str] = []

    def sample(self) -> Sample | None:
        """A sample, or None when ``/metrics`` does not answer with Prometheus text."""
        from wingman.loadtest.processes import tree_cpu_seconds
        from wingman.ops.metrics import fetch

        text = fetch(self.url)
        at = time.monotonic()
        if text is None:
            return None
        units = self.source.units()
        self.units_down = [unit.name for unit in units if not unit.up]
        cpu = {unit.name: tree_cpu_seconds(unit.pid) for unit in units if unit.up and unit.pid}
        try:
            return parse_sample(text, at, cpu)
        except ValueError:
            return None


def _count(value: float | None) -> str:
    return "not exported" if value is None else f"{value:.0f}"


def _latency(value: float | None) -> str:
    return "no requests" if value is None else f"{value:.1f} ms"


def now_texts(current: Frame, units_down: list[str]) -> dict[str, str]:
    """The value column, by row name, in the order the rows are shown."""
    texts = {
        "requests/s": f"{current.requests_per_s:.1f}",
        "5xx share": "-" if current.error_rate is None else f"{current.error_rate:.1%}",
        "latency p50 ms": _latency(current.p50_ms),
        "latency p95 ms": _latency(current.p95_ms),
        "users online": _count(current.users_online),
        "requests in flight": _count(current.requests_in_flight),
        "replies in flight": _count(current.replies_in_flight),
    }
    for queue, states in sorted(current.queues.items()):
        texts[f"queue {queue}"] = ", ".join(
            f"{states.get(state, 0):.0f} {state}" for state in ("queued", "active", "scheduled")
        )
    for unit, percent in current.cpu_percent.items():
        texts[f"cpu {unit}"] = "-" if percent is None else f"{percent:.1f} %"
    for unit in units_down:
        texts[f"cpu {unit}"] = "down"
    return texts


def render(
    current: Frame, history: History, units_down: list[str], header: str, warning: str = ""
) -> Group:
    table = Table(show_lines=False, box=None, padding=(0, 2))
    table.add_column("figure", no_wrap=True)
    table.add_column("now", justify="right", no_wrap=True)
    table.add_column(f"last {history.length}", no_wrap=True)
    texts = now_texts(current, units_down)
    lines = history.sparklines(texts)
    for name, text in texts.items():
        trend = lines[name] if name in history.values else ""
        table.add_row(name, text, trend)
    parts: list[Text | Table] = [Text(header, style="bold")]
    if warning:
        parts.append(Text(warning, style="bold red"))
    parts.append(table)
    return Group(*parts)


def _header(source: UnitSource, url: str, interval: float) -> str:
    clock = datetime.now(UTC).strftime("%H:%M:%S UTC")
    return f"Wingman · {source.kind} · {url} · every {interval:g} s · {clock} · Ctrl-C quits"


def _unreachable(url: str) -> SystemExit:
    click.echo(
        f"error: Wingman's metrics at {url} do not answer: is the web server running? "
        "(`wingmanctl status` shows every unit)",
        err=True,
    )
    return SystemExit(EXIT_DOWN)


@click.command()
@layout_option
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between samples (rates are over this window).",
)
@click.option(
    "--history",
    type=click.IntRange(2, 500),
    default=30,
    show_default=True,
    help="Samples each sparkline shows.",
)
@click.option("--once", is_flag=True, help="Print one frame (two samples INTERVAL apart), exit.")
@json_option
def top(data_dir: Path | None, interval: float, history: int, once: bool, as_json: bool) -> None:
    """A live view: requests/s, latency, users online, replies in flight, queues, CPU.

    \b
    Rows:
      requests/s, 5xx share   over the last INTERVAL seconds (from /metrics)
      latency p50, p95        of the requests answered in that window (histogram deltas)
      users online            open WebSocket connections
      requests in flight      HTTP requests being served now
      replies in flight       AI replies queued or being written (ai queue)
      queue NAME              queued, active and scheduled jobs
      cpu UNIT                CPU of the unit's process tree; 100 % is one core

    Each row ends with a sparkline of its last HISTORY values. With --once, one frame;
    with --json, one frame as JSON for scripts. Ctrl-C quits.

    \b
    Exit status:
      0  quit (Ctrl-C), or one frame printed
      2  no installation found, or its /metrics does not answer
    """
    try:
        from wingman.ops.health import metrics_url

        source, settings = resolve(data_dir)
        reader = StackReader(source, metrics_url(settings))
        _run(reader, interval, history, once=once or as_json, as_json=as_json)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_OK) from None


def _run(reader: StackReader, interval: float, length: int, *, once: bool, as_json: bool) -> None:
    before = reader.sample()
    if before is None:
        raise _unreachable(reader.url)
    trends = History(length)
    terminal = sys.stdout.isatty()
    console = Console(emoji=False) if terminal else Console(emoji=False, width=400)
    if once:
        time.sleep(interval)
        after = reader.sample()
        if after is None:
            raise _unreachable(reader.url)
        current = frame(before, after)
        if as_json:
            payload = {
                "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "layout": reader.source.kind,
                "metrics_url": reader.url,
                **msgspec.to_builtins(current),
                "units_down": reader.units_down,
            }
            sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
            return
        trends.add(series(current))
        header = _header(reader.source, reader.url, interval)
        console.print(render(current, trends, reader.units_down, header))
        return
    if not terminal:
        # Not a terminal (a pipe, a log): one frame after the other, like `top -b`.
        _loop(reader, before, trends, interval, lambda shown: _print_frame(console, shown))
        return
    with Live(console=console, screen=True, auto_refresh=False) as live:
        live.update(Text(f"first figures in {interval:g} s …"), refresh=True)
        _loop(reader, before, trends, interval, lambda shown: live.update(shown, refresh=True))


def _print_frame(console: Console, shown: RenderableType) -> None:
    console.print(shown)
    console.print()
    sys.stdout.flush()


def _loop(
    reader: StackReader,
    before: Sample,
    trends: History,
    interval: float,
    show: Callable[[RenderableType], None],
) -> None:
    """Sample every INTERVAL seconds and show each frame until Ctrl-C. While ``/metrics`` does
    not answer (a web restart), the last figures stay with a warning above them."""
    current: Frame | None = None
    with _until_ctrl_c() as stop:
        while not stop.wait(interval):
            after = reader.sample()
            header = _header(reader.source, reader.url, interval)
            if after is None:
                warning = f"{reader.url} does not answer: showing the last figures"
                if current is None:
                    show(Text(f"{header}\n{warning}"))
                else:
                    show(render(current, trends, reader.units_down, header, warning))
                continue
            current = frame(before, after)
            trends.add(series(current))
            show(render(current, trends, reader.units_down, header))
            before = after


@contextmanager
def _until_ctrl_c() -> Iterator[threading.Event]:
    """An event Ctrl-C sets, for the live loop to stop at its next wait, instead of a
    KeyboardInterrupt raised wherever the loop happens to be (the HTTP client, a write to a
    full pipe). Twice in full test runs a view under load went on after Ctrl-C for 30 s; the
    flag is only read by the loop itself."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
