"""A real one-node Kubernetes cluster on 127.0.0.1, started from the binaries in ``$CDI_FUSE_K8S_BIN``.

What runs (everything on loopback, every port picked free at start, everything under one temp dir):

- etcd, kube-apiserver (self-signed PKI, ServiceAccount signing key, Node+RBAC authorization,
  NodeRestriction, ``--endpoint-reconciler-type none``, kubelets addressed by hostname),
  kube-controller-manager and kube-scheduler, in the host's namespaces;
- containerd (:mod:`tests.e2e.cluster.runtime`) and the kubelet, in one private mount namespace
  (:mod:`tests.e2e.cluster.mountns`) where /var/lib/kubelet, /var/log, /var/lib/cni, /etc/cdi and /run are
  directories of the temp dir. The node is named ``127.0.0.1``; pods get addresses from a CNI bridge
  (Debian's containernetworking-plugins: bridge + host-local, no gateway, no NAT) whose address the
  fixture sets, so the kubelet's probes reach pod IPs without IP forwarding.

Only one cluster may run on a machine (the kubelet's device-plugin dir is fixed): :func:`cluster_lock`
holds ``flock /run/cdi-fuse-cluster.lock`` for the cluster's whole life. :meth:`Cluster.stop` leaves nothing
behind: processes, mounts (the namespace dies), cgroups, the bridge, iptables chains that appeared, the
sysctls the kubelet changes, the mountpoints made for the namespace. A run that was killed is swept by the
next one (:func:`sweep_stale`), from the record every cluster writes into its temp dir.

Node-side operations for the admin tests: :meth:`Cluster.stop_kubelet` / :meth:`Cluster.start_kubelet`,
:meth:`Cluster.restart_containerd` (with CDI on or off), :meth:`Cluster.reboot_node` (everything on the node
stopped, /run emptied, containers gone, then containerd and the kubelet started again).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from tests.e2e.cluster import binaries, hoststate, kube, mountns, pki, runtime
from tests.e2e.containerd import daemon, fetch

NODE_NAME = "127.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
LOCK_PATH = Path("/run/cdi-fuse-cluster.lock")
TMP_DIR = Path("/tmp")
DIR_PREFIX = "cdfk-"
STATE_FILE = "cluster-state.json"
CNI_BIN_DIR = Path("/usr/lib/cni")
LOCK_TIMEOUT_S = 1800.0
APISERVER_TIMEOUT_S = 120.0
NODE_READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
# Paths the kubelet and containerd use on a node; each is a directory of the temp dir in the namespace.
# Host paths a kubelet or kubectl creates by default; none may appear because of the cluster.
WATCHED_HOST_PATHS = (
    "/usr/libexec/kubernetes",
    "/etc/kubernetes",
    "/root/.kube",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/etc/cdi",
    "/opt/cni",
)
NS_BINDS = {
    "/var/lib/kubelet": "kubelet",
    "/var/log": "log",
    "/var/lib/cni": "cni-cache",
    "/etc/cdi": "etc-cdi",
    "/run": "run",
}


class ClusterStartError(Exception):
    """A component did not come up; the message names it and carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def cluster_lock(path: Path = LOCK_PATH, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """The machine-wide lock every real kubelet is started under."""
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClusterStartError(f"{path} held by another cluster for over {timeout_s:.0f}s") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class HostRecord:
    """What the cluster changed on the host, written to its temp dir so a killed run can be swept."""

    base: str
    cgroup_root: str
    bridge: str
    ns_holder_pid: int = 0
    ns_id: str = ""
    created_mountpoints: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables_chains: dict[str, list[list[str]]] = field(default_factory=dict)

    def save(self) -> None:
        (Path(self.base) / STATE_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, base: Path) -> HostRecord | None:
        try:
            return cls(**json.loads((base / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.log.close()


@dataclass
class Cluster:
    bins: binaries.K8sBinaries
    containerd_install: fetch.ContainerdInstall
    sandbox_image: str
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=TMP_DIR)))
    components: dict[str, Component] = field(default_factory=dict)
    ns: mountns.MountNamespace | None = None
    containerd: runtime.ClusterContainerd | None = None
    pki: pki.ClusterPki | None = None
    ports: dict[str, int] = field(default_factory=dict)
    pod_subnet: ipaddress.IPv4Network | None = None
    record: HostRecord | None = None
    _sysctls: hoststate.SysctlSnapshot | None = None
    _iptables: hoststate.IptablesSnapshot | None = None
    _host_paths_before: frozenset[str] = frozenset()
    timings: dict[str, float] = field(default_factory=dict)

    # -- paths -------------------------------------------------------------------------------------------
    def host_path(self, node_path: str | Path) -> Path:
        """Where a node path (as the kubelet, containerd and hostPath volumes see it) is on this host."""
        text = str(node_path)
        if text.startswith("/var/run/"):
            text = "/run/" + text.removeprefix("/var/run/")
        for inside, name in sorted(NS_BINDS.items(), key=lambda kv: len(kv[0]), reverse=True):
            if text == inside or text.startswith(inside + "/"):
                return self.base / name / text[len(inside) :].lstrip("/")
        return Path(text)

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.base / "admin.kubeconfig"

    @property
    def kubectl(self) -> kube.Kubectl:
        return kube.Kubectl(self.bins.path("kubectl"), self.admin_kubeconfig, self.base / "kubectl-cache")

    @property
    def api(self) -> kube.ApiClient:
        assert self.pki is not None
        return kube.ApiClient(self.apiserver_url, self.pki.ca.cert, self.pki.admin.cert, self.pki.admin.key)

    # -- start -------------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], *, in_ns: bool = False) -> Component:
        self.logs.mkdir(exist_ok=True)
        log_path = self.logs / f"{name}.log"
        log = log_path.open("ab")
        if in_ns:
            assert self.ns is not None
            argv = self.ns.command(argv)
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        component = Component(name, process, log_path, log)
        self.components[name] = component
        return component

    def _check_alive(self, *names: str) -> None:
        for name in names:
            component = self.components.get(name)
            if component is not None and not component.alive():
                raise ClusterStartError(f"{name} exited {component.process.returncode}:\n{component.log_tail()}")

    def start(self, *, sandbox_archive: Path) -> float:
        """Start every component and wait until the node is Ready; return the seconds that took.
        ``sandbox_archive`` is the OCI archive of the pause image (``sandbox_image``), imported first."""
        started = time.monotonic()
        self.base.chmod(0o755)
        self.record = HostRecord(str(self.base), cgroup_root=self.name, bridge="cdfk" + self.name[-8:])
        self.record.save()
        self._sysctls = hoststate.SysctlSnapshot.take()
        self.record.sysctls = dict(self._sysctls.values)
        self._iptables = hoststate.IptablesSnapshot.take()
        self._host_paths_before = frozenset(p for p in WATCHED_HOST_PATHS if Path(p).exists())
        self.record.iptables_chains = {t: sorted(map(list, c)) for t, c in self._iptables.chains.items()}
        self.record.save()
        self.ports = {name: free_port() for name in ("etcd", "etcd_peer", "apiserver", "kubelet")}
        self.pki = pki.make_cluster_pki(self.base / "pki", node_name=NODE_NAME, service_ip=SERVICE_IP)
        self._write_kubeconfigs()
        self._start_etcd()
        self._start_node_runtime()
        assert self.containerd is not None
        self.containerd.import_image(sandbox_archive)
        self._start_apiserver()
        self._wait_apiserver()
        self.timings["apiserver_ready_s"] = time.monotonic() - started
        self._start_controllers()
        self.start_kubelet()
        self.wait_node_ready()
        self.timings["start_to_ready_s"] = time.monotonic() - started
        return self.timings["start_to_ready_s"]

    def _write_kubeconfigs(self) -> None:
        assert self.pki is not None
        ca = self.pki.ca.cert
        for name, pair, user in (
            ("admin", self.pki.admin, "admin"),
            ("controller-manager", self.pki.controller_manager, "system:kube-controller-manager"),
            ("scheduler", self.pki.scheduler, "system:kube-scheduler"),
            ("kubelet", self.pki.kubelet, f"system:node:{NODE_NAME}"),
        ):
            pki.write_kubeconfig(
                self.base / f"{name}.kubeconfig", server=self.apiserver_url, ca=ca, client=pair, user=user
            )

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._spawn(
            "etcd",
            [
                str(self.bins.etcd), "--name", "node", "--data-dir", str(self.base / "etcd"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"node={peer}", "--unsafe-no-fsync", "--log-level", "warn",
            ],
        )  # fmt: skip

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        p = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.bins.path("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={p.apiserver.cert}",
                f"--tls-private-key-file={p.apiserver.key}",
                f"--client-ca-file={p.ca.cert}",
                f"--service-account-key-file={p.service_account_pub}",
                f"--service-account-signing-key-file={p.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={p.apiserver_kubelet_client.cert}",
                f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
                "--kubelet-preferred-address-types=Hostname,InternalIP",
                "--endpoint-reconciler-type=none",
                "--runtime-config=resource.k8s.io/v1=true",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _wait_apiserver(self) -> None:
        deadline = time.monotonic() + APISERVER_TIMEOUT_S
        api = self.api
        last = ""
        while time.monotonic() < deadline:
            self._check_alive("etcd", "kube-apiserver")
            try:
                status, body = api.raw_get("/readyz", timeout=5)
                if status == 200:
                    return
                last = f"{status} {body[-200:]}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ClusterStartError(
            f"kube-apiserver not ready in {APISERVER_TIMEOUT_S:.0f}s ({last}):\n"
            f"{self.components['kube-apiserver'].log_tail()}"
        )

    def _start_controllers(self) -> None:
        assert self.pki is not None
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bins.path("kube-controller-manager")),
                f"--kubeconfig={self.base / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={self.base / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={self.base / 'controller-manager.kubeconfig'}",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                f"--root-ca-file={self.pki.ca.cert}",
                "--use-service-account-credentials=true",
                # Its default is /usr/libexec/kubernetes/..., which it would create on the host.
                f"--flex-volume-plugin-dir={self.base / 'controller-manager-volume-plugins'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.bins.path("kube-scheduler")),
                f"--kubeconfig={self.base / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={self.base / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={self.base / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )

    def _start_node_runtime(self) -> None:
        """Namespace, cgroup root, CNI bridge and config, containerd (CDI on) with the sandbox image."""
        assert self.record is not None
        self.ns = mountns.MountNamespace.create()
        self.record.ns_holder_pid, self.record.ns_id = self.ns.holder.pid, self.ns.ns_id
        self.record.save()
        for inside, name in NS_BINDS.items():
            (self.base / name).mkdir(exist_ok=True)
            self.ns.bind(self.base / name, Path(inside))
            self.record.created_mountpoints = [str(p) for p in self.ns.created_mountpoints]
            self.record.save()
        (self.base / "run" / "cdi").mkdir(exist_ok=True)
        for sub in ("pods", "containers"):
            (self.base / "log" / sub).mkdir(exist_ok=True)
        hoststate.create_cgroup_root(self.record.cgroup_root)
        self.pod_subnet = hoststate.free_pod_subnet()
        hoststate.create_bridge(self.record.bridge, self.pod_subnet)
        cni_conf = self.base / "cni-conf"
        cni_conf.mkdir(exist_ok=True)
        (cni_conf / "10-cdi-fuse-test.conflist").write_text(json.dumps(self._cni_config(), indent=1))
        self.containerd = runtime.ClusterContainerd(
            install=self.containerd_install,
            paths=daemon.DaemonPaths(self.base / "containerd"),
            ns=self.ns,
            host_run=self.base / "run",
            cni_bin_dir=CNI_BIN_DIR,
            cni_conf_dir=cni_conf,
            sandbox_image=self.sandbox_image,
        )
        self.timings["containerd_start_s"] = self.containerd.start(cdi_enabled=True)

    def _cni_config(self) -> dict[str, Any]:
        assert self.pod_subnet is not None and self.record is not None
        hosts = list(self.pod_subnet.hosts())
        return {
            "cniVersion": "1.0.0",
            "name": "cdi-fuse-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.record.bridge,
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.pod_subnet), "rangeStart": str(hosts[9])}]],
                        "dataDir": str(self.base / "cni-ipam"),
                    },
                }
            ],
        }

    def kubelet_config(self) -> dict[str, Any]:
        assert self.pki is not None and self.record is not None
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": "/" + self.record.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{runtime.SOCKET_IN_NS}",
            "address": "127.0.0.1",
            "port": self.ports["kubelet"],
            "healthzPort": 0,
            "readOnlyPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "resolvConf": "/etc/resolv.conf",
            "maxPods": 110,
            # Status every second so capacity changes reach the API quickly (the gaps are measured there).
            "nodeStatusUpdateFrequency": "1s",
            "nodeStatusReportFrequency": "1s",
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "staticPodPath": "",
            # Its default is under /usr/libexec, which the kubelet would create on the host.
            "volumePluginDir": "/var/lib/kubelet/volume-plugins",
            "shutdownGracePeriod": "0s",
        }

    def start_kubelet(self) -> Component:
        config_path = self.base / "kubelet-config.yaml"
        config_path.write_text(yaml.safe_dump(self.kubelet_config()))
        return self._spawn(
            "kubelet",
            [
                str(self.bins.path("kubelet")),
                f"--config={config_path}",
                f"--kubeconfig={self.base / 'kubelet.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                "--v=2",
            ],
            in_ns=True,
        )

    def stop_kubelet(self, *, kill: bool = False) -> None:
        component = self.components.pop("kubelet", None)
        if component is not None:
            component.stop(kill=kill)

    def restart_kubelet(self) -> None:
        self.stop_kubelet()
        self.start_kubelet()

    def restart_containerd(self, *, cdi_enabled: bool | None = None) -> float:
        assert self.containerd is not None
        return self.containerd.restart(cdi_enabled=cdi_enabled)

    def reboot_node(self, *, before_kubelet: Any = None) -> None:
        """Stop the kubelet and containerd, kill every container, empty /run (a tmpfs on a real node),
        then start containerd and the kubelet again. ``before_kubelet()`` runs between the two starts."""
        assert self.containerd is not None and self.record is not None
        self.stop_kubelet(kill=True)
        self.containerd.stop(kill=True)
        hoststate.remove_cgroup_root(self.record.cgroup_root)
        self.containerd.teardown()
        assert self.ns is not None
        self.ns.kill_all()
        run = self.base / "run"
        self.ns.run(
            ["sh", "-c", "grep -o ' /run/[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l"], check=False
        )
        for child in run.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        (run / "cdi").mkdir()
        shutil.rmtree(self.containerd.paths.state, ignore_errors=True)
        hoststate.create_cgroup_root(self.record.cgroup_root)
        self.containerd.start()
        if before_kubelet is not None:
            before_kubelet()
        self.start_kubelet()

    def bind_node_path(self, node_path: str, same_as: str) -> None:
        """Make ``node_path`` show the same directory as ``same_as`` on the node (e.g. a distribution's
        kubelet dir); the host mountpoint made for it is removed at stop."""
        assert self.ns is not None and self.record is not None
        source = self.host_path(same_as)
        source.mkdir(parents=True, exist_ok=True)
        self.ns.bind(source, Path(node_path))
        self.record.created_mountpoints = [str(p) for p in self.ns.created_mountpoints]
        self.record.save()

    # -- queries -----------------------------------------------------------------------------------------
    def node(self) -> kube.Obj:
        return self.api.get(f"/api/v1/nodes/{NODE_NAME}")

    def node_ready(self) -> bool:
        try:
            conditions = self.node().get("status", {}).get("conditions", [])
        except kube.KubeError:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def wait_node_ready(self, timeout_s: float = NODE_READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive("etcd", "kube-apiserver", "kubelet")
            if self.node_ready():
                return
            time.sleep(0.1)
        try:
            conditions = self.node().get("status", {}).get("conditions", [])
        except kube.KubeError as exc:
            conditions = [str(exc)]
        raise ClusterStartError(
            f"node {NODE_NAME} not Ready in {timeout_s:.0f}s: {conditions}\n{self.components['kubelet'].log_tail()}"
        )

    def allocatable(self, resource: str) -> int | None:
        value = self.node().get("status", {}).get("allocatable", {}).get(resource)
        return int(value) if value is not None else None

    def capacity(self, resource: str) -> int | None:
        value = self.node().get("status", {}).get("capacity", {}).get(resource)
        return int(value) if value is not None else None

    def node_processes(self, *argv_words: str) -> list[int]:
        """Pids of processes in this node's pods (below its cgroup root) whose argv contains every word."""
        assert self.record is not None
        marker = f"/{self.record.cgroup_root}/"
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker not in (proc / "cgroup").read_text():
                    continue
                argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
                if all(word in argv for word in argv_words):
                    found.append(int(proc.name))
        return found

    def in_pod_network(self, pid: int, argv: list[str], *, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run a host command in the network namespace of a pod's process (e.g. to reach its 127.0.0.1),
        which works while the kubelet is down, unlike ``kubectl exec``."""
        return subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def node_watch(self, resource: str) -> kube.NodeWatch:
        return kube.NodeWatch(self.api, NODE_NAME, resource).start()

    # -- workloads --------------------------------------------------------------------------------------
    def create_namespace(self, name: str, *, labels: dict[str, str] | None = None) -> str:
        """A namespace pods can run in at once: its default ServiceAccount exists, and the ConfigMap this
        fork's token volumes also project (``openshift-service-ca.crt``, not optional there) is present."""
        assert self.pki is not None
        meta: dict[str, Any] = {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "privileged", **(labels or {})},
        }
        self.kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        self.kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "openshift-service-ca.crt", "namespace": name},
                "data": {"service-ca.crt": self.pki.ca.cert.read_text()},
            }
        )
        kube.wait_for(
            f"ServiceAccount default in {name}",
            lambda: self.api.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
            timeout_s=60,
        )
        return name

    def delete_namespace(self, name: str, *, wait: bool = False) -> None:
        self.kubectl.run(
            "delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}", check=False, timeout=180
        )

    def pod(self, namespace: str, name: str) -> kube.Obj:
        return self.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def wait_pod(
        self,
        namespace: str,
        name: str,
        *,
        phases: tuple[str, ...] = ("Running",),
        ready: bool = False,
        timeout_s: float = 120.0,
    ) -> kube.Obj:
        """Wait until the pod is in one of ``phases`` (and Ready when asked); return it."""

        def check() -> kube.Obj | None:
            pod = self.pod(namespace, name)
            status = pod.get("status", {})
            if status.get("phase") not in phases:
                return None
            if ready and not any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])):
                return None
            return pod

        return kube.wait_for(
            f"pod {namespace}/{name} in {phases}{' and Ready' if ready else ''}",
            check,
            timeout_s=timeout_s,
            last=lambda: json.dumps(self.pod(namespace, name).get("status", {}))[:1500],
        )

    def wait_daemonset(self, namespace: str, name: str, *, timeout_s: float = 180.0) -> kube.Obj:
        """Wait until every scheduled pod of the DaemonSet is updated and Ready; return the DaemonSet."""

        def check() -> kube.Obj | None:
            ds = self.api.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")
            status = ds.get("status", {})
            wanted = status.get("desiredNumberScheduled", 0)
            done = (
                status.get("observedGeneration") == ds["metadata"]["generation"]
                and wanted > 0
                and status.get("updatedNumberScheduled") == wanted
                and status.get("numberReady") == wanted
                and status.get("numberAvailable") == wanted
            )
            return ds if done else None

        return kube.wait_for(
            f"DaemonSet {namespace}/{name} rolled out and Ready",
            check,
            timeout_s=timeout_s,
            last=lambda: json.dumps(
                self.api.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}").get("status", {})
            ),
        )

    def events(self, namespace: str, *, involving: str | None = None) -> list[kube.Obj]:
        selector = f"?fieldSelector=involvedObject.name%3D{involving}" if involving else ""
        return list(self.api.get(f"/api/v1/namespaces/{namespace}/events{selector}").get("items", []))

    # -- stop --------------------------------------------------------------------------------------------
    def stop(self) -> dict[str, Any]:
        """Stop everything and put the host back; return what had to be restored (for the report)."""
        restored: dict[str, Any] = {}
        self.stop_kubelet()
        for name in ("kube-scheduler", "kube-controller-manager"):
            component = self.components.pop(name, None)
            if component is not None:
                component.stop()
        if self.record is not None:
            restored["cgroups_left"] = hoststate.remove_cgroup_root(self.record.cgroup_root)
        if self.containerd is not None:
            self.containerd.teardown()
        if self.ns is not None:
            self.ns.close()
        for name in ("kube-apiserver", "etcd"):
            component = self.components.pop(name, None)
            if component is not None:
                component.stop()
        if self.record is not None:
            restored["cgroups_left"] = hoststate.remove_cgroup_root(self.record.cgroup_root)
            hoststate.delete_link(self.record.bridge)
        if self._sysctls is not None:
            restored["sysctls"] = self._sysctls.restore()
        if self._iptables is not None:
            restored["iptables_chains"] = self._iptables.remove_new_chains()
        keep = os.environ.get("CDI_FUSE_CLUSTER_LOG_DIR")
        if keep and self.logs.is_dir():
            shutil.copytree(self.logs, Path(keep) / self.name, dirs_exist_ok=True)
        daemon.unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        return restored


def sweep_stale(tmp: Path = TMP_DIR) -> list[Path]:
    """Clean up after clusters whose run was killed before teardown. Call with the cluster lock held:
    then no live cluster exists, and every ``cdfk-*`` dir is stale."""
    swept = []
    for base in tmp.glob(f"{DIR_PREFIX}*"):
        record = HostRecord.load(base)
        marker = str(base).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                in_ns = record is not None and record.ns_id and os.readlink(proc / "ns/mnt") == record.ns_id
                if in_ns or marker in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
        if record is not None:
            time.sleep(0.2)
            hoststate.remove_cgroup_root(record.cgroup_root)
            hoststate.delete_link(record.bridge)
            for key, value in record.sysctls.items():
                with contextlib.suppress(OSError):
                    (Path("/proc/sys") / key).write_text(value + "\n")
            for mountpoint in sorted(record.created_mountpoints, key=len, reverse=True):
                with contextlib.suppress(OSError):
                    Path(mountpoint).rmdir()
        daemon.unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        swept.append(base)
    return swept


def leftovers(stopped: Cluster) -> list[str]:
    """What a stopped cluster left on the host (empty when the teardown was complete)."""
    found = []
    record = stopped.record
    if stopped.base.exists():
        found.append(f"temp dir {stopped.base}")
    marker = str(stopped.base).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if record is not None and record.ns_id and os.readlink(proc / "ns/mnt") == record.ns_id:
                found.append(f"process {proc.name} in the cluster's mount namespace")
            elif marker in (proc / "cmdline").read_bytes():
                found.append(f"process {proc.name} running from {stopped.base}")
    if record is not None:
        for hierarchy in hoststate._hierarchies():
            if (hierarchy / record.cgroup_root).exists():
                found.append(f"cgroup {hierarchy / record.cgroup_root}")
        if hoststate.link_exists(record.bridge):
            found.append(f"network link {record.bridge}")
        for mountpoint in record.created_mountpoints:
            if Path(mountpoint).exists():
                found.append(f"mountpoint {mountpoint}")
    if stopped._sysctls is not None and stopped._sysctls.changed():
        found.append(f"sysctls {stopped._sysctls.changed()}")
    for path in WATCHED_HOST_PATHS:
        if path not in stopped._host_paths_before and Path(path).exists():
            found.append(f"host path {path}")
    if stopped._iptables is not None and stopped._iptables.new_chains():
        found.append(f"iptables chains {stopped._iptables.new_chains()}")
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            if str(stopped.base) in line.split()[4]:
                found.append(f"mount {line.split()[4]}")
    return found
