"""tests/reference.py: conformance tests skip with a printed reason without ../shared/reference, fail in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import reference

REPO = Path(__file__).resolve().parents[2]


def test_present_file_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cri").mkdir()
    (tmp_path / "cri" / "api.proto").write_text("syntax = 'proto3';\n")
    monkeypatch.setenv(reference.DIR_ENV, str(tmp_path))
    monkeypatch.delenv(reference.REQUIRE_ENV, raising=False)

    assert reference.reference_file("cri/api.proto") == tmp_path / "cri" / "api.proto"


def test_missing_file_skips_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(reference.DIR_ENV, str(tmp_path))
    monkeypatch.delenv(reference.REQUIRE_ENV, raising=False)

    with pytest.raises(pytest.skip.Exception, match=r"'cri/api.proto' not found") as skipped:
        reference.reference_file("cri/api.proto")
    assert str(tmp_path) in str(skipped.value)
    assert "'cri/api.proto' not found" in capsys.readouterr().out


def test_missing_file_fails_when_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(reference.DIR_ENV, str(tmp_path))
    monkeypatch.setenv(reference.REQUIRE_ENV, "1")

    with pytest.raises(pytest.fail.Exception, match=rf"not found .*\(and {reference.REQUIRE_ENV}=1\)"):
        reference.reference_file_or_skip_module("cdi/schema.json")


PYTEST = (sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider")


def _conformance_run(reference_dir: Path, *, required: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != reference.REQUIRE_ENV}
    env[reference.DIR_ENV] = str(reference_dir)
    if required:
        env[reference.REQUIRE_ENV] = "1"
    return subprocess.run(
        # The reference-CDI-library oracle needs no reference data (and takes ~40 s): not part of this check.
        [*PYTEST, "tests/conformance", "--ignore", "tests/conformance/test_reference_oracle.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_conformance_suite_without_reference_skips_cleanly(tmp_path: Path) -> None:
    """A fresh clone (no reference folder): every test that needs it skips with the file named, none errors."""
    result = _conformance_run(tmp_path / "absent", required=False)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert " error" not in output and "FileNotFoundError" not in output, output
    for relative in ("cdi/schema.json", "kubelet/deviceplugin_v1beta1_api.proto", "cri/runtime_v1_api.proto"):
        assert f"upstream reference {relative!r} not found" in output, relative
    # the checks that need no reference (generated stubs up to date, our protos' shape) still run
    assert " passed" in output, output


def test_conformance_suite_without_reference_fails_when_required(tmp_path: Path) -> None:
    result = _conformance_run(tmp_path / "absent", required=True)

    # a module-level failure interrupts collection (exit 2): CI goes red either way
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"(and {reference.REQUIRE_ENV}=1)" in result.stdout
