"""How a real containerd hands /dev/fuse to a non-privileged container, for each way the kubelet can ask.

The kubelet passes what a device plugin's Allocate returned on to the runtime over CRI: CDI names in
``ContainerConfig.CDI_devices`` (Kubernetes >= 1.28), CDI names in ``cdi.k8s.io/<key>`` annotations (older
kubelets), or raw ``DeviceSpec``s in ``ContainerConfig.devices``. Each working case checks the device node,
the devices-cgroup rule and a real bindfs mount; the controls show that without the device the same
container (CAP_SYS_ADMIN, nothing else) cannot mount FUSE.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.containerd import cri_client, harness

pytestmark = [pytest.mark.e2e, pytest.mark.root]

RuntimeFactory = Callable[[bool], harness.ContainerdRuntime]

FUSE = "/dev/fuse"
HOST_DEVICES_CGROUP_V1 = Path("/sys/fs/cgroup/devices/devices.list")
# Inside the container; only cgroup v1 has a readable list (v2 enforces devices with an eBPF program).
DEVICES_LIST = "/sys/fs/cgroup/devices/devices.list"

# Host /usr only: /etc/alternatives links (awk) do not resolve in the container.
BINDFS_ROUND_TRIP = r"""
set -u
mkdir -p /tmp/src /tmp/mnt
printf '%s\n' "$TOKEN" > /tmp/src/from-source
if ! bindfs /tmp/src /tmp/mnt </dev/null >/tmp/bindfs.log 2>&1; then
    cat /tmp/bindfs.log >&2
    exit 3
fi
echo "fstype=$(grep ' /tmp/mnt ' /proc/self/mounts | cut -d' ' -f3)"
echo "read=$(cat /tmp/mnt/from-source)"
echo back > /tmp/mnt/from-mount
echo "written=$(cat /tmp/src/from-mount)"
umount /tmp/mnt || exit 4
echo "mounted-after=$(grep -c ' /tmp/mnt ' /proc/self/mounts)"
"""


def _host_fuse_numbers() -> tuple[int, int]:
    rdev = os.stat(FUSE).st_rdev
    return os.major(rdev), os.minor(rdev)


def _unique_vendor() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}.cdi-fuse.test"


@dataclass
class FuseProbe:
    """What a container sees of /dev/fuse, the devices cgroup and a bindfs mount."""

    node: str  # `stat` of /dev/fuse inside: "<type> <major-hex> <minor-hex>", or "" when absent
    cgroup_rules: list[str] = field(default_factory=list)
    mount: cri_client.ExecResult | None = None

    def node_numbers(self) -> tuple[int, int] | None:
        match = re.fullmatch(r"character special file ([0-9a-f]+) ([0-9a-f]+)", self.node)
        return (int(match.group(1), 16), int(match.group(2), 16)) if match else None

    def cgroup_allows_rw(self, major: int, minor: int) -> bool:
        for rule in self.cgroup_rules:
            kind, numbers, access = rule.split()
            rule_major, rule_minor = numbers.split(":")
            matches = kind in ("c", "a") and rule_major in (str(major), "*") and rule_minor in (str(minor), "*")
            if matches and "r" in access and "w" in access:
                return True
        return False


def _device_request(kind: str, cdi_name: str) -> dict[str, Any]:
    """``run_fuse_container`` keyword arguments asking for /dev/fuse the way ``kind`` names."""
    annotation = {f"{harness.CDI_ANNOTATION_PREFIX}cdi-fuse_e2e": cdi_name}
    requests: dict[str, dict[str, Any]] = {
        "cdi_devices": {"cdi_devices": [cdi_name]},
        "annotation": {"annotations": annotation},
        "raw_and_cdi": {"devices": [FUSE], "cdi_devices": [cdi_name]},
        "raw": {"devices": [FUSE]},
    }
    return requests[kind]


def _probe(container: harness.FuseContainer) -> FuseProbe:
    stat = container.exec("/usr/bin/stat", "-c", "%F %t %T", FUSE)
    rules = container.sh(f"cat {DEVICES_LIST} 2>/dev/null || true")
    token = uuid.uuid4().hex
    mount = container.sh(f"TOKEN={token} && export TOKEN && {BINDFS_ROUND_TRIP}", timeout_s=60)
    probe = FuseProbe(
        node=stat.stdout.strip() if stat.ok else "",
        cgroup_rules=[line for line in rules.stdout.splitlines() if line.strip()],
        mount=mount,
    )
    print(f"/dev/fuse: {probe.node or 'absent'}; bindfs: {mount}")
    if mount.ok:
        assert f"read={token}" in mount.stdout, mount
    return probe


def _assert_fuse_works(probe: FuseProbe) -> None:
    major, minor = _host_fuse_numbers()
    assert probe.node_numbers() == (major, minor), probe.node
    if HOST_DEVICES_CGROUP_V1.exists():
        assert "a *:* rwm" not in probe.cgroup_rules, "container must not be unrestricted"
        assert probe.cgroup_allows_rw(major, minor), probe.cgroup_rules
    assert probe.mount is not None
    assert probe.mount.ok, probe.mount
    lines = probe.mount.stdout.splitlines()
    assert any(line.startswith("fstype=fuse") for line in lines), probe.mount
    assert "written=back" in lines, probe.mount
    assert "mounted-after=0" in lines, probe.mount


def _assert_fuse_refused(probe: FuseProbe) -> None:
    assert probe.mount is not None
    assert probe.mount.exit_code == 3, probe.mount
    assert re.search(r"fuse|device|permitted|permission", probe.mount.stderr, re.IGNORECASE), probe.mount


def test_status_reports_cdi_config(containerd_runtime: RuntimeFactory) -> None:
    for enabled in (True, False):
        runtime = containerd_runtime(enabled)
        config = runtime.cri_config()
        assert config["enableCDI"] is enabled
        assert config["cdiSpecDirs"] == [str(runtime.spec_dir)]


@pytest.mark.parametrize(
    ("cdi_enabled", "request_kind"),
    [
        pytest.param(True, "cdi_devices", id="cdi-on-CDI_devices-field"),
        pytest.param(True, "annotation", id="cdi-on-cdi.k8s.io-annotation"),
        pytest.param(True, "raw_and_cdi", id="cdi-on-raw-device-plus-CDI_devices"),
        pytest.param(False, "raw", id="cdi-off-raw-DeviceSpec"),
        pytest.param(True, "raw", id="cdi-on-raw-DeviceSpec"),
    ],
)
def test_fuse_device_reaches_unprivileged_container(
    containerd_runtime: RuntimeFactory, cdi_enabled: bool, request_kind: str
) -> None:
    runtime = containerd_runtime(cdi_enabled)
    name = harness.generate_fuse_spec(runtime.spec_dir, _unique_vendor())
    print(f"requesting {request_kind} with CDI name {name}")
    container = runtime.run_fuse_container(**_device_request(request_kind, name), envs={"E2E": "1"})
    _assert_fuse_works(_probe(container))


@pytest.mark.parametrize(
    "request_kind",
    [pytest.param("cdi_devices", id="CDI_devices-field"), pytest.param("annotation", id="cdi.k8s.io-annotation")],
)
def test_cdi_request_ignored_when_cdi_disabled(containerd_runtime: RuntimeFactory, request_kind: str) -> None:
    """containerd 1.7 with enable_cdi=false drops CDI requests silently: the container starts without FUSE.

    No error reaches the kubelet, so the device plugin must not return CDI names alone to such a runtime.
    """
    runtime = containerd_runtime(False)
    name = harness.generate_fuse_spec(runtime.spec_dir, _unique_vendor())
    container = runtime.run_fuse_container(**_device_request(request_kind, name))
    probe = _probe(container)
    assert probe.node == ""
    _assert_fuse_refused(probe)


def test_unknown_cdi_device_fails_create_container(containerd_runtime: RuntimeFactory) -> None:
    runtime = containerd_runtime(True)
    missing = f"{_unique_vendor()}/fuse=fuse"
    with pytest.raises(cri_client.CriCallError) as raised:
        runtime.run_fuse_container(cdi_devices=[missing])
    print(f"observed: {raised.value}")
    assert raised.value.method == "CreateContainer"
    assert "unresolvable CDI devices" in raised.value.details
    assert missing in raised.value.details


@pytest.mark.parametrize("cdi_enabled", [pytest.param(True, id="cdi-on"), pytest.param(False, id="cdi-off")])
def test_control_without_device_mount_fails(containerd_runtime: RuntimeFactory, cdi_enabled: bool) -> None:
    runtime = containerd_runtime(cdi_enabled)
    probe = _probe(runtime.run_fuse_container())
    assert probe.node == ""
    major, minor = _host_fuse_numbers()
    if HOST_DEVICES_CGROUP_V1.exists():
        assert not probe.cgroup_allows_rw(major, minor), probe.cgroup_rules
    _assert_fuse_refused(probe)


def test_control_bind_mounted_node_without_cgroup_rule_is_refused(containerd_runtime: RuntimeFactory) -> None:
    """The node alone is not enough: the devices cgroup rule is what the runtime's device injection adds."""
    if not HOST_DEVICES_CGROUP_V1.exists():
        pytest.skip("needs the cgroup v1 devices controller to show the missing rule")
    runtime = containerd_runtime(False)
    container = runtime.run_fuse_container(mounts=[cri_client.MountSpec(FUSE, FUSE, readonly=False)])
    probe = _probe(container)
    assert probe.node_numbers() == _host_fuse_numbers()
    assert not probe.cgroup_allows_rw(*_host_fuse_numbers()), probe.cgroup_rules
    opened = container.sh(f"exec 3<>{FUSE}")
    print(f"open {FUSE}: {opened}")
    assert not opened.ok
    assert "not permitted" in opened.stderr.lower(), opened
    _assert_fuse_refused(probe)
