"""Shared plugin state: device health and the current strategy decision, with change notification."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from cdi_fuse.deviceplugin import api

__all__ = ["HealthSnapshot", "PluginState"]


@dataclass(frozen=True)
class HealthSnapshot:
    healthy: bool
    version: int


class PluginState:
    """Health and decision; writers take the lock, ListAndWatch streams wait on health changes under it.

    Readers of `healthy` and `decision` do not lock: each is one attribute replaced whole, so a read sees
    the old or the new value (Allocate reads the decision on its hot path).
    """

    def __init__(self, *, healthy: bool, decision: api.Decision) -> None:
        self._cond = threading.Condition()
        self._healthy = healthy
        self._health_version = 0
        self._decision = decision

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def decision(self) -> api.Decision:
        # A plain attribute read: Allocate takes no lock on its hot path.
        return self._decision

    def set_health(self, healthy: bool) -> bool:
        """Record health; True when it changed (streams are then woken)."""
        with self._cond:
            if healthy == self._healthy:
                return False
            self._healthy = healthy
            self._health_version += 1
            self._cond.notify_all()
            return True

    def set_decision(self, decision: api.Decision) -> bool:
        with self._cond:
            if decision.strategies == self._decision.strategies:
                self._decision = decision
                return False
            self._decision = decision
            return True

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for_health(self, seen_version: int, stopped: Callable[[], bool]) -> HealthSnapshot | None:
        """Block until health differs from `seen_version` (None when `stopped()` turns true)."""
        with self._cond:
            while self._health_version == seen_version and not stopped():
                self._cond.wait()
            if stopped():
                return None
            return HealthSnapshot(self._healthy, self._health_version)
