"""`cdi-fuse doctor` and `cdi-fuse runtime-config crio` against a real CRI-O configured for non-default spec dirs.

The session CRI-O reads two temp dirs and neither /etc/cdi nor /var/run/cdi; doctor and ``auto`` must report
and use those, as CRI-O states them over CRI. ``runtime-config crio --apply`` writes a drop-in that a freshly
started CRI-O takes up (its Status then names the applied dirs).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.containerd import cri_client
from tests.e2e.containerd import harness as containerd_harness
from tests.e2e.containerd.harness import FuseContainer
from tests.e2e.crio import daemon
from tests.e2e.crio.harness import CrioRuntime, assert_fuse_works

pytestmark = [pytest.mark.e2e, pytest.mark.root]

CDI_FUSE = [sys.executable, "-m", "cdi_fuse"]
RELOAD_TIMEOUT_S = 10.0


def _cdi_fuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CDI_FUSE, *args], capture_output=True, text=True, timeout=60, check=False)


def _doctor(endpoint: str, vendor: str, tmp_path: Path) -> dict[str, Any]:
    own_spec_dir = tmp_path / "doctor-spec-dir"  # empty: only CRI-O's own dirs hold the spec
    own_spec_dir.mkdir()
    result = _cdi_fuse(
        "doctor",
        "--output", "json",
        "--vendor", vendor,
        "--spec-dir", str(own_spec_dir),
        "--runtime-endpoint", endpoint,
        "--device-plugin-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    print(json.dumps(report, indent=1))
    return report


def _check(report: dict[str, Any], name: str) -> dict[str, str]:
    (found,) = [c for c in report["checks"] if c["name"] == name]
    return dict(found)


def test_doctor_reports_crio_real_spec_dirs_and_auto_picks_cdi(crio_runtime: CrioRuntime, tmp_path: Path) -> None:
    vendor = f"doctor-{uuid.uuid4().hex[:8]}.cdi-fuse.io"
    name = containerd_harness.generate_fuse_spec(crio_runtime.late_spec_dir, vendor)
    spec = crio_runtime.late_spec_dir / f"{vendor}-fuse.yaml"
    try:
        report = _doctor(crio_runtime.endpoint, vendor, tmp_path)
    finally:
        spec.unlink(missing_ok=True)
    runtime = _check(report, "runtime")
    dirs = ", ".join(str(d) for d in crio_runtime.spec_dirs)
    assert runtime["status"] == "ok", runtime
    assert f"cri-o {crio_runtime.version}: CDI enabled, spec dirs {dirs}" in runtime["detail"], runtime
    assert "crio.CDISpecDirs" in runtime["detail"], runtime
    assert _check(report, "spec")["status"] == "warn"  # doctor's own --spec-dir is empty
    runtime_dirs = _check(report, "runtime spec dirs")
    assert runtime_dirs["status"] == "ok", runtime_dirs
    assert f"{name} resolves to {spec}" in runtime_dirs["detail"], runtime_dirs
    strategy = report["strategy"]
    assert strategy["auto"] == "cdi", strategy
    assert dirs in strategy["reason"], strategy


def test_runtime_config_crio_compares_with_what_crio_reads(crio_runtime: CrioRuntime) -> None:
    own_dirs = [str(d) for d in crio_runtime.spec_dirs]
    same = _cdi_fuse(
        "runtime-config", "crio", "--runtime-endpoint", crio_runtime.endpoint,
        "--spec-dir", own_dirs[0], "--spec-dir", own_dirs[1],
    )  # fmt: skip
    assert same.returncode == 0, same.stderr
    print(same.stdout)
    note = f"# cri-o {crio_runtime.version} already reads CDI specs from {', '.join(own_dirs)}: nothing to change"
    assert note in same.stdout.splitlines()
    assert tomllib.loads(same.stdout) == {"crio": {"runtime": {"cdi_spec_dirs": own_dirs}}}

    defaults = _cdi_fuse("runtime-config", "crio", "--runtime-endpoint", crio_runtime.endpoint)
    assert defaults.returncode == 0, defaults.stderr
    print(defaults.stdout)
    note = f"# cri-o {crio_runtime.version} reads CDI specs from {', '.join(own_dirs)} now; install this drop-in"
    assert any(line.startswith(note) for line in defaults.stdout.splitlines()), defaults.stdout
    assert tomllib.loads(defaults.stdout) == {"crio": {"runtime": {"cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]}}}


def test_applied_drop_in_is_what_a_started_crio_reads(start_crio: Callable[..., daemon.CrioDaemon]) -> None:
    """`runtime-config crio --apply` into CRI-O's config dir; CRI-O started on it reports the applied dirs,
    resolves a spec from them, and the printed drop-in then says there is nothing to change."""
    applied: list[str] = []

    def apply_drop_in(paths: daemon.CrioPaths) -> None:
        applied.extend(str(paths.base / name) for name in ("applied-a", "applied-b"))
        for directory in applied:
            Path(directory).mkdir()
        args = ["runtime-config", "crio", "--apply", "--config", str(paths.config_dir / "10-cdi.conf")]
        result = _cdi_fuse(*args, "--spec-dir", applied[0], "--spec-dir", applied[1])
        assert result.returncode == 0, result.stderr
        print(result.stdout)
        assert "systemctl restart crio" in result.stdout

    started = start_crio(configure=apply_drop_in)
    try:
        runtime = CrioRuntime(started, cri_client.CriClient(started.endpoint))
        try:
            assert runtime.status_config()["crio"]["CDISpecDirs"] == applied
            name = containerd_harness.generate_fuse_spec(Path(applied[1]), f"applied-{uuid.uuid4().hex[:8]}.test")
            assert_fuse_works(runtime.run_fuse_container(cdi_devices=[name]))
            printed = _cdi_fuse("runtime-config", "crio", "--runtime-endpoint", started.endpoint,
                                "--spec-dir", applied[0], "--spec-dir", applied[1])  # fmt: skip
            assert printed.returncode == 0, printed.stderr
            assert "nothing to change" in printed.stdout.splitlines()[1], printed.stdout
        finally:
            runtime.cleanup()
    finally:
        started.stop()


def test_sighup_reload_of_spec_dirs_leaves_status_wrong(start_crio: Callable[..., daemon.CrioDaemon]) -> None:
    """What CRI-O 1.37 does when a config reload (SIGHUP) changes cdi_spec_dirs from two dirs to one.

    The CDI cache takes the new list, but Status then reports neither list: the new dir followed by the old
    second one. (CRI-O decodes the reloaded TOML into a default config whose CDISpecDirs slice shares its
    backing array with the CDI library's default list and with the running config, so the one-element
    decode overwrites element 0 in place.) A spec in the old second dir no longer resolves although Status
    still names that dir; doctor and ``auto`` read Status, so after such a reload only a restart makes
    them right again (README: restart CRI-O after changing its spec dirs).
    """
    started = start_crio()
    try:
        runtime = CrioRuntime(started, cri_client.CriClient(started.endpoint))
        try:
            first, second = (str(d) for d in started.paths.spec_dirs)
            assert runtime.status_config()["crio"]["CDISpecDirs"] == [first, second]
            reloaded = started.paths.base / "reloaded"
            reloaded.mkdir()
            (started.paths.config_dir / "20-reload.conf").write_text(
                f'[crio.runtime]\ncdi_spec_dirs = ["{reloaded}"]\n'
            )
            new_name = containerd_harness.generate_fuse_spec(reloaded, f"reload-{uuid.uuid4().hex[:8]}.test")
            reloads = started.log_text().count("Reloading configuration")
            started.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + RELOAD_TIMEOUT_S
            while started.log_text().count("Reloading configuration") == reloads:
                assert time.monotonic() < deadline, started.log_tail()
                time.sleep(0.1)
            assert_fuse_works(_run_when_resolvable(runtime, new_name, deadline))

            status_dirs = runtime.status_config()["crio"]["CDISpecDirs"]
            old_name = containerd_harness.generate_fuse_spec(Path(second), f"old-{uuid.uuid4().hex[:8]}.test")
            with pytest.raises(cri_client.CriCallError) as raised:
                _run_when_resolvable(runtime, old_name, time.monotonic() + 2.0)
            print(f"after SIGHUP: CDI resolves from {reloaded}; Status says {status_dirs}; {raised.value}")
            assert status_dirs == [str(reloaded), second]
            assert "unresolvable CDI devices" in raised.value.details
        finally:
            runtime.cleanup()
    finally:
        started.stop()


def _run_when_resolvable(runtime: CrioRuntime, name: str, deadline: float) -> FuseContainer:
    while True:
        try:
            return runtime.run_fuse_container(cdi_devices=[name])
        except cri_client.CriCallError as exc:
            if "unresolvable CDI devices" not in exc.details or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
