"""Every spec the project writes, and the upstream test data, against the project's and the upstream CDI schema.

The upstream schema (../shared/reference/cdi/schema.json, which $refs defs.json) is the oracle: what we
generate must satisfy it, and our stricter schema must accept what upstream calls good and reject what it
calls bad.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from typer.testing import CliRunner

from cdi_fuse import errors
from cdi_fuse.cdi import store, validation
from cdi_fuse.cli import app
from cdi_fuse.node import fuse, generate
from tests import reference

REFERENCE = reference.reference_file_or_skip_module("cdi/schema.json").parent
PROJECT = Path(__file__).resolve().parents[2]
UPSTREAM_GOOD = sorted((REFERENCE / "testdata" / "good").glob("*.json"))
UPSTREAM_BAD = sorted((REFERENCE / "testdata" / "bad").glob("*.json"))
OWN_GOOD = sorted((PROJECT / "tests" / "data" / "specs" / "good").glob("*.*"))
GOLDEN = PROJECT / "specs" / "cdi-fuse.io-fuse.yaml"


def _resource(name: str) -> Resource[Any]:
    return Resource.from_contents(json.loads((REFERENCE / name).read_text()), default_specification=DRAFT7)


@pytest.fixture(scope="module")
def upstream() -> jsonschema.Draft7Validator:
    registry: Registry[Any] = Registry().with_resources(
        [((REFERENCE / name).as_uri(), _resource(name)) for name in ("schema.json", "defs.json")]
    )
    jsonschema.Draft7Validator.check_schema(json.loads((REFERENCE / "schema.json").read_text()))
    # schema.json has no $id: it is entered by its file URI, against which "defs.json#/..." resolves.
    return jsonschema.Draft7Validator({"$ref": (REFERENCE / "schema.json").as_uri()}, registry=registry)


@pytest.fixture(scope="module")
def project() -> jsonschema.Draft7Validator:
    schema = validation.load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_upstream_schema_really_follows_its_refs(upstream: jsonschema.Draft7Validator) -> None:
    # A device node without "path" is only caught through defs.json#/definitions/DeviceNode.
    data = {"cdiVersion": "0.3.0", "kind": "a/b", "devices": [{"name": "x", "containerEdits": {"deviceNodes": [{}]}}]}
    assert [e.message for e in upstream.iter_errors(data)] == ["'path' is a required property"]


def test_specs_dir_schema_is_the_shipped_one() -> None:
    assert json.loads((PROJECT / "specs" / "cdi-spec.schema.json").read_text()) == validation.load_schema()


# --- what the project generates -------------------------------------------------------------------------------------

GENERATE_OPTIONS = [
    pytest.param({}, id="defaults"),
    pytest.param({"spec_version": "1.1.0"}, id="spec-version-1.1.0"),
    pytest.param({"spec_version": "0.8.0", "permissions": "rwm"}, id="spec-version-0.8.0-rwm"),
    pytest.param({"permissions": "r"}, id="read-only"),
    pytest.param({"permissions": ""}, id="no-permissions"),
    pytest.param({"vendor": "example.com", "cls": "fuse.v3", "device_name": "0"}, id="dotted-class-digit-device"),
    pytest.param({"device_name": "node:fuse_1"}, id="colon-device-name"),
    pytest.param({"device_path": Path("/host/dev/fuse")}, id="host-path"),
    pytest.param({"device_path": Path("/host/dev/fuse"), "host_device_path": Path("/dev/fuse")}, id="host-dev-seen"),
]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("overrides", GENERATE_OPTIONS)
def test_generated_specs_satisfy_both_schemas(
    overrides: dict[str, Any],
    fmt: store.SpecFormat,
    tmp_path: Path,
    fuse_device: fuse.FuseDevice,
    upstream: jsonschema.Draft7Validator,
    project: jsonschema.Draft7Validator,
) -> None:
    options = generate.GenerateOptions(spec_dir=tmp_path, fmt=fmt, **overrides)
    spec = generate.build_spec(options, device=fuse_device)
    path = store.write_spec(spec, generate.default_output(options)).path
    assert path.suffix == f".{fmt}"
    data = store.load_spec_data(path)
    assert list(upstream.iter_errors(data)) == []
    assert list(project.iter_errors(data)) == []
    assert validation.check_spec_data(data) == (spec, [])


def test_golden_spec_satisfies_both_schemas(
    upstream: jsonschema.Draft7Validator, project: jsonschema.Draft7Validator
) -> None:
    data = store.load_spec_data(GOLDEN)
    assert list(upstream.iter_errors(data)) == []
    assert list(project.iter_errors(data)) == []


# --- upstream test data ---------------------------------------------------------------------------------------------


def test_upstream_test_data_is_there() -> None:
    assert [p.name for p in UPSTREAM_GOOD] == ["minimal.json", "spec-example.json"]
    assert [p.name for p in UPSTREAM_BAD] == ["empty.json", "explicit-empty.json"]


@pytest.mark.parametrize("path", UPSTREAM_GOOD, ids=lambda p: p.name)
def test_upstream_good_data(
    path: Path, upstream: jsonschema.Draft7Validator, project: jsonschema.Draft7Validator
) -> None:
    data = store.load_spec_data(path)
    assert list(upstream.iter_errors(data)) == []
    assert list(project.iter_errors(data)) == []
    spec, problems = validation.check_spec_data(data)
    assert problems == []
    assert spec is not None
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def _raw_data(path: Path) -> object:
    """What a schema check sees for a file: the upstream validator reads an empty document as null."""
    text = path.read_text()
    return json.loads(text) if text.strip() else None


@pytest.mark.parametrize("path", UPSTREAM_BAD, ids=lambda p: p.name)
def test_upstream_bad_data(
    path: Path, upstream: jsonschema.Draft7Validator, project: jsonschema.Draft7Validator
) -> None:
    data = _raw_data(path)
    assert list(upstream.iter_errors(data)) != []
    assert list(project.iter_errors(data)) != []
    result = CliRunner().invoke(app, ["validate", "--output", "json", str(path)])
    assert result.exit_code == 1, result.output
    (report,) = json.loads(result.stdout)
    assert report["valid"] is False and report["readable"] is True
    messages = [p["message"] for p in report["problems"]]
    if data is None:
        assert messages == ["no spec data: the document is empty or null"]
    else:
        # The library's own refusal (the schema problems above are warnings, shown once a file loads).
        assert "invalid spec, no devices" in messages
    with pytest.raises(errors.SpecError):
        store.read_spec(path)


# --- the project's own good specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OWN_GOOD, ids=lambda p: p.name)
def test_own_good_data_satisfies_both_schemas(
    path: Path, upstream: jsonschema.Draft7Validator, project: jsonschema.Draft7Validator
) -> None:
    data = store.load_spec_data(path)
    assert list(upstream.iter_errors(data)) == []
    assert list(project.iter_errors(data)) == []


@pytest.mark.parametrize(
    ("name", "path_in_error"),
    [
        pytest.param("major-as-string.yaml", ["devices", 0, "containerEdits", "deviceNodes", 0, "major"], id="major"),
        pytest.param("missing-kind.json", [], id="missing-kind"),
        pytest.param("not-a-mapping.yaml", [], id="not-a-mapping"),
    ],
)
def test_structural_bad_data_fails_both_schemas(
    name: str,
    path_in_error: list[str | int],
    upstream: jsonschema.Draft7Validator,
    project: jsonschema.Draft7Validator,
) -> None:
    data = store.load_spec_data(PROJECT / "tests" / "data" / "specs" / "bad" / name)
    for validator in (upstream, project):
        found = list(validator.iter_errors(data))
        assert [list(e.absolute_path) for e in found] == [path_in_error]
