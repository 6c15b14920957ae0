"""A small CRI (runtime.v1) client over the project's stubs: the calls a kubelet makes to run one pod.

Pods use the host network (no CNI here) and containers are not privileged: all capabilities dropped but
SYS_ADMIN, which is what a FUSE workload asks for. gRPC errors become :class:`CriCallError`, which names the
call and keeps the status code, so a test can assert *where* a runtime refused something.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, TypeVar

import grpc

from cdi_fuse._proto import cri_pb2, cri_pb2_grpc

CRI_VERSION = "v1"
DEFAULT_TIMEOUT_S = 60.0
NAMESPACE = "cdi-fuse-e2e"
_Response = TypeVar("_Response")


class CriCallError(Exception):
    """A CRI call failed; ``method`` is the RPC name, ``code`` the gRPC status code."""

    def __init__(self, method: str, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(f"{method} failed: {code.name if code else 'UNKNOWN'}: {details}")
        self.method = method
        self.code = code
        self.details = details


class DeviceMapping(NamedTuple):
    host_path: str
    container_path: str
    permissions: str = "rwm"


class MountSpec(NamedTuple):
    host_path: str
    container_path: str
    readonly: bool = True


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __str__(self) -> str:
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


@dataclass(frozen=True)
class Pod:
    id: str
    config: cri_pb2.PodSandboxConfig


def _unconfined() -> cri_pb2.SecurityProfile:
    return cri_pb2.SecurityProfile(profile_type=cri_pb2.SecurityProfile.Unconfined)


def _host_network() -> cri_pb2.NamespaceOption:
    return cri_pb2.NamespaceOption(network=cri_pb2.NODE, pid=cri_pb2.CONTAINER, ipc=cri_pb2.POD)


def pod_config(
    name: str, *, log_directory: str, cgroup_parent: str = "", annotations: Mapping[str, str] | None = None
) -> cri_pb2.PodSandboxConfig:
    uid = uuid.uuid4().hex
    return cri_pb2.PodSandboxConfig(
        metadata=cri_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=NAMESPACE),
        hostname="",  # a host-network pod has no UTS namespace of its own; the kubelet sends none
        log_directory=f"{log_directory}/{uid}",
        annotations=dict(annotations or {}),
        linux=cri_pb2.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=cri_pb2.LinuxSandboxSecurityContext(
                namespace_options=_host_network(), seccomp=_unconfined(), apparmor=_unconfined()
            ),
        ),
    )


def container_config(
    name: str,
    *,
    image: str,
    command: Sequence[str],
    devices: Sequence[DeviceMapping] = (),
    cdi_devices: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    mounts: Sequence[MountSpec] = (),
    envs: Mapping[str, str] | None = None,
    add_capabilities: Sequence[str] = ("SYS_ADMIN",),
) -> cri_pb2.ContainerConfig:
    """A non-privileged container: drop ALL capabilities, add ``add_capabilities`` back."""
    return cri_pb2.ContainerConfig(
        metadata=cri_pb2.ContainerMetadata(name=name),
        image=cri_pb2.ImageSpec(image=image),
        command=list(command),
        envs=[cri_pb2.KeyValue(key=key, value=value.encode()) for key, value in (envs or {}).items()],
        mounts=[
            cri_pb2.Mount(host_path=m.host_path, container_path=m.container_path, readonly=m.readonly) for m in mounts
        ],
        devices=[
            cri_pb2.Device(host_path=d.host_path, container_path=d.container_path, permissions=d.permissions)
            for d in devices
        ],
        CDI_devices=[cri_pb2.CDIDevice(name=cdi_name) for cdi_name in cdi_devices],
        annotations=dict(annotations or {}),
        log_path=f"{name}.log",
        linux=cri_pb2.LinuxContainerConfig(
            security_context=cri_pb2.LinuxContainerSecurityContext(
                capabilities=cri_pb2.Capability(drop_capabilities=["ALL"], add_capabilities=list(add_capabilities)),
                privileged=False,
                namespace_options=_host_network(),
                seccomp=_unconfined(),
                apparmor=_unconfined(),
            )
        ),
    )


class CriClient:
    """Blocking CRI RuntimeService client on a unix socket endpoint (``unix:///path``)."""

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel = grpc.insecure_channel(endpoint)
        self._stub = cri_pb2_grpc.RuntimeServiceStub(self._channel)

    def __enter__(self) -> CriClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, call: Callable[..., _Response], request: object, timeout: float | None) -> _Response:
        try:
            return call(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
            raise CriCallError(method, code, details) from exc

    def version(self, *, timeout: float | None = None) -> cri_pb2.VersionResponse:
        request = cri_pb2.VersionRequest(version=CRI_VERSION)
        return self._call("Version", self._stub.Version, request, timeout)

    def status(self, *, verbose: bool = False) -> cri_pb2.StatusResponse:
        return self._call("Status", self._stub.Status, cri_pb2.StatusRequest(verbose=verbose), None)

    def run_pod(self, config: cri_pb2.PodSandboxConfig) -> Pod:
        request = cri_pb2.RunPodSandboxRequest(config=config)
        response = self._call("RunPodSandbox", self._stub.RunPodSandbox, request, None)
        return Pod(response.pod_sandbox_id, config)

    def remove_pod(self, pod_id: str) -> None:
        """Stop and remove a pod sandbox with its containers (both calls are idempotent in CRI)."""
        stop = cri_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
        self._call("StopPodSandbox", self._stub.StopPodSandbox, stop, None)
        remove = cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
        self._call("RemovePodSandbox", self._stub.RemovePodSandbox, remove, None)

    def create_container(self, pod: Pod, config: cri_pb2.ContainerConfig) -> str:
        request = cri_pb2.CreateContainerRequest(pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config)
        return self._call("CreateContainer", self._stub.CreateContainer, request, None).container_id

    def start_container(self, container_id: str) -> None:
        request = cri_pb2.StartContainerRequest(container_id=container_id)
        self._call("StartContainer", self._stub.StartContainer, request, None)

    def stop_container(self, container_id: str, *, grace_s: int = 0) -> None:
        request = cri_pb2.StopContainerRequest(container_id=container_id, timeout=grace_s)
        self._call("StopContainer", self._stub.StopContainer, request, None)

    def remove_container(self, container_id: str) -> None:
        request = cri_pb2.RemoveContainerRequest(container_id=container_id)
        self._call("RemoveContainer", self._stub.RemoveContainer, request, None)

    def container_status(self, container_id: str, *, verbose: bool = False) -> cri_pb2.ContainerStatusResponse:
        request = cri_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self._call("ContainerStatus", self._stub.ContainerStatus, request, None)

    def exec_sync(self, container_id: str, cmd: Sequence[str], *, timeout_s: int = 30) -> ExecResult:
        request = cri_pb2.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout_s)
        response = self._call("ExecSync", self._stub.ExecSync, request, timeout_s + 10.0)
        return ExecResult(
            response.exit_code,
            response.stdout.decode(errors="replace"),
            response.stderr.decode(errors="replace"),
        )
