"""What tests drive: a running containerd plus helpers to run a FUSE-ready container in a fresh pod.

``ContainerdRuntime`` is handed out per test by the ``containerd_runtime`` fixture; it removes the pods it
created when the test ends, while the daemon itself lives for the session.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.e2e.containerd import cri_client, daemon, image

HOST_USR = cri_client.MountSpec("/usr", "/usr", readonly=True)
PAUSE_FOREVER = ("/usr/bin/sleep", "infinity")
CDI_ANNOTATION_PREFIX = "cdi.k8s.io/"


@dataclass
class FuseContainer:
    """A started container (host /usr read-only at /usr, CAP_SYS_ADMIN only) in its own pod."""

    client: cri_client.CriClient
    pod: cri_client.Pod
    container_id: str

    def exec(self, *cmd: str, timeout_s: int = 30) -> cri_client.ExecResult:
        return self.client.exec_sync(self.container_id, cmd, timeout_s=timeout_s)

    def sh(self, script: str, *, timeout_s: int = 30) -> cri_client.ExecResult:
        return self.exec("/bin/sh", "-c", script, timeout_s=timeout_s)


class NodeRuntime(Protocol):
    """What the kubelet emulator drives: a CRI runtime with a CDI spec dir (containerd here, CRI-O too)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def spec_dir(self) -> Path: ...
    @property
    def version(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def cdi_enabled(self) -> bool: ...

    def run_fuse_container(
        self,
        *,
        devices: Sequence[cri_client.DeviceMapping | str] = (),
        cdi_devices: Sequence[str] = (),
        annotations: Mapping[str, str] | None = None,
        mounts: Sequence[cri_client.MountSpec] = (),
        envs: Mapping[str, str] | None = None,
        command: Sequence[str] = PAUSE_FOREVER,
        name: str = "fuse",
    ) -> FuseContainer: ...


@dataclass
class ContainerdRuntime:
    daemon: daemon.ContainerdDaemon
    client: cri_client.CriClient
    _pods: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.daemon.endpoint

    @property
    def spec_dir(self) -> Path:
        return self.daemon.paths.spec_dir

    @property
    def version(self) -> str:
        return self.daemon.version

    @property
    def description(self) -> str:
        return f"containerd {self.version}"

    @property
    def cdi_enabled(self) -> bool:
        return self.daemon.cdi_enabled

    @property
    def image(self) -> str:
        return image.IMAGE_NAME

    def cri_config(self) -> dict[str, Any]:
        """The CRI plugin config containerd reports in ``Status(verbose=true).info["config"]``."""
        config: dict[str, Any] = json.loads(self.client.status(verbose=True).info["config"])
        return config

    def run_fuse_container(
        self,
        *,
        devices: Sequence[cri_client.DeviceMapping | str] = (),
        cdi_devices: Sequence[str] = (),
        annotations: Mapping[str, str] | None = None,
        mounts: Sequence[cri_client.MountSpec] = (),
        envs: Mapping[str, str] | None = None,
        command: Sequence[str] = PAUSE_FOREVER,
        name: str = "fuse",
    ) -> FuseContainer:
        """Run a pod and one started container in it; a plain string device maps a path onto itself.

        Raises :class:`cri_client.CriCallError` (``method`` tells which call) when the runtime refuses; the
        pod is removed then.
        """
        suffix = uuid.uuid4().hex[:8]
        pod = self.client.run_pod(
            cri_client.pod_config(
                f"{name}-{suffix}",
                log_directory=str(self.daemon.paths.pod_logs),
                cgroup_parent=self.daemon.cgroup_parent,
            )
        )
        self._pods.append(pod.id)
        self.daemon.pod_ids.add(pod.id)
        mappings = [cri_client.DeviceMapping(d, d) if isinstance(d, str) else d for d in devices]
        config = cri_client.container_config(
            name,
            image=self.image,
            command=command,
            devices=mappings,
            cdi_devices=cdi_devices,
            annotations=annotations,
            mounts=[HOST_USR, *mounts],
            envs=envs,
        )
        try:
            container_id = self.client.create_container(pod, config)
            self.client.start_container(container_id)
        except BaseException:
            self._remove_pod(pod.id)
            raise
        return FuseContainer(self.client, pod, container_id)

    def _remove_pod(self, pod_id: str) -> None:
        with contextlib.suppress(cri_client.CriCallError):
            self.client.remove_pod(pod_id)
        if pod_id in self._pods:
            self._pods.remove(pod_id)
        self.daemon.pod_ids.discard(pod_id)

    def cleanup(self) -> None:
        for pod_id in list(self._pods):
            self._remove_pod(pod_id)
        self.client.close()


def generate_fuse_spec(spec_dir: Path, vendor: str) -> str:
    """Write the node's fuse CDI spec with the project CLI; return the qualified device name it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "cdi_fuse", "generate", "--spec-dir", str(spec_dir), "--vendor", vendor],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cdi-fuse generate exited {result.returncode}: {result.stderr.strip()}")
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[-1]
