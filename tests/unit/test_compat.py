"""cdi/compat.py: which CDI library each runtime release bundles, and what each library line loads."""

from __future__ import annotations

import pytest

from cdi_fuse import errors
from cdi_fuse.cdi import compat


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("containerd-2.1", ("containerd", (2, 1)), id="dash"),
        pytest.param("containerd 1.7.24", ("containerd", (1, 7, 24)), id="space"),
        pytest.param("cri-o-1.33.2", ("cri-o", (1, 33, 2)), id="cri-o"),
        pytest.param("crio1.35", ("cri-o", (1, 35)), id="crio-joined"),
        pytest.param("podman-v5", ("podman", (5,)), id="podman-v"),
    ],
)
def test_parse_runtime(text: str, expected: tuple[str, tuple[int, ...]]) -> None:
    assert compat.parse_runtime(text) == expected


@pytest.mark.parametrize("text", ["docker-20", "containerd", "", "2.1"])
def test_parse_runtime_refuses(text: str) -> None:
    with pytest.raises(errors.SpecError, match="invalid runtime"):
        compat.parse_runtime(text)


@pytest.mark.parametrize(
    ("runtime", "version", "module"),
    [
        pytest.param("containerd", (1, 7, 0), "0.5.4", id="containerd-1.7.0"),
        pytest.param("containerd", (1, 7, 24), "0.7.2", id="containerd-1.7.24-upstream"),
        pytest.param("containerd", (2, 1, 9), "1.0.1", id="containerd-2.1.9"),
        pytest.param("containerd", (2, 2, 0), "1.0.1", id="containerd-2.2.0"),
        pytest.param("containerd", (2, 2, 1), "1.1.0", id="containerd-2.2.1"),
        pytest.param("containerd", (2, 1), "1.0.1", id="containerd-2.1-line"),
        pytest.param("containerd", (9, 0), "1.1.0", id="newer-than-the-table"),
        pytest.param("cri-o", (1, 34, 2), "1.0.1", id="cri-o-1.34"),
        pytest.param("cri-o", (1, 35, 0), "1.1.0", id="cri-o-1.35"),
        pytest.param("podman", (5, 5, 0), "1.0.1", id="podman-5.5"),
    ],
)
def test_runtime_library(runtime: str, version: tuple[int, ...], module: str) -> None:
    found = compat.runtime_library(runtime, version)
    assert found is not None
    line, found_module = found
    assert found_module == module
    assert line.version == ".".join(module.split(".")[:2])


def test_runtime_without_cdi_has_no_library() -> None:
    assert compat.runtime_library("containerd", (1, 6, 20)) is None
    assert compat.runtime_library("docker", (20,)) is None


@pytest.mark.parametrize(
    ("description", "label"),
    [
        pytest.param("containerd 1.7.24~ds1", "containerd 1.7.24~ds1 (CDI library 0.8.0)", id="debian-trixie"),
        pytest.param("containerd v1.7.24", "containerd v1.7.24 (CDI library 0.7.2)", id="upstream-1.7.24"),
        pytest.param("containerd 2.1.9+unknown", "containerd 2.1.9+unknown (CDI library 1.0.1)", id="debian-sid"),
        pytest.param("cri-o 1.37.0", "cri-o 1.37.0 (CDI library 1.1.0)", id="cri-o"),
    ],
)
def test_reported_runtime_library(description: str, label: str) -> None:
    found = compat.reported_runtime_library(description)
    assert found is not None and found.label == label


@pytest.mark.parametrize("description", ["containerd 1.6.20", "docker 24.0", "containerd", "cri-o x"])
def test_reported_runtime_library_unknown(description: str) -> None:
    assert compat.reported_runtime_library(description) is None


def test_library_lines() -> None:
    assert compat.DEFAULT_LIBRARY.max_cdi_version == "1.1.0"
    assert compat.library("v1.0.1") is compat.LIBRARIES["1.0"]
    with pytest.raises(errors.SpecError, match=r"unknown cdi library version '0\.4'"):
        compat.library("0.4")
    assert compat.LIBRARIES["1.0"].cdi_versions[-1] == "1.0.0"
    assert not compat.LIBRARIES["0.8"].refuses_no_devices and compat.LIBRARIES["1.0"].refuses_no_devices
    assert not compat.LIBRARIES["0.5"].dot_in_class and compat.LIBRARIES["0.6"].dot_in_class


@pytest.mark.parametrize(
    ("line", "version", "loads"),
    [("1.0", "1.0.0", True), ("1.0", "v1.0.0", True), ("1.0", "1.1.0", False), ("1.1", "0.2.0", False)],
)
def test_loads_version(line: str, version: str, loads: bool) -> None:
    assert compat.loads_version(compat.LIBRARIES[line], version) is loads


def test_runtimes_using_merges_adjacent_releases() -> None:
    assert compat.runtimes_using({"1.0"}) == ["containerd 2.0.5-2.2.0", "cri-o 1.33.0-1.34.x", "podman 5.5.0-5.8.2"]
    assert compat.runtimes_using(set()) == []
