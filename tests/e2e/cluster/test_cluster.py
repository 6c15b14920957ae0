"""The cluster itself: a Ready node named 127.0.0.1 on the given binaries, the DRA API served."""

from __future__ import annotations

from tests.e2e.cluster import cluster


def test_node_is_ready_with_the_given_kubelet_and_containerd(k8s_cluster: cluster.Cluster) -> None:
    node = k8s_cluster.node()
    info = node["status"]["nodeInfo"]
    assert node["metadata"]["name"] == cluster.NODE_NAME
    assert info["kubeletVersion"] == k8s_cluster.bins.version
    assert k8s_cluster.containerd is not None
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert k8s_cluster.node_ready()
    print(
        f"\nnode {node['metadata']['name']}: kubelet {info['kubeletVersion']}, {info['containerRuntimeVersion']}, "
        f"start to Ready {k8s_cluster.timings['start_to_ready_s']:.1f}s"
    )


def test_apiserver_serves_resource_k8s_io_v1(k8s_cluster: cluster.Cluster) -> None:
    versions = k8s_cluster.kubectl.run("api-versions").stdout.split()
    assert "resource.k8s.io/v1" in versions


def test_containerd_has_cdi_on_and_reads_the_node_spec_dirs(k8s_cluster: cluster.Cluster) -> None:
    assert k8s_cluster.containerd is not None
    config = k8s_cluster.containerd.cri_status_config()
    assert config["enableCDI"] is True
    assert config["cdiSpecDirs"] == ["/etc/cdi", "/var/run/cdi"]


def test_node_paths_are_private_to_the_cluster(k8s_cluster: cluster.Cluster) -> None:
    """The kubelet's device-plugin dir and /etc/cdi exist for the node only (bind mounts of the temp dir)."""
    plugin_dir = k8s_cluster.host_path("/var/lib/kubelet/device-plugins")
    assert (plugin_dir / "kubelet.sock").exists()
    assert not __import__("pathlib").Path("/var/lib/kubelet/device-plugins/kubelet.sock").exists()
    assert k8s_cluster.host_path("/etc/cdi") == k8s_cluster.base / "etc-cdi"
