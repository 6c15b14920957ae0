"""A local OCI image for containerd, built from the e2e rootfs (there is no registry to pull from).

The tree from :func:`tests.e2e.rootfs.build_rootfs` is one uncompressed layer. It also serves as the
pod sandbox ("pause") image, and the sandbox container gets no host /usr, so the layer carries
``/usr/bin/sleep`` and the shared libraries it loads; the image's command is ``sleep infinity``.
Workload containers bind-mount the host's /usr read-only over it for sh, bindfs and friends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.e2e import rootfs

IMAGE_NAME = "localhost/cdi-fuse-e2e:latest"
PAUSE_BINARY = Path("/usr/bin/sleep")
PAUSE_COMMAND = [str(PAUSE_BINARY), "infinity"]
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def oci_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def shared_libraries(binary: Path) -> list[Path]:
    """The host paths ``ldd`` lists for ``binary`` (loader included, vdso left out)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=30).stdout
    return [Path(match.group(1)) for match in map(_LDD_PATH.search, out.splitlines()) if match]


def copy_into_rootfs(root: Path, host_path: Path) -> None:
    """Copy ``host_path`` to the same path under ``root``, recreating every symlink hop on the way.

    Directory links (``/lib64 -> usr/lib64``) are resolved on the host side; ``build_rootfs`` makes the
    same top-level links, so the copied path resolves inside the container as it does on the host.
    """
    path = Path(os.path.abspath(host_path))
    for _hop in range(40):
        path = Path(os.path.realpath(path.parent)) / path.name
        dest = root / path.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_symlink():
            shutil.copy2(path, dest)
            return
        target = os.readlink(path)
        if not dest.is_symlink():
            dest.symlink_to(target)
        path = Path(target) if os.path.isabs(target) else path.parent / target
    raise OSError(f"too many symlink hops copying {host_path!r}")


def build_image_rootfs(dest: Path) -> Path:
    """The e2e rootfs plus the pause binary and its libraries."""
    root = rootfs.build_rootfs(dest)
    for path in [PAUSE_BINARY, *shared_libraries(PAUSE_BINARY)]:
        copy_into_rootfs(root, path)
    return root


def _reset_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def _layer_tar(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=_reset_owner)
    return buffer.getvalue()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def build_oci_archive(root: Path, archive: Path, *, name: str = IMAGE_NAME) -> Path:
    """Write an OCI image-layout tar (oci-layout, index.json, blobs) with one layer holding ``root``."""
    layer = _layer_tar(root)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": oci_arch(),
            "os": "linux",
            "config": {"Cmd": PAUSE_COMMAND, "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        },
        sort_keys=True,
    ).encode()
    manifest_descriptor = _descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    manifest_descriptor["platform"] = {"architecture": oci_arch(), "os": "linux"}
    manifest_descriptor["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
    }
    index_media_type = "application/vnd.oci.image.index.v1+json"
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": index_media_type, "manifests": [manifest_descriptor]},
        sort_keys=True,
    ).encode()
    members = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": index,
        **{"blobs/sha256/" + hashlib.sha256(blob).hexdigest(): blob for blob in (layer, config, manifest)},
    }
    with tarfile.open(archive, mode="w") as tar:
        for member_name, blob in members.items():
            info = _reset_owner(tarfile.TarInfo(member_name))
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return archive
