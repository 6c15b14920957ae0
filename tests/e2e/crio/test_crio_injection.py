"""How a real CRI-O hands /dev/fuse to a non-privileged container, for each way the kubelet can ask.

Same requests and the same in-container proof as the containerd tier (``test_runtime_injection``): the
device node with the host's major:minor, ``c 10:229 rw`` in the devices cgroup, a bindfs round trip and
its unmount. CRI-O has no CDI switch, so there are no CDI-off rows; instead: the spec dirs CRI-O reports
over CRI, a spec that appears after CRI-O started, and the deprecation CRI-O logs for annotations.
"""

from __future__ import annotations

import time

import pytest

from cdi_fuse.runtime import cri
from tests.e2e.containerd import cri_client, harness
from tests.e2e.containerd import test_runtime_injection as injection
from tests.e2e.crio.harness import CrioRuntime, assert_fuse_works, device_request

pytestmark = [pytest.mark.e2e, pytest.mark.root]

ANNOTATION_DEPRECATION = "Passing CDI devices as annotations will be deprecated soon"
LATE_SPEC_TIMEOUT_S = 5.0


def test_status_reports_its_cdi_spec_dirs(crio_runtime: CrioRuntime) -> None:
    config = crio_runtime.status_config()
    assert set(config) == {"sandboxImage", "crio"}, sorted(config)
    assert config["crio"]["CDISpecDirs"] == [str(d) for d in crio_runtime.spec_dirs]

    info = cri.query_runtime(crio_runtime.endpoint, timeout=5)
    print(f"query_runtime: {info}")
    assert (info.runtime_name, info.runtime_version) == ("cri-o", crio_runtime.version)
    assert info.cdi_enabled is True
    assert info.cdi_spec_dirs == tuple(str(d) for d in crio_runtime.spec_dirs)
    assert info.cdi_spec_dirs_reported is True
    assert "crio.CDISpecDirs" in info.reason


@pytest.mark.parametrize(
    "request_kind",
    [
        pytest.param("cdi_devices", id="CDI_devices-field"),
        pytest.param("annotation", id="cdi.k8s.io-annotation"),
        pytest.param("raw_and_cdi", id="raw-device-plus-CDI_devices"),
        pytest.param("raw", id="raw-DeviceSpec"),
    ],
)
def test_fuse_device_reaches_unprivileged_container(crio_runtime: CrioRuntime, request_kind: str) -> None:
    name = harness.generate_fuse_spec(crio_runtime.spec_dir, injection._unique_vendor())
    print(f"requesting {request_kind} with CDI name {name}")
    deprecations_before = crio_runtime.daemon.log_text().count(ANNOTATION_DEPRECATION)
    container = crio_runtime.run_fuse_container(**device_request(request_kind, name), envs={"E2E": "1"})
    assert_fuse_works(container)
    deprecations = crio_runtime.daemon.log_text().count(ANNOTATION_DEPRECATION) - deprecations_before
    # CRI-O takes the annotation but logs that it is on its way out; the CRI field draws no such line.
    assert deprecations == (1 if request_kind == "annotation" else 0)


def test_unresolvable_cdi_name_fails_create_container(crio_runtime: CrioRuntime) -> None:
    missing = f"{injection._unique_vendor()}/fuse=fuse"
    with pytest.raises(cri_client.CriCallError) as raised:
        crio_runtime.run_fuse_container(cdi_devices=[missing])
    print(f"observed: {raised.value}")
    assert raised.value.method == "CreateContainer"
    assert "CDI device injection failed: unresolvable CDI devices" in raised.value.details
    assert missing in raised.value.details


def test_spec_added_after_start_is_resolved_without_restart(crio_runtime: CrioRuntime) -> None:
    """A spec written into a dir that was empty when CRI-O started resolves without restarting CRI-O."""
    pid = crio_runtime.daemon.process.pid
    written_at = time.monotonic()
    name = harness.generate_fuse_spec(crio_runtime.late_spec_dir, injection._unique_vendor())
    attempts = 0
    while True:
        attempts += 1
        try:
            container = crio_runtime.run_fuse_container(cdi_devices=[name])
            break
        except cri_client.CriCallError as exc:
            if "unresolvable CDI devices" not in exc.details or time.monotonic() - written_at > LATE_SPEC_TIMEOUT_S:
                raise
            time.sleep(0.1)
    print(f"observed: resolved {(time.monotonic() - written_at) * 1000:.0f} ms after the write, attempt {attempts}")
    assert crio_runtime.daemon.process.pid == pid and crio_runtime.daemon.process.poll() is None
    assert_fuse_works(container)


def test_pod_runs_without_an_infra_container(crio_runtime: CrioRuntime) -> None:
    """pid namespace CONTAINER: CRI-O runs the workload alone (an infra container would need oom_score_adj
    -998, which this sandbox refuses), so runc knows exactly one container for the pod."""
    container = crio_runtime.run_fuse_container()
    runc_root = crio_runtime.daemon.paths.runc_root
    known = sorted(d.name for d in runc_root.iterdir() if (d / "state.json").is_file())
    assert known == [container.container_id]


def test_control_without_device_mount_fails(crio_runtime: CrioRuntime) -> None:
    probe = injection._probe(crio_runtime.run_fuse_container())
    assert probe.node == ""
    major, minor = injection._host_fuse_numbers()
    if injection.HOST_DEVICES_CGROUP_V1.exists():
        assert not probe.cgroup_allows_rw(major, minor), probe.cgroup_rules
    injection._assert_fuse_refused(probe)
