"""The DRA driver's loop: serve the DRA service and the registration socket, keep spec, health and slices
converged until stopped.

One thread reacts to inotify events (one of our sockets deleted, the device node changed, the spec file
changed), to hints from the ResourceSlice watch, and to a slow safety-net timer; nothing polls in between.
Events are hints: on each, the loop reads what is true (is the socket at our path still ours, by inode?
what does the device look like? what slices does the API hold?) and acts only on a difference, and no
action deletes anything it did not create, so no action can trigger itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc

from cdi_fuse import errors, ratelimit
from cdi_fuse._proto import dra_pb2_grpc, pluginregistration_pb2_grpc
from cdi_fuse.dra import api, checkpoint, node_server, publisher, registrar, slices, sockets, status
from cdi_fuse.node import fuse, generate, watch

__all__ = ["Driver", "DriverConfig", "SliceWatcher"]

log = logging.getLogger(__name__)


class SliceWatcher(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


SliceWatchFactory = Callable[[Callable[[], None]], SliceWatcher]


@dataclass
class DriverConfig:
    node_name: str
    driver: str = api.DEFAULT_DRIVER
    registry_dir: Path = api.DEFAULT_REGISTRY_DIR
    plugins_dir: Path = api.DEFAULT_PLUGINS_DIR
    sharing: api.Sharing = api.Sharing.auto
    count: int = api.DEFAULT_COUNT
    generate_options: generate.GenerateOptions = field(default_factory=generate.GenerateOptions)
    write_spec: bool = True
    remove_slices_on_stop: bool = False
    safety_interval: float = 30.0  # slow re-check of sockets, device, spec and slices
    min_backoff: float = 0.5
    max_backoff: float = 30.0

    @property
    def plugin_dir(self) -> Path:
        return self.plugins_dir / self.driver

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / api.DRA_SOCKET

    @property
    def registration_socket(self) -> Path:
        return self.registry_dir / api.registration_socket_name(self.driver)

    @property
    def checkpoint_path(self) -> Path:
        return self.plugin_dir / api.CHECKPOINT_FILE

    @property
    def status_path(self) -> Path:
        return self.plugin_dir / status.STATUS_FILE


class Driver:
    """Runs the DRA kubelet plugin until `stop()`."""

    def __init__(
        self,
        config: DriverConfig,
        *,
        store: api.SliceStore,
        claims: api.ClaimReader,
        slice_watch: SliceWatchFactory | None = None,
    ) -> None:
        if not config.node_name:
            raise ValueError("the node name is required (--node-name or $NODE_NAME)")
        self.config = config
        self.created = time.monotonic()
        options = config.generate_options
        self.qualified_name = options.qualified_name
        self.device = generate.probe_device(options)  # refuses a device that is not FUSE, unless allowed
        self.spec_path = generate.default_output(options)
        self.publisher = publisher.SlicePublisher(
            store, driver=config.driver, node_name=config.node_name, sharing=config.sharing, count=config.count
        )
        self.state = api.DeviceState(self.device.major, self.device.minor, healthy=True)
        self._spec_lock = threading.Lock()
        self._spec_error: str | None = None
        self._slice_error: str | None = None
        self._stop = threading.Event()
        self._errors = ratelimit.RateLimitedLog(log)
        self._slices_dirty = threading.Event()
        self._watcher = watch.DirWatcher()
        self._slices_due = 0.0
        self._slice_backoff = 0.0
        self._safety_due = 0.0
        self.prepared = checkpoint.Checkpoint(config.checkpoint_path)
        self.preparer = node_server.ClaimPreparer(
            driver=config.driver,
            pool=self.publisher.layout.pool,
            cdi_device_ids=[self.qualified_name],
            claims=claims,
            prepared=self.prepared,
            readiness=self._readiness,
            published=self._published,
        )
        self.node_service = node_server.DraNodeService(self.preparer)
        self.registration = registrar.RegistrationService(
            driver=config.driver, endpoint=str(config.dra_socket), on_status=self._on_registration
        )
        self.dra_endpoint = sockets.ServedSocket(config.dra_socket, self._add_dra)
        self.registrar_endpoint = sockets.ServedSocket(config.registration_socket, self._add_registration, workers=2)
        self._slice_watch = slice_watch(self._hint_slices) if slice_watch is not None else None

    def _add_dra(self, server: grpc.Server) -> None:
        dra_pb2_grpc.add_DRAPluginServicer_to_server(self.node_service, server)

    def _add_registration(self, server: grpc.Server) -> None:
        pluginregistration_pb2_grpc.add_RegistrationServicer_to_server(self.registration, server)

    # --- public control ---

    @property
    def wakeup_fd(self) -> int:
        """Written to when a signal arrives, whichever thread the kernel delivers it to: wakes the loop."""
        return self._watcher.wakeup_fd

    def stop(self) -> None:
        """Ask `run` to return (safe from a signal handler)."""
        self._stop.set()
        self._watcher.wake()

    def health_report(self) -> tuple[bool, str]:
        status = self.registration.status()
        ok = status.registered and self.state.healthy and bool(self.publisher.published)
        return ok, (
            f"registered={status.registered} device_healthy={self.state.healthy} "
            f"published={len(self.publisher.published)}"
        )

    def start(self) -> None:
        """Converge spec and health, serve the DRA socket and then the registration socket, publish slices."""
        self.config.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.config.registry_dir.mkdir(parents=True, exist_ok=True)
        self._converge_spec()
        self._check_health()
        sockets.check_socket_free(self.config.dra_socket)
        sockets.check_socket_free(self.config.registration_socket)
        # The kubelet dials the endpoint as soon as it has read GetInfo: serve it first.
        self.dra_endpoint.serve()
        self.registrar_endpoint.serve()
        self._watch_dirs()
        log.info(
            "started: DRA driver %s for node %s, registration %s, endpoint %s, device %s %d:%d, sharing %s",
            self.config.driver,
            self.config.node_name,
            self.config.registration_socket,
            self.config.dra_socket,
            self.device.path,
            self.device.major,
            self.device.minor,
            self.config.sharing.value,
        )
        if self._slice_watch is not None:
            self._slice_watch.start()
        self._safety_due = time.monotonic() + self.config.safety_interval
        self._converge_slices()

    def run(self) -> None:
        """start(), then react to events until stop(); finally stop serving and remove our sockets."""
        try:
            self.start()
            while not self._stop.is_set():
                events = self._watcher.wait(self._seconds_until_due())
                if self._stop.is_set():
                    break
                try:
                    self._handle(events)
                    self._run_due()
                except Exception as exc:
                    # The driver must outlive any single failure; the safety-net check retries.
                    self._errors.error(f"unexpected error, continuing: {exc!r}")
                    log.debug("unexpected error", exc_info=True)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._slice_watch is not None:
            self._slice_watch.stop()
        self.registrar_endpoint.stop()
        self.dra_endpoint.stop()
        self._watcher.close()
        with contextlib.suppress(FileNotFoundError):
            self.config.status_path.unlink()
        if self.config.remove_slices_on_stop:
            try:
                self.publisher.delete_all()
            except errors.ApiServerError as exc:
                log.error("cannot delete this node's ResourceSlices: %s", exc)
        log.info("stopped: sockets removed")

    # --- the loop ---

    def _hint_slices(self) -> None:
        self._slices_dirty.set()
        self._watcher.wake()

    def _watch_dirs(self) -> None:
        for directory in (self.config.registry_dir, self.config.plugin_dir, self.device.path.parent):
            self._watcher.watch(directory, contents=False)
        if self.config.write_spec:
            self._watcher.watch(self.spec_path.parent)

    def _seconds_until_due(self) -> float:
        due = [self._safety_due]
        if self._slices_due:
            due.append(self._slices_due)
        return max(0.0, min(due) - time.monotonic())

    def _handle(self, events: list[watch.DirEvent]) -> None:
        for event in events:
            if event.directory == self.config.registry_dir and (
                event.directory_gone or (event.name == self.config.registration_socket.name and event.removed)
            ):
                self._ensure_served(self.registrar_endpoint, "registration socket")
            if event.directory == self.config.plugin_dir and (
                event.directory_gone or (event.name == self.config.dra_socket.name and event.removed)
            ):
                self._ensure_served(self.dra_endpoint, "DRA socket")
            if event.directory == self.device.path.parent and event.name == self.device.path.name:
                self._check_health()
            spec_event = event.name == self.spec_path.name or event.directory_gone
            if self.config.write_spec and event.directory == self.spec_path.parent and spec_event:
                self._converge_spec()
        if self._slices_dirty.is_set():
            self._converge_slices()

    def _run_due(self) -> None:
        now = time.monotonic()
        if self._slices_due and self._slices_due <= now:
            self._converge_slices()
        if self._safety_due <= now:
            self._safety_due = now + self.config.safety_interval
            self._watch_dirs()
            self._ensure_served(self.dra_endpoint, "DRA socket")
            self._ensure_served(self.registrar_endpoint, "registration socket")
            self._check_health()
            self._converge_spec()
            self._converge_slices()

    # --- actions ---

    def _ensure_served(self, endpoint: sockets.ServedSocket, what: str) -> None:
        """Serve the socket again only when the file at its path is no longer the one we created."""
        if endpoint.is_ours():
            return
        log.info("%s %s is gone, serving it again", what, endpoint.path)
        endpoint.stop()
        if endpoint is self.registrar_endpoint:
            self.registration.forget()
        try:
            endpoint.serve()
        except errors.RegistrationError as exc:
            log.error("%s", exc)
        self._watch_dirs()  # the directory may have been removed and created again

    def _on_registration(self, answer: registrar.RegistrationStatus) -> None:
        status.write_status(self.config.status_path, registered=answer.registered, error=answer.error)
        if answer.registered and answer.count == 1:
            age = _process_age()
            log.info(
                "first registration %.0f ms after the driver was created%s",
                (time.monotonic() - self.created) * 1000,
                f", {age * 1000:.0f} ms after the process started" if age is not None else "",
            )

    def _check_health(self) -> None:
        options = self.config.generate_options
        health = fuse.check_health(self.device, proc_filesystems=options.proc_filesystems)
        state = api.DeviceState(self.device.major, self.device.minor, health.healthy, health.reason)
        if state.healthy != self.state.healthy:
            log.info("health change: device %s: %s", "healthy" if state.healthy else "unhealthy", health.reason)
            self.state = state
            self._hint_slices()
        else:
            self.state = state

    def _converge_spec(self) -> str | None:
        """Write the spec if it differs; the error text when it cannot be written."""
        if not self.config.write_spec:
            return None
        with self._spec_lock:
            try:
                result = generate.generate(self.config.generate_options)
            except errors.CdiFuseError as exc:
                if str(exc) != self._spec_error:
                    log.error("cannot write the CDI spec: %s", exc)
                    self._spec_error = str(exc)
                return str(exc)
            self._spec_error = None
            if result.changed:
                log.info("wrote CDI spec %s (%s)", result.path, result.qualified_name)
            return None

    def _converge_slices(self) -> None:
        self._slices_dirty.clear()
        try:
            report = self.publisher.converge(self.state)
        except errors.ApiServerError as exc:
            if str(exc) != self._slice_error:
                log.error("cannot publish the ResourceSlice: %s; retrying with backoff", exc)
                self._slice_error = str(exc)
            self._slice_backoff = min(max(self._slice_backoff * 2, self.config.min_backoff), self.config.max_backoff)
            self._slices_due = time.monotonic() + self._slice_backoff
            return
        if self._slice_error is not None:
            log.info("ResourceSlice published again after: %s", self._slice_error)
        self._slice_error = None
        self._slice_backoff = 0.0
        self._slices_due = 0.0
        if report.changed:
            log.debug("slices converged: generation %d, devices %s", report.generation, sorted(report.devices))

    # --- what prepare asks ---

    def _readiness(self) -> str | None:
        self._check_health()
        if not self.state.healthy:
            return self.state.reason
        return self._converge_spec()

    def _published(self) -> frozenset[str]:
        return self.publisher.published or frozenset(slices.device_names(self.publisher.layout))


def _process_age() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat start time against CLOCK_BOOTTIME)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError):
        return None
