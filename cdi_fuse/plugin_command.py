"""`cdi-fuse plugin`: the kubelet device plugin's command line, parsed with argparse.

The plugin runs for the node's lifetime, so its process loads only what serving needs: typer (which builds
pydantic adapters to coerce option values) and the spec models stay out of it. Same rules as the other
commands: parse options, call one library function (`loop.run_plugin`), turn its errors into exit codes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cdi_fuse import defaults, options

__all__ = ["main", "parser"]


DESCRIPTION = """\
Run the kubelet device plugin that advertises /dev/fuse as a shareable resource.

Pods request it with `resources.limits: {cdi-fuse.io/fuse: 1}`. Stops cleanly on SIGTERM/SIGINT,
removing its sockets."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cdi-fuse plugin",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "--device-plugin-dir",
        type=Path,
        default=defaults.PLUGIN_DIR,
        metavar="PATH",
        help=f"The kubelet's device-plugin socket directory [default: {defaults.PLUGIN_DIR}].",
    )
    p.add_argument(
        "--resource-name",
        dest="resource_names",
        action="append",
        metavar="NAME",
        help="Extended resource to advertise; repeatable, each served on its own socket (e.g. add "
        "github.com/fuse, squat.ai/fuse, smarter-devices/fuse to replace those plugins) "
        f"[default: {defaults.RESOURCE_NAME}].",
    )
    p.add_argument(
        "--count",
        type=options.positive_int(),
        default=defaults.COUNT,
        metavar="N",
        help="Devices advertised per resource. /dev/fuse is shared, so this caps concurrent users per node; "
        f"{defaults.COUNT} is the kubelet's default max pods [default: {defaults.COUNT}].",
    )
    p.add_argument(
        "--strategy",
        default=defaults.STRATEGY,
        help="How Allocate hands out the device: 'auto' or a comma list of cdi, cdi-annotations, device-spec. "
        "'auto' sends the CDI name and the device when it cannot ask the runtime and the name resolves in "
        "--spec-dir (right whether the runtime has CDI on or off); when it can ask the runtime over CRI "
        "(--runtime-endpoint reachable), the CDI name alone with CDI on, the device alone with CDI off "
        f"[default: {defaults.STRATEGY}].",
    )
    options.add_spec_options(
        p,
        spec_dirs_help="CDI spec dirs, lowest priority first; --generate writes into the first; used for 'auto' "
        "when the runtime does not report its own "
        f"[default: {', '.join(str(d) for d in defaults.SPEC_DIRS)}].",
    )
    p.add_argument(
        "--runtime-endpoint",
        dest="runtime_endpoints",
        action="append",
        metavar="ENDPOINT",
        help="CRI endpoint(s) asked by 'auto'; the first that answers is used. Reaching one gives the plugin the "
        "power to start privileged containers: the default deployment mounts none "
        f"[default: {', '.join(defaults.RUNTIME_ENDPOINTS)}].",
    )
    options.add_device_options(p)
    p.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="Serve /metrics, /livez and /healthz (ready only while registered with a kubelet that answers and "
        "the device is healthy) on host:port, e.g. 127.0.0.1:9400 or [::1]:9400 [default: off].",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Parse `argv` (the words after `plugin`), run the plugin until SIGTERM/SIGINT; the exit code."""
    args = parser().parse_args(list(argv))  # exits 2 with usage on malformed options

    def run() -> None:
        from cdi_fuse.deviceplugin import loop, strategies
        from cdi_fuse.node import generate
        from cdi_fuse.runtime import cri

        dirs = tuple(args.spec_dirs) if args.spec_dirs else defaults.SPEC_DIRS
        choice = strategies.parse_strategy(args.strategy)
        config = loop.PluginConfig(
            plugin_dir=args.device_plugin_dir,
            resource_names=tuple(dict.fromkeys(args.resource_names or [defaults.RESOURCE_NAME])),
            count=args.count,
            strategy=choice,
            spec_dirs=dirs,
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
            runtime_probe=cri.RuntimeProbe(args.runtime_endpoints or defaults.RUNTIME_ENDPOINTS)
            if choice.is_auto
            else None,
        )
        loop.run_plugin(config, metrics_address=args.metrics_address)

    return options.run_until_stopped(args.log_level, run)
