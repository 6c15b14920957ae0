"""The kubelet's half of the device-plugin path, driving the REAL ``cdi-fuse plugin`` and a real CRI runtime.

``plugin_on_node(runtime, strategy=...)`` starts the ``cdi-fuse plugin`` console script as a subprocess in a
short temp device-plugin dir served by the fake kubelet (``tests.fakes.kubelet``), pointed at the containerd
fixture: ``--spec-dir`` is the daemon's only CDI spec dir (so ``--generate`` writes where containerd reads),
``--runtime-endpoint`` its CRI socket, and ``--vendor`` unique to the test. It waits for Register, the dial
back and the first ListAndWatch list, and yields a :class:`KubeletEmulator`.

``KubeletEmulator.run_pod()`` then does what the kubelet does for a pod with ``resources.limits:
{<resource>: 1}``: picks a healthy, not yet allocated device ID from the newest ListAndWatch list, calls
Allocate with it, and turns the ContainerAllocateResponse into the CRI CreateContainer request field by field
(:func:`cri_request`). The container is the fixture's non-privileged FUSE container (host network, all
capabilities dropped, SYS_ADMIN added).

On leaving the block the plugin gets SIGTERM and must exit 0 having removed its socket; the plugin, the fake
kubelet, the temp dir and the spec file of the test's vendor are cleaned up whatever happens.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdi_fuse._proto import deviceplugin_pb2 as pb
from tests.e2e.containerd import cri_client, harness
from tests.fakes import kubelet as fake

RESOURCE = "cdi-fuse.io/fuse"
DEVICE_CLASS = "fuse"
DEVICE_NAME = "fuse"
HEALTHY = "Healthy"
PLUGIN_SCRIPT = Path(sys.executable).with_name("cdi-fuse")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
LOG_POLL_S = 0.02
# "strategy decision: <label> (<reason>)", logged by the plugin once per distinct decision.
DECISION_LINE = re.compile(r"strategy decision: (?P<label>\S+) \((?P<reason>.*)\)$", re.MULTILINE)


def unique_vendor() -> str:
    return f"kp-{uuid.uuid4().hex[:8]}.cdi-fuse.test"


@dataclass(frozen=True)
class Decision:
    label: str  # e.g. "cdi+cdi-annotations"
    reason: str


class PluginProcess:
    """A running ``cdi-fuse plugin``; stdout and stderr (the log) go to one file."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(self.args, stdout=log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def decisions(self) -> list[Decision]:
        return [Decision(m["label"], m["reason"]) for m in DECISION_LINE.finditer(self.log())]

    def wait_for_log(self, pattern: str, *, count: int = 1, timeout: float = 5.0) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the log once there are that many."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log()))
            if len(matches) >= count:
                return matches[:count]
            if self.process.poll() is not None:
                raise AssertionError(f"plugin exited {self.process.returncode} waiting for {pattern!r}:\n{self.log()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(matches)}/{count} log lines {pattern!r} after {timeout}s:\n{self.log()}")
            time.sleep(LOG_POLL_S)

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"plugin exited {self.process.returncode}:\n{self.log()}")

    def terminate(self) -> int:
        """SIGTERM, then wait; SIGKILL if it does not go. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode


@dataclass(frozen=True)
class Admission:
    """One pod's way through the node: the device it was given, what Allocate said, its running container."""

    device_id: str | None
    response: pb.ContainerAllocateResponse | None
    container: harness.FuseContainer


def cri_request(response: pb.ContainerAllocateResponse) -> dict[str, Any]:
    """``run_fuse_container`` keyword arguments carrying a ContainerAllocateResponse, as the kubelet maps it.

    DeviceSpec -> ContainerConfig.devices, CDIDevice -> ContainerConfig.CDI_devices (field 17), annotations
    -> container annotations, Mount -> mounts, envs -> envs.
    """
    return {
        "devices": [
            cri_client.DeviceMapping(host_path=d.host_path, container_path=d.container_path, permissions=d.permissions)
            for d in response.devices
        ],
        "cdi_devices": [device.name for device in response.cdi_devices],
        "annotations": dict(response.annotations),
        "mounts": [
            cri_client.MountSpec(host_path=m.host_path, container_path=m.container_path, readonly=m.read_only)
            for m in response.mounts
        ],
        "envs": dict(response.envs),
    }


@dataclass
class KubeletEmulator:
    runtime: harness.NodeRuntime
    kubelet: fake.FakeKubelet
    plugin: PluginProcess
    resource: str
    qualified_name: str
    spec_path: Path  # where --generate writes the spec: the runtime's spec dir
    allocated: set[str] = field(default_factory=set)

    def connection(self) -> fake.PluginConnection:
        return self.kubelet.wait_for_plugin(self.resource)

    def healthy_device_ids(self) -> list[str]:
        newest = self.connection().wait_for_list(lambda response: bool(response.devices))
        return [device.ID for device in newest.devices if device.health == HEALTHY]

    def allocate(self) -> tuple[str, pb.ContainerAllocateResponse]:
        """Allocate one healthy device the kubelet has not handed out yet, one container per call."""
        self.plugin.assert_running()
        free = [device_id for device_id in self.healthy_device_ids() if device_id not in self.allocated]
        assert free, f"no healthy unallocated {self.resource} device"
        device_id = free[0]
        conn = self.connection()
        if conn.options is not None and conn.options.get_preferred_allocation_available:
            preferred = conn.stub.GetPreferredAllocation(
                pb.PreferredAllocationRequest(
                    container_requests=[
                        pb.ContainerPreferredAllocationRequest(available_deviceIDs=free, allocation_size=1)
                    ]
                ),
                timeout=5,
            )
            device_id = preferred.container_responses[0].deviceIDs[0]
        response = self.kubelet.allocate(self.resource, [[device_id]])
        assert len(response.container_responses) == 1, response
        self.allocated.add(device_id)
        if conn.options is not None and conn.options.pre_start_required:
            conn.stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=[device_id]), timeout=5)
        allocation = response.container_responses[0]
        print(f"Allocate([{device_id}]) -> {_one_line(allocation)}")
        return device_id, allocation

    def run_pod(self, *, request_device: bool = True) -> Admission:
        """Run a pod whose container has ``resources.limits: {<resource>: 1}`` (or no request at all)."""
        if not request_device:
            return Admission(None, None, self.runtime.run_fuse_container())
        device_id, allocation = self.allocate()
        return Admission(device_id, allocation, self.runtime.run_fuse_container(**cri_request(allocation)))


def _one_line(message: Any) -> str:
    return " ".join(str(message).split()) or "{}"


def plugin_args(
    runtime: harness.NodeRuntime,
    plugin_dir: Path,
    *,
    strategy: str,
    vendor: str,
    resource: str,
    generate: bool,
    runtime_endpoint: str,
) -> list[str]:
    return [
        str(PLUGIN_SCRIPT),
        "plugin",
        "--device-plugin-dir",
        str(plugin_dir),
        "--resource-name",
        resource,
        "--strategy",
        strategy,
        "--spec-dir",
        str(runtime.spec_dir),
        "--runtime-endpoint",
        runtime_endpoint,
        "--generate" if generate else "--no-generate",
        "--vendor",
        vendor,
        "--class",
        DEVICE_CLASS,
        "--device-name",
        DEVICE_NAME,
        "--log-level",
        "INFO",
    ]


@contextlib.contextmanager
def plugin_on_node(
    runtime: harness.NodeRuntime,
    *,
    strategy: str,
    generate: bool = True,
    vendor: str | None = None,
    resource: str = RESOURCE,
    runtime_endpoint: str | None = None,
) -> Iterator[KubeletEmulator]:
    """Start the real plugin against a fake kubelet and ``runtime``; yield once it is registered and listed.

    ``runtime_endpoint`` overrides the CRI endpoint the plugin asks (default: ``runtime``'s own).

    On a normal exit the plugin must stop on SIGTERM with exit code 0 and remove its socket.
    """
    vendor = vendor or unique_vendor()
    qualified_name = f"{vendor}/{DEVICE_CLASS}={DEVICE_NAME}"
    spec_path = runtime.spec_dir / f"{vendor}-{DEVICE_CLASS}.yaml"
    workdir = Path(tempfile.mkdtemp(prefix="kdp-", dir="/tmp"))  # AF_UNIX paths: ~107 bytes
    plugin_dir = workdir / "dp"
    plugin_dir.mkdir()
    plugin: PluginProcess | None = None
    print(f"plugin --strategy {strategy} {'--generate' if generate else '--no-generate'} {qualified_name}")
    print(f"  against {runtime.description} (CDI {'on' if runtime.cdi_enabled else 'off'})")
    try:
        with fake.fake_kubelet(plugin_dir) as kubelet:
            args = plugin_args(
                runtime,
                plugin_dir,
                strategy=strategy,
                vendor=vendor,
                resource=resource,
                generate=generate,
                runtime_endpoint=runtime_endpoint or runtime.endpoint,
            )
            plugin = PluginProcess(args, workdir / "plugin.log")
            _wait_until_listed(kubelet, plugin, resource)
            yield KubeletEmulator(runtime, kubelet, plugin, resource, qualified_name, spec_path)
            socket_path = plugin_dir / kubelet.registrations_of(resource)[0].endpoint
            code = plugin.terminate()
            assert code == 0, f"plugin exited {code} on SIGTERM:\n{plugin.log()}"
            assert not socket_path.exists(), f"plugin left its socket {socket_path}"
    finally:
        if plugin is not None:
            plugin.terminate()
            print(f"plugin log:\n{plugin.log()}")
        with contextlib.suppress(FileNotFoundError):
            spec_path.unlink()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_listed(kubelet: fake.FakeKubelet, plugin: PluginProcess, resource: str) -> None:
    """Register, the kubelet's dial back, and a first ListAndWatch list with healthy devices."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not kubelet.registrations_of(resource):
        plugin.assert_running()
        if time.monotonic() >= deadline:
            raise AssertionError(f"plugin did not register in {START_TIMEOUT_S}s:\n{plugin.log()}")
        with contextlib.suppress(AssertionError):
            kubelet.wait_for_registrations(1, timeout=0.2)
    request = kubelet.registrations_of(resource)[0]
    assert request.version == "v1beta1", request
    conn = kubelet.wait_for_plugin(resource, timeout=max(0.1, deadline - time.monotonic()))
    conn.wait_for_list(lambda response: any(d.health == HEALTHY for d in response.devices), timeout=5.0)
    print(f"registered {resource} at {request.endpoint}; {len(conn.lists[-1].devices)} devices listed")
