"""Spec files: read, encode, write atomically, and scan spec directories like the reference cache."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from cdi_fuse import defaults, errors, files
from cdi_fuse.cdi import compat, decode, models, names, report, validation

__all__ = [
    "DEFAULT_SPEC_DIRS",
    "MAX_SPEC_SIZE",
    "SPEC_EXTENSIONS",
    "SpecDevice",
    "SpecFileCache",
    "SpecFormat",
    "SpecRegistry",
    "WriteResult",
    "encode_spec",
    "format_for_path",
    "load_spec_data",
    "read_spec",
    "scan_spec_dirs",
    "write_spec",
]

SpecFormat = Literal["yaml", "json"]
DEFAULT_SPEC_DIRS = defaults.SPEC_DIRS
SPEC_EXTENSIONS = {".yaml": "yaml", ".json": "json"}
MAX_SPEC_SIZE = report.MAX_SPEC_SIZE
_FILE_MODE = 0o644
_DIR_MODE = 0o755


def format_for_path(path: Path, default: SpecFormat = "yaml") -> SpecFormat:
    return "json" if path.suffix == ".json" else "yaml" if path.suffix in (".yaml", ".yml") else default


class _GoYamlDumper(yaml.SafeDumper):
    """Quotes every string the runtimes' YAML reader (go-yaml v2) would read as something else.

    PyYAML quotes what its own YAML 1.1 resolver reads as non-strings, but go-yaml v2 also reads ``y``/``n`` as
    booleans and ``0o17`` or ``1e3`` as numbers: unquoted, a device named ``y`` would load as ``true``.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value == "<<" or decode.resolve_yaml11(value) != value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_GoYamlDumper.add_representer(str, _represent_str)


def encode_spec(spec: models.Spec, fmt: SpecFormat = "yaml") -> str:
    data = models.dump_spec(spec)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.dump(data, Dumper=_GoYamlDumper, sort_keys=False, default_flow_style=False)


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_SPEC_SIZE + 1)
    except OSError as exc:
        raise errors.SpecError(f"cannot read spec: {exc.strerror or exc}", path=path) from exc
    if len(raw) > MAX_SPEC_SIZE:
        raise errors.SpecError(f"spec file larger than {MAX_SPEC_SIZE} bytes", path=path)
    return raw


def load_spec_data(path: Path) -> object:
    """The file as the JSON the runtimes' YAML step turns it into (what a JSON-schema check sees); SpecError when
    the library cannot read it (malformed, duplicate keys, not a mapping...)."""
    decoded = decode.decode_spec(_read_bytes(path), report.spec_type_for(compat.DEFAULT_LIBRARY))
    if not decoded.plain_ok:
        error = decoded.error or decode.DecodeError("error converting YAML to JSON")
        raise errors.SpecError(error.message, path=path, location=error.location)
    return decoded.plain


def read_spec(path: Path, *, library: compat.Library = compat.DEFAULT_LIBRARY) -> models.Spec:
    """Read one spec file as the runtimes' CDI library `library` does (cdi/decode.py): the spec it loads, or
    SpecError (SpecVersionError for version rules) with the library's first objection."""
    judged = report.judge_bytes(_read_bytes(path), library)
    if judged.spec is not None and judged.loads:
        return judged.spec
    problem = judged.problems[0]
    error_type = errors.SpecVersionError if problem.kind is validation.ProblemKind.VERSION else errors.SpecError
    raise error_type(problem.message, path=path, location=problem.location)


@dataclass(frozen=True)
class WriteResult:
    path: Path
    changed: bool
    content: bytes  # what the file holds now


def write_spec(
    spec: models.Spec,
    path: Path,
    *,
    fmt: SpecFormat | None = None,
    overwrite: bool = True,
) -> WriteResult:
    """Validate and write a spec atomically, mode 0644, creating the directory (0755) if missing.

    Identical content on disk means no write. A symlink at the target is refused. The file that
    was there before stays intact on any failure.
    """
    validation.validate_spec(spec)
    content = encode_spec(spec, fmt or format_for_path(path)).encode("utf-8")
    files.make_directory(path.parent, mode=_DIR_MODE, error=errors.SpecWriteError, what="spec directory")
    current = files.read_existing(path, error=errors.SpecWriteError)
    if current == content:
        return WriteResult(path, changed=False, content=content)
    files.replace_file(path, content, error=errors.SpecWriteError, mode=_FILE_MODE, overwrite=overwrite, what="spec")
    return WriteResult(path, changed=True, content=content)


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


def _spec_files(directory: Path) -> Iterable[Path]:
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p for p in entries if p.suffix in SPEC_EXTENSIONS and p.is_file()]


def _device_names(spec: models.Spec) -> list[str]:
    vendor, cls = names.parse_kind(spec.kind)
    return [names.qualified_name(vendor, cls, device.name) for device in spec.devices]


class SpecFileCache:
    """Each spec file's qualified device names (or its error), kept while the file's identity is unchanged.

    The identity is (device, inode, size, mtime, ctime): a file replaced by rename, rewritten or truncated
    gets another one, so a rescan re-reads only the files that changed.
    """

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple[int, ...], list[str] | errors.SpecError]] = {}

    def device_names(self, path: Path) -> list[str]:
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
                result = _device_names(read_spec(path))
            except errors.SpecError as exc:
                result = exc
            cached = self._entries[path] = (identity, result)
        if isinstance(cached[1], errors.SpecError):
            raise copy.copy(cached[1])  # a fresh instance: raising the kept one would grow its traceback
        return cached[1]


def scan_spec_dirs(
    spec_dirs: Sequence[Path] = DEFAULT_SPEC_DIRS, *, cache: SpecFileCache | None = None
) -> SpecRegistry:
    """Scan spec dirs (lowest priority first) flatly for .json/.yaml specs.

    A bad file is recorded and skipped; a device defined by two files of the same priority is a
    conflict and not provided; a higher-priority dir overrides a lower one. With a `cache`, files whose
    identity did not change since the last scan are not read again.
    """
    registry = SpecRegistry(spec_dirs=tuple(spec_dirs))
    conflicted: set[str] = set()
    for priority, directory in enumerate(spec_dirs):
        try:
            paths = _spec_files(directory)
        except OSError as exc:  # e.g. unreadable: recorded like a bad file, the other dirs still count
            registry.spec_errors[directory] = f"cannot scan spec dir: {exc.strerror or exc}"
            continue
        for path in paths:
            try:
                provided = cache.device_names(path) if cache is not None else _device_names(read_spec(path))
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
