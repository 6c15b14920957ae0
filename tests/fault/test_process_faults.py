"""Signals and a second instance against the real plugin process."""

from __future__ import annotations

import signal

from tests.fakes import kubelet as fake
from tests.fault import conftest as fault


def _wait_registered(kubelet: fake.FakeKubelet, count: int) -> None:
    kubelet.wait_for_registrations(count, timeout=15)
    kubelet.wait_for_plugin(fault.RESOURCE, timeout=5).wait_for_list(lambda r: len(r.devices) > 0)


def test_sigterm_removes_the_socket_and_exits_zero(
    kubelet: fake.FakeKubelet, start_plugin: fault.PluginFactory
) -> None:
    plugin = start_plugin()
    _wait_registered(kubelet, 1)
    socket = kubelet.plugin_dir / fault.SOCKET_NAME
    assert socket.is_socket()

    assert fault.stop(plugin.process, signal.SIGTERM) == 0, plugin.log_text()

    assert not socket.exists()
    assert sorted(p.name for p in kubelet.plugin_dir.iterdir()) == [fake.KUBELET_SOCKET]
    assert "Traceback" not in plugin.log_text()


def test_sigkill_leaves_a_stale_socket_that_the_next_start_cleans_up(
    kubelet: fake.FakeKubelet, start_plugin: fault.PluginFactory
) -> None:
    killed = start_plugin()
    _wait_registered(kubelet, 1)
    old_connection = kubelet.wait_for_plugin(fault.RESOURCE)
    socket = kubelet.plugin_dir / fault.SOCKET_NAME
    fault.stop(killed.process, signal.SIGKILL)
    assert socket.is_socket(), "SIGKILL cannot clean up: the socket file stays behind"

    restarted = start_plugin()
    kubelet.wait_for_registrations(2, timeout=15)
    kubelet.wait_for_plugin(fault.RESOURCE, newer_than=old_connection).wait_for_list(lambda r: len(r.devices) > 0)

    assert restarted.process.poll() is None, restarted.log_text()
    assert "removing stale socket" in restarted.log_text()
    # The kubelet reached the new process through the socket path (inode numbers get reused: not compared).
    response = kubelet.allocate(fault.RESOURCE, [["fuse-1"]])
    assert len(response.container_responses) == 1


def test_second_instance_on_the_same_socket_is_refused(
    kubelet: fake.FakeKubelet, start_plugin: fault.PluginFactory
) -> None:
    first = start_plugin()
    _wait_registered(kubelet, 1)
    socket = kubelet.plugin_dir / fault.SOCKET_NAME
    inode = socket.stat().st_ino

    second = start_plugin()
    assert second.process.wait(timeout=15) == 1
    log = second.log_text()
    assert "another process is serving" in log
    assert "Traceback" not in log

    assert first.process.poll() is None
    assert socket.stat().st_ino == inode, "the first instance's socket is untouched"
    assert len(kubelet.requests) == 1, "the refused instance did not register"
    response = kubelet.allocate(fault.RESOURCE, [["fuse-0"]])
    assert len(response.container_responses) == 1
