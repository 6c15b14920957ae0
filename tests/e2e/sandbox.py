"""Run a command the way a container runs it: no capabilities and a devices cgroup without /dev/fuse.

Inside a container, the devices cgroup refuses even access(2) on a device node the container was not given
(EPERM), while stat(2) works. A plugin pod sees the host's /dev that way (/host/dev/fuse). Tests that only
drop capabilities cannot see what that refusal breaks; this module adds the cgroup (cgroup v1 `devices`
controller, as on this machine class; cgroup v2 has no file interface for it and the tests say so).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

DEVICES_CGROUP = Path("/sys/fs/cgroup/devices")
# What runc allows every container by default (null, zero, full, tty, console, ptmx, random, urandom, pts).
CONTAINER_DEFAULT_DEVICES = (
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
)
NO_CAPABILITIES = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs")


def unavailable_reason() -> str | None:
    """Why a container-like sandbox cannot be made here, or None."""
    if os.geteuid() != 0:
        return f"needs root for a devices cgroup and setpriv: running as uid {os.geteuid()}"
    if shutil.which("setpriv") is None:
        return "setpriv not installed (Debian package util-linux)"
    if not (DEVICES_CGROUP / "devices.deny").is_file():
        return f"no cgroup v1 devices controller at {DEVICES_CGROUP}"
    return None


@contextlib.contextmanager
def devices_cgroup(allowed: Sequence[str] = CONTAINER_DEFAULT_DEVICES) -> Iterator[Path]:
    """A devices cgroup that denies every device but `allowed`; removed afterwards (its tasks must be gone)."""
    path = DEVICES_CGROUP / f"cdi-fuse-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        (path / "devices.deny").write_text("a")
        for rule in allowed:
            (path / "devices.allow").write_text(rule)
        yield path
    finally:
        for task in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(task), 9)
        with contextlib.suppress(OSError):
            path.rmdir()


def join_cgroup(path: Path) -> None:
    """Move the calling process into `path` (for subprocess's preexec_fn)."""
    (path / "cgroup.procs").write_text("0")


def in_container_like(command: Sequence[str]) -> list[str]:
    """`command` run with no capability at all (bounding, inheritable, ambient sets empty, no new privs)."""
    return [*NO_CAPABILITIES, *command]
