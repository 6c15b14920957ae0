"""Allocate strategies: how a container is told to get /dev/fuse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cdi_fuse import errors
from cdi_fuse.cdi import names
from cdi_fuse.deviceplugin import api

__all__ = ["AUTO", "AllocationBuilder", "StrategyChoice", "parse_strategy", "plugin_name"]

AUTO = "auto"


@dataclass(frozen=True)
class StrategyChoice:
    """`auto`, or a fixed set of strategies."""

    fixed: frozenset[str] | None

    @property
    def is_auto(self) -> bool:
        return self.fixed is None


def parse_strategy(text: str) -> StrategyChoice:
    """Parse `auto` or a comma list of cdi, cdi-annotations, device-spec."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if items == [AUTO]:
        return StrategyChoice(None)
    unknown = [item for item in items if item not in api.ALL_STRATEGIES]
    if not items or unknown:
        raise errors.InvalidOptionError(
            f"invalid strategy {text!r}: use 'auto' or a comma list of {', '.join(api.ALL_STRATEGIES)}",
            option="--strategy",
        )
    return StrategyChoice(frozenset(items))


def plugin_name(resource_name: str) -> str:
    """The plugin part of a CDI annotation key for a resource: '/' becomes '_'."""
    return resource_name.replace("/", "_")


class AllocationBuilder:
    """Builds the Allocation for a set of device IDs under a decision.

    With `with_annotations`, the annotation key of the longest ID is checked at start (so a resource name
    too long for the keys fails then, not at the first Allocate); keys are made per call, so nothing here
    grows with the number of device IDs.
    """

    def __init__(
        self,
        *,
        resource_name: str,
        qualified_name: str,
        host_device_path: str,
        container_device_path: str,
        permissions: str,
        device_ids: Sequence[api.DeviceId],
        with_annotations: bool = True,
    ) -> None:
        names.parse_qualified_name(qualified_name)
        self.qualified_name = qualified_name
        self._device_spec = api.DeviceSpecEdit(container_device_path, host_device_path, permissions)
        self._prefix = plugin_name(resource_name)
        self.with_annotations = with_annotations
        if with_annotations and device_ids:
            names.annotation_key(self._prefix, max(device_ids, key=len))

    def build(self, device_ids: Iterable[api.DeviceId], strategies: frozenset[str]) -> api.Allocation:
        ids = list(device_ids)
        cdi_devices: tuple[str, ...] = ()
        annotations: dict[str, str] = {}
        device_specs: tuple[api.DeviceSpecEdit, ...] = ()
        if api.CDI in strategies:
            cdi_devices = (self.qualified_name,)
        if api.CDI_ANNOTATIONS in strategies and ids and self.with_annotations:
            # One key per container (from its first device): every ID grants the same shared device.
            annotations = {names.annotation_key(self._prefix, ids[0]): self.qualified_name}
        if api.DEVICE_SPEC in strategies:
            device_specs = (self._device_spec,)
        return api.Allocation(cdi_devices, annotations, device_specs)
