"""Scan spec directories like the runtimes' CDI cache: which qualified device names they provide.

Priority is the list index (a later dir overrides an earlier one), scans are flat (.json and .yaml only, a
missing dir is skipped), a bad file is recorded and does not stop the scan, and a device defined by two files
of the same priority is a conflict and not provided. How a file is read is the caller's: `store` reads every
file as the runtimes' library does; the plugin's decider reads only what can concern its own device.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdi_fuse import errors

__all__ = ["SPEC_EXTENSIONS", "DeviceNamesReader", "SpecDevice", "SpecFileCache", "SpecRegistry", "scan", "spec_files"]

SPEC_EXTENSIONS = {".yaml": "yaml", ".json": "json"}

# The qualified device names one spec file provides; SpecError when the runtimes would not load it.
DeviceNamesReader = Callable[[Path], list[str]]


@dataclass(frozen=True)
class SpecDevice:
    qualified_name: str
    path: Path
    priority: int


@dataclass
class SpecRegistry:
    """What a set of spec dirs provides. Devices in conflict (two files, same priority) are left out."""

    devices: dict[str, SpecDevice] = field(default_factory=dict)
    conflicts: dict[str, list[Path]] = field(default_factory=dict)
    spec_errors: dict[Path, str] = field(default_factory=dict)
    spec_dirs: tuple[Path, ...] = ()

    def resolve(self, qualified_name: str) -> SpecDevice | None:
        return self.devices.get(qualified_name)

    def as_dict(self) -> dict[str, object]:
        return {
            "specDirs": [str(d) for d in self.spec_dirs],
            "devices": [
                {"name": d.qualified_name, "path": str(d.path), "priority": d.priority}
                for d in sorted(self.devices.values(), key=lambda d: d.qualified_name)
            ],
            "conflicts": [{"name": n, "paths": [str(p) for p in ps]} for n, ps in sorted(self.conflicts.items())],
            "errors": [{"path": str(p), "error": e} for p, e in sorted(self.spec_errors.items())],
        }


def spec_files(directory: Path) -> Iterable[Path]:
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p for p in entries if p.suffix in SPEC_EXTENSIONS and p.is_file()]


class SpecFileCache:
    """Each spec file's qualified device names (or its error), kept while the file's identity is unchanged.

    The identity is (device, inode, size, mtime, ctime): a file replaced by rename, rewritten or truncated
    gets another one, so a rescan re-reads only the files that changed.
    """

    def __init__(self, read: DeviceNamesReader) -> None:
        self._read = read
        self._entries: dict[Path, tuple[tuple[int, ...], list[str] | errors.SpecError]] = {}

    def __call__(self, path: Path) -> list[str]:
        try:
            info = os.stat(path)
        except OSError as exc:
            self._entries.pop(path, None)
            raise errors.SpecError(f"cannot read spec: {exc.strerror or exc}", path=path) from exc
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        cached = self._entries.get(path)
        if cached is None or cached[0] != identity:
            result: list[str] | errors.SpecError
            try:
                result = self._read(path)
            except errors.SpecError as exc:
                result = exc
            cached = self._entries[path] = (identity, result)
        if isinstance(cached[1], errors.SpecError):
            raise copy.copy(cached[1])  # a fresh instance: raising the kept one would grow its traceback
        return cached[1]


def scan(spec_dirs: Sequence[Path], read: DeviceNamesReader) -> SpecRegistry:
    """Scan spec dirs (lowest priority first), reading each .json/.yaml file with `read`."""
    registry = SpecRegistry(spec_dirs=tuple(spec_dirs))
    conflicted: set[str] = set()
    for priority, directory in enumerate(spec_dirs):
        try:
            paths = spec_files(directory)
        except OSError as exc:  # e.g. unreadable: recorded like a bad file, the other dirs still count
            registry.spec_errors[directory] = f"cannot scan spec dir: {exc.strerror or exc}"
            continue
        for path in paths:
            try:
                provided = read(path)
            except errors.SpecError as exc:
                registry.spec_errors[path] = exc.message if not exc.location else f"{exc.location}: {exc.message}"
                continue
            for name in provided:
                old = registry.devices.get(name)
                if old is not None and old.priority == priority:
                    conflicted.add(name)
                    registry.conflicts.setdefault(name, [old.path]).append(path)
                    continue
                registry.devices[name] = SpecDevice(name, path, priority)
    for name in conflicted:
        registry.devices.pop(name, None)
    return registry
