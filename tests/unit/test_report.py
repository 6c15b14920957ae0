"""cdi/report.py: the two-level judgement of a spec file, and which files a runtime's library refuses.

The verdicts here were checked against the reference library (tests/conformance/test_reference_oracle.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdi_fuse.cdi import compat, report, validation

K = validation.ProblemKind
HEAD = "cdiVersion: {version}\nkind: {kind}\n"


def _spec(devices: str, *, version: str = "0.3.0", kind: str = "ab/cd") -> bytes:
    return (HEAD.format(version=version, kind=kind) + f"devices: [{devices}]\n").encode()


@pytest.mark.parametrize(
    ("data", "first", "crashes"),
    [
        # The library stops at the first objection in its own order; a null entry crashes it only if reached.
        pytest.param(_spec("{name: x, containerEdits: {hooks: [null]}}"), "devices[0].containerEdits.hooks[0]", True,
                     id="null-hook"),
        pytest.param(_spec("{name: x, containerEdits: {hooks: [null]}}", kind="abcd"), "kind", False,
                     id="bad-kind-first"),
        pytest.param(_spec("{name: x, containerEdits: {env: [A], hooks: [null]}}"),
                     "devices[0].containerEdits.env[0]", False, id="bad-env-first"),
        # The minimum-version computation walks device nodes (before the version comparison) ...
        pytest.param(_spec("{name: x, containerEdits: {env: [A], deviceNodes: [null]}}"),
                     "devices[0].containerEdits.deviceNodes[0]", True, id="null-node-in-version-check"),
        # ... unless a device name starting with a digit decides it first.
        pytest.param(_spec("{name: 1x, containerEdits: {env: [A], deviceNodes: [null]}}", version="0.5.0"),
                     "devices[0].containerEdits.env[0]", False, id="digit-name-skips-nodes"),
        # A mount with a type decides before a later null one; the version is then too low: refused, no crash.
        pytest.param(_spec("{name: x, containerEdits: {mounts: [{hostPath: /a, containerPath: /b, type: bind}, "
                           "null]}}"), "cdiVersion", False, id="typed-mount-then-null"),
        pytest.param(_spec("{name: x, containerEdits: {env: [A=1]}}", kind="a/fuse"), "kind", True,
                     id="one-char-vendor"),
        pytest.param(_spec("{name: x, containerEdits: {env: [A=1]}}", kind="1a/b"), "kind", False,
                     id="bad-vendor-before-one-char-class"),
    ],
)  # fmt: skip
def test_first_objection_in_the_library_order(data: bytes, first: str, crashes: bool) -> None:
    judged = report.judge_bytes(data)
    assert not judged.loads
    assert judged.problems[0].location == first
    assert judged.crashes is crashes


@pytest.mark.parametrize(("line", "loads"), [("0.8", True), ("1.0", False), ("1.1", False)])
def test_devices_null_by_library(line: str, loads: bool) -> None:
    judged = report.judge_bytes(b"cdiVersion: 0.3.0\nkind: ab/cd\ndevices: null\n", compat.LIBRARIES[line])
    assert judged.loads is loads


def _file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_warnings_when_it_loads(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "cdiVersion: 1.0.0\nkind: ab/cd\nannotations: {'Bad Key': x}\n"
        "devices: [{name: on, containerEdits: {env: [A=1]}}]\n",
    )
    judged = report.judge_file(path)
    assert judged.valid and judged.errors == []
    kinds = [p.kind for p in judged.warnings]
    assert kinds == [K.YAML_VERSION, K.ANNOTATION, K.SCHEMA, K.COMPATIBILITY]
    text = report.render_text(judged)
    assert (
        "warning: devices[0].name: 'on' reads as 'true' under YAML 1.1 (the runtimes) but 'on' under YAML 1.2" in text
    )
    assert "refused by containerd 1.7.0-1.7.27" not in text  # annotations: 0.6+
    assert "needs CDI library > 0.8" in text and "refused by containerd 1.7.0-2.0.4" in text


def test_no_warnings_when_refused(tmp_path: Path) -> None:
    judged = report.judge_file(_file(tmp_path, _spec("{name: on, containerEdits: {env: [A]}}").decode()))
    assert not judged.valid
    assert judged.warnings == []
    assert [p.kind for p in judged.errors] == [K.ENV]


def test_against_a_runtime(tmp_path: Path) -> None:
    path = _file(tmp_path, _spec("{name: x, containerEdits: {env: [A=1]}}", version="1.1.0").decode())
    judged = report.judge_file(path, runtime="containerd-2.1")
    assert (judged.valid, judged.runtime, judged.library) == (False, "containerd 2.1 (CDI library 1.0.1)", "1.0")
    assert report.judge_file(path, runtime="cri-o-1.35").valid
    assert report.judge_file(path).valid


def test_oversized_file_is_readable_but_invalid(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (report.MAX_SPEC_SIZE + 1))
    judged = report.judge_file(path)
    assert judged.readable and not judged.valid
    assert judged.errors[0].message == "spec file larger than 1048576 bytes"


def test_runtime_refusals(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    run.mkdir()
    new = _file(etc, _spec("{name: x, containerEdits: {env: [A=1]}}", version="1.1.0").decode(), "new.yaml")
    crash = _file(run, _spec("{name: x, containerEdits: {env: [A=1]}}", kind="ab/c").decode(), "crash.json")
    _file(run, _spec("{name: x, containerEdits: {env: [A]}}").decode(), "invalid-everywhere.yaml")
    _file(run, _spec("{name: x, containerEdits: {env: [A=1]}}").decode(), "fine.yaml")
    _file(run, "ignored", "notes.txt")
    runtime = compat.reported_runtime_library("containerd 2.1.9")
    assert runtime is not None
    found = report.runtime_refusals(runtime, [etc, run, tmp_path / "missing"])
    assert [(r.path, r.crashes) for r in found] == [(new, False), (crash, True)]
    assert str(found[0]).startswith(f"{new}: cdiVersion: invalid version '1.1.0'")
    newest = compat.reported_runtime_library("containerd 2.2.1")
    assert newest is not None
    assert [r.path for r in report.runtime_refusals(newest, [etc, run])] == [crash]
