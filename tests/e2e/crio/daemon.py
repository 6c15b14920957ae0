"""Run a private CRI-O for one test session from binaries the tester supplies, and leave no trace.

No registry ships CRI-O for this machine, so the tier runs only when ``$CDI_FUSE_CRIO_BIN`` names a
directory holding ``crio`` and ``pinns`` (``conmon`` there or on PATH, Debian's works; ``runc`` on PATH).

Everything lives under one short temp dir in /tmp (unix socket paths are limited to ~107 bytes): socket,
storage root and runroot (``vfs``), runc root, namespaces, exits, logs, the CDI spec dirs, the image
signature policy and auth dirs (CRI-O's defaults write into /etc/crio and /var/run/nri). A config dir of
our own keeps the host's /etc/crio/crio.conf.d out. NRI, metrics and CNI are off (pods use the host
network). Pods go below a cgroup named after the temp dir (``cgroupfs``).

This sandbox's root lacks CAP_SYS_RESOURCE, and CRI-O writes oom_score_adj -998 for an infra container with
no switch to avoid it; pods therefore use pid namespace CONTAINER (the kubelet default), for which CRI-O
drops the infra container. The pause image is still checked for, so the e2e image is loaded into the
storage with podman before CRI-O starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from tests.e2e.containerd import cri_client
from tests.e2e.containerd import daemon as containerd_daemon

BIN_ENV = "CDI_FUSE_CRIO_BIN"
MIN_VERSION = (1, 33)  # reports crio.CDISpecDirs in Status(verbose)
TMP_DIR = Path("/tmp")
DIR_PREFIX = "cdfr-"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PODMAN_TIMEOUT_S = 300.0
SEARCH_PATH = ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VERSION_RE = re.compile(r"\bversion\s+v?(\d+)\.(\d+)\.(\d+)")


class CrioUnavailableError(Exception):
    """CRI-O cannot run here; the message says why (the tier skips with it)."""


class CrioStartError(Exception):
    """The daemon did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class CrioInstall:
    bin_dir: Path
    crio: Path
    pinns: Path
    conmon: Path
    runc: Path
    podman: Path
    version: str  # e.g. "1.37.0"
    version_tuple: tuple[int, int, int]


def _which(tool: str, *dirs: Path) -> Path | None:
    search = ":".join(str(d) for d in dirs) + ":" + os.environ.get("PATH", "") + SEARCH_PATH
    found = shutil.which(tool, path=search)
    return Path(found) if found else None


def parse_version(text: str) -> tuple[str, tuple[int, int, int]]:
    """The version in ``crio --version`` output (``crio version 1.37.0`` and build details)."""
    match = _VERSION_RE.search(text)
    if not match:
        raise CrioUnavailableError(f"cannot read a version from crio --version output {text[:200]!r}")
    major, minor, patch = (int(group) for group in match.groups())
    return f"{major}.{minor}.{patch}", (major, minor, patch)


def find_install(environ: dict[str, str] | None = None) -> CrioInstall:
    """The CRI-O binaries named by ``$CDI_FUSE_CRIO_BIN`` plus the host tools it needs, or why not."""
    env = os.environ if environ is None else environ
    raw = env.get(BIN_ENV, "")
    if not raw:
        raise CrioUnavailableError(
            f"set {BIN_ENV} to a directory holding crio and pinns (CRI-O >= {'.'.join(map(str, MIN_VERSION))})"
        )
    bin_dir = Path(raw)
    tools: dict[str, Path] = {}
    for tool in ("crio", "pinns"):
        path = bin_dir / tool
        if not os.access(path, os.X_OK):
            raise CrioUnavailableError(f"{path} is missing or not executable ({BIN_ENV}={raw})")
        tools[tool] = path
    for tool in ("conmon", "runc", "podman"):
        found = _which(tool, bin_dir)
        if found is None:
            raise CrioUnavailableError(f"{tool} is not in {bin_dir} nor on PATH (make system-deps installs it)")
        tools[tool] = found
    try:
        out = subprocess.run(
            [str(tools["crio"]), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CrioUnavailableError(f"{tools['crio']} --version failed: {exc}") from exc
    version, version_tuple = parse_version(out)
    if version_tuple[:2] < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise CrioUnavailableError(f"CRI-O {version} is older than {wanted} (no spec dirs in its Status)")
    return CrioInstall(
        bin_dir, tools["crio"], tools["pinns"], tools["conmon"], tools["runc"], tools["podman"], version, version_tuple
    )


@dataclass(frozen=True)
class CrioPaths:
    base: Path

    @property
    def socket(self) -> Path:
        return self.base / "crio.sock"

    @property
    def config(self) -> Path:
        return self.base / "crio.conf"

    @property
    def config_dir(self) -> Path:
        return self.base / "crio.conf.d"

    @property
    def storage(self) -> Path:
        return self.base / "storage"

    @property
    def runroot(self) -> Path:
        return self.base / "run"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def spec_dirs(self) -> tuple[Path, Path]:
        """CRI-O's CDI spec dirs: the first for specs written up front, the second stays empty at start."""
        return self.base / "cdi", self.base / "cdi-late"

    @property
    def pod_logs(self) -> Path:
        return self.base / "logs"

    @property
    def pid_file(self) -> Path:
        return self.base / "crio.pid"

    @property
    def log(self) -> Path:
        return self.base / "crio.log"

    @property
    def cgroup_parent(self) -> str:
        return "/" + self.base.name

    def private_dirs(self) -> list[Path]:
        names = ("ns", "exits", "attach", "net", "cni-bin", "auth", "policies", "keys", "podman-tmp")
        return [self.base / name for name in names]


def build_config(
    paths: CrioPaths, install: CrioInstall, *, pause_image: str, pause_command: str, spec_dirs: list[Path]
) -> dict[str, Any]:
    """The crio.conf of a private daemon (TOML tables as dicts)."""
    base = paths.base
    return {
        "crio": {
            "root": str(paths.storage),
            "runroot": str(paths.runroot),
            "storage_driver": "vfs",
            "log_dir": str(paths.pod_logs),
            "version_file": str(base / "version"),
            "version_file_persist": "",
            "clean_shutdown_file": str(base / "clean.shutdown"),
            "api": {"listen": str(paths.socket), "stream_address": "127.0.0.1", "stream_port": "0"},
            "runtime": {
                "default_runtime": "runc",
                "cgroup_manager": "cgroupfs",
                "conmon": str(install.conmon),
                "conmon_cgroup": "pod",
                "cdi_spec_dirs": [str(d) for d in spec_dirs],
                "namespaces_dir": str(base / "ns"),
                "pinns_path": str(install.pinns),
                "container_exits_dir": str(base / "exits"),
                "container_attach_socket_dir": str(base / "attach"),
                "decryption_keys_path": str(base / "keys"),
                "hooks_dir": [],
                "selinux": False,
                "drop_infra_ctr": True,
                "log_level": "info",
                "runtimes": {
                    "runc": {
                        "runtime_path": str(install.runc),
                        "runtime_type": "oci",
                        "runtime_root": str(paths.runc_root),
                        "monitor_path": str(install.conmon),
                    }
                },
            },
            "image": {
                "pause_image": pause_image,
                "pause_command": pause_command,
                "signature_policy": str(base / "policy.json"),
                "signature_policy_dir": str(base / "policies"),
                "namespaced_auth_dir": str(base / "auth"),
            },
            "network": {"network_dir": str(base / "net"), "plugin_dirs": [str(base / "cni-bin")]},
            "nri": {"enable_nri": False},
            "metrics": {"enable_metrics": False},
        }
    }


def crio_command(install: CrioInstall, paths: CrioPaths, *args: str) -> list[str]:
    return [str(install.crio), "--config", str(paths.config), "--config-dir", str(paths.config_dir), *args]


def podman_command(install: CrioInstall, paths: CrioPaths, *args: str) -> list[str]:
    """podman on CRI-O's own storage (its state and temp files stay in the temp dir too)."""
    return [
        str(install.podman),
        "--root", str(paths.storage),
        "--runroot", str(paths.runroot),
        "--storage-driver", "vfs",
        "--tmpdir", str(paths.base / "podman-tmp"),
        "--events-backend", "none",
        *args,
    ]  # fmt: skip


def load_image(install: CrioInstall, paths: CrioPaths, archive: Path) -> None:
    env = {**os.environ, "TMPDIR": str(paths.base / "podman-tmp")}
    result = subprocess.run(
        podman_command(install, paths, "load", "--input", str(archive)),
        capture_output=True,
        text=True,
        timeout=PODMAN_TIMEOUT_S,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise CrioStartError(f"podman load into CRI-O's storage failed: {result.stderr.strip()[-500:]}")


@dataclass
class CrioDaemon:
    """A running private CRI-O; use :func:`start_daemon` and always call :meth:`stop`."""

    install: CrioInstall
    paths: CrioPaths
    process: subprocess.Popen[bytes]
    log_handle: Any = field(repr=False)
    pods: dict[str, list[str]] = field(default_factory=dict)  # pod id -> its container ids, removed at stop()

    @property
    def endpoint(self) -> str:
        return f"unix://{self.paths.socket}"

    @property
    def version(self) -> str:
        return self.install.version

    def log_text(self) -> str:
        try:
            return self.paths.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def remove_pod(self, client: cri_client.CriClient, pod_id: str) -> None:
        """Kill the pod's containers at once (no grace), then stop and remove the pod.

        StopPodSandbox alone waits out CRI-O's stop timeout: the workload's PID 1 (sleep) ignores SIGTERM.
        """
        for container_id in self.pods.get(pod_id, []):
            with contextlib.suppress(cri_client.CriCallError):
                client.stop_container(container_id, grace_s=0)
        client.remove_pod(pod_id)
        self.pods.pop(pod_id, None)

    def stop(self) -> None:
        """Remove the pods, stop CRI-O, then remove what it leaves: conmons, runc state, mounts, cgroups."""
        if self.process.poll() is None and self.pods:
            with cri_client.CriClient(self.endpoint, timeout=STOP_TIMEOUT_S) as client:
                for pod_id in list(self.pods):
                    with contextlib.suppress(cri_client.CriCallError):
                        self.remove_pod(client, pod_id)
        _terminate(self.process)
        self.log_handle.close()
        clean_leftovers(self.paths, self.install.runc)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def _processes_naming(base: Path) -> list[tuple[int, list[bytes]]]:
    """Processes whose argv mentions a path under ``base`` (conmon names its bundle, exit dir and logs)."""
    marker = str(base).encode() + b"/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker in arg for arg in argv):
            found.append((int(proc.name), argv))
    return found


def _kill_conmons(paths: CrioPaths) -> None:
    for pid, argv in _processes_naming(paths.base):
        if argv and os.path.basename(argv[0]) == b"conmon":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _delete_runc_containers(runc: Path | str, runc_root: Path) -> None:
    if not runc_root.is_dir():
        return
    for container in runc_root.iterdir():
        if (container / "state.json").is_file():
            subprocess.run(
                [str(runc), "--root", str(runc_root), "delete", "--force", container.name],
                capture_output=True,
                timeout=30,
                check=False,
            )


def clean_leftovers(paths: CrioPaths, runc: Path | str | None = None) -> None:
    """Remove what a stopped (or killed) CRI-O leaves: conmons, runc containers, mounts, cgroups, files."""
    _kill_conmons(paths)
    _delete_runc_containers(runc or _which("runc") or "runc", paths.runc_root)
    containerd_daemon.unmount_under(paths.base)
    containerd_daemon.remove_cgroups(paths.cgroup_parent)
    shutil.rmtree(paths.base, ignore_errors=True)


def daemon_alive(paths: CrioPaths) -> bool:
    try:
        pid = int(paths.pid_file.read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    return str(paths.config).encode() in argv


def sweep_stale_daemons(tmp: Path = TMP_DIR) -> list[Path]:
    """Clean up after sessions killed before their teardown ran; return the dirs swept.

    A dir whose CRI-O still runs belongs to a live session; a dir without a pid file is swept only when
    older than a minute, so a session that is just starting is left alone.
    """
    swept = []
    for base in sorted(tmp.glob(f"{DIR_PREFIX}*")):
        paths = CrioPaths(base)
        try:
            age_s = time.time() - base.stat().st_mtime
        except OSError:
            continue
        if daemon_alive(paths) or (not paths.pid_file.exists() and age_s < 60):
            continue
        clean_leftovers(paths)
        swept.append(base)
    return swept


def _wait_ready(daemon: CrioDaemon, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "socket never appeared"
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise CrioStartError(f"crio exited with {daemon.process.returncode}:\n{daemon.log_tail()}")
        if daemon.paths.socket.exists():
            try:
                with cri_client.CriClient(daemon.endpoint) as client:
                    client.version(timeout=2.0)
                return
            except cri_client.CriCallError as exc:
                last_error = str(exc).splitlines()[0]
        time.sleep(0.1)
    raise CrioStartError(
        f"crio did not answer CRI Version within {timeout_s:.0f}s ({last_error}):\n{daemon.log_tail()}"
    )


def prepare(paths: CrioPaths, install: CrioInstall, *, pause_image: str, pause_command: str) -> None:
    """Create the private dirs, the signature policy and the config files (no daemon yet)."""
    for directory in (
        paths.storage,
        paths.runroot,
        paths.runc_root,
        paths.pod_logs,
        paths.config_dir,
        *paths.spec_dirs,
        *paths.private_dirs(),
    ):
        directory.mkdir(parents=True, exist_ok=True)
    # only local images exist here; CRI-O checks the policy before using one
    (paths.base / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    config = build_config(
        paths, install, pause_image=pause_image, pause_command=pause_command, spec_dirs=list(paths.spec_dirs)
    )
    paths.config.write_text(tomlkit.dumps(config))


def start_daemon(
    install: CrioInstall,
    *,
    image_archive: Path,
    pause_image: str,
    pause_command: str,
    configure: Callable[[CrioPaths], None] | None = None,
) -> CrioDaemon:
    """Load the image into a fresh private storage, start CRI-O on it and wait until CRI answers.

    ``configure`` runs after the config files are written and before CRI-O starts (e.g. to add a drop-in
    to ``paths.config_dir``).
    """
    paths = CrioPaths(Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=TMP_DIR)))
    try:
        prepare(paths, install, pause_image=pause_image, pause_command=pause_command)
        if configure is not None:
            configure(paths)
        load_image(install, paths, image_archive)
    except BaseException:
        clean_leftovers(paths, install.runc)
        raise
    env = {**os.environ, "PATH": f"{install.bin_dir}:{os.environ.get('PATH', '')}{SEARCH_PATH}"}
    log_handle = paths.log.open("wb")
    process = subprocess.Popen(
        crio_command(install, paths),
        stdin=subprocess.DEVNULL,
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=paths.base,
        start_new_session=True,
    )
    paths.pid_file.write_text(f"{process.pid}\n")
    daemon = CrioDaemon(install, paths, process, log_handle)
    try:
        _wait_ready(daemon, START_TIMEOUT_S)
    except BaseException:
        daemon.stop()
        raise
    return daemon
