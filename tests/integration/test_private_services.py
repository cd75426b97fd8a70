"""The private-services builder: a throwaway trio that serves, reports, stops and cleans up."""

from __future__ import annotations

import psycopg
import redis

from wingman.devstack.processes import port_open
from wingman.devstack.services import PrivateServices, throwaway_services


def test_throwaway_services_serve_their_settings_then_stop_and_leave_nothing() -> None:
    with throwaway_services("wingman-builder-", {"max_connections": 20}, database="probe") as svc:
        root = svc.root
        settings = svc.settings("probe", pool_size=2)
        assert settings.database.pool_size == 2
        with psycopg.connect(svc.postgres.conninfo("probe")) as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("20",)
        for url in (settings.redis.queue_url, settings.redis.cache_url):
            client = redis.Redis.from_url(url)
            try:
                assert client.ping()
            finally:
                client.close()
        assert set(svc.pids()) == {"postgres", "redis-queue", "redis-cache"}
        assert svc.stopped() == []
        ports = [server.port for server in svc.servers().values()]
    assert not root.exists()
    assert not any(port_open(port) for port in ports)


def test_given_ports_and_passwords_are_the_ones_served(services: PrivateServices) -> None:
    """A caller that keeps its ports and passwords (the dev stack) reaches running servers."""
    again = PrivateServices(
        services.root,
        postgres_port=services.postgres.port,
        postgres_password=services.postgres.password,
        redis_queue_port=services.redis_queue.port,
        redis_cache_port=services.redis_cache.port,
        redis_password=services.redis_queue.password,
    )
    assert again.stopped() == []
    assert again.pids() == services.pids()
    lines: list[str] = []
    again.start(report=lines.append)
    assert lines == [
        f"postgres: already running on 127.0.0.1:{services.postgres.port}",
        f"redis-queue: already running on 127.0.0.1:{services.redis_queue.port}",
        f"redis-cache: already running on 127.0.0.1:{services.redis_cache.port}",
    ]
