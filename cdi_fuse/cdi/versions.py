"""cdiVersion rules: the released versions and the minimum version a spec's content needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from cdi_fuse import errors
from cdi_fuse.cdi import compat, models

__all__ = [
    "EARLIEST_VERSION",
    "LATEST_VERSION",
    "VALID_VERSIONS",
    "is_valid_version",
    "minimum_version",
    "validate_version",
    "version_key",
]

# Released specification versions, oldest first. 0.1.0 and 0.2.0 are no longer accepted.
VALID_VERSIONS: tuple[str, ...] = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
EARLIEST_VERSION = VALID_VERSIONS[0]
LATEST_VERSION = VALID_VERSIONS[-1]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def is_valid_version(version: str) -> bool:
    return version in VALID_VERSIONS


def _all_edits(spec: models.Spec) -> Iterator[models.ContainerEdits]:
    if spec.container_edits is not None:
        yield spec.container_edits
    for device in spec.devices:
        yield device.container_edits


def _needs_1_1_0(spec: models.Spec) -> bool:
    for edits in _all_edits(spec):
        if edits.net_devices:
            return True
        rdt = edits.intel_rdt
        # The library checks `Schemata != nil`: an empty list counts.
        if rdt is not None and (rdt.schemata is not None or rdt.enable_monitoring):
            return True
    return False


def _needs_0_7_0(spec: models.Spec) -> bool:
    return any(edits.intel_rdt is not None or edits.additional_gids for edits in _all_edits(spec))


def _needs_0_6_0(spec: models.Spec) -> bool:
    if spec.annotations or any(device.annotations for device in spec.devices):
        return True
    _, _, cls = spec.kind.partition("/")
    return "." in cls


def _needs_0_5_0(spec: models.Spec) -> bool:
    if any("0" <= device.name[:1] <= "9" for device in spec.devices):
        return True
    return any(node.host_path for edits in _all_edits(spec) for node in edits.device_nodes or ())


def _needs_0_4_0(spec: models.Spec) -> bool:
    return any(mount.type for edits in _all_edits(spec) for mount in edits.mounts or ())


# Newest first: the first version whose check matches is the minimum. 0.8.0 and 1.0.0 added
# nothing to the spec format, so they have no check.
_REQUIREMENTS: tuple[tuple[str, Callable[[models.Spec], bool]], ...] = (
    ("1.1.0", _needs_1_1_0),
    ("0.7.0", _needs_0_7_0),
    ("0.6.0", _needs_0_6_0),
    ("0.5.0", _needs_0_5_0),
    ("0.4.0", _needs_0_4_0),
)


def minimum_version(spec: models.Spec) -> str:
    """The lowest cdiVersion able to express everything the spec uses."""
    for version, needs_it in _REQUIREMENTS:
        if needs_it(spec):
            return version
    return EARLIEST_VERSION


def _declared(version: str) -> str:
    """The library compares versions after removing one leading 'v'."""
    return version.removeprefix("v")


def validate_version(spec: models.Spec, library: compat.Library | None = None) -> None:
    """Raise SpecVersionError if cdiVersion is unknown to `library` (the newest by default) or lower than the content
    needs."""
    library = library or compat.DEFAULT_LIBRARY
    declared = _declared(spec.cdi_version)
    if declared not in library.cdi_versions:
        newest = library.max_cdi_version
        detail = (
            f"CDI library {library.version} knows versions up to {newest}"
            if declared in VALID_VERSIONS
            else f"known versions are {', '.join(VALID_VERSIONS)}"
        )
        raise errors.SpecVersionError(f"invalid version {spec.cdi_version!r}: {detail}", location="cdiVersion")
    required = minimum_version(spec)
    if version_key(declared) < version_key(required):
        raise errors.SpecVersionError(
            f"the spec version must be at least v{required} (declared {spec.cdi_version!r})",
            location="cdiVersion",
        )
