"""The `cdi-fuse` entry point: `plugin` and `dra` go to their lean parsers, every other command to typer."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if sys.argv[1:2] == ["plugin"]:
        # The long-running commands never import typer (nor, through it, pydantic): see plugin_command.
        from cdi_fuse import plugin_command

        sys.exit(plugin_command.main(sys.argv[2:]))
    if sys.argv[1:2] == ["dra"]:
        from cdi_fuse import dra_command

        sys.exit(dra_command.main(sys.argv[2:]))
    from cdi_fuse import cli

    cli.app()


if __name__ == "__main__":
    main()
