"""Fixtures of the cluster tier: a real one-node Kubernetes cluster for the whole test session.

Run it with your own Kubernetes binaries (>= 1.34):
``sudo CDI_FUSE_K8S_BIN=/path/to/bin make test`` (or ``.venv/bin/pytest tests/e2e/cluster``), where the
folder holds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd (etcd may
also be on PATH). Without the variable, or without root, every test here skips and prints why;
``CDI_FUSE_REQUIRE_CLUSTER=1`` turns those skips into failures. ``CDI_FUSE_CLUSTER_LOG_DIR=<dir>`` keeps the
components' logs.

Fixtures (reusable by any test under tests/e2e/cluster, e.g. the DRA driver's):

- ``k8s_cluster`` (session): a started :class:`~tests.e2e.cluster.cluster.Cluster`. Useful members:
  ``kubectl`` (:class:`~tests.e2e.cluster.kube.Kubectl`: ``run``, ``json``, ``apply``, ``kustomize``, ``exec``,
  ``logs``), ``api`` (:class:`~tests.e2e.cluster.kube.ApiClient`: ``get``/``request``/``watch`` with the
  admin cert), ``node()``, ``allocatable(resource)``, ``node_watch(resource)`` (records allocatable changes),
  ``create_namespace``/``delete_namespace``, ``wait_pod``, ``wait_daemonset``, ``events``, ``host_path(p)``
  (where a node path such as /etc/cdi or /var/lib/kubelet/plugins_registry is on the host),
  ``containerd`` (``import_image``, ``restart``, ``cri_status_config``), ``stop_kubelet``/``start_kubelet``,
  ``restart_containerd(cdi_enabled=...)``, ``reboot_node()``, ``apiserver_url`` (127.0.0.1: a pod reaches it
  only with ``hostNetwork: true``; there is no kube-proxy, so the ``kubernetes`` Service IP does not route).
  Pods are scheduled on node ``127.0.0.1``; the apiserver serves resource.k8s.io/v1.
- ``plugin_image`` (session): the project's image built from plugin/Containerfile (see
  :mod:`tests.e2e.cluster.images`), imported as ``cdi-fuse:0.1.0``.
- ``examples_image`` (session): the examples' tools image, imported as ``localhost/cdi-fuse-examples:bookworm``.
- ``namespace`` (function): a fresh namespace, ready for pods, deleted after the test.

The cluster holds ``flock /run/cdi-fuse-cluster.lock`` for its life and its teardown fails the session
(an error at teardown) if anything is left on the host.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.e2e.cluster import binaries, cluster, images, plugin
from tests.e2e.containerd import fetch

REPO = Path(__file__).resolve().parents[3]
HOST_TOOLS = ("unshare", "nsenter", "ip", "openssl", "mount", "runc")


def unavailable(reason: str) -> NoReturn:
    message = f"cluster tier unavailable: {reason}"
    print(message)
    if os.environ.get(binaries.REQUIRE_ENV) == "1":
        pytest.fail(f"{message} (and {binaries.REQUIRE_ENV}=1)")
    pytest.skip(message)


def missing_reason() -> str | None:
    if os.geteuid() != 0:
        return f"needs root (a kubelet, containerd, mounts, cgroups): running as uid {os.geteuid()}"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        return f"missing host tools {missing}"
    for cni_plugin in ("bridge", "host-local", "loopback"):
        if not (cluster.CNI_BIN_DIR / cni_plugin).exists():
            return f"no CNI plugin {cluster.CNI_BIN_DIR / cni_plugin} (Debian: containernetworking-plugins)"
    if not Path("/dev/fuse").exists():
        return "this host has no /dev/fuse"
    return None


@pytest.fixture(scope="session")
def k8s_binaries() -> binaries.K8sBinaries:
    try:
        found = binaries.find_binaries()
    except binaries.ClusterUnavailableError as exc:
        unavailable(str(exc))
    reason = missing_reason()
    if reason:
        unavailable(reason)
    return found


@pytest.fixture(scope="session")
def k8s_cluster(
    k8s_binaries: binaries.K8sBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.Cluster]:
    try:
        install = fetch.ensure_containerd()
    except fetch.ContainerdUnavailableError as exc:
        unavailable(str(exc))
    sandbox = images.sandbox_image_archive(tmp_path_factory.mktemp("sandbox"))
    with cluster.cluster_lock():
        for swept in cluster.sweep_stale():
            print(f"\nswept the leftovers of an interrupted cluster run: {swept}")
        running = cluster.Cluster(k8s_binaries, install, sandbox_image=images.SANDBOX_IMAGE)
        try:
            seconds = running.start(sandbox_archive=sandbox)
            print(
                f"\ncluster: Kubernetes {k8s_binaries.version}, containerd {install.version}; "
                f"start to node Ready {seconds:.1f}s (apiserver ready {running.timings['apiserver_ready_s']:.1f}s)"
            )
            yield running
        finally:
            restored = running.stop()
            print(f"\ncluster stopped; restored on the host: {restored}")
        left = cluster.leftovers(running)
        assert not left, f"the cluster left things on the host: {left}"


@pytest.fixture(scope="session")
def plugin_image(k8s_cluster: cluster.Cluster) -> str:
    reason = images.host_env_ok()
    if reason:
        unavailable(reason)
    started = time.monotonic()
    try:
        archive = images.ensure_plugin_image(REPO)
    except images.ImageBuildError as exc:
        pytest.fail(f"building the plugin image failed: {exc}")
    assert k8s_cluster.containerd is not None
    k8s_cluster.containerd.import_image(archive)
    print(f"\nplugin image {images.PLUGIN_IMAGE} ({archive.parent.name}) ready in {time.monotonic() - started:.0f}s")
    return images.PLUGIN_IMAGE


@pytest.fixture(scope="session")
def examples_image(k8s_cluster: cluster.Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    reason = images.host_env_ok()
    if reason:
        unavailable(reason)
    try:
        archive = images.build_examples_image(tmp_path_factory.mktemp("examples-image"))
    except images.ImageBuildError as exc:
        pytest.fail(f"building the examples image failed: {exc}")
    assert k8s_cluster.containerd is not None
    k8s_cluster.containerd.import_image(archive)
    archive.unlink()
    return images.EXAMPLES_IMAGE


@pytest.fixture
def namespace(k8s_cluster: cluster.Cluster) -> Iterator[str]:
    name = f"t-{secrets.token_hex(4)}"
    k8s_cluster.create_namespace(name)
    try:
        yield name
    finally:
        k8s_cluster.delete_namespace(name)


@pytest.fixture
def fuse_plugin(k8s_cluster: cluster.Cluster, plugin_image: str) -> str:
    """The DaemonSet of the default overlay, Ready and advertising; returns the resource name."""
    plugin.ensure_deployed(k8s_cluster, "default")
    return plugin.RESOURCE
