"""cdi/validation.py: semantic rules, strict parse, project schema; plus tests/data/specs/{good,bad}."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from cdi_fuse import errors
from cdi_fuse.cdi import models, report, store, validation, versions

DATA = Path(__file__).parent.parent / "data" / "specs"
GOOD_FILES = sorted((DATA / "good").glob("*.*"))
BAD_FILES = sorted((DATA / "bad").glob("*.*"))

BASE: dict[str, Any] = {
    "cdiVersion": "1.1.0",
    "kind": "vendor.com/device",
    "devices": [{"name": "dev0", "containerEdits": {"deviceNodes": [{"path": "/dev/x"}]}}],
}


def spec_data(**edits: Any) -> dict[str, Any]:
    """BASE with the device's containerEdits updated by `edits`."""
    data = copy.deepcopy(BASE)
    data["devices"][0]["containerEdits"].update(edits)
    return data


def semantic(data: dict[str, Any]) -> list[validation.Problem]:
    return validation.semantic_problems(validation.parse_spec(data))


def node(**fields: Any) -> dict[str, Any]:
    return {"path": "/dev/x", **fields}


def hook(**fields: Any) -> dict[str, Any]:
    return {"hookName": "createContainer", "path": "/bin/hook", **fields}


def mount(**fields: Any) -> dict[str, Any]:
    return {"hostPath": "/a", "containerPath": "/b", **fields}


EDITS = "devices[0].containerEdits"

# (device edits, expected semantic problems as (location, message)); each rule with a failing case.
SEMANTIC_CASES = [
    pytest.param(
        {"env": ["FOO"]},
        [(f"{EDITS}.env[0]", "invalid environment variable 'FOO': expected KEY=VALUE")],
        id="env-without-equals",
    ),
    pytest.param(
        {"env": ["=x"]},
        [(f"{EDITS}.env[0]", "invalid environment variable '=x': expected KEY=VALUE")],
        id="env-empty-key",
    ),
    pytest.param(
        {"env": ["A=1", "B"]},
        [(f"{EDITS}.env[1]", "invalid environment variable 'B': expected KEY=VALUE")],
        id="env-second-entry",
    ),
    pytest.param(
        {"deviceNodes": [node(path="")]},
        [(f"{EDITS}.deviceNodes[0]", "invalid (empty) device path")],
        id="device-path-empty",
    ),
    pytest.param(
        {"deviceNodes": [node(type="x")]},
        [(f"{EDITS}.deviceNodes[0].type", "device '/dev/x': invalid type 'x'")],
        id="device-type-x",
    ),
    pytest.param(
        {"deviceNodes": [node(type="C")]},
        [(f"{EDITS}.deviceNodes[0].type", "device '/dev/x': invalid type 'C'")],
        id="device-type-uppercase",
    ),
    pytest.param(
        {"deviceNodes": [node(permissions="rwx")]},
        [(f"{EDITS}.deviceNodes[0].permissions", "device '/dev/x': invalid permissions 'rwx': only r, w and m")],
        id="permissions-x",
    ),
    pytest.param(
        {"deviceNodes": [node(permissions="RW")]},
        [(f"{EDITS}.deviceNodes[0].permissions", "device '/dev/x': invalid permissions 'RW': only r, w and m")],
        id="permissions-uppercase",
    ),
    pytest.param(
        {"hooks": [hook(hookName="preStart")]},
        [
            (
                f"{EDITS}.hooks[0].hookName",
                "invalid hook name 'preStart': one of createContainer, createRuntime, "
                "poststart, poststop, prestart, startContainer",
            )
        ],
        id="hook-name-case",
    ),
    pytest.param(
        {"hooks": [hook(path="")]},
        [(f"{EDITS}.hooks[0].path", "invalid hook 'createContainer' with empty path")],
        id="hook-path-empty",
    ),
    pytest.param(
        {"hooks": [hook(env=["X"])]},
        [(f"{EDITS}.hooks[0].env[0]", "invalid environment variable 'X': expected KEY=VALUE")],
        id="hook-env-without-equals",
    ),
    pytest.param(
        {"mounts": [mount(hostPath="")]},
        [(f"{EDITS}.mounts[0].hostPath", "invalid mount, empty host path")],
        id="mount-host-path-empty",
    ),
    pytest.param(
        {"mounts": [mount(containerPath="")]},
        [(f"{EDITS}.mounts[0].containerPath", "invalid mount, empty container path")],
        id="mount-container-path-empty",
    ),
    pytest.param(
        {"intelRdt": {"closID": "a/b"}}, [(f"{EDITS}.intelRdt.closID", "invalid closID 'a/b'")], id="closid-slash"
    ),
    pytest.param(
        {"intelRdt": {"closID": ".."}}, [(f"{EDITS}.intelRdt.closID", "invalid closID '..'")], id="closid-dotdot"
    ),
    pytest.param(
        {"netDevices": [{"hostInterfaceName": "eth0", "name": "a" * 16}]},
        [(f"{EDITS}.netDevices[0].name", f"invalid network interface name {'a' * 16!r}")],
        id="net-name-too-long",
    ),
    pytest.param(
        {"netDevices": [{"hostInterfaceName": "eth 0", "name": "n"}]},
        [(f"{EDITS}.netDevices[0].hostInterfaceName", "invalid network interface name 'eth 0'")],
        id="net-host-name-space",
    ),
    pytest.param(
        {"netDevices": [{"hostInterfaceName": "a", "name": "n"}, {"hostInterfaceName": "b", "name": "n"}]},
        [(f"{EDITS}.netDevices[1].name", "duplicate network interface name 'n'")],
        id="net-duplicate-name",
    ),
]


@pytest.mark.parametrize(("edits", "expected"), SEMANTIC_CASES)
def test_semantic_rules_fail(edits: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert [tuple(p)[:2] for p in semantic(spec_data(**edits))] == expected


@pytest.mark.parametrize(("edits", "expected"), SEMANTIC_CASES)
def test_semantic_rules_also_apply_to_spec_level_edits(edits: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    data = copy.deepcopy(BASE)
    data["containerEdits"] = edits
    assert [tuple(p)[:2] for p in semantic(data)] == [(loc.replace(EDITS, "containerEdits"), m) for loc, m in expected]


PASSING_CASES = [
    pytest.param({"env": ["A=", "B=1=2"]}, id="env-empty-value-and-equals-in-value"),
    *(
        pytest.param({"deviceNodes": [node(type=t)]}, id=f"device-type-{t or 'empty'}")
        for t in ("", "b", "c", "u", "p")
    ),
    *(
        pytest.param({"deviceNodes": [node(permissions=p)]}, id=f"permissions-{p or 'empty'}")
        for p in ("", "r", "w", "m", "rw", "rwm", "mwr")
    ),
    *(pytest.param({"hooks": [hook(hookName=h)]}, id=f"hook-{h}") for h in sorted(validation.HOOK_NAMES)),
    pytest.param({"mounts": [mount(type="tmpfs", options=["ro"])]}, id="mount-full"),
    pytest.param({"intelRdt": {"closID": "group1"}, "additionalGids": [0, 2**32 - 1]}, id="rdt-gids"),
    pytest.param({"netDevices": [{"hostInterfaceName": "eth0", "name": "eth0"}]}, id="net-same-name-both-sides"),
]


@pytest.mark.parametrize("edits", PASSING_CASES)
def test_semantic_rules_pass(edits: dict[str, Any]) -> None:
    data = spec_data(**edits)
    assert semantic(data) == []
    assert validation.check_spec_data(data) == (validation.parse_spec(data), [])


def test_rule_tables() -> None:
    assert frozenset({"", "b", "c", "u", "p"}) == validation.DEVICE_TYPES
    assert (
        frozenset({"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"})
        == validation.HOOK_NAMES
    )


def test_no_devices() -> None:
    data = copy.deepcopy(BASE)
    data["devices"] = []
    assert [tuple(p)[:2] for p in semantic(data)] == [("devices", "invalid spec, no devices")]


def test_duplicate_device_names() -> None:
    data = copy.deepcopy(BASE)
    data["devices"].append(copy.deepcopy(data["devices"][0]))
    assert [tuple(p)[:2] for p in semantic(data)] == [("devices[1].name", "invalid spec, multiple device 'dev0'")]


def test_empty_device_edits() -> None:
    data = spec_data(deviceNodes=[])
    assert [tuple(p)[:2] for p in semantic(data)] == [
        ("devices[0].containerEdits", "invalid device 'dev0', empty device edits")
    ]


def test_empty_spec_level_edits_are_fine() -> None:
    data = copy.deepcopy(BASE)
    data["containerEdits"] = {}
    assert semantic(data) == []


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        pytest.param("vendor.com", "invalid kind 'vendor.com': expected vendor/class", id="no-slash"),
        pytest.param("1vendor/device", "invalid vendor name '1vendor'", id="vendor-digit-start"),
        pytest.param("vendor/dev-", "invalid class name 'dev-'", id="class-dash-end"),
    ],
)
def test_kind_rules(kind: str, message: str) -> None:
    data = copy.deepcopy(BASE)
    data["kind"] = kind
    (problem,) = semantic(data)
    assert problem.location == "kind"
    assert problem.message.startswith(message)


def test_device_name_rule() -> None:
    data = copy.deepcopy(BASE)
    data["devices"][0]["name"] = "dev:"
    (problem,) = semantic(data)
    assert problem.location == "devices[0].name"
    assert problem.message.startswith("invalid device name 'dev:'")


@pytest.mark.parametrize(
    ("annotations", "valid"),
    [
        pytest.param({"cdi.k8s.io/fuse_dev": "x", "plain": "y"}, True, id="prefixed-and-plain"),
        pytest.param({"bad key": "x"}, False, id="space"),
        pytest.param({"/name": "x"}, False, id="empty-prefix"),
        # Kubernetes' ValidateAnnotations (which the library's schema check calls) lower-cases keys first.
        pytest.param({"Example.com/name": "x"}, True, id="uppercase-prefix"),
        pytest.param({"a/b/c": "x"}, False, id="two-slashes"),
        pytest.param({"a" * 64: "x"}, False, id="name-64"),
        pytest.param({"big": "x" * (256 * 1024)}, False, id="too-large"),
    ],
)
def test_annotation_rules(annotations: dict[str, str], valid: bool) -> None:
    for level in ("spec", "device"):
        data = copy.deepcopy(BASE)
        (data if level == "spec" else data["devices"][0])["annotations"] = annotations
        found = semantic(data)
        assert (found == []) is valid, (level, found)
        if not valid:
            expected_prefix = "annotations" if level == "spec" else "devices[0].annotations"
            assert all(p.location.startswith(expected_prefix) for p in found)


def test_version_rule_is_reported_at_cdi_version() -> None:
    data = spec_data(mounts=[mount(type="bind")])
    data["cdiVersion"] = "0.3.0"
    assert [tuple(p)[:2] for p in semantic(data)] == [
        ("cdiVersion", "the spec version must be at least v0.4.0 (declared '0.3.0')")
    ]
    with pytest.raises(errors.SpecVersionError, match=r"at least v0\.4\.0"):
        validation.validate_spec(validation.parse_spec(data))


def test_validate_spec_raises_the_first_problem_with_its_location() -> None:
    data = spec_data(env=["BAD"], deviceNodes=[node(type="z")])
    with pytest.raises(errors.SpecError) as info:
        validation.validate_spec(validation.parse_spec(data))
    assert type(info.value) is errors.SpecError
    assert info.value.location == f"{EDITS}.env[0]"
    assert str(info.value) == f"{EDITS}.env[0]: invalid environment variable 'BAD': expected KEY=VALUE"


def test_semantic_problems_lists_every_problem() -> None:
    data = spec_data(env=["BAD"], deviceNodes=[node(type="z", permissions="q")])
    data["kind"] = "nokind"
    assert [p.location for p in semantic(data)] == [
        "kind",
        f"{EDITS}.env[0]",
        f"{EDITS}.deviceNodes[0].type",
        f"{EDITS}.deviceNodes[0].permissions",
    ]


@pytest.mark.parametrize(
    ("mutate", "location", "message"),
    [
        pytest.param(
            lambda d: d["devices"][0].update(extra=1), "devices[0].extra", "unknown field", id="unknown-field"
        ),
        pytest.param(
            lambda d: d.update(containerEdits={"bogus": []}),
            "containerEdits.bogus",
            "unknown field",
            id="unknown-edits-field",
        ),
        pytest.param(
            lambda d: d["devices"][0]["containerEdits"]["deviceNodes"][0].update(major="10"),
            f"{EDITS}.deviceNodes[0].major",
            "Input should be a valid integer",
            id="major-string",
        ),
        pytest.param(lambda d: d.pop("kind"), "kind", "Field required", id="missing-kind"),
    ],
)
def test_parse_spec_is_strict(mutate: Any, location: str, message: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(errors.SpecError) as info:
        validation.parse_spec(data)
    assert info.value.location == location
    assert message in info.value.message


@pytest.mark.parametrize(
    ("mutate", "location", "message"),
    [
        pytest.param(
            lambda d: d["devices"][0].update(extra=1),
            "devices[0]",
            "schema: Additional properties are not allowed ('extra' was unexpected)",
            id="unknown-field",
        ),
        pytest.param(
            lambda d: d["devices"][0]["containerEdits"]["deviceNodes"][0].update(major="10"),
            f"{EDITS}.deviceNodes[0].major",
            "schema: '10' is not of type 'integer'",
            id="major-string",
        ),
        pytest.param(
            lambda d: d.pop("devices"), "devices", "schema: 'devices' is a required property", id="missing-devices"
        ),
        pytest.param(lambda d: d.update(devices=[]), "devices", "schema: [] should be non-empty", id="no-devices"),
        pytest.param(
            lambda d: d["devices"][0]["containerEdits"].update(additionalGids=[-1]),
            f"{EDITS}.additionalGids[0]",
            "schema: -1 is less than the minimum of 0",
            id="negative-gid",
        ),
        pytest.param(
            lambda d: d["devices"][0]["containerEdits"]["deviceNodes"][0].update(type="x"),
            f"{EDITS}.deviceNodes[0].type",
            "schema: 'x' is not one of",
            id="device-type",
        ),
        pytest.param(lambda d: d.update(kind="1v/c"), "kind", "schema: '1v/c' does not match", id="kind-pattern"),
    ],
)
def test_project_schema_problems(mutate: Any, location: str, message: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    found = validation.schema_problems(data)
    assert any(p.location == location and p.message.startswith(message) for p in found), found


def test_schema_problems_with_a_given_schema() -> None:
    assert validation.schema_problems({"a": 1}, {"type": "object", "required": ["b"]}) == [
        validation.Problem("b", "schema: 'b' is a required property", validation.ProblemKind.SCHEMA)
    ]


def test_load_schema_is_the_packaged_file() -> None:
    schema = validation.load_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["required"] == ["cdiVersion", "kind", "devices"]
    assert validation.load_schema() is schema


def test_check_spec_data_reports_each_location_once_for_parse_errors() -> None:
    data = copy.deepcopy(BASE)
    data["devices"][0]["containerEdits"]["deviceNodes"][0]["major"] = "10"
    spec, found = validation.check_spec_data(data)
    assert spec is None
    assert found == [
        validation.Problem(
            f"{EDITS}.deviceNodes[0].major", "schema: '10' is not of type 'integer'", validation.ProblemKind.SCHEMA
        )
    ]


def test_check_spec_data_without_schema() -> None:
    data = spec_data(env=["BAD"])
    spec, found = validation.check_spec_data(data, schema=False)
    assert spec is not None
    assert [p.message for p in found] == ["invalid environment variable 'BAD': expected KEY=VALUE"]


def test_problem_str() -> None:
    assert str(validation.Problem("kind", "bad")) == "kind: bad"
    assert str(validation.Problem("", "bad")) == "bad"


# --- tests/data/specs: each bad file is named after the rule it breaks ------------------------------------------

# File name -> (level, a substring of the problem it must produce). Errors are what the runtimes' CDI library
# refuses (messages from its reading: go-yaml v2, encoding/json); warnings are loaded files that break a rule
# the library does not apply on load (tests/conformance/test_reference_oracle.py checks the verdicts).
BAD_EXPECTATIONS = {
    "additional-gid-negative.yaml": ("error", "cannot unmarshal number -1 into field"),
    # The library never checks annotation keys on load (the reference oracle loads this file).
    "annotation-key-invalid.yaml": ("warning", "invalid annotation key 'not a key'"),
    "device-name-invalid.yaml": ("error", "invalid device name '-dev'"),
    "device-node-path-empty.yaml": ("error", "invalid (empty) device path"),
    "device-node-permissions-invalid.yaml": ("error", "invalid permissions 'rwx'"),
    "device-node-type-invalid.yaml": ("error", "invalid type 'x'"),
    "devices-empty.yaml": ("error", "invalid spec, no devices"),
    "device-edits-empty.yaml": ("error", "invalid device 'dev0', empty device edits"),
    "device-name-duplicate.yaml": ("error", "invalid spec, multiple device 'dev0'"),
    "duplicate-json-key.json": ("error", "key 'devices' already set in map"),
    "duplicate-yaml-key.yaml": ("error", "key 'kind' already set in map"),
    "env-without-equals.json": ("error", "invalid environment variable 'FOO': expected KEY=VALUE"),
    "hook-env-without-equals.yaml": ("error", "invalid environment variable 'DEBUG'"),
    "hook-name-invalid.yaml": ("error", "invalid hook name 'preStart'"),
    "hook-path-empty.yaml": ("error", "invalid hook 'poststop' with empty path"),
    "kind-without-class.yaml": ("error", "invalid kind 'vendor.com'"),
    "major-as-string.yaml": ("error", "cannot unmarshal string into field"),
    "malformed.json": ("error", "yaml: line 2"),
    "malformed.yaml": ("error", "yaml: line 5"),
    "missing-kind.json": ("error", "invalid kind ''"),
    "mount-container-path-empty.yaml": ("error", "invalid mount, empty container path"),
    "mount-host-path-empty.yaml": ("error", "invalid mount, empty host path"),
    "net-device-name-duplicate.yaml": ("error", "duplicate network interface name 'net0'"),
    "not-a-mapping.yaml": ("error", "not a CDI spec: the top level must be a mapping"),
    "unknown-field.yaml": ("error", 'unknown field "capabilities"'),
    "vendor-digit-start.yaml": ("error", "invalid vendor name '1vendor'"),
    "version-below-annotations.yaml": ("error", "the spec version must be at least v0.6.0"),
    "version-below-dotted-class.yaml": ("error", "the spec version must be at least v0.6.0"),
    "version-below-device-name-digit.yaml": ("error", "the spec version must be at least v0.5.0"),
    "version-below-host-path.yaml": ("error", "the spec version must be at least v0.5.0"),
    "version-below-intel-rdt.yaml": ("error", "the spec version must be at least v0.7.0"),
    "version-below-mount-type.yaml": ("error", "the spec version must be at least v0.4.0"),
    "version-below-net-devices.json": ("error", "the spec version must be at least v1.1.0"),
    "version-below-rdt-schemata.yaml": ("error", "the spec version must be at least v1.1.0"),
    # The library knows 0.1.0 and 0.2.0 and refuses them as below the 0.3.0 minimum (the oracle's message).
    "version-unknown-0.2.0.yaml": ("error", "the spec version must be at least v0.3.0"),
    "version-unreleased-1.2.0.yaml": ("error", "invalid version '1.2.0'"),
    # go-yaml v2 (strict) refuses a key set by a merge and again in the same map: the oracle refuses this file.
    "yaml-merge-key-overridden.yaml": ("error", "key 'containerPath' already set in map"),
}


def test_every_bad_file_has_an_expectation() -> None:
    assert sorted(p.name for p in BAD_FILES) == sorted(BAD_EXPECTATIONS)
    assert len(GOOD_FILES) >= 10


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.name)
def test_bad_spec_files(path: Path) -> None:
    level, message = BAD_EXPECTATIONS[path.name]
    judged = report.judge_file(path)
    found = judged.errors if level == "error" else judged.warnings
    assert any(message in p.message for p in found), judged.problems
    if level == "error":
        with pytest.raises(errors.SpecError, match=re.escape(message)):
            store.read_spec(path)
    else:
        assert judged.valid
        store.read_spec(path)


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda p: p.name)
def test_good_spec_files(path: Path) -> None:
    judged = report.judge_file(path)
    assert judged.errors == []
    # The only warnings a good file may carry: older runtime releases refuse its newer fields/version.
    assert {p.kind for p in judged.warnings} <= {validation.ProblemKind.COMPATIBILITY}, judged.warnings
    spec = store.read_spec(path)
    assert isinstance(spec, models.Spec)
    # Each good file is named "<what>-needs-<minimum cdiVersion>".
    needed = path.stem.rpartition("-needs-")[2]
    assert versions.minimum_version(spec) == needed
