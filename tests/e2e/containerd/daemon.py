"""Run a private containerd (CRI + CDI) for one test session and tear it down without a trace.

Everything lives under one short temp dir in /tmp (unix socket paths are limited to ~107 bytes): socket,
root, state, runc roots, CDI spec dir, logs; pods go below a cgroup named after that dir. The config keeps
the daemon off everything shared: random streaming port, no NRI, no CNI (pods use the host network),
``native`` snapshotter, ``restrict_oom_score_adj`` (this sandbox forbids lowering oom_score_adj). The one
shared path left is /run/containerd/s, where 1.7 shims always put their sockets.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from tests.e2e.containerd import cri_client, fetch, image

RUNC = "runc"
TMP_DIR = Path("/tmp")
DIR_PREFIX = "cdfc-"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
MNT_DETACH = 2
CGROUP_ROOT = Path("/sys/fs/cgroup")
# containerd 1.7 shims put their sockets here whatever the state dir is; removed again if we made it.
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"))
# Snapshotters and services that either fail to load here or would touch shared host paths.
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.nri.v1.nri",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


class ContainerdStartError(Exception):
    """The daemon did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class DaemonPaths:
    base: Path

    @property
    def socket(self) -> Path:
        return self.base / "c.sock"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def spec_dir(self) -> Path:
        return self.base / "cdi"

    @property
    def pod_logs(self) -> Path:
        return self.base / "logs"

    @property
    def cni(self) -> Path:
        return self.base / "cni"

    @property
    def cgroup_parent(self) -> str:
        """Pods of this daemon go below this cgroup (cgroupfs driver), removed again at stop."""
        return "/" + self.base.name

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def pid_file(self) -> Path:
        return self.base / "containerd.pid"

    @property
    def log(self) -> Path:
        return self.base / "containerd.log"


def _runc_binary() -> str:
    return shutil.which(RUNC, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "/usr/sbin/runc"


def _runtime_table(paths: DaemonPaths, *, snapshotter: str | None = None) -> dict[str, Any]:
    runc: dict[str, Any] = {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"BinaryName": _runc_binary(), "Root": str(paths.runc_root), "SystemdCgroup": False},
    }
    if snapshotter:
        runc["snapshotter"] = snapshotter
    return {"default_runtime_name": "runc", "runtimes": {"runc": runc}}


def build_config(paths: DaemonPaths, *, cdi_enabled: bool, sandbox_image: str, major_version: int) -> dict[str, Any]:
    """The daemon config: schema version 2 for containerd 1.x, version 3 for 2.x."""
    cni = {"bin_dir": str(paths.cni / "bin"), "conf_dir": str(paths.cni / "conf")}
    common: dict[str, Any] = {
        "root": str(paths.root),
        "state": str(paths.state),
        "disabled_plugins": list(DISABLED_PLUGINS),
        "grpc": {"address": str(paths.socket)},
        "ttrpc": {"address": str(paths.socket) + ".ttrpc"},
        "debug": {"address": "", "level": "info"},
        "metrics": {"address": ""},
    }
    cdi = {"enable_cdi": cdi_enabled, "cdi_spec_dirs": [str(paths.spec_dir)]}
    stream = {"disable_tcp_service": True, "stream_server_address": "127.0.0.1", "stream_server_port": "0"}
    if major_version < 2:
        cri: dict[str, Any] = {
            **cdi,
            **stream,
            "restrict_oom_score_adj": True,
            "sandbox_image": sandbox_image,
            "disable_apparmor": True,
            "enable_selinux": False,
            "containerd": {**_runtime_table(paths), "snapshotter": "native"},
            "cni": cni,
        }
        plugins = {
            "io.containerd.grpc.v1.cri": cri,
            # 1.7's task service needs the legacy v1 runtime loaded; keep its runc state private too.
            "io.containerd.runtime.v1.linux": {"runtime_root": str(paths.runc_root / "v1")},
            "io.containerd.internal.v1.opt": {"path": str(paths.root / "opt")},
        }
        return {"version": 2, **common, "plugins": plugins}
    runtime = {
        **cdi,
        "restrict_oom_score_adj": True,
        "disable_apparmor": True,
        "enable_selinux": False,
        "containerd": _runtime_table(paths, snapshotter="native"),
        "cni": {"bin_dirs": [cni["bin_dir"]], "conf_dir": cni["conf_dir"]},
    }
    images = {"snapshotter": "native", "pinned_images": {"sandbox": sandbox_image}}
    # 2.x's transfer service (CRI image pulls, `ctr images import`) unpacks into the platform's default
    # snapshotter, overlayfs, unless told otherwise; without it the CRI plugin does not load.
    transfer = {"unpack_config": [{"platform": f"linux/{image.oci_arch()}", "snapshotter": "native"}]}
    plugins = {
        "io.containerd.cri.v1.runtime": runtime,
        "io.containerd.cri.v1.images": images,
        "io.containerd.transfer.v1.local": transfer,
        "io.containerd.grpc.v1.cri": stream,
        "io.containerd.internal.v1.opt": {"path": str(paths.root / "opt")},
    }
    return {"version": 3, **common, "plugins": plugins}


@dataclass
class ContainerdDaemon:
    """A running private containerd; use :func:`start_daemon` and always call :meth:`stop`."""

    install: fetch.ContainerdInstall
    paths: DaemonPaths
    cdi_enabled: bool
    process: subprocess.Popen[bytes]
    log_handle: Any = field(repr=False)
    pod_ids: set[str] = field(default_factory=set)  # pods still to remove at stop()
    made_shim_dirs: list[Path] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"unix://{self.paths.socket}"

    @property
    def version(self) -> str:
        return self.install.version

    @property
    def cgroup_parent(self) -> str:
        return self.paths.cgroup_parent

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ctr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.install.ctr), "--address", str(self.paths.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def import_image(self, archive: Path) -> None:
        result = self.ctr("images", "import", "--snapshotter", "native", "--local", str(archive))
        if result.returncode != 0:
            raise ContainerdStartError(f"ctr images import failed: {result.stderr.strip()}")

    def stop(self) -> None:
        """Stop the daemon, its shims and containers, unmount what they left and delete the temp dir."""
        if self.process.poll() is None and self.pod_ids:
            with cri_client.CriClient(self.endpoint, timeout=STOP_TIMEOUT_S) as client:
                for pod_id in list(self.pod_ids):
                    with contextlib.suppress(cri_client.CriCallError):
                        client.remove_pod(pod_id)
                    self.pod_ids.discard(pod_id)
        _terminate(self.process)
        self.log_handle.close()
        clean_leftovers(self.paths)
        for directory in self.made_shim_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: another daemon may still use it


def clean_leftovers(paths: DaemonPaths) -> None:
    """Remove what a stopped (or crashed) daemon leaves: shims, runc containers, mounts, cgroups, files."""
    _kill_shims(paths)
    _delete_runc_containers(paths.runc_root)
    unmount_under(paths.base)
    remove_cgroups(paths.cgroup_parent)
    shutil.rmtree(paths.base, ignore_errors=True)


def _daemon_alive(paths: DaemonPaths) -> bool:
    try:
        pid = int(paths.pid_file.read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    return str(paths.config).encode() in argv


def sweep_stale_daemons(tmp: Path = TMP_DIR) -> list[Path]:
    """Clean up after test sessions that were killed before their teardown ran; return what was swept.

    A dir whose daemon still runs belongs to a live session. A dir without a pid file is only swept when
    older than a minute, so a session that is just starting is left alone.
    """
    swept = []
    for base in tmp.glob(f"{DIR_PREFIX}*"):
        paths = DaemonPaths(base)
        try:
            age_s = time.time() - base.stat().st_mtime
        except OSError:
            continue
        if _daemon_alive(paths) or (not paths.pid_file.exists() and age_s < 60):
            continue
        clean_leftovers(paths)
        swept.append(base)
    if swept and not any(tmp.glob(f"{DIR_PREFIX}*")):
        for directory in SHIM_SOCKET_DIRS:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty; a system containerd keeps its socket in there
    return swept


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def _shim_socket(address: Path, namespace: str, container_id: str) -> Path:
    """Where a 1.7 shim listens: /run/containerd/s/sha256(<containerd address>/<namespace>/<id>)."""
    digest = hashlib.sha256(f"{address}/{namespace}/{container_id}".encode()).hexdigest()
    return SHIM_SOCKET_DIRS[0] / digest


def _kill_shims(paths: DaemonPaths) -> None:
    """Shims outlive containerd; kill the ones started for this daemon (their argv names its socket)."""
    marker = str(paths.socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not (argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(proc.name), signal.SIGKILL)
        options = dict(zip(argv[1::2], argv[2::2], strict=False))
        namespace, container_id = options.get(b"-namespace"), options.get(b"-id")
        if namespace and container_id:
            socket = _shim_socket(paths.socket, namespace.decode(), container_id.decode())
            with contextlib.suppress(OSError):
                socket.unlink()


def _delete_runc_containers(runc_root: Path) -> None:
    if not runc_root.is_dir():
        return
    for namespace_root in [runc_root, *runc_root.iterdir()]:
        if not namespace_root.is_dir():
            continue
        for container in namespace_root.iterdir():
            if (container / "state.json").is_file():
                subprocess.run(
                    [_runc_binary(), "--root", str(namespace_root), "delete", "--force", container.name],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )


def remove_cgroups(parent: str) -> None:
    """rmdir ``parent`` and what runc left below it in every mounted hierarchy (v1 and v2)."""
    relative = parent.strip("/")
    if not relative:
        return
    hierarchies = [CGROUP_ROOT, *(p for p in CGROUP_ROOT.iterdir() if p.is_dir())] if CGROUP_ROOT.is_dir() else []
    for hierarchy in hierarchies:
        top = hierarchy / relative
        if not top.is_dir() or top == hierarchy:
            continue
        children = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True)
        for directory in [*children, top]:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _mountinfo_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4]
            points.append(point.encode().decode("unicode_escape"))
    return points


def unmount_under(base: Path) -> list[str]:
    """Lazily unmount every mount at or below ``base``, deepest first; return what was unmounted."""
    libc = ctypes.CDLL(None, use_errno=True)
    prefix = str(base).rstrip("/") + "/"
    done = []
    for point in sorted((p for p in _mountinfo_points() if p.startswith(prefix)), key=len, reverse=True):
        if libc.umount2(point.encode(), MNT_DETACH) == 0:
            done.append(point)
    return done


def _cri_load_failure(log: Path) -> str | None:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if "failed to load plugin io.containerd.grpc.v1.cri" in line:
            return line
    return None


def _wait_ready(daemon: ContainerdDaemon, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "socket never appeared"
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise ContainerdStartError(f"containerd exited with {daemon.process.returncode}:\n{daemon.log_tail()}")
        cri_failure = _cri_load_failure(daemon.paths.log)
        if cri_failure:
            raise ContainerdStartError(f"containerd did not load its CRI plugin: {cri_failure}")
        if daemon.paths.socket.exists():
            try:
                with cri_client.CriClient(daemon.endpoint) as client:
                    client.version(timeout=2.0)
                return
            except Exception as exc:  # the CRI service may not be registered yet
                last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        time.sleep(0.1)
    raise ContainerdStartError(
        f"containerd did not answer CRI Version within {timeout_s:.0f}s ({last_error}):\n{daemon.log_tail()}"
    )


def start_daemon(
    install: fetch.ContainerdInstall, *, cdi_enabled: bool, sandbox_image: str, image_archive: Path | None
) -> ContainerdDaemon:
    """Start containerd on a private socket and wait until CRI answers; import the image if given."""
    paths = DaemonPaths(Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=TMP_DIR)))
    for directory in (paths.root, paths.state, paths.runc_root, paths.spec_dir, paths.pod_logs):
        directory.mkdir(parents=True)
    config = build_config(
        paths,
        cdi_enabled=cdi_enabled,
        sandbox_image=sandbox_image,
        major_version=install.version_tuple[0],
    )
    paths.config.write_text(tomlkit.dumps(config))
    missing_shim_dirs = [directory for directory in SHIM_SOCKET_DIRS if not directory.exists()]
    env = {**os.environ, "PATH": f"{install.bin_dir}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
    log_handle = paths.log.open("wb")
    process = subprocess.Popen(
        [str(install.containerd), "--config", str(paths.config)],
        stdin=subprocess.DEVNULL,
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    paths.pid_file.write_text(f"{process.pid}\n")
    daemon = ContainerdDaemon(install, paths, cdi_enabled, process, log_handle)
    daemon.made_shim_dirs = missing_shim_dirs
    try:
        _wait_ready(daemon, START_TIMEOUT_S)
        if image_archive is not None:
            daemon.import_image(image_archive)
    except BaseException:
        daemon.stop()
        raise
    return daemon
