"""Generate the node's FUSE spec and keep it on disk: the work behind `cdi-fuse generate` and `plugin --generate`.

`render` builds the spec as data (node/fuse.py) and encodes it, with the only checks its inputs can fail
(names, permissions, cdiVersion); it loads no pydantic, so the plugin process stays lean. `generate` renders
too, then validates the result as a model against every rule before writing: the same bytes either way, and
a test holds the two together (a rendered spec always passes the full validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdi_fuse import defaults, errors
from cdi_fuse.cdi import names, specfile, versions
from cdi_fuse.node import fuse

if TYPE_CHECKING:
    from cdi_fuse.cdi import models

__all__ = [
    "GenerateOptions",
    "GenerateResult",
    "Rendered",
    "build_spec",
    "default_output",
    "file_matches",
    "generate",
    "probe_device",
    "render",
    "write_rendered",
]


@dataclass(frozen=True)
class GenerateOptions:
    device_path: Path = defaults.DEVICE_PATH
    vendor: str = defaults.VENDOR
    cls: str = defaults.CLASS
    device_name: str = defaults.DEVICE_NAME
    permissions: str = defaults.PERMISSIONS
    spec_version: str | None = None
    fmt: specfile.SpecFormat | None = None
    spec_dir: Path = defaults.SPEC_DIR
    output: Path | None = None  # None: <spec_dir>/<vendor>-<class>.<ext>
    proc_filesystems: Path = defaults.PROC_FILESYSTEMS
    # Where the node is on the host, when the probe sees it elsewhere (e.g. /host/dev/fuse in a pod).
    host_device_path: Path | None = None
    # Hand out a character device that is not the FUSE misc device 10:229 (refused otherwise).
    allow_other_device: bool = False
    sys_root: Path = defaults.SYS_ROOT

    @property
    def host_path(self) -> Path:
        return self.host_device_path if self.host_device_path is not None else self.device_path

    @property
    def qualified_name(self) -> str:
        return names.qualified_name(self.vendor, self.cls, self.device_name)

    @property
    def spec_format(self) -> specfile.SpecFormat:
        if self.fmt is not None:
            return self.fmt
        return specfile.format_for_path(self.output) if self.output is not None else "yaml"


@dataclass(frozen=True)
class Rendered:
    """The node's spec as data and as the encoded file, and where it goes."""

    data: dict[str, Any]
    content: str
    qualified_name: str
    path: Path


@dataclass(frozen=True)
class GenerateResult:
    spec: models.Spec
    qualified_name: str
    path: Path | None
    changed: bool
    content: str


def default_output(options: GenerateOptions) -> Path:
    if options.output is not None:
        return options.output
    ext = "json" if options.spec_format == "json" else "yaml"
    return options.spec_dir / f"{names.spec_file_name(options.vendor, options.cls)}.{ext}"


def probe_device(options: GenerateOptions) -> fuse.FuseDevice:
    """Probe the device to hand out; anything but the FUSE misc device is refused unless allowed.

    Every path that hands out the device (generate, the device plugin, the DRA driver) probes through here.
    """
    device = fuse.probe_fuse(options.device_path, proc_filesystems=options.proc_filesystems)
    if not options.allow_other_device:
        fuse.validate_fuse_numbers(device, sys_root=options.sys_root)
    return device


def _check_inputs(options: GenerateOptions) -> None:
    names.validate_vendor_name(options.vendor)
    names.validate_class_name(options.cls)
    names.validate_device_name(options.device_name)
    crash = names.crash_message(f"{options.vendor}/{options.cls}")
    if crash is not None:
        raise errors.InvalidNameError(f"{crash}; use a longer name")
    if not set(options.permissions) <= names.DEVICE_PERMISSIONS:
        raise errors.SpecError(f"invalid permissions {options.permissions!r}: use any of r, w and m")


def render(options: GenerateOptions, device: fuse.FuseDevice | None = None) -> Rendered:
    """Check the options, probe the device (unless given), and build and encode its spec."""
    _check_inputs(options)
    if device is None:
        device = probe_device(options)
    elif not options.allow_other_device:
        fuse.validate_fuse_numbers(device, sys_root=options.sys_root)
    data = fuse.fuse_spec_data(
        device,
        vendor=options.vendor,
        cls=options.cls,
        device_name=options.device_name,
        permissions=options.permissions,
        cdi_version=options.spec_version,
        host_path=str(options.host_path),
    )
    versions.validate_version(data)
    content = specfile.encode_data(data, options.spec_format)
    return Rendered(data, content, options.qualified_name, default_output(options))


def write_rendered(rendered: Rendered) -> specfile.WriteResult:
    """Write a rendered spec atomically (nothing when the file already holds it)."""
    return specfile.write_content(rendered.path, rendered.content.encode("utf-8"))


def _validated(rendered: Rendered) -> models.Spec:
    from cdi_fuse.cdi import models, validation

    spec = models.Spec.model_validate(rendered.data)
    validation.validate_spec(spec)
    return spec


def build_spec(options: GenerateOptions, device: fuse.FuseDevice | None = None) -> models.Spec:
    """Probe the device (unless given) and build a validated spec for it."""
    return _validated(render(options, device))


def file_matches(content: str, path: Path) -> bool:
    """True when the file holds exactly `content` (what generate would write)."""
    try:
        return path.read_text("utf-8") == content
    except (OSError, UnicodeDecodeError):
        return False


def generate(options: GenerateOptions, *, write: bool = True) -> GenerateResult:
    """Build and validate the spec and (if `write`) write it atomically; nothing is written when probing fails."""
    rendered = render(options)
    spec = _validated(rendered)
    if not write:
        return GenerateResult(spec, rendered.qualified_name, None, changed=False, content=rendered.content)
    result = write_rendered(rendered)
    return GenerateResult(spec, rendered.qualified_name, rendered.path, result.changed, rendered.content)
