"""The node's ResourceSlice as data, and the plan that takes the API from what it has to what it should have.

Pure functions only: tests feed observed slices (plain dicts as the API returns them) and check the plan.
One pool per node, named after the node, published as one slice named `<node>-<driver>`. The slice is
compared on what we set (driver, node, pool name and size, devices with their attributes and sharing);
fields the server adds are ignored. Any other slice of this node and driver is ours from an earlier run
and is deleted. A changed pool gets a generation above every generation seen for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdi_fuse.dra import api

__all__ = [
    "Create",
    "Delete",
    "Replace",
    "SliceLayout",
    "comparable_spec",
    "desired_slice",
    "device_names",
    "plan",
    "slice_name",
]

_MAX_NAME = 253


@dataclass(frozen=True)
class SliceLayout:
    driver: str
    node_name: str
    shared: bool  # one device for every claim, else `count` devices, one claim each
    count: int = api.DEFAULT_COUNT
    # Write allowMultipleAllocations on the shared device (False: the server is known to drop it).
    mark_multiple: bool = True

    @property
    def pool(self) -> str:
        return self.node_name


@dataclass(frozen=True)
class Create:
    body: dict[str, Any]


@dataclass(frozen=True)
class Replace:
    name: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    name: str
    resource_version: str | None


Action = Create | Replace | Delete


def slice_name(node_name: str, driver: str) -> str:
    """`<node>-<driver>`; shortened with a hash suffix when longer than a DNS subdomain may be."""
    name = f"{node_name}-{driver}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NAME - 11].rstrip('.-')}-{digest}"


def device_names(layout: SliceLayout) -> list[str]:
    if layout.shared:
        return ["fuse"]
    return [f"fuse-{i}" for i in range(layout.count)]


def _device(name: str, state: api.DeviceState, *, multiple: bool) -> dict[str, Any]:
    device: dict[str, Any] = {
        "name": name,
        "attributes": {
            "major": {"int": state.major},
            "minor": {"int": state.minor},
            "healthy": {"bool": state.healthy},
        },
    }
    if multiple:
        device["allowMultipleAllocations"] = True
    return device


def desired_slice(
    layout: SliceLayout, state: api.DeviceState, *, generation: int, node_uid: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": slice_name(layout.node_name, layout.driver),
        "labels": {"app.kubernetes.io/managed-by": "cdi-fuse"},
    }
    if node_uid:
        # Garbage-collected with the Node, like the kubelet's own objects.
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": layout.node_name, "uid": node_uid, "controller": True}
        ]
    return {
        "apiVersion": api.API_GROUP_VERSION,
        "kind": "ResourceSlice",
        "metadata": metadata,
        "spec": {
            "driver": layout.driver,
            "nodeName": layout.node_name,
            "pool": {"name": layout.pool, "generation": generation, "resourceSliceCount": 1},
            "devices": [
                _device(name, state, multiple=layout.shared and layout.mark_multiple) for name in device_names(layout)
            ],
        },
    }


def comparable_spec(slice_: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a slice we own, normalised: the server's additions and the generation left out."""
    spec = slice_.get("spec") or {}
    pool = spec.get("pool") or {}
    return {
        "driver": spec.get("driver"),
        "nodeName": spec.get("nodeName"),
        "pool": {"name": pool.get("name"), "resourceSliceCount": pool.get("resourceSliceCount")},
        "devices": [
            {
                "name": d.get("name"),
                "attributes": d.get("attributes") or {},
                "allowMultipleAllocations": bool(d.get("allowMultipleAllocations")),
            }
            for d in spec.get("devices") or []
        ],
    }


def _generation(slice_: Mapping[str, Any]) -> int:
    try:
        return int(((slice_.get("spec") or {}).get("pool") or {}).get("generation") or 0)
    except (TypeError, ValueError):
        return 0


def _resource_version(slice_: Mapping[str, Any]) -> str | None:
    value = (slice_.get("metadata") or {}).get("resourceVersion")
    return str(value) if value else None


def _name(slice_: Mapping[str, Any]) -> str:
    return str((slice_.get("metadata") or {}).get("name") or "")


def plan(
    observed: Sequence[Mapping[str, Any]],
    layout: SliceLayout,
    state: api.DeviceState,
    *,
    last_generation: int = 0,
    node_uid: str | None = None,
) -> list[Action]:
    """What to do so the API holds exactly our one slice with the desired content; [] when it already does."""
    name = slice_name(layout.node_name, layout.driver)
    top = max([last_generation, *(_generation(s) for s in observed)])
    actions: list[Action] = [Delete(_name(s), _resource_version(s)) for s in observed if _name(s) != name]
    current = next((s for s in observed if _name(s) == name), None)
    if current is None:
        actions.append(Create(desired_slice(layout, state, generation=top + 1, node_uid=node_uid)))
        return actions
    wanted = desired_slice(layout, state, generation=_generation(current), node_uid=node_uid)
    if actions or comparable_spec(current) != comparable_spec(wanted):
        body = desired_slice(layout, state, generation=top + 1, node_uid=node_uid)
        body["metadata"]["resourceVersion"] = _resource_version(current)
        actions.insert(0, Replace(name, body))
    return actions
