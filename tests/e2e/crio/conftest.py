"""Fixtures for a real CRI-O started privately for the test session from ``$CDI_FUSE_CRIO_BIN``.

``crio_runtime`` is a :class:`~tests.e2e.crio.harness.CrioRuntime` with ``.endpoint``, ``.spec_dirs`` (CRI-O's
two private CDI spec dirs; ``.spec_dir`` is the first, ``.late_spec_dir`` the second, empty at start),
``.version`` and ``.run_fuse_container(...)``. One daemon serves the session; the pods a test creates are
removed after it, and leftovers of killed sessions are swept first.

Every test skips, printing why, without ``$CDI_FUSE_CRIO_BIN`` (no registry ships CRI-O for this machine),
when not root, or when a host tool is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.e2e.containerd import cri_client, image
from tests.e2e.crio import daemon, harness

REQUIRED_HOST_TOOLS = ("bindfs",)


def _unavailable(reason: str) -> NoReturn:
    message = f"CRI-O e2e unavailable: {reason}"
    print(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def crio_install() -> daemon.CrioInstall:
    try:
        install = daemon.find_install()
    except daemon.CrioUnavailableError as exc:
        _unavailable(str(exc))
    if os.geteuid() != 0:
        _unavailable("needs root (CRI-O, mounts, device cgroups)")
    missing = [tool for tool in REQUIRED_HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"missing host tools {missing} (make system-deps installs them)")
    if not Path("/dev/fuse").exists():
        _unavailable("this host has no /dev/fuse")
    print(f"\nCRI-O {install.version} from {install.bin_dir} (conmon {install.conmon}, runc {install.runc})")
    return install


@pytest.fixture(scope="session")
def crio_image_archive(crio_install: daemon.CrioInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("crio-image")
    return image.build_oci_archive(image.build_image_rootfs(work / "rootfs"), work / "image.tar")


@pytest.fixture(scope="session")
def start_crio(crio_install: daemon.CrioInstall, crio_image_archive: Path) -> Callable[..., daemon.CrioDaemon]:
    """``start_crio(configure=None)``: a new private CRI-O (the caller stops it); stale sessions swept first."""
    for swept in daemon.sweep_stale_daemons():
        print(f"removed leftovers of an interrupted CRI-O session in {swept}")

    def start(configure: Callable[[daemon.CrioPaths], None] | None = None) -> daemon.CrioDaemon:
        return daemon.start_daemon(
            crio_install,
            image_archive=crio_image_archive,
            pause_image=image.IMAGE_NAME,
            pause_command=image.PAUSE_COMMAND[0],
            configure=configure,
        )

    return start


@pytest.fixture(scope="session")
def crio_daemon(start_crio: Callable[..., daemon.CrioDaemon]) -> Iterator[daemon.CrioDaemon]:
    running = start_crio()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def crio_runtime(crio_daemon: daemon.CrioDaemon) -> Iterator[harness.CrioRuntime]:
    runtime = harness.CrioRuntime(crio_daemon, cri_client.CriClient(crio_daemon.endpoint))
    print(f"\n[cri-o {runtime.version}, spec dirs {', '.join(map(str, runtime.spec_dirs))}, {runtime.endpoint}]")
    try:
        yield runtime
    finally:
        runtime.cleanup()
