"""Build a Driver wired to the real API server: what `cdi-fuse dra` runs."""

from __future__ import annotations

from pathlib import Path

from cdi_fuse import errors, process
from cdi_fuse.dra import driver, health, kube

__all__ = ["build_driver", "run_driver"]


def build_driver(config: driver.DriverConfig, *, kubeconfig: Path | None = None) -> driver.Driver:
    """Load the client configuration, then the Driver (probes the device; raises DeviceProbeError)."""
    client = kube.KubeApi(kube.load_client(kubeconfig))
    return driver.Driver(
        config,
        store=client,
        claims=client,
        slice_watch=lambda hint: kube.SliceWatch(client, node_name=config.node_name, driver=config.driver, hint=hint),
    )


def run_driver(
    config: driver.DriverConfig, *, kubeconfig: Path | None = None, health_address: str | None = None
) -> None:
    """Run the DRA driver until SIGTERM/SIGINT: what `cdi-fuse dra` does.

    Raises CdiFuseError when it cannot start (bad health address, device unusable, socket served by another
    process, no API server configuration); once started it outlives every failure.
    """
    if health_address is not None:
        health.parse_address(health_address)
    running = build_driver(config, kubeconfig=kubeconfig)
    health_server = None
    try:
        if health_address is not None:
            try:
                health_server = health.HealthServer(health_address, running.health_report)
            except OSError as exc:
                raise errors.InvalidOptionError(
                    f"cannot listen on {health_address!r}: {exc.strerror or exc}", option="--health-address"
                ) from exc
            health_server.start()
        with process.stop_on_signals(running.stop, wakeup_fd=running.wakeup_fd):
            running.run()
    finally:
        if health_server is not None:
            health_server.stop()
