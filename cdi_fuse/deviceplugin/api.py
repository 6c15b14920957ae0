"""What the device plugin deals in, free of gRPC: device IDs, allocations, strategy decisions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NewType

__all__ = [
    "ALL_STRATEGIES",
    "CDI",
    "CDI_ANNOTATIONS",
    "DEVICE_SPEC",
    "Allocation",
    "Decision",
    "DeviceId",
    "DeviceSpecEdit",
    "ResourceName",
    "RuntimeProbe",
    "RuntimeView",
]

ResourceName = NewType("ResourceName", str)
DeviceId = NewType("DeviceId", str)

CDI = "cdi"
CDI_ANNOTATIONS = "cdi-annotations"
DEVICE_SPEC = "device-spec"
ALL_STRATEGIES: tuple[str, ...] = (CDI, CDI_ANNOTATIONS, DEVICE_SPEC)


@dataclass(frozen=True)
class DeviceSpecEdit:
    container_path: str
    host_path: str
    permissions: str


@dataclass(frozen=True)
class Allocation:
    """What one container gets: CDI names, CDI annotations and/or raw device nodes."""

    cdi_devices: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    device_specs: tuple[DeviceSpecEdit, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The strategies Allocate uses now, and why."""

    strategies: frozenset[str]
    reason: str

    @property
    def label(self) -> str:
        return "+".join(s for s in ALL_STRATEGIES if s in self.strategies)


@dataclass(frozen=True)
class RuntimeView:
    """What the container runtime said about CDI."""

    description: str  # e.g. "containerd 1.7.24"
    cdi_enabled: bool
    spec_dirs: tuple[Path, ...]
    reason: str = ""


# Asks the runtime; raises cdi_fuse.errors.CdiFuseError when it cannot be asked.
RuntimeProbe = Callable[[], RuntimeView]
