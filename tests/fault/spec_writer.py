"""Driver for the spec-race test: run `cdi-fuse generate` N times in one process, alternating permissions.

`python spec_writer.py <device> <spec-dir> <runs>`: imports the CLI once (a fresh process per run costs
~0.2 s), prints "ready", waits for a line on stdin, then runs the generate command N times through the
real typer app and prints how many runs exited non-zero. Not a test module (pytest does not collect it).
"""

from __future__ import annotations

import contextlib
import io
import sys

from cdi_fuse import cli


def main(argv: list[str]) -> int:
    device, spec_dir, runs = argv[0], argv[1], int(argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    failures = 0
    for i in range(runs):
        args = ["generate", "--device-path", device, "--spec-dir", spec_dir, "--permissions", ("rw", "rwm")[i % 2]]
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.app(args, standalone_mode=False)
                code = 0
            except SystemExit as exc:  # typer.Exit becomes SystemExit only on failure paths
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # reported, so the test shows what broke
                print(f"run {i}: {exc!r}", file=sys.stderr)
                code = 1
        failures += code != 0
    print(failures, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
