"""The private containerd's config and the sweep that cleans up after an interrupted session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from tests.e2e.containerd import daemon


@pytest.mark.parametrize("cdi_enabled", [pytest.param(True, id="cdi-on"), pytest.param(False, id="cdi-off")])
def test_v2_config_for_containerd_1x(tmp_path: Path, cdi_enabled: bool) -> None:
    paths = daemon.DaemonPaths(tmp_path)
    config = daemon.build_config(paths, cdi_enabled=cdi_enabled, sandbox_image="img:1", major_version=1)
    parsed = tomlkit.parse(tomlkit.dumps(config)).unwrap()

    assert parsed["version"] == 2
    assert parsed["grpc"]["address"] == str(paths.socket)
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["enable_cdi"] is cdi_enabled
    assert cri["cdi_spec_dirs"] == [str(paths.spec_dir)]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "img:1"
    assert cri["stream_server_port"] == "0"  # two daemons at once must not fight over 10010
    assert cri["containerd"]["snapshotter"] == "native"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["Root"] == str(paths.runc_root)


def test_v3_config_for_containerd_2x(tmp_path: Path) -> None:
    paths = daemon.DaemonPaths(tmp_path)
    parsed = daemon.build_config(paths, cdi_enabled=True, sandbox_image="img:1", major_version=2)

    assert parsed["version"] == 3
    runtime = parsed["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["enable_cdi"] is True
    assert runtime["cdi_spec_dirs"] == [str(paths.spec_dir)]
    assert runtime["containerd"]["runtimes"]["runc"]["snapshotter"] == "native"
    assert parsed["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "img:1"
    # without it 2.x's transfer service wants overlayfs (disabled here) and the CRI plugin does not load
    (unpack,) = parsed["plugins"]["io.containerd.transfer.v1.local"]["unpack_config"]
    assert unpack["snapshotter"] == "native" and unpack["platform"].startswith("linux/")


def test_sweep_removes_dead_sessions_and_keeps_live_or_starting_ones(tmp_path: Path) -> None:
    dead, starting, live = (tmp_path / f"{daemon.DIR_PREFIX}{name}" for name in ("dead", "starting", "live"))
    for base in (dead, starting, live):
        (base / "root").mkdir(parents=True)
    (dead / "containerd.pid").write_text("999999999\n")  # beyond pid_max: never a live process
    # a stand-in daemon: what matters is a live pid whose argv names the dir's config file
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(daemon.DaemonPaths(live).config)]
    )
    try:
        (live / "containerd.pid").write_text(f"{stand_in.pid}\n")
        for base in (dead, live):
            old = os.stat(base).st_mtime - 3600
            os.utime(base, (old, old))

        assert daemon.sweep_stale_daemons(tmp_path) == [dead]
    finally:
        stand_in.kill()
        stand_in.wait()
    assert not dead.exists()
    assert starting.is_dir()
    assert live.is_dir()
