"""Generate the node's FUSE spec and keep it on disk: the work behind `cdi-fuse generate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdi_fuse import defaults
from cdi_fuse.cdi import models, names, store, validation
from cdi_fuse.node import fuse

__all__ = [
    "DEFAULT_CLASS",
    "DEFAULT_DEVICE_NAME",
    "DEFAULT_PERMISSIONS",
    "DEFAULT_VENDOR",
    "GenerateOptions",
    "GenerateResult",
    "build_spec",
    "default_output",
    "file_matches",
    "generate",
    "probe_device",
]

DEFAULT_VENDOR = defaults.VENDOR
DEFAULT_CLASS = defaults.CLASS
DEFAULT_DEVICE_NAME = defaults.DEVICE_NAME
DEFAULT_PERMISSIONS = defaults.PERMISSIONS


@dataclass(frozen=True)
class GenerateOptions:
    device_path: Path = fuse.DEFAULT_DEVICE_PATH
    vendor: str = DEFAULT_VENDOR
    cls: str = DEFAULT_CLASS
    device_name: str = DEFAULT_DEVICE_NAME
    permissions: str = DEFAULT_PERMISSIONS
    spec_version: str | None = None
    fmt: store.SpecFormat | None = None
    spec_dir: Path = defaults.SPEC_DIR
    output: Path | None = None  # None: <spec_dir>/<vendor>-<class>.<ext>
    proc_filesystems: Path = fuse.PROC_FILESYSTEMS
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
    def spec_format(self) -> store.SpecFormat:
        if self.fmt is not None:
            return self.fmt
        return store.format_for_path(self.output) if self.output is not None else "yaml"


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


def build_spec(options: GenerateOptions, device: fuse.FuseDevice | None = None) -> models.Spec:
    """Probe the device (unless given) and build a validated spec for it."""
    names.validate_vendor_name(options.vendor)
    names.validate_class_name(options.cls)
    names.validate_device_name(options.device_name)
    if device is None:
        device = probe_device(options)
    elif not options.allow_other_device:
        fuse.validate_fuse_numbers(device, sys_root=options.sys_root)
    spec = fuse.build_fuse_spec(
        device,
        vendor=options.vendor,
        cls=options.cls,
        device_name=options.device_name,
        permissions=options.permissions,
        cdi_version=options.spec_version,
        host_path=str(options.host_path),
    )
    validation.validate_spec(spec)
    return spec


def file_matches(content: str, path: Path) -> bool:
    """True when the file holds exactly `content` (what generate would write)."""
    try:
        return path.read_text("utf-8") == content
    except (OSError, UnicodeDecodeError):
        return False


def generate(options: GenerateOptions, *, write: bool = True) -> GenerateResult:
    """Build the spec and (if `write`) write it atomically; nothing is written when probing fails."""
    spec = build_spec(options)
    if not write:
        content = store.encode_spec(spec, options.spec_format)
        return GenerateResult(spec, options.qualified_name, None, changed=False, content=content)
    path = default_output(options)
    result = store.write_spec(spec, path, fmt=options.spec_format)
    return GenerateResult(spec, options.qualified_name, path, result.changed, result.content.decode("utf-8"))
