"""Spec files: read, encode, write atomically, and scan spec directories like the reference cache."""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cdi_fuse import defaults, errors, files
from cdi_fuse.cdi import models, names, validation

__all__ = [
    "DEFAULT_SPEC_DIRS",
    "MAX_SPEC_SIZE",
    "SPEC_EXTENSIONS",
    "SpecDevice",
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
MAX_SPEC_SIZE = 1024 * 1024
_FILE_MODE = 0o644
_DIR_MODE = 0o755


def format_for_path(path: Path, default: SpecFormat = "yaml") -> SpecFormat:
    return "json" if path.suffix == ".json" else "yaml" if path.suffix in (".yaml", ".yml") else default


def encode_spec(spec: models.Spec, fmt: SpecFormat = "yaml") -> str:
    data = models.dump_spec(spec)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# Aliases may repeat at most this many nodes: a few hundred bytes of nested aliases ("billion laughs")
# would otherwise expand into more data than any checker can walk.
_MAX_ALIAS_EXPANSION = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes in `node` with every alias expanded; `sizes` memoizes per node (and ends up holding each once)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias counts once; the constructor deals with recursion
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    size = 1 + sum(_expanded_size(child, sizes) for child in children)
    sizes[id(node)] = size
    return size


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one, and alias bombs."""

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            sizes: dict[int, int] = {}
            if _expanded_size(node, sizes) - len(sizes) > _MAX_ALIAS_EXPANSION:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand to more than {_MAX_ALIAS_EXPANSION} extra nodes", node.start_mark
                )
        return node


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<` merge keys: SafeLoader merges them below; explicit keys override them
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports it as a ConstructorError ("found unhashable key")
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _DuplicateJsonKeyError(ValueError):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Reject duplicate keys in JSON as the YAML loader does (json.loads would keep the last silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateJsonKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_spec_data(path: Path) -> object:
    """Read a spec file into JSON-shaped data (JSON is parsed as YAML's subset, like the reference).

    Raises SpecError for unreadable, oversized, non-UTF-8 or malformed files.
    """
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_SPEC_SIZE + 1)
    except OSError as exc:
        raise errors.SpecError(f"cannot read spec: {exc.strerror or exc}", path=path) from exc
    if len(raw) > MAX_SPEC_SIZE:
        raise errors.SpecError(f"spec file larger than {MAX_SPEC_SIZE} bytes", path=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.SpecError(f"spec is not UTF-8 text (byte {exc.start})", path=path) from exc
    is_json = path.suffix == ".json"
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=_json_object)
        return yaml.load(text, Loader=_StrictLoader)
    except json.JSONDecodeError as exc:
        raise errors.SpecError(f"malformed JSON: {exc.msg}", path=path, location=f"line {exc.lineno}") from exc
    except _DuplicateJsonKeyError as exc:
        raise errors.SpecError(f"malformed JSON: {exc}", path=path) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise errors.SpecError(f"malformed YAML: {exc.problem or exc}", path=path, location=where) from exc
    except yaml.YAMLError as exc:
        raise errors.SpecError(f"malformed YAML: {exc}", path=path) from exc
    except RecursionError as exc:
        raise errors.SpecError(f"malformed {'JSON' if is_json else 'YAML'}: nested too deeply", path=path) from exc


def read_spec(path: Path) -> models.Spec:
    """Load, strictly parse and semantically validate one spec file."""
    data = load_spec_data(path)
    try:
        spec = validation.parse_spec(data)
        validation.validate_spec(spec)
    except errors.SpecError as exc:
        exc.path = path
        raise
    return spec


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


def scan_spec_dirs(spec_dirs: Sequence[Path] = DEFAULT_SPEC_DIRS) -> SpecRegistry:
    """Scan spec dirs (lowest priority first) flatly for .json/.yaml specs.

    A bad file is recorded and skipped; a device defined by two files of the same priority is a
    conflict and not provided; a higher-priority dir overrides a lower one.
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
                spec = read_spec(path)
            except errors.SpecError as exc:
                registry.spec_errors[path] = exc.message if not exc.location else f"{exc.location}: {exc.message}"
                continue
            vendor, cls = names.parse_kind(spec.kind)
            for device in spec.devices:
                name = names.qualified_name(vendor, cls, device.name)
                old = registry.devices.get(name)
                if old is not None and old.priority == priority:
                    conflicted.add(name)
                    registry.conflicts.setdefault(name, [old.path]).append(path)
                    continue
                registry.devices[name] = SpecDevice(name, path, priority)
    for name in conflicted:
        registry.devices.pop(name, None)
    return registry
