"""`cdi-fuse generate` on a full disk, a read-only spec dir and a symlinked target: exit 1, nothing damaged."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault import conftest as fault

SPEC_NAME = "cdi-fuse.io-fuse.yaml"


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"`mount {' '.join(args)}` failed although root: {result.stderr.strip()}")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs (root only); unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting a tmpfs needs root (running as uid {os.geteuid()})")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    _mount("-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", str(mountpoint))
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


def _generate(device: Path, spec_dir: Path, permissions: str) -> subprocess.CompletedProcess[str]:
    return fault.cdi_fuse(
        "generate", "--device-path", str(device), "--spec-dir", str(spec_dir), "--permissions", permissions
    )


def _fill(directory: Path) -> None:
    """Write until the filesystem reports ENOSPC."""
    with (directory / "filler").open("wb", buffering=0) as stream:
        chunk = b"x" * 1024
        for _ in range(1024):
            try:
                stream.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return
    raise AssertionError("a 16 KiB tmpfs took 1 MiB without ENOSPC")


def test_full_disk_fails_cleanly_and_keeps_the_old_spec(any_fuse_device: Path, tiny_tmpfs: Path) -> None:
    first = _generate(any_fuse_device, tiny_tmpfs, "rw")
    assert first.returncode == 0, first.stderr
    old = (tiny_tmpfs / SPEC_NAME).read_bytes()
    _fill(tiny_tmpfs)

    result = _generate(any_fuse_device, tiny_tmpfs, "rwm")  # different content, so a write is attempted

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: cannot write spec" in result.stderr and "No space left on device" in result.stderr
    assert (tiny_tmpfs / SPEC_NAME).read_bytes() == old
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == sorted(["filler", SPEC_NAME]), "no temp file left behind"


def test_read_only_spec_dir_fails_cleanly(any_fuse_device: Path, tiny_tmpfs: Path) -> None:
    assert _generate(any_fuse_device, tiny_tmpfs, "rw").returncode == 0
    old = (tiny_tmpfs / SPEC_NAME).read_bytes()
    _mount("-o", "remount,ro", str(tiny_tmpfs))

    result = _generate(any_fuse_device, tiny_tmpfs, "rwm")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Read-only file system" in result.stderr
    assert (tiny_tmpfs / SPEC_NAME).read_bytes() == old
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == [SPEC_NAME]


def test_read_only_spec_dir_that_does_not_exist_yet_fails_cleanly(any_fuse_device: Path, tiny_tmpfs: Path) -> None:
    _mount("-o", "remount,ro", str(tiny_tmpfs))

    result = _generate(any_fuse_device, tiny_tmpfs / "cdi", "rw")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot create spec directory" in result.stderr and "Read-only file system" in result.stderr


def test_symlinked_target_is_refused_and_left_alone(any_fuse_device: Path, tmp_path: Path) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("not a spec, and it must stay that way\n")
    link = spec_dir / SPEC_NAME
    link.symlink_to(elsewhere)

    result = _generate(any_fuse_device, spec_dir, "rw")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "symbolic link" in result.stderr
    assert link.is_symlink() and os.readlink(link) == str(elsewhere)
    assert elsewhere.read_text() == "not a spec, and it must stay that way\n"
    assert sorted(p.name for p in spec_dir.iterdir()) == [SPEC_NAME]


def test_dangling_symlink_target_is_refused(any_fuse_device: Path, tmp_path: Path) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    link = spec_dir / SPEC_NAME
    link.symlink_to(tmp_path / "nowhere.yaml")

    result = _generate(any_fuse_device, spec_dir, "rw")

    assert result.returncode == 1
    assert "symbolic link" in result.stderr
    assert link.is_symlink() and not (tmp_path / "nowhere.yaml").exists()
