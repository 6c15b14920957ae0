"""Kubelet restarts in a row: the real plugin process registers again every time and leaks nothing."""

from __future__ import annotations

from tests.fakes import kubelet as fake
from tests.fault import conftest as fault

RESTARTS = 100
WARM_UP_RESTARTS = 3  # grpc creates some threads and fds lazily; count after they exist
THREAD_TOLERANCE = 2
FD_TOLERANCE = 3


def _restart_and_reconnect(kubelet: fake.FakeKubelet) -> None:
    seen = len(kubelet.requests)
    kubelet.restart()
    kubelet.wait_for_registrations(seen + 1, timeout=5)
    # In use again once the kubelet has dialled back and received a device list.
    kubelet.wait_for_plugin(fault.RESOURCE, timeout=5).wait_for_list(lambda r: len(r.devices) > 0)


def test_hundred_restarts_reregister_every_time_without_leaking_threads_or_fds(
    kubelet: fake.FakeKubelet, start_plugin: fault.PluginFactory
) -> None:
    plugin = start_plugin()
    kubelet.wait_for_registrations(1, timeout=15)
    kubelet.wait_for_plugin(fault.RESOURCE, timeout=5).wait_for_list(lambda r: len(r.devices) > 0)
    for _ in range(WARM_UP_RESTARTS):
        _restart_and_reconnect(kubelet)
    threads_before, fds_before = fault.task_count(plugin.pid), fault.fd_count(plugin.pid)

    for _ in range(RESTARTS):
        _restart_and_reconnect(kubelet)

    registrations = len(kubelet.requests)
    assert registrations == 1 + WARM_UP_RESTARTS + RESTARTS, "one Register per kubelet restart, no duplicates"
    assert all(r.endpoint == fault.SOCKET_NAME and r.resource_name == fault.RESOURCE for r in kubelet.requests)
    # Old servers wind down asynchronously: give them a moment, then compare.
    fault.wait_until(
        lambda: (
            fault.task_count(plugin.pid) <= threads_before + THREAD_TOLERANCE
            and fault.fd_count(plugin.pid) <= fds_before + FD_TOLERANCE
        ),
        timeout=5,
        what=(
            f"threads {fault.task_count(plugin.pid)} (before {threads_before}) and "
            f"fds {fault.fd_count(plugin.pid)} (before {fds_before}) to settle"
        ),
    )
    assert plugin.process.poll() is None, plugin.log_text()
    assert "Traceback" not in plugin.log_text()
    response = kubelet.allocate(fault.RESOURCE, [["fuse-0"]])
    assert [d.name for d in response.container_responses[0].cdi_devices] == ["cdi-fuse.io/fuse=fuse"]
