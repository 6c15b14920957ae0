"""Spec files without pydantic: the format a path asks for, spec data (JSON-shaped: what models.dump_spec
gives, or what node/fuse.py builds) encoded as the runtimes read it, and the atomic write (mode 0644, the spec
dir created 0755, nothing written when the content is unchanged). The plugin process writes its spec through
this module alone; store.write_spec validates a model first, then writes through it too."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from cdi_fuse import errors, files
from cdi_fuse.cdi import yaml11

__all__ = ["MAX_SPEC_SIZE", "SpecFormat", "WriteResult", "encode_data", "format_for_path", "write_content"]

SpecFormat = Literal["yaml", "json"]
MAX_SPEC_SIZE = 1024 * 1024  # a larger file is refused rather than read
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
    if value == "<<" or yaml11.resolve_yaml11(value) != value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_GoYamlDumper.add_representer(str, _represent_str)


def encode_data(data: Mapping[str, Any], fmt: SpecFormat = "yaml") -> str:
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.dump(dict(data), Dumper=_GoYamlDumper, sort_keys=False, default_flow_style=False)


@dataclass(frozen=True)
class WriteResult:
    path: Path
    changed: bool
    content: bytes  # what the file holds now


def write_content(path: Path, content: bytes, *, overwrite: bool = True) -> WriteResult:
    """Write an encoded spec atomically, mode 0644, creating the directory (0755) if missing.

    Identical content on disk means no write. A symlink at the target is refused. The file that was there
    before stays intact on any failure.
    """
    files.make_directory(path.parent, mode=_DIR_MODE, error=errors.SpecWriteError, what="spec directory")
    current = files.read_existing(path, error=errors.SpecWriteError)
    if current == content:
        return WriteResult(path, changed=False, content=content)
    files.replace_file(path, content, error=errors.SpecWriteError, mode=_FILE_MODE, overwrite=overwrite, what="spec")
    return WriteResult(path, changed=True, content=content)
