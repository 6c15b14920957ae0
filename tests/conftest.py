"""Fixtures shared by the whole suite: fake node files, char devices (root only), spec data."""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdi_fuse.node import fuse

FUSE_MAJOR, FUSE_MINOR = 10, 229

# What /proc/filesystems looks like on a node with the fuse module loaded (tab after "nodev").
PROC_FILESYSTEMS_WITH_FUSE = "nodev\tsysfs\nnodev\tproc\n\text4\nnodev\tfusectl\n\tfuseblk\nnodev\tfuse\n"
PROC_FILESYSTEMS_WITHOUT_FUSE = "nodev\tsysfs\nnodev\tproc\n\text4\nnodev\tfusectl\n\tfuseblk\n"

MINIMAL_SPEC: dict[str, Any] = {
    "cdiVersion": "0.3.0",
    "kind": "vendor.com/device",
    "devices": [{"name": "dev0", "containerEdits": {"deviceNodes": [{"path": "/dev/dev0"}]}}],
}

CharDeviceFactory = Callable[..., Path]


@pytest.fixture
def proc_filesystems(tmp_path: Path) -> Path:
    """A fake /proc/filesystems that lists fuse."""
    path = tmp_path / "proc-filesystems"
    path.write_text(PROC_FILESYSTEMS_WITH_FUSE)
    return path


@pytest.fixture
def proc_filesystems_without_fuse(tmp_path: Path) -> Path:
    """A fake /proc/filesystems of a kernel without fuse (module not loaded)."""
    path = tmp_path / "proc-filesystems-nofuse"
    path.write_text(PROC_FILESYSTEMS_WITHOUT_FUSE)
    return path


@pytest.fixture
def make_char_device(tmp_path: Path) -> CharDeviceFactory:
    """Factory: mknod a character device under tmp_path; skips (with the reason) when that is impossible."""
    if os.geteuid() != 0:
        pytest.skip(f"mknod of a char device needs root (running as uid {os.geteuid()})")

    def make(name: str = "fuse", major: int = FUSE_MAJOR, minor: int = FUSE_MINOR, mode: int = 0o666) -> Path:
        path = tmp_path / "dev" / name
        path.parent.mkdir(exist_ok=True)
        try:
            os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
        except PermissionError as exc:
            pytest.skip(f"mknod {major}:{minor} refused in {path.parent} although root: {exc}")
        os.chmod(path, mode)  # mknod's mode is masked by the umask
        return path

    return make


@pytest.fixture
def char_device(make_char_device: CharDeviceFactory) -> Path:
    """A 10:229 char device (what /dev/fuse is) in a temp dir. Root only; skips with the reason otherwise."""
    return make_char_device()


@pytest.fixture
def fuse_device() -> fuse.FuseDevice:
    """A probed-looking /dev/fuse, 10:229 crw-rw-rw- root:root, for tests that do not probe."""
    return fuse.FuseDevice(path=Path("/dev/fuse"), major=FUSE_MAJOR, minor=FUSE_MINOR, mode=0o666, uid=0, gid=0)


@pytest.fixture
def minimal_spec() -> dict[str, Any]:
    """A fresh copy of the smallest valid spec data (cdiVersion 0.3.0, one device node)."""
    return copy.deepcopy(MINIMAL_SPEC)
