"""Pods for the cluster tests: the examples as shipped (with their images pointed at the local examples
image, since there is no registry), and small FUSE probe pods for the timing and admin-operation tests."""

from __future__ import annotations

import copy
import secrets
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.cluster import cluster, images, kube

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
RESOURCE = "cdi-fuse.io/fuse"

# A container that mounts bindfs and reports what it saw; it stays up so tests can exec into it.
PROBE_SCRIPT = """
set -e
if [ -c /dev/fuse ]; then echo "dev-fuse: yes $(stat -c '%t:%T' /dev/fuse)"; else echo "dev-fuse: no"; fi
mkdir -p /tmp/src /tmp/view
echo probe > /tmp/src/file
if bindfs /tmp/src /tmp/view 2>/tmp/bindfs.err && grep -q ' /tmp/view fuse' /proc/self/mounts; then
  echo "mount: ok"
else
  echo "mount: failed $(cat /tmp/bindfs.err)"
fi
exec sleep infinity
"""


def example_objects(path: Path) -> list[kube.Obj]:
    """The objects of one example file, every container image replaced by the local examples image."""
    objects = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return [local_images(obj) for obj in objects]


def local_images(obj: kube.Obj, image: str = images.EXAMPLES_IMAGE) -> kube.Obj:
    obj = copy.deepcopy(obj)
    if obj.get("kind") == "Pod":
        for key in ("containers", "initContainers"):
            for container in obj["spec"].get(key, []):
                container["image"] = image
                container["imagePullPolicy"] = "IfNotPresent"
    return obj


def pod_of(objects: list[kube.Obj]) -> kube.Obj:
    (pod,) = [obj for obj in objects if obj["kind"] == "Pod"]
    return pod


def probe_pod(name: str, *, with_resource: bool = True, image: str = images.EXAMPLES_IMAGE,
              restart_policy: str = "Never") -> kube.Obj:  # fmt: skip
    container: dict[str, Any] = {
        "name": "probe",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", PROBE_SCRIPT],
        "securityContext": {
            "privileged": False,
            "capabilities": {"add": ["SYS_ADMIN"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if with_resource:
        container["resources"] = {"limits": {RESOURCE: 1}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test.cdi-fuse.io/probe": "true"}},
        "spec": {
            "restartPolicy": restart_policy,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [container],
        },
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def wait_log(k8s: cluster.Cluster, namespace: str, pod: str, needle: str, *, timeout_s: float = 60.0,
             container: str | None = None) -> str:  # fmt: skip
    """Wait until the pod's log contains ``needle``; return the log."""

    def check() -> str | None:
        text = k8s.kubectl.logs(pod, namespace=namespace, container=container)
        return text if needle in text else None

    return str(
        kube.wait_for(
            f"{needle!r} in the log of {namespace}/{pod}",
            check,
            timeout_s=timeout_s,
            last=lambda: k8s.kubectl.logs(pod, namespace=namespace, container=container)[-800:],
        )
    )


def probe_result(k8s: cluster.Cluster, namespace: str, pod: str, *, timeout_s: float = 60.0) -> dict[str, str]:
    """What a probe pod reported: ``{"dev-fuse": "yes a:e5", "mount": "ok"}``."""
    log = wait_log(k8s, namespace, pod, "mount:", timeout_s=timeout_s)
    return dict(line.split(": ", 1) for line in log.splitlines() if line.startswith(("dev-fuse:", "mount:")))


def create_and_time_running(k8s: cluster.Cluster, namespace: str, pod: kube.Obj, *, timeout_s: float = 120.0) -> float:
    """Create the pod and return the seconds until the API shows it Running."""
    started = time.monotonic()
    k8s.kubectl.apply(pod, namespace=namespace)
    k8s.wait_pod(namespace, pod["metadata"]["name"], timeout_s=timeout_s)
    return time.monotonic() - started
