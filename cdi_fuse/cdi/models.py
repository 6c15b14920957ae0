"""CDI spec types, up to cdiVersion 1.1.0. Plain data: pydantic only.

Keys are the JSON keys of the CDI specification (camelCase); unknown keys are rejected and values
are not coerced between types, as the reference library parses strictly. Comments name the
cdiVersion that introduced a field where it is later than 0.3.0.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ContainerEdits",
    "Device",
    "DeviceNode",
    "Hook",
    "IntelRdt",
    "Mount",
    "NetDevice",
    "Spec",
    "dump_spec",
]

Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Uint32 = Annotated[int, Field(ge=0, le=2**32 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class DeviceNode(_Model):
    path: str
    host_path: str | None = Field(default=None, alias="hostPath")  # 0.5.0
    type: str | None = None
    major: Int64 | None = None
    minor: Int64 | None = None
    file_mode: Uint32 | None = Field(default=None, alias="fileMode")
    permissions: str | None = None
    uid: Uint32 | None = None
    gid: Uint32 | None = None


class Mount(_Model):
    host_path: str = Field(alias="hostPath")
    container_path: str = Field(alias="containerPath")
    options: list[str] | None = None
    type: str | None = None  # 0.4.0


class Hook(_Model):
    hook_name: str = Field(alias="hookName")
    path: str
    args: list[str] | None = None
    env: list[str] | None = None
    timeout: Int64 | None = None  # Go int: negative values load


class IntelRdt(_Model):  # 0.7.0
    clos_id: str | None = Field(default=None, alias="closID")
    l3_cache_schema: str | None = Field(default=None, alias="l3CacheSchema")
    mem_bw_schema: str | None = Field(default=None, alias="memBwSchema")
    enable_cmt: bool | None = Field(default=None, alias="enableCMT")  # libraries 0.7-1.0 only
    enable_mbm: bool | None = Field(default=None, alias="enableMBM")  # libraries 0.7-1.0 only
    schemata: list[str] | None = None  # 1.1.0
    enable_monitoring: bool | None = Field(default=None, alias="enableMonitoring")  # 1.1.0


class NetDevice(_Model):  # 1.1.0
    host_interface_name: str = Field(alias="hostInterfaceName")
    name: str


class ContainerEdits(_Model):
    env: list[str] | None = None
    device_nodes: list[DeviceNode] | None = Field(default=None, alias="deviceNodes")
    hooks: list[Hook] | None = None
    mounts: list[Mount] | None = None
    intel_rdt: IntelRdt | None = Field(default=None, alias="intelRdt")  # 0.7.0
    additional_gids: list[Uint32] | None = Field(default=None, alias="additionalGids")  # 0.7.0
    net_devices: list[NetDevice] | None = Field(default=None, alias="netDevices")  # 1.1.0

    def is_empty(self) -> bool:
        return not (
            self.env
            or self.device_nodes
            or self.hooks
            or self.mounts
            or self.intel_rdt is not None
            or self.additional_gids
            or self.net_devices
        )


class Device(_Model):
    name: str
    annotations: dict[str, str] | None = None  # 0.6.0
    container_edits: ContainerEdits = Field(alias="containerEdits")


class Spec(_Model):
    cdi_version: str = Field(alias="cdiVersion")
    kind: str
    annotations: dict[str, str] | None = None  # 0.6.0
    devices: list[Device]
    container_edits: ContainerEdits | None = Field(default=None, alias="containerEdits")


def dump_spec(spec: Spec) -> dict[str, Any]:
    """The spec as the plain JSON-shaped data a runtime reads (CDI keys, no unset fields)."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)
