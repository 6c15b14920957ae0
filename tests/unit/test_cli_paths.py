"""No command lets typer check a path: the library does its own checks with its own messages.

typer's Path options call access(2) on existing paths by default (`readable=True`); in a container the devices
cgroup refuses access(2) on a device node it was not given, even though stat(2) works, so the shipped DaemonSet
crash-looped with "path '/host/dev/fuse' is not readable" while the plugin only needs stat().
tests/e2e/test_plugin_without_capabilities.py shows the real thing in a devices cgroup.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import typer.models

from cdi_fuse import cli


def _path_parameters() -> list[tuple[str, typer.models.ParameterInfo]]:
    found = []
    for command in cli.app.registered_commands:
        assert command.callback is not None
        hints = typing.get_type_hints(command.callback, include_extras=True)
        for name, hint in hints.items():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            base, *extras = typing.get_args(hint)
            if Path not in {
                base,
                *typing.get_args(base),
                *(a for b in typing.get_args(base) for a in typing.get_args(b)),
            }:
                continue
            for extra in extras:
                if isinstance(extra, typer.models.ParameterInfo):
                    found.append((f"{command.name} {name}", extra))
    return found


PATH_PARAMETERS = _path_parameters()


def test_the_cli_has_path_parameters() -> None:
    assert len(PATH_PARAMETERS) >= 8, PATH_PARAMETERS


@pytest.mark.parametrize(("where", "info"), PATH_PARAMETERS, ids=[where for where, _ in PATH_PARAMETERS])
def test_typer_checks_nothing_on_paths(where: str, info: typer.models.ParameterInfo) -> None:
    assert (info.exists, info.readable, info.writable) == (False, False, False), where
