"""The appliance's monitoring files, rendered by ``wingmanctl tune`` with the rest of the plan.

- ``/etc/wingman/prometheus.yml``: the shipped scrape targets and alert rules, alerts sent to
  Alertmanager on loopback (``wingman.ops.monitoring``);
- ``/etc/wingman/monitoring.env``: Prometheus's retention, sized by the data volume
  (:func:`prometheus_retention`), read by ``wingman-prometheus.service``;
- ``/etc/wingman/alertmanager.yml``: delivery to the admin (``wingman.ops.alertmanager``);
- ``/etc/wingman/redis-exporter-<role>.env``: where each Redis exporter finds its Redis and
  the password, root-only, read by systemd for ``wingman-redis-exporter@.service``.

The exporters' ports are fixed in their units and match :class:`ScrapeTargets`' defaults.
"""

from __future__ import annotations

import msgspec

from wingman.config import Settings
from wingman.ops.monitoring import ALERTMANAGER_ADDRESS, ScrapeTargets, prometheus_config
from wingman.tuning.plan import Tuned

# Prometheus keeps at most this share of the data volume (the volume also holds PostgreSQL,
# its WAL and the backups, which matter more), within these bounds. A single host's few
# thousand series take some 40 MB a day at a 15 s scrape interval, so 512 MiB is about two
# weeks and the cap is never the limit on small disks.
RETENTION_DISK_FRACTION = 0.05
RETENTION_MIN_MB = 512
RETENTION_MAX_MB = 20 * 1024
# Whichever limit comes first: a month of history covers a monthly pattern and a holiday.
RETENTION_DAYS = 30


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    size_mb: Tuned[int]
    days: Tuned[int]


def prometheus_retention(disk_mb: int) -> Retention:
    """How much history Prometheus keeps on a data volume of ``disk_mb`` MiB. No I/O."""
    size = int(disk_mb * RETENTION_DISK_FRACTION)
    size = max(RETENTION_MIN_MB, min(RETENTION_MAX_MB, size))
    return Retention(
        size_mb=Tuned(
            size,
            f"{RETENTION_DISK_FRACTION:.0%} of the {disk_mb // 1024} GiB data volume, "
            f"{RETENTION_MIN_MB} MiB to {RETENTION_MAX_MB // 1024} GiB",
        ),
        days=Tuned(RETENTION_DAYS, "a month of history, unless the size limit comes first"),
    )


def appliance_targets(settings: Settings) -> ScrapeTargets:
    """The appliance's targets: Granian on its loopback port, the exporters on their own."""
    return ScrapeTargets(wingman=f"127.0.0.1:{settings.server.port}")


def appliance_prometheus_config(settings: Settings) -> str:
    return prometheus_config(appliance_targets(settings), alertmanager=ALERTMANAGER_ADDRESS)


def monitoring_env(retention: Retention) -> str:
    """``monitoring.env``: what ``wingman-prometheus.service`` passes to Prometheus."""
    return (
        "# Written by `wingmanctl tune`; do not edit.\n"
        f"# {retention.size_mb.reason}\n"
        f"PROMETHEUS_RETENTION_SIZE={retention.size_mb.value}MB\n"
        f"# {retention.days.reason}\n"
        f"PROMETHEUS_RETENTION_TIME={retention.days.value}d\n"
    )


def redis_exporter_env(role: str, *, redis_port: int, password: str) -> str:
    """``redis-exporter-<role>.env``: redis_exporter reads its flags from these variables."""
    listen = getattr(ScrapeTargets(), f"redis_{role}")
    return (
        f"# Written by `wingmanctl tune`; do not edit. The {role} role's Redis, for its exporter.\n"
        f"REDIS_ADDR=redis://127.0.0.1:{redis_port}\n"
        f"REDIS_PASSWORD={password}\n"
        f"REDIS_EXPORTER_WEB_LISTEN_ADDRESS={listen}\n"
    )
