"""Allocate strategies: how a container is told to get /dev/fuse, and the runtime-aware `auto` choice."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdi_fuse import errors
from cdi_fuse.cdi import names, store
from cdi_fuse.deviceplugin import api

__all__ = [
    "AUTO",
    "AllocationBuilder",
    "StrategyChoice",
    "decide_auto",
    "parse_strategy",
    "plugin_name",
]

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
        raise ValueError(f"invalid strategy {text!r}: use 'auto' or a comma list of {', '.join(api.ALL_STRATEGIES)}")
    return StrategyChoice(frozenset(items))


def plugin_name(resource_name: str) -> str:
    """The plugin part of a CDI annotation key for a resource: '/' becomes '_'."""
    return resource_name.replace("/", "_")


class AllocationBuilder:
    """Builds the Allocation for a set of device IDs under a decision.

    Annotation keys are precomputed per ID (so a resource name too long for them fails at start),
    but only when `with_annotations`: a plugin that never sends cdi-annotations does not need them.
    """

    def __init__(
        self,
        *,
        resource_name: str,
        qualified_name: str,
        host_device_path: str,
        container_device_path: str,
        permissions: str,
        device_ids: Iterable[api.DeviceId],
        with_annotations: bool = True,
    ) -> None:
        names.parse_qualified_name(qualified_name)
        self.qualified_name = qualified_name
        self._device_spec = api.DeviceSpecEdit(container_device_path, host_device_path, permissions)
        prefix = plugin_name(resource_name)
        self._annotation_keys = (
            {device_id: names.annotation_key(prefix, device_id) for device_id in device_ids} if with_annotations else {}
        )

    def build(self, device_ids: Iterable[api.DeviceId], strategies: frozenset[str]) -> api.Allocation:
        ids = list(device_ids)
        cdi_devices: tuple[str, ...] = ()
        annotations: dict[str, str] = {}
        device_specs: tuple[api.DeviceSpecEdit, ...] = ()
        if api.CDI in strategies:
            cdi_devices = (self.qualified_name,)
        if api.CDI_ANNOTATIONS in strategies and ids and self._annotation_keys:
            # One key per container (from its first device): every ID grants the same shared device.
            annotations = {self._annotation_keys[ids[0]]: self.qualified_name}
        if api.DEVICE_SPEC in strategies:
            device_specs = (self._device_spec,)
        return api.Allocation(cdi_devices, annotations, device_specs)


def decide_auto(
    runtime: api.RuntimeView | None,
    query_error: errors.CdiFuseError | None,
    qualified_name: str,
    *,
    fallback_spec_dirs: Sequence[Path] = (),
) -> api.Decision:
    """Choose strategies from what the runtime says and what its spec dirs provide.

    - runtime cannot be asked: every strategy (CDI names plus the raw device), so any runtime works —
      unless the name resolves nowhere in `fallback_spec_dirs` (the plugin's own --spec-dir): a CDI-on
      runtime fails CreateContainer on an unresolvable name, so then the raw device only;
    - CDI off: the raw DeviceSpec only;
    - CDI on and the name resolves to exactly one device in the runtime's spec dirs: CDI names and
      CDI annotations (no raw device, so the runtime's CDI edits are the only source of the node);
    - CDI on but the name is missing or defined twice: the raw DeviceSpec only.
    """
    if runtime is None:
        fallback = store.scan_spec_dirs(fallback_spec_dirs)
        if qualified_name in fallback.conflicts or fallback.resolve(qualified_name) is None:
            dirs = ", ".join(str(d) for d in fallback_spec_dirs)
            return api.Decision(
                frozenset({api.DEVICE_SPEC}),
                f"runtime could not be asked ({query_error}) and {qualified_name} does not resolve uniquely "
                f"in {dirs}; sending the device only",
            )
        return api.Decision(
            frozenset(api.ALL_STRATEGIES),
            f"runtime could not be asked ({query_error}); sending CDI names and the device",
        )
    if not runtime.cdi_enabled:
        return api.Decision(
            frozenset({api.DEVICE_SPEC}), f"{runtime.description} has CDI disabled{_because(runtime.reason)}"
        )
    registry = store.scan_spec_dirs(runtime.spec_dirs)
    dirs = ", ".join(str(d) for d in runtime.spec_dirs)
    if qualified_name in registry.conflicts:
        paths = ", ".join(str(p) for p in registry.conflicts[qualified_name])
        return api.Decision(frozenset({api.DEVICE_SPEC}), f"{qualified_name} is defined twice ({paths})")
    if registry.resolve(qualified_name) is None:
        return api.Decision(
            frozenset({api.DEVICE_SPEC}), f"{qualified_name} is not in {runtime.description}'s spec dirs ({dirs})"
        )
    return api.Decision(
        frozenset({api.CDI, api.CDI_ANNOTATIONS}),
        f"{runtime.description} has CDI enabled and {qualified_name} resolves in {dirs}",
    )


def _because(reason: str) -> str:
    return f" ({reason})" if reason else ""
