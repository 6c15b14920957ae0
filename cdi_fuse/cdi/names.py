"""The CDI name grammar: vendor, class, device and qualified device names. Stdlib only.

A qualified device name is ``vendor/class=name``; ``vendor/class`` is the spec's ``kind``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from cdi_fuse import errors

__all__ = [
    "ANNOTATION_PREFIX",
    "DEVICE_NAME_PATTERN",
    "DEVICE_PERMISSIONS",
    "MAX_ANNOTATION_NAME_LENGTH",
    "VENDOR_CLASS_PATTERN",
    "Kind",
    "QualifiedName",
    "annotation_key",
    "crash_message",
    "parse_kind",
    "parse_qualified_name",
    "qualified_name",
    "spec_file_name",
    "validate_class_name",
    "validate_device_name",
    "validate_vendor_name",
]

VENDOR_CLASS_PATTERN = r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$"
DEVICE_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$"
ANNOTATION_PREFIX = "cdi.k8s.io/"
MAX_ANNOTATION_NAME_LENGTH = 63

_VENDOR_CLASS = re.compile(VENDOR_CLASS_PATTERN)
_DEVICE_NAME = re.compile(DEVICE_NAME_PATTERN)
_ANNOTATION_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")


class Kind(NamedTuple):
    vendor: str
    cls: str


class QualifiedName(NamedTuple):
    vendor: str
    cls: str
    name: str

    def __str__(self) -> str:
        return qualified_name(self.vendor, self.cls, self.name)

    @property
    def kind(self) -> str:
        return f"{self.vendor}/{self.cls}"


def _validate(what: str, value: str, pattern: re.Pattern[str]) -> None:
    if not value:
        raise errors.InvalidNameError(f"invalid (empty) {what}")
    if not pattern.fullmatch(value):
        raise errors.InvalidNameError(f"invalid {what} {value!r}: must match {pattern.pattern}")


def validate_vendor_name(vendor: str) -> None:
    _validate("vendor name", vendor, _VENDOR_CLASS)


def validate_class_name(cls: str) -> None:
    _validate("class name", cls, _VENDOR_CLASS)


def validate_device_name(name: str) -> None:
    _validate("device name", name, _DEVICE_NAME)


def parse_kind(kind: str) -> Kind:
    """Split and check ``vendor/class``."""
    vendor, sep, cls = kind.partition("/")
    if not sep:
        raise errors.InvalidNameError(f"invalid kind {kind!r}: expected vendor/class")
    validate_vendor_name(vendor)
    validate_class_name(cls)
    return Kind(vendor, cls)


def parse_qualified_name(device: str) -> QualifiedName:
    """Split and check ``vendor/class=name``."""
    kind, sep, name = device.partition("=")
    if not sep or "/" not in kind:
        raise errors.InvalidNameError(f"invalid qualified device name {device!r}: expected vendor/class=name")
    vendor, cls = parse_kind(kind)
    validate_device_name(name)
    return QualifiedName(vendor, cls, name)


def qualified_name(vendor: str, cls: str, name: str) -> str:
    return f"{vendor}/{cls}={name}"


def spec_file_name(vendor: str, cls: str) -> str:
    """Base name (no extension) of the spec file for a kind: ``<vendor>-<class>``."""
    return f"{vendor}-{cls}"


def annotation_key(plugin_name: str, device_id: str) -> str:
    """The ``cdi.k8s.io/<name>`` annotation key a plugin uses to request a CDI device.

    ``<name>`` is ``<plugin>_<device id>`` ('/' replaced by '_'), at most 63 characters,
    alphanumeric at both ends with only ``_ - .`` inside.
    """
    if not plugin_name:
        raise errors.InvalidNameError("invalid (empty) plugin name for a cdi annotation key")
    if not device_id:
        raise errors.InvalidNameError("invalid (empty) device id for a cdi annotation key")
    name = f"{plugin_name}_{device_id.replace('/', '_')}"
    if len(name) > MAX_ANNOTATION_NAME_LENGTH:
        raise errors.InvalidNameError(
            f"invalid cdi annotation name {name!r}: longer than {MAX_ANNOTATION_NAME_LENGTH} characters"
        )
    if not _ANNOTATION_NAME.fullmatch(name):
        raise errors.InvalidNameError(
            f"invalid cdi annotation name {name!r}: must be alphanumeric at both ends, with only '_-.' inside"
        )
    return ANNOTATION_PREFIX + name


# The cgroup access a device node may grant.
DEVICE_PERMISSIONS = frozenset("rwm")


def crash_message(kind: str) -> str | None:
    """Why `kind` crashes the runtimes, or None: a one-character vendor, or a one-character class after a valid
    vendor (the library checks the vendor first and stops at its error), makes every released CDI library (up
    to 1.1.0) panic (slice bounds out of range); containerd then fails to start."""
    vendor, sep, cls = kind.partition("/")
    if not (sep and vendor and cls):
        return None
    for what, value in (("vendor", vendor), ("class", cls)):
        if len(value.encode()) == 1 and value.isascii() and value.isalpha():
            return (
                f"one-character {what} name {value!r} crashes the CDI library of every released runtime "
                "(containerd fails to start with such a spec in its spec dirs)"
            )
        try:
            validate_vendor_name(value)  # the same grammar for a vendor and a class
        except errors.InvalidNameError:
            return None
    return None
