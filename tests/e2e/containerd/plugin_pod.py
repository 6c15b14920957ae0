"""The real ``cdi-fuse plugin`` as the DaemonSet runs it: a container built from a rendered plugin/deploy overlay.

:func:`plugin_pod_on_node` renders an overlay with the real kustomize, takes its DaemonSet's container and
runs it in the containerd fixture as a CRI container the way the kubelet would: the same arguments, the
same volume mounts (each hostPath mapped onto the test's stand-in for that host path, read-only where the
manifest says so, an emptyDir as a fresh directory), and the same security settings (uid 0, every
capability dropped, no new privileges, read-only root filesystem, RuntimeDefault seccomp). It is then
registered at a fake kubelet, and yields the same :class:`~tests.e2e.containerd.kubelet_emulator.KubeletEmulator`
the subprocess variant does, so ``run_pod()`` admits pods exactly as there.

Only what a test machine cannot offer differs: the container gets the host's /usr, this checkout and the
Python installation read-only (the image has no Python: the plugin image is not built here), it shares the
host's network namespace (the fixture has no CNI), and the metrics port is one the kernel picks instead of 9400.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdi_fuse._proto import cri_pb2
from tests import kustomize
from tests.e2e.containerd import cri_client, harness
from tests.e2e.containerd import kubelet_emulator as emulator
from tests.fakes import kubelet as fake

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "plugin" / "deploy"
CONTAINER_NAME = "cdi-fuse"
METRICS_OPTION = "--metrics-address="
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10
# "<RFC 3339 time> stdout|stderr F|P " in front of every line of a CRI container log
CRI_LOG_PREFIX = re.compile(r"^\S+ (?:stdout|stderr) [FP] ", re.MULTILINE)

Manifest = dict[str, Any]


def daemonset_container(overlay: str) -> tuple[Manifest, Manifest]:
    """The DaemonSet's pod spec and its only container, as `kustomize build plugin/deploy/overlays/<overlay>`."""
    (daemonset,) = [obj for obj in kustomize.build(DEPLOY / "overlays" / overlay) if obj["kind"] == "DaemonSet"]
    pod: Manifest = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


class _ContainerState:
    """What `PluginProcess.process` offers (poll, returncode), read from ContainerStatus."""

    def __init__(self, client: cri_client.CriClient, container_id: str) -> None:
        self._client, self._id = client, container_id
        self.returncode: int | None = None

    def poll(self) -> int | None:
        status = self._client.container_status(self._id).status
        if status.state == cri_pb2.CONTAINER_EXITED:
            self.returncode = status.exit_code
        return self.returncode


class ContainerPlugin(emulator.PluginProcess):
    """The plugin running in a CRI container; its log is the container's CRI log file."""

    def __init__(self, client: cri_client.CriClient, container_id: str, log_path: Path, args: list[str]) -> None:
        self.args = args
        self.log_path = log_path
        self.client = client
        self.container_id = container_id
        self.process = _ContainerState(client, container_id)  # type: ignore[assignment]

    def log(self) -> str:
        try:
            return CRI_LOG_PREFIX.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def exec(self, *cmd: str) -> cri_client.ExecResult:
        return self.client.exec_sync(self.container_id, cmd, timeout_s=30)

    def terminate(self) -> int:
        """StopContainer (SIGTERM, then SIGKILL after the grace period); returns the exit code."""
        if self.process.poll() is None:
            self.client.stop_container(self.container_id, grace_s=STOP_GRACE_S)
        code = self.process.poll()
        assert code is not None, "StopContainer returned while the container still runs"
        return code


@dataclass(frozen=True)
class PluginPod:
    node: emulator.KubeletEmulator
    plugin: ContainerPlugin
    container: Manifest  # the manifest's container, as rendered
    metrics_address: str  # where the plugin's HTTP server listens (the manifest's, with a free port)

    def probe_command(self, kind: str) -> list[str]:
        """The manifest's exec probe `kind` ("readinessProbe"/"livenessProbe"), aimed at this plugin's port."""
        command: list[str] = self.container[kind]["exec"]["command"]
        (manifest_address,) = [a.removeprefix(METRICS_OPTION) for a in self.container["args"] if METRICS_OPTION in a]
        assert manifest_address in command, (manifest_address, command)
        return [self.metrics_address if part == manifest_address else part for part in command]


def _security_context(security: Manifest, pod_security: Manifest) -> cri_pb2.LinuxContainerSecurityContext:
    capabilities = security.get("capabilities", {})
    seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
    assert seccomp == "RuntimeDefault", seccomp
    return cri_pb2.LinuxContainerSecurityContext(
        capabilities=cri_pb2.Capability(
            drop_capabilities=capabilities.get("drop", []), add_capabilities=capabilities.get("add", [])
        ),
        privileged=bool(security.get("privileged", False)),
        run_as_user=cri_pb2.Int64Value(value=security["runAsUser"]),
        run_as_group=cri_pb2.Int64Value(value=security["runAsGroup"]),
        readonly_rootfs=bool(security.get("readOnlyRootFilesystem", False)),
        no_new_privs=security.get("allowPrivilegeEscalation") is False,
        namespace_options=cri_pb2.NamespaceOption(network=cri_pb2.NODE, pid=cri_pb2.CONTAINER, ipc=cri_pb2.POD),
        seccomp=cri_pb2.SecurityProfile(profile_type=cri_pb2.SecurityProfile.RuntimeDefault),
        apparmor=cri_pb2.SecurityProfile(profile_type=cri_pb2.SecurityProfile.Unconfined),  # daemon: disabled
    )


def recursive_read_only_supported(client: cri_client.CriClient) -> bool:
    """Whether the runtime's default handler reports recursive read-only mounts (CRI Status, 1.30+)."""
    handlers = {h.name: h.features for h in client.status().runtime_handlers}
    return "" in handlers and handlers[""].recursive_read_only_mounts


def _mounts(
    pod: Manifest, container: Manifest, host_paths: Mapping[str, Path], work: Path, *, rro_supported: bool
) -> list[cri_pb2.Mount]:
    """The manifest's volume mounts, each hostPath replaced by its stand-in (every one must have one).

    `recursiveReadOnly` is mapped as the kubelet does: Enabled needs the runtime's support, IfPossible
    uses it when the runtime handler reports it.
    """
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            host_path = volume["hostPath"]["path"]
            assert host_path in host_paths, f"no stand-in for the manifest's hostPath {host_path!r}"
            source = host_paths[host_path]
        else:
            assert "emptyDir" in volume, volume
            source = work / "volumes" / mount["name"]
            source.mkdir(parents=True)
        recursive = mount.get("recursiveReadOnly", "Disabled")
        assert recursive != "Enabled" or rro_supported, f"{mount['name']}: recursiveReadOnly Enabled unsupported"
        mounts.append(
            cri_pb2.Mount(
                host_path=str(source),
                container_path=mount["mountPath"],
                readonly=bool(mount.get("readOnly", False)),
                recursive_read_only=recursive in ("Enabled", "IfPossible") and rro_supported,
            )
        )
    return mounts


def _python_mounts() -> list[cri_client.MountSpec]:
    """This checkout (with its .venv) and the Python installation the venv points at, read-only."""
    mounts = [cri_client.MountSpec(str(REPO), str(REPO), readonly=True)]
    if not Path(sys.base_prefix).is_relative_to("/usr"):
        mounts.append(cri_client.MountSpec(sys.base_prefix, sys.base_prefix, readonly=True))
    return mounts


@contextlib.contextmanager
def plugin_pod_on_node(
    runtime: harness.ContainerdRuntime,
    *,
    overlay: str = "default",
    host_paths: Mapping[str, Path] = {},
    extra_mounts: Sequence[cri_client.MountSpec] = (),
) -> Iterator[PluginPod]:
    """Run the overlay's plugin container against a fake kubelet and `runtime`; yield once it is listed.

    Stand-ins: /etc/cdi is the runtime's spec dir, /var/run/cdi an empty dir, the kubelet's device-plugin
    dir a fresh one served by the fake kubelet, /dev the host's /dev; `host_paths` adds or overrides.
    `extra_mounts` stand in for what a real node has and the fixture lacks.
    On a normal exit the plugin must stop on SIGTERM with exit code 0 and remove its socket.
    """
    pod_spec, container = daemonset_container(overlay)
    work = Path(tempfile.mkdtemp(prefix="kpp-", dir="/tmp"))  # AF_UNIX paths: ~107 bytes
    plugin_dir, dynamic_dir = work / "dp", work / "run-cdi"
    plugin_dir.mkdir()
    dynamic_dir.mkdir()
    stand_ins = {
        "/etc/cdi": runtime.spec_dir,
        "/var/run/cdi": dynamic_dir,
        "/var/lib/kubelet/device-plugins": plugin_dir,
        "/dev": Path("/dev"),
        **host_paths,
    }
    # the host's network namespace (no CNI here): port 0, read back from the plugin's log
    args = [METRICS_OPTION + "127.0.0.1:0" if a.startswith(METRICS_OPTION) else a for a in container["args"]]
    command = [str(emulator.PLUGIN_SCRIPT), *container["command"][1:]]
    assert container["command"][0] == emulator.PLUGIN_SCRIPT.name, container["command"]
    resource = emulator.RESOURCE
    qualified_name = f"cdi-fuse.io/{emulator.DEVICE_CLASS}={emulator.DEVICE_NAME}"
    spec_path = runtime.spec_dir / f"cdi-fuse.io-{emulator.DEVICE_CLASS}.yaml"
    client = runtime.client
    daemon = runtime.daemon
    rro_supported = recursive_read_only_supported(client)
    pod: cri_client.Pod | None = None
    plugin: ContainerPlugin | None = None
    print(f"plugin pod from overlays/{overlay} against containerd {runtime.version} (CDI {runtime.cdi_enabled})")
    try:
        with fake.fake_kubelet(plugin_dir) as kubelet:
            pod = client.run_pod(
                cri_client.pod_config(
                    f"cdi-fuse-{uuid.uuid4().hex[:8]}",
                    log_directory=str(daemon.paths.pod_logs),
                    cgroup_parent=daemon.cgroup_parent,
                )
            )
            daemon.pod_ids.add(pod.id)
            config = cri_pb2.ContainerConfig(
                metadata=cri_pb2.ContainerMetadata(name=CONTAINER_NAME),
                image=cri_pb2.ImageSpec(image=runtime.image),
                command=command,
                args=args,
                mounts=[
                    *(
                        cri_pb2.Mount(host_path=m.host_path, container_path=m.container_path, readonly=m.readonly)
                        for m in [harness.HOST_USR, *_python_mounts(), *extra_mounts]
                    ),
                    *_mounts(pod_spec, container, stand_ins, work, rro_supported=rro_supported),
                ],
                log_path=f"{CONTAINER_NAME}.log",
                linux=cri_pb2.LinuxContainerConfig(
                    security_context=_security_context(container["securityContext"], pod_spec["securityContext"])
                ),
            )
            container_id = client.create_container(pod, config)
            client.start_container(container_id)
            log_path = Path(pod.config.log_directory) / config.log_path
            plugin = ContainerPlugin(client, container_id, log_path, [*command, *args])
            _wait_until_listed(kubelet, plugin, resource)
            (serving,) = plugin.wait_for_log(r"serving /metrics.* on http://(127\.0\.0\.1:\d+)$")
            metrics_address = serving.group(1)
            node = emulator.KubeletEmulator(runtime, kubelet, plugin, resource, qualified_name, spec_path)
            yield PluginPod(node, plugin, container, metrics_address)
            socket_path = plugin_dir / kubelet.registrations_of(resource)[0].endpoint
            code = plugin.terminate()
            assert code == 0, f"plugin exited {code} on SIGTERM:\n{plugin.log()}"
            assert not socket_path.exists(), f"plugin left its socket {socket_path}"
    finally:
        if plugin is not None:
            print(f"plugin log:\n{plugin.log()}")
        if pod is not None:
            with contextlib.suppress(cri_client.CriCallError):
                client.remove_pod(pod.id)
            daemon.pod_ids.discard(pod.id)
        with contextlib.suppress(FileNotFoundError):
            spec_path.unlink()
        shutil.rmtree(work, ignore_errors=True)


def _wait_until_listed(kubelet: fake.FakeKubelet, plugin: ContainerPlugin, resource: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not kubelet.registrations_of(resource):
        plugin.assert_running()
        if time.monotonic() >= deadline:
            raise AssertionError(f"plugin pod did not register in {START_TIMEOUT_S}s:\n{plugin.log()}")
        with contextlib.suppress(AssertionError):
            kubelet.wait_for_registrations(1, timeout=0.2)
    conn = kubelet.wait_for_plugin(resource, timeout=max(0.1, deadline - time.monotonic()))
    conn.wait_for_list(lambda response: any(d.health == emulator.HEALTHY for d in response.devices), timeout=5.0)
