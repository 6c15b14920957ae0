"""Issue acceptance: a CDI spec from `cdi-fuse generate` lets an unprivileged podman container
(all capabilities dropped except SYS_ADMIN, no --privileged) mount a real FUSE filesystem."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e import podman

pytestmark = [pytest.mark.e2e, pytest.mark.root]

HOST_DEVICES_LIST = Path("/sys/fs/cgroup/devices/devices.list")
CAP_SYS_ADMIN = 1 << 21


def host_fuse_numbers() -> tuple[int, int]:
    rdev = os.stat("/dev/fuse").st_rdev
    return os.major(rdev), os.minor(rdev)


def assert_devices_cgroup_allows_fuse(trip: podman.FuseRoundTrip) -> None:
    rules = trip.values("devices_allow")
    if not rules:
        assert not HOST_DEVICES_LIST.exists(), "host has a v1 devices cgroup but the container showed none"
        print("skipped the devices-cgroup check: no cgroup v1 devices controller (v2 uses an eBPF filter)")
        return
    major, minor = host_fuse_numbers()
    fuse_rules = [rule for rule in rules if re.fullmatch(rf"c {major}:{minor} [rwm]+", rule)]
    assert fuse_rules, f"no devices-cgroup rule for c {major}:{minor} in {rules}"
    assert all({"r", "w"} <= set(rule.split()[-1]) for rule in fuse_rules), fuse_rules
    assert "a *:* rwm" not in rules, "the container may access every device, as if privileged"


def test_generate_writes_spec_podman_resolves(runtime_specs: podman.SpecFiles) -> None:
    qualified_name = runtime_specs.generate()

    assert qualified_name == f"{runtime_specs.vendor}/fuse=fuse"
    assert (runtime_specs.spec_dir / f"{runtime_specs.vendor}-fuse.yaml").is_file()


def test_cdi_device_lets_unprivileged_container_mount_fuse(runtime_specs: podman.SpecFiles, rootfs: Path) -> None:
    device = runtime_specs.generate()

    trip = podman.fuse_round_trip(rootfs, devices=[device])

    major, minor = host_fuse_numbers()
    assert trip.value("fuse_node") == f"character special file {major:x}:{minor:x}"
    assert int(trip.value("cap_eff") or "", 16) == CAP_SYS_ADMIN
    assert_devices_cgroup_allows_fuse(trip)
    assert trip.value("bindfs_rc") == "0", trip.process.stderr
    assert trip.value("served") == trip.token
    [mount] = trip.values("mount")
    assert mount.startswith("/tmp/src /tmp/mnt fuse "), mount
    assert trip.value("unmount_rc") == "0"
    assert trip.value("still_mounted") == "no"
    assert trip.process.returncode == 0


def test_without_cdi_device_mount_fails(podman_runtime: str, rootfs: Path) -> None:
    trip = podman.fuse_round_trip(rootfs)

    assert trip.value("fuse_node") == "missing"
    assert trip.process.returncode != 0
    assert trip.value("bindfs_rc") not in (None, "0")
    assert "fuse: device not found" in trip.process.stderr
    assert trip.value("served") is None


def test_cdi_device_without_sys_admin_mount_fails(runtime_specs: podman.SpecFiles, rootfs: Path) -> None:
    device = runtime_specs.generate()

    trip = podman.fuse_round_trip(rootfs, devices=[device], cap_add=())

    major, minor = host_fuse_numbers()
    assert trip.value("fuse_node") == f"character special file {major:x}:{minor:x}"
    assert int(trip.value("cap_eff") or "", 16) == 0
    assert trip.process.returncode != 0
    assert "mount failed: Operation not permitted" in trip.process.stderr
    assert trip.value("served") is None
