"""What the device plugin deals in, free of gRPC: device IDs, allocations, strategy decisions, and the small
protocols its pieces meet each other through (runtime answers, observers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NewType, Protocol

__all__ = [
    "ALL_STRATEGIES",
    "CDI",
    "CDI_ANNOTATIONS",
    "DEVICE_SPEC",
    "Allocation",
    "Decision",
    "DeviceId",
    "DeviceSpecEdit",
    "NullObserver",
    "PluginObserver",
    "RuntimeProbe",
    "RuntimeView",
]

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


class RuntimeView(Protocol):
    """What the container runtime said about CDI (cdi_fuse.runtime.cri.RuntimeInfo is one)."""

    @property
    def description(self) -> str: ...  # e.g. "containerd 1.7.24"

    @property
    def cdi_enabled(self) -> bool: ...

    @property
    def cdi_spec_dirs(self) -> Sequence[str]: ...

    @property
    def reason(self) -> str: ...


class RuntimeProbe(Protocol):
    """Asks the runtime (raises cdi_fuse.errors.CdiFuseError when it cannot be asked).

    `socket_paths` are where the runtimes it asks listen: a socket created there again means the runtime
    restarted, possibly with another configuration, so the plugin asks again.
    """

    @property
    def socket_paths(self) -> tuple[Path, ...]: ...

    def __call__(self) -> RuntimeView: ...


class PluginObserver(Protocol):
    """What the plugin reports as it runs (metrics implement it; the default ignores everything)."""

    def registered(self, resource: str, registered: bool) -> None: ...

    def registration_failed(self, resource: str) -> None: ...

    def kubelet_restarted(self) -> None: ...

    def device_health(self, healthy: bool) -> None: ...

    def decision(self, decision: Decision) -> None: ...

    def spec_written(self) -> None: ...

    def allocated(self, resource: str, label: str, containers: int) -> None: ...


class NullObserver:
    def registered(self, resource: str, registered: bool) -> None:
        pass

    def registration_failed(self, resource: str) -> None:
        pass

    def kubelet_restarted(self) -> None:
        pass

    def device_health(self, healthy: bool) -> None:
        pass

    def decision(self, decision: Decision) -> None:
        pass

    def spec_written(self) -> None:
        pass

    def allocated(self, resource: str, label: str, containers: int) -> None:
        pass
