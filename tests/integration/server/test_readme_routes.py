"""The README's "API at a glance" table names exactly the routes of the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient

README = Path(__file__).resolve().parents[3] / "README.md"
SECTION = "## API at a glance"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# | `GET`, `PATCH` | `/api/v1/me` | what |
ROW = re.compile(r"^\|(?P<methods>[^|]+)\|\s*`(?P<path>/[^`]*)`\s*\|")


def readme_routes(text: str) -> set[tuple[str, str]]:
    """(method, path) of every row of the section's table."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    routes: set[tuple[str, str]] = set()
    for line in section.splitlines():
        row = ROW.match(line)
        if row is None:
            continue
        methods = re.findall(r"`([A-Z]+)`", row["methods"])
        assert methods, f"a row without a method: {line}"
        routes |= {(method, row["path"]) for method in methods}
    return routes


def test_the_table_is_read_row_by_row() -> None:
    text = (
        f"{SECTION}\n\n| method | path | what |\n| --- | --- | --- |\n"
        "| `GET`, `PATCH` | `/api/v1/me` | the account |\n"
        "| `POST` | `/api/v1/auth/logout` | see `/x` |\n\n## Next\n| `GET` | `/no` | x |\n"
    )
    assert readme_routes(text) == {
        ("GET", "/api/v1/me"),
        ("PATCH", "/api/v1/me"),
        ("POST", "/api/v1/auth/logout"),
    }


async def test_readme_route_table_matches_the_openapi_document(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/docs/openapi.json")
    assert response.status_code == 200
    documented = {
        (method.upper(), path)
        for path, item in response.json()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert documented, "the OpenAPI document lists no routes"
    listed = readme_routes(README.read_text())
    assert sorted(documented - listed) == [], "routes without a row in README.md"
    assert sorted(listed - documented) == [], "README.md rows naming no route"
