"""The containerd fetcher's pure parts: version parsing and finding this machine's Debian mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import debcache
from tests.e2e.containerd import fetch


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n",
            ("1.7.24~ds1", (1, 7, 24)),
            id="debian-1.7",
        ),
        pytest.param(
            "containerd github.com/containerd/containerd/v2 v2.0.4 1a43cb6a\n", ("2.0.4", (2, 0, 4)), id="upstream-2.x"
        ),
        pytest.param(
            "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n",
            ("2.1.9+unknown", (2, 1, 9)),
            id="debian-2.1",
        ),
    ],
)
def test_parse_version(output: str, expected: tuple[str, tuple[int, int, int]]) -> None:
    assert fetch.parse_version(output) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, ["1.7", "2.x"], id="default-both"),
        pytest.param("2.x", ["2.x"], id="only-2.x"),
        pytest.param(" 1.7 , ", ["1.7"], id="spaces"),
    ],
)
def test_selected_releases(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: list[str]) -> None:
    if value is None:
        monkeypatch.delenv(fetch.SUITES_ENV, raising=False)
    else:
        monkeypatch.setenv(fetch.SUITES_ENV, value)
    assert fetch.selected_releases() == expected
    assert {fetch.SUITES[r] for r in expected} <= {"trixie", "sid"}


def test_selected_releases_refuses_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.SUITES_ENV, "1.6")
    with pytest.raises(ValueError, match=r"unknown containerd release\(s\) \['1.6'\]"):
        fetch.selected_releases()


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(fetch.ContainerdUnavailableError, match="cannot read a version"):
        fetch.parse_version("containerd: command not found")


def _apt_etc(tmp_path: Path, *, one_line: str = "", deb822: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(one_line)
    (tmp_path / "sources.list.d" / "debian.sources").write_text(deb822)
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian 12"\nVERSION_CODENAME=bookworm\n')
    return tmp_path


def test_mirror_from_deb822_skips_security_and_disabled(tmp_path: Path) -> None:
    apt = _apt_etc(
        tmp_path,
        deb822=(
            "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/example.gpg\n"
        ),
    )
    mirror = debcache.debian_mirror(apt, apt / "os-release")
    assert mirror == debcache.Mirror("http://mirror.example/debian", Path("/usr/share/keyrings/example.gpg"))


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    apt = _apt_etc(
        tmp_path,
        one_line=(
            "# comment\ndeb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
        ),
    )
    expected = debcache.Mirror("http://one.example/debian", Path("/k.gpg"))
    assert debcache.debian_mirror(apt, apt / "os-release") == expected


def test_mirror_defaults_to_deb_debian_org(tmp_path: Path) -> None:
    apt = _apt_etc(tmp_path, one_line="deb http://other.example/ubuntu jammy main\n")
    assert debcache.debian_mirror(apt, apt / "os-release").uri == debcache.DEFAULT_MIRROR
