"""The plugin's loop: wires the endpoints, the FUSE scanner and the strategy decider to directory events.

One thread waits on inotify (and on the next due time); each event goes to the pieces it concerns, and each
piece re-reads the state it owns and acts on a difference only. Nothing polls: the due times are an
endpoint's retry after a failure, `auto` asking the runtime again, and a slow safety net that re-reads
everything in case an event was lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

from cdi_fuse import defaults, errors, process, ratelimit
from cdi_fuse.deviceplugin import api, decider, endpoint, scanner, server, state, strategies
from cdi_fuse.node import generate, watch

__all__ = ["PluginConfig", "PluginLoop", "run_plugin"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginConfig:
    plugin_dir: Path = defaults.PLUGIN_DIR
    resource_names: tuple[str, ...] = (defaults.RESOURCE_NAME,)
    count: int = defaults.COUNT
    strategy: strategies.StrategyChoice = field(default_factory=lambda: strategies.parse_strategy(defaults.STRATEGY))
    spec_dirs: tuple[Path, ...] = defaults.SPEC_DIRS
    generate_options: generate.GenerateOptions = field(default_factory=generate.GenerateOptions)
    write_spec: bool = True
    runtime_probe: api.RuntimeProbe | None = None
    register_timeout: float = 5.0
    safety_interval: float = 10.0  # re-read everything, in case an event was lost
    runtime_interval: float = 60.0  # how often `auto` asks the runtime again
    min_backoff: float = 0.05
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise errors.InvalidOptionError(f"invalid count {self.count}: must be at least 1", option="--count")
        if not self.resource_names:
            raise errors.InvalidOptionError("no resource name given", option="--resource-name")


class PluginLoop:
    """Runs the plugin: serve, register, and keep everything converged until `stop()`."""

    def __init__(self, config: PluginConfig, *, observer: api.PluginObserver | None = None) -> None:
        self.config = config
        self.observer = observer or api.NullObserver()
        options = config.generate_options
        self.qualified_name = options.qualified_name
        self.state = state.PluginState(healthy=True, decision=api.Decision(frozenset(), "not decided yet"))
        self.scanner = scanner.FuseScanner(
            options, plugin_state=self.state, write_spec=config.write_spec, observer=self.observer
        )
        self.decider = decider.StrategyDecider(
            config.strategy,
            self.qualified_name,
            plugin_state=self.state,
            spec_dirs=config.spec_dirs,
            probe=config.runtime_probe,
            runtime_interval=config.runtime_interval,
            observer=self.observer,
            own_spec=lambda: self.scanner.rendered,
        )
        lists = server.DeviceLists(options.device_name, config.count)
        # Each open ListAndWatch stream holds a worker: room for one per resource, plus Allocates.
        self._executor = futures.ThreadPoolExecutor(
            max_workers=4 + 2 * len(config.resource_names), thread_name_prefix="grpc"
        )
        self.endpoints = [
            endpoint.Endpoint(
                plugin_dir=config.plugin_dir,
                resource_name=name,
                service_factory=self._service_factory(name, lists),
                executor=self._executor,
                register_timeout=config.register_timeout,
                backoff=endpoint.Backoff(config.min_backoff, config.max_backoff),
                observer=self.observer,
            )
            for name in config.resource_names
        ]
        self._watcher = watch.DirWatcher()
        self._stop = threading.Event()
        self._errors = ratelimit.RateLimitedLog(log)
        self._retry_at: dict[str, float] = {}
        self._safety_due = 0.0
        self._kubelet: endpoint.FileIdentity | None = None

    def _service_factory(self, resource_name: str, lists: server.DeviceLists) -> endpoint.ServiceFactory:
        options = self.config.generate_options
        fixed = self.config.strategy.fixed
        builder = strategies.AllocationBuilder(
            resource_name=resource_name,
            qualified_name=self.qualified_name,
            host_device_path=str(options.host_path),
            container_device_path=defaults.CONTAINER_DEVICE_PATH,
            permissions=options.permissions,
            device_ids=[lists.longest_id],  # checks the longest annotation key at start
            with_annotations=fixed is not None and api.CDI_ANNOTATIONS in fixed,
        )
        observer = self.observer

        def on_allocate(label: str, containers: int) -> None:
            observer.allocated(resource_name, label, containers)

        def make() -> server.DevicePluginService:
            return server.DevicePluginService(
                resource_name=resource_name,
                device_lists=lists,
                plugin_state=self.state,
                builder=builder,
                on_allocate=on_allocate,
            )

        return make

    # --- control ---

    def stop(self) -> None:
        """Ask `run` to return (safe from a signal handler and from other threads)."""
        self._stop.set()
        self._watcher.wake()

    @property
    def wakeup_fd(self) -> int:
        """Written to when a signal arrives, whichever thread the kernel delivers it to: wakes the loop."""
        return self._watcher.wakeup_fd

    def health_report(self) -> tuple[bool, str]:
        """Ready only while every resource is registered with a kubelet that answers, and the device is healthy."""
        phases = {e.resource_name: e.phase() for e in self.endpoints}
        registered = all(p is endpoint.Phase.REGISTERED for p in phases.values())
        kubelet_up = endpoint.dials(self.config.plugin_dir / endpoint.KUBELET_SOCKET)
        healthy = self.state.healthy
        detail = " ".join(f"{name}={phase.value.replace(' ', '-')}" for name, phase in phases.items())
        why = f"{detail} kubelet={'up' if kubelet_up else 'down'} device_healthy={healthy} "
        why += f"strategy={self.state.decision.label}"
        return registered and kubelet_up and healthy, why

    def start(self) -> None:
        """Converge spec, health and decision, serve every socket, register. Raises on a live socket."""
        try:
            self.config.plugin_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.RegistrationError(
                f"cannot create the device-plugin dir {str(self.config.plugin_dir)!r}: {exc.strerror or exc}"
            ) from exc
        self.scanner.converge_spec()
        self.scanner.check_health()
        self.decider.decide(ask_runtime=True)
        for ep in self.endpoints:
            endpoint.check_socket_free(ep.socket_path)  # a second instance refuses before serving anything
        self._watch_all()
        for ep in self.endpoints:
            with contextlib.suppress(errors.RegistrationError):  # the first reconcile tries again, and says why
                ep.serve()
        device = self.scanner.device
        log.info(
            "started: serving %s in %s (%d devices, device %s %d:%d)",
            ", ".join(self.config.resource_names),
            self.config.plugin_dir,
            self.config.count,
            device.path,
            device.major,
            device.minor,
        )
        self._reconcile_endpoints()
        self._safety_due = time.monotonic() + self.config.safety_interval

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
                except Exception as exc:
                    # The plugin must outlive any single failure; the safety net looks at everything again.
                    self._errors.error(f"unexpected error, continuing: {exc!r}")
                    log.debug("unexpected error", exc_info=True)
        finally:
            self.close()

    def close(self) -> None:
        served = [ep.close() for ep in self.endpoints]
        self._watcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("stopped: sockets removed" if any(served) else "stopped")

    # --- the loop ---

    def _watch_all(self) -> None:
        """(Re-)add every watch: a directory removed and created again needs a new one."""
        targets = [(self.config.plugin_dir, False), *self.scanner.watches(), *self.decider.watches()]
        # Directories with file contents to watch come last, so a directory with both roles keeps the fuller mask.
        for directory, contents in sorted(targets, key=lambda t: t[1]):
            self._watcher.watch(directory, contents=contents)

    def _seconds_until_due(self) -> float:
        due = [self._safety_due, *self._retry_at.values()]
        runtime_due = self.decider.runtime_due()
        if runtime_due is not None:
            due.append(runtime_due)
        return max(0.0, min(due) - time.monotonic())

    def _handle(self, events: list[watch.DirEvent]) -> None:
        if any(e.overflow for e in events):
            log.warning("inotify queue overflowed: looking at everything again")
            self._safety_check()
            return
        plugin_dir_changed = False
        rewatch = False
        for event in events:
            if event.directory == self.config.plugin_dir:
                plugin_dir_changed = True
            self.scanner.on_event(event)
            rewatch |= self.decider.on_event(event) or event.directory_gone
        if rewatch:
            self._watch_all()
        if plugin_dir_changed:
            self._reconcile_endpoints()

    def _run_due(self) -> None:
        now = time.monotonic()
        if any(at <= now for at in self._retry_at.values()):
            self._reconcile_endpoints()
        runtime_due = self.decider.runtime_due()
        if runtime_due is not None and runtime_due <= now and self.decider.decide(ask_runtime=True):
            self._watch_all()
        if self._safety_due <= now:
            self._safety_check()

    def _safety_check(self) -> None:
        self._safety_due = time.monotonic() + self.config.safety_interval
        self._watch_all()
        self.scanner.refresh()
        if self.decider.decide(ask_runtime=False):
            self._watch_all()
        self._reconcile_endpoints()

    def _reconcile_endpoints(self) -> None:
        kubelet = endpoint.file_identity(self.config.plugin_dir / endpoint.KUBELET_SOCKET)
        if kubelet is not None and self._kubelet is not None and kubelet != self._kubelet:
            self.observer.kubelet_restarted()
        if kubelet is not None:
            self._kubelet = kubelet
        for ep in self.endpoints:
            retry_at = ep.reconcile()
            if retry_at is None:
                self._retry_at.pop(ep.resource_name, None)
            else:
                self._retry_at[ep.resource_name] = retry_at


def run_plugin(config: PluginConfig, *, metrics_address: str | None = None) -> None:
    """Run the device plugin until SIGTERM/SIGINT: what `cdi-fuse plugin` does.

    Raises CdiFuseError when it cannot start (device unusable, socket served by another process, bad
    metrics address); once started it outlives every failure.
    """
    observer: api.PluginObserver | None = None
    metrics_server = None
    if metrics_address is not None:
        from cdi_fuse.deviceplugin import metrics  # prometheus_client only when asked for

        metrics.parse_address(metrics_address)
        plugin_metrics = metrics.PluginMetrics()
        observer = plugin_metrics
    loop = PluginLoop(config, observer=observer)
    try:
        if metrics_address is not None:
            try:
                metrics_server = metrics.MetricsServer(metrics_address, plugin_metrics, loop.health_report)
            except OSError as exc:
                raise errors.InvalidOptionError(
                    f"cannot listen on {metrics_address!r}: {exc.strerror or exc}", option="--metrics-address"
                ) from exc
            metrics_server.start()
        with process.stop_on_signals(loop.stop, wakeup_fd=loop.wakeup_fd):
            loop.run()
    finally:
        if metrics_server is not None:
            metrics_server.stop()
