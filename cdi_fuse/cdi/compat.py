"""Which CDI library each runtime release bundles, and what each library version loads. Facts only.

Sources (read at the release tags; cite them when changing a row):
- Library rules: github.com/cncf-tags/container-device-interface at tags v0.5.4, v0.6.2, v0.7.2, v0.8.0, v0.8.1,
  v1.0.0, v1.0.1, v1.1.0: ``specs-go/config.go`` (fields), ``specs-go/version.go`` / ``pkg/cdi/version.go``
  (``CurrentVersion``, ``validSpecVersions``), ``pkg/cdi/spec.go`` (``validate``: "invalid spec, no devices" from
  v1.0.0), ``pkg/parser/parser.go`` / ``pkg/cdi/qualified-device.go`` (vendor/class names; the one-character
  slice ``name[1:len(name)-1]`` panics in every tag up to v1.1.0), ``internal/validation/validate.go``
  (spec annotations are never checked on load: the type switch only matches ``map[string]interface{}``).
- containerd: ``go.mod`` at tags v1.7.0 ... v2.3.4 (github.com/containerd/containerd).
- CRI-O: ``go.mod`` at tags v1.24.0 ... v1.36.3 (github.com/cri-o/cri-o).
- podman: ``go.mod`` at tags v4.0.0 ... v5.8.2 (github.com/containers/podman).
- Debian builds link Debian's packaged library instead of the vendored one: trixie's containerd 1.7.24~ds1 with
  golang-tags.cncf-container-device-interface-dev 0.8.0, sid's containerd 2.1.9 with 1.0.1. The test suite's
  oracle is built from exactly those two packages (tests/conformance/oracle.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from cdi_fuse import errors

__all__ = [
    "DEBIAN_BUILDS",
    "DEFAULT_LIBRARY",
    "LIBRARIES",
    "RUNTIMES",
    "Library",
    "RuntimeLibrary",
    "RuntimeRelease",
    "library",
    "loads_version",
    "parse_runtime",
    "reported_runtime_library",
    "runtime_library",
    "runtimes_using",
]


@dataclass(frozen=True)
class Library:
    """One release line of the CDI Go library, as far as loading a spec file goes."""

    version: str  # e.g. "1.0"
    max_cdi_version: str  # specs-go CurrentVersion
    intel_rdt_fields: tuple[str, ...]  # () when the library has no intelRdt
    additional_gids: bool
    net_devices: bool
    annotations: bool  # spec and device annotations (their keys are never checked on load)
    dot_in_class: bool
    refuses_no_devices: bool

    @property
    def cdi_versions(self) -> tuple[str, ...]:
        """The cdiVersion values it knows (0.1.0 and 0.2.0 are known but below the 0.3.0 minimum)."""
        return tuple(v for v in _ALL_CDI_VERSIONS if _key(v) <= _key(self.max_cdi_version))


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


_ALL_CDI_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
_RDT_0_7 = ("closID", "l3CacheSchema", "memBwSchema", "enableCMT", "enableMBM")
_RDT_1_1 = ("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring")

LIBRARIES: dict[str, Library] = {
    lib.version: lib
    for lib in (
        Library("0.5", "0.5.0", (), False, False, False, False, False),
        Library("0.6", "0.6.0", (), False, False, True, True, False),
        Library("0.7", "0.7.0", _RDT_0_7, True, False, True, True, False),
        Library("0.8", "0.8.0", _RDT_0_7, True, False, True, True, False),
        Library("1.0", "1.0.0", _RDT_0_7, True, False, True, True, True),
        Library("1.1", "1.1.0", _RDT_1_1, True, True, True, True, True),
    )
}
#: The newest released library: what `validate` judges against unless told a runtime.
DEFAULT_LIBRARY = LIBRARIES["1.1"]


def library(version: str) -> Library:
    """The library line for a version such as ``1.0.1`` or ``0.8``."""
    line = ".".join(version.lstrip("v").split(".")[:2])
    try:
        return LIBRARIES[line]
    except KeyError:
        known = ", ".join(LIBRARIES)
        raise errors.SpecError(f"unknown cdi library version {version!r}: known lines are {known}") from None


class RuntimeRelease(NamedTuple):
    runtime: str  # containerd, cri-o, podman
    first: tuple[int, int, int]
    last: tuple[int, int, int]  # inclusive; the last tag checked for open-ended rows
    library: str  # the module version in go.mod, e.g. "1.0.1"


def _r(runtime: str, first: str, last: str, lib: str) -> RuntimeRelease:
    def parse(text: str) -> tuple[int, int, int]:
        major, minor, patch = (int(p) for p in text.split("."))
        return major, minor, patch

    return RuntimeRelease(runtime, parse(first), parse(last), lib)


# Library module versions before 0.5 (CRI-O 1.24, podman 4.0-4.2) are not modelled: judged as 0.5.
RUNTIMES: tuple[RuntimeRelease, ...] = (
    _r("containerd", "1.7.0", "1.7.11", "0.5.4"),
    _r("containerd", "1.7.12", "1.7.12", "0.6.1"),
    _r("containerd", "1.7.13", "1.7.15", "0.6.2"),
    _r("containerd", "1.7.16", "1.7.26", "0.7.2"),
    _r("containerd", "1.7.27", "1.7.34", "0.8.1"),
    _r("containerd", "2.0.0", "2.0.2", "0.8.0"),
    _r("containerd", "2.0.3", "2.0.4", "0.8.1"),
    _r("containerd", "2.0.5", "2.0.11", "1.0.0"),
    _r("containerd", "2.1.0", "2.1.9", "1.0.1"),
    _r("containerd", "2.2.0", "2.2.0", "1.0.1"),
    _r("containerd", "2.2.1", "2.2.7", "1.1.0"),
    _r("containerd", "2.3.0", "2.3.4", "1.1.0"),
    _r("cri-o", "1.24.0", "1.24.99", "0.3.2"),
    _r("cri-o", "1.25.0", "1.25.1", "0.5.0"),
    _r("cri-o", "1.25.2", "1.25.4", "0.5.2"),
    _r("cri-o", "1.25.5", "1.25.99", "0.5.4"),
    _r("cri-o", "1.26.0", "1.26.99", "0.5.3"),
    _r("cri-o", "1.27.0", "1.27.99", "0.5.4"),
    _r("cri-o", "1.28.0", "1.28.99", "0.6.0"),
    _r("cri-o", "1.29.0", "1.29.99", "0.6.2"),
    _r("cri-o", "1.30.0", "1.30.99", "0.7.2"),
    _r("cri-o", "1.31.0", "1.32.1", "0.8.0"),
    _r("cri-o", "1.32.2", "1.32.99", "0.8.1"),
    _r("cri-o", "1.33.0", "1.34.99", "1.0.1"),
    _r("cri-o", "1.35.0", "1.36.3", "1.1.0"),
    _r("podman", "4.0.0", "4.0.99", "0.3.0"),
    _r("podman", "4.1.0", "4.2.99", "0.4.0"),
    _r("podman", "4.3.0", "4.3.99", "0.5.2"),
    _r("podman", "4.4.0", "4.4.99", "0.5.3"),
    _r("podman", "4.5.0", "4.6.99", "0.5.4"),
    _r("podman", "4.7.0", "4.7.99", "0.6.1"),
    _r("podman", "4.8.0", "5.0.99", "0.6.2"),
    _r("podman", "5.1.0", "5.1.99", "0.7.2"),
    _r("podman", "5.2.0", "5.4.99", "0.8.0"),
    _r("podman", "5.5.0", "5.8.2", "1.0.1"),
)
_NAMES = {"containerd": "containerd", "cri-o": "cri-o", "crio": "cri-o", "podman": "podman"}
_RUNTIME_RE = re.compile(r"^(?P<name>[a-z-]+?)[-/ ]?v?(?P<version>\d+(\.\d+){0,2})")


def _line(module_version: str) -> Library:
    line = ".".join(module_version.split(".")[:2])
    return LIBRARIES.get(line) or LIBRARIES["0.5"]


def runtime_library(runtime: str, version: tuple[int, ...]) -> tuple[Library, str] | None:
    """The library a runtime release bundles, and the module version; for ``(major, minor)`` alone the
    oldest library that release line shipped. None when the release is unknown (newer than the table or older
    than CDI support)."""
    name = _NAMES.get(runtime.strip().lower())
    rows = [r for r in RUNTIMES if r.runtime == name]
    if not rows:
        return None
    for row in rows:
        if len(version) >= 3 and row.first <= tuple(version[:3]) <= row.last:
            return _line(row.library), row.library
        if len(version) < 3 and row.first[: len(version)] <= tuple(version) <= row.last[: len(version)]:
            return _line(row.library), row.library
    newest = max(rows, key=lambda r: r.last)
    if tuple(version) > newest.last[: len(version)]:
        return _line(newest.library), newest.library  # a newer release bundles at least the newest we know
    return None


# Debian builds link Debian's packaged library, not the one in the upstream go.mod (sources above), keyed by the
# version the runtime reports over CRI. (sid's containerd reports "2.1.9+unknown": the same 1.0.1 as upstream.)
DEBIAN_BUILDS: dict[tuple[str, str], str] = {("containerd", "1.7.24~ds1"): "0.8.0"}


@dataclass(frozen=True)
class RuntimeLibrary:
    """The CDI library a running runtime loads specs with."""

    runtime: str  # as it describes itself, e.g. "containerd 2.1.9"
    library: Library
    module: str  # the library module version, e.g. "1.0.1"

    @property
    def label(self) -> str:
        return f"{self.runtime} (CDI library {self.module})"


def reported_runtime_library(description: str) -> RuntimeLibrary | None:
    """The library of a runtime as it describes itself over CRI ("containerd 1.7.24~ds1", "cri-o 1.33.2":
    runtime_name and runtime_version); None when no library is known for that release."""
    name_text, _, version_text = description.strip().partition(" ")
    name = _NAMES.get(name_text.lower())
    if name is None:
        return None
    module = DEBIAN_BUILDS.get((name, version_text.strip().removeprefix("v")))
    if module is not None:
        return RuntimeLibrary(description.strip(), _line(module), module)
    try:
        _, version = parse_runtime(f"{name} {version_text.strip()}")
    except errors.SpecError:
        return None
    found = runtime_library(name, version)
    return None if found is None else RuntimeLibrary(description.strip(), found[0], found[1])


def loads_version(library: Library, cdi_version: str) -> bool:
    """Whether `library` accepts a declared cdiVersion (one leading 'v' is stripped; below 0.3.0 is refused)."""
    declared = cdi_version.removeprefix("v")
    return declared in library.cdi_versions and declared not in ("0.1.0", "0.2.0")


def parse_runtime(text: str) -> tuple[str, tuple[int, ...]]:
    """``containerd-2.1``, ``cri-o 1.33.2``, ``podman5`` -> (name, version numbers)."""
    match = _RUNTIME_RE.match(text.strip().lower())
    name = _NAMES.get(match.group("name")) if match else None
    if match is None or name is None:
        raise errors.SpecError(
            f"invalid runtime {text!r}: expected containerd-X.Y[.Z], cri-o-X.Y[.Z] or podman-X[.Y[.Z]]"
        )
    return name, tuple(int(p) for p in match.group("version").split("."))


def runtimes_using(libraries: set[str]) -> list[str]:
    """Runtime release ranges whose bundled library is one of the given lines, adjacent rows merged,
    e.g. ``containerd 1.7.0-2.2.0``."""
    out: list[str] = []
    runs: list[list[RuntimeRelease]] = []
    previous: RuntimeRelease | None = None
    for row in RUNTIMES:
        if _line(row.library).version not in libraries:
            previous = None
            continue
        if previous is not None and previous.runtime == row.runtime:
            runs[-1].append(row)
        else:
            runs.append([row])
        previous = row
    for run in runs:
        first = ".".join(map(str, run[0].first))
        last = ".".join(map(str, run[-1].last)).replace(".99", ".x")
        out.append(f"{run[0].runtime} {first}" + (f"-{last}" if last != first else ""))
    return out
