"""cdiVersion rules: the released versions and the minimum version a spec's content needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from cdi_fuse import errors
from cdi_fuse.cdi import compat

if TYPE_CHECKING:  # the rules read data: the plugin process must not load pydantic
    from cdi_fuse.cdi import models

__all__ = [
    "EARLIEST_VERSION",
    "VALID_VERSIONS",
    "is_valid_version",
    "minimum_version",
    "validate_version",
    "version_key",
]

# Released specification versions, oldest first. 0.1.0 and 0.2.0 are no longer accepted.
VALID_VERSIONS: tuple[str, ...] = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
EARLIEST_VERSION = VALID_VERSIONS[0]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def is_valid_version(version: str) -> bool:
    return version in VALID_VERSIONS


# The rules read the spec as data (JSON-shaped, keys as in the file): models.Spec dumps to it, and the plugin
# builds its spec as data without loading pydantic. Absent and empty fields alike mean "not used", as in the
# library, except where noted.
SpecData = Mapping[str, Any]


def _all_edits(spec: SpecData) -> Iterator[SpecData]:
    if spec.get("containerEdits"):
        yield spec["containerEdits"]
    for device in spec.get("devices") or ():
        yield device.get("containerEdits") or {}


def _needs_1_1_0(spec: SpecData) -> bool:
    for edits in _all_edits(spec):
        if edits.get("netDevices"):
            return True
        rdt = edits.get("intelRdt")
        # The library checks `Schemata != nil`: an empty list counts.
        if rdt is not None and (rdt.get("schemata") is not None or rdt.get("enableMonitoring")):
            return True
    return False


def _needs_0_7_0(spec: SpecData) -> bool:
    return any(edits.get("intelRdt") is not None or edits.get("additionalGids") for edits in _all_edits(spec))


def _needs_0_6_0(spec: SpecData) -> bool:
    if spec.get("annotations") or any(device.get("annotations") for device in spec.get("devices") or ()):
        return True
    _, _, cls = str(spec.get("kind", "")).partition("/")
    return "." in cls


def _needs_0_5_0(spec: SpecData) -> bool:
    if any("0" <= str(device.get("name", ""))[:1] <= "9" for device in spec.get("devices") or ()):
        return True
    return any(node.get("hostPath") for edits in _all_edits(spec) for node in edits.get("deviceNodes") or ())


def _needs_0_4_0(spec: SpecData) -> bool:
    return any(mount.get("type") for edits in _all_edits(spec) for mount in edits.get("mounts") or ())


# Newest first: the first version whose check matches is the minimum. 0.8.0 and 1.0.0 added
# nothing to the spec format, so they have no check.
_REQUIREMENTS: tuple[tuple[str, Callable[[SpecData], bool]], ...] = (
    ("1.1.0", _needs_1_1_0),
    ("0.7.0", _needs_0_7_0),
    ("0.6.0", _needs_0_6_0),
    ("0.5.0", _needs_0_5_0),
    ("0.4.0", _needs_0_4_0),
)


def minimum_version(spec: models.Spec | SpecData) -> str:
    """The lowest cdiVersion able to express everything the spec (a model, or its data) uses."""
    data = spec if isinstance(spec, Mapping) else spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for version, needs_it in _REQUIREMENTS:
        if needs_it(data):
            return version
    return EARLIEST_VERSION


def _declared(version: str) -> str:
    """The library compares versions after removing one leading 'v'."""
    return version.removeprefix("v")


def validate_version(spec: models.Spec | SpecData, library: compat.Library | None = None) -> None:
    """Raise SpecVersionError if cdiVersion is unknown to `library` (the newest by default) or lower than the content
    needs."""
    library = library or compat.DEFAULT_LIBRARY
    data = spec if isinstance(spec, Mapping) else spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    declared = _declared(str(data.get("cdiVersion", "")))
    if declared not in library.cdi_versions:
        newest = library.max_cdi_version
        detail = (
            f"CDI library {library.version} knows versions up to {newest}"
            if declared in VALID_VERSIONS
            else f"known versions are {', '.join(VALID_VERSIONS)}"
        )
        raise errors.SpecVersionError(f"invalid version {data.get('cdiVersion')!r}: {detail}", location="cdiVersion")
    required = minimum_version(data)
    if version_key(declared) < version_key(required):
        raise errors.SpecVersionError(
            f"the spec version must be at least v{required} (declared {data.get('cdiVersion')!r})",
            location="cdiVersion",
        )
