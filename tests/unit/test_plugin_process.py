"""The real `cdi-fuse plugin` console script as a subprocess against the fake kubelet: registration,
signals, a second instance, SIGKILL and restart, start-up errors, /healthz and /metrics, and its log."""

from __future__ import annotations

import datetime
import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdi_fuse.deviceplugin import endpoint
from cdi_fuse.node import fuse
from tests.fakes.fake_cri import short_tmp_dir
from tests.fakes.kubelet import FakeKubelet, fake_kubelet

CDI_FUSE = Path(sys.executable).parent / "cdi-fuse"
RESOURCE = "cdi-fuse.io/fuse"
SOCKET = endpoint.socket_name(RESOURCE)


def _not_runnable() -> str | None:
    if not CDI_FUSE.exists():
        return f"console script {CDI_FUSE} not installed: run `make venv`"
    if not Path("/dev/fuse").is_char_device():
        return "no /dev/fuse on this host: load the fuse module (`modprobe fuse`)"
    if not fuse.fuse_in_kernel():
        return "the kernel does not list 'fuse' in /proc/filesystems (`modprobe fuse`)"
    return None


pytestmark = pytest.mark.skipif(_not_runnable() is not None, reason=_not_runnable() or "")


class PluginProcess:
    """`cdi-fuse plugin ...` with its stderr collected line by line."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            [str(CDI_FUSE), "plugin", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        with self._cond:
            found = self._cond.wait_for(lambda: any(text in line for line in self.lines), timeout)
            assert found, f"no log line with {text!r} in {timeout}s; output: {self.lines}"
            return next(line for line in self.lines if text in line)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.popen.send_signal(signum)
        code = self.popen.wait(timeout)
        self._reader.join(5)
        return code

    def output(self) -> str:
        self._reader.join(5)
        with self._cond:
            return "\n".join(self.lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


StartPlugin = Callable[..., PluginProcess]


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    with fake_kubelet() as started:
        yield started


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    """A device-plugins dir with no kubelet in it (yet)."""
    directory = short_tmp_dir("kubelet-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_plugin(tmp_path: Path) -> Iterator[StartPlugin]:
    """Factory: start `cdi-fuse plugin` for a plugin dir; every process is killed at the end."""
    started: list[PluginProcess] = []

    def start(directory: Path, *extra: str, strategy: str | None = "cdi") -> PluginProcess:
        args = [
            "--device-plugin-dir",
            str(directory),
            "--spec-dir",
            str(tmp_path / "cdi"),
            "--device-path",
            "/dev/fuse",
        ]
        if strategy is not None:
            args += ["--strategy", strategy]
        process = PluginProcess([*args, *extra])
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def run_plugin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CDI_FUSE), "plugin", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    "signum", [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]
)
def test_registers_and_stops_cleanly_on_signal(kubelet: FakeKubelet, start_plugin: StartPlugin, signum: int) -> None:
    plugin = start_plugin(kubelet.plugin_dir)
    conn = kubelet.wait_for_plugin(RESOURCE, timeout=15)
    assert conn.request.endpoint == SOCKET and conn.request.version == "v1beta1"
    assert {d.health for d in conn.wait_for_list(lambda r: True).devices} == {"Healthy"}
    assert len(conn.lists[-1].devices) == 110
    assert plugin.stop(signum) == 0
    assert not (kubelet.plugin_dir / SOCKET).exists()
    assert "stopped: sockets removed" in plugin.output()


def test_second_instance_refuses_to_start(kubelet: FakeKubelet, start_plugin: StartPlugin, tmp_path: Path) -> None:
    start_plugin(kubelet.plugin_dir)
    kubelet.wait_for_plugin(RESOURCE, timeout=15)
    second = run_plugin(
        "--device-plugin-dir", str(kubelet.plugin_dir), "--spec-dir", str(tmp_path / "cdi"), "--strategy", "cdi"
    )
    assert second.returncode == 1, second.stderr
    assert "another process is serving" in second.stderr
    assert str(kubelet.plugin_dir / SOCKET) in second.stderr
    # the first one is untouched: still serving and allocatable
    assert (kubelet.plugin_dir / SOCKET).is_socket()
    assert kubelet.allocate(RESOURCE, [["fuse-0"]]).container_responses[0].cdi_devices
    assert len(kubelet.requests) == 1


def test_sigkill_then_restart_replaces_the_stale_socket(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    first = start_plugin(kubelet.plugin_dir)
    conn = kubelet.wait_for_plugin(RESOURCE, timeout=15)
    first.kill()
    assert (kubelet.plugin_dir / SOCKET).is_socket()  # left behind, nobody listening
    second = start_plugin(kubelet.plugin_dir)
    kubelet.wait_for_plugin(RESOURCE, timeout=15, newer_than=conn).wait_for_list(lambda r: True)
    assert "removing stale socket" in second.wait_for_line("removing stale socket")
    assert len(kubelet.requests) == 2


def test_missing_device_exits_1_with_the_modprobe_hint(plugin_dir: Path, tmp_path: Path) -> None:
    result = run_plugin(
        "--device-plugin-dir",
        str(plugin_dir),
        "--spec-dir",
        str(tmp_path / "cdi"),
        "--device-path",
        str(tmp_path / "no-fuse"),
        "--strategy",
        "cdi",
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "modprobe fuse" in result.stderr
    assert os.listdir(plugin_dir) == []


def test_a_device_that_is_not_fuse_exits_1_naming_it(plugin_dir: Path, tmp_path: Path) -> None:
    """The plugin refuses /dev/null (char 1:3) as generate does: nothing served, nothing written."""
    args = ["--device-plugin-dir", str(plugin_dir), "--spec-dir", str(tmp_path / "cdi"), "--strategy", "cdi"]
    for extra in ([], ["--no-generate"]):
        result = run_plugin(*args, "--device-path", "/dev/null", *extra)
        assert result.returncode == 1, result.stderr
        assert "'/dev/null' is character device 1:3 (the kernel's 'null'), not the FUSE misc device" in result.stderr
        assert "--allow-other-device" in result.stderr
    assert os.listdir(plugin_dir) == []
    assert not (tmp_path / "cdi").exists()


def test_another_device_is_served_when_allowed(kubelet: FakeKubelet, start_plugin: StartPlugin, tmp_path: Path) -> None:
    plugin = start_plugin(kubelet.plugin_dir, "--device-path", "/dev/null", "--allow-other-device")
    kubelet.wait_for_plugin(RESOURCE, timeout=15)
    spec = (tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml").read_text()
    assert "major: 1" in spec and "minor: 3" in spec
    assert plugin.stop(signal.SIGTERM) == 0


def test_bad_strategy_exits_2(plugin_dir: Path, tmp_path: Path) -> None:
    result = run_plugin("--device-plugin-dir", str(plugin_dir), "--spec-dir", str(tmp_path), "--strategy", "magic")
    assert result.returncode == 2
    assert "invalid strategy 'magic'" in result.stderr
    assert os.listdir(plugin_dir) == []


def http_get(port: int, path: str) -> tuple[int, str] | None:
    """(status, body), or None while nothing listens yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except ConnectionRefusedError:
        return None
    finally:
        connection.close()


def wait_for_status(port: int, path: str, status: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while (answer := http_get(port, path)) is None or answer[0] != status:
        assert time.monotonic() < deadline, f"{path} answered {answer}, expected {status}"
        time.sleep(0.05)
    return answer[1]


def test_healthz_and_metrics(plugin_dir: Path, start_plugin: StartPlugin, tmp_path: Path) -> None:
    # auto with a runtime endpoint where nothing listens: the CDI name and the device
    plugin = start_plugin(
        plugin_dir,
        "--metrics-address",
        "127.0.0.1:0",  # the kernel picks a free port; the log says which
        "--runtime-endpoint",
        f"unix://{tmp_path}/no-runtime.sock",
        strategy=None,
    )
    line = plugin.wait_for_line("serving /metrics")
    port = int(line.rsplit(":", 1)[1])
    plugin.wait_for_line("started:")
    # no kubelet yet: not registered, so not ready
    assert "cdi-fuse.io/fuse=serving kubelet=down" in wait_for_status(port, "/healthz", 503)
    kubelet = FakeKubelet(plugin_dir)
    kubelet.start()
    try:
        wait_for_status(port, "/healthz", 200)
        response = kubelet.allocate(RESOURCE, [["fuse-3"]])
        (container,) = response.container_responses
        assert container.cdi_devices and container.devices and not container.annotations
        body = wait_for_status(port, "/metrics", 200)
        for line in [
            f'cdi_fuse_registrations_total{{resource="{RESOURCE}"}} 1.0',
            f'cdi_fuse_allocations_total{{resource="{RESOURCE}",strategy="cdi+device-spec"}} 1.0',
            "cdi_fuse_device_healthy 1.0",
            'cdi_fuse_strategy{strategy="cdi"} 1.0',
            'cdi_fuse_strategy{strategy="cdi-annotations"} 0.0',
            'cdi_fuse_strategy{strategy="device-spec"} 1.0',
        ]:
            assert line in body.splitlines(), f"{line!r} not in /metrics:\n{body}"
        kubelet.kill()  # kubelet.sock left behind, nobody answers it: not ready
        assert "kubelet=down" in wait_for_status(port, "/healthz", 503)
        assert plugin.stop() == 0
    finally:
        kubelet.stop()
    assert "runtime not asked" in plugin.output()


def test_log_has_one_line_per_lifecycle_event_and_none_per_allocate(
    kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    plugin = start_plugin(kubelet.plugin_dir)
    kubelet.wait_for_plugin(RESOURCE, timeout=15)
    plugin.wait_for_line("registered ")
    for index in range(50):
        kubelet.allocate(RESOURCE, [[f"fuse-{index}"]])
    assert plugin.stop() == 0
    lines = plugin.output().splitlines()
    events = [line.split(": ", 1)[1] for line in lines]
    assert [event.split(" ", 2)[:2] for event in events] == [
        ["wrote", "CDI"],
        ["strategy", "decision:"],
        ["started:", "serving"],
        ["registered", "cdi-fuse.io/fuse"],
        ["stopped:", "sockets"],
    ], lines
    assert all(" INFO " in line for line in lines)
    assert not any("llocat" in line for line in lines)


_SIGNAL_TO_A_WORKER_THREAD = """
import os, signal, sys, threading, time
sock = sys.argv[1]
def kill_from_another_thread():
    while not os.path.exists(sock):
        time.sleep(0.01)
    time.sleep(0.2)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # delivered to this thread, not the main one
threading.Thread(target=kill_from_another_thread, daemon=True).start()
from cdi_fuse.__main__ import main
sys.argv = ["cdi-fuse", *sys.argv[2:]]
main()
"""


def test_sigterm_delivered_to_another_thread_stops_at_once(kubelet: FakeKubelet, tmp_path: Path) -> None:
    """Regression: the kernel may deliver SIGTERM to any thread (gRPC runs several). Python runs the handler in
    the main thread, which sat in poll() until the 10 s safety timer: a stop took 10 s, or never happened
    within the kubelet's grace period. The signal now writes to the loop's wake-up pipe."""
    socket_path = kubelet.plugin_dir / SOCKET
    command = [
        sys.executable,
        "-c",
        _SIGNAL_TO_A_WORKER_THREAD,
        str(socket_path),
        "plugin",
        "--device-plugin-dir",
        str(kubelet.plugin_dir),
        "--spec-dir",
        str(tmp_path / "cdi"),
        "--device-path",
        "/dev/null",
        "--allow-other-device",
        "--strategy",
        "cdi",
    ]
    process = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert process.returncode == 0, process.stderr
    stopped = [line for line in process.stderr.splitlines() if "stopped" in line]
    started = [line for line in process.stderr.splitlines() if "started:" in line]
    assert started and stopped, process.stderr
    # well inside the 10 s safety interval the old code waited for (the log's own clock, not this test's)
    fmt = "%Y-%m-%d %H:%M:%S,%f"
    elapsed = datetime.datetime.strptime(stopped[0][:23], fmt) - datetime.datetime.strptime(started[0][:23], fmt)
    assert elapsed.total_seconds() < 5, process.stderr
