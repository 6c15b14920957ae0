"""The DRA driver end to end against a fake kubelet plugin watcher and an in-memory API (root: mknod)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi_fuse import errors
from cdi_fuse import sockets as shared_sockets
from cdi_fuse._proto import dra_pb2
from cdi_fuse.dra import driver, sockets, status
from cdi_fuse.node import generate
from tests.fakes.dra_kubelet import FakePluginWatcher, plugin_watcher
from tests.fakes.resource_api import FakeResourceApi

DRIVER = "fuse.cdi-fuse.io"
NODE = "node-a"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def running(drv: driver.Driver) -> Iterator[driver.Driver]:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            drv.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="dra-driver", daemon=True)
    thread.start()
    try:
        wait_until(lambda: drv.registrar_endpoint.is_ours() or bool(failure), what="driver serving")
        if failure:
            raise failure[0]
        yield drv
    finally:
        drv.stop()
        thread.join(10)
        assert not thread.is_alive(), "driver did not stop"


class Setup:
    def __init__(self, root: Path, device: Path, proc_filesystems: Path) -> None:
        self.root = root
        self.device = device
        self.proc_filesystems = proc_filesystems
        self.api = FakeResourceApi(node_uids={NODE: "uid-node-a"})

    def config(self, **overrides: Any) -> driver.DriverConfig:
        values: dict[str, Any] = {
            "node_name": NODE,
            "registry_dir": self.root / "reg",
            "plugins_dir": self.root / "plugins",
            "generate_options": generate.GenerateOptions(
                device_path=self.device, proc_filesystems=self.proc_filesystems, spec_dir=self.root / "cdi"
            ),
            "safety_interval": 0.5,
            "min_backoff": 0.05,
            "max_backoff": 0.2,
        }
        values.update(overrides)
        return driver.DriverConfig(**values)

    def driver(self, **overrides: Any) -> driver.Driver:
        return driver.Driver(
            self.config(**overrides), store=self.api, claims=self.api, slice_watch=self.api.slice_watch
        )

    def slice(self) -> dict[str, Any]:
        (only,) = self.api.slices.values()
        return only


@pytest.fixture
def setup(char_device: Path, proc_filesystems: Path) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="dra-") as root:  # short: unix socket paths are limited
        yield Setup(Path(root), char_device, proc_filesystems)


@pytest.fixture
def kubelet(setup: Setup) -> Iterator[FakePluginWatcher]:
    with plugin_watcher(setup.root / "reg") as watcher:
        yield watcher


def claim_for(setup: Setup, name: str, device: str = "fuse") -> dra_pb2.Claim:
    uid = setup.api.add_claim(
        "ns", name, results=[{"request": "fuse", "driver": DRIVER, "pool": NODE, "device": device}]
    )
    return dra_pb2.Claim(namespace="ns", name=name, uid=uid)


def test_registers_publishes_and_prepares(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver()) as drv:
        plugin = kubelet.wait_registered(DRIVER)
        assert plugin.info.type == "DRAPlugin"
        assert plugin.info.endpoint == str(setup.root / "plugins" / DRIVER / "dra.sock")
        assert list(plugin.info.supported_versions) == ["v1.DRAPlugin"]
        assert plugin.socket == setup.root / "reg" / f"{DRIVER}-reg.sock"
        wait_until(lambda: drv.registration.status().registered, what="NotifyRegistrationStatus seen")
        recorded = status.read_status(drv.config.status_path)
        assert recorded is not None and recorded.registered  # what `doctor` reads
        published = setup.slice()
        assert published["spec"]["pool"] == {"name": NODE, "generation": 1, "resourceSliceCount": 1}
        assert published["spec"]["devices"][0]["attributes"]["healthy"] == {"bool": True}
        assert (setup.root / "cdi" / "cdi-fuse.io-fuse.yaml").is_file()

        claim = claim_for(setup, "a")
        response = kubelet.prepare(DRIVER, [claim])
        assert list(response.claims[claim.uid].devices[0].cdi_device_ids) == ["cdi-fuse.io/fuse=fuse"]
        assert kubelet.unprepare(DRIVER, [claim]).claims[claim.uid].error == ""
        ok, why = drv.health_report()
        assert ok, why


def test_prepare_restores_a_deleted_spec_first(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver()):
        kubelet.wait_registered(DRIVER)
        spec = setup.root / "cdi" / "cdi-fuse.io-fuse.yaml"
        spec.unlink()
        claim = claim_for(setup, "a")
        assert kubelet.prepare(DRIVER, [claim]).claims[claim.uid].error == ""
        assert spec.is_file()


def test_deleted_registration_socket_is_served_again_and_registers_again(
    setup: Setup, kubelet: FakePluginWatcher
) -> None:
    with running(setup.driver()) as drv:
        plugin = kubelet.wait_registered(DRIVER)
        plugin.socket.unlink()
        kubelet.wait_registered(DRIVER, registrations=2)
        assert drv.registrar_endpoint.is_ours()
        wait_until(lambda: drv.registration.status().count == 2, what="second NotifyRegistrationStatus")


def test_kubelet_restart_registers_again_without_the_driver_touching_its_socket(
    setup: Setup, kubelet: FakePluginWatcher
) -> None:
    with running(setup.driver()) as drv:
        plugin = kubelet.wait_registered(DRIVER)
        inode = shared_sockets.file_identity(plugin.socket)
        kubelet.restart()
        kubelet.wait_registered(DRIVER, registrations=2)
        assert shared_sockets.file_identity(plugin.socket) == inode
        wait_until(lambda: drv.registration.status().count == 2, what="registered again")


def test_slices_wiped_by_the_kubelet_are_published_again(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver()):
        kubelet.wait_registered(DRIVER)
        setup.api.wipe(NODE)
        wait_until(lambda: len(setup.api.slices) == 1, what="republished slice")
        assert setup.slice()["spec"]["pool"]["generation"] == 2


def test_own_writes_do_not_trigger_more_writes(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver()):
        kubelet.wait_registered(DRIVER)
        time.sleep(1.2)  # two safety rounds and every watch hint our own write caused
        assert setup.api.writes == [("create", f"{NODE}-{DRIVER}")]


def test_device_removed_and_back_updates_the_slice_and_prepare(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver()):
        kubelet.wait_registered(DRIVER)
        stat = os.stat(setup.device)
        setup.device.unlink()
        wait_until(
            lambda: setup.slice()["spec"]["devices"][0]["attributes"]["healthy"] == {"bool": False},
            what="unhealthy in the slice",
        )
        assert setup.slice()["spec"]["pool"]["generation"] == 2
        claim = claim_for(setup, "a")
        assert "FUSE device not ready" in kubelet.prepare(DRIVER, [claim]).claims[claim.uid].error
        os.mknod(setup.device, stat.st_mode, stat.st_rdev)
        wait_until(
            lambda: setup.slice()["spec"]["devices"][0]["attributes"]["healthy"] == {"bool": True},
            what="healthy again",
        )
        assert kubelet.prepare(DRIVER, [claim]).claims[claim.uid].error == ""


def test_api_down_at_start_publishes_when_it_answers(setup: Setup, kubelet: FakePluginWatcher) -> None:
    setup.api.fail_next.extend([errors.ApiServerError("connection refused")] * 3)
    with running(setup.driver()):
        kubelet.wait_registered(DRIVER)  # registration does not wait for the API
        wait_until(lambda: len(setup.api.slices) == 1, what="published after retries")


def test_stop_removes_sockets_keeps_slices_and_the_kubelet_deregisters(
    setup: Setup, kubelet: FakePluginWatcher
) -> None:
    with running(setup.driver()) as drv:
        kubelet.wait_registered(DRIVER)
    kubelet.wait_unregistered(DRIVER)
    assert not drv.config.registration_socket.exists()
    assert not drv.config.dra_socket.exists()
    assert not drv.config.status_path.exists()
    assert len(setup.api.slices) == 1


def test_remove_slices_on_stop(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver(remove_slices_on_stop=True)):
        kubelet.wait_registered(DRIVER)
    assert setup.api.slices == {}


def test_a_second_driver_refuses_to_start_while_the_first_serves(setup: Setup, kubelet: FakePluginWatcher) -> None:
    with running(setup.driver()):
        kubelet.wait_registered(DRIVER)
        second = setup.driver()
        with pytest.raises(errors.RegistrationError, match="another process is serving"):
            second.start()
        second.shutdown()
        kubelet.wait_registered(DRIVER)
        assert kubelet.registrations == 1


def test_a_successors_socket_is_never_removed(setup: Setup, kubelet: FakePluginWatcher) -> None:
    """Another process now serves our path (renamed into place): we do not take it over, nor delete it."""
    with running(setup.driver()) as drv:
        kubelet.wait_registered(DRIVER)
        path = drv.config.registration_socket
        successor = sockets.ServedSocket(path.with_name("successor.sock"), lambda server: None)
        successor.serve()
        os.rename(successor.path, path)
        theirs = shared_sockets.file_identity(path)
        try:
            time.sleep(3 * drv.config.safety_interval)  # safety rounds notice the socket is no longer ours
            assert shared_sockets.file_identity(path) == theirs
        finally:
            drv.stop()
        assert shared_sockets.file_identity(path) == theirs
    successor.stop()
    path.unlink()


def test_without_node_name_the_driver_refuses(setup: Setup) -> None:
    with pytest.raises(ValueError, match="node name is required"):
        setup.driver(node_name="")
