"""The private CRI-O: its config, finding the binaries, and leaving nothing behind (stopped or killed).

The first tests need no CRI-O; the last two start one from ``$CDI_FUSE_CRIO_BIN`` with a running pod, then
stop it (or SIGKILL it and sweep as the next session would) and look for what could be left: the temp dir,
mounts below it, its pod cgroups, conmon and container processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tomlkit

from tests.e2e.containerd import cri_client
from tests.e2e.crio import daemon
from tests.e2e.crio.harness import CrioRuntime, assert_fuse_works

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _fake_install(tmp_path: Path) -> daemon.CrioInstall:
    return daemon.CrioInstall(
        tmp_path,
        tmp_path / "crio",
        tmp_path / "pinns",
        Path("/usr/bin/conmon"),
        Path("/usr/sbin/runc"),
        Path("/usr/bin/podman"),
        "1.37.0",
        (1, 37, 0),
    )


def test_config_keeps_crio_off_shared_paths(tmp_path: Path) -> None:
    paths = daemon.CrioPaths(tmp_path)
    config = daemon.build_config(
        paths, _fake_install(tmp_path), pause_image="img:1", pause_command="/pause", spec_dirs=list(paths.spec_dirs)
    )
    parsed = tomlkit.parse(tomlkit.dumps(config)).unwrap()["crio"]
    runtime = parsed["runtime"]
    assert runtime["cdi_spec_dirs"] == [str(tmp_path / "cdi"), str(tmp_path / "cdi-late")]
    assert (parsed["storage_driver"], runtime["cgroup_manager"], runtime["default_runtime"]) == (
        "vfs",
        "cgroupfs",
        "runc",
    )
    assert parsed["nri"] == {"enable_nri": False}
    assert parsed["api"]["stream_port"] == "0"  # two daemons at once must not fight over a port
    assert parsed["image"]["pause_image"] == "img:1"
    paths_set = [
        parsed["root"],
        parsed["runroot"],
        parsed["log_dir"],
        parsed["version_file"],
        parsed["clean_shutdown_file"],
        parsed["api"]["listen"],
        runtime["namespaces_dir"],
        runtime["container_exits_dir"],
        runtime["container_attach_socket_dir"],
        runtime["decryption_keys_path"],
        runtime["runtimes"]["runc"]["runtime_root"],
        parsed["image"]["signature_policy"],
        parsed["image"]["signature_policy_dir"],
        parsed["image"]["namespaced_auth_dir"],
        parsed["network"]["network_dir"],
    ]
    outside = [path for path in paths_set if not path.startswith(f"{tmp_path}/")]
    assert outside == []


def test_parse_version() -> None:
    text = "crio version 1.37.0\n   GitCommit:      unknown\n   GoVersion:      go1.26.10\n"
    assert daemon.parse_version(text) == ("1.37.0", (1, 37, 0))
    with pytest.raises(daemon.CrioUnavailableError, match="cannot read a version"):
        daemon.parse_version("no version here")


def test_without_the_variable_the_reason_names_it() -> None:
    with pytest.raises(daemon.CrioUnavailableError, match=daemon.BIN_ENV):
        daemon.find_install({})


def test_a_dir_without_crio_is_refused(tmp_path: Path) -> None:
    with pytest.raises(daemon.CrioUnavailableError, match="crio is missing or not executable"):
        daemon.find_install({daemon.BIN_ENV: str(tmp_path)})


def test_sweep_removes_dead_sessions_and_keeps_live_or_starting_ones(tmp_path: Path) -> None:
    dead, starting, live = (tmp_path / f"{daemon.DIR_PREFIX}{name}" for name in ("dead", "starting", "live"))
    for base in (dead, starting, live):
        (base / "storage").mkdir(parents=True)
    (dead / "crio.pid").write_text("999999999\n")  # beyond pid_max: never a live process
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(daemon.CrioPaths(live).config)]
    )
    try:
        (live / "crio.pid").write_text(f"{stand_in.pid}\n")
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


def _traces(paths: daemon.CrioPaths) -> dict[str, list[str]]:
    """Everything of a CRI-O session that could outlive it."""
    prefix = f"{paths.base}/"
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split()[4] for line in handle if line.split()[4].startswith(prefix)]
    relative = paths.cgroup_parent.strip("/")
    cgroups = [str(h / relative) for h in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()] if (h / relative).exists()]
    processes = [b" ".join(argv).decode(errors="replace") for _, argv in daemon._processes_naming(paths.base)]
    return {
        "dir": [str(paths.base)] if paths.base.exists() else [],
        "mounts": mounts,
        "cgroups": cgroups,
        "processes": processes,
    }


def _running_pod(started: daemon.CrioDaemon) -> CrioRuntime:
    runtime = CrioRuntime(started, cri_client.CriClient(started.endpoint))
    assert_fuse_works(runtime.run_fuse_container(devices=[cri_client.DeviceMapping("/dev/fuse", "/dev/fuse", "rw")]))
    during = _traces(started.paths)
    print(f"while running: {during}")
    assert during["mounts"] and during["cgroups"] and during["processes"], during  # the checks can see them
    return runtime


@pytest.mark.e2e
@pytest.mark.root
def test_stop_leaves_nothing(start_crio: Callable[..., daemon.CrioDaemon]) -> None:
    started = start_crio()
    try:
        runtime = _running_pod(started)
        runtime.client.close()  # the pod stays: stop() must remove it
    finally:
        started.stop()
    assert _traces(started.paths) == {"dir": [], "mounts": [], "cgroups": [], "processes": []}


@pytest.mark.e2e
@pytest.mark.root
def test_sweep_cleans_up_after_a_killed_session(start_crio: Callable[..., daemon.CrioDaemon]) -> None:
    started = start_crio()
    try:
        runtime = _running_pod(started)
        runtime.client.close()
        started.process.send_signal(signal.SIGKILL)  # a session killed before its teardown
        started.process.wait(10)
        assert _traces(started.paths)["processes"], "conmon and the container outlive a killed CRI-O"
        old = os.stat(started.paths.base).st_mtime - 3600
        os.utime(started.paths.base, (old, old))
        swept = daemon.sweep_stale_daemons()
        assert started.paths.base in swept
        assert _traces(started.paths) == {"dir": [], "mounts": [], "cgroups": [], "processes": []}
    finally:
        started.stop()  # no-op when swept; cleans up if an assertion failed first
