"""The FUSE device node disappears and comes back: ListAndWatch pushes Unhealthy, then Healthy."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from cdi_fuse._proto import deviceplugin_pb2 as pb
from tests.conftest import FUSE_MAJOR, FUSE_MINOR
from tests.fakes import kubelet as fake
from tests.fault import conftest as fault


def _all(health: str) -> Callable[[pb.ListAndWatchResponse], bool]:
    return lambda response: bool(response.devices) and all(d.health == health for d in response.devices)


def test_device_removed_pushes_unhealthy_and_restored_pushes_healthy(
    kubelet: fake.FakeKubelet, start_plugin: fault.PluginFactory, fuse_device: Path
) -> None:
    plugin = start_plugin("--count", "3")
    kubelet.wait_for_registrations(1, timeout=15)
    conn = kubelet.wait_for_plugin(fault.RESOURCE, timeout=5)
    first = conn.wait_for_list(_all("Healthy"))
    assert [d.ID for d in first.devices] == ["fuse-0", "fuse-1", "fuse-2"]

    fuse_device.unlink()
    conn.wait_for_list(_all("Unhealthy"))

    os.mknod(fuse_device, stat.S_IFCHR | 0o666, os.makedev(FUSE_MAJOR, FUSE_MINOR))
    conn.wait_for_list(_all("Healthy"))

    # Replaced by a node with other numbers: not the device that was probed.
    fuse_device.unlink()
    os.mknod(fuse_device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    conn.wait_for_list(_all("Unhealthy"))

    healths = [tuple(d.health for d in r.devices) for r in conn.lists]
    assert [h[0] for h in healths] == ["Healthy", "Unhealthy", "Healthy", "Unhealthy"], "one update per change"
    assert plugin.process.poll() is None
    assert "Traceback" not in plugin.log_text()
