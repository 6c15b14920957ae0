"""Run a throw-away podman container from a local rootfs with the flags this machine needs.

- ``--runtime runc``: crun rejects the hybrid cgroup layout here.
- ``--ulimit nofile=N:N --ulimit nproc=N:N`` at or below the hard limits: podman's defaults ask for
  more than runc may set (conmon runs with nproc capped at kernel.pid_max, so runc fails with
  "error setting rlimit type 6: operation not permitted").
- ``--cap-drop=all`` then only the capabilities a test asks for; never ``--privileged``.
- ``-v /usr:/usr:ro``: the tools (sh, bindfs, fusermount3) come from the host.
"""

from __future__ import annotations

import functools
import re
import resource
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

PODMAN = "podman"
CONTAINER_ULIMIT = 1024
DEFAULT_TIMEOUT = 60.0
QUALIFIED_NAME = re.compile(r"(\S+/\S+=\S+)\s*$")


def _limit_at_most_hard(kind: int, wanted: int) -> int:
    _soft, hard = resource.getrlimit(kind)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def ulimit_flags(wanted: int = CONTAINER_ULIMIT) -> list[str]:
    nofile = _limit_at_most_hard(resource.RLIMIT_NOFILE, wanted)
    nproc = _limit_at_most_hard(resource.RLIMIT_NPROC, wanted)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@functools.cache
def runtime_version() -> str:
    """podman and runc versions, e.g. ``podman 4.3.1, runc 1.1.5``; queried once per session."""
    podman = subprocess.run(
        [PODMAN, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=True, timeout=30)
    runc_version = runc.stdout.splitlines()[0].removeprefix("runc version ").strip()
    return f"podman {podman}, runc {runc_version}"


def run_in_container(
    rootfs: Path,
    script: str,
    *,
    devices: Sequence[str] = (),
    cap_add: Sequence[str] = ("SYS_ADMIN",),
    uid_map: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``/bin/sh -c script`` in a fresh container and return the finished process (never raises on
    a non-zero exit). ``uid_map`` (``container:host:size``) is used for both --uidmap and --gidmap.
    The container is removed afterwards, also when the timeout hits."""
    name = f"cdi-fuse-e2e-{secrets.token_hex(6)}"
    args = [
        PODMAN,
        "run",
        "--rm",
        "--name",
        name,
        "--runtime",
        "runc",
        *ulimit_flags(),
        "--network",
        "none",
        "--cap-drop=all",
        *(f"--cap-add={cap}" for cap in cap_add),
        "-v",
        "/usr:/usr:ro",
    ]
    if uid_map is not None:
        args += ["--uidmap", uid_map, "--gidmap", uid_map]
    args += [f"--device={device}" for device in devices]
    args += [*extra_args, "--rootfs", str(rootfs), "/bin/sh", "-c", script]
    print("$", shlex.join(args))
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        # --rm covers the normal case; this covers a timeout or an interrupted run.
        subprocess.run(
            [PODMAN, "rm", "--force", "--ignore", "--time", "0", name], capture_output=True, check=False, timeout=60
        )
    print(f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}---")
    return result


def cdi_fuse_command() -> str:
    """The console script installed next to this interpreter (not whatever is first on PATH)."""
    command = shutil.which("cdi-fuse", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.fail(f"console script cdi-fuse not found next to {sys.executable}: run `make venv`")
    return command


@dataclass(frozen=True)
class SpecFiles:
    """Writes CDI specs into a spec dir and remembers the vendor, so teardown removes every file the
    test created there, including ones the CLI wrote before failing."""

    spec_dir: Path
    vendor: str

    def generate(self, *extra: str) -> str:
        """Run `cdi-fuse generate` and return the qualified device name it prints last."""
        args = [cdi_fuse_command(), "generate", "--spec-dir", str(self.spec_dir), "--vendor", self.vendor, *extra]
        print("$", " ".join(args))
        result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        print(result.stdout, result.stderr, sep="")
        assert result.returncode == 0, f"cdi-fuse generate failed: {result.stderr}"
        match = QUALIFIED_NAME.search(result.stdout.strip())
        assert match, f"no qualified device name in cdi-fuse output: {result.stdout!r}"
        return match.group(1)

    def write(self, cls: str, spec: dict[str, Any]) -> Path:
        """Write a hand-made spec (for variants the CLI does not produce) as <vendor>-<class>.yaml."""
        path = self.spec_dir / f"{self.vendor}-{cls}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        print(f"wrote {path}:\n{path.read_text()}")
        return path

    def remove_all(self) -> None:
        for path in self.spec_dir.glob(f"{self.vendor}*"):
            path.unlink(missing_ok=True)


# The FUSE round trip every e2e test runs inside the container. It prints `key=value` lines and exits
# with bindfs' status when the mount fails, so callers assert on facts rather than on a shell's luck.
FUSE_ROUND_TRIP = r"""
if [ -e /dev/fuse ]; then stat -c 'fuse_node=%F %t:%T' /dev/fuse; stat -c 'fuse_mode=%a' /dev/fuse
    stat -c 'fuse_owner=%u:%g' /dev/fuse; else echo fuse_node=missing; fi
echo "uid_map=$(tr -s ' ' < /proc/self/uid_map | sed 's/^ //')"
echo "cap_eff=$(sed -n 's/^CapEff:\t*//p' /proc/self/status)"
if [ -r /sys/fs/cgroup/devices/devices.list ]; then sed 's/^/devices_allow=/' /sys/fs/cgroup/devices/devices.list; fi
mkdir /tmp/src /tmp/mnt && printf '%s' "$TOKEN" > /tmp/src/file || exit 90
bindfs /tmp/src /tmp/mnt; rc=$?; echo "bindfs_rc=$rc"; [ "$rc" -eq 0 ] || exit "$rc"
echo "served=$(cat /tmp/mnt/file)"
grep ' /tmp/mnt ' /proc/mounts | sed 's/^/mount=/'
fusermount3 -u /tmp/mnt; echo "unmount_rc=$?"
if grep -q ' /tmp/mnt ' /proc/mounts; then echo still_mounted=yes; else echo still_mounted=no; fi
"""


@dataclass(frozen=True)
class FuseRoundTrip:
    """The outcome of FUSE_ROUND_TRIP: the process and its `key=value` report."""

    token: str
    process: subprocess.CompletedProcess[str]

    def values(self, key: str) -> list[str]:
        prefix = f"{key}="
        return [line.removeprefix(prefix) for line in self.process.stdout.splitlines() if line.startswith(prefix)]

    def value(self, key: str) -> str | None:
        found = self.values(key)
        assert len(found) <= 1, f"{key} reported {len(found)} times: {found}"
        return found[0] if found else None


def fuse_round_trip(rootfs: Path, **run_options: Any) -> FuseRoundTrip:
    """Mount /tmp/src on /tmp/mnt with bindfs in a container, read a unique token through the
    mount and unmount it. ``run_options`` go to run_in_container."""
    token = f"served-through-fuse-{secrets.token_hex(8)}"
    script = f"TOKEN={token}\n{FUSE_ROUND_TRIP}"
    return FuseRoundTrip(token, run_in_container(rootfs, script, **run_options))
