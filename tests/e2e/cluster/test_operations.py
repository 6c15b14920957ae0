"""What a cluster admin does to a node running cdi-fuse, on the real kubelet and containerd, with figures:
kubelet restart, containerd restarted with CDI switched off and on while pods are created, a rolling
update of the DaemonSet, a node reboot. Capacity gaps are what the API showed (the node watch), i.e.
what the scheduler saw; the kubelet posts node status every second here."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.cluster import cluster, kube, plugin, workloads

RESOURCE = plugin.RESOURCE
COUNT = plugin.COUNT


def _running_container(k8s: cluster.Cluster, namespace: str, name: str) -> tuple[str, int]:
    (status,) = k8s.pod(namespace, name)["status"]["containerStatuses"]
    return status["containerID"], status["restartCount"]


def _still_mounted(k8s: cluster.Cluster, namespace: str, name: str) -> bool:
    return (
        k8s.kubectl.exec(name, ["grep", "-q", " /tmp/view fuse", "/proc/self/mounts"], namespace=namespace).returncode
        == 0
    )


@dataclass
class PodStream:
    """Creates probe pods one after another in a thread, until stopped; every pod asks for the device."""

    k8s: cluster.Cluster
    namespace: str
    interval_s: float = 1.0
    names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            name = f"stream-{index:03d}"
            try:
                self.k8s.kubectl.apply(workloads.probe_pod(name), namespace=self.namespace)
                self.names.append(name)
            except kube.KubeError as exc:
                self.errors.append(f"{name}: {exc}")
            index += 1
            self._stop.wait(self.interval_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[PodStream]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(30)

    def outcomes(self, *, timeout_s: float = 300.0) -> dict[str, dict[str, str]]:
        """Each pod's probe report, once every pod ran; pods that never start are reported as such."""
        results = {}
        deadline = time.monotonic() + timeout_s
        for name in self.names:
            try:
                pod = self.k8s.wait_pod(
                    self.namespace, name, phases=("Running", "Failed"), timeout_s=max(5.0, deadline - time.monotonic())
                )
            except kube.WaitTimeoutError as exc:
                results[name] = {"error": str(exc)[:300]}
                continue
            status = pod["status"]
            container = (status.get("containerStatuses") or [{}])[0]
            if status["phase"] == "Failed" and not container.get("state", {}).get("terminated"):
                results[name] = {"error": f"{status.get('reason')}: {status.get('message')}"}
            else:
                results[name] = workloads.probe_result(self.k8s, self.namespace, name)
        return results


def _without_fuse(outcomes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {
        name: result
        for name, result in outcomes.items()
        if not result.get("dev-fuse", "").startswith("yes") or result.get("mount") != "ok"
    }


def test_kubelet_restart_keeps_fuse_pods_and_serves_new_ones(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    before = workloads.probe_pod("before-restart")
    k8s_cluster.kubectl.apply(before, namespace=namespace)
    assert workloads.probe_result(k8s_cluster, namespace, "before-restart")["mount"] == "ok"
    container_before = _running_container(k8s_cluster, namespace, "before-restart")
    watch = k8s_cluster.node_watch(RESOURCE)
    try:
        watch.wait_value(lambda v: v == COUNT, timeout_s=30)
        stopped = time.monotonic()
        k8s_cluster.stop_kubelet()
        k8s_cluster.start_kubelet()
        started = time.monotonic()
        k8s_cluster.wait_node_ready()
        back = watch.wait_value(lambda v: v == COUNT, timeout_s=120)
        time.sleep(3)  # a late status update with a lower count would show here
        gaps = watch.gaps_below(COUNT, since=stopped)
    finally:
        watch.stop()
    print(
        f"\nkubelet restart: allocatable {RESOURCE} below {COUNT} for {[round(g * 1000) for g in gaps]} ms "
        f"(API view); kubelet start -> allocatable {COUNT} again {max(0.0, back - started):.2f}s; "
        f"samples {[(round(s.at - stopped, 2), s.value) for s in watch.snapshot() if s.at >= stopped]}"
    )
    assert _running_container(k8s_cluster, namespace, "before-restart") == container_before
    assert _still_mounted(k8s_cluster, namespace, "before-restart")
    after = workloads.probe_pod("after-restart")
    k8s_cluster.kubectl.apply(after, namespace=namespace)
    assert workloads.probe_result(k8s_cluster, namespace, "after-restart") == {"dev-fuse": "yes a:e5", "mount": "ok"}
    assert all(gap < 30 for gap in gaps), gaps


HEALTHZ = """
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen("http://127.0.0.1:9400/healthz", timeout=2).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print(0)
"""


def _healthz(k8s: cluster.Cluster) -> int:
    """The plugin's /healthz status, asked from inside its pod's network (it listens on 127.0.0.1)."""
    (pid,) = k8s.node_processes("plugin") or [0]
    if not pid:
        return -1
    result = k8s.in_pod_network(pid, ["python3", "-I", "-c", HEALTHZ])
    return int(result.stdout.strip() or -1)


def test_healthz_is_not_ready_while_the_kubelet_is_gone(k8s_cluster: cluster.Cluster, fuse_plugin: str) -> None:
    """The plugin cannot hand out the device without a kubelet: /healthz must say so (a dial of
    kubelet.sock), and say ready again once the kubelet is back and the plugin re-registered."""
    assert _healthz(k8s_cluster) == 200
    k8s_cluster.stop_kubelet()
    try:
        stopped = time.monotonic()
        kube.wait_for("healthz to turn 503", lambda: _healthz(k8s_cluster) == 503, timeout_s=30, interval_s=0.1)
        took = time.monotonic() - stopped
    finally:
        k8s_cluster.start_kubelet()
    k8s_cluster.wait_node_ready()
    restarted = time.monotonic()
    kube.wait_for("healthz 200 again", lambda: _healthz(k8s_cluster) == 200, timeout_s=60, interval_s=0.1)
    print(
        f"\nkubelet stopped -> /healthz 503 after {took:.2f}s; kubelet Ready -> 200 after "
        f"{time.monotonic() - restarted:.2f}s"
    )


@pytest.mark.parametrize("overlay", [o for o in ("default", "runtime-aware") if o in plugin.overlays()])
def test_containerd_restarts_with_cdi_off_and_on_never_start_a_pod_without_fuse(
    k8s_cluster: cluster.Cluster, plugin_image: str, examples_image: str, namespace: str, overlay: str
) -> None:
    plugin.ensure_deployed(k8s_cluster, overlay)
    stream = PodStream(k8s_cluster, namespace)
    phases = []
    try:
        with stream.running():
            for cdi in (False, True, False, True):
                time.sleep(4)
                took = k8s_cluster.restart_containerd(cdi_enabled=cdi)
                phases.append((cdi, len(stream.names), round(took, 2)))
            time.sleep(4)
    finally:
        if k8s_cluster.containerd is not None and not k8s_cluster.containerd.cdi_enabled:
            k8s_cluster.restart_containerd(cdi_enabled=True)
    outcomes = stream.outcomes()
    bad = _without_fuse(outcomes)
    print(
        f"\n[{overlay}] containerd restarted (CDI, pods created so far, restart s): {phases}; "
        f"{len(outcomes)} pods created meanwhile, {len(bad)} without a working /dev/fuse: {bad}"
    )
    assert len(outcomes) >= 10
    assert not stream.errors, stream.errors
    assert not bad


def _admission_refusals(outcomes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {name: r for name, r in outcomes.items() if "UnexpectedAdmissionError" in r.get("error", "")}


def test_rolling_update_capacity_gap(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """`kubectl rollout restart` of the DaemonSet while pods are created every 0.5 s. No pod may start
    without the device. With maxUnavailable 1 the old plugin is gone before the new one registers: the
    kubelet has no healthy device for that moment, and a pod the scheduler placed from the node status
    of a second before is refused at admission (UnexpectedAdmissionError): counted and printed."""
    watch = k8s_cluster.node_watch(RESOURCE)
    stream = PodStream(k8s_cluster, namespace, interval_s=0.5)
    try:
        watch.wait_value(lambda v: v == COUNT, timeout_s=30)
        (old,) = plugin.plugin_pods(k8s_cluster)
        started = time.monotonic()
        with stream.running():
            k8s_cluster.kubectl.run("rollout", "restart", "-n", plugin.NAMESPACE, f"daemonset/{plugin.DAEMONSET}")
            kube.wait_for(
                "the new plugin pod",
                lambda: [p for p in plugin.plugin_pods(k8s_cluster) if p["metadata"]["uid"] != old["metadata"]["uid"]],
                timeout_s=60,
            )
            k8s_cluster.wait_daemonset(plugin.NAMESPACE, plugin.DAEMONSET)
            rolled = time.monotonic() - started
            watch.wait_value(lambda v: v == COUNT, timeout_s=60)
            time.sleep(3)
        gaps = watch.gaps_below(COUNT, since=started)
    finally:
        watch.stop()
    outcomes = stream.outcomes(timeout_s=120)
    refused = _admission_refusals(outcomes)
    bad = {name: r for name, r in _without_fuse(outcomes).items() if name not in refused}
    print(
        f"\nrolling update: rollout done in {rolled:.1f}s; allocatable below {COUNT} for "
        f"{[round(g * 1000) for g in gaps]} ms (API view); {len(outcomes)} pods created during it: "
        f"{len(outcomes) - len(refused) - len(bad)} ran with FUSE, {len(refused)} refused at admission "
        f"(UnexpectedAdmissionError), {len(bad)} otherwise"
    )
    assert not bad, bad


def _deployment(name: str) -> kube.Obj:
    pod = workloads.probe_pod(name, restart_policy="Always")
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod["spec"]},
        },
    }


def _pods_of(k8s: cluster.Cluster, namespace: str, app: str) -> list[kube.Obj]:
    return list(k8s.api.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3D{app}").get("items", []))


def test_node_reboot_with_the_kubelet_before_the_plugin(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """Everything on the node stops, /run is emptied, containers are gone; containerd and the kubelet
    start again and the kubelet runs its pods, the plugin's among them. What happens to FUSE pods:
    a bare pod (restartPolicy Always) and a Deployment's pod."""
    k8s_cluster.kubectl.apply(workloads.probe_pod("bare", restart_policy="Always"), namespace=namespace)
    k8s_cluster.kubectl.apply(_deployment("managed"), namespace=namespace)
    assert workloads.probe_result(k8s_cluster, namespace, "bare")["mount"] == "ok"
    (managed_before,) = kube.wait_for(
        "the Deployment's pod", lambda: _pods_of(k8s_cluster, namespace, "managed"), timeout_s=60
    )
    assert workloads.probe_result(k8s_cluster, namespace, managed_before["metadata"]["name"])["mount"] == "ok"
    containers_before = {
        status["containerID"]
        for pod in _pods_of(k8s_cluster, namespace, "managed")
        for status in pod["status"].get("containerStatuses", [])
        if status.get("containerID")
    }
    (plugin_pod,) = plugin.plugin_pods(k8s_cluster)
    restarts_before = plugin_pod["status"]["containerStatuses"][0]["restartCount"]
    watch = k8s_cluster.node_watch(RESOURCE)
    try:
        watch.wait_value(lambda v: v == COUNT, timeout_s=30)
        rebooted = time.monotonic()
        k8s_cluster.reboot_node()

        def plugin_back() -> bool:
            (pod,) = plugin.plugin_pods(k8s_cluster)
            statuses = pod["status"].get("containerStatuses", [])
            return bool(statuses and statuses[0]["restartCount"] > restarts_before and statuses[0].get("ready"))

        def bare_settled() -> kube.Obj | None:
            pod = k8s_cluster.pod(namespace, "bare")
            statuses = pod["status"].get("containerStatuses", [])
            running_again = statuses and statuses[0].get("state", {}).get("running") and statuses[0]["restartCount"]
            return pod if pod["status"].get("phase") == "Failed" or running_again else None

        def managed_running() -> kube.Obj | None:
            for pod in _pods_of(k8s_cluster, namespace, "managed"):
                statuses = pod["status"].get("containerStatuses", [])
                running = statuses[0].get("state", {}).get("running") if statuses else None
                if running and statuses[0].get("ready") and statuses[0].get("containerID") not in containers_before:
                    return pod
            return None

        # Poll all three together, so each time is when that thing happened (to 0.1 s), not when it was asked.
        seen: dict[str, tuple[float, Any]] = {}
        checks = {"plugin": plugin_back, "bare": bare_settled, "managed": managed_running}
        deadline = time.monotonic() + 240
        while len(seen) < len(checks) and time.monotonic() < deadline:
            for key, check in checks.items():
                with contextlib.suppress(kube.KubeError):
                    if key not in seen and (found := check()):
                        seen[key] = (time.monotonic() - rebooted, found)
            time.sleep(0.1)
        assert set(seen) == set(checks), f"after the reboot only {sorted(seen)} settled"
        plugin_ready = seen["plugin"][0]
        bare = seen["bare"][1]
        managed_at, managed = seen["managed"]
        time.sleep(2)
        samples = [sample for sample in watch.snapshot() if sample.at >= rebooted]
        gaps = watch.gaps_below(COUNT, since=rebooted)
    finally:
        watch.stop()
    managed_result = workloads.probe_result(k8s_cluster, namespace, managed["metadata"]["name"])
    replaced = managed["metadata"]["uid"] != managed_before["metadata"]["uid"]
    status = bare["status"]
    print(
        f"\nreboot: plugin container Ready again {plugin_ready:.1f}s after the reboot; allocatable below {COUNT} "
        f"for {[round(g, 1) for g in gaps]} s (samples {[(round(x.at - rebooted, 1), x.value) for x in samples]}); "
        f"bare FUSE pod: phase "
        f"{status.get('phase')} {status.get('reason', '')} {status.get('message', '')}; Deployment's FUSE pod "
        f"running with the device {managed_at:.1f}s after the reboot ({'a new pod' if replaced else 'the same pod'})"
    )
    assert managed_result == {"dev-fuse": "yes a:e5", "mount": "ok"}, managed_result
    if status.get("phase") == "Running":
        assert workloads.probe_result(k8s_cluster, namespace, "bare") == {"dev-fuse": "yes a:e5", "mount": "ok"}
    else:
        # The kubelet admits the pods it already had before the plugin has registered again, and the
        # device manager refuses: a bare pod is lost for good (a controller replaces its pod).
        assert status.get("reason") == "UnexpectedAdmissionError", status
        assert "cannot allocate unhealthy devices cdi-fuse.io/fuse" in status.get("message", ""), status
