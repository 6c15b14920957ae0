"""Command-line options the long-running commands (`plugin`, `dra`) share, for argparse, and how they report.

Those commands parse with argparse so their processes stay lean (typer coerces option values with pydantic);
the options that mean the same in both are defined once here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from cdi_fuse import defaults, errors

__all__ = [
    "EXIT_FAIL",
    "EXIT_USAGE",
    "add_device_options",
    "add_spec_options",
    "fail",
    "positive_int",
    "run_until_stopped",
]

EXIT_FAIL, EXIT_USAGE = 1, 2


def positive_int(maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1 or (maximum is not None and value > maximum):
            limits = f"from 1 to {maximum}" if maximum is not None else "at least 1"
            raise argparse.ArgumentTypeError(f"{value} is not {limits}")
        return value

    return parse


def add_spec_options(p: argparse.ArgumentParser, *, spec_dirs_help: str) -> None:
    p.add_argument("--spec-dir", dest="spec_dirs", type=Path, action="append", metavar="PATH", help=spec_dirs_help)
    p.add_argument(
        "--generate",
        dest="write_spec",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Write the CDI spec at start and restore it if changed [default: --generate].",
    )


def add_device_options(p: argparse.ArgumentParser) -> None:
    """The FUSE device and its CDI name, as `generate` takes them."""
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
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR [default: INFO].")


def fail(message: str, *, hint: str = "", code: int = EXIT_FAIL) -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def run_until_stopped(log_level: str, run: Callable[[], None]) -> int:
    """Set the log level, call `run` (which builds the config and runs until SIGTERM/SIGINT); the exit code.

    Option values the library refuses (InvalidOptionError, and SpecError for names, permissions or versions)
    are usage errors (2); a device that cannot be used prints the fix too; any other error of ours is 1.
    """
    try:
        logging.getLogger().setLevel(log_level.upper())
    except ValueError as exc:
        return fail(f"invalid --log-level {log_level!r}: {exc}", code=EXIT_USAGE)
    try:
        run()
    except (errors.InvalidOptionError, errors.SpecError) as exc:
        return fail(str(exc), code=EXIT_USAGE)
    except errors.DeviceProbeError as exc:
        return fail(str(exc), hint=exc.hint)
    except errors.CdiFuseError as exc:
        return fail(str(exc))
    return 0
