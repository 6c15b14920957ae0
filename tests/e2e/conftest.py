"""Shared fixtures for the podman e2e tests: prerequisites (skip with a printed reason), a rootfs,
a vendor name unique to the run, and CDI specs in /var/run/cdi that are removed whatever happens."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import podman
from tests.e2e.rootfs import build_rootfs

RUNTIME_SPEC_DIR = Path("/var/run/cdi")
HOST_FUSE = Path("/dev/fuse")
PODMAN_TOOLS = ("podman", "runc", "bindfs", "fusermount3")


def podman_missing_reason() -> str | None:
    """Why the podman e2e tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return f"needs root to start containers: running as uid {os.geteuid()}"
    for tool in PODMAN_TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not installed: run `make system-deps` as root"
    if not HOST_FUSE.exists():
        return "no /dev/fuse on this host: load the fuse module (`modprobe fuse`)"
    return None


@pytest.fixture(scope="session")
def podman_version() -> str:
    reason = podman_missing_reason()
    if reason is not None:
        print(f"podman e2e unavailable: {reason}")
        if os.environ.get("CDI_FUSE_REQUIRE_E2E") == "1":
            pytest.fail(f"podman e2e unavailable: {reason} (and CDI_FUSE_REQUIRE_E2E=1)")
        pytest.skip(reason)
    return podman.runtime_version()


@pytest.fixture
def podman_runtime(podman_version: str) -> str:
    """Skips unless podman can run here; prints the runtime versions each test ran against."""
    print(f"\nruntime: {podman_version}")
    return podman_version


@pytest.fixture
def container_dir() -> Iterator[Path]:
    """A 0755 temp dir for what containers read from the host (rootfs, device nodes). pytest's own
    tmp dirs are 0700, which the root of a user-namespaced container (an unprivileged host uid) cannot
    traverse: runc then fails with "error preparing rootfs: ... permission denied"."""
    path = Path(tempfile.mkdtemp(prefix="cdi-fuse-e2e-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rootfs(container_dir: Path) -> Path:
    return build_rootfs(container_dir / "rootfs")


@pytest.fixture
def cdi_vendor() -> str:
    return f"e2e-{secrets.token_hex(4)}.cdi-fuse.io"


@pytest.fixture
def runtime_specs(podman_runtime: str, cdi_vendor: str) -> Iterator[podman.SpecFiles]:
    """CDI specs in /var/run/cdi (read by podman) under a vendor unique to this test."""
    RUNTIME_SPEC_DIR.mkdir(parents=True, exist_ok=True)
    specs = podman.SpecFiles(RUNTIME_SPEC_DIR, cdi_vendor)
    try:
        yield specs
    finally:
        specs.remove_all()
