"""Every example in examples/ on the real node: each mounts its FUSE filesystem in an unprivileged pod
that gets /dev/fuse from the cdi-fuse DaemonSet; the same pod without the resource cannot mount.

The examples run as shipped (examples/pods, the variant for nodes without AppArmor, which this node is)
except that their images are the local examples image (Debian bookworm with the tools, built by
debootstrap: there is no registry here). The AppArmor variant is shown to be rejected by this node.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cluster import cluster, kube, plugin, workloads

PODS = workloads.EXAMPLES / "pods"
FUSE_DEVICE = "a:e5"  # 10:229 as stat %t:%T prints it


def _apply(k8s: cluster.Cluster, namespace: str, objects: list[kube.Obj]) -> None:
    k8s.kubectl.apply(objects, namespace=namespace)


def _exec(k8s: cluster.Cluster, namespace: str, pod: str, script: str) -> subprocess.CompletedProcess[str]:
    return k8s.kubectl.exec(pod, ["sh", "-c", script], namespace=namespace)


def _exec_until(k8s: cluster.Cluster, namespace: str, pod: str, script: str, *, what: str) -> str:
    """Run ``script`` in the pod until it succeeds (a FUSE daemon needs a moment to mount); its output."""

    def attempt() -> str | None:
        result = _exec(k8s, namespace, pod, script)
        return result.stdout if result.returncode == 0 else None

    last = lambda: k8s.kubectl.logs(pod, namespace=namespace)  # noqa: E731
    return str(kube.wait_for(what, attempt, timeout_s=60, last=last))


def _devices_rule(k8s: cluster.Cluster, namespace: str, pod: str) -> str:
    """The container's devices-cgroup list (cgroup v1), or '' where it cannot be read."""
    result = _exec(k8s, namespace, pod, "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null || true")
    return result.stdout


def test_bindfs_example_mounts_with_the_device_from_the_plugin(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    objects = workloads.example_objects(PODS / "bindfs.yaml")
    _apply(k8s_cluster, namespace, objects)
    name = workloads.pod_of(objects)["metadata"]["name"]
    k8s_cluster.wait_pod(namespace, name)
    log = workloads.wait_log(k8s_cluster, namespace, name, "hello through FUSE")
    assert "/data /mnt/view fuse ro," in log
    device = _exec(k8s_cluster, namespace, name, "stat -c '%F %t:%T' /dev/fuse")
    assert device.stdout.strip() == f"character special file {FUSE_DEVICE}"
    rules = _devices_rule(k8s_cluster, namespace, name)
    if rules:
        assert "c 10:229 rw" in rules.splitlines()  # the spec grants rw (no mknod)
    view = _exec(k8s_cluster, namespace, name, "cat /mnt/view/hello.txt; touch /mnt/view/x 2>&1 || true")
    assert view.stdout.splitlines()[0] == "hello through FUSE"
    assert "Read-only file system" in view.stdout


def test_pod_without_the_resource_cannot_mount(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """Control: the same bindfs example without ``cdi-fuse.io/fuse`` has no /dev/fuse and fails."""
    objects = workloads.example_objects(PODS / "bindfs.yaml")
    pod = workloads.pod_of(objects)
    pod["metadata"]["name"] = "fuse-bindfs-without-resource"
    del pod["spec"]["containers"][0]["resources"]
    _apply(k8s_cluster, namespace, objects)
    done = k8s_cluster.wait_pod(namespace, pod["metadata"]["name"], phases=("Failed", "Succeeded"))
    assert done["status"]["phase"] == "Failed"
    log = k8s_cluster.kubectl.logs(pod["metadata"]["name"], namespace=namespace)
    assert "fuse: device not found" in log, log


def test_non_root_example_mounts_through_setuid_fusermount3(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    objects = workloads.example_objects(PODS / "non-root.yaml")
    _apply(k8s_cluster, namespace, objects)
    name = workloads.pod_of(objects)["metadata"]["name"]
    log = workloads.wait_log(k8s_cluster, namespace, name, "hello from uid 1000")
    assert "uid=1000" in log
    # The user's process has no capability: the mount is fusermount3's work.
    assert "CapPrm:\t0000000000000000" in log and "CapEff:\t0000000000000000" in log
    assert "/tmp/data /tmp/view fuse ro," in log
    mounts = _exec(k8s_cluster, namespace, name, "grep ' /tmp/view ' /proc/self/mounts")
    assert "user_id=1000" in mounts.stdout


def test_non_root_example_needs_sys_admin_for_fusermount3(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    objects = workloads.example_objects(PODS / "non-root.yaml")
    pod = workloads.pod_of(objects)
    pod["metadata"]["name"] = "fuse-non-root-without-sys-admin"
    del pod["spec"]["containers"][0]["securityContext"]["capabilities"]
    _apply(k8s_cluster, namespace, objects)
    done = k8s_cluster.wait_pod(namespace, pod["metadata"]["name"], phases=("Failed", "Succeeded"))
    assert done["status"]["phase"] == "Failed"
    log = k8s_cluster.kubectl.logs(pod["metadata"]["name"], namespace=namespace)
    assert "fusermount: mount failed: Operation not permitted" in log, log


def test_non_root_example_needs_privilege_escalation_for_fusermount3(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """With allowPrivilegeEscalation: false (no_new_privs) the setuid bit of fusermount3 is ignored."""
    objects = workloads.example_objects(PODS / "non-root.yaml")
    pod = workloads.pod_of(objects)
    pod["metadata"]["name"] = "fuse-non-root-no-escalation"
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = False
    _apply(k8s_cluster, namespace, objects)
    done = k8s_cluster.wait_pod(namespace, pod["metadata"]["name"], phases=("Failed", "Succeeded"))
    assert done["status"]["phase"] == "Failed"
    log = k8s_cluster.kubectl.logs(pod["metadata"]["name"], namespace=namespace)
    assert "fusermount: mount failed: Operation not permitted" in log, log


@pytest.mark.parametrize(("spelling", "refused"), [("CAP_SYS_ADMIN", True), ("SYS_ADMIN", False)])
def test_api_validation_of_sys_admin_without_privilege_escalation(
    k8s_cluster: cluster.Cluster, namespace: str, spelling: str, refused: bool
) -> None:
    """The API refuses allowPrivilegeEscalation: false next to CAP_SYS_ADMIN -- only in that spelling."""
    pod = workloads.probe_pod(f"escalation-off-{spelling.lower().replace('_', '-')}")
    security = pod["spec"]["containers"][0]["securityContext"]
    security["allowPrivilegeEscalation"] = False
    security["capabilities"]["add"] = [spelling]
    result = k8s_cluster.kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                     stdin=json.dumps(pod), check=False)  # fmt: skip
    assert (result.returncode != 0) is refused, result
    if refused:
        assert "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN" in result.stderr


def test_rclone_example_mounts_a_local_remote(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    objects = workloads.example_objects(PODS / "rclone.yaml")
    _apply(k8s_cluster, namespace, objects)
    name = workloads.pod_of(objects)["metadata"]["name"]
    k8s_cluster.wait_pod(namespace, name)
    seen = _exec_until(
        k8s_cluster,
        namespace,
        name,
        "grep ' /mnt/data ' /proc/self/mounts && cat /mnt/data/readme.txt",
        what="the rclone mount",
    )
    assert "fuse.rclone" in seen
    assert "served by rclone mount" in seen


SSHD_SCRIPT = """
set -e
mkdir -p /run/sshd /srv/share
echo "served over sftp" > /srv/share/greeting.txt
useradd --create-home --password '*' files
install -d -m 0700 -o files -g files /home/files/.ssh
install -m 0600 -o files -g files /etc/sshd-keys/authorized_keys /home/files/.ssh/authorized_keys
chown -R files:files /srv/share
exec /usr/sbin/sshd -D -e -o UsePAM=no -o HostKey=/etc/sshd-keys/host_key -o PasswordAuthentication=no
"""


def _keypair(directory: Path, name: str) -> tuple[str, str]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    return key.read_text(), (directory / f"{name}.pub").read_text().strip()


def test_sshfs_example_mounts_a_directory_of_an_sshd_in_another_pod(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str, tmp_path: Path
) -> None:
    client_key, client_pub = _keypair(tmp_path, "client")
    host_key, host_pub = _keypair(tmp_path, "host")
    server_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sshd-keys"},
        "stringData": {"authorized_keys": client_pub + "\n", "host_key": host_key},
    }
    server = workloads.local_images(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sshd"},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "sshd",
                        "image": "sshd",
                        "command": ["sh", "-c", SSHD_SCRIPT],
                        "ports": [{"containerPort": 22}],
                        "readinessProbe": {"tcpSocket": {"port": 22}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "keys", "mountPath": "/etc/sshd-keys"}],
                    }
                ],
                "volumes": [{"name": "keys", "secret": {"secretName": "sshd-keys", "defaultMode": 0o400}}],
            },
        }
    )
    _apply(k8s_cluster, namespace, [server_secret, server])
    ready = k8s_cluster.wait_pod(namespace, "sshd", ready=True)
    address = ready["status"]["podIP"]

    client_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sshfs-key"},
        "stringData": {"id_ed25519": client_key, "known_hosts": f"{address} {host_pub}\n"},
    }
    objects = workloads.example_objects(PODS / "sshfs.yaml")
    pod = workloads.pod_of(objects)
    (env,) = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "SSHFS_REMOTE"]
    env["value"] = f"files@{address}:/srv/share"
    _apply(k8s_cluster, namespace, [client_secret, *objects])
    name = pod["metadata"]["name"]
    k8s_cluster.wait_pod(namespace, name)
    seen = _exec_until(
        k8s_cluster,
        namespace,
        name,
        "grep ' /mnt/remote ' /proc/self/mounts && cat /mnt/remote/greeting.txt",
        what="the sshfs mount",
    )
    assert "fuse.sshfs" in seen
    assert "served over sftp" in seen


def _buildah_objects(containerfile: str | None) -> list[kube.Obj]:
    objects = workloads.example_objects(PODS / "buildah.yaml")
    if containerfile is not None:
        (config_map,) = [o for o in objects if o["metadata"]["name"] == "buildah-context"]
        config_map["data"]["Containerfile"] = containerfile
    return objects


def test_buildah_example_needs_a_registry_for_its_base_image(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """As shipped it builds FROM busybox, which buildah must pull: offline that is the one thing that fails."""
    objects = _buildah_objects(None)
    _apply(k8s_cluster, namespace, objects)
    name = workloads.pod_of(objects)["metadata"]["name"]
    done = k8s_cluster.wait_pod(namespace, name, phases=("Failed", "Succeeded"), timeout_s=180)
    log = k8s_cluster.kubectl.logs(name, namespace=namespace)
    print(f"\nbuildah example as shipped, offline: {log.strip().splitlines()[-1] if log.strip() else '(no log)'}")
    assert done["status"]["phase"] == "Failed"
    assert "docker.io/library/busybox:1.36" in log
    assert "fuse" not in log.lower() or "fuse-overlayfs" not in log  # it never got to mounting anything


def test_buildah_example_builds_and_mounts_layers_with_fuse_overlayfs(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """The same pod with a base that needs no registry (FROM scratch): build, then the image's layers
    mounted by fuse-overlayfs in the unprivileged pod."""
    objects = _buildah_objects('FROM scratch\nCOPY greeting.txt /greeting.txt\nCMD ["cat", "/greeting.txt"]\n')
    _apply(k8s_cluster, namespace, objects)
    name = workloads.pod_of(objects)["metadata"]["name"]
    done = k8s_cluster.wait_pod(namespace, name, phases=("Failed", "Succeeded"), timeout_s=300)
    log = k8s_cluster.kubectl.logs(name, namespace=namespace)
    assert done["status"]["phase"] == "Succeeded", log
    assert "localhost/greeting" in log
    assert "fuse-overlayfs" in log


def test_user_namespace_example_on_this_node(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """hostUsers: false needs a runtime that reports user-namespace support; containerd 1.7 does not, so
    the kubelet refuses the pod before creating anything. (On a runtime that supports it the same
    manifest must mount: then this test asserts that.)"""
    objects = workloads.example_objects(PODS / "user-namespaces.yaml")
    _apply(k8s_cluster, namespace, objects)
    name = workloads.pod_of(objects)["metadata"]["name"]

    def settled() -> kube.Obj | None:
        pod = k8s_cluster.pod(namespace, name)
        if pod.get("status", {}).get("phase") in ("Running", "Failed", "Succeeded"):
            return pod
        events = k8s_cluster.events(namespace, involving=name)
        return pod if any("user namespace" in e.get("message", "") for e in events) else None

    pod = kube.wait_for("the user-namespace pod to run or be refused", settled, timeout_s=120)
    refusals = sorted(
        {f"{e['reason']}: {e['message']}" for e in k8s_cluster.events(namespace, involving=name)
         if "user namespace" in e.get("message", "")}
    )  # fmt: skip
    status = pod.get("status", {})
    runtime = k8s_cluster.node()["status"]["nodeInfo"]["containerRuntimeVersion"]
    print(f"\nhostUsers: false on {runtime}: phase {status.get('phase')}; {refusals}")
    if status.get("phase") == "Running":
        log = workloads.wait_log(k8s_cluster, namespace, name, "hello from a user namespace")
        assert " /mnt/view fuse" in _exec(k8s_cluster, namespace, name, "cat /proc/self/mounts").stdout, log
    else:
        assert status.get("phase") == "Pending"
        assert refusals == [
            "FailedCreatePodSandBox: Failed to create pod sandbox: can't set `spec.hostUsers: false`, "
            "runtime does not support user namespaces"
        ]


def test_apparmor_variant_is_rejected_on_a_node_without_apparmor(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    rendered = k8s_cluster.kubectl.kustomize(workloads.EXAMPLES / "apparmor")
    (pod,) = [
        workloads.local_images(o) for o in rendered if o["kind"] == "Pod" and o["metadata"]["name"] == "fuse-bindfs"
    ]
    assert pod["spec"]["securityContext"]["appArmorProfile"] == {"type": "Localhost", "localhostProfile": "cdi-fuse"}
    pod["metadata"].pop("namespace", None)
    k8s_cluster.kubectl.apply(pod, namespace=namespace)
    done = k8s_cluster.wait_pod(namespace, "fuse-bindfs", phases=("Failed",))
    assert "AppArmor is not enabled on the host" in done["status"].get("message", ""), done["status"]


def test_doctor_in_the_plugin_pod_names_this_nodes_example_variant(
    k8s_cluster: cluster.Cluster, fuse_plugin: str
) -> None:
    (pod,) = plugin.plugin_pods(k8s_cluster)
    result = k8s_cluster.kubectl.exec(
        pod["metadata"]["name"], ["cdi-fuse", "doctor", "--output", "json", "--device-path", "/host/dev/fuse"],
        namespace=plugin.NAMESPACE,
    )  # fmt: skip
    report = json.loads(result.stdout)
    (security,) = [c for c in report["checks"] if c["name"] == "security"]
    assert "examples/pods" in security["detail"], security
    assert "AppArmor absent" in security["detail"] or "AppArmor disabled" in security["detail"]


def test_pod_create_to_running_with_and_without_the_resource(
    k8s_cluster: cluster.Cluster, fuse_plugin: str, examples_image: str, namespace: str
) -> None:
    """Figure: what asking for /dev/fuse costs at pod start (Allocate + CDI injection), same pod otherwise."""
    rounds = 5
    timings: dict[bool, list[float]] = {True: [], False: []}
    for index in range(rounds):
        for with_resource in (True, False):
            pod = workloads.probe_pod(
                f"timing-{index}-{'fuse' if with_resource else 'none'}", with_resource=with_resource
            )
            timings[with_resource].append(workloads.create_and_time_running(k8s_cluster, namespace, pod))
            result = workloads.probe_result(k8s_cluster, namespace, pod["metadata"]["name"])
            assert (result["mount"] == "ok") is with_resource, result
    with_fuse, without = statistics.median(timings[True]), statistics.median(timings[False])
    every = {key: [round(t, 2) for t in values] for key, values in timings.items()}
    print(
        f"\npod create -> Running, median of {rounds}: with {workloads.RESOURCE} {with_fuse:.2f}s, "
        f"without {without:.2f}s (all: {every[True]} / {every[False]})"
    )
    assert with_fuse < without + 5.0
