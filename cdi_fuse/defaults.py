"""Every default cdi-fuse uses, in one place: the library's keyword defaults and the CLI's option defaults
read them from here. Imports nothing of ours (like errors.py), so every layer may use it."""

from __future__ import annotations

from pathlib import Path
from typing import Final

# The node's FUSE device and how containers get it.
DEVICE_PATH: Final = Path("/dev/fuse")
CONTAINER_DEVICE_PATH: Final = "/dev/fuse"
PROC_FILESYSTEMS: Final = Path("/proc/filesystems")
SYS_ROOT: Final = Path("/sys")
PERMISSIONS: Final = "rw"

# The CDI name of the device: vendor/class=name.
VENDOR: Final = "cdi-fuse.io"
CLASS: Final = "fuse"
DEVICE_NAME: Final = "fuse"

# The spec dirs the runtimes scan when configured with none, lowest priority first (a device in
# /var/run/cdi overrides one in /etc/cdi). `generate` and the plugin write into the first.
SPEC_DIRS: Final[tuple[Path, ...]] = (Path("/etc/cdi"), Path("/var/run/cdi"))
SPEC_DIR: Final = SPEC_DIRS[0]

# The kubelet device plugin.
PLUGIN_DIR: Final = Path("/var/lib/kubelet/device-plugins")
RESOURCE_NAME: Final = "cdi-fuse.io/fuse"
# The kubelet's default --max-pods: every pod the node can run may hold one share of /dev/fuse.
COUNT: Final = 110
STRATEGY: Final = "auto"

# Where containerd and CRI-O listen by default, in the order a probe tries them.
CONTAINERD_ENDPOINT: Final = "unix:///run/containerd/containerd.sock"
CRIO_ENDPOINT: Final = "unix:///var/run/crio/crio.sock"
RUNTIME_ENDPOINTS: Final[tuple[str, ...]] = (CONTAINERD_ENDPOINT, CRIO_ENDPOINT)
RUNTIME_TIMEOUT_S: Final = 2.0

# Runtime configuration files `runtime-config --apply` edits.
CONTAINERD_CONFIG: Final = Path("/etc/containerd/config.toml")
CRIO_DROP_IN: Final = Path("/etc/crio/crio.conf.d/10-cdi.conf")

# The DRA kubelet plugin (`cdi-fuse dra`): its driver name (also the DeviceClass name), the kubelet's
# plugin-registration directory and the directory its DRA socket and checkpoint go in (<dir>/<driver>/).
DRA_DRIVER: Final = "fuse.cdi-fuse.io"
DRA_REGISTRY_DIR: Final = Path("/var/lib/kubelet/plugins_registry")
DRA_PLUGINS_DIR: Final = Path("/var/lib/kubelet/plugins")
