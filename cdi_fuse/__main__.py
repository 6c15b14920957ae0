"""The `cdi-fuse` entry point: `plugin` goes to its lean parser, every other command to the typer app."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if sys.argv[1:2] == ["plugin"]:
        # The long-running plugin never imports typer (nor, through it, pydantic): see plugin_command.
        from cdi_fuse import plugin_command

        sys.exit(plugin_command.main(sys.argv[2:]))
    from cdi_fuse import cli

    cli.app()


if __name__ == "__main__":
    main()
