"""The DRA driver on the real one-node cluster: `kubectl apply -k plugin/deploy/overlays/dra` as shipped
(the image from plugin/Containerfile), pods with ResourceClaims scheduled by the real scheduler and
prepared by the real kubelet, and what an admin does to it.

Changed from the overlay for this cluster only: the driver pod uses the host network and reaches the API
server at 127.0.0.1 (this cluster has no kube-proxy, so the `kubernetes` Service IP does not route), and
its health port is a free one (host network). The tests run in file order and share one deployment.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import cluster, images, kube, plugin, workloads

REPO = Path(__file__).resolve().parents[3]
OVERLAY = REPO / "plugin" / "deploy" / "overlays" / "dra"
EXAMPLE = REPO / "examples" / "dra" / "bindfs.yaml"
EXTENDED_EXAMPLE = REPO / "examples" / "dra" / "extended-resource.yaml"
NAMESPACE = "cdi-fuse-system"
DAEMONSET = "cdi-fuse-dra"
DRIVER = "fuse.cdi-fuse.io"
POD_SELECTOR = "app.kubernetes.io/component%3Ddra-driver"
FUSE_DEVICE = "a:e5"  # 10:229 as stat %t:%T prints it
SLICES = "/apis/resource.k8s.io/v1/resourceslices"
TEST_DEV = "/var/lib/kubelet/cdi-fuse-testdev"  # a node dir holding a test device node (device-removal test)


# --- helpers ---------------------------------------------------------------------------------------------


def node_slices(k8s: cluster.Cluster) -> list[kube.Obj]:
    selector = f"spec.nodeName={cluster.NODE_NAME},spec.driver={DRIVER}"
    return list(k8s.api.get(f"{SLICES}?fieldSelector={selector}").get("items", []))


def one_slice(k8s: cluster.Cluster) -> kube.Obj:
    (found,) = node_slices(k8s)
    return found


def driver_pods(k8s: cluster.Cluster) -> list[kube.Obj]:
    return list(k8s.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={POD_SELECTOR}").get("items", []))


def device_plugin_pods(k8s: cluster.Cluster) -> list[kube.Obj]:
    """The device plugin's pods (plugin.plugin_pods selects by name, which the driver's pods share)."""
    pods = plugin.plugin_pods(k8s)
    return [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "device-plugin"]


def driver_pod(k8s: cluster.Cluster) -> str:
    running = [
        p
        for p in driver_pods(k8s)
        if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]
    ]
    (pod,) = running
    return str(pod["metadata"]["name"])


def driver_log(k8s: cluster.Cluster) -> str:
    return k8s.kubectl.logs(driver_pod(k8s), namespace=NAMESPACE)


def wait_driver_log(
    k8s: cluster.Cluster, needle: str | re.Pattern[str], *, count: int = 1, timeout_s: float = 60
) -> str:
    def check() -> str | None:
        text = driver_log(k8s)
        found = len(needle.findall(text)) if isinstance(needle, re.Pattern) else text.count(needle)
        return text if found >= count else None

    return str(kube.wait_for(f"{needle!r} x{count} in the driver log", check, timeout_s=timeout_s,
                             last=lambda: driver_log(k8s)[-1500:]))  # fmt: skip


def rendered_overlay(
    k8s: cluster.Cluster, *, args: list[str] | None = None, test_device: bool = False
) -> list[kube.Obj]:
    """The overlay as kustomize renders it, adapted to this cluster (host network, API at 127.0.0.1)."""
    objects = k8s.kubectl.kustomize(OVERLAY)
    for obj in objects:
        if obj["kind"] != "DaemonSet":
            continue
        pod = obj["spec"]["template"]["spec"]
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
        (container,) = pod["containers"]
        container["image"] = images.PLUGIN_IMAGE
        # Host network: the loopback is the host's, so the health server takes a free port.
        address = f"127.0.0.1:{cluster.free_port()}"
        container["args"] = [a for a in container["args"] if not a.startswith("--health-address")]
        container["args"] += [f"--health-address={address}", *(args or [])]
        for probe in ("readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            command[command.index("127.0.0.1:9401")] = address
        container["env"] += [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(k8s.ports["apiserver"])},
        ]
        if test_device:
            container["args"] = [a for a in container["args"] if not a.startswith("--device-path")]
            container["args"].append("--device-path=/host/testdev/fuse")
            container["volumeMounts"].append({"name": "testdev", "mountPath": "/host/testdev", "readOnly": True})
            pod["volumes"].append({"name": "testdev", "hostPath": {"path": TEST_DEV, "type": "Directory"}})
    return objects


def apply_driver(k8s: cluster.Cluster, objects: list[kube.Obj]) -> float:
    """Apply and wait until the DaemonSet is rolled out and Ready; seconds from apply to Ready."""
    started = time.monotonic()
    k8s.kubectl.apply(objects)
    k8s.wait_daemonset(NAMESPACE, DAEMONSET, timeout_s=240)
    return time.monotonic() - started


def claim_pod(name: str, *, template: str = "fuse") -> kube.Obj:
    """A probe pod (bindfs, reports /dev/fuse) that gets FUSE from a claim made from `template`."""
    pod = workloads.probe_pod(name, with_resource=False)
    pod["spec"]["resourceClaims"] = [{"name": "fuse", "resourceClaimTemplateName": template}]
    pod["spec"]["containers"][0]["resources"] = {"claims": [{"name": "fuse"}]}
    return pod


def claim_template(name: str = "fuse") -> kube.Obj:
    objects = workloads.example_objects(EXAMPLE)
    (template,) = [o for o in objects if o["kind"] == "ResourceClaimTemplate"]
    template = copy.deepcopy(template)
    template["metadata"]["name"] = name
    return template


def claims_of(k8s: cluster.Cluster, namespace: str) -> list[kube.Obj]:
    return list(k8s.api.get(f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims").get("items", []))


def pod_claim(k8s: cluster.Cluster, namespace: str, pod: str) -> kube.Obj:
    status = k8s.pod(namespace, pod).get("status", {})
    (entry,) = status.get("resourceClaimStatuses", [])
    return k8s.api.get(f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{entry['resourceClaimName']}")


def exec_sh(k8s: cluster.Cluster, namespace: str, pod: str, script: str) -> subprocess.CompletedProcess[str]:
    return k8s.kubectl.exec(pod, ["sh", "-c", script], namespace=namespace)


def assert_pod_has_fuse(k8s: cluster.Cluster, namespace: str, pod: str) -> None:
    result = workloads.probe_result(k8s, namespace, pod)
    assert result == {"dev-fuse": f"yes {FUSE_DEVICE}", "mount": "ok"}, result
    rules = exec_sh(k8s, namespace, pod, "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null || true").stdout
    if rules:  # cgroup v1 (this host): the runtime's devices-cgroup rule from the CDI spec
        assert any(re.fullmatch(r"c 10:229 rwm?", line) for line in rules.splitlines()), rules


def driver_rss_kib() -> list[int]:
    """RSS of every `cdi-fuse dra` process on this host (the driver runs in the host PID namespace view)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"dra" not in cmdline or not any(part.endswith(b"cdi-fuse") for part in cmdline):
                continue
            rss = re.search(r"VmRSS:\s+(\d+)", (proc / "status").read_text())
        except OSError:
            continue
        if rss is not None:
            found.append(int(rss.group(1)))
    return found


# --- the deployment ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dra(k8s_cluster: cluster.Cluster, plugin_image: str, examples_image: str) -> Iterator[dict[str, float]]:
    """The DRA overlay applied and Ready; removed (and the node's slices gone) at the end."""
    current = plugin.deployed_overlay(k8s_cluster)
    if current is not None:
        plugin.undeploy(k8s_cluster, current)
    test_dev = k8s_cluster.host_path(TEST_DEV)
    test_dev.mkdir(parents=True, exist_ok=True)
    os.mknod(test_dev / "fuse", 0o20666, os.makedev(10, 229))
    os.chmod(test_dev / "fuse", 0o666)
    figures: dict[str, float] = {}
    figures["apply_to_ready_s"] = apply_driver(k8s_cluster, rendered_overlay(k8s_cluster))
    try:
        yield figures
    finally:
        started = time.monotonic()
        k8s_cluster.kubectl.run("delete", "-f", "-", "--ignore-not-found", "--wait=true", timeout=240,
                                stdin=k8s_cluster.kubectl.run("kustomize", str(OVERLAY)).stdout)  # fmt: skip
        kube.wait_for("the driver's pods to be gone", lambda: not driver_pods(k8s_cluster), timeout_s=120)
        registry = k8s_cluster.host_path("/var/lib/kubelet/plugins_registry")
        assert not (registry / f"{DRIVER}-reg.sock").exists(), "uninstall leaves no registration socket"
        kube.wait_for("the kubelet to delete the node's slices", lambda: not node_slices(k8s_cluster), timeout_s=120)
        print(f"\n[dra] uninstall: slices gone {time.monotonic() - started:.1f}s after kubectl delete")
        for path in sorted(test_dev.iterdir()):
            path.unlink()
        test_dev.rmdir()


# --- the tests, in order ----------------------------------------------------------------------------------


def test_driver_is_ready_registered_and_publishes_the_node_slice(
    k8s_cluster: cluster.Cluster, dra: dict[str, float]
) -> None:
    log = wait_driver_log(k8s_cluster, "registered with the kubelet as DRA driver fuse.cdi-fuse.io")
    published = one_slice(k8s_cluster)
    spec = published["spec"]
    assert (spec["driver"], spec["nodeName"], spec["pool"]["name"]) == (DRIVER, cluster.NODE_NAME, cluster.NODE_NAME)
    (device,) = spec["devices"]
    assert device["name"] == "fuse"
    assert device["attributes"] == {"major": {"int": 10}, "minor": {"int": 229}, "healthy": {"bool": True}}
    # Kubernetes 1.36 keeps allowMultipleAllocations (DRAConsumableCapacity beta, on): the shared layout.
    assert device.get("allowMultipleAllocations") is True
    owner = published["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Node",
        cluster.NODE_NAME,
        k8s_cluster.node()["metadata"]["uid"],
    )
    assert (k8s_cluster.host_path("/etc/cdi") / "cdi-fuse.io-fuse.yaml").is_file()
    first = re.search(
        r"first registration (\d+) ms after the driver was created, (\d+) ms after the process started", log
    )
    assert first is not None, log
    rss = driver_rss_kib()
    print(
        f"\n[dra] apply -k -> DaemonSet Ready {dra['apply_to_ready_s']:.1f}s; process start -> registered "
        f"{first.group(2)} ms (driver object -> registered {first.group(1)} ms); "
        f"driver RSS {[r // 1024 for r in rss]} MiB"
    )


def test_doctor_sees_the_registered_driver_and_the_api(k8s_cluster: cluster.Cluster, dra: dict[str, float]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cdi_fuse",
            "doctor",
            "--output=json",
            f"--kubeconfig={k8s_cluster.admin_kubeconfig}",
            f"--kubelet-registry-dir={k8s_cluster.host_path('/var/lib/kubelet/plugins_registry')}",
            f"--kubelet-plugins-dir={k8s_cluster.host_path('/var/lib/kubelet/plugins')}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.startswith("{"), f"doctor exited {result.returncode}: {result.stdout}{result.stderr}"
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["dra driver"]["status"] == "ok", checks["dra driver"]
    assert "registered by the kubelet" in checks["dra driver"]["detail"]
    assert checks["dra api"]["status"] == "ok", checks["dra api"]
    assert "resource.k8s.io/v1 is served" in checks["dra api"]["detail"]


def test_pod_with_a_claim_gets_fuse_and_the_claim_is_unprepared_when_it_goes(
    k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str
) -> None:
    objects = workloads.example_objects(EXAMPLE)  # the example as shipped, with the local image
    k8s_cluster.kubectl.apply(objects, namespace=namespace)
    name = workloads.pod_of(objects)["metadata"]["name"]
    pod = k8s_cluster.wait_pod(namespace, name)
    assert pod["spec"]["nodeName"] == cluster.NODE_NAME  # placed by the real scheduler
    workloads.wait_log(k8s_cluster, namespace, name, "hello through FUSE")
    device = exec_sh(k8s_cluster, namespace, name, "stat -c '%F %t:%T' /dev/fuse").stdout.strip()
    assert device == f"character special file {FUSE_DEVICE}"
    rules = exec_sh(k8s_cluster, namespace, name, "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null || true").stdout
    if rules:
        assert any(re.fullmatch(r"c 10:229 rwm?", line) for line in rules.splitlines()), rules
    claim = pod_claim(k8s_cluster, namespace, name)
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"], result["device"]) == (DRIVER, cluster.NODE_NAME, "fuse")
    uid = claim["metadata"]["uid"]
    wait_driver_log(k8s_cluster, f"prepared claim {namespace}/{claim['metadata']['name']} ({uid})")

    k8s_cluster.kubectl.run("delete", "pod", "-n", namespace, name, "--wait=true", timeout=120)
    wait_driver_log(k8s_cluster, f"unprepared claim {namespace}/{claim['metadata']['name']} ({uid})")
    checkpoint = json.loads(
        (k8s_cluster.host_path("/var/lib/kubelet/plugins") / DRIVER / "prepared-claims.json").read_text()
    )
    assert uid not in checkpoint["claims"]


def test_pods_share_the_one_device(k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str) -> None:
    k8s_cluster.kubectl.apply(claim_template(), namespace=namespace)
    names = [workloads.unique("share") for _ in range(4)]
    k8s_cluster.kubectl.apply([claim_pod(n) for n in names], namespace=namespace)
    for name in names:
        k8s_cluster.wait_pod(namespace, name)
        assert_pod_has_fuse(k8s_cluster, namespace, name)
    devices = set()
    share_ids = set()
    for name in names:
        (result,) = pod_claim(k8s_cluster, namespace, name)["status"]["allocation"]["devices"]["results"]
        devices.add(result["device"])
        share_ids.add(result.get("shareID"))
    assert devices == {"fuse"}
    assert None not in share_ids and len(share_ids) == len(names), share_ids
    print(f"\n[dra] {len(names)} pods share device 'fuse' (one shareID each)")


def test_unchanged_pod_with_the_extended_resource_is_served_by_dra(
    k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str
) -> None:
    """No device plugin on the node: the DeviceClass's extendedResourceName (1.36, DRAExtendedResource).

    "No device plugin" is allocatable 0 or absent: after a device plugin goes, the kubelet keeps its capacity
    (110) for a grace period of minutes, so an earlier test's plugin may still show there."""
    assert not k8s_cluster.allocatable(plugin.RESOURCE)
    objects = workloads.example_objects(EXTENDED_EXAMPLE)
    k8s_cluster.kubectl.apply(objects, namespace=namespace)
    name = workloads.pod_of(objects)["metadata"]["name"]
    k8s_cluster.wait_pod(namespace, name)
    workloads.wait_log(k8s_cluster, namespace, name, " /mnt/view fuse")
    status = k8s_cluster.pod(namespace, name)["status"]
    claim_name = status["extendedResourceClaimStatus"]["resourceClaimName"]
    claim = k8s_cluster.api.get(f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{claim_name}")
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["device"]) == (DRIVER, "fuse")


def test_the_driver_may_write_only_its_own_nodes_slices(k8s_cluster: cluster.Cluster, dra: dict[str, float]) -> None:
    token = k8s_cluster.kubectl.exec(
        driver_pod(k8s_cluster), ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"], namespace=NAMESPACE
    ).stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))
    assert claims["kubernetes.io"]["node"]["name"] == cluster.NODE_NAME

    def dry_run_create(node: str, driver: str = DRIVER) -> tuple[int, str]:
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"probe-{node}"},
            "spec": {
                "driver": driver,
                "nodeName": node,
                "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            },
        }
        result = subprocess.run(
            [str(k8s_cluster.bins.path("kubectl")), f"--server={k8s_cluster.apiserver_url}",
             f"--cache-dir={k8s_cluster.base / 'kubectl-cache'}",
             f"--certificate-authority={k8s_cluster.pki.ca.cert}", f"--token={token}",  # type: ignore[union-attr]
             "create", "--dry-run=server", "-f", "-", "-o", "name"],
            input=json.dumps(body), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return result.returncode, result.stdout + result.stderr

    code, output = dry_run_create(cluster.NODE_NAME)
    assert code == 0, output
    code, output = dry_run_create("some-other-node")
    assert code != 0 and "may write only ResourceSlices of its own node 127.0.0.1" in output, output
    code, output = dry_run_create(cluster.NODE_NAME, driver="gpu.example.com")
    assert code != 0 and "only ResourceSlices of driver fuse.cdi-fuse.io" in output, output


def test_kubelet_restart_registers_again_and_the_wiped_slice_comes_back(
    k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str
) -> None:
    registrations = driver_log(k8s_cluster).count("registered with the kubelet as DRA driver")
    generation = one_slice(k8s_cluster)["spec"]["pool"]["generation"]
    k8s_cluster.restart_kubelet()
    k8s_cluster.wait_node_ready()
    wait_driver_log(k8s_cluster, "registered with the kubelet as DRA driver", count=registrations + 1, timeout_s=120)
    kube.wait_for("the node's slice published again", lambda: node_slices(k8s_cluster), timeout_s=60)
    republished = one_slice(k8s_cluster)
    print(f"\n[dra] kubelet restart: slice generation {generation} -> {republished['spec']['pool']['generation']}")
    k8s_cluster.kubectl.apply(claim_template(), namespace=namespace)
    name = workloads.unique("after-restart")
    k8s_cluster.kubectl.apply(claim_pod(name), namespace=namespace)
    k8s_cluster.wait_pod(namespace, name)
    assert_pod_has_fuse(k8s_cluster, namespace, name)


def test_pod_create_to_running_with_a_claim_vs_with_the_device_plugin_resource(
    k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str
) -> None:
    """Figure: the same probe pod, by claim (DRA) and by `resources.limits` (device plugin), same cluster
    and run, interleaved. The device plugin DaemonSet runs next to the driver for this test only."""
    k8s_cluster.kubectl.run("apply", "-k", str(plugin.overlay_dir("default")))
    try:
        k8s_cluster.wait_daemonset(NAMESPACE, plugin.DAEMONSET)
    except kube.WaitTimeoutError:
        for pod in plugin.plugin_pods(k8s_cluster):
            name = pod["metadata"]["name"]
            log = k8s_cluster.kubectl.logs(name, namespace=NAMESPACE)[-3000:]
            print(f"\n{name}: {json.dumps(pod['status'])[:2000]}\n{log}")
        raise
    kube.wait_for(
        "device plugin allocatable", lambda: k8s_cluster.allocatable(plugin.RESOURCE) == plugin.COUNT, timeout_s=120
    )
    try:
        k8s_cluster.kubectl.apply(claim_template(), namespace=namespace)
        times: dict[str, list[float]] = {"claim": [], "device plugin": []}
        for round_ in range(5):
            for kind in ("claim", "device plugin"):
                name = f"t{round_}-{'claim' if kind == 'claim' else 'dp'}"
                pod = claim_pod(name) if kind == "claim" else workloads.probe_pod(name)
                times[kind].append(workloads.create_and_time_running(k8s_cluster, namespace, pod))
                assert workloads.probe_result(k8s_cluster, namespace, name)["mount"] == "ok"
        medians = {k: statistics.median(v) for k, v in times.items()}
        print(
            "\n[dra] pod create -> Running (median of 5, interleaved): "
            + ", ".join(f"{k} {v:.2f}s (all: {', '.join(f'{t:.2f}' for t in times[k])})" for k, v in medians.items())
        )
    finally:
        k8s_cluster.kubectl.run("delete", "daemonset", "-n", NAMESPACE, plugin.DAEMONSET, "--wait=true", timeout=120)
        kube.wait_for("device plugin pods gone", lambda: not device_plugin_pods(k8s_cluster), timeout_s=120)


def test_after_the_device_plugin_is_removed_unchanged_pods_are_served_by_dra(
    k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str
) -> None:
    """Migration: the device plugin ran on this node (previous test) and is gone; the kubelet keeps
    cdi-fuse.io/fuse in the node's capacity with nothing allocatable. What happens to an unchanged pod?"""
    capacity, allocatable = k8s_cluster.capacity(plugin.RESOURCE), k8s_cluster.allocatable(plugin.RESOURCE)
    objects = workloads.example_objects(EXTENDED_EXAMPLE)
    k8s_cluster.kubectl.apply(objects, namespace=namespace)
    name = workloads.pod_of(objects)["metadata"]["name"]
    try:
        k8s_cluster.wait_pod(namespace, name, timeout_s=60)
        outcome = "Running, served by DRA"
    except kube.WaitTimeoutError:
        pod = k8s_cluster.pod(namespace, name)
        outcome = f"{pod['status'].get('phase')}: {json.dumps(pod['status'].get('conditions', []))[:400]}"
    print(
        f"\n[dra] device plugin removed (capacity {capacity}, allocatable {allocatable}): "
        f"extended-resource pod {outcome}"
    )
    assert outcome == "Running, served by DRA"
    workloads.wait_log(k8s_cluster, namespace, name, " /mnt/view fuse")


def test_devices_layout_more_pods_than_devices_and_device_removal(
    k8s_cluster: cluster.Cluster, dra: dict[str, float], namespace: str
) -> None:
    """--sharing devices --count 2 on a test device node: two claims at a time; the device removed and
    back is published as unhealthy and healthy again."""
    apply_driver(k8s_cluster, rendered_overlay(k8s_cluster, args=["--sharing=devices", "--count=2"], test_device=True))
    kube.wait_for(
        "the slice with two devices",
        lambda: [d["name"] for d in one_slice(k8s_cluster)["spec"]["devices"]] == ["fuse-0", "fuse-1"],
        timeout_s=60,
    )
    k8s_cluster.kubectl.apply(claim_template(), namespace=namespace)
    names = [f"count-{i}" for i in range(3)]
    for name in names:
        k8s_cluster.kubectl.apply(claim_pod(name), namespace=namespace)
    kube.wait_for(
        "two pods Running",
        lambda: sum(k8s_cluster.pod(namespace, n)["status"].get("phase") == "Running" for n in names) == 2,
        timeout_s=120,
    )
    time.sleep(5)
    phases = {n: k8s_cluster.pod(namespace, n)["status"].get("phase") for n in names}
    (pending,) = [n for n, phase in phases.items() if phase == "Pending"]
    message = json.dumps(k8s_cluster.pod(namespace, pending)["status"].get("conditions", []))
    print(f"\n[dra] --count 2, 3 pods: {phases}; the third: {message[:300]}")
    first_running = next(n for n, phase in phases.items() if phase == "Running")
    k8s_cluster.kubectl.run("delete", "pod", "-n", namespace, first_running, "--wait=true", timeout=120)
    k8s_cluster.wait_pod(namespace, pending, timeout_s=120)
    assert_pod_has_fuse(k8s_cluster, namespace, pending)

    generation = one_slice(k8s_cluster)["spec"]["pool"]["generation"]
    node = k8s_cluster.host_path(TEST_DEV) / "fuse"
    node.unlink()
    removed = time.monotonic()

    def healthy() -> set[bool]:
        return {d["attributes"]["healthy"]["bool"] for d in one_slice(k8s_cluster)["spec"]["devices"]}

    kube.wait_for("devices published unhealthy", lambda: healthy() == {False}, timeout_s=60)
    print(f"\n[dra] device removed -> slice unhealthy in {time.monotonic() - removed:.2f}s")
    assert one_slice(k8s_cluster)["spec"]["pool"]["generation"] > generation
    os.mknod(node, 0o20666, os.makedev(10, 229))
    kube.wait_for("devices healthy again", lambda: healthy() == {True}, timeout_s=60)
