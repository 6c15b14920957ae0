"""Build a Driver wired to the real API server: what `cdi-fuse dra` runs."""

from __future__ import annotations

from pathlib import Path

from cdi_fuse.dra import driver, kube

__all__ = ["build_driver"]


def build_driver(config: driver.DriverConfig, *, kubeconfig: Path | None = None) -> driver.Driver:
    """Load the client configuration, then the Driver (probes the device; raises DeviceProbeError)."""
    client = kube.KubeApi(kube.load_client(kubeconfig))
    return driver.Driver(
        config,
        store=client,
        claims=client,
        slice_watch=lambda hint: kube.SliceWatch(client, node_name=config.node_name, driver=config.driver, hint=hint),
    )
