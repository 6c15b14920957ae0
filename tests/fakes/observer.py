"""A PluginObserver that records what the plugin reports, so tests wait on events instead of sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cdi_fuse.deviceplugin import api


@dataclass
class RecordingObserver:
    registrations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    kubelet_restarts: int = 0
    health: list[bool] = field(default_factory=list)
    decisions: list[api.Decision] = field(default_factory=list)
    spec_writes: int = 0
    allocations: list[tuple[str, str, int]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def _record(self, update: Callable[[], None]) -> None:
        with self.changed:
            update()
            self.changed.notify_all()

    def registered(self, resource: str, registered: bool) -> None:
        if registered:
            self._record(lambda: self.registrations.append(resource))

    def registration_failed(self, resource: str) -> None:
        self._record(lambda: self.failures.append(resource))

    def kubelet_restarted(self) -> None:
        def bump() -> None:
            self.kubelet_restarts += 1

        self._record(bump)

    def device_health(self, healthy: bool) -> None:
        self._record(lambda: self.health.append(healthy))

    def decision(self, decision: api.Decision) -> None:
        self._record(lambda: self.decisions.append(decision))

    def spec_written(self) -> None:
        def bump() -> None:
            self.spec_writes += 1

        self._record(bump)

    def allocated(self, resource: str, label: str, containers: int) -> None:
        self._record(lambda: self.allocations.append((resource, label, containers)))

    def wait_for(self, predicate: Callable[[RecordingObserver], bool], timeout: float = 5.0, what: str = "") -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what or 'the plugin to report'}")
