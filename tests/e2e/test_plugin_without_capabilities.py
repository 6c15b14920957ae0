"""The DaemonSet runs the plugin as root with every capability dropped, in a container that was not given
/dev/fuse: show that is enough.

`setpriv` empties the bounding, inheritable and ambient sets, so the process holds no capability at all
(checked in /proc/<pid>/status), and a devices cgroup denies /dev/fuse the way the container's cgroup does
(access(2) on the node fails with EPERM; stat(2) works). Yet the plugin writes the spec, serves its socket
and registers with the (fake) kubelet, and `generate` prints the spec: everything they touch is owned by
root, and they only stat the device.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi_fuse.cdi import store
from tests.e2e import sandbox
from tests.fakes.kubelet import fake_kubelet

CDI_FUSE = Path(sys.executable).with_name("cdi-fuse")
HOST_FUSE = Path("/dev/fuse")


@pytest.fixture
def container_cgroup() -> Iterator[Path]:
    reason = sandbox.unavailable_reason() or (None if HOST_FUSE.exists() else "no /dev/fuse on this host")
    if reason:
        print(f"skipped: {reason}")
        if os.environ.get("CDI_FUSE_REQUIRE_E2E") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with sandbox.devices_cgroup() as cgroup:
        yield cgroup


@pytest.fixture
def spec_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cdi-nocap-", dir="/tmp"))
    try:
        yield path / "cdi"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run_sandboxed(cgroup: Path, command: list[str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        sandbox.in_container_like(command), preexec_fn=lambda: sandbox.join_cgroup(cgroup), text=True, **kwargs
    )


@pytest.mark.root
def test_the_sandbox_denies_the_device_like_a_container(container_cgroup: Path) -> None:
    probe = "import os, sys; os.stat(sys.argv[1]); print(os.access(sys.argv[1], os.R_OK))"
    process = _run_sandboxed(container_cgroup, [sys.executable, "-c", probe, str(HOST_FUSE)], stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert out.strip() == "False"  # stat works, access(2) is refused: what broke the shipped DaemonSet


@pytest.mark.root
def test_generate_in_a_container_without_the_device(container_cgroup: Path) -> None:
    process = _run_sandboxed(
        container_cgroup,
        [str(CDI_FUSE), "generate", "--device-path", str(HOST_FUSE), "--output", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "major: 10" in out and "minor: 229" in out


@pytest.mark.root
def test_plugin_registers_and_writes_spec_with_no_capabilities(container_cgroup: Path, spec_dir: Path) -> None:
    with fake_kubelet() as kubelet:
        command = [
            str(CDI_FUSE),
            "plugin",
            "--device-plugin-dir",
            str(kubelet.plugin_dir),
            "--spec-dir",
            str(spec_dir),
            "--device-path",
            str(HOST_FUSE),
            "--strategy",
            "cdi,device-spec",
        ]
        process = _run_sandboxed(container_cgroup, command, stderr=subprocess.PIPE)
        try:
            requests = kubelet.wait_for_registrations(1, timeout=20)
            status = Path(f"/proc/{process.pid}/status").read_text()
            caps = {
                line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")
            }
            assert caps["CapEff"] == 0 and caps["CapPrm"] == 0 and caps["CapBnd"] == 0, caps
            assert "NoNewPrivs:\t1" in status
            assert str(process.pid) in (container_cgroup / "cgroup.procs").read_text().split()
            assert requests[0].resource_name == "cdi-fuse.io/fuse"
            spec_file = spec_dir / "cdi-fuse.io-fuse.yaml"
            spec = store.read_spec(spec_file)
            assert spec.devices[0].container_edits.device_nodes[0].path == "/dev/fuse"  # type: ignore[index]
            assert oct(spec_file.stat().st_mode & 0o777) == "0o644"
            response = kubelet.allocate("cdi-fuse.io/fuse", [["fuse-0"]])
            assert [d.name for d in response.container_responses[0].cdi_devices] == ["cdi-fuse.io/fuse=fuse"]
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0, stderr
        assert not list(kubelet.plugin_dir.glob("cdi-fuse-*.sock"))
