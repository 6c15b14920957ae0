"""`cdi-fuse dra`: the DRA kubelet plugin's command line, parsed with argparse.

Like `plugin`, the driver runs for the node's lifetime, so its process does not load typer (and, through it,
pydantic). Parse options, call one library function (`dra.entry.run_driver`), turn its errors into exit codes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from cdi_fuse import defaults, options

__all__ = ["main", "parser"]

SHARING = ("auto", "shared", "devices")

DESCRIPTION = """\
Run the DRA kubelet plugin that hands out /dev/fuse through ResourceClaims (resource.k8s.io/v1).

Registers with the kubelet in --kubelet-registry-dir, publishes this node's FUSE device as a
ResourceSlice (pool = node name) and answers NodePrepareResources with the CDI device of the node's
spec. Pods ask for it with a ResourceClaim(Template) of DeviceClass fuse.cdi-fuse.io. Stops cleanly on
SIGTERM/SIGINT, removing its sockets."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cdi-fuse dra",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        required="NODE_NAME" not in os.environ,
        help="This node's name (the pool and the ResourceSlice's nodeName); in a pod, from the downward API "
        "[default: $NODE_NAME].",
    )
    p.add_argument(
        "--driver-name",
        default=defaults.DRA_DRIVER,
        help=f"DRA driver name; DeviceClasses select devices by it [default: {defaults.DRA_DRIVER}].",
    )
    p.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="Kubeconfig for the API server [default: the pod's service account, else $KUBECONFIG or ~/.kube/config].",
    )
    p.add_argument(
        "--kubelet-registry-dir",
        dest="registry_dir",
        type=Path,
        default=defaults.DRA_REGISTRY_DIR,
        metavar="PATH",
        help="The kubelet's plugin-registration directory; <driver>-reg.sock is served there "
        f"[default: {defaults.DRA_REGISTRY_DIR}].",
    )
    p.add_argument(
        "--kubelet-plugins-dir",
        dest="plugins_dir",
        type=Path,
        default=defaults.DRA_PLUGINS_DIR,
        metavar="PATH",
        help="The kubelet's plugin directory; the DRA socket and the checkpoint go in <dir>/<driver>/. The "
        "kubelet dials the socket at this path: mount it at the same path as on the host "
        f"[default: {defaults.DRA_PLUGINS_DIR}].",
    )
    p.add_argument(
        "--sharing",
        choices=SHARING,
        default="auto",
        help="'shared': one device any number of claims may hold at once (allowMultipleAllocations; needs "
        "DRAConsumableCapacity, on by default from Kubernetes 1.36). 'devices': --count devices, one claim "
        "each. 'auto': shared, or devices when the API server drops allowMultipleAllocations [default: auto].",
    )
    p.add_argument(
        "--count",
        type=options.positive_int(128),
        default=defaults.COUNT,
        metavar="N",
        help="Devices published with --sharing devices (or auto's fallback): how many claims may use FUSE on "
        f"this node at once; {defaults.COUNT} is the kubelet's default max pods, 128 the most one ResourceSlice "
        f"holds [default: {defaults.COUNT}].",
    )
    options.add_spec_options(
        p,
        spec_dirs_help="CDI spec dirs, lowest priority first; --generate writes into the first "
        f"[default: {defaults.SPEC_DIR}].",
    )
    p.add_argument(
        "--remove-slices-on-stop",
        action="store_true",
        help="Delete this node's ResourceSlices when stopping. Off by default: a restart or rolling update keeps "
        "the devices allocatable; after an uninstall the kubelet deletes the slices of a driver that stays "
        "unregistered for 30 s.",
    )
    options.add_device_options(p)
    p.add_argument(
        "--health-address",
        metavar="HOST:PORT",
        help="Serve /healthz (200 once registered, device healthy and slice published) and /livez on host:port, "
        "e.g. 0.0.0.0:9401 [default: off].",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Parse `argv` (the words after `dra`), run the driver until SIGTERM/SIGINT; the exit code."""
    args = parser().parse_args(list(argv))  # exits 2 with usage on malformed options

    def run() -> None:
        from cdi_fuse.dra import api, driver, entry
        from cdi_fuse.node import generate

        dirs = tuple(args.spec_dirs) if args.spec_dirs else (defaults.SPEC_DIR,)
        config = driver.DriverConfig(
            node_name=args.node_name,
            driver=args.driver_name,
            registry_dir=args.registry_dir,
            plugins_dir=args.plugins_dir,
            sharing=api.Sharing(args.sharing),
            count=args.count,
            generate_options=generate.GenerateOptions(
                device_path=args.device_path,
                vendor=args.vendor,
                cls=args.cls,
                device_name=args.device_name,
                permissions=args.permissions,
                spec_dir=dirs[0],
                host_device_path=args.host_device_path,
                allow_other_device=args.allow_other_device,
            ),
            write_spec=args.write_spec,
            remove_slices_on_stop=args.remove_slices_on_stop,
        )
        entry.run_driver(config, kubeconfig=args.kubeconfig, health_address=args.health_address)

    return options.run_until_stopped(args.log_level, run)
