"""The whole node path: real ``cdi-fuse plugin`` -> (emulated) kubelet -> real containerd -> FUSE in a pod.

Each row starts the plugin process against a fake kubelet and a containerd with CDI on or off, lets the
emulated kubelet admit a pod requesting ``cdi-fuse.io/fuse: 1`` (Allocate, then CreateContainer carrying the
response exactly as the kubelet maps it), and asserts both what Allocate returned and what the container got:
/dev/fuse with the host's major:minor, a devices-cgroup rule for it, and a bindfs round trip with unmount.

| containerd CDI | --strategy                 | Allocate returns               | container          |
|----------------|----------------------------|--------------------------------|--------------------|
| on             | auto                       | CDI name (devices field)       | FUSE works         |
| off            | auto                       | DeviceSpec                     | FUSE works         |
| on             | cdi / cdi-annotations      | that one                       | FUSE works         |
| on, off        | device-spec                | DeviceSpec                     | FUSE works         |
| off            | cdi                        | CDI name                       | no /dev/fuse       |
| on             | auto, spec deleted         | CDI (spec restored)            | FUSE works         |
| on             | auto --no-generate, deleted| DeviceSpec (re-decided)        | FUSE works         |
| on, off        | auto, runtime unreachable  | CDI name + DeviceSpec          | FUSE works         |
| on             | auto, runtime unreachable, | DeviceSpec only                | FUSE works         |
|                | no spec (--no-generate)    |                                |                    |
| on             | (pod requests nothing)     | no Allocate                    | mount refused      |

Regression (found by this matrix): with the runtime unreachable and no spec, the plugin used to send the
CDI name too, and containerd failed CreateContainer with "unresolvable CDI devices".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cdi_fuse._proto import deviceplugin_pb2 as pb
from tests.e2e.containerd import harness
from tests.e2e.containerd import kubelet_emulator as emulator

# The probe and its assertions are shared with the direct-CRI tests so both prove FUSE the same way.
from tests.e2e.containerd import test_runtime_injection as injection

pytestmark = [pytest.mark.e2e, pytest.mark.root]

RuntimeFactory = Callable[[bool], harness.ContainerdRuntime]

FUSE = "/dev/fuse"
CDI = "cdi"
CDI_ANNOTATIONS = "cdi-annotations"
DEVICE_SPEC = "device-spec"
CHOSEN = "chosen with --strategy"
SPEC_RESTORE_TIMEOUT_S = 2.0  # the plugin promises "within a second"
REDECIDE_TIMEOUT_S = 2.0
UNREACHABLE_ENDPOINT = "unix:///tmp/cdi-fuse-e2e-no-runtime.sock"

# (cdi_devices, annotations, devices as (container_path, host_path, permissions), mounts, envs)
Shape = tuple[list[str], dict[str, str], list[tuple[str, str, str]], list[str], dict[str, str]]


def _shape(response: pb.ContainerAllocateResponse | None) -> Shape:
    assert response is not None
    return (
        [device.name for device in response.cdi_devices],
        dict(response.annotations),
        [(d.container_path, d.host_path, d.permissions) for d in response.devices],
        [m.container_path for m in response.mounts],
        dict(response.envs),
    )


def _expected(node: emulator.KubeletEmulator, device_id: str | None, strategies: set[str]) -> Shape:
    """What Allocate must return for ``strategies``: exactly those edits and nothing else."""
    assert device_id is not None
    name = node.qualified_name
    annotation_key = f"cdi.k8s.io/{node.resource.replace('/', '_')}_{device_id}"
    return (
        [name] if CDI in strategies else [],
        {annotation_key: name} if CDI_ANNOTATIONS in strategies else {},
        [(FUSE, FUSE, "rw")] if DEVICE_SPEC in strategies else [],
        [],
        {},
    )


def _assert_single_decision(node: emulator.KubeletEmulator, label: str, reason_part: str) -> None:
    decisions = node.plugin.decisions()
    print(f"strategy decisions logged: {decisions}")
    assert len(decisions) == 1, decisions
    assert decisions[0].label == label, decisions
    assert reason_part in decisions[0].reason, decisions


def _assert_fuse_works(admission: emulator.Admission) -> None:
    injection._assert_fuse_works(injection._probe(admission.container))


def _assert_no_fuse(admission: emulator.Admission) -> None:
    probe = injection._probe(admission.container)
    assert probe.node == "", probe.node
    assert not probe.cgroup_allows_rw(*injection._host_fuse_numbers()), probe.cgroup_rules
    injection._assert_fuse_refused(probe)


def test_auto_with_cdi_on_returns_cdi_names_only(containerd_runtime: RuntimeFactory) -> None:
    runtime = containerd_runtime(True)
    with emulator.plugin_on_node(runtime, strategy="auto") as node:
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {CDI})
        _assert_fuse_works(admission)
        _assert_single_decision(node, "cdi", f"containerd {runtime.version} has CDI enabled")
        assert node.qualified_name in node.plugin.decisions()[0].reason


def test_auto_with_cdi_off_returns_device_spec_only(containerd_runtime: RuntimeFactory) -> None:
    runtime = containerd_runtime(False)
    with emulator.plugin_on_node(runtime, strategy="auto") as node:
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {DEVICE_SPEC})
        _assert_fuse_works(admission)
        _assert_single_decision(node, DEVICE_SPEC, f"containerd {runtime.version} has CDI disabled")
        assert "enableCDI=false" in node.plugin.decisions()[0].reason


@pytest.mark.parametrize(
    ("cdi_enabled", "strategy"),
    [
        pytest.param(True, CDI, id="cdi-on-cdi"),
        pytest.param(True, CDI_ANNOTATIONS, id="cdi-on-cdi-annotations"),
        pytest.param(True, DEVICE_SPEC, id="cdi-on-device-spec"),
        pytest.param(False, DEVICE_SPEC, id="cdi-off-device-spec"),
    ],
)
def test_fixed_strategy_gives_fuse(containerd_runtime: RuntimeFactory, cdi_enabled: bool, strategy: str) -> None:
    runtime = containerd_runtime(cdi_enabled)
    with emulator.plugin_on_node(runtime, strategy=strategy) as node:
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {strategy})
        _assert_fuse_works(admission)
        _assert_single_decision(node, strategy, CHOSEN)


def test_cdi_strategy_on_cdi_off_runtime_gives_no_fuse(containerd_runtime: RuntimeFactory) -> None:
    """A fixed ``--strategy cdi`` on a containerd with ``enable_cdi = false``: the pod starts without FUSE.

    containerd 1.7 does not refuse CDI_devices (nor cdi.k8s.io annotations) when CDI is disabled; it drops
    them silently, so CreateContainer succeeds and the container simply has no /dev/fuse and no cgroup rule.
    Nothing reaches the kubelet or the pod's events: this is why ``auto`` asks the runtime and answers a
    CDI-off runtime with a DeviceSpec.
    """
    runtime = containerd_runtime(False)
    with emulator.plugin_on_node(runtime, strategy=CDI) as node:
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {CDI})
        _assert_no_fuse(admission)
        _assert_single_decision(node, CDI, CHOSEN)


def test_auto_restores_deleted_spec_and_keeps_cdi(containerd_runtime: RuntimeFactory) -> None:
    """With --generate the plugin rewrites its spec when deleted (inotify), so CDI names stay valid."""
    runtime = containerd_runtime(True)
    with emulator.plugin_on_node(runtime, strategy="auto") as node:
        original = node.spec_path.read_bytes()
        node.spec_path.unlink()
        deleted_at = time.monotonic()
        node.plugin.wait_for_log(r"wrote CDI spec", count=2, timeout=SPEC_RESTORE_TIMEOUT_S)
        restored_after = time.monotonic() - deleted_at
        print(f"observed: spec restored {restored_after * 1000:.0f} ms after deletion")
        assert node.spec_path.read_bytes() == original
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {CDI})
        _assert_fuse_works(admission)
        # Restored before the re-decision looked: no fallback to device-spec, not even briefly.
        _assert_single_decision(node, "cdi", "has CDI enabled")


def test_auto_without_generate_falls_back_when_spec_deleted(containerd_runtime: RuntimeFactory) -> None:
    """With --no-generate a deleted spec is not restored: the plugin re-decides on the inotify event and
    hands out the raw DeviceSpec, since the CDI name would now make CreateContainer fail."""
    runtime = containerd_runtime(True)
    vendor = emulator.unique_vendor()
    harness.generate_fuse_spec(runtime.spec_dir, vendor)
    with emulator.plugin_on_node(runtime, strategy="auto", generate=False, vendor=vendor) as node:
        device_id, before = node.allocate()
        assert _shape(before) == _expected(node, device_id, {CDI})
        node.spec_path.unlink()
        deleted_at = time.monotonic()
        node.plugin.wait_for_log(r"strategy decision: ", count=2, timeout=REDECIDE_TIMEOUT_S)
        print(f"observed: re-decided {(time.monotonic() - deleted_at) * 1000:.0f} ms after deletion")
        first, second = node.plugin.decisions()
        assert first.label == "cdi" and "has CDI enabled" in first.reason, first
        assert second.label == DEVICE_SPEC, second
        assert f"containerd {runtime.version} has CDI enabled but {node.qualified_name} is not in" in second.reason, (
            second
        )
        assert not node.spec_path.exists(), "--no-generate must not write the spec"
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {DEVICE_SPEC})
        _assert_fuse_works(admission)
        # An admin writing the spec again brings CDI back, on the event alone.
        harness.generate_fuse_spec(runtime.spec_dir, vendor)
        node.plugin.wait_for_log(r"strategy decision: ", count=3, timeout=REDECIDE_TIMEOUT_S)
        assert node.plugin.decisions()[2].label == "cdi", node.plugin.decisions()
        device_id, after = node.allocate()
        assert _shape(after) == _expected(node, device_id, {CDI})


@pytest.mark.parametrize("cdi_enabled", [pytest.param(True, id="cdi-on"), pytest.param(False, id="cdi-off")])
def test_auto_with_runtime_unreachable_sends_everything(containerd_runtime: RuntimeFactory, cdi_enabled: bool) -> None:
    """When CRI cannot be asked the plugin sends CDI names and the raw device; with the spec written
    (--generate) both a CDI-on containerd (CDI edits + device) and a CDI-off one (device) give FUSE."""
    runtime = containerd_runtime(cdi_enabled)
    with emulator.plugin_on_node(runtime, strategy="auto", runtime_endpoint=UNREACHABLE_ENDPOINT) as node:
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {CDI, DEVICE_SPEC})
        _assert_fuse_works(admission)
        _assert_single_decision(node, "cdi+device-spec", "runtime not asked")


def test_auto_with_runtime_unreachable_and_no_spec_sends_device_only(containerd_runtime: RuntimeFactory) -> None:
    """Runtime unreachable, --no-generate, no spec anywhere: CDI names can only break a CDI-on runtime.

    Before the fix (containerd 1.7.24): Allocate returned CDI name + annotation + DeviceSpec and
    CreateContainer failed with "CDI device injection failed: unresolvable CDI devices".
    """
    runtime = containerd_runtime(True)
    with emulator.plugin_on_node(
        runtime, strategy="auto", generate=False, runtime_endpoint=UNREACHABLE_ENDPOINT
    ) as node:
        assert not node.spec_path.exists()
        admission = node.run_pod()
        assert _shape(admission.response) == _expected(node, admission.device_id, {DEVICE_SPEC})
        _assert_fuse_works(admission)


def test_control_pod_without_request_cannot_mount(containerd_runtime: RuntimeFactory) -> None:
    """The plugin running on the node grants nothing by itself: a pod that does not request the resource
    gets no Allocate, no /dev/fuse and no cgroup rule, and the same bindfs mount fails."""
    runtime = containerd_runtime(True)
    with emulator.plugin_on_node(runtime, strategy="auto") as node:
        admission = node.run_pod(request_device=False)
        assert admission.response is None
        assert node.allocated == set()
        _assert_no_fuse(admission)
