"""Results files: ``<date>-<name>.json`` (everything) and ``.md`` (the table people read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from wingman.loadtest.costmodel import Projection
from wingman.loadtest.plot import write_capacity_svg


def stem(result: dict[str, Any]) -> str:
    """The results files' name without suffix: ``<date>-<name>``."""
    return f"{result['taken_at'][:10]}-{result['name']}"


def free_name(folder: Path, base: str) -> str:
    """``base``, or ``<base>-2``, ``-3``... when files of that name (results, report, picture)
    are already in ``folder``: results are never overwritten."""
    candidate, number = base, 1
    while any((folder / f"{candidate}{suffix}").exists() for suffix in (".json", ".md", ".svg")):
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def write_results(result: dict[str, Any], folder: Path) -> list[Path]:
    """The JSON and the Markdown; for a capacity search also its picture (SVG), which the
    Markdown links to. Under a new name when the run's name was taken that day (see
    :func:`free_name`)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = free_name(folder, stem(result))
    json_path = folder / f"{name}.json"
    md_path = folder / f"{name}.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    md_path.write_text(markdown(result, files=name))
    written = [json_path, md_path]
    if "steps" in result:
        written.append(write_capacity_svg(result, folder / f"{name}.svg"))
    return written


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def load_section(result: dict[str, Any]) -> list[str]:
    host = result["host"]
    replies = result.get("replies", {})
    lines = [
        f"Host: {host['cores']} cores, {host['ram_gb']} GB RAM; "
        f"{result['generators']['count']} generator process(es) on the same host.",
        f"Users: {result['users_held']} held of {result['users']} for {result['duration_s']} s; "
        f"{result['requests_per_s']} REST requests/s.",
        f"Replies: {replies.get('posted', 0)} posted, {replies.get('done', 0)} done, "
        f"{replies.get('lost', 0)} lost, {replies.get('duplicated', 0)} duplicated.",
        "",
        "| request | count | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rest = result["rest"]
    lines.append(
        f"| **all REST** | {rest['count']} | {_ms(rest['p50_ms'])} | {_ms(rest['p95_ms'])} "
        f"| {_ms(rest['p99_ms'])} | {_ms(rest['max_ms'])} |"
    )
    for kind, row in result["by_kind"].items():
        lines.append(
            f"| {kind} | {row['count']} | {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} "
            f"| {_ms(row['p99_ms'])} | {_ms(row['max_ms'])} |"
        )
    lines += ["", "| process tree | CPU % | peak RSS MB |", "| --- | ---: | ---: |"]
    for name, row in result["processes"].items():
        lines.append(f"| {name} | {row['cpu_percent']} | {row['peak_rss_mb']} |")
    lines += ["", *generator_lines(result["generators"])]
    errors = result["errors"]
    lines += [
        "",
        "Errors: " + (", ".join(f"{k} × {v}" for k, v in sorted(errors.items())) or "none"),
    ]
    verdict = result.get("verdict")
    if verdict is not None:
        lines.append(
            "Budget: "
            + ("met" if verdict["passed"] else "missed — " + "; ".join(verdict["failures"]))
        )
        if verdict.get("first_delta_overhead_ms") is not None:
            lines.append(
                f"First delta: {verdict['first_delta_overhead_ms']} ms (p50) beyond the "
                f"provider's first token ({verdict['provider_first_token_ms']} ms)."
            )
    if result.get("cost_model"):
        lines += ["", *cost_lines(result["cost_model"])]
    return lines


def generator_lines(generators: dict[str, Any]) -> list[str]:
    lines = [
        f"Generators: {generators['pinning']}; "
        f"{generators['cpu_ms_per_user_minute']} ms of generator CPU per user-minute.",
        "",
        "| generator | CPU | users held | CPU % |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in generators["processes"]:
        cpu = "-" if row["cpu"] is None else row["cpu"]
        lines.append(
            f"| {row['name']} | {cpu} | {row['users_held']} of {row['users']} "
            f"| {row['cpu_percent']} |"
        )
    lines += [f"**Warning:** {warning}" for warning in generators["warnings"]]
    return lines


def cost_lines(model: dict[str, Any]) -> list[str]:
    lines = [
        f"Cost model ({model['users']} users, {model['seconds']} s): CPU ms per user-minute "
        f"beyond the idle stack (measured for {model.get('idle_seconds', '-')} s).",
        "",
        "| component | CPU ms / user-minute | idle cores | Redis commands / user-minute |",
        "| --- | ---: | ---: | ---: |",
    ]
    redis = model["redis_commands_per_user_minute"]
    idle = model.get("idle_cores", {})
    for name, cost in model["cpu_ms_per_user_minute"].items():
        commands = redis[name]["total"] if name in redis else "-"
        lines.append(f"| {name} | {cost} | {idle.get(name, '-')} | {commands} |")
    return lines


def markdown(result: dict[str, Any], files: str | None = None) -> str:
    """The Markdown report; ``files``: the name its files were written under (the picture's
    link), :func:`stem` when not given."""
    title = f"# Load run `{result['name']}` ({result['taken_at']})"
    if "steps" in result:
        body = [
            f"Highest user count that met the budget: **{result['capacity']}**.",
            "",
            f"![REST latency and CPU per process tree against users]({files or stem(result)}.svg)",
            "",
        ]
        for step in result["steps"]:
            body += [f"## {step['users']} users", "", *load_section(step), ""]
        return "\n".join([title, "", *body]).rstrip() + "\n"
    return "\n".join([title, "", *load_section(result)]) + "\n"


def projection_lines(projection: Projection, source: str, cycle_s: float = 60.0) -> list[str]:
    """The projection as people read it: users per component, the first to saturate."""
    lines = [
        f"Projection for {projection.cores} cores, {projection.ram_gb:g} GB RAM "
        f"(cost model from {source}):",
        "",
    ]
    if cycle_s != 60:
        lines += [
            f"Users of the measured run: one profile cycle every {cycle_s:g} s, not every "
            "60 s as in the profile (DESIGN section 10), so each is busier than a profile user.",
            "",
        ]
    lines += [
        "| component | CPU ms / user-minute | idle cores | cores | busy at most | users | why |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in [*projection.rows, projection.host]:
        users = "-" if row.users is None else f"{row.users:,}"
        mark = " ← first" if row.component == projection.first else ""
        lines.append(
            f"| {row.component}{mark} | {round(row.cpu_ms_per_user_minute, 3):g} "
            f"| {round(row.idle_cores, 4):g} "
            f"| {row.cores:g} "
            f"| {row.busy:.0%} | {users} | {row.basis} |"
        )
    if projection.users is None:
        lines += ["", "No component spent measurable CPU: nothing to project."]
    else:
        lines += [
            "",
            f"Projected: **{projection.users:,} users**, first limited by {projection.first}.",
        ]
    return lines
