"""`validate`'s judgement of a spec file: will the runtime load it, and what else is worth knowing.

Two levels:
- error: the runtime's CDI library refuses the file or crashes on it (judged against the newest library, or the
  one a given runtime bundles);
- warning: the runtime loads it, but it breaks the JSON schema, depends on YAML 1.1-vs-1.2 scalar reading, names
  a network interface the kernel refuses, or is refused by the older library some supported runtime bundles.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydantic

from cdi_fuse import errors
from cdi_fuse.cdi import compat, decode, models, specfile, validation

__all__ = [
    "MAX_SPEC_SIZE",
    "FileReport",
    "Judgement",
    "Refusal",
    "ReportedProblem",
    "judge_bytes",
    "judge_file",
    "load_spec_bytes",
    "render_text",
    "runtime_refusals",
    "spec_type_for",
]

Level = Literal["error", "warning"]
# Our cap, not the library's (it reads any size): a spec is a few KiB, and a reader must not be made to hold more.
MAX_SPEC_SIZE = specfile.MAX_SPEC_SIZE
_K = validation.ProblemKind


@dataclass(frozen=True)
class ReportedProblem:
    level: Level
    problem: validation.Problem

    def as_dict(self) -> dict[str, str]:
        p = self.problem
        return {"level": self.level, "kind": p.kind.value, "location": p.location, "message": p.message}


@dataclass
class Judgement:
    """What one library makes of the bytes: the decoded spec (if any) and its problems in library order."""

    spec: models.Spec | None
    problems: list[validation.Problem]
    decoded: decode.Decoded

    @property
    def loads(self) -> bool:
        return not self.problems

    @property
    def crashes(self) -> bool:
        return bool(self.problems) and self.problems[0].kind is _K.CRASH


@dataclass
class FileReport:
    path: str
    readable: bool = True
    library: str = compat.DEFAULT_LIBRARY.version
    runtime: str | None = None
    spec: models.Spec | None = None
    problems: list[ReportedProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[validation.Problem]:
        return [r.problem for r in self.problems if r.level == "error"]

    @property
    def warnings(self) -> list[validation.Problem]:
        return [r.problem for r in self.problems if r.level == "warning"]

    @property
    def valid(self) -> bool:
        return self.readable and not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "readable": self.readable,
            "library": self.library,
            "runtime": self.runtime,
            "cdiVersion": self.spec.cdi_version if self.spec else None,
            "kind": self.spec.kind if self.spec else None,
            "devices": [d.name for d in self.spec.devices] if self.spec else [],
            "problems": [r.as_dict() for r in self.problems],
        }


def _spec_type(library: compat.Library) -> decode.GoType:
    return decode.library_spec_type(library)


_LISTS = ("deviceNodes", "hooks", "mounts", "netDevices")
# Stand-ins for a null list entry while the rest of the spec is checked: valid, typeless, and not empty (a
# list holding a nil pointer is not empty for the library either).
_PLACEHOLDERS: dict[str, dict[str, str]] = {
    "deviceNodes": {"path": "/null"},
    "hooks": {"hookName": "prestart", "path": "/null"},
    "mounts": {"hostPath": "/null", "containerPath": "/null"},
    "netDevices": {"hostInterfaceName": "null{n}", "name": "null{n}"},
}
_EDIT_ORDER = {"env": 0, "deviceNodes": 1, "hooks": 2, "mounts": 3, "intelRdt": 4, "netDevices": 5}
_ORDER_RE = re.compile(r"^(?:devices\[(?P<device>\d+)\]\.?)?(?P<rest>.*)$")
_EDIT_RE = re.compile(r"^containerEdits\.(?P<edit>[A-Za-z]+)(?:\[(?P<index>\d+)\])?")


def _edits_at(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(location, edits) in the order the library's version checks walk them: devices first, then the spec's."""
    found = [(f"devices[{i}].containerEdits", d.get("containerEdits") or {}) for i, d in enumerate(spec["devices"])]
    return [*found, ("containerEdits", spec.get("containerEdits") or {})]


def _version_check_crash(spec: dict[str, Any]) -> str | None:
    """Where the library's minimum-version computation dereferences a null entry (specs-go/version.go:
    requiresV050 walks device nodes unless a device name starts with a digit, requiresV040 walks mounts; each
    stops at the first entry that decides). None when it does not."""
    if not any("0" <= str(d.get("name", ""))[:1] <= "9" for d in spec["devices"]):
        for where, edits in _edits_at(spec):
            for j, node in enumerate(edits.get("deviceNodes") or ()):
                if node is None:
                    return f"{where}.deviceNodes[{j}]"
                if node.get("hostPath"):
                    break
            else:
                continue
            break
    for where, edits in _edits_at(spec):
        for j, mount in enumerate(edits.get("mounts") or ()):
            if mount is None:
                return f"{where}.mounts[{j}]"
            if mount.get("type"):
                return None
    return None


def _order(problem: validation.Problem) -> tuple[float, ...]:
    """Where in the library's Spec.validate a problem stops it: version, names, spec edits, then device by
    device (name, empty edits, edits, duplicate name), then "no devices"."""
    location = problem.location
    if location.startswith("cdiVersion"):
        return (0,)
    if location.startswith("kind") or location.startswith("annotations"):
        return (1,)
    if location == "devices":
        return (4,)
    match = _ORDER_RE.match(location)
    assert match is not None
    edit = _EDIT_RE.match(match["rest"])
    edit_key: tuple[float, ...] = (_EDIT_ORDER.get(edit["edit"], 9), int(edit["index"] or 0)) if edit else (-1,)
    if match["device"] is None:
        return (2, *edit_key)
    stage = 3 if problem.kind is _K.DEVICES and "multiple" in problem.message else 2 if edit else 1
    stage = 0 if match["rest"] == "name" and stage != 3 else stage
    return (3, int(match["device"]), stage, *edit_key)


def _with_placeholders(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The spec with every null list entry replaced by a stand-in, and where the nulls were."""
    spec = copy.deepcopy(spec)
    nulls = []
    for where, edits in _edits_at(spec):
        for key in _LISTS:
            for j, item in enumerate(edits.get(key) or ()):
                if item is None:
                    nulls.append(f"{where}.{key}[{j}]")
                    n = len(nulls)
                    edits[key][j] = {k: v.format(n=n) for k, v in _PLACEHOLDERS[key].items()}
    return spec, nulls


def _crash(location: str) -> validation.Problem:
    return validation.Problem(location, "null entry: the CDI library dereferences it and crashes", _K.CRASH)


def judge_bytes(data: bytes, library: compat.Library = compat.DEFAULT_LIBRARY) -> Judgement:
    """Load spec bytes as `library` does: the decoded spec and what the library refuses, in its order."""
    decoded = decode.decode_spec(data, _spec_type(library))
    if decoded.error is not None:
        kind = _K.SYNTAX if decoded.error.message.startswith(("yaml", "not a CDI", "no spec")) else _K.FIELD
        return Judgement(None, [validation.Problem(decoded.error.location, decoded.error.message, kind)], decoded)
    assert decoded.spec is not None
    raw = {**decoded.spec, "devices": decoded.spec.get("devices") or []}
    raw, nulls = _with_placeholders(raw)
    if nulls:
        version = str(raw.get("cdiVersion", "")).removeprefix("v")
        if version not in library.cdi_versions:
            message = f"invalid version {raw.get('cdiVersion')!r}"
            return Judgement(None, [validation.Problem("cdiVersion", message, _K.VERSION)], decoded)
        crashed_at = _version_check_crash({**decoded.spec, "devices": decoded.spec.get("devices") or []})
        if crashed_at is not None:
            return Judgement(None, [_crash(crashed_at)], decoded)
    # The model holds what the library would write back (encoding/json, omitempty): Go's zero values ("" for an
    # unset hostPath, an empty spec-level containerEdits) become absent, as in the specs we write.
    held = decode.go_json(raw, _spec_type(library))
    assert isinstance(held, dict)
    if not held.get("containerEdits"):
        held.pop("containerEdits", None)
    # A missing or null `devices` is a nil slice in Go: no devices (which libraries >= 1.0 refuse).
    held["devices"] = held.get("devices") or []
    try:
        spec = models.Spec.model_validate(held)
    except pydantic.ValidationError as exc:  # pragma: no cover - decode only produces what the model holds
        return Judgement(None, [validation.Problem("", f"internal: {exc}", _K.FIELD)], decoded)
    problems = validation.library_problems(spec, library)
    if nulls:
        # The library stops at whichever comes first: a refusal, or the first null entry it dereferences.
        crash = _crash(min(nulls, key=lambda where: _order(_crash(where))))
        if not problems or _order(crash) < _order(problems[0]):
            return Judgement(None, [crash], decoded)
        return Judgement(None, problems, decoded)
    return Judgement(spec, problems, decoded)


def _compatibility(data: bytes, target: compat.Library) -> validation.Problem | None:
    """A warning when a runtime bundling an older library than `target` refuses what `target` loads."""
    refusing = {}
    for line in compat.LIBRARIES.values():
        if line.version >= target.version:
            continue
        judged = judge_bytes(data, line)
        if not judged.loads:
            refusing[line.version] = judged.problems[0]
    if not refusing:
        return None
    newest = max(refusing)
    runtimes = ", ".join(compat.runtimes_using(set(refusing)))
    reason = refusing[newest]
    return validation.Problem(
        reason.location,
        f"needs CDI library > {newest} ({reason.message}); refused by {runtimes}",
        _K.COMPATIBILITY,
    )


def _warnings(judged: Judgement) -> list[validation.Problem]:
    found: list[validation.Problem] = []
    for ambiguity in judged.decoded.ambiguities:
        found.append(
            validation.Problem(
                ambiguity.location,
                f"{ambiguity.text!r} reads as {ambiguity.yaml11!r} under YAML 1.1 (the runtimes) but "
                f"{ambiguity.yaml12!r} under YAML 1.2: quote it",
                _K.YAML_VERSION,
            )
        )
    if judged.spec is not None:
        found.extend(validation.annotation_problems("annotations", judged.spec.annotations))
        for i, device in enumerate(judged.spec.devices):
            found.extend(validation.annotation_problems(f"devices[{i}].annotations", device.annotations))
        found.extend(validation.interface_name_problems(judged.spec))
    if judged.decoded.plain_ok:
        found.extend(validation.schema_problems(judged.decoded.plain))
    return found


def load_spec_bytes(path: Path) -> bytes:
    """The file's bytes (at most one more than MAX_SPEC_SIZE), refusing what is not a regular readable file
    (OSError/ValueError)."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory")
    if path.exists() and not path.is_file():
        raise ValueError("not a regular file")
    with path.open("rb") as stream:
        return stream.read(MAX_SPEC_SIZE + 1)


def judge_file(path: Path, *, runtime: str | None = None) -> FileReport:
    """The two-level report for one file, against the newest library or the one `runtime` bundles.

    `runtime` is e.g. ``containerd-2.1`` (compat.parse_runtime); SpecError when it is unknown.
    """
    target = compat.DEFAULT_LIBRARY
    label = None
    if runtime is not None:
        name, version = compat.parse_runtime(runtime)
        found = compat.runtime_library(name, version)
        if found is None:
            raise errors.SpecError(f"no CDI library is known for {runtime!r}")
        target, module = found
        judged_as = "" if module.startswith(f"{target.version}.") else f", judged by the {target.version} rules"
        label = f"{name} {'.'.join(map(str, version))} (CDI library {module}{judged_as})"
    report = FileReport(path=str(path), library=target.version, runtime=label)
    try:
        data = load_spec_bytes(path)
    except FileNotFoundError:
        report.readable = False
        report.problems.append(ReportedProblem("error", validation.Problem("", "no such file", _K.SYNTAX)))
        return report
    except (OSError, ValueError) as exc:
        report.readable = False
        message = "permission denied" if isinstance(exc, PermissionError) else str(exc).removeprefix(f"{path}: ")
        if not os.access(path, os.R_OK):
            message = "permission denied"
        report.problems.append(ReportedProblem("error", validation.Problem("", message, _K.SYNTAX)))
        return report
    if len(data) > MAX_SPEC_SIZE:
        problem = validation.Problem("", f"spec file larger than {MAX_SPEC_SIZE} bytes", _K.SYNTAX)
        report.problems.append(ReportedProblem("error", problem))
        return report
    judged = judge_bytes(data, target)
    report.spec = judged.spec
    report.problems.extend(ReportedProblem("error", p) for p in judged.problems)
    if judged.loads:
        report.problems.extend(ReportedProblem("warning", p) for p in _warnings(judged))
        if runtime is None:
            compatibility = _compatibility(data, target)
            if compatibility is not None:
                report.problems.append(ReportedProblem("warning", compatibility))
    return report


def render_text(report: FileReport) -> str:
    """The human report: a verdict line, then one line per problem with its level."""
    against = f" for {report.runtime}" if report.runtime else ""
    if not report.readable:
        head = f"{report.path}: unreadable"
    elif report.errors:
        head = f"{report.path}: invalid{against}"
    else:
        spec = report.spec
        assert spec is not None
        devices = ", ".join(d.name for d in spec.devices)
        head = f"{report.path}: valid{against} (cdiVersion {spec.cdi_version}, kind {spec.kind}, devices: {devices})"
    lines = [head]
    for reported in report.problems:
        problem = reported.problem
        where = f"{problem.location}: " if problem.location else ""
        lines.append(f"  {reported.level}: {where}{problem.message}")
    return "\n".join(lines)


def spec_type_for(library: compat.Library) -> decode.GoType:
    """The Go spec type `library` decodes into."""
    return _spec_type(library)


@dataclass(frozen=True)
class Refusal:
    """A spec file a runtime's library will not load: `problem` is its first objection."""

    path: Path
    problem: validation.Problem

    @property
    def crashes(self) -> bool:
        return self.problem.kind is _K.CRASH

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _spec_files(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.suffix in (".json", ".yaml") and p.is_file()]


def runtime_refusals(runtime: compat.RuntimeLibrary, spec_dirs: Sequence[Path]) -> list[Refusal]:
    """Spec files in `spec_dirs` the runtime's library crashes on, or refuses although the newest library loads
    them (what the runtime's own spec scan would drop, or die on, that `validate` alone calls valid)."""
    found = []
    for directory in spec_dirs:
        for path in _spec_files(directory):
            try:
                data = load_spec_bytes(path)
            except (OSError, ValueError):
                continue
            if len(data) > MAX_SPEC_SIZE:
                continue
            judged = judge_bytes(data, runtime.library)
            if judged.loads:
                continue
            if judged.crashes or (runtime.library != compat.DEFAULT_LIBRARY and judge_bytes(data).loads):
                found.append(Refusal(path, judged.problems[0]))
    return found
