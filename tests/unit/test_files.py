"""cdi_fuse.files: the atomic file replacement behind spec files and runtime configs."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cdi_fuse import errors, files


class _Failed(errors.CdiFuseError):
    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _temps(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


def test_new_file_gets_the_content_and_the_default_mode(tmp_path: Path) -> None:
    target = tmp_path / "a.yaml"
    old_umask = os.umask(0o077)
    try:
        files.replace_file(target, b"one\n", error=_Failed)
    finally:
        os.umask(old_umask)

    assert target.read_bytes() == b"one\n"
    assert stat.S_IMODE(target.stat().st_mode) == files.DEFAULT_FILE_MODE == 0o644
    assert _temps(tmp_path) == []


def test_replacing_keeps_the_old_mode_unless_one_is_given(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"old\n")
    target.chmod(0o600)

    files.replace_file(target, b"new\n", error=_Failed)
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"new\n", 0o600)

    files.replace_file(target, b"newer\n", error=_Failed, mode=0o644)
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"newer\n", 0o644)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_replacing_keeps_the_old_owner(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"old\n")
    os.chown(target, 4321, 8765)

    files.replace_file(target, b"new\n", error=_Failed)

    assert (target.stat().st_uid, target.stat().st_gid) == (4321, 8765)


def test_a_symlink_is_refused_and_left_alone(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"real\n")
    link = tmp_path / "link"
    link.symlink_to(real)

    for call in (
        lambda: files.read_existing(link, error=_Failed),
        lambda: files.replace_file(link, b"x", error=_Failed),
    ):
        with pytest.raises(_Failed, match="refusing to write through symbolic link") as caught:
            call()
        assert caught.value.path == link
    assert link.is_symlink() and real.read_bytes() == b"real\n"


def test_read_existing(tmp_path: Path) -> None:
    assert files.read_existing(tmp_path / "absent", error=_Failed) is None
    (tmp_path / "file").write_bytes(b"x")
    assert files.read_existing(tmp_path / "file", error=_Failed) == b"x"
    with pytest.raises(_Failed, match="is a directory"):
        files.read_existing(tmp_path, error=_Failed)


def test_no_overwrite_refuses_an_existing_file_also_one_that_appears_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "spec.yaml"
    target.write_bytes(b"theirs\n")
    with pytest.raises(_Failed, match="exists and overwriting was not asked for"):
        files.replace_file(target, b"ours\n", error=_Failed, overwrite=False, what="spec")
    target.unlink()

    real_link = os.link

    def racing_link(source: Any, destination: Any) -> None:
        Path(destination).write_bytes(b"raced\n")
        real_link(source, destination)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(_Failed, match="appeared while writing"):
        files.replace_file(target, b"ours\n", error=_Failed, overwrite=False)
    assert target.read_bytes() == b"raced\n"
    assert _temps(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"old\n")

    def full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(_Failed, match=r"cannot write config .*No space left on device") as caught:
        files.replace_file(target, b"new\n", error=_Failed, what="config")

    assert isinstance(caught.value.__cause__, OSError)
    assert target.read_bytes() == b"old\n"
    assert _temps(tmp_path) == []


def test_file_and_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    files.replace_file(tmp_path / "a", b"x", error=_Failed)

    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".a.")) and synced[0].endswith(".tmp")  # the data, before the rename
    assert synced[1] == str(tmp_path)  # the directory entry, after it


def test_make_directory_gives_every_created_level_the_mode(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        files.make_directory(tmp_path / "a" / "b", mode=0o755, error=_Failed)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(_Failed, match="cannot create spec directory"):
        files.make_directory(tmp_path / "file" / "sub", mode=0o755, error=_Failed, what="spec directory")
