"""cdi/decode.py: a spec file read as the runtimes' library reads it (go-yaml v2, sigs.k8s.io/yaml, encoding/json).

Each expectation here was checked against the reference library (tests/conformance/test_reference_oracle.py runs
the same reading against it on the whole corpus).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from cdi_fuse.cdi import compat, decode, report

SPEC_TYPE = report.spec_type_for(compat.DEFAULT_LIBRARY)


def _device(fields: str) -> bytes:
    return f"cdiVersion: 0.5.0\nkind: ab/cd\ndevices: [{{{fields}, containerEdits: {{env: [A=1]}}}}]\n".encode()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("y", True), ("NO", False), ("on", True), ("~", None), ("", None), ("010", 8), ("0o17", 15), ("0x1F", 31),
        ("1_000", 1000), ("1e3", 1000.0), (".5", 0.5), ("+1", 1), ("2001-12-14", "2001-12-14"), ("fuse", "fuse"),
        ("1.2.3", "1.2.3"), ("0b101", 5),
    ],
)  # fmt: skip
def test_yaml11_scalars(text: str, value: object) -> None:
    got = decode.resolve_yaml11(text)
    assert got == value and type(got) is type(value)


def test_special_floats() -> None:
    assert math.isinf(decode.resolve_yaml11(".inf"))  # type: ignore[arg-type]
    assert math.isnan(decode.resolve_yaml11(".NaN"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        pytest.param("name: y", "true", id="bool-into-string"),
        pytest.param("name: 0o17", "15", id="octal-into-string"),
        pytest.param("name: 1e3", "1000", id="float-into-string"),
        pytest.param("name: 16777217.0", "1.6777216e+07", id="float32-formatting"),
        pytest.param("Name: x", "x", id="field-name-case-insensitive"),
        pytest.param("name: !!str 10", "10", id="explicit-tag"),
    ],
)
def test_scalars_become_strings_for_string_fields(fields: str, name: str) -> None:
    decoded = decode.decode_spec(_device(fields), SPEC_TYPE)
    assert decoded.error is None and decoded.spec is not None
    assert decoded.spec["devices"][0]["name"] == name


def test_plain_scalars_that_yaml_1_2_reads_differently_are_listed() -> None:
    decoded = decode.decode_spec(_device("name: on"), SPEC_TYPE)
    (ambiguity,) = decoded.ambiguities
    assert (ambiguity.location, ambiguity.text, ambiguity.yaml11, ambiguity.yaml12) == (
        "devices[0].name",
        "on",
        "true",
        "on",
    )
    assert decode.decode_spec(_device("name: 'on'"), SPEC_TYPE).ambiguities == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"a: 1\na: 2\n", "key 'a' already set in map", id="duplicate-key"),
        pytest.param(b"%YAML 1.2\n---\na: 1\n", "found incompatible YAML document", id="yaml-1.2"),
        pytest.param(b'{"kind": "\\ud800"}', "invalid Unicode character escape code", id="lone-surrogate"),
        pytest.param(b"- a\n", "not a CDI spec: the top level must be a mapping", id="list"),
        pytest.param(b"", "no spec data", id="empty"),
        pytest.param(_device("name: x, extra: 1"), 'unknown field "extra"', id="unknown-field"),
        pytest.param(
            b"cdiVersion: 0.3.0\nkind: a/b\n"
            b"devices: [{name: x, containerEdits: {deviceNodes: [{path: /d, uid: -1}]}}]\n",
            "cannot unmarshal number -1 into field devices[0].containerEdits.deviceNodes[0].uid of type uint32",
            id="uint32-range",
        ),
    ],
)
def test_refused(data: bytes, message: str) -> None:
    decoded = decode.decode_spec(data, SPEC_TYPE)
    assert decoded.error is not None and message in decoded.error.message, decoded.error


def test_first_document_only_and_merge_keys() -> None:
    data = b"base: &b {path: /d}\ncdiVersion: 0.3.0\nkind: a/b\n"
    spec_type = report.spec_type_for(compat.DEFAULT_LIBRARY)
    decoded = decode.decode_spec(data, spec_type)
    assert decoded.error is not None and 'unknown field "base"' in decoded.error.message
    text = b"cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\n---\n[: x\n"
    assert decode.decode_spec(text, spec_type).error is None


def test_fields_follow_the_library_line() -> None:
    data = (
        b"cdiVersion: 1.1.0\nkind: ab/cd\n"
        b"devices: [{name: x, containerEdits: {netDevices: [{hostInterfaceName: e, name: n}]}}]\n"
    )
    assert decode.decode_spec(data, report.spec_type_for(compat.LIBRARIES["1.1"])).error is None
    old = decode.decode_spec(data, report.spec_type_for(compat.LIBRARIES["1.0"]))
    assert old.error is not None and 'unknown field "netDevices"' in old.error.message


def test_go_json_drops_omitempty_zero_values_but_keeps_pointers_to_zero() -> None:
    data = (
        b"cdiVersion: 0.3.0\nkind: a/b\n"
        b"devices: [{name: x, containerEdits: {deviceNodes: [{path: /d, major: 0, uid: 0}]}}]\n"
    )
    decoded = decode.decode_spec(data, SPEC_TYPE)
    held: Any = decode.go_json(decoded.spec, SPEC_TYPE)
    assert held["devices"][0]["containerEdits"]["deviceNodes"] == [{"path": "/d", "uid": 0}]
