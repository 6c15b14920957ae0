"""The local OCI archive: a consistent image layout whose one layer can run the pause command."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from tests.e2e.containerd import image


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    member = tar.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
    assert member is not None
    data = member.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_archive_layout_is_consistent_and_carries_the_pause_binary(tmp_path: Path) -> None:
    root = image.build_image_rootfs(tmp_path / "rootfs")
    archive = image.build_oci_archive(root, tmp_path / "image.tar")

    with tarfile.open(archive) as tar:
        assert json.loads(_blob_named(tar, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        index: dict[str, Any] = json.loads(_blob_named(tar, "index.json"))
        (entry,) = index["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == image.IMAGE_NAME
        manifest = json.loads(_blob(tar, entry["digest"]))
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        (layer_descriptor,) = manifest["layers"]
        layer = _blob(tar, layer_descriptor["digest"])

    assert config["os"] == "linux" and config["architecture"] == image.oci_arch()
    assert config["config"]["Cmd"] == image.PAUSE_COMMAND
    assert config["rootfs"]["diff_ids"] == [layer_descriptor["digest"]]  # uncompressed: digest == diff_id
    (tmp_path / "layer.tar").write_bytes(layer)
    with tarfile.open(tmp_path / "layer.tar") as layer_tar:
        names = set(layer_tar.getnames())
        assert all(member.uid == 0 and member.gid == 0 for member in layer_tar.getmembers())
    assert "usr/bin/sleep" in names
    for library in image.shared_libraries(image.PAUSE_BINARY):
        assert _resolve_inside(root, str(library)).is_file(), library


def _resolve_inside(root: Path, path: str, hops: int = 0) -> Path:
    """Resolve ``path`` as a process chrooted at ``root`` would (absolute links restart at ``root``)."""
    assert hops < 40, path
    current = root
    parts = [part for part in path.split("/") if part]
    for index, part in enumerate(parts):
        candidate = current / part
        if candidate.is_symlink():
            target = os.readlink(candidate)
            rest = "/".join(parts[index + 1 :])
            base = "" if target.startswith("/") else str(current.relative_to(root))
            return _resolve_inside(root, f"{base}/{target}/{rest}", hops + 1)
        current = candidate
    return current


def _blob_named(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None
    return member.read()
