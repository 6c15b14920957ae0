"""The Kubernetes binaries the cluster tier runs, from the folder named by ``CDI_FUSE_K8S_BIN``.

No registry this project can reach ships kube-apiserver or the kubelet, so the tier takes them from the
user: a folder with kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd
(etcd may also come from PATH). Without the variable every cluster test skips and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BIN_ENV = "CDI_FUSE_K8S_BIN"
REQUIRE_ENV = "CDI_FUSE_REQUIRE_CLUSTER"
KUBE_TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
ETCD = "etcd"
_KUBE_VERSION_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


class ClusterUnavailableError(Exception):
    """The cluster tier cannot run here; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class K8sBinaries:
    folder: Path
    etcd: Path
    version: str  # kubelet --version, e.g. "v1.36.2"

    def path(self, tool: str) -> Path:
        return self.folder / tool

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        match = _KUBE_VERSION_RE.search(self.version)
        if not match:
            return (0, 0, 0)
        major, minor, patch = (int(part) for part in match.groups())
        return major, minor, patch


def _version(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterUnavailableError(f"{binary} --version failed: {exc}") from exc
    return out.strip().split()[-1] if out.strip() else "unknown"


def find_binaries(environ: dict[str, str] | None = None) -> K8sBinaries:
    """The binaries named by ``$CDI_FUSE_K8S_BIN``; raises with the reason when they are not usable."""
    env = dict(os.environ if environ is None else environ)
    folder_text = env.get(BIN_ENV, "")
    if not folder_text:
        raise ClusterUnavailableError(
            f"{BIN_ENV} is not set: point it at a folder holding {', '.join(KUBE_TOOLS)} and etcd"
        )
    folder = Path(folder_text)
    missing = [tool for tool in KUBE_TOOLS if not os.access(folder / tool, os.X_OK)]
    if missing:
        raise ClusterUnavailableError(f"{BIN_ENV}={folder} lacks executable {', '.join(missing)}")
    etcd = folder / ETCD
    if not os.access(etcd, os.X_OK):
        found = shutil.which(ETCD)
        if found is None:
            raise ClusterUnavailableError(f"no etcd in {folder} or on PATH")
        etcd = Path(found)
    version = _version(folder / "kubelet")
    binaries = K8sBinaries(folder, etcd, version)
    if binaries.version_tuple < (1, 34, 0):
        raise ClusterUnavailableError(
            f"kubelet {version} is older than 1.34 (resource.k8s.io/v1 and the tests need it)"
        )
    return binaries
