"""Checks of a CDI spec: JSON schema, strict parse, then the reference library's semantic rules.

Every check reports all the problems it finds as (location, message) pairs; ``validate_spec``
raises on the first one for callers that only need a verdict.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any, NamedTuple

import pydantic

from cdi_fuse import errors
from cdi_fuse.cdi import models, names, versions

__all__ = [
    "DEVICE_TYPES",
    "HOOK_NAMES",
    "Problem",
    "check_spec_data",
    "load_schema",
    "parse_spec",
    "schema_problems",
    "semantic_problems",
    "validate_spec",
]

DEVICE_TYPES = frozenset({"", "b", "c", "u", "p"})
HOOK_NAMES = frozenset({"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"})
_PERMISSION_CHARS = frozenset("rwm")
# Annotation keys follow the Kubernetes rule: optional DNS-subdomain prefix, then a name of at most 63.
_ANNOTATION_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ANNOTATION_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MAX_ANNOTATIONS_SIZE = 256 * 1024
_MAX_INTERFACE_NAME = 15
_MAX_MESSAGE = 300
_REQUIRED_MESSAGE = re.compile(r"^'(.+)' is a required property$")


class Problem(NamedTuple):
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


def _clip(message: str) -> str:
    """jsonschema quotes the offending value whole; a 1 MiB value must not become a 1 MiB report line."""
    return message if len(message) <= _MAX_MESSAGE else f"{message[:_MAX_MESSAGE]}... ({len(message)} characters)"


def _join(location: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    return f"{location}.{key}" if location else key


@functools.cache
def load_schema() -> dict[str, Any]:
    """The project's JSON schema for CDI specs (package data)."""
    text = resources.files("cdi_fuse.cdi").joinpath("schema/cdi-spec.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_problems(data: object, schema: dict[str, Any] | None = None) -> list[Problem]:
    """Problems found by a JSON-schema check (the project's schema unless one is given)."""
    import jsonschema  # imported here: it costs start-up time the plugin's hot path never needs

    validator = jsonschema.Draft7Validator(schema if schema is not None else load_schema())
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        location = ""
        for key in error.absolute_path:
            location = _join(location, key)
        if error.validator == "required":
            missing = _REQUIRED_MESSAGE.match(error.message)
            if missing:
                location = _join(location, missing.group(1))
        found.append(Problem(location, f"schema: {_clip(error.message)}"))
    return found


def parse_spec(data: object) -> models.Spec:
    """Strictly parse JSON-shaped data into a Spec; SpecError lists every field problem."""
    try:
        return models.Spec.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = _pydantic_problems(exc)
        raise errors.SpecError(
            "; ".join(str(p) for p in problems), location=problems[0].location if problems else ""
        ) from exc


def _pydantic_problems(exc: pydantic.ValidationError) -> list[Problem]:
    found = []
    for error in exc.errors():
        location = ""
        for key in error["loc"]:
            location = _join(location, key)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        found.append(Problem(location, message))
    return found


def _env_problems(location: str, env: list[str] | None) -> Iterator[Problem]:
    for i, entry in enumerate(env or ()):
        if entry.find("=") <= 0:
            yield Problem(_join(location, i), f"invalid environment variable {entry!r}: expected KEY=VALUE")


def _annotation_problems(location: str, annotations: dict[str, str] | None) -> Iterator[Problem]:
    if not annotations:
        return
    size = 0
    for key, value in annotations.items():
        size += len(key) + len(value)
        prefix, slash, name = key.rpartition("/")
        bad_prefix = slash and (not prefix or len(prefix) > 253 or not _ANNOTATION_PREFIX.fullmatch(prefix))
        if bad_prefix or len(name) > 63 or not _ANNOTATION_NAME.fullmatch(name):
            yield Problem(_join(location, key), f"invalid annotation key {key!r}")
    if size > _MAX_ANNOTATIONS_SIZE:
        yield Problem(location, f"annotations too large: {size} bytes, at most {_MAX_ANNOTATIONS_SIZE}")


def _interface_name_ok(name: str) -> bool:
    return (
        0 < len(name) <= _MAX_INTERFACE_NAME
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in name)
    )


def _edits_problems(location: str, edits: models.ContainerEdits) -> Iterator[Problem]:
    yield from _env_problems(_join(location, "env"), edits.env)
    for i, node in enumerate(edits.device_nodes or ()):
        where = _join(_join(location, "deviceNodes"), i)
        if not node.path:
            yield Problem(where, "invalid (empty) device path")
        if node.type is not None and node.type not in DEVICE_TYPES:
            yield Problem(_join(where, "type"), f"device {node.path!r}: invalid type {node.type!r}")
        if node.permissions and not set(node.permissions) <= _PERMISSION_CHARS:
            yield Problem(
                _join(where, "permissions"),
                f"device {node.path!r}: invalid permissions {node.permissions!r}: only r, w and m",
            )
    for i, hook in enumerate(edits.hooks or ()):
        where = _join(_join(location, "hooks"), i)
        if hook.hook_name not in HOOK_NAMES:
            yield Problem(
                _join(where, "hookName"),
                f"invalid hook name {hook.hook_name!r}: one of {', '.join(sorted(HOOK_NAMES))}",
            )
        if not hook.path:
            yield Problem(_join(where, "path"), f"invalid hook {hook.hook_name!r} with empty path")
        yield from _env_problems(_join(where, "env"), hook.env)
    for i, mount in enumerate(edits.mounts or ()):
        where = _join(_join(location, "mounts"), i)
        if not mount.host_path:
            yield Problem(_join(where, "hostPath"), "invalid mount, empty host path")
        if not mount.container_path:
            yield Problem(_join(where, "containerPath"), "invalid mount, empty container path")
    rdt = edits.intel_rdt
    if rdt is not None and rdt.clos_id is not None:
        clos = rdt.clos_id
        if len(clos) >= 4096 or clos in (".", "..") or "/" in clos or "\n" in clos:
            yield Problem(_join(_join(location, "intelRdt"), "closID"), f"invalid closID {clos!r}")
    host_names: set[str] = set()
    container_names: set[str] = set()
    for i, net in enumerate(edits.net_devices or ()):
        where = _join(_join(location, "netDevices"), i)
        for field, value, seen in (
            ("hostInterfaceName", net.host_interface_name, host_names),
            ("name", net.name, container_names),
        ):
            if not _interface_name_ok(value):
                yield Problem(_join(where, field), f"invalid network interface name {value!r}")
            elif value in seen:
                yield Problem(_join(where, field), f"duplicate network interface name {value!r}")
            seen.add(value)


def semantic_problems(spec: models.Spec) -> list[Problem]:
    """The reference library's rules beyond the schema: names, version, devices, edits."""
    found: list[Problem] = []
    try:
        names.parse_kind(spec.kind)
    except errors.InvalidNameError as exc:
        found.append(Problem("kind", exc.message))
    try:
        versions.validate_version(spec)
    except errors.SpecVersionError as exc:
        found.append(Problem(exc.location, exc.message))
    found.extend(_annotation_problems("annotations", spec.annotations))
    if spec.container_edits is not None:
        found.extend(_edits_problems("containerEdits", spec.container_edits))
    if not spec.devices:
        found.append(Problem("devices", "invalid spec, no devices"))
    seen: set[str] = set()
    for i, device in enumerate(spec.devices):
        where = _join("devices", i)
        try:
            names.validate_device_name(device.name)
        except errors.InvalidNameError as exc:
            found.append(Problem(_join(where, "name"), exc.message))
        if device.name in seen:
            found.append(Problem(_join(where, "name"), f"invalid spec, multiple device {device.name!r}"))
        seen.add(device.name)
        found.extend(_annotation_problems(_join(where, "annotations"), device.annotations))
        if device.container_edits.is_empty():
            found.append(Problem(_join(where, "containerEdits"), f"invalid device {device.name!r}, empty device edits"))
        else:
            found.extend(_edits_problems(_join(where, "containerEdits"), device.container_edits))
    return found


def validate_spec(spec: models.Spec) -> None:
    """Raise SpecError (SpecVersionError for version rules) on the first semantic problem."""
    for problem in semantic_problems(spec):
        error_type = errors.SpecVersionError if problem.location == "cdiVersion" else errors.SpecError
        raise error_type(problem.message, location=problem.location)


def check_spec_data(data: object, *, schema: bool = True) -> tuple[models.Spec | None, list[Problem]]:
    """Run every check on loaded spec data: schema, strict parse, then semantics and version.

    Returns the parsed spec (None when it does not parse) and all problems found.
    """
    found = schema_problems(data) if schema else []
    try:
        spec = models.Spec.model_validate(data)
    except pydantic.ValidationError as exc:
        reported = {p.location for p in found}
        found.extend(p for p in _pydantic_problems(exc) if p.location not in reported)
        return None, found
    found.extend(semantic_problems(spec))
    return spec, found
