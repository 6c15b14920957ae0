"""An in-memory stand-in for the resource.k8s.io/v1 parts of the API server the DRA driver uses.

Unit tests only: the real API server runs in the cluster tier. It keeps what the real one keeps and refuses
what it refuses where the driver depends on it: names are unique (409 on create), a replace or delete
with a stale resourceVersion is a conflict (409), a missing object is 404, every write bumps
resourceVersion, and, like a server with DRAConsumableCapacity off, it can drop allowMultipleAllocations.
List filters by spec.nodeName and spec.driver. Every change calls the watchers' hints.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cdi_fuse import errors
from cdi_fuse.dra import api, kube


class FakeResourceApi:
    def __init__(self, *, consumable_capacity: bool = True, node_uids: Mapping[str, str] | None = None) -> None:
        self.consumable_capacity = consumable_capacity
        self.node_uids = dict(node_uids or {})
        self.slices: dict[str, dict[str, Any]] = {}
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []  # (verb, name)
        self.claim_reads = 0
        self.fail_next: list[errors.ApiServerError] = []
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self._hints: list[Callable[[], None]] = []

    # --- SliceStore ---

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(body))
        if not self.consumable_capacity:
            for device in stored["spec"].get("devices", []):
                device.pop("allowMultipleAllocations", None)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        return stored

    def list_slices(self, *, node_name: str, driver: str) -> list[dict[str, Any]]:
        with self._lock:
            self._maybe_fail()
            return [
                copy.deepcopy(s)
                for s in self.slices.values()
                if s["spec"].get("nodeName") == node_name and s["spec"].get("driver") == driver
            ]

    def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._maybe_fail()
            name = body["metadata"]["name"]
            if name in self.slices:
                raise errors.ApiServerError(f"resourceslices {name!r} already exists", status=409)
            stored = self._stored(body)
            stored["metadata"]["uid"] = str(uuid.uuid4())
            self.slices[name] = stored
            self.writes.append(("create", name))
            result = copy.deepcopy(stored)
        self._notify()
        return result

    def replace_slice(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._maybe_fail()
            current = self.slices.get(name)
            if current is None:
                raise errors.ApiServerError(f"resourceslices {name!r} not found", status=404)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise errors.ApiServerError("the object has been modified", status=409)
            stored = self._stored(body)
            stored["metadata"]["uid"] = current["metadata"]["uid"]
            self.slices[name] = stored
            self.writes.append(("replace", name))
            result = copy.deepcopy(stored)
        self._notify()
        return result

    def delete_slice(self, name: str, *, resource_version: str | None = None) -> None:
        with self._lock:
            self._maybe_fail()
            current = self.slices.get(name)
            if current is None:
                raise errors.ApiServerError(f"resourceslices {name!r} not found", status=404)
            if resource_version is not None and resource_version != current["metadata"]["resourceVersion"]:
                raise errors.ApiServerError("precondition failed", status=409)
            del self.slices[name]
            self.writes.append(("delete", name))
        self._notify()

    def node_uid(self, node_name: str) -> str | None:
        return self.node_uids.get(node_name)

    # --- what others do to the API ---

    def wipe(self, node_name: str) -> None:
        """What the kubelet does at start: delete every slice of the node."""
        with self._lock:
            for name in [n for n, s in self.slices.items() if s["spec"].get("nodeName") == node_name]:
                del self.slices[name]
        self._notify()

    def add_claim(
        self, namespace: str, name: str, *, results: list[dict[str, str]] | None, uid: str | None = None
    ) -> str:
        uid = uid or str(uuid.uuid4())
        claim: dict[str, Any] = {"metadata": {"namespace": namespace, "name": name, "uid": uid}, "status": {}}
        if results is not None:
            claim["status"]["allocation"] = {"devices": {"results": results}}
        self.claims[(namespace, name)] = claim
        return uid

    # --- ClaimReader ---

    def allocated_devices(self, claim: api.ClaimRef) -> list[api.AllocatedDevice]:
        self.claim_reads += 1
        data = self.claims.get((claim.namespace, claim.name))
        if data is None:
            raise errors.ClaimError(f"ResourceClaim {claim.namespace}/{claim.name} not found", claim=claim.uid)
        return kube.allocation_results(data, claim)

    # --- watch hints ---

    def _notify(self) -> None:
        for hint in list(self._hints):
            hint()

    def slice_watch(self, hint: Callable[[], None]) -> _Watch:
        return _Watch(self, hint)


class _Watch:
    def __init__(self, fake: FakeResourceApi, hint: Callable[[], None]) -> None:
        self._fake = fake
        self._hint = hint

    def start(self) -> None:
        self._fake._hints.append(self._hint)

    def stop(self) -> None:
        with_hint = self._fake._hints
        if self._hint in with_hint:
            with_hint.remove(self._hint)
