"""The default deployment, as rendered from plugin/deploy/overlays/default, gives pods FUSE without any
runtime socket: on containerd 1.7 and 2.x, with CDI on and with CDI off.

The plugin runs as a container with the DaemonSet's own arguments, mounts and security settings
(tests/e2e/containerd/plugin_pod.py); an emulated kubelet admits a pod requesting `cdi-fuse.io/fuse: 1`
and the workload container mounts bindfs. `auto` cannot ask the runtime there (no socket in the pod), so it
sends the CDI name and the DeviceSpec: a CDI-on containerd injects the node from the spec the plugin wrote,
a CDI-off one ignores the name and uses the DeviceSpec. The manifest's exec probes run in the plugin
container and answer as the kubelet expects.

overlays/runtime-aware mounts the runtime's socket directory read-only: the plugin then asks containerd over
CRI through that read-only mount (a read-only mount does not stop connect(2), the risk the README states).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.e2e.containerd import cri_client, harness, plugin_pod
from tests.e2e.containerd import test_runtime_injection as injection

pytestmark = [pytest.mark.e2e, pytest.mark.root]

RuntimeFactory = Callable[[bool], harness.ContainerdRuntime]
FUSE = "/dev/fuse"


def _assert_probe(pod: plugin_pod.PluginPod, kind: str, *, ok: bool) -> str:
    result = pod.plugin.exec(*pod.probe_command(kind))
    assert (result.exit_code == 0) is ok, f"{kind}: {result}"
    return result.stderr


@pytest.mark.parametrize("cdi_enabled", [pytest.param(True, id="cdi-on"), pytest.param(False, id="cdi-off")])
def test_default_deployment_gives_fuse_without_a_runtime_socket(
    containerd_runtime: RuntimeFactory, cdi_enabled: bool
) -> None:
    runtime = containerd_runtime(cdi_enabled)
    with plugin_pod.plugin_pod_on_node(runtime) as pod:
        node = pod.node
        _assert_probe(pod, "readinessProbe", ok=True)
        _assert_probe(pod, "livenessProbe", ok=True)

        admission = node.run_pod()
        response = admission.response
        assert response is not None
        assert [d.name for d in response.cdi_devices] == [node.qualified_name]
        assert [(d.container_path, d.host_path, d.permissions) for d in response.devices] == [(FUSE, FUSE, "rw")]
        injection._assert_fuse_works(injection._probe(admission.container))

        (decision,) = node.plugin.decisions()
        assert decision.label == "cdi+device-spec", decision
        # no socket in the pod: the plugin's default endpoints are simply not there
        assert "runtime not asked" in decision.reason, decision
        assert "no socket at '/run/containerd/containerd.sock'" in decision.reason, decision
        # the spec the plugin wrote from inside its pod names the host's node, not /host/dev/fuse
        spec = yaml.safe_load(node.spec_path.read_text())
        (device_node,) = spec["devices"][0]["containerEdits"]["deviceNodes"]
        assert device_node["path"] == FUSE and device_node.get("hostPath", FUSE) == FUSE


def _wait_for_probe(pod: plugin_pod.PluginPod, kind: str, *, ok: bool, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        result = pod.plugin.exec(*pod.probe_command(kind))
        if (result.exit_code == 0) is ok:
            return result.stderr
        assert time.monotonic() < deadline, f"{kind} still {result} after {timeout}s:\n{pod.plugin.log()}"
        time.sleep(0.5)


def test_default_deployment_readiness_follows_the_kubelet(containerd_runtime: RuntimeFactory) -> None:
    """Readiness is /healthz through the exec probe: unready while the kubelet is gone, ready when it is back;
    liveness stays ok throughout (a restart would not bring the kubelet back)."""
    runtime = containerd_runtime(True)
    with plugin_pod.plugin_pod_on_node(runtime) as pod:
        kubelet = pod.node.kubelet
        _assert_probe(pod, "readinessProbe", ok=True)
        kubelet.stop()
        kubelet.delete_sockets()  # what a kubelet going away does to the plugin's socket

        why = _wait_for_probe(pod, "readinessProbe", ok=False)
        assert "/healthz answered [b'503']" in why, why
        _assert_probe(pod, "livenessProbe", ok=True)

        kubelet.start()
        _wait_for_probe(pod, "readinessProbe", ok=True)
        assert len(kubelet.registrations_of(pod.node.resource)) == 2


def test_runtime_aware_overlay_asks_the_runtime_through_a_read_only_socket_mount(
    containerd_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    runtime = containerd_runtime(True)
    base = runtime.daemon.paths.base
    socket_link = base / "containerd.sock"  # the overlay's endpoint name, next to the fixture's socket
    socket_link.symlink_to(runtime.daemon.paths.socket.name)
    empty = tmp_path / "crio-run"
    empty.mkdir()
    try:
        # containerd reports its spec dir by its host path; on a real node that is /etc/cdi or /var/run/cdi,
        # which the pod mounts at the same path, so the plugin finds it there too
        same_path = cri_client.MountSpec(str(runtime.spec_dir), str(runtime.spec_dir), readonly=True)
        with plugin_pod.plugin_pod_on_node(
            runtime,
            overlay="runtime-aware",
            host_paths={"/run/containerd": base, "/run/crio": empty},
            extra_mounts=[same_path],
        ) as pod:
            mounts = {m["mountPath"]: m for m in pod.container["volumeMounts"]}
            assert mounts["/run/containerd"]["readOnly"] is True
            (decision,) = pod.node.plugin.decisions()
            assert "device-spec" not in decision.label.split("+"), decision
            assert f"containerd {runtime.version} has CDI enabled" in decision.reason, decision
            admission = pod.node.run_pod()
            assert admission.response is not None and not admission.response.devices
            injection._assert_fuse_works(injection._probe(admission.container))
    finally:
        socket_link.unlink()


def test_what_the_threat_model_says_about_host_dev_holds(containerd_runtime: RuntimeFactory) -> None:
    """From inside the default plugin pod (uid 0, no capabilities): /host/dev is read-only and its device nodes
    cannot be opened (devices cgroup). The mounts below it (/dev/shm, ...) are read-only only where the
    runtime does recursive read-only mounts for `recursiveReadOnly: IfPossible` (containerd 2.x here reports
    it; 1.7 does not): elsewhere a file can be created in the host's /dev/shm, as the README says."""
    runtime = containerd_runtime(False)
    recursive = plugin_pod.recursive_read_only_supported(runtime.client)
    with plugin_pod.plugin_pod_on_node(runtime) as pod:
        name = f"cdi-fuse-threat-model-{uuid.uuid4().hex[:8]}"
        top = pod.plugin.exec("/bin/sh", "-c", f"touch /host/dev/{name}")
        device = pod.plugin.exec("/bin/sh", "-c", "exec 3</host/dev/fuse")
        shm = pod.plugin.exec("/bin/sh", "-c", f"touch /host/dev/shm/{name} && rm /host/dev/shm/{name}")
        capabilities = pod.plugin.exec("/bin/sh", "-c", "grep CapEff /proc/self/status")
    print(f"containerd {runtime.version}, recursive read-only mounts: {recursive}")
    print(f"touch /host/dev/x: {top}\nopen /host/dev/fuse: {device}\ntouch /host/dev/shm/x: {shm}\n{capabilities}")

    assert top.exit_code != 0 and "Read-only file system" in top.stderr
    assert device.exit_code != 0 and "Operation not permitted" in device.stderr
    assert capabilities.stdout.split() == ["CapEff:", "0000000000000000"]
    if recursive:
        assert shm.exit_code != 0 and "Read-only file system" in shm.stderr, shm
    else:
        assert shm.exit_code == 0, shm
    assert not Path(f"/dev/shm/{name}").exists()
