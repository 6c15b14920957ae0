"""Names, plain types and protocols of the DRA driver; no gRPC, no Kubernetes client."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from cdi_fuse import defaults

__all__ = [
    "API_GROUP_VERSION",
    "CHECKPOINT_FILE",
    "DEFAULT_COUNT",
    "DEFAULT_DRIVER",
    "DEFAULT_PLUGINS_DIR",
    "DEFAULT_REGISTRY_DIR",
    "DRA_SOCKET",
    "MAX_DEVICES_PER_SLICE",
    "PLUGIN_TYPE",
    "SUPPORTED_SERVICES",
    "AllocatedDevice",
    "ClaimReader",
    "ClaimRef",
    "DeviceState",
    "Sharing",
    "SliceStore",
    "registration_socket_name",
]

DEFAULT_DRIVER = defaults.DRA_DRIVER
DEFAULT_REGISTRY_DIR: Path = defaults.DRA_REGISTRY_DIR
DEFAULT_PLUGINS_DIR: Path = defaults.DRA_PLUGINS_DIR
DRA_SOCKET = "dra.sock"
CHECKPOINT_FILE = "prepared-claims.json"
PLUGIN_TYPE = "DRAPlugin"
# The kubelet reads "supported versions" of a DRA plugin as gRPC service names, "<package tail>.<service>",
# and picks the first it knows; 1.34+ kubelets know "v1.DRAPlugin".
SUPPORTED_SERVICES = ("v1.DRAPlugin",)
API_GROUP_VERSION = "resource.k8s.io/v1"
# resource.k8s.io/v1 accepts at most 128 devices in one ResourceSlice.
MAX_DEVICES_PER_SLICE = 128
# Like the device plugin's --count: the kubelet's default max pods, so every pod may hold one share.
DEFAULT_COUNT = defaults.COUNT


def registration_socket_name(driver: str) -> str:
    return f"{driver}-reg.sock"


class Sharing(StrEnum):
    """How many claims may use /dev/fuse on one node at once.

    shared: one device with allowMultipleAllocations (resource.k8s.io/v1 with DRAConsumableCapacity, on by
    default from Kubernetes 1.36): any number of claims share it. devices: --count interchangeable devices,
    one claim each (any resource.k8s.io/v1 cluster). auto: shared, unless the API server drops the field
    (feature off), then devices.
    """

    auto = "auto"
    shared = "shared"
    devices = "devices"


@dataclass(frozen=True)
class DeviceState:
    """What the node's FUSE device is now, as the slice publishes it."""

    major: int
    minor: int
    healthy: bool
    reason: str = ""


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} ({self.uid})"


@dataclass(frozen=True)
class AllocatedDevice:
    """One entry of a claim's status.allocation.devices.results."""

    request: str
    driver: str
    pool: str
    device: str


class ClaimReader(Protocol):
    def allocated_devices(self, claim: ClaimRef) -> Sequence[AllocatedDevice]:
        """The claim's allocation results; ClaimError when it is gone, replaced or not allocated."""
        ...


class SliceStore(Protocol):
    """ResourceSlices as plain JSON-like dicts (the API's own field names)."""

    def list_slices(self, *, node_name: str, driver: str) -> list[dict[str, Any]]: ...

    def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace_slice(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def delete_slice(self, name: str, *, resource_version: str | None = None) -> None: ...

    def node_uid(self, node_name: str) -> str | None: ...


SliceHint = Callable[[], None]
