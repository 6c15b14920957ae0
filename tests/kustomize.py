"""Render plugin/deploy with the real kustomize, as `kubectl apply -k` would.

The binary is, in order: $CDI_FUSE_KUSTOMIZE; Debian sid's `kustomize` package, fetched into the test
cache by :mod:`tests.debcache`; `kustomize` on PATH; `kubectl kustomize`. When none works the calling test
skips and says why, unless ``CDI_FUSE_REQUIRE_KUSTOMIZE=1`` (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests import debcache

BINARY_ENV = "CDI_FUSE_KUSTOMIZE"
REQUIRE_ENV = "CDI_FUSE_REQUIRE_KUSTOMIZE"
DEBIAN_SUITE = "sid"
PACKAGE = "kustomize"
TIMEOUT_S = 120

Manifest = dict[str, Any]


def _unavailable(reason: str) -> NoReturn:
    message = f"kustomize unavailable: {reason}"
    print(message)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} (and {REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


@functools.cache
def _find() -> tuple[str, ...] | str:
    """The command line that builds a kustomization dir given as its last argument, or why there is none."""
    tried: list[str] = []
    if override := os.environ.get(BINARY_ENV):
        return (override, "build")
    try:
        tree = debcache.ensure_debs(PACKAGE, [PACKAGE], suite=DEBIAN_SUITE)
        return (str(tree / "usr" / "bin" / PACKAGE), "build")
    except debcache.DebUnavailableError as exc:
        tried.append(f"Debian {DEBIAN_SUITE} package: {exc}")
    if binary := shutil.which("kustomize"):
        return (binary, "build")
    tried.append("no kustomize on PATH")
    if binary := shutil.which("kubectl"):
        return (binary, "kustomize")
    tried.append("no kubectl on PATH")
    return "; ".join(tried)


def command() -> tuple[str, ...]:
    """The kustomize command line (skips or fails the calling test when there is none)."""
    found = _find()
    if isinstance(found, str):
        _unavailable(found)
    return found


@functools.cache
def _build(directory: Path) -> str:
    result = subprocess.run(
        [*command(), str(directory)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command())} {directory} failed:\n{result.stderr}")
    return result.stdout


def build(directory: Path) -> list[Manifest]:
    """The objects `kustomize build directory` renders, in its output order (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_build(directory.resolve())) if doc is not None]


def build_error(directory: Path) -> str:
    """The message of a `kustomize build` that must fail; raises when it succeeds."""
    result = subprocess.run(
        [*command(), str(directory)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert result.returncode != 0, f"kustomize build {directory} succeeded:\n{result.stdout}"
    return result.stderr
