"""The node's FUSE device: probe it, judge its health, and describe it as a CDI spec."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdi_fuse import defaults, errors
from cdi_fuse.cdi import versions

if TYPE_CHECKING:  # the plugin process builds the spec as data and never loads pydantic
    from cdi_fuse.cdi import models

__all__ = [
    "FUSE_DEVICE_NUMBERS",
    "FuseDevice",
    "Health",
    "build_fuse_spec",
    "check_health",
    "fuse_in_kernel",
    "fuse_spec_data",
    "kernel_device_name",
    "probe_fuse",
    "validate_fuse_numbers",
]

# The FUSE device is the misc device (major 10) with the fixed minor 229 (linux/miscdevice.h: FUSE_MINOR).
FUSE_DEVICE_NUMBERS = (10, 229)


@dataclass(frozen=True)
class FuseDevice:
    path: Path
    major: int
    minor: int
    mode: int  # permission bits only
    uid: int
    gid: int

    @property
    def numbers(self) -> tuple[int, int]:
        return self.major, self.minor

    @property
    def others_can_open(self) -> bool:
        """Read and write for "others": what a container root in a user namespace is, for the host's node."""
        return self.mode & 0o006 == 0o006


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str


def fuse_in_kernel(proc_filesystems: Path = defaults.PROC_FILESYSTEMS) -> bool:
    """True when the kernel lists the ``fuse`` filesystem type (built in or module loaded)."""
    try:
        lines = proc_filesystems.read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[-1:] == ["fuse"] for line in lines)


def _stat_char_device(device_path: Path) -> os.stat_result:
    try:
        info = os.stat(device_path)
    except FileNotFoundError as exc:
        raise errors.DeviceProbeError(
            f"device {str(device_path)!r} does not exist",
            device=device_path,
            hint="load the kernel module with `modprobe fuse` (or install fuse3), then run again",
        ) from exc
    except OSError as exc:
        raise errors.DeviceProbeError(
            f"cannot stat device {str(device_path)!r}: {exc.strerror}", device=device_path
        ) from exc
    if not stat.S_ISCHR(info.st_mode):
        raise errors.DeviceProbeError(
            f"{str(device_path)!r} is not a character device",
            device=device_path,
            hint="point --device-path at the FUSE character device (normally /dev/fuse, 10:229)",
        )
    return info


def probe_fuse(
    device_path: Path = defaults.DEVICE_PATH, *, proc_filesystems: Path = defaults.PROC_FILESYSTEMS
) -> FuseDevice:
    """Stat the FUSE device and check kernel support; DeviceProbeError says what to do when not usable."""
    info = _stat_char_device(device_path)
    if not fuse_in_kernel(proc_filesystems):
        raise errors.DeviceProbeError(
            f"the kernel does not list the 'fuse' filesystem in {str(proc_filesystems)!r}",
            device=device_path,
            hint="load the kernel module with `modprobe fuse`, then run again",
        )
    return FuseDevice(
        path=device_path,
        major=os.major(info.st_rdev),
        minor=os.minor(info.st_rdev),
        mode=stat.S_IMODE(info.st_mode),
        uid=info.st_uid,
        gid=info.st_gid,
    )


def kernel_device_name(major: int, minor: int, *, sys_root: Path = defaults.SYS_ROOT) -> str | None:
    """The kernel's name for a character device (DEVNAME in /sys/dev/char/M:m/uevent), e.g. "null" for 1:3."""
    try:
        uevent = (sys_root / "dev" / "char" / f"{major}:{minor}" / "uevent").read_text()
    except OSError:
        return None
    for line in uevent.splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME" and value:
            return value
    return None


def validate_fuse_numbers(device: FuseDevice, *, sys_root: Path = defaults.SYS_ROOT) -> None:
    """UnexpectedDeviceError unless `device` is the FUSE misc device 10:229; the message names what it is."""
    if device.numbers == FUSE_DEVICE_NUMBERS:
        return
    name = kernel_device_name(device.major, device.minor, sys_root=sys_root)
    known = f" (the kernel's {name!r})" if name else ""
    fuse_numbers = ":".join(map(str, FUSE_DEVICE_NUMBERS))
    raise errors.UnexpectedDeviceError(
        f"{str(device.path)!r} is character device {device.major}:{device.minor}{known}, "
        f"not the FUSE misc device {fuse_numbers}",
        device=device.path,
        found=device.numbers,
        hint="point --device-path at the FUSE device (normally /dev/fuse); to hand out this device as FUSE "
        "anyway, pass --allow-other-device",
    )


def check_health(expected: FuseDevice, *, proc_filesystems: Path = defaults.PROC_FILESYSTEMS) -> Health:
    """Healthy only while the device is a char device with the probed numbers and the kernel has fuse."""
    try:
        info = _stat_char_device(expected.path)
    except errors.DeviceProbeError as exc:
        return Health(False, str(exc))
    numbers = (os.major(info.st_rdev), os.minor(info.st_rdev))
    if numbers != (expected.major, expected.minor):
        return Health(
            False,
            f"{str(expected.path)!r} is {numbers[0]}:{numbers[1]}, expected {expected.major}:{expected.minor}",
        )
    if not fuse_in_kernel(proc_filesystems):
        return Health(False, "the kernel no longer lists the 'fuse' filesystem")
    return Health(True, f"{str(expected.path)!r} is char device {expected.major}:{expected.minor}")


def fuse_spec_data(
    device: FuseDevice,
    *,
    vendor: str,
    cls: str,
    device_name: str,
    permissions: str = defaults.PERMISSIONS,
    cdi_version: str | None = None,
    host_path: str = defaults.CONTAINER_DEVICE_PATH,
) -> dict[str, Any]:
    """The CDI spec that injects the FUSE device node (with its cgroup rule) into a container, as data.

    The one description of the FUSE spec: `generate` validates it as a model, the plugin writes it as is.
    The node is described in the host's terms: `host_path` is where the node is on the host, not where the
    probe saw it (a plugin pod sees the host's /dev elsewhere). hostPath is written only when it differs from
    the container path, as it needs cdiVersion 0.5.0.
    """
    node: dict[str, Any] = {"path": defaults.CONTAINER_DEVICE_PATH}
    if host_path != defaults.CONTAINER_DEVICE_PATH:
        node["hostPath"] = host_path
    node.update(type="c", major=device.major, minor=device.minor, permissions=permissions)
    data: dict[str, Any] = {
        "cdiVersion": versions.EARLIEST_VERSION,
        "kind": f"{vendor}/{cls}",
        "devices": [{"name": device_name, "containerEdits": {"deviceNodes": [node]}}],
    }
    data["cdiVersion"] = cdi_version or versions.minimum_version(data)
    return data


def build_fuse_spec(device: FuseDevice, **options: Any) -> models.Spec:
    """`fuse_spec_data` as a model (same keyword options)."""
    from cdi_fuse.cdi import models

    return models.Spec.model_validate(fuse_spec_data(device, **options))
