"""A minimal container root filesystem for the e2e tests.

There is no container registry here, so containers run from a local directory. The tree holds only the
skeleton a runtime needs; the tools (sh, bindfs, fusermount3, ...) come from the host's /usr, which the
runtime bind-mounts read-only at /usr. The merged-/usr links (bin -> usr/bin, ...) mirror the host so that
/bin/sh and the dynamic loader resolve inside the container.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORIES = ("usr", "etc", "dev", "proc", "sys", "tmp", "run", "root", "mnt", "var/tmp")
MERGED_USR_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def build_rootfs(dest: Path, *, host_root: Path = Path("/"), owner: tuple[int, int] | None = None) -> Path:
    """Create the rootfs skeleton under ``dest`` (created if missing) and return ``dest``.

    A top-level link is made only when the host has that path as a link or directory, so a host
    without /lib64 (e.g. arm64) gets no dangling link. ``owner`` (host uid, gid) chowns the tree, for a
    container whose root is mapped to that host user: podman does not idmap a ``--rootfs`` tree, and runc
    must create mount targets such as /etc/hostname in it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in DIRECTORIES:
        (dest / name).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    (dest / "var" / "tmp").chmod(0o1777)
    for name, target in MERGED_USR_LINKS.items():
        host_path = host_root / name
        if host_path.is_symlink() or host_path.is_dir():
            link = dest / name
            if not link.is_symlink():
                link.symlink_to(target)
    etc = dest / "etc"
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "hosts").write_text("")
    (etc / "resolv.conf").write_text("")
    if owner is not None:
        _chown_tree(dest, *owner)
    return dest


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid, follow_symlinks=False)
    for path in top.rglob("*"):
        os.chown(path, uid, gid, follow_symlinks=False)
