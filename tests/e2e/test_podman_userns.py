"""Follow-up issue: FUSE in a podman container with a user namespace (--uidmap/--gidmap 0:100000:65536),
the CDI device and CAP_SYS_ADMIN. The tests pin down what was observed (podman 4.3.1, runc 1.1.5):

- runc cannot mknod inside a user namespace, so it bind-mounts the *host* node found at the device's
  container path (/dev/fuse) instead. The container sees the host file: its mode, and its owner
  root:root shown as 65534:65534 (unmapped ids). The devices cgroup still allows c 10:229 rw.
- Hence the generated spec works in a userns exactly when the host /dev/fuse is world read-writable.
  Debian's udev (50-udev-default.rules: KERNEL=="fuse", MODE="0666") makes it 0666; a host without udev
  (this VM) has the kernel's 0600, and bindfs fails with "fuse: failed to open /dev/fuse: Permission
  denied".
- The deviceNode fields fileMode/uid/gid do not help: they apply to a node runc creates, not to the bind
  mount. hostPath (cdiVersion 0.5.0) does not help either: podman puts only the container path into
  the OCI spec, and runc bind-mounts the host file at that same path.
- What works without touching the host /dev/fuse: a 0666 node made with mknod on a filesystem not
  mounted nodev, listed as a deviceNode under its own path (that yields the cgroup rule, and runc
  bind-mounts it at the same path), plus a CDI bind mount of that node onto /dev/fuse.
- `--userns=auto` needs a `containers` entry in /etc/subuid and /etc/subgid (none here), so the tests
  use an explicit map.
- With `--rootfs DIR` podman neither chowns nor idmaps DIR: runc, as the mapped root, must traverse
  DIR's parents (pytest's 0700 tmp dirs fail with "error preparing rootfs ... permission denied") and
  create mount targets such as /etc/hostname in it, so the userns rootfs is owned by the mapped root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import podman
from tests.e2e.rootfs import build_rootfs

pytestmark = [pytest.mark.e2e, pytest.mark.root]

USERNS_MAP = "0:100000:65536"
MAPPED_ROOT = (100000, 100000)
UNMAPPED_OWNER = "65534:65534"


@pytest.fixture
def userns_rootfs(container_dir: Path) -> Path:
    return build_rootfs(container_dir / "rootfs-userns", owner=MAPPED_ROOT)


def host_fuse() -> os.stat_result:
    return os.stat("/dev/fuse")


def host_fuse_is_world_rw() -> bool:
    return host_fuse().st_mode & 0o006 == 0o006


def fuse_node_spec(
    vendor: str, cls: str, node: dict[str, object], mounts: list[dict[str, object]] | None = None
) -> dict[str, object]:
    rdev = host_fuse().st_rdev
    device_node = {"type": "c", "major": os.major(rdev), "minor": os.minor(rdev), "permissions": "rw", **node}
    edits: dict[str, object] = {"deviceNodes": [device_node]}
    if mounts:
        edits["mounts"] = mounts
    return {"cdiVersion": "0.3.0", "kind": f"{vendor}/{cls}", "devices": [{"name": "fuse", "containerEdits": edits}]}


def assert_host_node_bind_mounted(trip: podman.FuseRoundTrip) -> None:
    assert trip.value("uid_map") == USERNS_MAP.replace(":", " ")
    assert trip.value("fuse_owner") == UNMAPPED_OWNER
    assert trip.value("fuse_mode") == f"{stat.S_IMODE(host_fuse().st_mode):o}"


def test_generated_spec_in_userns_depends_on_host_node_mode(
    runtime_specs: podman.SpecFiles, userns_rootfs: Path
) -> None:
    device = runtime_specs.generate()

    trip = podman.fuse_round_trip(userns_rootfs, devices=[device], uid_map=USERNS_MAP)

    assert_host_node_bind_mounted(trip)
    rdev = host_fuse().st_rdev
    rules = trip.values("devices_allow")
    assert not rules or f"c {os.major(rdev)}:{os.minor(rdev)} rw" in rules, rules
    if host_fuse_is_world_rw():
        assert trip.value("served") == trip.token, trip.process.stderr
        assert trip.value("unmount_rc") == "0"
    else:
        print("host /dev/fuse is not world read-writable: the mount is expected to fail")
        assert trip.process.returncode != 0
        assert "fuse: failed to open /dev/fuse: Permission denied" in trip.process.stderr
        assert trip.value("served") is None


def test_spec_file_mode_applies_only_without_userns(
    runtime_specs: podman.SpecFiles, rootfs: Path, userns_rootfs: Path
) -> None:
    requested_mode = 0o640
    assert stat.S_IMODE(host_fuse().st_mode) != requested_mode
    runtime_specs.write(
        "fuse-mode",
        fuse_node_spec(
            runtime_specs.vendor, "fuse-mode", {"path": "/dev/fuse", "fileMode": requested_mode, "uid": 0, "gid": 0}
        ),
    )
    device = f"{runtime_specs.vendor}/fuse-mode=fuse"
    probe = "stat -c 'fuse_mode=%a' /dev/fuse; stat -c 'fuse_owner=%u:%g' /dev/fuse"

    plain = podman.run_in_container(rootfs, probe, devices=[device])
    in_userns = podman.run_in_container(userns_rootfs, probe, devices=[device], uid_map=USERNS_MAP)

    assert plain.returncode == 0, plain.stderr
    assert "fuse_mode=640\nfuse_owner=0:0\n" in plain.stdout
    assert in_userns.returncode == 0, in_userns.stderr
    host_mode = stat.S_IMODE(host_fuse().st_mode)
    assert f"fuse_mode={host_mode:o}\nfuse_owner={UNMAPPED_OWNER}\n" in in_userns.stdout


@pytest.fixture
def world_rw_fuse_node(container_dir: Path) -> Iterator[Path]:
    """A 0666 character node for the host's FUSE device, removed after the test."""
    node_dir = container_dir / "node"
    node_dir.mkdir()
    if os.statvfs(node_dir).f_flag & os.ST_NODEV:
        pytest.skip(f"{node_dir} is on a nodev filesystem: device nodes there cannot be opened")
    node = node_dir / "fuse"
    os.mknod(node, stat.S_IFCHR | 0o666, host_fuse().st_rdev)
    node.chmod(0o666)  # mknod applies the umask
    try:
        yield node
    finally:
        node.unlink(missing_ok=True)


def test_world_rw_node_bind_mounted_on_dev_fuse_works_in_userns(
    runtime_specs: podman.SpecFiles, userns_rootfs: Path, world_rw_fuse_node: Path
) -> None:
    node = str(world_rw_fuse_node)
    runtime_specs.write(
        "fuse-userns",
        fuse_node_spec(
            runtime_specs.vendor,
            "fuse-userns",
            {"path": node},
            mounts=[{"hostPath": node, "containerPath": "/dev/fuse", "options": ["bind"]}],
        ),
    )

    trip = podman.fuse_round_trip(
        userns_rootfs, devices=[f"{runtime_specs.vendor}/fuse-userns=fuse"], uid_map=USERNS_MAP
    )

    assert trip.value("uid_map") == USERNS_MAP.replace(":", " ")
    assert trip.value("fuse_owner") == UNMAPPED_OWNER
    assert trip.value("fuse_mode") == "666"
    assert trip.value("bindfs_rc") == "0", trip.process.stderr
    assert trip.value("served") == trip.token
    assert trip.value("unmount_rc") == "0"
    assert trip.value("still_mounted") == "no"
    assert trip.process.returncode == 0
