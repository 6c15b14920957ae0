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

import contextlib
import copy
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdi_fuse.cdi import compat, decode, report
from cdi_fuse.cdi.validation import HOOK_NAMES
from tests import reference
from tests.conformance import oracle as oracle_mod

REQUIRE_ENV = "CDI_FUSE_REQUIRE_ORACLE"
PROJECT = Path(__file__).resolve().parents[2]
REFERENCE = reference.reference_dir() / "cdi" / "testdata"  # optional here: its files join the corpus when present
LIBRARY_LINE = {"sid": "1.0", "trixie": "0.8"}


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
    # Found by the generator: an invalid vendor stops the library before the one-character class (no panic).
    ("yaml", "cdiVersion: 0.3.0\nkind: 1a/b\ndevices: [{name: fuse, containerEdits: {env: [A=1]}}]\n"),
    # Found by the generator: a null list entry crashes the library only where it gets to it (version checks walk
    # device nodes and mounts; names, env and earlier entries stop it first).
    ("yaml", "cdiVersion: 0.3.0\nkind: vendor.com\ndevices: [{name: x, containerEdits: {hooks: [null]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A], hooks: [null]}}]\n"),
    ("yaml", "cdiVersion: 0.3.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {mounts: [{hostPath: /a, "
     "containerPath: /b, type: bind}, null]}}]\n"),
    ("yaml", "cdiVersion: 0.4.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {mounts: [{hostPath: /a, "
     "containerPath: /b, type: bind}, null]}}]\n"),
    ("yaml", "cdiVersion: 0.5.0\nkind: vendor.com\ndevices: [{name: 1x, containerEdits: {deviceNodes: [null]}}]\n"),
    ("yaml", "cdiVersion: 0.5.0\nkind: ab/cd\ndevices: [{name: x, containerEdits: {env: [A=1]}}, "
     "{name: x, containerEdits: {deviceNodes: [null]}}]\n"),
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


Judge = Callable[[Sequence[Path]], list[oracle_mod.Verdict]]


def _compare(
    cases: list[tuple[str, str, bytes]], judges: dict[str, Judge], tmp_path: Path
) -> tuple[dict[str, int], list[str]]:
    """Per oracle: does our reading under its library line agree (loads, crashes, decoded spec)? Also the
    warnings check: a file the newest library (1.1) loads gets a compatibility warning naming each older line
    that refuses it; the oracle of that line must refuse it too."""
    paths = []
    for n, (_, ext, data) in enumerate(cases):
        path = tmp_path / f"case-{n}{ext}"
        path.write_bytes(data)
        paths.append(path)
    figures = {"cases": len(cases)}
    disagreements = []
    newest_loads = [report.judge_bytes(data).loads for _, _, data in cases]
    figures["loads-with-library-1.1"] = sum(newest_loads)
    for suite, judge in judges.items():
        library = compat.LIBRARIES[LIBRARY_LINE[suite]]
        kind = report.spec_type_for(library)
        verdicts = judge(paths)
        agree = refused_both = crashed_both = deliberate = warned = confirmed = 0
        for (case_id, _, data), theirs, loads_newest in zip(cases, verdicts, newest_loads, strict=True):
            ours = report.judge_bytes(data, library)
            if loads_newest and not ours.loads:  # validate warns: "refused by <runtimes bundling this line>"
                warned += 1
                confirmed += not theirs.loaded
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
                crashed_both += ours.crashes
                continue
            if any(d.applies(data, ours, theirs) for d in DELIBERATE_DIFFERENCES):
                deliberate += 1
                continue
            disagreements.append(f"[{suite}] {case_id}: {problem}\n    {data[:300]!r}")
        figures[f"{suite}-agree"] = agree
        figures[f"{suite}-loaded-by-both"] = agree - refused_both
        figures[f"{suite}-refused-by-both"] = refused_both
        figures[f"{suite}-crashed-both"] = crashed_both
        figures[f"{suite}-deliberate"] = deliberate
        figures[f"{suite}-compat-warnings"] = warned
        figures[f"{suite}-compat-warnings-confirmed"] = confirmed
    return figures, disagreements


def test_fixed_corpus_agrees_with_the_reference_library(oracles: dict[str, oracle_mod.Oracle], tmp_path: Path) -> None:
    if not REFERENCE.is_dir():
        print(f"upstream test data not found at {REFERENCE}: the fixed corpus runs without it")
    cases = list(fixed_corpus())
    figures, disagreements = _compare(cases, {suite: o.judge for suite, o in oracles.items()}, tmp_path)
    print(f"\ndifferential conformance, fixed corpus: {figures}")
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements[:40])


# --- hypothesis: valid specs of every cdiVersion, then systematic mutations ----------------------------------------
#
# A generated case is a spec valid for its declared cdiVersion (fields drawn only from what that version has),
# then, in most cases, one to three mutations (a field set to a value the library treats specially, a key
# removed, a key in another letter case, an unknown key, a duplicate device, another cdiVersion, a one-character
# vendor/class, a null list entry), encoded as block YAML, flow YAML, YAML with every string plain (so
# go-yaml's YAML 1.1 scalar rules decide), or JSON. One hypothesis example is one file, judged by long-lived
# oracle processes (so a disagreement shrinks to a minimal spec).

VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
EXAMPLES = int(os.environ.get("CDI_FUSE_ORACLE_EXAMPLES", "1000"))


def _at_least(version: str, minimum: str) -> bool:
    return VERSIONS.index(version) >= VERSIONS.index(minimum)


_paths = st.sampled_from(["/dev/fuse", "/dev/null", "/dev/x y", "/host/dev/fuse", "/dev/dri/card0"])
_env = st.lists(st.sampled_from(["A=1", "PATH=/usr/bin", "B=", "X=a=b", "LONG=" + "v" * 40]), max_size=3)
_names = st.sampled_from(["fuse", "dev0", "gpu-1", "a.b", "x_y", "node:1", "card0", "Fuse"])
_digit_names = st.sampled_from(["0", "1dev", "10", "1e3", "0o17", "0x1F"])
_quirky_names = st.sampled_from(["y", "n", "on", "off", "yes", "true", "null", "1.5", "2001-12-14"])
_u32 = st.integers(0, 2**32 - 1)


@st.composite
def _device_node(draw: st.DrawFn, version: str) -> dict[str, Any]:
    node: dict[str, Any] = {"path": draw(_paths)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "type": st.sampled_from(["c", "b", "u", "p", ""]),
        "major": st.integers(0, 511),
        "minor": st.integers(0, 2**20),
        "fileMode": st.integers(0, 0o7777),
        "permissions": st.sampled_from(["r", "rw", "rwm", "m", ""]),
        "uid": _u32,
        "gid": _u32,
    }
    if _at_least(version, "0.5.0"):
        optional["hostPath"] = _paths
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)):
        node[key] = draw(optional[key])
    return node


@st.composite
def _edits(draw: st.DrawFn, version: str, device: bool) -> dict[str, Any]:
    edits: dict[str, Any] = {}
    kinds = ["env", "deviceNodes", "hooks", "mounts"]
    if _at_least(version, "0.7.0"):
        kinds += ["intelRdt", "additionalGids"]
    if _at_least(version, "1.1.0"):
        kinds += ["netDevices"]
    chosen = draw(st.lists(st.sampled_from(kinds), unique=True, min_size=1 if device else 0, max_size=3))
    for kind in chosen:
        if kind == "env":
            edits["env"] = draw(_env.filter(bool) if device else _env)
        elif kind == "deviceNodes":
            edits["deviceNodes"] = draw(st.lists(_device_node(version), min_size=1, max_size=2))
        elif kind == "hooks":
            hook = st.fixed_dictionaries(
                {"hookName": st.sampled_from(sorted(HOOK_NAMES)), "path": st.sampled_from(["/bin/true", "/x"])},
                optional={"args": st.lists(st.sampled_from(["a", "-v", ""]), max_size=2), "env": _env,
                          "timeout": st.integers(-5, 120)},
            )  # fmt: skip
            edits["hooks"] = draw(st.lists(hook, min_size=1, max_size=2))
        elif kind == "mounts":
            mount = st.fixed_dictionaries(
                {"hostPath": _paths, "containerPath": _paths},
                optional={"options": st.lists(st.sampled_from(["ro", "bind", "rbind", "nosuid"]), max_size=2)}
                | ({"type": st.sampled_from(["bind", "tmpfs", "none"])} if _at_least(version, "0.4.0") else {}),
            )
            edits["mounts"] = draw(st.lists(mount, min_size=1, max_size=2))
        elif kind == "intelRdt":
            rdt_fields: dict[str, st.SearchStrategy[Any]] = {
                "closID": st.sampled_from(["grp1", "c.1", "x-y"]),
                "l3CacheSchema": st.just("L3:0=ff"),
                "memBwSchema": st.just("MB:0=50"),
            }
            if _at_least(version, "1.1.0"):
                rdt_fields |= {"schemata": st.lists(st.just("L3:0=f"), max_size=2), "enableMonitoring": st.booleans()}
            keys = draw(st.lists(st.sampled_from(sorted(rdt_fields)), unique=True, min_size=1, max_size=3))
            edits["intelRdt"] = {key: draw(rdt_fields[key]) for key in keys}
        elif kind == "additionalGids":
            edits["additionalGids"] = draw(st.lists(_u32, min_size=1, max_size=3))
        else:
            hosts = draw(st.lists(st.sampled_from(["eth0", "ens3", "enp0s1"]), min_size=1, max_size=2, unique=True))
            inside = draw(st.lists(st.sampled_from(["net0", "net1", "eth1"]), min_size=len(hosts),
                                   max_size=len(hosts), unique=True))  # fmt: skip
            edits["netDevices"] = [{"hostInterfaceName": h, "name": n} for h, n in zip(hosts, inside, strict=True)]
    return edits


@st.composite
def _valid_spec(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.sampled_from(VERSIONS))
    classes = ["fuse", "gpu", "net"] + (["fuse.v3"] if _at_least(version, "0.6.0") else [])
    spec: dict[str, Any] = {
        "cdiVersion": version,
        "kind": f"{draw(st.sampled_from(['vendor.com', 'example.io', 'ab', 'A_b-c']))}/"
        + draw(st.sampled_from(classes)),
    }
    names = _names | _digit_names if _at_least(version, "0.5.0") else _names
    device_names = draw(st.lists(names | _quirky_names.filter(lambda n: n != "null" and n[:1].isalpha()),
                                 min_size=1, max_size=3, unique=True))  # fmt: skip
    spec["devices"] = [{"name": name, "containerEdits": draw(_edits(version, True))} for name in device_names]
    if draw(st.booleans()):
        spec["containerEdits"] = draw(_edits(version, False))
    if _at_least(version, "0.6.0") and draw(st.booleans()):
        annotations = st.dictionaries(st.sampled_from(["a", "cdi.k8s.io/x", "example.com/k-1"]), st.just("v"))
        spec["annotations"] = draw(annotations)
        if draw(st.booleans()):
            spec["devices"][0]["annotations"] = draw(annotations)
    return spec


def _locations(data: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the spec (dict keys and list indexes)."""
    found = [where] if where else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _locations(value, (*where, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _locations(value, (*where, i))
    return found


def _parent(spec: Any, where: tuple[Any, ...]) -> Any:
    for key in where[:-1]:
        spec = spec[key]
    return spec


@st.composite
def _mutated(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_locations(spec)))
        parent, key = _parent(spec, where), where[-1]
        action = draw(st.sampled_from(["value", "value", "remove", "case", "unknown", "duplicate", "version",
                                       "kind", "null-entry"]))  # fmt: skip
        if action == "value":
            parent[key] = draw(st.sampled_from(SPECIAL_VALUES))
        elif action == "remove":
            del parent[key]
        elif action == "case" and isinstance(key, str):
            parent[draw(st.sampled_from([key.upper(), key.capitalize(), key.lower()]))] = parent.pop(key)
        elif action == "unknown" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "capabilities", "devicenodes"]))] = draw(st.sampled_from([1, "x"]))
        elif action == "duplicate" and isinstance(spec.get("devices"), list) and spec["devices"]:
            spec["devices"].append(copy.deepcopy(spec["devices"][0]))
        elif action == "version":
            spec["cdiVersion"] = draw(st.sampled_from([*VERSIONS, "v1.0.0", "0.2.0", "1.2.0", "1.0"]))
        elif action == "kind":
            spec["kind"] = draw(st.sampled_from(["a/fuse", "vendor.com/b", "vendor.com", "/fuse", "1a/b", "ab/c_"]))
        elif action == "null-entry" and isinstance(parent, list):
            parent.append(None)
        if not isinstance(spec, dict):
            break
    return spec


class _PlainDumper(yaml.SafeDumper):
    """Writes every string plain where YAML syntax allows it: go-yaml's YAML 1.1 resolution then decides."""


_PlainDumper.yaml_implicit_resolvers = {}  # a string never "looks like" another type to this dumper


def _encode_as(data: Any, style: str) -> tuple[str, bytes]:
    if style == "json":
        return ".json", json.dumps(data).encode()
    if style == "yaml-flow":
        return ".yaml", yaml.safe_dump(data, default_flow_style=True).encode()
    if style == "yaml-plain":
        return ".yaml", yaml.dump(data, Dumper=_PlainDumper, sort_keys=False).encode()
    return ".yaml", yaml.safe_dump(data, sort_keys=False).encode()


_case = st.tuples(
    _valid_spec().flatmap(lambda spec: st.one_of(st.just(spec), _mutated(spec), _mutated(spec), _mutated(spec))),
    st.sampled_from(["yaml", "yaml-flow", "yaml-plain", "json"]),
)


@pytest.fixture(scope="module")
def sessions(oracles: dict[str, oracle_mod.Oracle]) -> Iterator[dict[str, Judge]]:
    with contextlib.ExitStack() as stack:
        yield {suite: stack.enter_context(o.session()).judge for suite, o in oracles.items()}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every example (the case file is overwritten each time)."""
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="module")
def generated_figures() -> Iterator[dict[str, int]]:
    figures: dict[str, int] = {}
    yield figures
    print(f"\ndifferential conformance, generated ({EXAMPLES} hypothesis examples): {figures}")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=os.environ.get("CDI_FUSE_ORACLE_EXPLORE") != "1",  # CI: the same cases every run
)
@given(case=_case)
def test_generated_specs_agree_with_the_reference_library(
    sessions: dict[str, Judge],
    scratch: Path,
    generated_figures: dict[str, int],
    case: tuple[Any, str],
) -> None:
    spec, style = case
    ext, data = _encode_as(spec, style)
    figures, disagreements = _compare([(f"generated-{style}", ext, data)], sessions, scratch)
    for key, value in figures.items():
        generated_figures[key] = generated_figures.get(key, 0) + value
    generated_figures[f"style-{style}"] = generated_figures.get(f"style-{style}", 0) + 1
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements[:40])
