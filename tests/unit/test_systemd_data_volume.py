"""The data disk's units: /var/lib/wingman mounted by label before anything uses it, in a VM only.

A unit that touches the data folder before the mount would write onto the root file system, under
the data disk, where a new image loses it; one ordered after a mount that waits for a missing
device would hold every boot without a data disk.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
DATA = "/var/lib/wingman"
LABEL = "wingman-data"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value, in order (repeated keys add up, as After= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = ""
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        sections[section].setdefault(key, []).append(value)
    return sections


def words(found: dict[str, list[str]], key: str) -> set[str]:
    return {word for value in found.get(key, []) for word in value.split()}


MOUNT = unit(SYSTEMD / "var-lib-wingman.mount")
VOLUME = unit(SYSTEMD / "wingman-data-volume.service")
GROWFS = unit(SYSTEMD / "wingman-data-growfs.service")


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="needs systemd-escape")
def test_the_mount_unit_is_named_after_its_mount_point() -> None:
    escaped = subprocess.run(
        ["systemd-escape", "--path", "--suffix=mount", DATA],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert escaped == "var-lib-wingman.mount"
    assert MOUNT["Mount"]["Where"] == [DATA]


def test_the_mount_is_by_label_and_only_when_the_label_exists() -> None:
    # By label through mount(8): a /dev/... path would add a device dependency that waits 90 s
    # and fails the boot of a VM without a data disk.
    assert MOUNT["Mount"]["What"] == [f"LABEL={LABEL}"]
    assert MOUNT["Mount"]["Type"] == ["ext4"]
    assert MOUNT["Unit"]["ConditionPathExists"] == [f"/dev/disk/by-label/{LABEL}"]
    assert "wingman-data-volume.service" in words(MOUNT["Unit"], "Requires")
    assert "wingman-data-volume.service" in words(MOUNT["Unit"], "After")
    assert "wingman-data-growfs.service" in words(MOUNT["Unit"], "Wants")


@pytest.mark.parametrize("found", [MOUNT, VOLUME, GROWFS], ids=["mount", "volume", "growfs"])
def test_containers_keep_their_volume(found: dict[str, dict[str, list[str]]]) -> None:
    assert found["Unit"]["ConditionVirtualization"] == ["!container"]


def test_the_disk_is_prepared_early_and_before_the_mount() -> None:
    assert VOLUME["Unit"]["DefaultDependencies"] == ["no"]
    assert {"var-lib-wingman.mount", "local-fs.target"} <= words(VOLUME["Unit"], "Before")
    # udev has seen the disks; not after sysinit.target, which would close an ordering cycle
    # (the mount comes before local-fs.target, which comes before sysinit.target).
    after = words(VOLUME["Unit"], "After")
    assert "systemd-udev-trigger.service" in after
    assert not after & {"sysinit.target", "basic.target", "multi-user.target"}
    assert VOLUME["Service"]["ExecStart"] == ["/usr/lib/wingman/data-volume"]
    build = (ROOT / "scripts" / "build-image").read_text()
    assert 'install -m 0755 appliance/data-volume "$ROOT/usr/lib/wingman/"' in build
    assert "systemd/*.mount" in build


def test_growfs_runs_on_the_mounted_disk() -> None:
    assert "var-lib-wingman.mount" in words(GROWFS["Unit"], "After")
    assert "var-lib-wingman.mount" in words(GROWFS["Unit"], "Requires")
    (command,) = GROWFS["Service"]["ExecStart"]
    assert command.split()[0].endswith("/resize2fs")
    assert command.split()[1] == f"/dev/disk/by-label/{LABEL}"


def uses_data(found: dict[str, dict[str, list[str]]], text: str) -> bool:
    service = found.get("Service", {})
    credentials = " ".join(service.get("LoadCredential", []))
    return (
        DATA in text.replace("RequiresMountsFor=/var/lib/wingman", "")
        or any(value.startswith("wingman") for value in service.get("StateDirectory", []))
        or "/etc/wingman/wingman.toml" in credentials  # a link into the data folder
        # wingman-tune reads that link itself and sizes the monitoring by the data disk.
        or any("wingmanctl tune" in value for value in service.get("ExecStart", []))
    )


# Paths under systemd/: drop-ins of different units share names (wingman.conf).
DATA_UNITS = sorted(
    str(path.relative_to(SYSTEMD))
    for path in [*SYSTEMD.glob("wingman-*.service"), *SYSTEMD.glob("*.service.d/*.conf")]
    if path.name not in ("wingman-data-volume.service", "wingman-data-growfs.service")
    and uses_data(unit(path), path.read_text())
)


def test_the_units_that_use_the_data_folder_are_found() -> None:
    # The list below must not silently shrink to nothing.
    expected = {"wingman-web.service", "wingman-tune.service", "wingman-firstboot.service"}
    postgres = "postgresql@15-main.service.d/wingman.conf"
    assert {*expected, postgres} <= set(DATA_UNITS)


@pytest.mark.parametrize("name", DATA_UNITS)
def test_every_unit_that_uses_the_data_folder_waits_for_its_mount(name: str) -> None:
    path = SYSTEMD / name
    assert DATA in words(unit(path)["Unit"], "RequiresMountsFor"), path
