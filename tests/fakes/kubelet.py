"""A fake kubelet that behaves like the real one towards device plugins.

- serves Registration on <dir>/kubelet.sock;
- on Register, checks the version, then (asynchronously, like the kubelet) dials the plugin's socket,
  calls GetDevicePluginOptions, then keeps a ListAndWatch stream open and records every list;
- `restart()` deletes every socket in the dir (the checkpoint file aside) and serves kubelet.sock again;
- `allocate()` calls Allocate on a registered plugin the way the kubelet does.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc

KUBELET_SOCKET = "kubelet.sock"
CHECKPOINT = "kubelet_internal_checkpoint"


@dataclass
class PluginConnection:
    request: pb.RegisterRequest
    channel: grpc.Channel
    options: pb.DevicePluginOptions | None = None
    lists: list[pb.ListAndWatchResponse] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    stream: object | None = None

    @property
    def stub(self) -> pb_grpc.DevicePluginStub:
        return pb_grpc.DevicePluginStub(self.channel)

    def wait_for_list(self, predicate, timeout: float = 5.0) -> pb.ListAndWatchResponse:
        with self.changed:
            ok = self.changed.wait_for(lambda: bool(self.lists) and predicate(self.lists[-1]), timeout)
            if not ok:
                raise AssertionError(f"no matching ListAndWatch update in {timeout}s; last: {self.lists[-1:]}")
            return self.lists[-1]


class FakeKubelet(pb_grpc.RegistrationServicer):
    def __init__(self, plugin_dir: Path) -> None:
        self.plugin_dir = plugin_dir
        self.requests: list[pb.RegisterRequest] = []
        self.plugins: dict[str, PluginConnection] = {}
        self._server: grpc.Server | None = None
        self._registered = threading.Condition()
        self.restarts = 0

    # Registration service
    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.Empty:
        if request.version != "v1beta1":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}")
        if "/" in request.endpoint:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "endpoint must be a file name")
        with self._registered:
            self.requests.append(request)
        threading.Thread(target=self._connect, args=(request,), daemon=True).start()
        return pb.Empty()

    def _connect(self, request: pb.RegisterRequest) -> None:
        channel = grpc.insecure_channel(f"unix:{self.plugin_dir / request.endpoint}")
        conn = PluginConnection(request=request, channel=channel)
        try:
            conn.options = conn.stub.GetDevicePluginOptions(pb.Empty(), timeout=5)
            stream = conn.stub.ListAndWatch(pb.Empty())
            conn.stream = stream
            with self._registered:
                old = self.plugins.get(request.resource_name)
                self.plugins[request.resource_name] = conn
                self._registered.notify_all()
            if old is not None:
                old.channel.close()
            for response in stream:
                with conn.changed:
                    conn.lists.append(response)
                    conn.changed.notify_all()
        except grpc.RpcError:
            pass

    # control
    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.plugin_dir / KUBELET_SOCKET}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None
        for conn in list(self.plugins.values()):
            conn.channel.close()
        self.plugins.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.plugin_dir / KUBELET_SOCKET).unlink()

    def delete_sockets(self) -> None:
        for entry in self.plugin_dir.iterdir():
            if entry.name != CHECKPOINT:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def restart(self) -> None:
        """What a kubelet restart looks like to a plugin: every socket deleted, then kubelet.sock again."""
        self.stop()
        self.delete_sockets()
        self.restarts += 1
        self.start()

    def wait_for_registrations(self, count: int, timeout: float = 5.0) -> list[pb.RegisterRequest]:
        with self._registered:
            if not self._registered.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} registrations after {timeout}s, expected {count}")
            return list(self.requests)

    def wait_for_plugin(
        self, resource: str, timeout: float = 5.0, *, newer_than: PluginConnection | None = None
    ) -> PluginConnection:
        with self._registered:
            ok = self._registered.wait_for(
                lambda: resource in self.plugins and self.plugins[resource] is not newer_than, timeout
            )
            if not ok:
                raise AssertionError(f"plugin {resource!r} did not connect in {timeout}s")
            return self.plugins[resource]

    def allocate(self, resource: str, requests: Sequence[Sequence[str]], timeout: float = 5.0) -> pb.AllocateResponse:
        conn = self.wait_for_plugin(resource)
        request = pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=list(ids)) for ids in requests]
        )
        return conn.stub.Allocate(request, timeout=timeout)


@contextlib.contextmanager
def fake_kubelet(plugin_dir: Path | None = None) -> Iterator[FakeKubelet]:
    """A started fake kubelet in a short temp dir (AF_UNIX paths are limited to ~107 bytes)."""
    owned = plugin_dir is None
    directory = Path(tempfile.mkdtemp(prefix="kubelet-", dir="/tmp")) if plugin_dir is None else plugin_dir
    kubelet = FakeKubelet(directory)
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
