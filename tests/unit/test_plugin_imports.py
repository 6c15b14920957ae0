"""The long-running `cdi-fuse plugin` process loads only what serving needs (issue 14): no pydantic (neither
the spec models nor typer's option adapters), no jsonschema, no prometheus_client unless --metrics-address is
given, no importlib.metadata.

The real CLI runs in a subprocess against the fake kubelet; once it has registered and answered an Allocate,
a thread in that process records sys.modules and stops it with SIGTERM. Not a timing test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.kubelet import FakeKubelet
from tests.waiting import wait_until

RESOURCE = "cdi-fuse.io/fuse"
HEAVY = (
    "pydantic",
    "jsonschema",
    "prometheus_client",
    "importlib.metadata",
    "kubernetes",
    "tomlkit",
    "typer",
    "cdi_fuse.cdi.models",
    "cdi_fuse.cdi.validation",
    "cdi_fuse.cdi.report",
    "cdi_fuse.cdi.store",
)

_CHILD = """
import json, os, signal, sys, threading, time
out, go = sys.argv[1], sys.argv[2]
def record():
    while not os.path.exists(go):
        time.sleep(0.01)
    with open(out, "w") as stream:
        json.dump(sorted(sys.modules), stream)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=record, daemon=True).start()
from cdi_fuse.__main__ import main
sys.argv = ["cdi-fuse", *sys.argv[3:]]
main()
"""


def _modules_of_a_serving_plugin(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path, *extra: str
) -> set[str]:
    out, go = tmp_path / "modules.json", tmp_path / "go"
    command = [
        sys.executable,
        "-c",
        _CHILD,
        str(out),
        str(go),
        "plugin",
        "--device-plugin-dir",
        str(kubelet.plugin_dir),
        "--spec-dir",
        str(tmp_path / "cdi"),
        "--device-path",
        str(char_device),
        "--host-device-path",
        "/dev/fuse",
        "--runtime-endpoint",
        f"unix://{tmp_path}/no-runtime.sock",
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        kubelet.wait_for_registrations(1, timeout=20)
        kubelet.allocate(RESOURCE, [["fuse-0"]])
        go.touch()
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    wait_until(out.exists, 5, "the module list")
    return set(json.loads(out.read_text()))


def test_the_plugin_loads_no_heavy_module(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    modules = _modules_of_a_serving_plugin(kubelet, char_device, proc_filesystems, tmp_path)
    assert "grpc" in modules and "cdi_fuse.deviceplugin.loop" in modules  # it did serve
    assert [m for m in HEAVY if m in modules] == []


def test_metrics_bring_prometheus_client_only(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    modules = _modules_of_a_serving_plugin(
        kubelet, char_device, proc_filesystems, tmp_path, "--metrics-address", "127.0.0.1:0"
    )
    assert "prometheus_client" in modules
    assert [m for m in HEAVY if m in modules and m != "prometheus_client"] == []


@pytest.fixture
def kubelet() -> object:
    from tests.fakes.kubelet import fake_kubelet

    with fake_kubelet() as started:
        yield started
