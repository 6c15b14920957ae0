"""`cdi-fuse doctor` against the real containerd of the e2e fixture (runtime-config: test_runtime_config_apply.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.e2e.containerd import harness

RuntimeFactory = Callable[[bool], harness.ContainerdRuntime]
CDI_FUSE = [sys.executable, "-m", "cdi_fuse"]


def _cdi_fuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CDI_FUSE, *args], capture_output=True, text=True, timeout=60, check=False)


def _doctor(runtime: harness.ContainerdRuntime, vendor: str, tmp_path: Path) -> dict[str, object]:
    result = _cdi_fuse(
        "doctor",
        "--output",
        "json",
        "--vendor",
        vendor,
        "--spec-dir",
        str(runtime.spec_dir),
        "--runtime-endpoint",
        runtime.endpoint,
        "--device-plugin-dir",
        str(tmp_path),
    )
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _check(report: dict[str, object], name: str) -> dict[str, str]:
    checks = report["checks"]
    assert isinstance(checks, list)
    (found,) = [c for c in checks if c["name"] == name]
    return dict(found)


def test_doctor_reads_cdi_on_from_real_containerd(containerd_runtime: RuntimeFactory, tmp_path: Path) -> None:
    runtime = containerd_runtime(True)
    vendor = f"doctor-{uuid.uuid4().hex[:8]}.cdi-fuse.io"
    name = harness.generate_fuse_spec(runtime.spec_dir, vendor)
    try:
        report = _doctor(runtime, vendor, tmp_path)
    finally:
        (runtime.spec_dir / f"{vendor}-fuse.yaml").unlink(missing_ok=True)
    check = _check(report, "runtime")
    assert check["status"] == "ok", check
    assert f"containerd {runtime.version}" in check["detail"] or runtime.version.split("~")[0] in check["detail"]
    assert "CDI enabled" in check["detail"] and str(runtime.spec_dir) in check["detail"]
    assert _check(report, "spec")["status"] == "ok"
    assert name in _check(report, "spec")["detail"]
    assert report["strategy"] == {"auto": "cdi", "reason": report["strategy"]["reason"]}  # type: ignore[index]


def test_doctor_reads_cdi_off_from_real_containerd(containerd_runtime: RuntimeFactory, tmp_path: Path) -> None:
    runtime = containerd_runtime(False)
    vendor = f"doctor-{uuid.uuid4().hex[:8]}.cdi-fuse.io"
    harness.generate_fuse_spec(runtime.spec_dir, vendor)
    try:
        report = _doctor(runtime, vendor, tmp_path)
    finally:
        (runtime.spec_dir / f"{vendor}-fuse.yaml").unlink(missing_ok=True)
    check = _check(report, "runtime")
    assert check["status"] == "warn"
    assert "CDI disabled" in check["detail"]
    assert "runtime-config" in check["hint"]
    assert report["strategy"]["auto"] == "device-spec"  # type: ignore[index]


def test_doctor_says_whether_this_containerd_runs_user_namespaced_pods(
    containerd_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    """containerd 1.7 reports no runtime handler features; 2.x reports them per handler (with this host's runc
    1.1.5, which has no idmap mounts: no user namespaces). doctor repeats what the runtime says."""
    runtime = containerd_runtime(True)
    handlers = {h.name: h.features.user_namespaces for h in runtime.client.status().runtime_handlers}
    report = _doctor(runtime, f"doctor-{uuid.uuid4().hex[:8]}.cdi-fuse.io", tmp_path)
    check = _check(report, "userns")
    print(f"containerd {runtime.version} handlers {handlers}: {check}")

    if runtime.daemon.install.version_tuple[0] < 2:
        assert handlers == {}
        assert "reports no runtime handler features" in check["detail"]
    else:
        assert "" in handlers
        can = "can" if handlers[""] else "cannot"
        assert f"its default runtime handler {can} run user-namespaced pods" in check["detail"]
    assert check["status"] == ("ok" if handlers.get("") else "warn")
