"""A fake kubelet that behaves like the real one towards device plugins.

- serves Registration on <dir>/kubelet.sock;
- on Register, checks the version, the endpoint (a file name in the dir) and the resource name, records
  whether the plugin's socket already accepted connections, then (asynchronously, like the kubelet)
  dials the plugin's socket, calls GetDevicePluginOptions, then keeps a ListAndWatch stream open and
  records every list;
- `start()` deletes every file in the dir (the checkpoint aside), then serves kubelet.sock, as the real
  kubelet's device manager does; `restart()` is stop + start; restarts can come back to back, with or
  without a pause (`restarts_in_a_row()`), from a Register in progress (`restart_during_register()`), or
  half done (`stop()`, then `start()` later; `flash()` serves kubelet.sock for a moment only; `kill()`
  leaves a stale kubelet.sock behind as the real kubelet does on SIGTERM);
- every Register is recorded with the kubelet instance (`generation`) that received it;
- `allocate()` calls Allocate on a registered plugin the way the kubelet does.

`plugin_config()` builds a PluginConfig for a plugin in the fake kubelet's dir with a test device node;
`plugin_thread()` runs a `loop.PluginLoop` in a thread (the way `cdi-fuse plugin` runs it) and
always stops it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cdi_fuse import sockets
from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc
from cdi_fuse.deviceplugin import loop, strategies
from cdi_fuse.node import generate

KUBELET_SOCKET = "kubelet.sock"
CHECKPOINT = "kubelet_internal_checkpoint"
# An extended resource name as the kubelet accepts it: <domain>/<name>, outside kubernetes.io.
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass
class PluginConnection:
    request: pb.RegisterRequest
    channel: grpc.Channel
    options: pb.DevicePluginOptions | None = None
    lists: list[pb.ListAndWatchResponse] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    stream: object | None = None
    stream_ended: bool = False

    @property
    def stub(self) -> pb_grpc.DevicePluginStub:
        return pb_grpc.DevicePluginStub(self.channel)

    def wait_for_list(
        self, predicate: Callable[[pb.ListAndWatchResponse], bool], timeout: float = 5.0
    ) -> pb.ListAndWatchResponse:
        """The newest ListAndWatch response once it satisfies `predicate` (AssertionError on timeout)."""
        with self.changed:
            ok = self.changed.wait_for(lambda: bool(self.lists) and predicate(self.lists[-1]), timeout)
            if not ok:
                raise AssertionError(f"no matching ListAndWatch update in {timeout}s; last: {self.lists[-1:]}")
            return self.lists[-1]


class _Instance(pb_grpc.RegistrationServicer):
    """The Registration service of one kubelet instance (one start): Registers are counted per instance."""

    def __init__(self, kubelet: FakeKubelet, generation: int) -> None:
        self.kubelet = kubelet
        self.generation = generation

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.Empty:
        return self.kubelet.register(request, context, self.generation)


class FakeKubelet:
    def __init__(self, plugin_dir: Path) -> None:
        self.plugin_dir = plugin_dir
        self.requests: list[pb.RegisterRequest] = []
        # Per Register call, in order: did the plugin's socket accept connections when Register arrived?
        self.served_at_register: list[bool] = []
        self.connect_errors: list[str] = []
        self.plugins: dict[str, PluginConnection] = {}
        self._server: grpc.Server | None = None
        self._registered = threading.Condition()
        self.restarts = 0
        self.generation = 0  # which kubelet instance is serving: +1 at every start
        self.generations: list[int] = []  # per Register call, the instance that received it
        # Called inside Register before it answers (e.g. to restart the kubelet while a Register is in flight).
        self.on_register: Callable[[pb.RegisterRequest], None] | None = None

    # Registration service of the kubelet instance `generation`
    def register(self, request: pb.RegisterRequest, context: grpc.ServicerContext, generation: int) -> pb.Empty:
        if request.version != "v1beta1":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}")
        if not request.endpoint or "/" in request.endpoint:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "endpoint must be a file name")
        if not _RESOURCE_NAME.fullmatch(request.resource_name):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid resource name {request.resource_name!r}")
        served = sockets.dials(self.plugin_dir / request.endpoint)
        with self._registered:
            self.requests.append(request)
            self.served_at_register.append(served)
            self.generations.append(generation)
            self._registered.notify_all()
        if self.on_register is not None:
            self.on_register(request)
        threading.Thread(target=self._connect, args=(request, generation), daemon=True).start()
        return pb.Empty()

    def _connect(self, request: pb.RegisterRequest, generation: int) -> None:
        # Like the kubelet (grpc-go): a connection of its own per Register (Python's grpc would otherwise share a
        # process-wide subchannel and fail fast on the error cached for an earlier socket at the same path), and
        # a blocking dial (grpc.WithBlock, 10 s in the kubelet).
        channel = grpc.insecure_channel(
            f"unix:{self.plugin_dir / request.endpoint}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        conn = PluginConnection(request=request, channel=channel)
        try:
            conn.options = conn.stub.GetDevicePluginOptions(pb.Empty(), timeout=5, wait_for_ready=True)
            stream = conn.stub.ListAndWatch(pb.Empty())
            conn.stream = stream
            with self._registered:
                if generation != self.generation:  # registered with an instance that is gone since
                    conn.channel.close()
                    return
                old = self.plugins.get(request.resource_name)
                self.plugins[request.resource_name] = conn
                self._registered.notify_all()
            if old is not None:
                old.channel.close()
            for response in stream:
                with conn.changed:
                    conn.lists.append(response)
                    conn.changed.notify_all()
        except grpc.RpcError as exc:
            with self._registered:
                self.connect_errors.append(f"{request.resource_name}: {exc}")
        finally:
            with conn.changed:
                conn.stream_ended = True
                conn.changed.notify_all()

    # control
    def start(self) -> None:
        """Start as the kubelet's device manager does: delete every file in the dir (the checkpoint aside),
        then serve kubelet.sock."""
        self.delete_sockets()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fake-kubelet"))
        with self._registered:
            self.generation += 1
            pb_grpc.add_RegistrationServicer_to_server(_Instance(self, self.generation), server)
        server.add_insecure_port(f"unix:{self.plugin_dir / KUBELET_SOCKET}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None
        with self._registered:
            connections = list(self.plugins.values())
            self.plugins.clear()
        for conn in connections:
            conn.channel.close()
        with contextlib.suppress(FileNotFoundError):
            (self.plugin_dir / KUBELET_SOCKET).unlink()

    def kill(self) -> None:
        """The kubelet process ends without cleaning up, as on SIGTERM: kubelet.sock stays, nobody serves it."""
        self.stop()
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(self.plugin_dir / KUBELET_SOCKET))
        stale.close()

    def delete_sockets(self) -> None:
        for entry in self.plugin_dir.iterdir():
            if entry.name != CHECKPOINT:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def restart(self) -> None:
        """What a kubelet restart looks like to a plugin: every socket deleted, then kubelet.sock again."""
        self.stop()
        self.restarts += 1
        self.start()

    def restarts_in_a_row(self, count: int, *, pause: Callable[[], float] = lambda: 0.0) -> None:
        """`count` restarts back to back, sleeping `pause()` seconds between them (a crash-looping kubelet)."""
        for index in range(count):
            if index:
                time.sleep(pause())
            self.restart()

    def flash(self, seconds: float = 0.0) -> None:
        """kubelet.sock appears and vanishes again (after `seconds`), e.g. before a plugin can dial it."""
        self.start()
        time.sleep(seconds)
        self.stop()

    def restart_during_register(self, times: int = 1) -> None:
        """The next `times` Register calls each restart the kubelet while the call is in flight."""
        left = [times]

        def hook(request: pb.RegisterRequest) -> None:
            if left[0] <= 0:
                return
            left[0] -= 1
            restarting = threading.Thread(target=self.restart, daemon=True)
            restarting.start()
            restarting.join(5)  # the Register answers (or fails) only after the restart

        self.on_register = hook

    def registrations_with_current(self, resource: str, *, live_only: bool = True) -> int:
        """How many Register calls for `resource` the kubelet instance serving now received; with `live_only`,
        only those whose socket was being served when the call arrived (a Register for a socket deleted in
        the meantime is one no kubelet can use: the plugin must serve again and register again)."""
        with self._registered:
            return sum(
                1
                for request, generation, served in zip(
                    self.requests, self.generations, self.served_at_register, strict=True
                )
                if request.resource_name == resource and generation == self.generation and (served or not live_only)
            )

    def wait_for_registrations(self, count: int, timeout: float = 5.0) -> list[pb.RegisterRequest]:
        with self._registered:
            if not self._registered.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} registrations after {timeout}s, expected {count}")
            return list(self.requests)

    def registrations_of(self, resource: str) -> list[pb.RegisterRequest]:
        with self._registered:
            return [r for r in self.requests if r.resource_name == resource]

    def wait_for_plugin(
        self, resource: str, timeout: float = 5.0, *, newer_than: PluginConnection | None = None
    ) -> PluginConnection:
        with self._registered:
            ok = self._registered.wait_for(
                lambda: resource in self.plugins and self.plugins[resource] is not newer_than, timeout
            )
            if not ok:
                raise AssertionError(
                    f"plugin {resource!r} did not connect in {timeout}s (connect errors: {self.connect_errors})"
                )
            return self.plugins[resource]

    def allocate(self, resource: str, requests: Sequence[Sequence[str]], timeout: float = 5.0) -> pb.AllocateResponse:
        conn = self.wait_for_plugin(resource)
        request = pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=list(ids)) for ids in requests]
        )
        response: pb.AllocateResponse = conn.stub.Allocate(request, timeout=timeout)
        return response


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


def plugin_config(
    kubelet: FakeKubelet,
    device: Path,
    proc_filesystems: Path,
    spec_dir: Path,
    *,
    strategy: str = "cdi",
    permissions: str = "rw",
    **overrides: Any,
) -> loop.PluginConfig:
    """A plugin serving the fake kubelet's dir, probing `device` (a test node standing in for the host's
    /dev/fuse), writing its spec into `spec_dir`; no runtime probe, a safety interval of an hour so only
    events drive it. `overrides` are further PluginConfig fields."""
    options = generate.GenerateOptions(
        device_path=device,
        host_device_path=Path("/dev/fuse"),
        spec_dir=spec_dir,
        permissions=permissions,
        proc_filesystems=proc_filesystems,
    )
    fields: dict[str, Any] = {
        "plugin_dir": kubelet.plugin_dir,
        "count": 3,
        "strategy": strategies.parse_strategy(strategy),
        "spec_dirs": (spec_dir,),
        "generate_options": options,
        "safety_interval": 3600.0,
        **overrides,
    }
    return loop.PluginConfig(**fields)


class PluginThread:
    """A PluginLoop running in a thread; `error` holds what `run()` raised, if anything."""

    def __init__(self, manager: loop.PluginLoop) -> None:
        self.manager = manager
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="plugin", daemon=True)

    def _run(self) -> None:
        try:
            self.manager.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 10.0) -> None:
        self.manager.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"plugin thread still running {timeout}s after stop()")


@contextlib.contextmanager
def plugin_thread(manager: loop.PluginLoop) -> Iterator[PluginThread]:
    """Run `manager.run()` in a thread for the duration of the block; always stopped and joined."""
    runner = PluginThread(manager)
    runner.thread.start()
    try:
        yield runner
    finally:
        runner.stop()
