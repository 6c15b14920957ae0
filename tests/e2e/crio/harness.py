"""What tests drive: a running CRI-O plus the helper that runs a FUSE-ready container in a fresh pod.

``CrioRuntime`` has the surface of the containerd fixture's runtime (``endpoint``, ``spec_dir``, ``version``,
``cdi_enabled``, ``run_fuse_container``), so the kubelet emulator and the FUSE probe of the containerd tier
drive it unchanged. It removes the pods it created when the test ends; the daemon lives for the session.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.containerd import cri_client, image
from tests.e2e.containerd import test_runtime_injection as injection
from tests.e2e.containerd.harness import HOST_USR, PAUSE_FOREVER, FuseContainer
from tests.e2e.crio import daemon

FUSE = "/dev/fuse"


@dataclass
class CrioRuntime:
    daemon: daemon.CrioDaemon
    client: cri_client.CriClient
    _pods: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.daemon.endpoint

    @property
    def spec_dirs(self) -> tuple[Path, ...]:
        return self.daemon.paths.spec_dirs

    @property
    def spec_dir(self) -> Path:
        """Where tests and the plugin's --generate write specs: CRI-O's first spec dir."""
        return self.spec_dirs[0]

    @property
    def late_spec_dir(self) -> Path:
        """CRI-O's second spec dir, empty when CRI-O started."""
        return self.spec_dirs[1]

    @property
    def version(self) -> str:
        return self.daemon.version

    @property
    def description(self) -> str:
        return f"cri-o {self.version}"

    @property
    def cdi_enabled(self) -> bool:
        return True  # CRI-O has no CDI switch

    @property
    def image(self) -> str:
        return image.IMAGE_NAME

    def status_config(self) -> dict[str, Any]:
        """``Status(verbose=true).info["config"]``: ``{"sandboxImage": ..., "crio": <runtime config>}``."""
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

        The pod and the container use pid namespace CONTAINER, so CRI-O runs no infra container. Raises
        :class:`cri_client.CriCallError` (``method`` tells which call) when CRI-O refuses; the pod is removed.
        """
        pod = self.client.run_pod(
            cri_client.pod_config(
                f"{name}-{uuid.uuid4().hex[:8]}",
                log_directory=str(self.daemon.paths.pod_logs),
                cgroup_parent=self.daemon.paths.cgroup_parent,
            )
        )
        self._pods.append(pod.id)
        self.daemon.pods[pod.id] = []
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
        # The kubelet sends the image as the pod spec names it; CRI-O refuses CreateContainer without it
        # ("user specified image not specified, cannot verify image signature").
        config.image.user_specified_image = self.image
        try:
            container_id = self.client.create_container(pod, config)
            self.daemon.pods[pod.id].append(container_id)
            self.client.start_container(container_id)
        except BaseException:
            self._remove_pod(pod.id)
            raise
        return FuseContainer(self.client, pod, container_id)

    def _remove_pod(self, pod_id: str) -> None:
        with contextlib.suppress(cri_client.CriCallError):
            self.daemon.remove_pod(self.client, pod_id)
        if pod_id in self._pods:
            self._pods.remove(pod_id)

    def cleanup(self) -> None:
        for pod_id in list(self._pods):
            self._remove_pod(pod_id)
        self.client.close()


def device_request(kind: str, cdi_name: str) -> dict[str, Any]:
    """``run_fuse_container`` keyword arguments asking for /dev/fuse the way ``kind`` names.

    Raw devices carry "rw", as the plugin's DeviceSpec does, so every row ends in the same cgroup rule.
    """
    raw = [cri_client.DeviceMapping(FUSE, FUSE, "rw")]
    requests: dict[str, dict[str, Any]] = {
        "cdi_devices": {"cdi_devices": [cdi_name]},
        "annotation": {"annotations": {"cdi.k8s.io/cdi-fuse_e2e": cdi_name}},
        "raw_and_cdi": {"devices": raw, "cdi_devices": [cdi_name]},
        "raw": {"devices": raw},
    }
    return requests[kind]


def assert_fuse_works(container: FuseContainer) -> None:
    """Inside the container: /dev/fuse is the host's char device, ``c <major>:<minor> rw`` is in devices.list
    (cgroup v1), and bindfs mounts, reads and writes both ways, and unmounts."""
    probe = injection._probe(container)
    injection._assert_fuse_works(probe)
    major, minor = injection._host_fuse_numbers()
    assert probe.node_numbers() == (major, minor), probe.node
    if injection.HOST_DEVICES_CGROUP_V1.exists():
        assert f"c {major}:{minor} rw" in probe.cgroup_rules, probe.cgroup_rules
