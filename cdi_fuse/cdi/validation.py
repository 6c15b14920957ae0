"""Checks of a CDI spec: JSON schema, strict parse, then the reference library's semantic rules.

Every check reports all the problems it finds as (location, message) pairs; ``validate_spec``
raises on the first one for callers that only need a verdict.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from enum import StrEnum
from importlib import resources
from typing import Any, NamedTuple

import pydantic

from cdi_fuse import errors
from cdi_fuse.cdi import compat, models, names, versions

__all__ = [
    "DEVICE_TYPES",
    "HOOK_NAMES",
    "Problem",
    "ProblemKind",
    "annotation_problems",
    "check_spec_data",
    "crash_problems",
    "edits_problems",
    "interface_name_problems",
    "library_problems",
    "load_schema",
    "parse_spec",
    "schema_problems",
    "semantic_problems",
    "validate_spec",
]

DEVICE_TYPES = frozenset({"", "b", "c", "u", "p"})
HOOK_NAMES = frozenset({"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"})
_PERMISSION_CHARS = names.DEVICE_PERMISSIONS
# Annotation keys follow the Kubernetes rule: optional DNS-subdomain prefix, then a name of at most 63.
_ANNOTATION_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ANNOTATION_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MAX_ANNOTATIONS_SIZE = 256 * 1024
_MAX_INTERFACE_NAME = 15
_MAX_MESSAGE = 300
_REQUIRED_MESSAGE = re.compile(r"^'(.+)' is a required property$")


class ProblemKind(StrEnum):
    """What a problem is about; the report's level follows from it (see cdi/report.py)."""

    SYNTAX = "syntax"  # the YAML/JSON cannot be read, or is not a mapping
    FIELD = "field"  # unknown field, wrong type, missing required field
    VERSION = "version"  # cdiVersion unknown to the library, or below what the content needs
    NAME = "name"  # vendor, class or device name
    CRASH = "crash"  # the library panics on it (the runtime may fail to start)
    DEVICES = "devices"  # no devices, duplicate devices, a device without edits
    ENV = "env"
    DEVICE_NODE = "deviceNode"
    HOOK = "hook"
    MOUNT = "mount"
    NET_DEVICE = "netDevice"
    INTEL_RDT = "intelRdt"
    ANNOTATION = "annotation"  # the library loads any key; its schema check and Kubernetes refuse bad ones
    INTERFACE_NAME = "interfaceName"  # loaded, but the kernel refuses the name when the container starts
    SCHEMA = "schema"  # breaks the JSON schema
    YAML_VERSION = "yamlVersion"  # a plain scalar YAML 1.1 (the runtimes) and YAML 1.2 read differently
    COMPATIBILITY = "compatibility"  # a supported runtime bundles an older library that refuses it


class Problem(NamedTuple):
    location: str
    message: str
    kind: ProblemKind = ProblemKind.FIELD

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
        found.append(Problem(location, f"schema: {_clip(error.message)}", ProblemKind.SCHEMA))
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
            yield Problem(
                _join(location, i), f"invalid environment variable {entry!r}: expected KEY=VALUE", ProblemKind.ENV
            )


def annotation_problems(location: str, annotations: dict[str, str] | None) -> Iterator[Problem]:
    """Kubernetes annotation rules, which the library's schema check applies (loading does not)."""
    if not annotations:
        return
    size = 0
    for key, value in annotations.items():
        size += len(key.encode()) + len(value.encode())
        prefix, slash, name = key.lower().rpartition("/")
        bad_prefix = slash and (not prefix or len(prefix) > 253 or not _ANNOTATION_PREFIX.fullmatch(prefix))
        if bad_prefix or "/" in prefix or len(name) > 63 or not _ANNOTATION_NAME.fullmatch(name):
            yield Problem(_join(location, key), f"invalid annotation key {key!r}", ProblemKind.ANNOTATION)
    if size > _MAX_ANNOTATIONS_SIZE:
        yield Problem(
            location, f"annotations too large: {size} bytes, at most {_MAX_ANNOTATIONS_SIZE}", ProblemKind.ANNOTATION
        )


def _interface_name_ok(name: str) -> bool:
    """The kernel's rule for an interface name (dev_valid_name)."""
    return (
        0 < len(name.encode()) <= _MAX_INTERFACE_NAME
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in name)
    )


# One check per edit kind, in the order the library's ContainerEdits.Validate runs them.


def _device_node_problems(location: str, nodes: list[models.DeviceNode] | None) -> Iterator[Problem]:
    for i, node in enumerate(nodes or ()):
        where = _join(location, i)
        if not node.path:
            yield Problem(where, "invalid (empty) device path", ProblemKind.DEVICE_NODE)
        if (node.type or "") not in DEVICE_TYPES:
            yield Problem(
                _join(where, "type"), f"device {node.path!r}: invalid type {node.type!r}", ProblemKind.DEVICE_NODE
            )
        if node.permissions and not set(node.permissions) <= _PERMISSION_CHARS:
            yield Problem(
                _join(where, "permissions"),
                f"device {node.path!r}: invalid permissions {node.permissions!r}: only r, w and m",
                ProblemKind.DEVICE_NODE,
            )


def _hook_problems(location: str, hooks: list[models.Hook] | None) -> Iterator[Problem]:
    for i, hook in enumerate(hooks or ()):
        where = _join(location, i)
        if hook.hook_name not in HOOK_NAMES:
            yield Problem(
                _join(where, "hookName"),
                f"invalid hook name {hook.hook_name!r}: one of {', '.join(sorted(HOOK_NAMES))}",
                ProblemKind.HOOK,
            )
        if not hook.path:
            yield Problem(_join(where, "path"), f"invalid hook {hook.hook_name!r} with empty path", ProblemKind.HOOK)
        yield from _env_problems(_join(where, "env"), hook.env)


def _mount_problems(location: str, mounts: list[models.Mount] | None) -> Iterator[Problem]:
    for i, mount in enumerate(mounts or ()):
        where = _join(location, i)
        if not mount.host_path:
            yield Problem(_join(where, "hostPath"), "invalid mount, empty host path", ProblemKind.MOUNT)
        if not mount.container_path:
            yield Problem(_join(where, "containerPath"), "invalid mount, empty container path", ProblemKind.MOUNT)


def _intel_rdt_problems(location: str, rdt: models.IntelRdt | None) -> Iterator[Problem]:
    clos = rdt.clos_id or "" if rdt is not None else ""
    if len(clos.encode()) >= 4096 or clos in (".", "..") or "/" in clos or "\n" in clos:
        yield Problem(_join(location, "closID"), f"invalid closID {clos!r}", ProblemKind.INTEL_RDT)


def _net_device_problems(location: str, devices: list[models.NetDevice] | None) -> Iterator[Problem]:
    host_names: set[str] = set()
    container_names: set[str] = set()
    for i, net in enumerate(devices or ()):
        where = _join(location, i)
        for field, value, seen in (
            ("hostInterfaceName", net.host_interface_name, host_names),
            ("name", net.name, container_names),
        ):
            if not value:
                yield Problem(_join(where, field), f"invalid linux net device, empty {field}", ProblemKind.NET_DEVICE)
            elif value in seen:
                yield Problem(
                    _join(where, field), f"duplicate network interface name {value!r}", ProblemKind.NET_DEVICE
                )
            seen.add(value)


def edits_problems(location: str, edits: models.ContainerEdits) -> Iterator[Problem]:
    """The library's checks of one set of container edits."""
    yield from _env_problems(_join(location, "env"), edits.env)
    yield from _device_node_problems(_join(location, "deviceNodes"), edits.device_nodes)
    yield from _hook_problems(_join(location, "hooks"), edits.hooks)
    yield from _mount_problems(_join(location, "mounts"), edits.mounts)
    if edits.intel_rdt is not None:
        yield from _intel_rdt_problems(_join(location, "intelRdt"), edits.intel_rdt)
    yield from _net_device_problems(_join(location, "netDevices"), edits.net_devices)


def interface_name_problems(spec: models.Spec) -> Iterator[Problem]:
    """Network interface names the library loads but the kernel refuses when the container starts."""
    for location, edits in _all_edits(spec):
        for i, net in enumerate(edits.net_devices or ()):
            for field, value in (("hostInterfaceName", net.host_interface_name), ("name", net.name)):
                if value and not _interface_name_ok(value):
                    where = _join(_join(_join(location, "netDevices"), i), field)
                    yield Problem(where, f"invalid network interface name {value!r}", ProblemKind.INTERFACE_NAME)


def _all_edits(spec: models.Spec) -> Iterator[tuple[str, models.ContainerEdits]]:
    if spec.container_edits is not None:
        yield "containerEdits", spec.container_edits
    for i, device in enumerate(spec.devices):
        yield _join(_join("devices", i), "containerEdits"), device.container_edits


def crash_problems(kind: str) -> list[Problem]:
    """Names that make every released library panic (slice bounds out of range): names.crash_message."""
    message = names.crash_message(kind)
    return [Problem("kind", message, ProblemKind.CRASH)] if message else []


def _device_edits_empty(edits: models.ContainerEdits, library: compat.Library) -> bool:
    if library.net_devices and edits.net_devices:
        return False
    return edits.is_empty()


def library_problems(spec: models.Spec, library: compat.Library = compat.DEFAULT_LIBRARY) -> list[Problem]:
    """What `library` refuses in a decoded spec, in the order its Spec.validate checks (the first one is its error)."""
    found: list[Problem] = []
    try:
        versions.validate_version(spec, library)
    except errors.SpecVersionError as exc:
        found.append(Problem(exc.location, exc.message, ProblemKind.VERSION))
    found.extend(crash_problems(spec.kind))
    vendor, sep, cls = spec.kind.partition("/")
    if not sep or not vendor or not cls:
        # The library reads this as an empty vendor name ("invalid vendor. empty name"): same verdict.
        found.append(Problem("kind", f"invalid kind {spec.kind!r}: expected vendor/class", ProblemKind.NAME))
    for what, value, check in (
        ("vendor", vendor, names.validate_vendor_name),
        ("class", cls, names.validate_class_name),
    ):
        if not sep or not vendor or not cls:
            break
        if any(p.kind is ProblemKind.CRASH for p in found) and len(value.encode()) == 1:
            continue
        try:
            check(value)
            if what == "class" and "." in value and not library.dot_in_class:
                raise errors.InvalidNameError(f"invalid class name {value!r}: '.' needs CDI library >= 0.6")
        except errors.InvalidNameError as exc:
            found.append(Problem("kind", exc.message, ProblemKind.NAME))
    if spec.container_edits is not None:
        found.extend(edits_problems("containerEdits", spec.container_edits))
    seen: set[str] = set()
    for i, device in enumerate(spec.devices):
        where = _join("devices", i)
        try:
            names.validate_device_name(device.name)
        except errors.InvalidNameError as exc:
            found.append(Problem(_join(where, "name"), exc.message, ProblemKind.NAME))
        if _device_edits_empty(device.container_edits, library):
            found.append(
                Problem(
                    _join(where, "containerEdits"),
                    f"invalid device {device.name!r}, empty device edits",
                    ProblemKind.DEVICES,
                )
            )
        else:
            found.extend(edits_problems(_join(where, "containerEdits"), device.container_edits))
        if device.name in seen:
            found.append(
                Problem(_join(where, "name"), f"invalid spec, multiple device {device.name!r}", ProblemKind.DEVICES)
            )
        seen.add(device.name)
    if not spec.devices and library.refuses_no_devices:
        found.append(Problem("devices", "invalid spec, no devices", ProblemKind.DEVICES))
    return found


def semantic_problems(spec: models.Spec) -> list[Problem]:
    """What the newest library refuses, plus annotation keys and kernel-invalid interface names."""
    found = library_problems(spec)
    found.extend(annotation_problems("annotations", spec.annotations))
    for i, device in enumerate(spec.devices):
        found.extend(annotation_problems(_join(_join("devices", i), "annotations"), device.annotations))
    found.extend(interface_name_problems(spec))
    return found


def validate_spec(spec: models.Spec) -> None:
    """Raise SpecError (SpecVersionError for version rules) on the first semantic problem."""
    for problem in semantic_problems(spec):
        error_type = errors.SpecVersionError if problem.kind is ProblemKind.VERSION else errors.SpecError
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
