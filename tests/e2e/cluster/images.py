"""Container images for the cluster tier, built here without any registry.

- **The plugin image** is built from ``plugin/Containerfile`` by ``podman build`` (private storage, chroot
  isolation, host network so pip reaches PyPI for the wheel's dependencies). Its ``FROM python:3.11-slim``
  cannot be pulled, so a locally built equivalent is tagged with that name first: a debootstrap of Debian
  bookworm (whose python3 is 3.11) with what the slim image adds on top of Debian -- ``python``/``pip`` on
  PATH, pip allowed to install system-wide (no EXTERNALLY-MANAGED marker), ca-certificates, netbase, tzdata,
  ``LANG=C.UTF-8``. The build's RUN steps see the host's CA bundle (a TLS-intercepting proxy works). The
  image is saved as a docker archive named ``docker.io/library/cdi-fuse:0.1.0`` (what the DaemonSet's
  ``cdi-fuse:0.1.0`` means) and imported into the cluster's containerd.
- **The examples image** (``localhost/cdi-fuse-examples:bookworm``): a debootstrap of bookworm with the
  tools the examples install or ship (bindfs, fuse3, sshfs, openssh-server, rclone, buildah,
  fuse-overlayfs), one layer, written straight into an OCI archive. The tests point every image the
  examples name at it, so pods start offline.

Debootstrap is the slow part (minutes); its result is cached as a tar under
``/var/cache/cdi-fuse-tests/rootfs-<suite>-<hash of the package list>`` behind a lock, like the
containerd download.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests import debcache
from tests.e2e.containerd import image as containerd_image

SUITE = "bookworm"
PLUGIN_BASE_IMAGE = "docker.io/library/python:3.11-slim"
SANDBOX_IMAGE = containerd_image.IMAGE_NAME  # the pause image: the containerd e2e fixture's
PLUGIN_IMAGE = "docker.io/library/cdi-fuse:0.1.0"
PLUGIN_BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates", "netbase", "tzdata")
EXAMPLES_IMAGE = "localhost/cdi-fuse-examples:bookworm"
# The non-root example runs as uid 1000: fusermount3 needs a passwd entry for the caller.
EXAMPLES_SETUP = "useradd --uid 1000 --user-group --create-home --shell /bin/sh app"
EXAMPLES_PACKAGES = (
    "bindfs",
    "fuse3",
    "sshfs",
    "openssh-server",
    "openssh-client",
    "rclone",
    "buildah",
    "fuse-overlayfs",
    "procps",
    "iproute2",
)
DEBOOTSTRAP_TIMEOUT_S = 1800.0
BUILD_TIMEOUT_S = 1800.0
COMPLETE_MARKER = ".complete"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageBuildError(Exception):
    """An image could not be built here; the message says why (tests skip or fail with it)."""


def _run(argv: Sequence[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageBuildError(f"{argv[0]} failed to run: {exc}") from exc
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise ImageBuildError(f"{' '.join(argv[:4])} ... exited {result.returncode}: {tail}")
    return result.stdout


ROOTFS_RECIPE = "2"  # bump when _debootstrap changes what it produces: cached trees are then rebuilt


def _rootfs_key(suite: str, packages: Sequence[str], setup: str) -> str:
    return hashlib.sha256(" ".join([ROOTFS_RECIPE, suite, setup, *sorted(packages)]).encode()).hexdigest()[:12]


def ensure_rootfs_tar(
    packages: Sequence[str], *, setup: str = "", suite: str = SUITE, root: Path | None = None
) -> Path:
    """A tar of a minbase debootstrap of ``suite`` with ``packages`` installed and the shell commands
    ``setup`` run in it (chroot), cached and locked."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (make system-deps installs it for the cluster tier)")
    root = root or debcache.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"rootfs-{suite}-{_rootfs_key(suite, packages, setup)}"
    with debcache.locked(root / f"{target.name}.lock", timeout_s=DEBOOTSTRAP_TIMEOUT_S):
        if (target / COMPLETE_MARKER).is_file():
            return target / "rootfs.tar"
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            _debootstrap(staging / "rootfs", packages, suite, setup)
            _run(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(staging / "rootfs"), "-cf",
                 str(staging / "rootfs.tar"), "."],
                timeout=600,
            )  # fmt: skip
            shutil.rmtree(staging / "rootfs")
            (staging / COMPLETE_MARKER).write_text(" ".join(packages) + "\n")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / "rootfs.tar"


_CHROOT_INSTALL = """
set -e
root="$1"; shift
mount -t proc proc "$root/proc"
printf '#!/bin/sh\\nexit 101\\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get -q update
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "$@"
chroot "$root" apt-get clean
chroot "$root" sh -ec "$SETUP"
rm -f "$root/usr/sbin/policy-rc.d"
umount "$root/proc"
"""


def _debootstrap(dest: Path, packages: Sequence[str], suite: str, setup: str) -> None:
    """minbase debootstrap, then apt-get inside it: apt resolves alternatives and virtual packages
    (``fuse3 | fuse``, container-network-stack) that debootstrap's own --include cannot."""
    mirror = debcache.debian_mirror()
    keyring = ["--keyring", str(mirror.keyring)] if mirror.keyring else []
    # A private mount namespace: /proc mounted in the target must not outlive the build, even if killed.
    _run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
         f"debootstrap --variant=minbase {' '.join(keyring)} {suite} \"$0\" {mirror.uri}; "
         + _CHROOT_INSTALL, str(dest), str(dest), *packages],
        timeout=DEBOOTSTRAP_TIMEOUT_S,
        env={**os.environ, "SETUP": setup or "true"},
    )  # fmt: skip
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (dest / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    (dest / "etc/resolv.conf").write_text("")
    (dest / "etc/hostname").write_text("localhost\n")
    # What a booted Debian has (debootstrap leaves it out). Without it fusermount3 tries to update a
    # real /etc/mtab, which needs a passwd entry for the calling uid ("could not determine username").
    if not (dest / "etc/mtab").is_symlink():
        (dest / "etc/mtab").unlink(missing_ok=True)
        (dest / "etc/mtab").symlink_to("../proc/self/mounts")


# -- OCI archives ---------------------------------------------------------------------------------------


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest(), path.stat().st_size


def _blob_descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def oci_archive_from_layer(
    layer: Path, archive: Path, *, name: str, entrypoint: Sequence[str] = (), cmd: Sequence[str] = (),
    env: Sequence[str] = (PATH_ENV, "LANG=C.UTF-8"),
) -> Path:  # fmt: skip
    """An OCI image-layout tar whose one uncompressed layer is the tar ``layer``, named ``name``."""
    layer_digest, layer_size = _file_digest(layer)
    image_config: dict[str, Any] = {"Env": list(env)}
    if entrypoint:
        image_config["Entrypoint"] = list(entrypoint)
    if cmd:
        image_config["Cmd"] = list(cmd)
    config = json.dumps(
        {
            "architecture": containerd_image.oci_arch(),
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _blob_descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}
            ],
        },
        sort_keys=True,
    ).encode()
    manifest_descriptor = _blob_descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    manifest_descriptor["platform"] = {"architecture": containerd_image.oci_arch(), "os": "linux"}
    manifest_descriptor["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
    }
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [manifest_descriptor],
        },
        sort_keys=True,
    ).encode()
    small = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": index,
        **{"blobs/sha256/" + hashlib.sha256(blob).hexdigest(): blob for blob in (config, manifest)},
    }
    with tarfile.open(archive, mode="w") as tar:
        for member_name, blob in small.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        tar.add(str(layer), arcname="blobs/sha256/" + layer_digest.removeprefix("sha256:"))
    return archive


def build_examples_image(work: Path) -> Path:
    """The examples image as an OCI archive (its default command keeps a container alive)."""
    layer = ensure_rootfs_tar(EXAMPLES_PACKAGES, setup=EXAMPLES_SETUP)
    return oci_archive_from_layer(layer, work / "examples-image.tar", name=EXAMPLES_IMAGE, cmd=["sleep", "infinity"])


# -- the plugin image -----------------------------------------------------------------------------------


def _podman(storage: Path) -> list[str]:
    return [
        "podman",
        "--root", str(storage / "root"),
        "--runroot", str(storage / "runroot"),
        "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
    ]  # fmt: skip


def _python_slim_tar(work: Path) -> Path:
    """The bookworm rootfs with the slim image's conventions applied (pip may install system-wide)."""
    base = ensure_rootfs_tar(PLUGIN_BASE_PACKAGES)
    out = work / "python-slim.tar"
    with tarfile.open(base) as src, tarfile.open(out, "w") as dst:
        for member in src:
            if member.name.endswith("/EXTERNALLY-MANAGED"):
                continue  # the slim image's python is not the distribution's: pip installs into it
            data = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, data)
    return out


def build_plugin_image(repo: Path, work: Path) -> Path:
    """``podman build -f plugin/Containerfile`` offline; return a docker archive of the image."""
    if shutil.which("podman") is None:
        raise ImageBuildError("podman is not installed")
    storage = Path(tempfile.mkdtemp(prefix="cdfp-", dir="/tmp"))  # podman wants a runroot under 50 chars
    podman = _podman(storage)
    try:
        base = _python_slim_tar(work)
        changes = [f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["python3"]']
        _run([*podman, "import", *(arg for c in changes for arg in ("--change", c)), str(base), PLUGIN_BASE_IMAGE],
             timeout=BUILD_TIMEOUT_S)  # fmt: skip
        base.unlink()
        _run(
            [*podman, "build", "--pull=never", "--isolation", "chroot", "--network", "host",
             "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",
             "--file", str(repo / "plugin" / "Containerfile"), "--tag", PLUGIN_IMAGE, str(repo)],
            timeout=BUILD_TIMEOUT_S,
        )  # fmt: skip
        archive = work / "plugin-image.tar"
        _run([*podman, "save", "--format", "docker-archive", "--output", str(archive), PLUGIN_IMAGE], timeout=600)
        return archive
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True, timeout=300, check=False)
        shutil.rmtree(storage, ignore_errors=True)


PLUGIN_IMAGE_CACHE_KEEP = 3
# What plugin/Containerfile copies into the build: the image is cached by the content of these.
PLUGIN_CONTEXT = ("plugin/Containerfile", "pyproject.toml", "README.md", "cdi_fuse")


def plugin_context_key(repo: Path) -> str:
    digest = hashlib.sha256(" ".join([ROOTFS_RECIPE, *PLUGIN_BASE_PACKAGES]).encode())
    for entry in PLUGIN_CONTEXT:
        path = repo / entry
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(str(file.relative_to(repo)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_plugin_image(repo: Path, *, root: Path | None = None) -> Path:
    """The plugin image's docker archive, built once per content of the build context (cached)."""
    root = root or debcache.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"plugin-image-{plugin_context_key(repo)}"
    with debcache.locked(root / "plugin-image.lock", timeout_s=BUILD_TIMEOUT_S):
        if not (target / COMPLETE_MARKER).is_file():
            staging = Path(tempfile.mkdtemp(prefix=".plugin-image-", dir=root))
            try:
                build_plugin_image(repo, staging).rename(staging / "image.tar")
                (staging / COMPLETE_MARKER).write_text(PLUGIN_IMAGE + "\n")
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        target.touch()  # newest use first when pruning
        older = sorted(root.glob("plugin-image-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[PLUGIN_IMAGE_CACHE_KEEP:]:
            shutil.rmtree(stale, ignore_errors=True)
    return target / "image.tar"


def sandbox_image_archive(work: Path) -> Path:
    """The pause image: the containerd e2e fixture's minimal image (``sleep infinity``)."""
    root = containerd_image.build_image_rootfs(work / "sandbox-rootfs")
    archive = containerd_image.build_oci_archive(root, work / "sandbox.tar")
    shutil.rmtree(root, ignore_errors=True)
    return archive


def host_env_ok() -> str | None:
    """Why images cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, podman)"
    for tool in ("debootstrap", "podman", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None
