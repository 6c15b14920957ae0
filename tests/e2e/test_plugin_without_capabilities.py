"""The DaemonSet runs the plugin as root with every capability dropped: show that is enough.

`setpriv` empties the bounding, inheritable and ambient sets, so the plugin process holds no
capability at all (checked in /proc/<pid>/status), yet it writes the spec, serves its socket and
registers with the (fake) kubelet, because everything it touches is owned by root.
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
from tests.fakes.kubelet import fake_kubelet

CDI_FUSE = Path(sys.executable).with_name("cdi-fuse")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return f"needs root to show root-without-capabilities: running as uid {os.geteuid()}"
    if shutil.which("setpriv") is None:
        return "setpriv not installed (Debian package util-linux)"
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this host"
    return None


@pytest.fixture
def spec_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cdi-nocap-", dir="/tmp"))
    try:
        yield path / "cdi"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.root
def test_plugin_registers_and_writes_spec_with_no_capabilities(spec_dir: Path) -> None:
    reason = _skip_reason()
    if reason:
        print(f"skipped: {reason}")
        if os.environ.get("CDI_FUSE_REQUIRE_E2E") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with fake_kubelet() as kubelet:
        command = [
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--no-new-privs",
            str(CDI_FUSE),
            "plugin",
            "--device-plugin-dir",
            str(kubelet.plugin_dir),
            "--spec-dir",
            str(spec_dir),
            "--strategy",
            "cdi,device-spec",
        ]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            requests = kubelet.wait_for_registrations(1, timeout=20)
            status = Path(f"/proc/{process.pid}/status").read_text()
            caps = {
                line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")
            }
            assert caps["CapEff"] == 0 and caps["CapPrm"] == 0 and caps["CapBnd"] == 0, caps
            assert "NoNewPrivs:\t1" in status
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
