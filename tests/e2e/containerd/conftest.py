"""Fixtures for a real containerd (>= 1.7.2, CRI + CDI) started privately for the test session.

Every test runs once per containerd release (1.7 from Debian trixie, 2.x from sid; narrow it with
``CDI_FUSE_CONTAINERD_SUITES=1.7`` or ``=2.x``): ``containerd_install`` is parametrized over them.

``containerd_runtime`` is a factory: ``rt = containerd_runtime(cdi_enabled=True)`` returns a
:class:`~tests.e2e.containerd.harness.ContainerdRuntime` with ``.endpoint`` (``unix://...``), ``.spec_dir``
(the daemon's only CDI spec dir), ``.version``, ``.image`` and ``.run_fuse_container(...)``. One daemon per
CDI setting is started on first use and kept for the session; pods a test creates are removed after it.

The tests skip, printing why, when not root or when containerd cannot be fetched; set
``CDI_FUSE_REQUIRE_CONTAINERD=1`` (CI) to turn those skips into failures.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.e2e.containerd import cri_client, daemon, fetch, harness, image

REQUIRE_ENV = "CDI_FUSE_REQUIRE_CONTAINERD"
REQUIRED_HOST_TOOLS = ("runc", "bindfs")


def _unavailable(reason: str) -> NoReturn:
    message = f"containerd e2e unavailable: {reason}"
    print(message)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} (and {REQUIRE_ENV}=1)")
    pytest.skip(message)


@pytest.fixture(scope="session", params=fetch.selected_releases())
def containerd_install(request: pytest.FixtureRequest) -> fetch.ContainerdInstall:
    release: str = request.param
    if os.geteuid() != 0:
        _unavailable("needs root (containerd, mounts, device cgroups)")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [tool for tool in REQUIRED_HOST_TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        _unavailable(f"missing host tools {missing} (make system-deps installs them)")
    if not Path("/dev/fuse").exists():
        _unavailable("this host has no /dev/fuse")
    try:
        install = fetch.ensure_containerd(fetch.SUITES[release])
    except fetch.ContainerdUnavailableError as exc:
        _unavailable(f"containerd {release} (Debian {fetch.SUITES[release]}): {exc}")
    if not release.startswith(f"{install.version_tuple[0]}."):
        _unavailable(f"asked for containerd {release}, found {install.version} in {install.bin_dir}")
    print(f"\ncontainerd {install.version} from {install.bin_dir}")
    return install


@pytest.fixture(scope="session")
def containerd_image_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("containerd-image")
    root = image.build_image_rootfs(work / "rootfs")
    return image.build_oci_archive(root, work / "image.tar")


class _Daemons:
    """Starts one daemon per CDI setting on first use; stops them all at session end."""

    def __init__(self, install: fetch.ContainerdInstall, archive: Path) -> None:
        self._install = install
        self._archive = archive
        self._running: dict[bool, daemon.ContainerdDaemon] = {}

    def get(self, cdi_enabled: bool) -> daemon.ContainerdDaemon:
        if cdi_enabled not in self._running:
            self._running[cdi_enabled] = daemon.start_daemon(
                self._install,
                cdi_enabled=cdi_enabled,
                sandbox_image=image.IMAGE_NAME,
                image_archive=self._archive,
            )
        return self._running[cdi_enabled]

    def stop_all(self) -> None:
        while self._running:
            _, running = self._running.popitem()
            running.stop()


@pytest.fixture(scope="session")
def containerd_daemons(
    containerd_install: fetch.ContainerdInstall, containerd_image_archive: Path
) -> Iterator[_Daemons]:
    for swept in daemon.sweep_stale_daemons():
        print(f"removed leftovers of an interrupted containerd session in {swept}")
    daemons = _Daemons(containerd_install, containerd_image_archive)
    try:
        yield daemons
    finally:
        daemons.stop_all()


@pytest.fixture
def containerd_runtime(
    containerd_daemons: _Daemons,
) -> Iterator[Callable[[bool], harness.ContainerdRuntime]]:
    """Factory: ``containerd_runtime(cdi_enabled)`` -> a runtime whose pods are removed after the test."""
    handed_out: list[harness.ContainerdRuntime] = []

    def make(cdi_enabled: bool) -> harness.ContainerdRuntime:
        running = containerd_daemons.get(cdi_enabled)
        runtime = harness.ContainerdRuntime(running, cri_client.CriClient(running.endpoint))
        handed_out.append(runtime)
        state = "on" if cdi_enabled else "off"
        print(f"\n[containerd {runtime.version}, CDI {state}, {runtime.endpoint}]")
        return runtime

    try:
        yield make
    finally:
        for runtime in handed_out:
            runtime.cleanup()
