"""Fault-test fixtures: the real `cdi-fuse` console script as a subprocess, a fake kubelet, a FUSE char device."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdi_fuse.deviceplugin import endpoint
from tests.conftest import CharDeviceFactory
from tests.fakes import kubelet as fake

CDI_FUSE = Path(sys.executable).parent / "cdi-fuse"
RESOURCE = "cdi-fuse.io/fuse"
SOCKET_NAME = endpoint.socket_name(RESOURCE)


@dataclass
class Plugin:
    """A running `cdi-fuse plugin` process; its stderr goes to a file so a full pipe never blocks it."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


PluginFactory = Callable[..., Plugin]


def cdi_fuse(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the installed `cdi-fuse` console script."""
    return subprocess.run([str(CDI_FUSE), *args], capture_output=True, text=True, timeout=timeout, check=False)


def task_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"plugin pid {process.pid} ignored {sig.name} for {timeout}s") from None
    return process.returncode


@pytest.fixture
def fuse_device(make_char_device: CharDeviceFactory) -> Path:
    """A 10:229 char device in a temp dir (root; skips with the reason otherwise)."""
    return make_char_device()


@pytest.fixture
def any_fuse_device(tmp_path: Path) -> Path:
    """A FUSE char device for `generate`: a mknod'ed one as root, else the node's /dev/fuse, else skip."""
    if os.geteuid() == 0:
        path = tmp_path / "fuse"
        with contextlib.suppress(PermissionError):
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(10, 229))
            return path
    with contextlib.suppress(OSError):
        if stat.S_ISCHR(os.stat("/dev/fuse").st_mode):
            return Path("/dev/fuse")
    pytest.skip("no FUSE char device: not root (cannot mknod 10:229) and /dev/fuse is missing")


@pytest.fixture
def kubelet() -> Iterator[fake.FakeKubelet]:
    with fake.fake_kubelet() as running:
        yield running


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    return tmp_path / "cdi"


@pytest.fixture
def start_plugin(
    kubelet: fake.FakeKubelet, spec_dir: Path, fuse_device: Path, tmp_path: Path
) -> Iterator[PluginFactory]:
    """Factory: start the real `cdi-fuse plugin` against the fake kubelet; all are stopped afterwards."""
    started: list[Plugin] = []

    def start(*extra: str, device: Path = fuse_device) -> Plugin:
        args: Sequence[str] = (
            str(CDI_FUSE),
            "plugin",
            "--device-plugin-dir",
            str(kubelet.plugin_dir),
            "--strategy",
            "cdi,cdi-annotations",
            "--spec-dir",
            str(spec_dir),
            "--device-path",
            str(device),
            "--log-level",
            "INFO",
            *extra,
        )
        log = tmp_path / f"plugin-{len(started)}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
        started.append(Plugin(process, log))
        return started[-1]

    yield start
    for plugin in started:
        if plugin.process.poll() is None:
            plugin.process.kill()
        plugin.process.wait(timeout=10)
