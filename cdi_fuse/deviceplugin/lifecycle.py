"""Serving and registration lifecycle: one socket per resource, kubelet restarts, health, spec, decision.

One watcher thread reacts to inotify events (own socket deleted, kubelet.sock created, device node
changed, spec file changed) and to a slow safety-net timer; nothing polls in between.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from cdi_fuse import errors
from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc
from cdi_fuse.cdi import store
from cdi_fuse.deviceplugin import api, server, state, strategies
from cdi_fuse.node import fuse, generate, watch

if TYPE_CHECKING:
    from cdi_fuse.deviceplugin.metrics import PluginMetrics

__all__ = [
    "API_VERSION",
    "DEFAULT_COUNT",
    "DEFAULT_PLUGIN_DIR",
    "KUBELET_SOCKET",
    "Endpoint",
    "Manager",
    "PluginConfig",
    "check_socket_free",
    "device_ids",
    "socket_name",
]

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
DEFAULT_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
# The kubelet's default --max-pods: every pod the node can run may hold one share of /dev/fuse.
DEFAULT_COUNT = 110
_GRPC_WORKERS = 8


def socket_name(resource_name: str) -> str:
    return f"cdi-fuse-{resource_name.replace('/', '_')}.sock"


def device_ids(device_name: str, count: int) -> list[api.DeviceId]:
    return [api.DeviceId(f"{device_name}-{i}") for i in range(count)]


def check_socket_free(path: Path) -> None:
    """Refuse a socket another live process serves; remove a stale one left by a killed process."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT, errno.EPROTOTYPE):
            raise errors.RegistrationError(f"cannot check socket {str(path)!r}: {exc}", socket=path) from exc
        log.info("removing stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    finally:
        probe.close()
    raise errors.RegistrationError(
        f"another process is serving {str(path)!r}; stop it first (is a second cdi-fuse plugin running?)",
        socket=path,
    )


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class Endpoint:
    """The DevicePlugin service of one resource on its own socket, and its registration."""

    def __init__(
        self, *, plugin_dir: Path, resource_name: str, service_factory: Callable[[], server.DevicePluginService]
    ) -> None:
        self.plugin_dir = plugin_dir
        self.resource_name = resource_name
        self.socket_name = socket_name(resource_name)
        self.socket_path = plugin_dir / self.socket_name
        self._service_factory = service_factory
        self._server: grpc.Server | None = None
        self._service: server.DevicePluginService | None = None
        self._inode: int | None = None
        self.registered = False
        self.kubelet_inode: int | None = None  # kubelet.sock registered with, to skip duplicate registrations
        self.next_attempt = 0.0
        self.backoff = 0.0

    def serve(self) -> None:
        check_socket_free(self.socket_path)
        service = self._service_factory()
        grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=_GRPC_WORKERS, thread_name_prefix="grpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_DevicePluginServicer_to_server(service, grpc_server)
        if grpc_server.add_insecure_port(f"unix:{self.socket_path}") == 0:
            raise errors.RegistrationError(f"cannot listen on {str(self.socket_path)!r}", socket=self.socket_path)
        grpc_server.start()
        self._server, self._service = grpc_server, service
        try:
            self._inode = os.stat(self.socket_path).st_ino
        except FileNotFoundError:
            # Deleted again right away (a kubelet still clearing its dir): the deletion event re-serves.
            self._inode = None

    def socket_is_ours(self) -> bool:
        return self._inode is not None and _inode(self.socket_path) == self._inode

    def register(self, timeout: float) -> None:
        kubelet_inode = _inode(self.plugin_dir / KUBELET_SOCKET)
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=self.socket_name,
            resource_name=self.resource_name,
            options=server.plugin_options(),
        )
        kubelet = self.plugin_dir / KUBELET_SOCKET
        try:
            with grpc.insecure_channel(f"unix:{kubelet}") as channel:
                pb_grpc.RegistrationStub(channel).Register(request, timeout=timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            raise errors.RegistrationError(
                f"cannot register {self.resource_name!r} with the kubelet at {str(kubelet)!r}: "
                f"{exc.code().name}: {exc.details()}",
                socket=kubelet,
            ) from exc
        # kubelet.sock may have appeared during the call: its creation event must not register again
        self.kubelet_inode = kubelet_inode if kubelet_inode is not None else _inode(kubelet)

    def stop(self) -> None:
        if self._service is not None:
            self._service.close()
        if self._server is not None:
            self._server.stop(grace=0.1).wait(1.0)
        if self.socket_is_ours():
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self._server = self._service = None
        self.registered = False


@dataclass
class PluginConfig:
    plugin_dir: Path = DEFAULT_PLUGIN_DIR
    resource_names: Sequence[str] = ("cdi-fuse.io/fuse",)
    count: int = DEFAULT_COUNT
    strategy: strategies.StrategyChoice = field(default_factory=lambda: strategies.StrategyChoice(None))
    spec_dirs: Sequence[Path] = store.DEFAULT_SPEC_DIRS
    generate_options: generate.GenerateOptions = field(default_factory=generate.GenerateOptions)
    write_spec: bool = True
    runtime_probe: api.RuntimeProbe | None = None
    register_timeout: float = 5.0
    safety_interval: float = 10.0  # slow re-check of sockets, device, spec, in case an event was missed
    runtime_interval: float = 60.0  # how often `auto` asks the runtime again
    max_backoff: float = 5.0
    min_backoff: float = 0.05


class Manager:
    """Runs the plugin: serve, register, and keep everything converged until `stop()`."""

    def __init__(self, config: PluginConfig, *, metrics: PluginMetrics | None = None) -> None:
        if config.count < 1:
            raise ValueError("count must be at least 1")
        self.config = config
        self.metrics = metrics
        options = config.generate_options
        self.qualified_name = options.qualified_name
        self.device = fuse.probe_fuse(options.device_path, proc_filesystems=options.proc_filesystems)
        self.spec_path = generate.default_output(options)
        self.state = state.PluginState(healthy=True, decision=self._initial_decision())
        self._ids = device_ids(options.device_name, config.count)
        self._stop = threading.Event()
        self._watcher = watch.DirWatcher()
        self._runtime_due = 0.0
        self._safety_due = 0.0
        self._runtime_view: api.RuntimeView | None = None
        self._runtime_error: errors.CdiFuseError | None = None
        self._last_decision: api.Decision | None = None
        self._spec_error: str | None = None
        self.endpoints = [
            Endpoint(
                plugin_dir=config.plugin_dir,
                resource_name=name,
                service_factory=self._service_factory(name),
            )
            for name in config.resource_names
        ]

    def _initial_decision(self) -> api.Decision:
        fixed = self.config.strategy.fixed
        if fixed is not None:
            return api.Decision(fixed, "chosen with --strategy")
        return api.Decision(frozenset(api.ALL_STRATEGIES), "runtime not asked yet")

    def _service_factory(self, resource_name: str) -> Callable[[], server.DevicePluginService]:
        options = self.config.generate_options
        builder = strategies.AllocationBuilder(
            resource_name=resource_name,
            qualified_name=self.qualified_name,
            host_device_path=str(options.host_path),
            container_device_path=fuse.CONTAINER_DEVICE_PATH,
            permissions=options.permissions,
            device_ids=device_ids(options.device_name, self.config.count),
            with_annotations=self.config.strategy.fixed is None or api.CDI_ANNOTATIONS in self.config.strategy.fixed,
        )
        observer = self.metrics.observer(resource_name) if self.metrics else None

        def make() -> server.DevicePluginService:
            return server.DevicePluginService(
                resource_name=resource_name,
                device_ids=self._ids,
                plugin_state=self.state,
                builder=builder,
                on_allocate=observer,
            )

        return make

    # --- public control ---

    def stop(self) -> None:
        """Ask `run` to return (safe from a signal handler)."""
        self._stop.set()
        self._watcher.wake()

    def health_report(self) -> tuple[bool, str]:
        registered = all(e.registered for e in self.endpoints)
        healthy = self.state.healthy
        why = f"registered={registered} device_healthy={healthy} strategy={self.state.decision.label}"
        return registered and healthy, why

    def start(self) -> None:
        """Converge spec, health and decision, serve every socket, register once. Raises on a live socket."""
        self.config.plugin_dir.mkdir(parents=True, exist_ok=True)
        self._converge_spec()
        self._check_health(initial=True)
        self._redecide(ask_runtime=True)
        for endpoint in self.endpoints:
            check_socket_free(endpoint.socket_path)
        for endpoint in self.endpoints:
            endpoint.serve()
        self._watch_dirs()
        log.info(
            "started: serving %s in %s (%d devices, device %s %d:%d)",
            ", ".join(self.config.resource_names),
            self.config.plugin_dir,
            self.config.count,
            self.device.path,
            self.device.major,
            self.device.minor,
        )
        now = time.monotonic()
        self._safety_due = now + self.config.safety_interval
        self._runtime_due = now + self.config.runtime_interval
        for endpoint in self.endpoints:
            self._try_register(endpoint)

    def run(self) -> None:
        """start(), then react to events until stop(); finally stop serving and remove the sockets."""
        try:
            self.start()
            while not self._stop.is_set():
                events = self._watcher.wait(self._seconds_until_due())
                if self._stop.is_set():
                    break
                try:
                    self._handle(events)
                    self._run_due()
                except Exception:
                    # The plugin must outlive any single failure; the safety-net check retries.
                    log.exception("unexpected error; continuing")
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        served = any(endpoint.socket_is_ours() for endpoint in self.endpoints)
        for endpoint in self.endpoints:
            endpoint.stop()
        self._watcher.close()
        log.info("stopped: sockets removed" if served else "stopped")

    # --- the loop ---

    def _watch_dirs(self) -> None:
        # Sockets and device nodes only appear, vanish or change mode: no need to hear every write in
        # /dev. Spec dirs come last, so a dir with both roles keeps the fuller mask.
        for directory in (self.config.plugin_dir, self.device.path.parent):
            self._watcher.watch(directory, contents=False)
        spec_dirs = [self.spec_path.parent] if self.config.write_spec else []
        if self.config.strategy.is_auto:
            spec_dirs.extend(self._decision_spec_dirs())
        for directory in spec_dirs:
            self._watcher.watch(directory)

    def _decision_spec_dirs(self) -> tuple[Path, ...]:
        view = self._runtime_view
        return view.spec_dirs if view is not None else tuple(self.config.spec_dirs)

    def _seconds_until_due(self) -> float:
        now = time.monotonic()
        due = [self._safety_due]
        if self.config.strategy.is_auto and self.config.runtime_probe is not None:
            due.append(self._runtime_due)
        due.extend(e.next_attempt for e in self.endpoints if not e.registered)
        return max(0.0, min(due) - now)

    def _handle(self, events: list[watch.DirEvent]) -> None:
        kubelet_back = False
        redecide = False
        for event in events:
            if event.directory == self.config.plugin_dir:
                if event.name == KUBELET_SOCKET and event.created:
                    kubelet_back = True
                for endpoint in self.endpoints:
                    if event.name == endpoint.socket_name and event.removed:
                        self._reserve(endpoint, "socket removed")
            if event.directory == self.device.path.parent and event.name == self.device.path.name:
                self._check_health()
            spec_event = event.name == self.spec_path.name or event.directory_gone
            if self.config.write_spec and event.directory == self.spec_path.parent and spec_event:
                self._converge_spec()
            if event.directory in self._decision_spec_dirs() and event.name.endswith((".json", ".yaml")):
                redecide = True
        if kubelet_back:
            log.info("kubelet restart seen: %s created, registering again", KUBELET_SOCKET)
            if self.metrics:
                self.metrics.kubelet_restarts.inc()
            kubelet_inode = _inode(self.config.plugin_dir / KUBELET_SOCKET)
            for endpoint in self.endpoints:
                if not endpoint.socket_is_ours():
                    self._reserve(endpoint, "socket missing")
                elif not endpoint.registered or endpoint.kubelet_inode != kubelet_inode:
                    endpoint.backoff = 0.0
                    self._try_register(endpoint)
        if redecide and self.config.strategy.is_auto:
            self._redecide(ask_runtime=False)

    def _run_due(self) -> None:
        now = time.monotonic()
        for endpoint in self.endpoints:
            if not endpoint.registered and endpoint.next_attempt <= now:
                self._try_register(endpoint)
        if self.config.strategy.is_auto and self.config.runtime_probe is not None and self._runtime_due <= now:
            self._runtime_due = now + self.config.runtime_interval
            self._redecide(ask_runtime=True)
        if self._safety_due <= now:
            self._safety_due = now + self.config.safety_interval
            self._safety_check()

    def _safety_check(self) -> None:
        self._watch_dirs()
        for endpoint in self.endpoints:
            if not endpoint.socket_is_ours():
                self._reserve(endpoint, "socket missing at periodic check")
        self._check_health()
        self._converge_spec()
        if self.config.strategy.is_auto:
            self._redecide(ask_runtime=False)

    # --- actions ---

    def _reserve(self, endpoint: Endpoint, why: str) -> None:
        log.info("kubelet restart seen: %s (%s), serving it again", endpoint.socket_path, why)
        endpoint.stop()
        if self.metrics:
            self.metrics.registered.labels(endpoint.resource_name).set(0)
        try:
            endpoint.serve()
        except errors.RegistrationError as exc:
            log.error("%s", exc)
        endpoint.backoff = 0.0
        endpoint.next_attempt = 0.0
        self._try_register(endpoint)

    def _try_register(self, endpoint: Endpoint) -> None:
        if not endpoint.socket_is_ours():
            try:
                endpoint.serve()
            except errors.RegistrationError as exc:
                log.error("%s", exc)
                self._schedule_retry(endpoint)
                return
        try:
            endpoint.register(self.config.register_timeout)
        except errors.RegistrationError as exc:
            if endpoint.backoff == 0.0:
                log.warning("%s; retrying with backoff up to %gs", exc, self.config.max_backoff)
            if self.metrics:
                self.metrics.registration_failures.labels(endpoint.resource_name).inc()
            self._schedule_retry(endpoint)
            return
        endpoint.registered = True
        endpoint.backoff = 0.0
        if self.metrics:
            self.metrics.registrations.labels(endpoint.resource_name).inc()
            self.metrics.registered.labels(endpoint.resource_name).set(1)
        log.info("registered %s with the kubelet (endpoint %s)", endpoint.resource_name, endpoint.socket_name)

    def _schedule_retry(self, endpoint: Endpoint) -> None:
        endpoint.registered = False
        endpoint.backoff = min(max(endpoint.backoff * 2, self.config.min_backoff), self.config.max_backoff)
        endpoint.next_attempt = time.monotonic() + endpoint.backoff

    def _check_health(self, *, initial: bool = False) -> None:
        health = fuse.check_health(self.device, proc_filesystems=self.config.generate_options.proc_filesystems)
        changed = self.state.set_health(health.healthy)
        if self.metrics:
            self.metrics.device_healthy.set(1 if health.healthy else 0)
        if changed or (initial and not health.healthy):
            log.info("health change: device %s: %s", "healthy" if health.healthy else "unhealthy", health.reason)

    def _converge_spec(self) -> None:
        if not self.config.write_spec:
            return
        try:
            result = generate.generate(self.config.generate_options)
        except errors.CdiFuseError as exc:
            if str(exc) != self._spec_error:  # once per distinct failure, not at every periodic check
                log.error("cannot write the CDI spec: %s", exc)
                self._spec_error = str(exc)
            return
        self._spec_error = None
        self._watcher.watch(self.spec_path.parent)  # the dir may have been removed and created again
        if result.changed:
            log.info("wrote CDI spec %s (%s)", result.path, result.qualified_name)
            if self.metrics:
                self.metrics.spec_writes.inc()

    def _redecide(self, *, ask_runtime: bool) -> None:
        if not self.config.strategy.is_auto:
            decision = self.state.decision
        else:
            if ask_runtime:
                self._ask_runtime()
            decision = strategies.decide_auto(
                self._runtime_view,
                self._runtime_error,
                self.qualified_name,
                fallback_spec_dirs=self.config.spec_dirs,
            )
        self.state.set_decision(decision)
        if self.metrics:
            self.metrics.set_decision(decision)
        if decision != self._last_decision:
            log.info("strategy decision: %s (%s)", decision.label, decision.reason)
            self._last_decision = decision

    def _ask_runtime(self) -> None:
        probe = self.config.runtime_probe
        if probe is None:
            self._runtime_view = None
            self._runtime_error = errors.RuntimeQueryError("no runtime endpoint configured", endpoint="")
            return
        previous_dirs = self._decision_spec_dirs()
        try:
            view = probe()
        except errors.CdiFuseError as exc:
            self._runtime_view, self._runtime_error = None, exc
            return
        if not view.spec_dirs:
            view = api.RuntimeView(view.description, view.cdi_enabled, tuple(self.config.spec_dirs), view.reason)
        self._runtime_view, self._runtime_error = view, None
        if view.spec_dirs != previous_dirs:
            for directory in view.spec_dirs:
                self._watcher.watch(directory)
