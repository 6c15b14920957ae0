"""One private mount namespace that containerd and the kubelet share, kept alive by a holder process.

The kubelet insists on some host paths (its device-plugin dir is always /var/lib/kubelet/device-plugins,
pod logs go to /var/log/pods, the CNI cache to /var/lib/cni), and the plugin's DaemonSet writes its spec
into the host's /etc/cdi. Inside this namespace those paths are bind mounts of directories in the test's
temp dir, so the machine's own paths are never written. Mount propagation is private: nothing mounted
inside shows up on the host, and the mounts vanish with the namespace when its last process exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class MountNamespaceError(Exception):
    """The namespace could not be made or a mount inside it failed."""


def _ns_id(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


@dataclass
class MountNamespace:
    holder: subprocess.Popen[bytes]
    ns_id: str
    created_mountpoints: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls) -> MountNamespace:
        holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        own = _ns_id("self")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ns = _ns_id(holder.pid)
            if holder.poll() is not None:
                raise MountNamespaceError(f"unshare --mount exited with {holder.returncode}")
            if ns is not None and ns != own and _comm(holder.pid) == "sleep":
                return cls(holder, ns)
            time.sleep(0.01)
        holder.kill()
        raise MountNamespaceError("unshare --mount did not enter a new namespace within 10s")

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/mnt"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (nsenter execs it: the pid stays the program's)."""
        return ["nsenter", f"--mount={self.path}", "--", *argv]

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise MountNamespaceError(f"{' '.join(argv)} in the namespace: {result.stderr.strip()}")
        return result

    def bind(self, source: Path, target: Path) -> None:
        """Bind ``source`` onto ``target`` inside the namespace; a missing host mountpoint is created
        (and removed again by :meth:`close`)."""
        if not target.exists():
            missing = [p for p in [target, *target.parents] if not p.exists()]
            target.mkdir(parents=True)
            self.created_mountpoints.extend(missing)
        self.run(["mount", "--bind", str(source), str(target)])

    def pids(self) -> list[int]:
        """Every process in this namespace (the holder included)."""
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and _ns_id(proc.name) == self.ns_id:
                found.append(int(proc.name))
        return found

    def kill_all(self, *, except_holder: bool = True) -> list[int]:
        killed = []
        for pid in self.pids():
            if except_holder and pid == self.holder.pid:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed

    def close(self) -> None:
        """Kill every process left inside, then the holder: the namespace and its mounts go with them."""
        for _ in range(50):
            if not self.kill_all():
                break
            time.sleep(0.1)
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(10)
        for path in sorted(self.created_mountpoints, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        self.created_mountpoints.clear()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
