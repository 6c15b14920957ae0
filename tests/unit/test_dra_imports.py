"""What importing costs: other commands never load the Kubernetes client; the DRA driver loads neither the
device plugin nor prometheus_client. Checked in a fresh interpreter (sys.modules)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded(*imports: str) -> set[str]:
    code = "import sys\n" + "".join(f"import {name}\n" for name in imports) + "print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "imports",
    [
        pytest.param(("cdi_fuse.cli",), id="cli"),
        pytest.param(("cdi_fuse.doctor",), id="doctor"),
        pytest.param(("cdi_fuse.dra.driver", "cdi_fuse.dra.status"), id="dra-without-the-api"),
    ],
)
def test_the_kubernetes_client_is_loaded_only_by_the_commands_that_talk_to_the_api(imports: tuple[str, ...]) -> None:
    modules = loaded(*imports)
    assert not {m for m in modules if m == "kubernetes" or m.startswith("kubernetes.")}
    assert "cdi_fuse.dra.kube" not in modules


def test_the_dra_driver_loads_no_device_plugin_and_no_metrics_library() -> None:
    modules = loaded("cdi_fuse.dra.entry", "cdi_fuse.dra.health")
    assert "cdi_fuse.dra.kube" in modules
    assert not {m for m in modules if m.startswith(("cdi_fuse.deviceplugin", "cdi_fuse.runtime", "prometheus_client"))}
