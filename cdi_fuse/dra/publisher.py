"""Keeps the node's ResourceSlice converged: observe the API, plan, act, and learn what the server keeps."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from cdi_fuse import errors
from cdi_fuse.dra import api, slices

__all__ = ["SlicePublisher", "SliceReport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceReport:
    changed: bool
    generation: int
    devices: frozenset[str]
    shared: bool


class SlicePublisher:
    """Converge on demand; safe to call from any thread (one convergence at a time).

    With Sharing.auto the slice first offers one device with allowMultipleAllocations; when the server
    gives it back without that field (DRAConsumableCapacity off), the layout becomes `count` devices and
    the next round replaces the slice. With Sharing.shared the same finding is reported once and the field
    is no longer expected, so a server that drops it cannot make us rewrite the slice forever.
    """

    def __init__(self, store: api.SliceStore, *, driver: str, node_name: str, sharing: api.Sharing, count: int) -> None:
        if not 1 <= count <= api.MAX_DEVICES_PER_SLICE:
            raise ValueError(f"count must be between 1 and {api.MAX_DEVICES_PER_SLICE}, got {count}")
        self._store = store
        self._lock = threading.Lock()
        self.sharing = sharing
        self.layout = slices.SliceLayout(
            driver=driver, node_name=node_name, shared=sharing is not api.Sharing.devices, count=count
        )
        self._multi_dropped = False
        self._last_generation = 0
        self._node_uid: str | None = None
        self._node_uid_known = False
        self._published: frozenset[str] = frozenset()

    @property
    def published(self) -> frozenset[str]:
        """Device names of the slice as last seen on the server (empty before the first convergence)."""
        return self._published

    def converge(self, state: api.DeviceState) -> SliceReport:
        """One round: list, plan, act. Raises ApiServerError; the caller retries later."""
        with self._lock:
            if not self._node_uid_known:
                self._node_uid = self._store.node_uid(self.layout.node_name)
                self._node_uid_known = True
            changed = False
            for _ in range(3):  # a changed layout (sharing fallback) needs another round at once
                observed = self._store.list_slices(node_name=self.layout.node_name, driver=self.layout.driver)
                actions = slices.plan(
                    observed,
                    self._expected_layout(),
                    state,
                    last_generation=self._last_generation,
                    node_uid=self._node_uid,
                )
                if not actions:
                    name = slices.slice_name(self.layout.node_name, self.layout.driver)
                    self._remember(next(s for s in observed if s["metadata"]["name"] == name))
                    return SliceReport(changed, self._last_generation, self._published, self._shares())
                relayout = False
                for action in actions:
                    relayout |= self._apply(action)
                changed = True
                if not relayout:
                    break
            return SliceReport(changed, self._last_generation, self._published, self._shares())

    def _shares(self) -> bool:
        return self.layout.shared and not self._multi_dropped

    def _expected_layout(self) -> slices.SliceLayout:
        if self.layout.shared and self._multi_dropped and self.sharing is api.Sharing.shared:
            # What the server keeps: one device without the field (one claim at a time).
            return slices.SliceLayout(
                self.layout.driver, self.layout.node_name, shared=True, count=1, mark_multiple=False
            )
        return self.layout

    def _apply(self, action: slices.Action) -> bool:
        """Run one action; True when what the server kept changes the layout."""
        if isinstance(action, slices.Delete):
            log.info("deleting stale ResourceSlice %s", action.name)
            try:
                self._store.delete_slice(action.name, resource_version=action.resource_version)
            except errors.ApiServerError as exc:
                if exc.status != 404:
                    raise
            return False
        if isinstance(action, slices.Create):
            result = self._store.create_slice(action.body)
            verb = "published"
        else:
            result = self._store.replace_slice(action.name, action.body)
            verb = "updated"
        self._remember(result)
        log.info(
            "%s ResourceSlice %s: pool %s generation %d, %d device(s), healthy=%s",
            verb,
            result["metadata"]["name"],
            self.layout.pool,
            self._last_generation,
            len(self._published),
            action.body["spec"]["devices"][0]["attributes"]["healthy"]["bool"],
        )
        return self._check_sharing_kept(action.body, result)

    def _remember(self, result: dict[str, object]) -> None:
        spec = result.get("spec") or {}
        assert isinstance(spec, dict)
        pool = spec.get("pool") or {}
        self._last_generation = max(self._last_generation, int(pool.get("generation") or 0))
        self._published = frozenset(str(d.get("name")) for d in spec.get("devices") or [])

    def _check_sharing_kept(self, sent: dict[str, object], result: dict[str, object]) -> bool:
        if not self.layout.shared or self._multi_dropped:
            return False
        kept = slices.comparable_spec(result)["devices"]
        if kept and all(d["allowMultipleAllocations"] for d in kept):
            return False
        self._multi_dropped = True
        if self.sharing is api.Sharing.auto:
            log.warning(
                "the API server dropped allowMultipleAllocations (DRAConsumableCapacity is off); "
                "publishing %d devices instead, one claim each",
                self.layout.count,
            )
            self.layout = slices.SliceLayout(
                self.layout.driver, self.layout.node_name, shared=False, count=self.layout.count
            )
            return True
        log.error(
            "the API server dropped allowMultipleAllocations (DRAConsumableCapacity is off): only one claim "
            "at a time can use /dev/fuse on this node; use --sharing devices or auto"
        )
        return True

    def delete_all(self) -> int:
        """Remove every slice of this node and driver (uninstall); the number deleted."""
        with self._lock:
            deleted = 0
            for slice_ in self._store.list_slices(node_name=self.layout.node_name, driver=self.layout.driver):
                name = str(slice_["metadata"]["name"])
                try:
                    self._store.delete_slice(name)
                except errors.ApiServerError as exc:
                    if exc.status != 404:
                        raise
                deleted += 1
                log.info("deleted ResourceSlice %s", name)
            self._published = frozenset()
            return deleted
