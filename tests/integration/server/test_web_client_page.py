"""The web client's page and files as the app serves them (the browser tests use them for real:
tests/e2e/test_web_client.py)."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient

from wingman.server.security_headers import ALWAYS
from wingman.web.routes import ASSET_TYPES, CLIENT_POLICY, IMMUTABLE, STATIC


async def test_the_page_names_its_files_under_one_digest_and_carries_its_policy(
    client: AsyncTestClient[Litestar],
) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers.get_list("content-security-policy") == [CLIENT_POLICY]
    assert page.headers["cache-control"] == "no-cache"
    for name, value in ALWAYS:
        assert page.headers[name.decode()] == value.decode()
    # Nothing inline: the policy would refuse it.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert " style=" not in page.text
    assert "<style" not in page.text
    linked = re.findall(r'(?:src|href)="(/web/[0-9a-f]{16}/[^"]+)"', page.text)
    assert {path.rsplit("/", 1)[1] for path in linked} == {"app.js", "style.css"}
    [folder] = {path.rsplit("/", 1)[0] for path in linked}

    for name, media_type in ASSET_TYPES.items():
        asset = await client.get(f"{folder}/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith(media_type)
        assert asset.headers["cache-control"] == IMMUTABLE
        assert asset.content == (STATIC / name).read_bytes()

    assert (await client.get("/web/0000000000000000/app.js")).status_code == 404
    assert (await client.get(f"{folder}/index.html")).status_code == 404
    assert (await client.get(f"{folder}/../routes.py")).status_code == 404


def test_every_module_the_scripts_import_is_served() -> None:
    for name in ASSET_TYPES:
        if name.endswith(".js"):
            imported = re.findall(r'from "\./([^"]+)"', (STATIC / name).read_text())
            assert set(imported) <= set(ASSET_TYPES), name
    # And every file of the folder is one the page may load (or the page itself).
    on_disk = {entry.name for entry in STATIC.iterdir()}
    assert on_disk == {*ASSET_TYPES, "index.html"}


def test_no_script_writes_markup_from_strings() -> None:
    """The policy enforces Trusted Types with no policy: such a write would throw at run time."""
    for name in ASSET_TYPES:
        if name.endswith(".js"):
            source = (STATIC / name).read_text()
            assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", source)
