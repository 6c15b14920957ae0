"""`cdi-fuse plugin`: the kubelet device plugin's command line, parsed with argparse.

The plugin runs for the node's lifetime, so its process loads only what serving needs: typer (which builds
pydantic adapters to coerce option values) and the spec models stay out of it. Same rules as the other
commands: parse options, call one library function (`loop.run_plugin`), turn its errors into exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cdi_fuse import defaults, errors

__all__ = ["main", "parser"]

EXIT_FAIL, EXIT_USAGE = 1, 2

DESCRIPTION = """\
Run the kubelet device plugin that advertises /dev/fuse as a shareable resource.

Pods request it with `resources.limits: {cdi-fuse.io/fuse: 1}`. Stops cleanly on SIGTERM/SIGINT,
removing its sockets."""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


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
        type=_count,
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
    p.add_argument(
        "--spec-dir",
        dest="spec_dirs",
        type=Path,
        action="append",
        metavar="PATH",
        help="CDI spec dirs, lowest priority first; --generate writes into the first; used for 'auto' when the "
        f"runtime does not report its own [default: {', '.join(str(d) for d in defaults.SPEC_DIRS)}].",
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
    p.add_argument(
        "--generate",
        dest="write_spec",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Write the CDI spec at start and restore it if changed [default: --generate].",
    )
    p.add_argument(
        "--device-path",
        type=Path,
        default=defaults.DEVICE_PATH,
        metavar="PATH",
        help=f"The FUSE character device to probe on this node [default: {defaults.DEVICE_PATH}].",
    )
    p.add_argument(
        "--host-device-path",
        type=Path,
        metavar="PATH",
        help="Where the device is on the host, when --device-path is the host's node seen elsewhere "
        "(e.g. /host/dev/fuse in a pod) [default: --device-path].",
    )
    p.add_argument(
        "--allow-other-device",
        action="store_true",
        help="Hand out --device-path even when it is not the FUSE misc device (char 10:229).",
    )
    p.add_argument(
        "--vendor",
        default=defaults.VENDOR,
        help=f"CDI vendor: the part before '/' in the kind [default: {defaults.VENDOR}].",
    )
    p.add_argument(
        "--class",
        dest="cls",
        default=defaults.CLASS,
        help=f"CDI class: the part after '/' in the kind [default: {defaults.CLASS}].",
    )
    p.add_argument(
        "--device-name",
        default=defaults.DEVICE_NAME,
        help=f"Device name: the part after '=' in the qualified name [default: {defaults.DEVICE_NAME}].",
    )
    p.add_argument(
        "--permissions",
        default=defaults.PERMISSIONS,
        help=f"Cgroup access granted to containers: any of r, w, m [default: {defaults.PERMISSIONS}].",
    )
    p.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="Serve /metrics, /livez and /healthz (ready only while registered with a kubelet that answers and "
        "the device is healthy) on host:port, e.g. 127.0.0.1:9400 or [::1]:9400 [default: off].",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR [default: INFO].")
    return p


def _fail(message: str, *, hint: str = "", code: int = EXIT_FAIL) -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def main(argv: Sequence[str]) -> int:
    """Parse `argv` (the words after `plugin`), run the plugin until SIGTERM/SIGINT; the exit code."""
    options = parser().parse_args(list(argv))  # exits 2 with usage on malformed options
    try:
        logging.getLogger().setLevel(options.log_level.upper())
    except ValueError as exc:
        return _fail(f"invalid --log-level {options.log_level!r}: {exc}", code=EXIT_USAGE)

    from cdi_fuse.deviceplugin import loop, strategies
    from cdi_fuse.node import generate
    from cdi_fuse.runtime import cri

    dirs = tuple(options.spec_dirs) if options.spec_dirs else defaults.SPEC_DIRS
    try:
        choice = strategies.parse_strategy(options.strategy)
        config = loop.PluginConfig(
            plugin_dir=options.device_plugin_dir,
            resource_names=tuple(dict.fromkeys(options.resource_names or [defaults.RESOURCE_NAME])),
            count=options.count,
            strategy=choice,
            spec_dirs=dirs,
            generate_options=generate.GenerateOptions(
                device_path=options.device_path,
                vendor=options.vendor,
                cls=options.cls,
                device_name=options.device_name,
                permissions=options.permissions,
                spec_dir=dirs[0],
                host_device_path=options.host_device_path,
                allow_other_device=options.allow_other_device,
            ),
            write_spec=options.write_spec,
            runtime_probe=cri.RuntimeProbe(options.runtime_endpoints or defaults.RUNTIME_ENDPOINTS)
            if choice.is_auto
            else None,
        )
        loop.run_plugin(config, metrics_address=options.metrics_address)
    except (errors.InvalidOptionError, errors.SpecError) as exc:
        return _fail(str(exc), code=EXIT_USAGE)
    except errors.DeviceProbeError as exc:
        return _fail(str(exc), hint=exc.hint)
    except errors.CdiFuseError as exc:
        return _fail(str(exc))
    return 0
