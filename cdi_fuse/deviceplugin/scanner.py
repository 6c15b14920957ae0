"""The FUSE device scanner: the device's health, and the node's CDI spec kept as `generate` writes it.

Events are hints: an event on the device node makes it stat the node again; an event on the spec file (or
its directory going away) makes it converge the spec again, which writes only when the content differs. The
spec is rendered by generate.render (the same data and bytes `cdi-fuse generate` writes, without pydantic).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cdi_fuse import errors, ratelimit
from cdi_fuse.deviceplugin import api, state
from cdi_fuse.node import fuse, generate, watch

__all__ = ["FuseScanner"]

log = logging.getLogger(__name__)


class FuseScanner:
    def __init__(
        self,
        options: generate.GenerateOptions,
        *,
        plugin_state: state.PluginState,
        write_spec: bool = True,
        observer: api.PluginObserver | None = None,
    ) -> None:
        self.options = options
        self.device = generate.probe_device(options)  # refuses a device that is not FUSE, unless allowed
        self.spec_path = generate.default_output(options)
        self.write_spec = write_spec
        # The spec's content for this device, written or not; rendering now refuses bad options at start.
        self.rendered: str | None = generate.render(options, self.device).content
        self._state = plugin_state
        self._observer = observer or api.NullObserver()
        self._spec_errors = ratelimit.RateLimitedLog(log)
        self._reported_health: bool | None = None

    def watches(self) -> list[tuple[Path, bool]]:
        """Directories to watch, and whether file writes in them matter (not in /dev: only entries)."""
        dirs = [(self.device.path.parent, False)]
        if self.write_spec:
            dirs.append((self.spec_path.parent, True))
        return dirs

    def on_event(self, event: watch.DirEvent) -> None:
        if event.directory == self.device.path.parent and event.name == self.device.path.name:
            self.check_health()
        if (
            self.write_spec
            and event.directory == self.spec_path.parent
            and (event.name == self.spec_path.name or event.directory_gone)
        ):
            self.converge_spec()

    def refresh(self) -> None:
        self.check_health()
        self.converge_spec()

    def check_health(self) -> None:
        health = fuse.check_health(self.device, proc_filesystems=self.options.proc_filesystems)
        self._state.set_health(health.healthy)
        self._observer.device_health(health.healthy)
        if health.healthy != self._reported_health:
            if self._reported_health is not None or not health.healthy:
                log.info("health change: device %s: %s", "healthy" if health.healthy else "unhealthy", health.reason)
            self._reported_health = health.healthy

    def converge_spec(self) -> None:
        """Render the spec for the device as it is now; with --generate, write it where it differs."""
        try:
            rendered = generate.render(self.options)
            self.rendered = rendered.content
            if not self.write_spec:
                return
            result = generate.write_rendered(rendered)
        except errors.CdiFuseError as exc:
            if self.write_spec:
                self._spec_errors.error(f"cannot write the CDI spec: {exc}")
            return
        self._spec_errors.clear()
        if result.changed:
            log.info("wrote CDI spec %s (%s)", result.path, rendered.qualified_name)
            self._observer.spec_written()
