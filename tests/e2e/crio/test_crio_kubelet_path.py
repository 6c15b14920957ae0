"""The whole node path on CRI-O: real ``cdi-fuse plugin`` -> (emulated) kubelet -> real CRI-O -> FUSE in a pod.

The containerd tier's kubelet emulator drives the plugin process and turns each ContainerAllocateResponse
into the CRI CreateContainer request field by field; here the runtime is the private CRI-O, whose CDI spec
dirs are two temp dirs (not the defaults), so ``auto`` only picks CDI when it reads CRI-O's real dirs.

| --strategy                              | Allocate returns          | container     |
|-----------------------------------------|---------------------------|---------------|
| auto                                    | CDI field only            | FUSE works, no deprecation logged |
| auto, spec only in CRI-O's second dir   | CDI field only            | FUSE works    |
| cdi / cdi-annotations / device-spec     | that one                  | FUSE works    |
| auto --no-generate, spec deleted        | DeviceSpec (re-decided)   | FUSE works    |
| auto, runtime unreachable               | CDI field + DeviceSpec    | FUSE works    |
| auto, runtime unreachable, no spec      | DeviceSpec only           | FUSE works    |
| (pod requests nothing)                  | no Allocate               | mount refused |
"""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.e2e.containerd import harness as containerd_harness
from tests.e2e.containerd import kubelet_emulator as emulator
from tests.e2e.containerd import test_kubelet_path as containerd_path
from tests.e2e.containerd import test_runtime_injection as injection
from tests.e2e.crio.harness import CrioRuntime, assert_fuse_works

pytestmark = [pytest.mark.e2e, pytest.mark.root]

CDI = "cdi"
CDI_ANNOTATIONS = "cdi-annotations"
DEVICE_SPEC = "device-spec"
CHOSEN = "chosen with --strategy"
REDECIDE_TIMEOUT_S = 2.0
UNREACHABLE_ENDPOINT = "unix:///tmp/cdi-fuse-e2e-no-crio.sock"
ANNOTATION_DEPRECATION = "Passing CDI devices as annotations will be deprecated soon"


def _strategies(label: str) -> set[str]:
    return set(label.split("+"))


def _single_decision(node: emulator.KubeletEmulator) -> emulator.Decision:
    decisions = node.plugin.decisions()
    print(f"strategy decisions logged: {decisions}")
    assert len(decisions) == 1, decisions
    return decisions[0]


def _assert_auto_chose_cdi(node: emulator.KubeletEmulator, runtime: CrioRuntime) -> set[str]:
    """auto on CRI-O: the CDI devices field alone (no deprecated annotation, no raw device), because the
    name resolves in the dirs CRI-O reports; the logged reason says so."""
    decision = _single_decision(node)
    assert decision.label == CDI, decision
    assert f"cri-o {runtime.version} has CDI enabled" in decision.reason, decision
    assert node.qualified_name in decision.reason, decision
    assert str(runtime.late_spec_dir) in decision.reason, decision  # CRI-O's own dirs, as it reported them
    assert "sending the CDI devices field (not the deprecated cdi.k8s.io annotations)" in decision.reason, decision
    return {CDI}


def test_auto_returns_the_cdi_field_and_fuse_works(crio_runtime: CrioRuntime) -> None:
    deprecations_before = crio_runtime.daemon.log_text().count(ANNOTATION_DEPRECATION)
    with emulator.plugin_on_node(crio_runtime, strategy="auto") as node:
        admission = node.run_pod()
        strategies = _assert_auto_chose_cdi(node, crio_runtime)
        expected = containerd_path._expected(node, admission.device_id, strategies)
        assert containerd_path._shape(admission.response) == expected
        assert_fuse_works(admission.container)
    # CRI-O warns about every CDI annotation it is handed; auto hands it none
    assert crio_runtime.daemon.log_text().count(ANNOTATION_DEPRECATION) == deprecations_before


def test_auto_with_runtime_unreachable_sends_cdi_field_and_device(crio_runtime: CrioRuntime) -> None:
    """CRI not asked, spec written (--generate): the CDI name and the raw device together; CRI-O injects
    /dev/fuse once and FUSE works."""
    with emulator.plugin_on_node(crio_runtime, strategy="auto", runtime_endpoint=UNREACHABLE_ENDPOINT) as node:
        admission = node.run_pod()
        assert containerd_path._shape(admission.response) == containerd_path._expected(
            node, admission.device_id, {CDI, DEVICE_SPEC}
        )
        assert_fuse_works(admission.container)
        nodes = admission.container.sh("ls -l /dev | grep -c ' fuse$'")
        assert nodes.stdout.strip() == "1", nodes
        assert "runtime not asked" in _single_decision(node).reason


def test_auto_reads_the_spec_dirs_crio_reports(crio_runtime: CrioRuntime) -> None:
    """The spec is only in CRI-O's second dir, which the plugin was not told about (its --spec-dir is the
    first, and --no-generate): auto still sends CDI, because it scans the dirs CRI-O reports over CRI.

    Before the fix auto assumed /etc/cdi and /var/run/cdi for CRI-O and fell back to the raw device.
    """
    vendor = emulator.unique_vendor()
    containerd_harness.generate_fuse_spec(crio_runtime.late_spec_dir, vendor)
    late_spec = crio_runtime.late_spec_dir / f"{vendor}-{emulator.DEVICE_CLASS}.yaml"
    try:
        with emulator.plugin_on_node(crio_runtime, strategy="auto", generate=False, vendor=vendor) as node:
            assert not node.spec_path.exists()
            admission = node.run_pod()
            strategies = _assert_auto_chose_cdi(node, crio_runtime)
            expected = containerd_path._expected(node, admission.device_id, strategies)
            assert containerd_path._shape(admission.response) == expected
            assert_fuse_works(admission.container)
    finally:
        with contextlib.suppress(FileNotFoundError):
            late_spec.unlink()


@pytest.mark.parametrize("strategy", [CDI, CDI_ANNOTATIONS, DEVICE_SPEC])
def test_fixed_strategy_gives_fuse(crio_runtime: CrioRuntime, strategy: str) -> None:
    with emulator.plugin_on_node(crio_runtime, strategy=strategy) as node:
        admission = node.run_pod()
        assert containerd_path._shape(admission.response) == containerd_path._expected(
            node, admission.device_id, {strategy}
        )
        assert_fuse_works(admission.container)
        decision = _single_decision(node)
        assert (decision.label, CHOSEN in decision.reason) == (strategy, True), decision


def test_auto_without_generate_falls_back_to_device_spec_when_spec_deleted(crio_runtime: CrioRuntime) -> None:
    """--no-generate and the spec deleted: the plugin re-decides on the inotify event and hands out the raw
    DeviceSpec (CRI-O would fail CreateContainer on the now unresolvable CDI name); FUSE still works."""
    vendor = emulator.unique_vendor()
    containerd_harness.generate_fuse_spec(crio_runtime.spec_dir, vendor)
    with emulator.plugin_on_node(crio_runtime, strategy="auto", generate=False, vendor=vendor) as node:
        node.allocate()
        node.spec_path.unlink()
        deleted_at = time.monotonic()
        node.plugin.wait_for_log(r"strategy decision: ", count=2, timeout=REDECIDE_TIMEOUT_S)
        print(f"observed: re-decided {(time.monotonic() - deleted_at) * 1000:.0f} ms after deletion")
        first, second = node.plugin.decisions()
        assert CDI in _strategies(first.label), first
        assert second.label == DEVICE_SPEC, second
        assert f"cri-o {crio_runtime.version} has CDI enabled but {node.qualified_name} is not in" in second.reason, (
            second
        )
        admission = node.run_pod()
        assert containerd_path._shape(admission.response) == containerd_path._expected(
            node, admission.device_id, {DEVICE_SPEC}
        )
        assert_fuse_works(admission.container)


def test_auto_with_runtime_unreachable_and_no_spec_sends_device_only(crio_runtime: CrioRuntime) -> None:
    with emulator.plugin_on_node(
        crio_runtime, strategy="auto", generate=False, runtime_endpoint=UNREACHABLE_ENDPOINT
    ) as node:
        assert not node.spec_path.exists()
        admission = node.run_pod()
        assert containerd_path._shape(admission.response) == containerd_path._expected(
            node, admission.device_id, {DEVICE_SPEC}
        )
        assert_fuse_works(admission.container)
        assert "runtime not asked" in _single_decision(node).reason


def test_control_pod_without_request_cannot_mount(crio_runtime: CrioRuntime) -> None:
    with emulator.plugin_on_node(crio_runtime, strategy="auto") as node:
        admission = node.run_pod(request_device=False)
        assert admission.response is None
        assert node.allocated == set()
        probe = injection._probe(admission.container)
        assert probe.node == "", probe.node
        assert not probe.cgroup_allows_rw(*injection._host_fuse_numbers()), probe.cgroup_rules
        injection._assert_fuse_refused(probe)
