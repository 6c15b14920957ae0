"""cdi/names.py: the CDI name grammar, qualified names, spec file names and annotation keys."""

from __future__ import annotations

import re

import pytest

from cdi_fuse import errors
from cdi_fuse.cdi import names


def test_patterns_are_the_reference_regexes() -> None:
    assert names.VENDOR_CLASS_PATTERN == r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$"
    assert names.DEVICE_NAME_PATTERN == r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$"


VENDOR_CLASS_CASES = [
    pytest.param("a", True, id="single-letter"),
    pytest.param("vendor.com", True, id="dotted"),
    pytest.param("cdi-fuse.io", True, id="dash-and-dot"),
    pytest.param("Vendor_9", True, id="underscore-digit-end"),
    pytest.param("a1", True, id="digit-end"),
    pytest.param("", False, id="empty"),
    pytest.param("1vendor", False, id="digit-start"),
    pytest.param("-vendor", False, id="dash-start"),
    pytest.param("vendor-", False, id="dash-end"),
    pytest.param("vendor.", False, id="dot-end"),
    pytest.param("ven:dor", False, id="colon-inside"),
    pytest.param("ven dor", False, id="space-inside"),
    pytest.param("ven/dor", False, id="slash-inside"),
    pytest.param("vendor\n", False, id="trailing-newline"),
    pytest.param("vendör", False, id="non-ascii"),
]


@pytest.mark.parametrize(("value", "valid"), VENDOR_CLASS_CASES)
def test_vendor_and_class_names(value: str, valid: bool) -> None:
    for validate in (names.validate_vendor_name, names.validate_class_name):
        if valid:
            validate(value)
        else:
            with pytest.raises(errors.InvalidNameError):
                validate(value)
    assert bool(re.fullmatch(names.VENDOR_CLASS_PATTERN, value)) is valid


DEVICE_NAME_CASES = [
    pytest.param("fuse", True, id="plain"),
    pytest.param("0", True, id="single-digit"),
    pytest.param("0fuse", True, id="digit-start"),
    pytest.param("gpu:0", True, id="colon-inside"),
    pytest.param("a_b.c-d:e", True, id="all-separators"),
    pytest.param("", False, id="empty"),
    pytest.param("fuse:", False, id="colon-end"),
    pytest.param("_fuse", False, id="underscore-start"),
    pytest.param("fu/se", False, id="slash-inside"),
    pytest.param("fu=se", False, id="equals-inside"),
    pytest.param("fuse\n", False, id="trailing-newline"),
]


@pytest.mark.parametrize(("value", "valid"), DEVICE_NAME_CASES)
def test_device_names(value: str, valid: bool) -> None:
    if valid:
        names.validate_device_name(value)
    else:
        with pytest.raises(errors.InvalidNameError):
            names.validate_device_name(value)
    assert bool(re.fullmatch(names.DEVICE_NAME_PATTERN, value)) is valid


def test_invalid_name_message_quotes_value_and_pattern() -> None:
    with pytest.raises(errors.InvalidNameError) as info:
        names.validate_vendor_name("9vendor")
    assert str(info.value) == f"invalid vendor name '9vendor': must match {names.VENDOR_CLASS_PATTERN}"
    with pytest.raises(errors.InvalidNameError, match=r"^invalid \(empty\) class name$"):
        names.validate_class_name("")
    with pytest.raises(errors.InvalidNameError, match=r"^invalid device name 'a/b'"):
        names.validate_device_name("a/b")


QUALIFIED_NAME_CASES = [
    pytest.param("vendor.com/class=dev", ("vendor.com", "class", "dev"), id="simple"),
    pytest.param("cdi-fuse.io/fuse=fuse", ("cdi-fuse.io", "fuse", "fuse"), id="project-default"),
    pytest.param("v/c.x=0", ("v", "c.x", "0"), id="dotted-class-digit-device"),
    pytest.param("nvidia.com/gpu=gpu:0", ("nvidia.com", "gpu", "gpu:0"), id="colon-in-device"),
    pytest.param("vendor.com/class", None, id="no-device"),
    pytest.param("vendor.com=dev", None, id="no-class"),
    pytest.param("/class=dev", None, id="empty-vendor"),
    pytest.param("vendor.com/=dev", None, id="empty-class"),
    pytest.param("vendor.com/class=", None, id="empty-device"),
    pytest.param("", None, id="empty"),
    pytest.param("1vendor/class=dev", None, id="vendor-digit-start"),
    pytest.param("vendor/cl/ass=dev", None, id="slash-in-class"),
    pytest.param("vendor/class=de=v", None, id="equals-in-device"),
    pytest.param("vendor/class=dev-", None, id="device-dash-end"),
]


@pytest.mark.parametrize(("device", "expected"), QUALIFIED_NAME_CASES)
def test_parse_qualified_name(device: str, expected: tuple[str, str, str] | None) -> None:
    if expected is None:
        with pytest.raises(errors.InvalidNameError):
            names.parse_qualified_name(device)
        return
    parsed = names.parse_qualified_name(device)
    assert tuple(parsed) == expected
    assert str(parsed) == device
    assert parsed.kind == device.partition("=")[0]


def test_parse_qualified_name_says_what_shape_it_expects() -> None:
    with pytest.raises(
        errors.InvalidNameError, match=r"invalid qualified device name 'fuse': expected vendor/class=name"
    ):
        names.parse_qualified_name("fuse")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("vendor.com/device", ("vendor.com", "device"), id="good"),
        pytest.param("vendor.com", None, id="no-slash"),
        pytest.param("vendor.com/", None, id="empty-class"),
        pytest.param("vendor.com/dev=x", None, id="equals-in-class"),
    ],
)
def test_parse_kind(kind: str, expected: tuple[str, str] | None) -> None:
    if expected is None:
        with pytest.raises(errors.InvalidNameError):
            names.parse_kind(kind)
    else:
        assert names.parse_kind(kind) == names.Kind(*expected)


def test_qualified_name_and_spec_file_name() -> None:
    assert names.qualified_name("cdi-fuse.io", "fuse", "fuse") == "cdi-fuse.io/fuse=fuse"
    assert names.spec_file_name("cdi-fuse.io", "fuse") == "cdi-fuse.io-fuse"


ANNOTATION_KEY_CASES = [
    pytest.param("plugin", "dev", "cdi.k8s.io/plugin_dev", id="simple"),
    pytest.param("cdi-fuse", "pod/uid/ctr", "cdi.k8s.io/cdi-fuse_pod_uid_ctr", id="slashes-replaced"),
    pytest.param("p", "x" * 61, "cdi.k8s.io/p_" + "x" * 61, id="exactly-63"),
    pytest.param("p.x", "0", "cdi.k8s.io/p.x_0", id="dot-in-plugin"),
]


@pytest.mark.parametrize(("plugin", "device_id", "expected"), ANNOTATION_KEY_CASES)
def test_annotation_key(plugin: str, device_id: str, expected: str) -> None:
    key = names.annotation_key(plugin, device_id)
    assert key == expected
    assert len(key.removeprefix(names.ANNOTATION_PREFIX)) <= names.MAX_ANNOTATION_NAME_LENGTH


BAD_ANNOTATION_KEY_CASES = [
    pytest.param("p", "x" * 62, "longer than 63 characters", id="64-chars"),
    pytest.param("", "dev", "empty) plugin name", id="empty-plugin"),
    pytest.param("plugin", "", "empty) device id", id="empty-device-id"),
    pytest.param("-plugin", "dev", "alphanumeric at both ends", id="dash-start"),
    pytest.param("plugin", "dev/", "alphanumeric at both ends", id="trailing-slash-becomes-underscore"),
    pytest.param("plugin", "de v", "alphanumeric at both ends", id="space-inside"),
    pytest.param("plugin", "gpu:0", "alphanumeric at both ends", id="colon-inside"),
]


@pytest.mark.parametrize(("plugin", "device_id", "problem"), BAD_ANNOTATION_KEY_CASES)
def test_annotation_key_rejects(plugin: str, device_id: str, problem: str) -> None:
    with pytest.raises(errors.InvalidNameError, match=re.escape(problem)):
        names.annotation_key(plugin, device_id)


def test_invalid_name_error_is_a_spec_error() -> None:
    assert issubclass(errors.InvalidNameError, errors.SpecError)


def test_all_is_complete() -> None:
    public = {n for n in vars(names) if not n.startswith("_") and n.isidentifier()}
    public -= {"annotations", "re", "NamedTuple", "errors"}
    assert set(names.__all__) == public
