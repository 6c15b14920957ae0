"""A fake kubelet plugin watcher that treats DRA plugins the way the real kubelet (1.34+) does.

- watches the plugins_registry dir (inotify) and, at start, walks it: every socket that appears is dialed
  and asked GetInfo; the plugin must be a "DRAPlugin" with a name, an absolute endpoint path and a
  supported service the kubelet knows ("v1.DRAPlugin", else "v1beta1.DRAPlugin"); the result goes back
  through NotifyRegistrationStatus (true, or false with the error);
- a socket deleted from the dir deregisters its driver;
- `restart()` stops watching and forgets every plugin, then starts again: like the real kubelet it does not
  delete registration sockets, it finds them again in its initial walk;
- `prepare()` / `unprepare()` call the registered driver's DRA service the way the kubelet does.
"""

from __future__ import annotations

import contextlib
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import inotify_simple

from cdi_fuse._proto import dra_pb2, dra_pb2_grpc
from cdi_fuse._proto import pluginregistration_pb2 as reg_pb
from cdi_fuse._proto import pluginregistration_pb2_grpc as reg_grpc

KUBELET_SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin")


@dataclass
class RegisteredPlugin:
    socket: Path
    info: reg_pb.PluginInfo
    service: str


class FakePluginWatcher:
    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = registry_dir
        self.plugins: dict[str, RegisteredPlugin] = {}  # by driver name
        self.info_calls: list[reg_pb.PluginInfo] = []
        self.refusals: list[str] = []
        self.registrations = 0
        self.changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._inotify: inotify_simple.INotify | None = None
        self._stop = threading.Event()

    # --- lifecycle ---

    def start(self) -> None:
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._inotify = inotify_simple.INotify()
        flags = inotify_simple.flags
        self._inotify.add_watch(self.registry_dir, flags.CREATE | flags.DELETE | flags.MOVED_TO | flags.MOVED_FROM)
        for entry in sorted(self.registry_dir.iterdir()):
            self._socket_created(entry)
        self._thread = threading.Thread(target=self._run, name="fake-plugin-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._inotify is not None:
            self._inotify.close()
        self._thread = self._inotify = None

    def restart(self) -> None:
        self.stop()
        with self.changed:
            self.plugins.clear()
        self.start()

    def _run(self) -> None:
        assert self._inotify is not None
        flags = inotify_simple.flags
        while not self._stop.is_set():
            for event in self._inotify.read(timeout=50):
                path = self.registry_dir / event.name
                if event.mask & (flags.CREATE | flags.MOVED_TO):
                    self._socket_created(path)
                elif event.mask & (flags.DELETE | flags.MOVED_FROM):
                    self._socket_deleted(path)

    # --- registration, as the kubelet's plugin manager does it ---

    def _socket_created(self, path: Path) -> None:
        if path.name.startswith("."):
            return
        try:
            if not stat.S_ISSOCK(path.stat().st_mode):
                return
        except FileNotFoundError:
            return
        with grpc.insecure_channel(f"unix:{path}") as channel:
            stub = reg_grpc.RegistrationStub(channel)
            try:
                info = stub.GetInfo(reg_pb.InfoRequest(), timeout=5, wait_for_ready=True)
            except grpc.RpcError as exc:
                with self.changed:
                    self.refusals.append(f"GetInfo on {path}: {exc.code().name}")
                    self.changed.notify_all()
                return
            with self.changed:
                self.info_calls.append(info)
            error = self._validate(info)
            if not error:
                service = next(s for s in info.supported_versions if s in KUBELET_SERVICES)
                with self.changed:
                    self.plugins[info.name] = RegisteredPlugin(path, info, service)
                    self.registrations += 1
            stub.NotifyRegistrationStatus(
                reg_pb.RegistrationStatus(plugin_registered=not error, error=error), timeout=5
            )
            with self.changed:
                if error:
                    self.refusals.append(error)
                self.changed.notify_all()

    @staticmethod
    def _validate(info: reg_pb.PluginInfo) -> str:
        if info.type != "DRAPlugin":
            return f"plugin type {info.type!r} is not DRAPlugin"
        if not info.name:
            return "empty driver name"
        if not info.supported_versions:
            return "empty list of supported gRPC services (aka supported versions)"
        if not any(s in KUBELET_SERVICES for s in info.supported_versions):
            return f"none of services supported by the plugin ({list(info.supported_versions)}) are supported"
        if not Path(info.endpoint).is_absolute():
            return f"endpoint {info.endpoint!r} is not an absolute path"
        return ""

    def _socket_deleted(self, path: Path) -> None:
        with self.changed:
            for name, plugin in list(self.plugins.items()):
                if plugin.socket == path:
                    del self.plugins[name]
            self.changed.notify_all()

    # --- test helpers ---

    def wait_registered(self, driver: str, *, registrations: int = 1, timeout: float = 10.0) -> RegisteredPlugin:
        with self.changed:
            ok = self.changed.wait_for(lambda: driver in self.plugins and self.registrations >= registrations, timeout)
            if not ok:
                raise AssertionError(
                    f"{driver} not registered ({self.registrations} registrations, refusals {self.refusals})"
                )
            return self.plugins[driver]

    def wait_unregistered(self, driver: str, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: driver not in self.plugins, timeout), f"{driver} still registered"

    def _stub(self, driver: str) -> tuple[grpc.Channel, dra_pb2_grpc.DRAPluginStub]:
        plugin = self.plugins[driver]
        assert plugin.service == "v1.DRAPlugin"
        channel = grpc.insecure_channel(f"unix:{plugin.info.endpoint}")
        return channel, dra_pb2_grpc.DRAPluginStub(channel)

    def prepare(self, driver: str, claims: Sequence[dra_pb2.Claim]) -> dra_pb2.NodePrepareResourcesResponse:
        channel, stub = self._stub(driver)
        with channel:
            return stub.NodePrepareResources(dra_pb2.NodePrepareResourcesRequest(claims=list(claims)), timeout=10)

    def unprepare(self, driver: str, claims: Sequence[dra_pb2.Claim]) -> dra_pb2.NodeUnprepareResourcesResponse:
        channel, stub = self._stub(driver)
        with channel:
            return stub.NodeUnprepareResources(dra_pb2.NodeUnprepareResourcesRequest(claims=list(claims)), timeout=10)


@contextlib.contextmanager
def plugin_watcher(registry_dir: Path) -> Iterator[FakePluginWatcher]:
    watcher = FakePluginWatcher(registry_dir)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()
