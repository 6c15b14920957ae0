"""The reference CDI library as a test oracle, built from Debian's packaged source.

The runtimes (containerd, CRI-O, podman) load spec files with the CNCF container-device-interface Go library.
This module builds our small Go program (``oracle/main.go``) against Debian's packaged source of that library,
offline, in GOPATH mode: the library and every Go package it imports come as ``-dev`` packages from a Debian suite,
the compiler from sid's ``golang-1.26-go``/``golang-1.26-src``, all fetched by :mod:`tests.debcache` into the test
cache. The built binary is cached there too, keyed by the exact .deb files and the program's source, so later
runs only start it.

Two oracles, one per library version Debian packages:

- ``sid``: golang-tags.cncf-container-device-interface-dev 1.0.1 (Debian builds containerd 2.1.x against it);
- ``trixie``: golang-tags.cncf-container-device-interface-dev 0.8.0 (Debian trixie's containerd 1.7.24 uses it).

``Oracle.judge(paths)`` starts one process per batch of files. Run ``python -m tests.conformance.oracle FILE...``
to see the verdicts by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import debcache

SOURCE = Path(__file__).with_name("oracle") / "main.go"
GO_SUITE = "sid"
GO_PACKAGES = ("golang-1.26-go", "golang-1.26-src")
GO_ROOT = Path("usr/lib/go-1.26")
# The library and the packages its spec-loading code imports (found with `go list -deps`): the same names in
# both suites. Debian's dependency list has more (schema validation, test helpers) that loading never imports.
LIBRARY_PACKAGE = "golang-tags.cncf-container-device-interface-dev"
LIBRARY_PACKAGES = (
    LIBRARY_PACKAGE,
    "golang-github-fsnotify-fsnotify-dev",
    "golang-github-opencontainers-runtime-tools-dev",
    "golang-github-opencontainers-specs-dev",
    "golang-gocapability-dev",
    "golang-golang-x-mod-dev",
    "golang-golang-x-sys-dev",
    "golang-gopkg-yaml.v2-dev",
    "golang-gopkg-yaml.v3-dev",
    "golang-k8s-sigs-yaml-dev",
)
SUITES = ("sid", "trixie")
BUILD_TIMEOUT_S = 900.0
BATCH_TIMEOUT_S = 300.0


class OracleUnavailableError(Exception):
    """The oracle could not be fetched or built here; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class Verdict:
    """What the library said about one file."""

    path: str
    loaded: bool
    error: str | None
    panic: str | None
    parsed: Any  # the spec as the library decoded it, re-encoded as JSON (None when it did not parse)
    parse_error: str | None
    min_version: str | None

    @property
    def refused(self) -> bool:
        return not self.loaded


@dataclass(frozen=True)
class Oracle:
    suite: str
    binary: Path
    library_deb: str  # e.g. golang-tags.cncf-container-device-interface-dev_1.0.1-2_all.deb
    current_version: str  # the newest cdiVersion the library knows

    @property
    def library_version(self) -> str:
        """The Debian package version, e.g. ``1.0.1-2``."""
        return self.library_deb.split("_")[1]

    def judge(self, paths: Sequence[Path]) -> list[Verdict]:
        """One oracle process for the whole batch; one verdict per path, in order."""
        stdin = "".join(f"{p}\n" for p in paths)
        result = subprocess.run(
            [str(self.binary)], input=stdin, capture_output=True, text=True, timeout=BATCH_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"oracle {self.binary} exited {result.returncode}: {result.stderr[-2000:]}")
        verdicts = [_verdict(line) for line in result.stdout.splitlines()]
        if [v.path for v in verdicts] != [str(p) for p in paths]:
            raise RuntimeError(f"oracle answered {len(verdicts)} verdicts for {len(paths)} files")
        return verdicts

    @contextlib.contextmanager
    def session(self) -> Iterator[OracleSession]:
        """One long-lived oracle process answering file by file (for hypothesis: one example, one file)."""
        process = subprocess.Popen(
            [str(self.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        try:
            yield OracleSession(process)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=BATCH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class OracleSession:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def judge(self, paths: Sequence[Path]) -> list[Verdict]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        verdicts = []
        for path in paths:
            stdin.write(f"{path}\n")
            stdin.flush()
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"oracle exited ({self._process.poll()}) while judging {path}")
            verdicts.append(_verdict(line))
            if verdicts[-1].path != str(path):
                raise RuntimeError(f"oracle answered for {verdicts[-1].path} when asked about {path}")
        return verdicts


def _verdict(line: str) -> Verdict:
    raw = json.loads(line)
    return Verdict(
        path=raw["path"],
        loaded=raw["loaded"],
        error=raw["error"],
        panic=raw["panic"],
        parsed=raw["parsed"],
        parse_error=raw["parseError"],
        min_version=raw["minVersion"],
    )


def _deb_tree(name: str, packages: Sequence[str], suite: str) -> Path:
    try:
        return debcache.ensure_debs(name, packages, suite=suite)
    except debcache.DebUnavailableError as exc:
        raise OracleUnavailableError(str(exc)) from exc


def _build(go_tree: Path, lib_tree: Path, library_deb: str, output: Path) -> None:
    goroot = go_tree / GO_ROOT
    if not (goroot / "bin" / "go").is_file():
        raise OracleUnavailableError(f"no go compiler in {goroot}")
    with tempfile.TemporaryDirectory(prefix="cdi-oracle-build-") as work:
        gopath = Path(work) / "gopath"
        package = gopath / "src" / "cdioracle"
        package.mkdir(parents=True)
        shutil.copy(SOURCE, package / "main.go")
        env = {
            "PATH": f"{goroot / 'bin'}:/usr/bin:/bin",
            "HOME": work,
            "GOROOT": str(goroot),
            "GOPATH": f"{gopath}:{lib_tree / 'usr/share/gocode'}",
            "GO111MODULE": "off",  # GOPATH mode: imports resolve to Debian's unpacked source, nothing is fetched
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "",
            "GOCACHE": str(Path(work) / "cache"),
            "CGO_ENABLED": "0",
        }
        args = ["nice", "-n", "10", str(goroot / "bin" / "go"), "build", "-trimpath"]
        args += ["-ldflags", f"-X main.library={library_deb}", "-o", str(output), "cdioracle"]
        try:
            result = subprocess.run(
                args, cwd=work, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise OracleUnavailableError(f"go build failed to run: {exc}") from exc
        if result.returncode != 0:
            raise OracleUnavailableError(f"go build of the oracle failed: {result.stderr.strip()[-1500:]}")


def ensure_oracle(suite: str) -> Oracle:
    """The oracle for the library version Debian `suite` packages: from the cache, else fetched and built now."""
    go_tree = _deb_tree("golang", GO_PACKAGES, GO_SUITE)
    lib_tree = _deb_tree("cdi-library", LIBRARY_PACKAGES, suite)
    debs = debcache.installed_debs(go_tree) + debcache.installed_debs(lib_tree)
    library_deb = next(d for d in debcache.installed_debs(lib_tree) if d.startswith(LIBRARY_PACKAGE + "_"))
    key = hashlib.sha256("\n".join([*debs, SOURCE.read_text()]).encode()).hexdigest()[:12]
    root = debcache.cache_root()
    target = root / f"cdi-oracle-{suite}-{key}"
    binary = target / "cdi-oracle"
    try:
        with debcache.locked(root / f"{target.name}.lock"):
            if not binary.is_file():
                target.mkdir(parents=True, exist_ok=True)
                staging = target / ".cdi-oracle.tmp"
                _build(go_tree, lib_tree, library_deb, staging)
                os.replace(staging, binary)
    except debcache.DebUnavailableError as exc:
        raise OracleUnavailableError(str(exc)) from exc
    try:
        header = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=60, check=True)
        current = json.loads(header.stdout)["currentVersion"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        raise OracleUnavailableError(f"the built oracle {binary} does not run: {exc}") from exc
    return Oracle(suite=suite, binary=binary, library_deb=library_deb, current_version=current)


if __name__ == "__main__":
    import sys

    for suite in SUITES:
        oracle = ensure_oracle(suite)
        print(f"# {suite}: {oracle.library_deb} (cdiVersion up to {oracle.current_version}) at {oracle.binary}")
        for verdict in oracle.judge([Path(p).resolve() for p in sys.argv[1:]]):
            print(json.dumps(verdict.__dict__))
