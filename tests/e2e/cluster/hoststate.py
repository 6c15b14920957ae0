"""Host state the cluster changes, recorded before it starts and put back after it stops.

- sysctls: with ``protectKernelDefaults: false`` the kubelet sets vm.overcommit_memory, vm.panic_on_oom,
  kernel.panic, kernel.panic_on_oops and the root keyring quotas;
- cgroups: every pod lives below one cgroup root named after the run, created here in each hierarchy
  (cgroup v1 wants cpuset.cpus/mems filled in) and removed bottom-up after its processes are killed;
- the CNI bridge (created here with its address, so the host reaches pod IPs without IP forwarding)
  and any iptables chain that appeared while the cluster ran.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
IPTABLES = ("iptables", "ip6tables")
BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


@dataclass
class SysctlSnapshot:
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def take(cls, keys: tuple[str, ...] = KUBELET_SYSCTLS) -> SysctlSnapshot:
        snapshot = cls()
        for key in keys:
            with contextlib.suppress(OSError):
                snapshot.values[key] = (Path("/proc/sys") / key).read_text().strip()
        return snapshot

    def changed(self) -> dict[str, tuple[str, str]]:
        now = SysctlSnapshot.take(tuple(self.values))
        return {k: (v, now.values.get(k, "")) for k, v in self.values.items() if now.values.get(k) != v}

    def restore(self) -> dict[str, tuple[str, str]]:
        changed = self.changed()
        for key in changed:
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text(self.values[key] + "\n")
        return changed


def _hierarchies() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]  # unified (v2) only
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()]


def create_cgroup_root(name: str) -> None:
    """mkdir /<name> in every hierarchy; cgroup v1 cpuset needs its cpus and mems copied from the parent."""
    for hierarchy in _hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            parent_value = hierarchy / knob
            if parent_value.exists():
                value = parent_value.read_text().strip()
                with contextlib.suppress(OSError):
                    (path / knob).write_text(value)


def _cgroup_dirs(top: Path) -> list[Path]:
    """``top`` and every cgroup below it, deepest first; cgroups that vanish meanwhile are skipped."""
    found = [Path(root) for root, _dirs, _files in os.walk(top, onerror=lambda _error: None)]
    return sorted(found, key=lambda d: len(d.parts), reverse=True)


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        for directory in _cgroup_dirs(hierarchy / name):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in (directory / "cgroup.procs").read_text().split())
    return pids


def remove_cgroup_root(name: str, *, timeout_s: float = 20.0) -> list[str]:
    """Kill what still runs below /<name>, then rmdir the trees deepest first; return what is left."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = cgroup_pids(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    left = []
    for hierarchy in _hierarchies():
        for directory in _cgroup_dirs(hierarchy / name):
            for _ in range(20):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            if directory.exists():
                left.append(str(directory))
    return left


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "route", "show", "table", "all").stdout + _ip("-4", "-o", "addr").stdout
    networks = []
    for word in out.split():
        with contextlib.suppress(ValueError):
            if "/" in word:
                networks.append(ipaddress.IPv4Network(word, strict=False))
    return networks


def free_pod_subnet() -> ipaddress.IPv4Network:
    """A /24 for pods that no route or address on this host overlaps."""
    used = used_networks()
    for third in range(200, 256):
        candidate = ipaddress.IPv4Network(f"10.{third}.77.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no free 10.x.77.0/24 for the pod network")


def create_bridge(name: str, subnet: ipaddress.IPv4Network) -> str:
    """The CNI bridge with the subnet's first address: a connected route, no forwarding, no NAT."""
    gateway = f"{next(subnet.hosts())}/{subnet.prefixlen}"
    _ip("link", "add", "name", name, "type", "bridge")
    _ip("addr", "add", gateway, "dev", name)
    _ip("link", "set", name, "up")
    return gateway


def delete_link(name: str) -> None:
    _ip("link", "delete", name, check=False)


def link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def _chains(tool: str) -> set[tuple[str, str]]:
    try:
        out = subprocess.run([f"{tool}-save"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return set()
    chains, table = set(), ""
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":") and line[1:].split()[0] not in BUILTIN_CHAINS:
            chains.add((table, line[1:].split()[0]))
    return chains


@dataclass
class IptablesSnapshot:
    chains: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def take(cls) -> IptablesSnapshot:
        return cls({tool: _chains(tool) for tool in IPTABLES})

    def new_chains(self) -> dict[str, set[tuple[str, str]]]:
        return {tool: _chains(tool) - before for tool, before in self.chains.items() if _chains(tool) - before}

    def remove_new_chains(self) -> dict[str, set[tuple[str, str]]]:
        """Flush and delete chains that appeared since the snapshot (rules jumping to them first)."""
        new = self.new_chains()
        for tool, chains in new.items():
            for table, chain in chains:
                rules = subprocess.run(
                    [tool, "-t", table, "-S"], capture_output=True, text=True, timeout=30, check=False
                ).stdout
                for rule in rules.splitlines():
                    if f"-j {chain}" in rule and rule.startswith("-A "):
                        subprocess.run([tool, "-t", table, "-D", *rule.split()[1:]], capture_output=True, check=False)
            for table, chain in chains:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
            for table, chain in chains:
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)
        return new
