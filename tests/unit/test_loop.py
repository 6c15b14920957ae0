"""The plugin loop against the fake kubelet: registration, health, aliases, kubelet restarts (single, back to
back, with jitter, during Register, a kubelet.sock that flashes, our socket deleted by someone else), a
kubelet that is not there yet, the spec kept on disk, stale/live sockets, readiness, and logging."""

from __future__ import annotations

import contextlib
import logging
import os
import random
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
from cdi_fuse.deviceplugin import endpoint, loop, server
from tests.conftest import PROC_FILESYSTEMS_WITHOUT_FUSE, CharDeviceFactory
from tests.fakes.fake_cri import make_stale_socket, short_tmp_dir
from tests.fakes.kubelet import FakeKubelet, PluginConnection, plugin_config, plugin_thread
from tests.fakes.observer import RecordingObserver
from tests.unit.conftest import StartPlugin
from tests.waiting import wait_until

RESOURCE = "cdi-fuse.io/fuse"
ALIASES = ("cdi-fuse.io/fuse", "github.com/fuse", "squat.ai/fuse", "smarter-devices/fuse")


def healths(response: pb.ListAndWatchResponse) -> set[str]:
    return {device.health for device in response.devices}


def all_healthy(response: pb.ListAndWatchResponse) -> bool:
    return healths(response) == {server.HEALTHY}


def all_unhealthy(response: pb.ListAndWatchResponse) -> bool:
    return healths(response) == {server.UNHEALTHY}


# ---- registration ----------------------------------------------------------------------------------------


def test_registration_fields(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin()
    (request,) = kubelet.wait_for_registrations(1)
    assert request.version == "v1beta1"
    assert request.endpoint == "cdi-fuse-cdi-fuse.io_fuse.sock" == endpoint.socket_name(RESOURCE)
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


# ---- restarts that used to start a registration storm --------------------------------------------------

QUIET_S = 0.5  # after converging, this long without a single further Register


def assert_settled(kubelet: FakeKubelet, resources: tuple[str, ...] = (RESOURCE,)) -> None:
    """Registered exactly once with the kubelet serving now, in use (device list received), then quiet."""
    for resource in resources:

        def registered(resource: str = resource) -> bool:
            return kubelet.registrations_with_current(resource) >= 1

        wait_until(registered, 5, f"{resource} registered")
        kubelet.wait_for_plugin(resource).wait_for_list(all_healthy)
    seen = len(kubelet.requests)
    time.sleep(QUIET_S)
    assert len(kubelet.requests) == seen, f"{len(kubelet.requests) - seen} more Register calls while quiet"
    for resource in resources:
        assert kubelet.registrations_with_current(resource) == 1
        (response,) = kubelet.allocate(resource, [["fuse-1"]]).container_responses
        assert response.cdi_devices


@pytest.mark.parametrize("restarts", [2, 3], ids=["double", "triple"])
def test_back_to_back_restarts_converge_to_one_registration(
    kubelet: FakeKubelet, start_plugin: StartPlugin, restarts: int
) -> None:
    start_plugin(resource_names=ALIASES[:2])
    assert_settled(kubelet, ALIASES[:2])
    for _ in range(5):
        before = len(kubelet.requests)
        kubelet.restarts_in_a_row(restarts)
        assert_settled(kubelet, ALIASES[:2])
        # at most one Register per kubelet instance that lived, per resource; never a storm
        assert len(kubelet.requests) - before <= restarts * 2


def test_restarts_with_jitter_converge(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin()
    assert_settled(kubelet)
    jitter = random.Random(9)  # 0-5 ms between restarts, the same sequence every run
    for _ in range(5):
        kubelet.restarts_in_a_row(3, pause=lambda: jitter.uniform(0, 0.005))
        assert_settled(kubelet)


def test_restart_during_register(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    kubelet.restart_during_register()
    start_plugin()
    assert_settled(kubelet)
    assert kubelet.generations[0] == 1 and kubelet.generation == 2


def test_kubelet_sock_that_vanishes_before_it_is_dialled(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin()
    assert_settled(kubelet)
    kubelet.stop()
    kubelet.delete_sockets()
    kubelet.flash()  # served and gone again at once
    kubelet.flash(0.01)
    kubelet.start()
    assert_settled(kubelet)


def test_our_socket_deleted_by_someone_else_after_a_double_restart(
    kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    start_plugin()
    kubelet.restarts_in_a_row(2)
    assert_settled(kubelet)
    conn = kubelet.wait_for_plugin(RESOURCE)
    (kubelet.plugin_dir / endpoint.socket_name(RESOURCE)).unlink()
    kubelet.wait_for_plugin(RESOURCE, newer_than=conn).wait_for_list(all_healthy)
    assert kubelet.registrations_with_current(RESOURCE) == 2  # the same kubelet must dial the new socket
    seen = len(kubelet.requests)
    time.sleep(QUIET_S)
    assert len(kubelet.requests) == seen


def test_the_plugin_never_deletes_a_socket_it_did_not_create(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    """Someone else's live socket at our name (after the kubelet deleted ours) is left alone; the plugin
    reports it and serves again once it is gone."""
    start_plugin(min_backoff=0.05, max_backoff=0.05)
    conn = kubelet.wait_for_plugin(RESOURCE)
    path = kubelet.plugin_dir / endpoint.socket_name(RESOURCE)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staging = kubelet.plugin_dir / "other.tmp"
        other.bind(str(staging))
        other.listen(1)
        os.replace(staging, path)  # replaces ours in one step
        identity = endpoint.file_identity(path)
        time.sleep(QUIET_S)  # the plugin retries every 50 ms meanwhile
        assert endpoint.file_identity(path) == identity, "the plugin deleted a socket it did not create"
    finally:
        other.close()  # now stale: the plugin may remove it itself (a dead process's socket) before we do
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    kubelet.wait_for_plugin(RESOURCE, newer_than=conn).wait_for_list(all_healthy)


def test_plugin_socket_deleted_alone_is_served_and_registered_again(
    kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    (kubelet.plugin_dir / endpoint.socket_name(RESOURCE)).unlink()
    new = kubelet.wait_for_plugin(RESOURCE, newer_than=conn)
    new.wait_for_list(all_healthy)
    assert len(kubelet.registrations_of(RESOURCE)) == 2
    assert (kubelet.plugin_dir / endpoint.socket_name(RESOURCE)).is_socket()


def test_kubelet_absent_at_start_is_waited_for_without_polling(
    char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    directory = short_tmp_dir("kubelet-")
    kubelet = FakeKubelet(directory)
    observer = RecordingObserver()
    # A retry would be 30 s away: only the kubelet.sock creation event can make the plugin register in time.
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", min_backoff=30.0, max_backoff=60.0)
    manager = loop.PluginLoop(config, observer=observer)
    try:
        with plugin_thread(manager) as runner:
            wait_until(lambda: manager.endpoints[0].socket_is_ours(), 5, "the plugin serving its socket")
            assert observer.failures == []  # no kubelet.sock: nothing to dial, no attempt
            assert not manager.health_report()[0]
            kubelet.start()
            kubelet.wait_for_plugin(RESOURCE).wait_for_list(all_healthy)
            assert runner.thread.is_alive() and runner.error is None
            assert observer.registrations == [RESOURCE] and observer.failures == []
            wait_until(lambda: manager.health_report()[0], 5, "ready")
    finally:
        kubelet.stop()
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def test_stale_kubelet_socket_is_retried_with_backoff_and_the_new_kubelet_at_once(
    char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    """A kubelet killed by SIGTERM leaves kubelet.sock behind: Register fails, the plugin backs off, and the
    new kubelet's kubelet.sock (an event) is registered with at once, not at the next retry."""
    directory = short_tmp_dir("kubelet-")
    kubelet = FakeKubelet(directory)
    make_stale_socket(directory / "kubelet.sock")
    observer = RecordingObserver()
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", min_backoff=30.0, max_backoff=60.0)
    manager = loop.PluginLoop(config, observer=observer)
    try:
        with plugin_thread(manager):
            observer.wait_for(lambda o: len(o.failures) == 1, what="the first failed Register")
            assert not manager.health_report()[0]
            kubelet.start()  # replaces the stale kubelet.sock
            kubelet.wait_for_plugin(RESOURCE).wait_for_list(all_healthy)
            assert observer.failures == [RESOURCE] and observer.registrations == [RESOURCE]
    finally:
        kubelet.stop()
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def test_stop_removes_the_sockets_and_ends_streams(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", resource_names=ALIASES[:2])
    manager = loop.PluginLoop(config)
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
        loop.PluginLoop(config)
    assert "modprobe fuse" in caught.value.hint


@pytest.mark.parametrize("count", [0, -1])
def test_count_must_be_positive(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path, count: int
) -> None:
    with pytest.raises(errors.InvalidOptionError, match="count") as caught:
        plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", count=count)
    assert caught.value.option == "--count"


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
    endpoint.check_socket_free(tmp_path / "nothing.sock")


def test_check_socket_free_removes_a_stale_socket() -> None:
    directory = short_tmp_dir("sock-")
    try:
        path = make_stale_socket(directory / "p.sock")
        endpoint.check_socket_free(path)
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
            endpoint.check_socket_free(path)
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
    second = loop.PluginLoop(plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi"))
    with pytest.raises(errors.RegistrationError, match="another process is serving"):
        second.run()
    assert (kubelet.plugin_dir / endpoint.socket_name(RESOURCE)).is_socket()
    assert kubelet.allocate(RESOURCE, [["fuse-0"]]).container_responses[0].cdi_devices
    assert len(kubelet.requests) == 1


def test_stale_socket_from_a_killed_plugin_is_replaced(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    make_stale_socket(kubelet.plugin_dir / endpoint.socket_name(RESOURCE))
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
    plugin_lines = [r.getMessage() for r in caplog.records if r.name.startswith("cdi_fuse.deviceplugin")]

    def count(prefix: str) -> int:
        return sum(line.startswith(prefix) for line in plugin_lines)

    assert count("started:") == 1
    assert count("registered ") == 2
    assert count(f"registered {RESOURCE} with the kubelet (first registration)") == 1
    assert count(f"registered {RESOURCE} with the kubelet (kubelet restarted)") == 1  # one line per restart
    assert count("health change: device unhealthy") == 1
    assert count("health change: device healthy") == 1
    assert count("strategy decision:") == 1
    assert count("wrote CDI spec") == 1
    assert len(plugin_lines) == 7, plugin_lines

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
    assert len(spec_errors) == 1


def test_other_plugins_sockets_coming_and_going_change_nothing(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    """Events in the dir are only hints: other plugins' sockets appearing and vanishing make the plugin look,
    find itself registered with the same kubelet, and do nothing."""
    observer = RecordingObserver()
    start_plugin(observer=observer)
    conn = kubelet.wait_for_plugin(RESOURCE)
    for index in range(20):
        make_stale_socket(kubelet.plugin_dir / f"other-{index}.sock").unlink()
    # Events are handled in order: once the socket deletion below is handled, the ones above were too.
    (kubelet.plugin_dir / endpoint.socket_name(RESOURCE)).unlink()
    kubelet.wait_for_plugin(RESOURCE, newer_than=conn).wait_for_list(all_healthy)
    # the kubelet may dial back before the plugin has noted its Register's answer
    observer.wait_for(lambda o: len(o.registrations) >= 2, what="the second registration reported")
    assert observer.registrations == [RESOURCE, RESOURCE]
    assert observer.kubelet_restarts == 0
    assert len(kubelet.registrations_of(RESOURCE)) == 2
