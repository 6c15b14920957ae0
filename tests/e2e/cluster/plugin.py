"""The cdi-fuse DaemonSet on the test cluster: ``kubectl apply -k`` of an overlay, timed, and its removal.

:func:`deploy` applies ``plugin/deploy/overlays/<name>`` as a user would and measures, from the moment
``kubectl apply`` returns, when the node's allocatable shows the resource at the advertised count and
when the DaemonSet is Ready. :func:`undeploy` runs ``kubectl delete -k`` and waits until the plugin's pods
are gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.cluster import cluster, kube

REPO = Path(__file__).resolve().parents[3]
OVERLAYS_DIR = REPO / "plugin" / "deploy" / "overlays"
NAMESPACE = "cdi-fuse-system"
DAEMONSET = "cdi-fuse"
RESOURCE = "cdi-fuse.io/fuse"
COUNT = 110
POD_SELECTOR = "app.kubernetes.io/name=cdi-fuse"
OVERLAY_ANNOTATION = "test.cdi-fuse.io/overlay"  # which overlay the tests applied last


@dataclass(frozen=True)
class Deployment:
    overlay: str
    resources: tuple[str, ...]  # extended resources the DaemonSet advertises
    apply_to_allocatable_s: float
    apply_to_ready_s: float


def overlay_dir(name: str) -> Path:
    return OVERLAYS_DIR / name


def overlays() -> list[str]:
    return sorted(p.name for p in OVERLAYS_DIR.iterdir() if (p / "kustomization.yaml").is_file())


def advertised_resources(k8s: cluster.Cluster, overlay: str) -> tuple[str, ...]:
    """The ``--resource-name`` values of the rendered DaemonSet (default: cdi-fuse.io/fuse)."""
    names: list[str] = []
    for doc in k8s.kubectl.kustomize(overlay_dir(overlay)):
        if doc.get("kind") != "DaemonSet":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for arg in [*container.get("command", []), *container.get("args", [])]:
                if arg.startswith("--resource-name="):
                    names.append(arg.split("=", 1)[1])
    return tuple(dict.fromkeys(names)) or (RESOURCE,)


def plugin_pods(k8s: cluster.Cluster) -> list[kube.Obj]:
    path = f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={POD_SELECTOR.replace('=', '%3D')}"
    try:
        return list(k8s.api.get(path).get("items", []))
    except kube.KubeError:
        return []


def deploy(k8s: cluster.Cluster, overlay: str = "default", *, timeout_s: float = 180.0) -> Deployment:
    resources = advertised_resources(k8s, overlay)
    watches = [k8s.node_watch(name) for name in resources]
    try:
        k8s.kubectl.run("apply", "-k", str(overlay_dir(overlay)))
        applied = time.monotonic()
        k8s.kubectl.run("annotate", "-n", NAMESPACE, f"daemonset/{DAEMONSET}", f"{OVERLAY_ANNOTATION}={overlay}",
                        "--overwrite")  # fmt: skip
        allocatable_at = max(watch.wait_value(lambda v: v == COUNT, timeout_s=timeout_s) for watch in watches)
        k8s.wait_daemonset(NAMESPACE, DAEMONSET, timeout_s=timeout_s)
        ready_at = time.monotonic()
    finally:
        for watch in watches:
            watch.stop()
    return Deployment(overlay, resources, max(0.0, allocatable_at - applied), ready_at - applied)


def undeploy(k8s: cluster.Cluster, overlay: str = "default", *, timeout_s: float = 180.0) -> None:
    k8s.kubectl.run("delete", "-k", str(overlay_dir(overlay)), "--ignore-not-found", "--wait=true",
                    timeout=timeout_s)  # fmt: skip
    kube.wait_for("the plugin's pods to be gone", lambda: not plugin_pods(k8s), timeout_s=timeout_s)


def deployed_overlay(k8s: cluster.Cluster) -> str | None:
    """Which overlay the running DaemonSet came from (its annotation), or None when none runs."""
    try:
        ds = k8s.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{DAEMONSET}")
    except kube.KubeError:
        return None
    return str(ds["metadata"].get("annotations", {}).get(OVERLAY_ANNOTATION, "?"))


def ensure_deployed(k8s: cluster.Cluster, overlay: str = "default") -> None:
    """The DaemonSet of ``overlay`` running and Ready (applied again only if another one runs)."""
    current = deployed_overlay(k8s)
    if current is not None and current != overlay:
        undeploy(k8s, current)
    if current != overlay:
        deploy(k8s, overlay)
    k8s.wait_daemonset(NAMESPACE, DAEMONSET)
    kube.wait_for(f"allocatable {RESOURCE}={COUNT}", lambda: k8s.allocatable(RESOURCE) == COUNT, timeout_s=120)
