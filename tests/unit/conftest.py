"""Fixtures shared by the device-plugin unit tests: a fake kubelet and in-process plugins."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi_fuse.deviceplugin import loop
from tests.fakes.kubelet import FakeKubelet, fake_kubelet, plugin_config, plugin_thread

StartPlugin = Callable[..., loop.PluginLoop]


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    with fake_kubelet() as started:
        yield started


@pytest.fixture
def start_plugin(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> Iterator[StartPlugin]:
    """Factory: run a plugin (PluginConfig overrides as keywords) until the test ends."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> loop.PluginLoop:
            observer = overrides.pop("observer", None)
            config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", **overrides)
            manager = loop.PluginLoop(config, observer=observer)
            stack.enter_context(plugin_thread(manager))
            return manager

        yield start
