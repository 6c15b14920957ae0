"""Differential conformance: `validate`'s verdict against the reference CDI library's, file by file.

The oracle (tests/conformance/oracle.py) is the library built from Debian's packaged source: sid's 1.0.1 and
trixie's 0.8.0. For every spec in the corpus we compare, per oracle, our judgement under the same library line
(cdi/report.py ``judge_bytes``): loads or not, crashes or not, and, when it loads, the decoded spec itself
(so YAML 1.1 scalar reading, key matching and type conversion are compared, not only the verdict).

Corpus: the project's good/bad spec files, the upstream test data, a fixed mutation corpus (every field of
every edit kind set to values the library treats specially, in YAML and JSON, plus YAML/JSON parser corner
cases), and a bounded hypothesis run. Every disagreement must be listed in DELIBERATE_DIFFERENCES.

Skips (printing why) when the oracle cannot be built here, unless CDI_FUSE_REQUIRE_ORACLE=1 (CI).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdi_fuse.cdi import compat, decode, report
from tests import reference
from tests.conformance import oracle as oracle_mod

REQUIRE_ENV = "CDI_FUSE_REQUIRE_ORACLE"
PROJECT = Path(__file__).resolve().parents[2]
REFERENCE = reference.reference_dir() / "cdi" / "testdata"  # optional here: its files join the corpus when present
LIBRARY_LINE = {"sid": "1.0", "trixie": "0.8"}
HYPOTHESIS_EXAMPLES = 150


@dataclass(frozen=True)
class Deliberate:
    name: str
    applies: Callable[[bytes, report.Judgement, oracle_mod.Verdict], bool]
    reason: str


# The one table of deliberate differences: (name, when it applies, why we keep it).
DELIBERATE_DIFFERENCES: tuple[Deliberate, ...] = (
    Deliberate(
        "alias-expansion-cap",
        lambda data, ours, theirs: "excessive aliasing" in str(ours.problems[:1]) and theirs.loaded,
        "we refuse YAML whose aliases expand past 100,000 nodes (alias bombs); go-yaml v2's own limit is a ratio "
        "and accepts some files we refuse",
    ),
    Deliberate(
        "size-cap",
        lambda data, ours, theirs: False,  # judge_bytes has no cap: only reading a file (validate, the store) has
        "validate and the spec store refuse files over 1 MiB (report.MAX_SPEC_SIZE) before parsing; the library "
        "reads any size. A CDI spec is a few KiB; a node agent must not be made to hold an arbitrary file",
    ),
)


@pytest.fixture(scope="module")
def oracles() -> dict[str, oracle_mod.Oracle]:
    found = {}
    for suite in oracle_mod.SUITES:
        try:
            found[suite] = oracle_mod.ensure_oracle(suite)
        except oracle_mod.OracleUnavailableError as exc:
            message = f"reference CDI oracle ({suite}) unavailable: {exc}"
            print(message)
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(f"{message} (and {REQUIRE_ENV}=1)")
            pytest.skip(message)
    for suite, found_oracle in found.items():
        print(f"oracle {suite}: {found_oracle.library_deb}, cdiVersion up to {found_oracle.current_version}")
    return found


# --- corpus --------------------------------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "cdiVersion": "1.0.0",
    "kind": "vendor.com/fuse",
    "devices": [{"name": "fuse", "containerEdits": {"deviceNodes": [{"path": "/dev/fuse"}]}}],
}

SPECIAL_VALUES: list[Any] = [
    None, "", "x", "A=1", "=x", "/", ".", "..", "a/b", "yes", "on", "010", "0x1F", "1_000", "1e3", "10.0", "10.5",
    "-1", "2001-12-14", 0, 1, -1, 10.0, 10.5, 1e3, 2**31, 2**32, 2**63, True, False, [], ["A=1"], [None], {},
    {"a": "b"}, "rwm", "rwx", "c", "b", "u", "p", "x", "prestart", "poststop", "preStart", "eth0", "a b",
    "averyveryverylongname",
]  # fmt: skip

FIELDS: list[tuple[str | int, ...]] = [
    ("cdiVersion",), ("kind",), ("annotations",), ("devices",), ("containerEdits",),
    ("devices", 0, "name"), ("devices", 0, "annotations"), ("devices", 0, "containerEdits"),
    ("devices", 0, "containerEdits", "env"), ("devices", 0, "containerEdits", "deviceNodes"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "path"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "hostPath"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "type"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "major"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "fileMode"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "permissions"),
    ("devices", 0, "containerEdits", "deviceNodes", 0, "uid"),
    ("devices", 0, "containerEdits", "hooks"), ("devices", 0, "containerEdits", "mounts"),
    ("devices", 0, "containerEdits", "intelRdt"), ("devices", 0, "containerEdits", "additionalGids"),
    ("devices", 0, "containerEdits", "netDevices"),
    ("containerEdits", "env"), ("containerEdits", "hooks"), ("containerEdits", "mounts"),
]  # fmt: skip

EDIT_SHAPES: list[tuple[str, Any]] = [
    ("hooks", [{"hookName": "prestart", "path": "/bin/true", "timeout": -1}]),
    ("hooks", [{"hookName": "poststop", "path": ""}]),
    ("hooks", [{"hookName": "x", "path": "/bin/true", "env": ["A"]}]),
    ("mounts", [{"hostPath": "/a", "containerPath": "/b", "type": "bind"}]),
    ("mounts", [{"hostPath": "", "containerPath": "/b"}]),
    ("mounts", [None]),
    ("deviceNodes", [None]),
    ("hooks", [None]),
    ("intelRdt", {"closID": "/"}),
    ("intelRdt", {"closID": "c1", "enableCMT": True}),
    ("intelRdt", {"schemata": []}),
    ("intelRdt", {"enableMonitoring": True}),
    ("intelRdt", {}),
    ("additionalGids", [1, 2]),
    ("additionalGids", [-1]),
    ("netDevices", [{"hostInterfaceName": "eth0", "name": "net0"}]),
    ("netDevices", [{"hostInterfaceName": "a b", "name": "averyveryverylongname"}]),
    ("netDevices", [{"hostInterfaceName": "", "name": "x"}]),
]

_J = '{"cdiVersion": "0.3.0", "kind": "ab/cd", '
_JD = '"devices": [{"name": "x", "containerEdits": {"env": ["A=1"]}}]'
RAW_CORNER_CASES: list[tuple[str, str]] = [
    ("yaml", "cdiVersion: v0.3.0\nkind: vendor.com/fuse\ndevices: [{name: fuse, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: a/fuse\ndevices: [{name: fuse, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: vendor/b\ndevices: [{name: fuse, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: v/c\ndevices: [{name: 0, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "%YAML 1.2\n---\ncdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "%YAML 1.1\n---\ncdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\n---\n[: x\n"),
    ("yaml", "---\n...\n"),
    ("yaml", ""),
    ("yaml", "null\n"),
    ("yaml", "- a\n- b\n"),
    ("yaml", "root:x:0:0:root:/root:/bin/bash\n"),
    ("yaml", "base: &b {hostPath: /a, containerPath: /b}\ncdiVersion: 0.3.0\nkind: ab/cd\n"
     "devices: [{name: x, containerEdits: {mounts: [{<<: *b, containerPath: /c}]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\nx: &a {}\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}, "
     "Name: y}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nKIND: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}]\ncontainerEdits: ~\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: !!str 10, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: !!binary eHl6, containerEdits: {env: [A=1]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1], "
     "deviceNodes: [{path: /d, major: .inf}]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1], "
     "deviceNodes: [{path: /d, major: 0o17, minor: 0b11}]}}]\n"),
    ("json", _J + '"devices": [{"name": "\\ud800", "containerEdits": {"env": ["A=1"]}}]}'),
    ("json", _J + '"devices": [{"name": "x\\u00e9", "containerEdits": {"env": ["A=1"]}}]}'),
    ("json", '{"cdiVersion": "0.3.0", "kind": "ab/cd", "kind": "ab/ce", "devices": []}'),
    ("json", _J + '"Kind": "ab/ce", ' + _JD + "}"),
    ("json", _J + _JD + ",}"),
    ("json", _J + '"devices": [{"name": "x", "containerEdits": {"deviceNodes": [{"path": "/d", "major": 1e3, '
     '"fileMode": 420.0}]}}]}'),
    ("json", _J + _JD + "}  trailing"),
]  # fmt: skip


def _set(spec: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    target: Any = out
    for key in path[:-1]:
        if isinstance(key, str) and key not in target:
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    return out


def _encode(data: Any, fmt: str) -> str:
    return json.dumps(data) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)


def fixed_corpus() -> Iterator[tuple[str, str, bytes]]:
    """(id, extension, bytes) of every fixed case."""
    for directory in (PROJECT / "tests" / "data" / "specs" / "good", PROJECT / "tests" / "data" / "specs" / "bad"):
        for path in sorted(directory.glob("*.*")):
            yield f"{directory.name}/{path.name}", path.suffix, path.read_bytes()
    for path in sorted(REFERENCE.glob("*/*.json")):
        yield f"upstream/{path.parent.name}/{path.name}", ".json", path.read_bytes()
    for version in ("0.3.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"):
        base = _set(BASE, ("cdiVersion",), version)
        for field in FIELDS:
            for i, value in enumerate(SPECIAL_VALUES):
                for fmt in ("yaml", "json"):
                    yield (
                        f"{version}/{'.'.join(map(str, field))}/{i}/{fmt}",
                        f".{fmt}",
                        _encode(_set(base, field, value), fmt).encode(),
                    )
        for i, (key, value) in enumerate(EDIT_SHAPES):
            for where in (("devices", 0, "containerEdits", key), ("containerEdits",)):
                data = _set(base, where, value if where[-1] == key else {key: value})
                for fmt in ("yaml", "json"):
                    yield f"{version}/edit-{i}-{key}/{len(where)}/{fmt}", f".{fmt}", _encode(data, fmt).encode()
    for i, (fmt, text) in enumerate(RAW_CORNER_CASES):
        yield f"raw-{i}/{fmt}", f".{fmt}", text.encode()


def _compare(
    cases: list[tuple[str, str, bytes]], oracles: dict[str, oracle_mod.Oracle], tmp_path: Path
) -> tuple[dict[str, int], list[str]]:
    paths = []
    for n, (_, ext, data) in enumerate(cases):
        path = tmp_path / f"case-{n}{ext}"
        path.write_bytes(data)
        paths.append(path)
    figures = {"cases": len(cases)}
    disagreements = []
    for suite, found_oracle in oracles.items():
        library = compat.LIBRARIES[LIBRARY_LINE[suite]]
        kind = report.spec_type_for(library)
        verdicts = found_oracle.judge(paths)
        agree = refused_both = deliberate = 0
        for (case_id, _, data), theirs in zip(cases, verdicts, strict=True):
            ours = report.judge_bytes(data, library)
            problem = ""
            if ours.loads != theirs.loaded:
                problem = f"we say {'loads' if ours.loads else 'refused: ' + str(ours.problems[0])}; " + (
                    "library loads it" if theirs.loaded else f"library refuses: {theirs.error or theirs.panic}"
                )
            elif ours.crashes != (theirs.panic is not None):
                problem = f"crash disagreement: ours {ours.problems[:1]}, library panic {theirs.panic}"
            elif ours.loads and ours.decoded.spec is not None:
                mine = decode.go_json(ours.decoded.spec, kind)
                if mine != theirs.parsed:
                    problem = f"decoded differently: ours {mine}, library {theirs.parsed}"
            if not problem:
                agree += 1
                refused_both += not ours.loads
                continue
            if any(d.applies(data, ours, theirs) for d in DELIBERATE_DIFFERENCES):
                deliberate += 1
                continue
            disagreements.append(f"[{suite}] {case_id}: {problem}\n    {data[:300]!r}")
        figures[f"{suite}-agree"] = agree
        figures[f"{suite}-refused-by-both"] = refused_both
        figures[f"{suite}-deliberate"] = deliberate
    return figures, disagreements


def test_fixed_corpus_agrees_with_the_reference_library(oracles: dict[str, oracle_mod.Oracle], tmp_path: Path) -> None:
    if not REFERENCE.is_dir():
        print(f"upstream test data not found at {REFERENCE}: the fixed corpus runs without it")
    cases = list(fixed_corpus())
    figures, disagreements = _compare(cases, oracles, tmp_path)
    print(f"\ndifferential conformance, fixed corpus: {figures}")
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements[:40])


_text = st.sampled_from(["", "x", "fuse", "a", "A=1", "/dev/fuse", "yes", "0", "1.5", "v1", "a.b", "-x", "x-"])
_scalar = st.one_of(_text, st.integers(-(2**33), 2**33), st.booleans(), st.none(), st.floats(allow_nan=False))
_edits = st.fixed_dictionaries(
    {},
    optional={
        "env": st.lists(_scalar, max_size=2),
        "deviceNodes": st.lists(
            st.fixed_dictionaries({"path": _scalar}, optional={"type": _scalar, "major": _scalar, "hostPath": _scalar}),
            max_size=2,
        ),
        "mounts": st.lists(st.fixed_dictionaries({"hostPath": _scalar, "containerPath": _scalar}), max_size=1),
        "additionalGids": st.lists(_scalar, max_size=1),
        "intelRdt": st.fixed_dictionaries({}, optional={"closID": _scalar, "schemata": st.lists(_text, max_size=1)}),
    },
)
_specs = st.fixed_dictionaries(
    {
        "cdiVersion": st.sampled_from(["0.3.0", "0.5.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0", "v0.6.0", "0.2.0"]),
        "kind": st.sampled_from(["vendor.com/fuse", "a/fuse", "ab/c.d", "ab/cd", "/x", "ab"]),
        "devices": st.lists(st.fixed_dictionaries({"name": _scalar, "containerEdits": _edits}), max_size=2),
    },
    optional={"containerEdits": _edits, "annotations": st.dictionaries(_text, _text, max_size=1)},
)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(batch=st.lists(st.tuples(_specs, st.sampled_from(["yaml", "json"])), min_size=HYPOTHESIS_EXAMPLES,
                      max_size=HYPOTHESIS_EXAMPLES))  # fmt: skip
def test_generated_specs_agree_with_the_reference_library(
    oracles: dict[str, oracle_mod.Oracle], tmp_path_factory: pytest.TempPathFactory, batch: list[tuple[Any, str]]
) -> None:
    cases = [(f"generated-{i}", f".{fmt}", _encode(spec, fmt).encode()) for i, (spec, fmt) in enumerate(batch)]
    figures, disagreements = _compare(cases, oracles, tmp_path_factory.mktemp("generated"))
    print(f"\ndifferential conformance, generated batch: {figures}")
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements[:40])
