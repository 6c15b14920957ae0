"""Spec files: read, encode, write atomically, and scan spec directories like the reference cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cdi_fuse import defaults, errors
from cdi_fuse.cdi import compat, decode, models, names, report, specdirs, specfile, validation

__all__ = [
    "MAX_SPEC_SIZE",
    "SPEC_EXTENSIONS",
    "SpecFormat",
    "WriteResult",
    "device_names",
    "encode_spec",
    "format_for_path",
    "load_spec_data",
    "read_spec",
    "scan_spec_dirs",
    "write_spec",
]

SpecFormat = specfile.SpecFormat
SPEC_EXTENSIONS = specdirs.SPEC_EXTENSIONS
MAX_SPEC_SIZE = report.MAX_SPEC_SIZE


format_for_path = specfile.format_for_path
WriteResult = specfile.WriteResult


def encode_spec(spec: models.Spec, fmt: SpecFormat = "yaml") -> str:
    return specfile.encode_data(models.dump_spec(spec), fmt)


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
    return specfile.write_content(path, content, overwrite=overwrite)


def device_names(path: Path, *, library: compat.Library = compat.DEFAULT_LIBRARY) -> list[str]:
    """The qualified device names a spec file provides, read as the runtimes' library `library` does (SpecError
    if it would not load it)."""
    spec = read_spec(path, library=library)
    vendor, cls = names.parse_kind(spec.kind)
    return [names.qualified_name(vendor, cls, device.name) for device in spec.devices]


def scan_spec_dirs(spec_dirs: Sequence[Path] = defaults.SPEC_DIRS) -> specdirs.SpecRegistry:
    """What the spec dirs (lowest priority first) provide, every file read as the runtimes' library does."""
    return specdirs.scan(spec_dirs, device_names)
