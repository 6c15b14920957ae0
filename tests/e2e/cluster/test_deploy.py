"""The DaemonSet as shipped: built from plugin/Containerfile, applied with ``kubectl apply -k``, removed with
``kubectl delete -k`` -- on a real kubelet and containerd."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.e2e.cluster import cluster, kube, plugin

# Overlays proven by their own tests on this cluster (the DRA driver is not a device plugin).
TESTED_ELSEWHERE = {"dra": "tests/e2e/cluster/test_dra*.py"}
# Where each overlay expects the node's kubelet dir and containerd run dir, when not at the usual paths.
NODE_LAYOUTS = {
    "microk8s": {
        "/var/snap/microk8s/common/var/lib/kubelet": "/var/lib/kubelet",
        "/var/snap/microk8s/common/run": "/run/containerd",
    },
}
SPEC_FILE = "cdi-fuse.io-fuse.yaml"


def _plugin_files(k8s: cluster.Cluster) -> list[str]:
    directory = k8s.host_path("/var/lib/kubelet/device-plugins")
    return sorted(p.name for p in directory.iterdir() if p.name not in ("kubelet.sock", "kubelet_internal_checkpoint"))


@pytest.mark.parametrize("overlay", [o for o in plugin.overlays() if o not in TESTED_ELSEWHERE])
def test_overlay_applies_registers_and_deletes_cleanly(
    k8s_cluster: cluster.Cluster, plugin_image: str, overlay: str
) -> None:
    current = plugin.deployed_overlay(k8s_cluster)
    if current is not None:
        plugin.undeploy(k8s_cluster, current)
    for node_path, same_as in NODE_LAYOUTS.get(overlay, {}).items():
        k8s_cluster.bind_node_path(node_path, same_as)

    deployment = plugin.deploy(k8s_cluster, overlay)
    print(
        f"\n[{overlay}] kubectl apply -k -> allocatable {'/'.join(deployment.resources)}={plugin.COUNT}: "
        f"{deployment.apply_to_allocatable_s:.1f}s; -> DaemonSet Ready: {deployment.apply_to_ready_s:.1f}s"
    )
    for resource in deployment.resources:
        assert k8s_cluster.allocatable(resource) == plugin.COUNT
        assert k8s_cluster.capacity(resource) == plugin.COUNT
    spec_path = k8s_cluster.host_path("/etc/cdi") / SPEC_FILE
    spec = yaml.safe_load(spec_path.read_text())
    assert spec["kind"] == "cdi-fuse.io/fuse"
    assert [node["path"] for d in spec["devices"] for node in d["containerEdits"]["deviceNodes"]] == ["/dev/fuse"]
    assert _plugin_files(k8s_cluster), "the plugin's sockets are in the kubelet's device-plugin dir"
    (pod,) = plugin.plugin_pods(k8s_cluster)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0

    plugin.undeploy(k8s_cluster, overlay)
    assert _plugin_files(k8s_cluster) == [], "kubectl delete -k leaves no plugin socket behind"
    # The kubelet keeps the resource in capacity but with no healthy device, so nothing can be scheduled.
    kube.wait_for(
        f"allocatable of {deployment.resources} to drop to 0",
        lambda: all(not k8s_cluster.allocatable(r) for r in deployment.resources),
        timeout_s=60,
    )
    namespaces = k8s_cluster.kubectl.run("get", "namespaces", "-o", "name").stdout.split()
    assert f"namespace/{plugin.NAMESPACE}" not in namespaces
    # What stays on the node by design: the generated spec (a pod created during a rolling update must
    # still resolve the CDI name, so the plugin never deletes it on stop).
    assert spec_path.exists()
    time.sleep(0)  # nothing else to wait for


def test_plugin_image_runs_without_capabilities_as_shipped(k8s_cluster: cluster.Cluster, plugin_image: str) -> None:
    """The running container has the security context the DaemonSet declares: no capability at all."""
    plugin.ensure_deployed(k8s_cluster)
    (pod,) = plugin.plugin_pods(k8s_cluster)
    name = pod["metadata"]["name"]
    status = k8s_cluster.kubectl.exec(name, ["sh", "-c", "grep -E '^Cap(Eff|Prm|Bnd)' /proc/1/status"],
                                      namespace=plugin.NAMESPACE)  # fmt: skip
    assert status.returncode == 0, status.stderr
    caps = dict(line.split(":\t") for line in status.stdout.strip().splitlines())
    assert caps == {"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapBnd": "0000000000000000"}
    python = k8s_cluster.kubectl.exec(name, ["python3", "--version"], namespace=plugin.NAMESPACE)
    assert python.stdout.startswith("Python 3.11"), python
