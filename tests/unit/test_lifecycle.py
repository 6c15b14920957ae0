"""Serving and registration lifecycle against the fake kubelet: registration, health, aliases, kubelet
restarts, a kubelet that is not there yet, the spec kept on disk, stale/live sockets, and logging."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cdi_fuse import errors
from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse.deviceplugin import lifecycle, metrics, server
from tests.conftest import PROC_FILESYSTEMS_WITHOUT_FUSE, CharDeviceFactory
from tests.fakes.fake_cri import make_stale_socket, short_tmp_dir
from tests.fakes.kubelet import FakeKubelet, PluginConnection, plugin_config, plugin_thread
from tests.unit.conftest import StartPlugin

RESOURCE = "cdi-fuse.io/fuse"
ALIASES = ("cdi-fuse.io/fuse", "github.com/fuse", "squat.ai/fuse", "smarter-devices/fuse")


def healths(response: pb.ListAndWatchResponse) -> set[str]:
    return {device.health for device in response.devices}


def all_healthy(response: pb.ListAndWatchResponse) -> bool:
    return healths(response) == {server.HEALTHY}


def all_unhealthy(response: pb.ListAndWatchResponse) -> bool:
    return healths(response) == {server.UNHEALTHY}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.01)


# ---- registration ----------------------------------------------------------------------------------------


def test_registration_fields(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin()
    (request,) = kubelet.wait_for_registrations(1)
    assert request.version == "v1beta1"
    assert request.endpoint == "cdi-fuse-cdi-fuse.io_fuse.sock" == lifecycle.socket_name(RESOURCE)
    assert "/" not in request.endpoint
    assert (kubelet.plugin_dir / request.endpoint).is_socket()
    assert request.resource_name == RESOURCE
    conn = kubelet.wait_for_plugin(RESOURCE)
    assert request.options == conn.stub.GetDevicePluginOptions(pb.Empty(), timeout=5)
    assert not kubelet.connect_errors


def test_socket_is_served_before_register(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin(resource_names=ALIASES)
    kubelet.wait_for_registrations(len(ALIASES))
    kubelet.restart()
    kubelet.wait_for_registrations(2 * len(ALIASES))
    assert kubelet.served_at_register == [True] * 2 * len(ALIASES)


def test_aliases_get_their_own_socket_registration_and_allocations(
    kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    start_plugin(resource_names=ALIASES, strategy="cdi,cdi-annotations")
    requests = kubelet.wait_for_registrations(len(ALIASES))
    assert sorted(r.resource_name for r in requests) == sorted(ALIASES)
    endpoints = {r.resource_name: r.endpoint for r in requests}
    assert len(set(endpoints.values())) == len(ALIASES)
    for resource in ALIASES:
        assert (kubelet.plugin_dir / endpoints[resource]).is_socket()
        (response,) = kubelet.allocate(resource, [["fuse-0"]]).container_responses
        assert [d.name for d in response.cdi_devices] == ["cdi-fuse.io/fuse=fuse"]
        assert dict(response.annotations) == {
            f"cdi.k8s.io/{resource.replace('/', '_')}_fuse-0": "cdi-fuse.io/fuse=fuse"
        }


def test_twenty_kubelet_restarts(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin(resource_names=ALIASES[:2])
    conns = {r: kubelet.wait_for_plugin(r) for r in ALIASES[:2]}
    for restart in range(1, 21):
        kubelet.restart()
        for resource in ALIASES[:2]:
            conn = kubelet.wait_for_plugin(resource, newer_than=conns[resource])
            conn.wait_for_list(all_healthy)  # reconnected, and ListAndWatch delivered
            conns[resource] = conn
        assert kubelet.restarts == restart
    for resource in ALIASES[:2]:
        # one registration per kubelet instance: a duplicate would make the kubelet drop the endpoint again
        assert len(kubelet.registrations_of(resource)) == 21
        (response,) = kubelet.allocate(resource, [["fuse-2"]]).container_responses
        assert response.cdi_devices


def test_plugin_socket_deleted_alone_is_served_and_registered_again(
    kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    (kubelet.plugin_dir / lifecycle.socket_name(RESOURCE)).unlink()
    new = kubelet.wait_for_plugin(RESOURCE, newer_than=conn)
    new.wait_for_list(all_healthy)
    assert len(kubelet.registrations_of(RESOURCE)) == 2
    assert (kubelet.plugin_dir / lifecycle.socket_name(RESOURCE)).is_socket()


def test_kubelet_absent_at_start(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    directory = short_tmp_dir("kubelet-")
    kubelet = FakeKubelet(directory)
    plugin_metrics = metrics.PluginMetrics()
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", min_backoff=0.2, max_backoff=60.0)
    manager = lifecycle.Manager(config, metrics=plugin_metrics)
    failures = plugin_metrics.registration_failures.labels(RESOURCE)
    try:
        with plugin_thread(manager) as runner:
            # retries with growing backoff (0.2 s, 0.4 s, ...) and never gives up
            wait_until(lambda: failures._value.get() >= 3, 10, "three failed registrations")
            assert runner.thread.is_alive() and runner.error is None
            (endpoint,) = manager.endpoints
            next_retry = endpoint.next_attempt
            assert next_retry - time.monotonic() > 0.3
            kubelet.start()
            kubelet.wait_for_plugin(RESOURCE).wait_for_list(all_healthy)
            # registered on the kubelet.sock event, before the scheduled retry
            assert time.monotonic() < next_retry
            assert manager.health_report()[0]
    finally:
        kubelet.stop()
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def test_stop_removes_the_sockets_and_ends_streams(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", resource_names=ALIASES[:2])
    manager = lifecycle.Manager(config)
    with plugin_thread(manager):
        conns = [kubelet.wait_for_plugin(r) for r in ALIASES[:2]]
    assert sorted(p.name for p in kubelet.plugin_dir.iterdir()) == ["kubelet.sock"]
    for conn in conns:
        with conn.changed:
            assert conn.changed.wait_for(lambda c=conn: c.stream_ended, 5)  # type: ignore[misc]
    assert not manager.health_report()[0]


# ---- health ----------------------------------------------------------------------------------------------


def replace_node(path: Path, major: int, minor: int) -> None:
    """Swap the node for another in one rename (no moment without a node)."""
    staging = path.with_name(f".{path.name}.new")
    os.mknod(staging, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    os.replace(staging, path)


def test_device_removed_and_recreated_is_pushed_at_once(
    kubelet: FakeKubelet, start_plugin: StartPlugin, char_device: Path, make_char_device: CharDeviceFactory
) -> None:
    manager = start_plugin()  # safety interval: an hour, so only the inotify event can be the trigger
    conn = kubelet.wait_for_plugin(RESOURCE)
    conn.wait_for_list(all_healthy)
    char_device.unlink()
    conn.wait_for_list(all_unhealthy, timeout=2)
    assert not manager.state.healthy and not manager.health_report()[0]
    make_char_device()
    conn.wait_for_list(all_healthy, timeout=2)
    assert [healths(r) for r in conn.lists] == [{"Healthy"}, {"Unhealthy"}, {"Healthy"}]
    assert manager.health_report()[0]


def test_device_with_other_numbers_is_unhealthy(
    kubelet: FakeKubelet, start_plugin: StartPlugin, char_device: Path
) -> None:
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    conn.wait_for_list(all_healthy)
    replace_node(char_device, 10, 230)
    conn.wait_for_list(all_unhealthy, timeout=2)
    replace_node(char_device, 10, 229)
    conn.wait_for_list(all_healthy, timeout=2)


def test_device_replaced_by_a_regular_file_is_unhealthy(
    kubelet: FakeKubelet, start_plugin: StartPlugin, char_device: Path
) -> None:
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    conn.wait_for_list(all_healthy)
    staging = char_device.with_name("plain")
    staging.write_text("not a device")
    os.replace(staging, char_device)
    conn.wait_for_list(all_unhealthy, timeout=2)


def test_fuse_gone_from_the_kernel_is_seen_at_the_periodic_check(
    kubelet: FakeKubelet, start_plugin: StartPlugin, proc_filesystems: Path
) -> None:
    start_plugin(safety_interval=0.2)
    conn = kubelet.wait_for_plugin(RESOURCE)
    conn.wait_for_list(all_healthy)
    with_fuse = proc_filesystems.read_text()
    proc_filesystems.write_text(PROC_FILESYSTEMS_WITHOUT_FUSE)
    conn.wait_for_list(all_unhealthy, timeout=3)
    proc_filesystems.write_text(with_fuse)
    conn.wait_for_list(all_healthy, timeout=3)


def test_kubelet_restart_while_unhealthy_gets_unhealthy_devices(
    kubelet: FakeKubelet, start_plugin: StartPlugin, char_device: Path
) -> None:
    manager = start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    conn.wait_for_list(all_healthy)
    char_device.unlink()
    conn.wait_for_list(all_unhealthy)
    kubelet.restart()
    new = kubelet.wait_for_plugin(RESOURCE, newer_than=conn)
    assert all_unhealthy(new.wait_for_list(lambda r: True))
    assert not manager.state.healthy


def test_missing_device_fails_with_the_modprobe_hint(
    kubelet: FakeKubelet, proc_filesystems: Path, tmp_path: Path
) -> None:
    config = plugin_config(kubelet, tmp_path / "dev" / "fuse", proc_filesystems, tmp_path / "cdi")
    with pytest.raises(errors.DeviceProbeError) as caught:
        lifecycle.Manager(config)
    assert "modprobe fuse" in caught.value.hint


@pytest.mark.parametrize("count", [0, -1])
def test_count_must_be_positive(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path, count: int
) -> None:
    with pytest.raises(ValueError, match="count"):
        lifecycle.Manager(plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", count=count))


# ---- the spec on disk (--generate) -----------------------------------------------------------------------


def spec_file(tmp_path: Path) -> Path:
    return tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.unlink(), id="deleted"),
        pytest.param(lambda p: p.write_text("cdiVersion: 0.3.0\nkind: x/y\ndevices: []\n"), id="rewritten"),
        pytest.param(lambda p: p.open("a").write("# edited\n"), id="appended"),
        pytest.param(lambda p: os.replace(p, p.with_name("moved.yaml")), id="moved-away"),
    ],
)
def test_spec_is_written_at_start_and_restored(
    start_plugin: StartPlugin, kubelet: FakeKubelet, tmp_path: Path, tamper: Callable[[Path], object]
) -> None:
    start_plugin()
    kubelet.wait_for_registrations(1)
    path = spec_file(tmp_path)
    original = path.read_text()
    assert "cdi-fuse.io/fuse" in original and "major: 10" in original and "minor: 229" in original
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    tamper(path)
    wait_until(lambda: path.exists() and path.read_text() == original, 1.0, "spec restored")


def test_spec_dir_removed_is_restored_and_watched_again(
    start_plugin: StartPlugin, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    """Regression: after the spec dir was removed and re-created, the new dir went unwatched until the
    periodic check, so a later deletion of the spec stayed unrepaired for up to its interval."""
    start_plugin()
    kubelet.wait_for_registrations(1)
    path = spec_file(tmp_path)
    original = path.read_text()
    os.rename(path.parent, tmp_path / "gone")  # in one step: the plugin may write into it meanwhile
    shutil.rmtree(tmp_path / "gone")
    wait_until(lambda: path.exists() and path.read_text() == original, 1.0, "spec restored with its dir")
    path.unlink()
    wait_until(lambda: path.exists() and path.read_text() == original, 1.0, "spec restored again")


def test_no_generate_leaves_the_spec_dir_alone(start_plugin: StartPlugin, kubelet: FakeKubelet, tmp_path: Path) -> None:
    start_plugin(write_spec=False)
    kubelet.wait_for_registrations(1)
    assert not spec_file(tmp_path).exists()


# ---- sockets left by others ------------------------------------------------------------------------------


def test_check_socket_free_absent(tmp_path: Path) -> None:
    lifecycle.check_socket_free(tmp_path / "nothing.sock")


def test_check_socket_free_removes_a_stale_socket() -> None:
    directory = short_tmp_dir("sock-")
    try:
        path = make_stale_socket(directory / "p.sock")
        lifecycle.check_socket_free(path)
        assert not path.exists()
    finally:
        directory.rmdir()


def test_check_socket_free_refuses_a_live_socket() -> None:
    directory = short_tmp_dir("sock-")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path = directory / "p.sock"
        listener.bind(str(path))
        listener.listen(1)
        with pytest.raises(errors.RegistrationError, match="another process is serving") as caught:
            lifecycle.check_socket_free(path)
        assert caught.value.socket == path
        assert path.exists()
    finally:
        listener.close()
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def test_second_plugin_on_the_same_socket_refuses_and_leaves_the_first_alone(
    kubelet: FakeKubelet, start_plugin: StartPlugin, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    start_plugin()
    kubelet.wait_for_registrations(1)
    second = lifecycle.Manager(plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi"))
    with pytest.raises(errors.RegistrationError, match="another process is serving"):
        second.run()
    assert (kubelet.plugin_dir / lifecycle.socket_name(RESOURCE)).is_socket()
    assert kubelet.allocate(RESOURCE, [["fuse-0"]]).container_responses[0].cdi_devices
    assert len(kubelet.requests) == 1


def test_stale_socket_from_a_killed_plugin_is_replaced(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    make_stale_socket(kubelet.plugin_dir / lifecycle.socket_name(RESOURCE))
    start_plugin()
    kubelet.wait_for_plugin(RESOURCE).wait_for_list(all_healthy)


# ---- logging ---------------------------------------------------------------------------------------------


def test_one_log_line_per_lifecycle_event_and_none_per_allocate(
    kubelet: FakeKubelet,
    start_plugin: StartPlugin,
    char_device: Path,
    make_char_device: CharDeviceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    start_plugin()
    conn: PluginConnection = kubelet.wait_for_plugin(RESOURCE)
    conn.wait_for_list(all_healthy)
    char_device.unlink()
    conn.wait_for_list(all_unhealthy)
    make_char_device()
    conn.wait_for_list(all_healthy)
    kubelet.restart()
    kubelet.wait_for_plugin(RESOURCE, newer_than=conn).wait_for_list(all_healthy)
    lifecycle_lines = [r.getMessage() for r in caplog.records if r.name == lifecycle.__name__]

    def count(prefix: str) -> int:
        return sum(line.startswith(prefix) for line in lifecycle_lines)

    assert count("started:") == 1
    assert count("registered ") == 2
    assert count("health change: device unhealthy") == 1
    assert count("health change: device healthy") == 1
    assert count("strategy decision:") == 1
    assert 1 <= count("kubelet restart seen") <= 2
    assert count("wrote CDI spec") == 1

    caplog.clear()
    for index in range(50):
        kubelet.allocate(RESOURCE, [[f"fuse-{index % 3}"]])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


def test_repeated_spec_failure_is_logged_once(
    kubelet: FakeKubelet, start_plugin: StartPlugin, char_device: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a missing device made every periodic check log 'cannot write the CDI spec' again."""
    caplog.set_level(logging.INFO)
    manager = start_plugin(safety_interval=0.05)
    conn = kubelet.wait_for_plugin(RESOURCE)
    char_device.unlink()
    conn.wait_for_list(all_unhealthy)
    checks = threading.Event()
    original = manager._safety_check
    calls = 0

    def counting() -> None:
        nonlocal calls
        original()
        calls += 1
        if calls >= 5:
            checks.set()

    manager._safety_check = counting  # type: ignore[method-assign]
    assert checks.wait(5), "periodic check did not run 5 times"
    spec_errors = [r for r in caplog.records if "cannot write the CDI spec" in r.getMessage()]
    assert len(spec_errors) <= 1


def test_kubelet_sock_appearing_during_register_does_not_register_twice(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: kubelet.sock created between the inode read and Register left kubelet_inode None, so
    the creation event registered a second time with the same kubelet (seen under load)."""
    real_inode = lifecycle._inode
    raced: list[Path] = []

    def racing_inode(path: Path) -> int | None:
        if path.name == "kubelet.sock" and not raced:
            raced.append(path)  # the first look finds no kubelet.sock yet
            return None
        return real_inode(path)

    monkeypatch.setattr(lifecycle, "_inode", racing_inode)
    plugin_metrics = metrics.PluginMetrics()
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi")
    with plugin_thread(lifecycle.Manager(config, metrics=plugin_metrics)):
        kubelet.wait_for_plugin(RESOURCE).wait_for_list(all_healthy)
        assert raced
        # the creation event of the same kubelet.sock (same inode): moved away and back
        kubelet_sock = kubelet.plugin_dir / "kubelet.sock"
        os.rename(kubelet_sock, kubelet.plugin_dir / "k.tmp")
        os.rename(kubelet.plugin_dir / "k.tmp", kubelet_sock)
        wait_until(lambda: plugin_metrics.kubelet_restarts._value.get() >= 1, 5, "kubelet.sock event handled")
    assert len(kubelet.registrations_of(RESOURCE)) == 1
