"""Redis URLs: a server, or a master named to a set of Sentinels."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.config import SettingsError, load_settings
from wingman.redis_address import (
    SENTINEL_PORT,
    SentinelAddress,
    is_sentinel_url,
    parse_sentinel_url,
    url_problem,
)


def test_a_full_sentinel_url() -> None:
    url = (
        "rediss+sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b,[fd00::3]:26381/queue/2"
        "?sentinel_password=watch%21"
    )
    assert parse_sentinel_url(url) == SentinelAddress(
        sentinels=(("10.0.0.1", 26380), ("sentinel-b", SENTINEL_PORT), ("fd00::3", 26381)),
        master_name="queue",
        db=2,
        username="app",
        password="s@cret",
        sentinel_password="watch!",
        tls=True,
    )


def test_a_bare_password_and_no_database() -> None:
    address = parse_sentinel_url("redis+sentinel://:pw@127.0.0.1/main")
    assert (address.username, address.password, address.db, address.tls) == (None, "pw", 0, False)
    assert parse_sentinel_url("redis+sentinel://pw@h/main").password == "pw"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h1,h2", "no master name"),
        ("redis+sentinel://h1/main/x", "database must be a number"),
        ("redis+sentinel://h1/main/0/extra", "nothing more"),
        ("redis+sentinel://h1,,h2/main", "empty Sentinel address"),
        ("redis+sentinel://h1:99999/main", "bad Sentinel port"),
        ("redis+sentinel://h1/main?sentinel_pasword=x", "unknown option 'sentinel_pasword'"),
        ("sentinel://h1/main", "unsupported scheme"),
        ("http://127.0.0.1:6379", "unsupported scheme"),
        ("redis://127.0.0.1:notaport/0", "bad port"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, message: str) -> None:
    problem = url_problem(url.replace("//", "//:topsecret@", 1))
    assert problem is not None
    assert message in problem
    assert "topsecret" not in problem


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal/1", "unix:///run/redis.sock?db=2"],
)
def test_direct_urls_are_accepted(url: str) -> None:
    assert url_problem(url) is None
    assert not is_sentinel_url(url)


hosts = st.lists(
    st.tuples(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
        st.integers(1, 65535),
    ),
    min_size=1,
    max_size=5,
)


@given(
    hosts=hosts,
    master=st.text(min_size=1, max_size=20),
    db=st.integers(0, 15),
    password=st.none() | st.text(min_size=1, max_size=20),
    sentinel_password=st.none() | st.text(min_size=1, max_size=20),
    tls=st.booleans(),
)
def test_every_address_written_out_reads_back(
    *,
    hosts: list[tuple[str, int]],
    master: str,
    db: int,
    password: str | None,
    sentinel_password: str | None,
    tls: bool,
) -> None:
    scheme = "rediss+sentinel" if tls else "redis+sentinel"
    auth = f":{quote(password, safe='')}@" if password is not None else ""
    query = f"?sentinel_password={quote(sentinel_password, safe='')}" if sentinel_password else ""
    netloc = ",".join(f"{host}:{port}" for host, port in hosts)
    url = f"{scheme}://{auth}{netloc}/{quote(master, safe='')}/{db}{query}"
    assert is_sentinel_url(url)
    assert url_problem(url) is None
    assert parse_sentinel_url(url) == SentinelAddress(
        sentinels=tuple(hosts),
        master_name=master,
        db=db,
        password=password,
        sentinel_password=sentinel_password,
        tls=tls,
    )


def test_settings_name_the_bad_redis_key(tmp_path: Path) -> None:
    (tmp_path / "wingman.toml").write_text(
        "[redis]\nqueue_url = 'redis+sentinel://:pw@a:26379,b:26379/main/0'\n"
        "cache_url = 'redis+sentinel://a:26379'\n"
    )
    env = {"WINGMAN_CONFIG": str(tmp_path / "wingman.toml"), "WINGMAN_TUNING": str(tmp_path / "t")}
    with pytest.raises(SettingsError, match=r"^redis\.cache_url: no master name") as caught:
        load_settings(env)
    assert "queue_url" not in str(caught.value)
