"""Fetch the containerd releases the e2e tests run against, without changing the system.

Debian bookworm ships containerd 1.6, which has no CDI. Debian trixie's ``containerd`` .deb (1.7) and
sid's (2.1) are fetched and unpacked into the test cache by :mod:`tests.debcache` (private apt state,
locked, reused by later runs). Only the containerd package is taken: the host's runc runs the containers
(sid's runc needs a newer glibc than bookworm's; containerd itself runs on bookworm).

Which releases run: ``CDI_FUSE_CONTAINERD_SUITES`` (comma list of keys of :data:`SUITES`, default all).

Run ``python -m tests.e2e.containerd.fetch`` to fill the cache by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests import debcache

DEBIAN_SUITE = "trixie"
# release label -> Debian suite whose containerd package it is
SUITES: dict[str, str] = {"1.7": "trixie", "2.x": "sid"}
SUITES_ENV = "CDI_FUSE_CONTAINERD_SUITES"
PACKAGE = "containerd"
MIN_VERSION = (1, 7, 2)
# Point this at a directory holding containerd, ctr and containerd-shim-runc-v2 to skip the download.
BIN_DIR_ENV = "CDI_FUSE_CONTAINERD_BIN_DIR"
_VERSION_RE = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)")


class ContainerdUnavailableError(Exception):
    """containerd could not be fetched or does not work here; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class ContainerdInstall:
    bin_dir: Path
    version: str  # as `containerd --version` prints it, e.g. "1.7.24~ds1"
    version_tuple: tuple[int, int, int]

    @property
    def containerd(self) -> Path:
        return self.bin_dir / "containerd"

    @property
    def ctr(self) -> Path:
        return self.bin_dir / "ctr"


def parse_version(text: str) -> tuple[str, tuple[int, int, int]]:
    """Pick the version out of ``containerd --version`` output (``containerd <module> <version> <rev>``)."""
    fields = text.split()
    candidates = fields[2:3] + fields
    for field in candidates:
        match = _VERSION_RE.match(field)
        if match:
            major, minor, patch = (int(group) for group in match.groups())
            return field.removeprefix("v"), (major, minor, patch)
    raise ContainerdUnavailableError(f"cannot read a version from containerd --version output {text!r}")


def probe_version(containerd: Path) -> tuple[str, tuple[int, int, int]]:
    try:
        out = subprocess.run(
            [str(containerd), "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ContainerdUnavailableError(f"{containerd} --version failed: {exc}") from exc
    return parse_version(out)


def selected_releases() -> list[str]:
    """The release labels the e2e tests run against ($CDI_FUSE_CONTAINERD_SUITES, default every one)."""
    wanted = [label.strip() for label in os.environ.get(SUITES_ENV, ",".join(SUITES)).split(",") if label.strip()]
    unknown = [label for label in wanted if label not in SUITES]
    if unknown:
        raise ValueError(f"{SUITES_ENV}: unknown containerd release(s) {unknown}; known: {sorted(SUITES)}")
    return wanted


def ensure_containerd(suite: str = DEBIAN_SUITE) -> ContainerdInstall:
    """A working containerd >= 1.7.2: from $CDI_FUSE_CONTAINERD_BIN_DIR, else Debian `suite`'s package."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        bin_dir = Path(override)
    else:
        try:
            bin_dir = debcache.ensure_debs(PACKAGE, [PACKAGE], suite=suite) / "usr" / "bin"
        except debcache.DebUnavailableError as exc:
            raise ContainerdUnavailableError(str(exc)) from exc
    version, version_tuple = probe_version(bin_dir / "containerd")
    install = ContainerdInstall(bin_dir, version, version_tuple)
    if install.version_tuple < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise ContainerdUnavailableError(f"containerd {install.version} is older than {wanted} (no CDI)")
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if not os.access(install.bin_dir / tool, os.X_OK):
            raise ContainerdUnavailableError(f"{install.bin_dir / tool} is missing or not executable")
    return install


if __name__ == "__main__":
    for release in selected_releases():
        found = ensure_containerd(SUITES[release])
        print(f"containerd {found.version} ({release}, Debian {SUITES[release]}) in {found.bin_dir}")
