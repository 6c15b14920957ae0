"""Replace a file atomically: the one writer behind CDI specs (cdi/store.py) and runtime configs (runtime/config.py).

The content goes to a temp file in the target's directory, is flushed and fsynced, gets its mode (and, when
it replaces a file, that file's owner), and is renamed over the target (or hard-linked to it, when an
existing file must not be replaced); the directory is fsynced after the rename, so the new name survives
a crash. A symbolic link at the target is refused: renaming over it would replace the link, not the file
it names. On any failure the temp file is removed and the file that was there is left as it was.

Callers pass the exception type to raise, so each layer reports its own error (SpecWriteError,
RuntimeConfigWriteError) with the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Protocol

from cdi_fuse import errors

__all__ = ["DEFAULT_FILE_MODE", "PathError", "make_directory", "read_existing", "replace_file"]

DEFAULT_FILE_MODE = 0o644


class PathError(Protocol):
    """An exception type of ours that takes a message and the path it is about."""

    def __call__(self, message: str, *, path: Path) -> errors.CdiFuseError: ...


def _refuse_symlink(path: Path, error: PathError) -> os.stat_result | None:
    """lstat `path`: None when nothing is there; raises when it is a symbolic link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot stat {str(path)!r}: {exc.strerror or exc}", path=path) from exc
    if stat.S_ISLNK(info.st_mode):
        raise error(f"refusing to write through symbolic link {str(path)!r}", path=path)
    return info


def read_existing(path: Path, *, error: PathError) -> bytes | None:
    """What `path` holds before it is replaced; None when there is no file. A symlink or directory is refused."""
    info = _refuse_symlink(path, error)
    if info is None:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{str(path)!r} is a directory", path=path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot read {str(path)!r}: {exc.strerror or exc}", path=path) from exc


def make_directory(directory: Path, *, mode: int, error: PathError, what: str = "directory") -> None:
    """Create `directory` and its missing parents with `mode` (mkdir's own mode is masked by the umask)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    try:
        directory.mkdir(mode=mode, parents=True, exist_ok=True)
        for created in missing:
            os.chmod(created, mode)
    except OSError as exc:
        raise error(f"cannot create {what} {str(directory)!r}: {exc.strerror or exc}", path=directory) from exc


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(
    path: Path,
    content: bytes,
    *,
    error: PathError,
    mode: int | None = None,
    overwrite: bool = True,
    what: str = "file",
) -> None:
    """Write `content` to `path` atomically (see the module docstring); the directory must exist.

    `mode` None keeps the mode and owner of the file being replaced (DEFAULT_FILE_MODE for a new file).
    With `overwrite` False an existing file is an error, also one that appears while writing.
    """
    old = _refuse_symlink(path, error)
    if old is not None and not overwrite:
        raise error(f"{what} {str(path)!r} exists and overwriting was not asked for", path=path)
    new_mode = mode if mode is not None else stat.S_IMODE(old.st_mode) if old is not None else DEFAULT_FILE_MODE
    tmp_name = ""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            if mode is None and old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                os.fchown(stream.fileno(), old.st_uid, old.st_gid)
            os.fchmod(stream.fileno(), new_mode)  # after fchown, which may clear setuid/setgid bits
            os.fsync(stream.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            os.link(tmp_name, path)
            os.unlink(tmp_name)
        tmp_name = ""
        _fsync_directory(path.parent)
    except FileExistsError as exc:
        raise error(
            f"{what} {str(path)!r} appeared while writing, and overwriting was not asked for", path=path
        ) from exc
    except IsADirectoryError as exc:
        raise error(f"{str(path)!r} is a directory", path=path) from exc
    except OSError as exc:
        raise error(f"cannot write {what} {str(path)!r}: {exc.strerror or exc}", path=path) from exc
    finally:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
