"""Kubelet restarts in a row: the real plugin process registers again every time and leaks nothing."""

from __future__ import annotations

import time

from tests.fakes import kubelet as fake
from tests.fault import conftest as fault
from tests.waiting import wait_until

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
    wait_until(
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


DOUBLE_RESTART_ROUNDS = 50
QUIET_S = 2.0


def test_fifty_double_restarts_converge_each_time_without_a_storm(
    kubelet: fake.FakeKubelet, start_plugin: fault.PluginFactory
) -> None:
    """A crash-looping kubelet: two restarts back to back, no pause, 50 times. Each time the plugin ends up
    registered exactly once (with a socket it serves) with the final kubelet, answers Allocate, and then
    registers 0 more times in the following quiet 2 s; threads and fds do not grow. (It used to loop: hundreds
    of Registers every 2 s, forever, after the first double restart.)"""
    plugin = start_plugin()
    kubelet.wait_for_registrations(1, timeout=15)
    kubelet.wait_for_plugin(fault.RESOURCE, timeout=5).wait_for_list(lambda r: len(r.devices) > 0)
    for _ in range(WARM_UP_RESTARTS):
        _restart_and_reconnect(kubelet)
    threads_before, fds_before = fault.task_count(plugin.pid), fault.fd_count(plugin.pid)
    per_round: list[int] = []
    for round_ in range(DOUBLE_RESTART_ROUNDS):
        before = len(kubelet.requests)
        kubelet.restarts_in_a_row(2)
        wait_until(lambda: kubelet.registrations_with_current(fault.RESOURCE) >= 1, 5, f"round {round_}: registered")
        kubelet.wait_for_plugin(fault.RESOURCE, timeout=5).wait_for_list(lambda r: len(r.devices) > 0)
        response = kubelet.allocate(fault.RESOURCE, [["fuse-0"]])
        assert [d.name for d in response.container_responses[0].cdi_devices] == ["cdi-fuse.io/fuse=fuse"]
        settled = len(kubelet.requests)
        time.sleep(QUIET_S)
        assert len(kubelet.requests) == settled, f"round {round_}: {len(kubelet.requests) - settled} Registers in quiet"
        assert kubelet.registrations_with_current(fault.RESOURCE) == 1, f"round {round_}"
        per_round.append(len(kubelet.requests) - before)
    # at most one with each kubelet instance that lived (the middle one may get one, too)
    assert max(per_round) <= 2, per_round
    wait_until(
        lambda: (
            fault.task_count(plugin.pid) <= threads_before + THREAD_TOLERANCE
            and fault.fd_count(plugin.pid) <= fds_before + FD_TOLERANCE
        ),
        timeout=5,
        what=f"threads {fault.task_count(plugin.pid)} (before {threads_before}) and fds {fault.fd_count(plugin.pid)} "
        f"(before {fds_before}) to settle",
    )
    assert plugin.process.poll() is None, plugin.log_text()
    assert "Traceback" not in plugin.log_text()
    print(f"\nRegisters per double-restart round: {per_round}")
