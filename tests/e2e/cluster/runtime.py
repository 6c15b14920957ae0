"""The cluster's containerd: the project's private containerd, run inside the cluster's mount namespace.

Its config is the containerd e2e fixture's (``daemon.build_config``: native snapshotter, restricted
oom_score_adj, runc state in the temp dir) with what a kubelet node needs on top: the socket at the
usual /run/containerd/containerd.sock (of the namespace, so the DaemonSet's hostPath of /run/containerd
finds it), CDI spec dirs /etc/cdi and /var/run/cdi (what the plugin's DaemonSet writes), and a CNI
network. It can be stopped and started again with CDI switched on or off while pods keep running
(shims outlive containerd), which is what the admin-operation tests do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import tomlkit

from tests.e2e.cluster import mountns
from tests.e2e.containerd import cri_client, daemon, fetch

SOCKET_IN_NS = Path("/run/containerd/containerd.sock")
CDI_SPEC_DIRS_IN_NS = ("/etc/cdi", "/var/run/cdi")
START_TIMEOUT_S = 30.0
SNAPSHOTTER = "overlayfs"
OVERLAYFS_PLUGIN = "io.containerd.snapshotter.v1.overlayfs"
STOP_TIMEOUT_S = 15.0


class RuntimeStartError(Exception):
    """containerd did not come up; the message has the tail of its log."""


@dataclass
class ClusterContainerd:
    install: fetch.ContainerdInstall
    paths: daemon.DaemonPaths  # root, state, runc root, config and log under the cluster's temp dir
    ns: mountns.MountNamespace
    host_run: Path  # the temp dir bound onto /run in the namespace
    cni_bin_dir: Path
    cni_conf_dir: Path
    sandbox_image: str
    cdi_enabled: bool = True
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def host_socket(self) -> Path:
        return self.host_run / SOCKET_IN_NS.relative_to("/run")

    @property
    def endpoint_in_ns(self) -> str:
        return f"unix://{SOCKET_IN_NS}"

    @property
    def host_endpoint(self) -> str:
        return f"unix://{self.host_socket}"

    @property
    def version(self) -> str:
        return self.install.version

    def config(self, cdi_enabled: bool) -> dict[str, Any]:
        config = daemon.build_config(
            self.paths,
            cdi_enabled=cdi_enabled,
            sandbox_image=self.sandbox_image,
            major_version=self.install.version_tuple[0],
        )
        config["grpc"]["address"] = str(SOCKET_IN_NS)
        config["ttrpc"]["address"] = str(SOCKET_IN_NS) + ".ttrpc"
        plugins = config["plugins"]
        # overlayfs instead of native: no full copy of the image per container. Its mounts stay inside
        # the cluster's mount namespace, so the host sees none of them.
        config["disabled_plugins"] = [p for p in config["disabled_plugins"] if p != OVERLAYFS_PLUGIN]
        if config["version"] >= 3:
            runtime = plugins["io.containerd.cri.v1.runtime"]
            runtime["cni"] = {"bin_dirs": [str(self.cni_bin_dir)], "conf_dir": str(self.cni_conf_dir)}
            runtime["containerd"]["runtimes"]["runc"]["snapshotter"] = SNAPSHOTTER
            plugins["io.containerd.cri.v1.images"]["snapshotter"] = SNAPSHOTTER
        else:
            runtime = plugins["io.containerd.grpc.v1.cri"]
            runtime["cni"] = {"bin_dir": str(self.cni_bin_dir), "conf_dir": str(self.cni_conf_dir)}
            runtime["containerd"]["snapshotter"] = SNAPSHOTTER
        runtime["cdi_spec_dirs"] = list(CDI_SPEC_DIRS_IN_NS)
        return config

    def start(self, *, cdi_enabled: bool | None = None) -> float:
        """Start containerd (CDI as asked, else as last time) and wait until CRI answers; return seconds."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeStartError("containerd is already running")
        if cdi_enabled is not None:
            self.cdi_enabled = cdi_enabled
        for directory in (self.paths.root, self.paths.state, self.paths.runc_root):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(tomlkit.dumps(self.config(self.cdi_enabled)))
        with contextlib.suppress(FileNotFoundError):
            self.host_socket.unlink()  # a killed daemon leaves it; the new one would refuse to start
        env = {**os.environ, "PATH": f"{self.install.bin_dir}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
        self._log = self.paths.log.open("ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.ns.command([str(self.install.containerd), "--config", str(self.paths.config)]),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.paths.pid_file.write_text(f"{self.process.pid}\n")
        self.starts += 1
        self._wait_ready(started)
        return time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        last = "socket never appeared"
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeStartError(f"containerd exited:\n{self.log_tail()}")
            if self.host_socket.exists():
                try:
                    with cri_client.CriClient(self.host_endpoint) as client:
                        client.version(timeout=2.0)
                    return
                except Exception as exc:  # CRI may not be registered yet
                    last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            time.sleep(0.05)
        raise RuntimeStartError(
            f"containerd did not answer CRI within {START_TIMEOUT_S:.0f}s ({last}):\n{self.log_tail()}"
        )

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) containerd only: shims and containers keep running."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, *, cdi_enabled: bool | None = None) -> float:
        self.stop()
        return self.start(cdi_enabled=cdi_enabled)

    def cri_status_config(self) -> dict[str, Any]:
        """The runtime's own view (Status verbose ``info["config"]``): ``enableCDI``, ``cdiSpecDirs``."""
        import json

        with cri_client.CriClient(self.host_endpoint) as client:
            info = client.status(verbose=True).info
        return dict(json.loads(info["config"]))

    def ctr(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        argv = [str(self.install.ctr), "--address", str(self.host_socket), "--namespace", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def import_image(self, archive: Path) -> None:
        result = self.ctr("images", "import", "--snapshotter", SNAPSHOTTER, "--local", str(archive))
        if result.returncode != 0:
            raise RuntimeStartError(f"ctr images import {archive.name}: {result.stderr.strip()}")

    def images(self) -> list[str]:
        result = self.ctr("images", "list", "--quiet")
        return result.stdout.split()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def teardown(self) -> None:
        """Stop containerd and remove what runc still tracks (the namespace's close kills shims)."""
        self.stop()
        runc = daemon._runc_binary()
        roots = [self.paths.runc_root, *(p for p in self.paths.runc_root.glob("*") if p.is_dir())]
        for root in roots:
            for container in root.glob("*/state.json"):
                self.ns.run([runc, "--root", str(root), "delete", "--force", container.parent.name], check=False)
