"""tests/kustomize.py: which kustomize renders the manifests, and a clean skip (or CI failure) without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import debcache, kustomize


@pytest.fixture
def nothing_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    def no_debs(*args: object, **kwargs: object) -> Path:
        raise debcache.DebUnavailableError("apt-get is not installed")

    monkeypatch.delenv(kustomize.BINARY_ENV, raising=False)
    monkeypatch.setattr(debcache, "ensure_debs", no_debs)
    monkeypatch.setenv("PATH", str(tmp_path))
    kustomize._find.cache_clear()
    yield
    kustomize._find.cache_clear()


def test_without_any_kustomize_the_test_skips_saying_what_was_tried(
    nothing_found: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(kustomize.REQUIRE_ENV, raising=False)

    with pytest.raises(pytest.skip.Exception) as skipped:
        kustomize.command()

    reason = str(skipped.value)
    for tried in ("Debian sid package: apt-get is not installed", "no kustomize on PATH", "no kubectl on PATH"):
        assert tried in reason, tried


def test_without_any_kustomize_ci_fails(nothing_found: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kustomize.REQUIRE_ENV, "1")

    with pytest.raises(pytest.fail.Exception, match=rf"kustomize unavailable: .*\(and {kustomize.REQUIRE_ENV}=1\)"):
        kustomize.command()


def test_kubectl_is_the_last_resort(nothing_found: None, tmp_path: Path) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text("#!/bin/sh\n")
    kubectl.chmod(0o755)

    assert kustomize.command() == (str(kubectl), "kustomize")


def test_the_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kustomize.BINARY_ENV, "/opt/kustomize/bin/kustomize")
    kustomize._find.cache_clear()
    try:
        assert kustomize.command() == ("/opt/kustomize/bin/kustomize", "build")
    finally:
        kustomize._find.cache_clear()
