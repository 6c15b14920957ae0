"""The strategy decider: which strategies Allocate uses, from the runtime's answer and the spec dirs.

With `--strategy auto` it asks the runtime (when a probe is configured) at start, every `runtime_interval`
and whenever a runtime's socket is created again (a restarted runtime may have another configuration), and
it looks at the spec dirs again when a spec file in them changes. A `specdirs.SpecFileCache` keeps each file's
devices by the file's identity, so looking again re-reads only what changed, and `DecisionReader` reads only
what can concern the plugin's own device: its own spec is recognised by its bytes, files that do not name its
vendor provide nothing it asks for, and only the rest is read as the runtimes read it (which loads pydantic).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cdi_fuse import errors
from cdi_fuse.cdi import compat, names, specdirs, specfile
from cdi_fuse.deviceplugin import api, state, strategies
from cdi_fuse.node import watch

__all__ = ["DecisionReader", "StrategyDecider", "decide_auto", "full_reader", "reader_for", "runtime_library"]

log = logging.getLogger(__name__)

_QUICK_RETRIES = 5  # after the runtime's socket was created again and the runtime did not answer yet
_QUICK_RETRY_S = 0.5


def full_reader(path: Path, library: compat.Library | None = None) -> list[str]:
    """A spec file's device names, read as the runtimes' CDI library (`library`, else the newest) reads it."""
    from cdi_fuse.cdi import store

    return store.device_names(path, library=library or compat.DEFAULT_LIBRARY)


def runtime_library(runtime: api.RuntimeView | None) -> compat.Library | None:
    """The CDI library the runtime loads specs with, when its version tells (None: judge with the newest)."""
    bundled = compat.reported_runtime_library(runtime.description) if runtime is not None else None
    return bundled.library if bundled is not None else None


def reader_for(runtime: api.RuntimeView | None) -> specdirs.DeviceNamesReader:
    """Read spec files as `runtime`'s own library does: a spec it cannot load does not resolve for it."""
    library = runtime_library(runtime)
    return lambda path: full_reader(path, library)


class DecisionReader:
    """Reads a spec file for the decision about `qualified_name` (a specdirs.DeviceNamesReader).

    The plugin's own spec (byte for byte what `own()` renders) provides exactly its device; a file that
    does not contain the vendor's name cannot define a device of that vendor (short of escaping every
    character of it), so it provides nothing the decision asks about; any other file is read in full.
    """

    def __init__(
        self, qualified_name: str, own: Callable[[], str | None], library: compat.Library | None = None
    ) -> None:
        self._name = qualified_name
        self._vendor = names.parse_qualified_name(qualified_name).vendor.encode()
        self._own = own
        self._library = library

    def __call__(self, path: Path) -> list[str]:
        try:
            with path.open("rb") as stream:
                raw = stream.read(specfile.MAX_SPEC_SIZE + 1)
        except OSError as exc:
            raise errors.SpecError(f"cannot read spec: {exc.strerror or exc}", path=path) from exc
        own = self._own()
        if own is not None and raw == own.encode():
            refusal = None
            if self._library is not None:
                from cdi_fuse.cdi import decode  # only once a runtime's library is known: ~19 ms at start otherwise

                refusal = decode.version_refusal(raw, self._library)
            if refusal is not None:  # e.g. a dotted class (cdiVersion 0.6.0) for a runtime with library 0.5
                raise errors.SpecError(refusal, path=path)
            return [self._name]
        if self._vendor not in raw:
            return []
        return full_reader(path, self._library)


def decide_auto(
    runtime: api.RuntimeView | None,
    query_error: errors.CdiFuseError | None,
    qualified_name: str,
    *,
    fallback_spec_dirs: Sequence[Path] = (),
    read: specdirs.DeviceNamesReader = full_reader,
) -> api.Decision:
    """Choose strategies from what the runtime says and what its spec dirs provide.

    - runtime not asked or not answering: the CDI name and the raw device when the name resolves to exactly
      one device in `fallback_spec_dirs` (the dirs the plugin shares with the runtime) — a runtime with CDI
      on injects the node once (containerd and CRI-O dedup it), one with CDI off ignores the name — else the
      raw device only (a CDI-on runtime fails CreateContainer on an unresolvable name). The answer does not
      depend on the runtime's setting, so a runtime restarted with CDI turned off or on cannot make it stale;
    - CDI off: the raw DeviceSpec only;
    - CDI on and the name resolves to exactly one device in the runtime's spec dirs: the CDI name in the
      CDI devices field only (kubelets since 1.29 pass it to the runtime; the cdi.k8s.io annotations are
      deprecated, and CRI-O warns about them), so the runtime's CDI edits are the only source of the node;
    - CDI on but the name is missing or defined twice: the raw DeviceSpec only.
    """
    if runtime is None:
        resolved, why = _resolves(qualified_name, fallback_spec_dirs, read)
        if not resolved:
            return api.Decision(
                frozenset({api.DEVICE_SPEC}),
                f"runtime not asked ({query_error}) and {why}; sending the device only",
            )
        return api.Decision(
            frozenset({api.CDI, api.DEVICE_SPEC}),
            f"runtime not asked ({query_error}); {why}: sending the CDI name and the device "
            "(with CDI on the runtime injects the node once, with CDI off it ignores the name)",
        )
    if not runtime.cdi_enabled:
        because = f" ({runtime.reason})" if runtime.reason else ""
        return api.Decision(frozenset({api.DEVICE_SPEC}), f"{runtime.description} has CDI disabled{because}")
    resolved, why = _resolves(qualified_name, [Path(d) for d in runtime.cdi_spec_dirs], read)
    if not resolved:
        return api.Decision(frozenset({api.DEVICE_SPEC}), f"{runtime.description} has CDI enabled but {why}")
    return api.Decision(
        frozenset({api.CDI}),
        f"{runtime.description} has CDI enabled and {why}: sending the CDI devices field "
        "(not the deprecated cdi.k8s.io annotations)",
    )


def _resolves(qualified_name: str, dirs: Sequence[Path], read: specdirs.DeviceNamesReader) -> tuple[bool, str]:
    registry = specdirs.scan(dirs, read)
    where = ", ".join(str(d) for d in dirs) or "no spec dirs"
    if qualified_name in registry.conflicts:
        paths = ", ".join(str(p) for p in registry.conflicts[qualified_name])
        return False, f"{qualified_name} is defined twice ({paths})"
    if registry.resolve(qualified_name) is None:
        return False, f"{qualified_name} is not in {where}"
    return True, f"{qualified_name} resolves in {where}"


class StrategyDecider:
    def __init__(
        self,
        choice: strategies.StrategyChoice,
        qualified_name: str,
        *,
        plugin_state: state.PluginState,
        spec_dirs: Sequence[Path],
        probe: api.RuntimeProbe | None = None,
        runtime_interval: float = 60.0,
        observer: api.PluginObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        own_spec: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.choice = choice
        self.qualified_name = qualified_name
        self._state = plugin_state
        self._spec_dirs = tuple(spec_dirs)
        self._probe = probe if choice.is_auto else None
        self._runtime_interval = runtime_interval
        self._observer = observer or api.NullObserver()
        self._clock = clock
        self._own_spec = own_spec
        # One cache per CDI library: whether a file loads (and so whether the name resolves) depends on it.
        self._readers: dict[str, specdirs.SpecFileCache] = {}
        self._read = self._reader(None)
        self._runtime: api.RuntimeView | None = None
        self._runtime_error: errors.CdiFuseError | None = None
        self._asked_at: float | None = None
        self._quick_retries = 0
        self._logged: api.Decision | None = None
        self._runtime_library_warned: tuple[str, Path, str | None] | None = None

    def decision_dirs(self) -> tuple[Path, ...]:
        """The spec dirs the decision depends on: the runtime's, else the plugin's own."""
        if self._runtime is not None:
            return tuple(Path(d) for d in self._runtime.cdi_spec_dirs)
        return self._spec_dirs

    def watches(self) -> list[tuple[Path, bool]]:
        if not self.choice.is_auto:
            return []
        dirs = [(d, True) for d in self.decision_dirs()]
        if self._probe is not None:
            dirs.extend((p.parent, False) for p in self._probe.socket_paths)
        return dirs

    def on_event(self, event: watch.DirEvent) -> bool:
        """React to one event; True when the spec dirs to watch may have changed."""
        if not self.choice.is_auto:
            return False
        if self._probe is not None and event.created and event.directory / event.name in self._probe.socket_paths:
            log.info("runtime socket %s created again: asking the runtime", event.directory / event.name)
            # A runtime creates its socket before it serves it: if it cannot answer yet, ask again shortly.
            self._quick_retries = _QUICK_RETRIES
            return self.decide(ask_runtime=True)
        if event.directory in self.decision_dirs() and (
            event.name.endswith(tuple(specdirs.SPEC_EXTENSIONS)) or event.directory_gone
        ):
            self.decide(ask_runtime=False)
        return False

    def runtime_due(self) -> float | None:
        if self._probe is None or self._asked_at is None:
            return None
        if self._runtime_error is not None and self._quick_retries > 0:
            return self._asked_at + _QUICK_RETRY_S
        return self._asked_at + self._runtime_interval

    def decide(self, *, ask_runtime: bool) -> bool:
        """Decide again (asking the runtime first if asked to); True when the decision dirs changed."""
        dirs_before = self.decision_dirs()
        if self.choice.fixed is not None:
            decision = api.Decision(self.choice.fixed, "chosen with --strategy")
        else:
            if ask_runtime:
                self._ask_runtime()
            decision = decide_auto(
                self._runtime,
                self._runtime_error,
                self.qualified_name,
                fallback_spec_dirs=self._spec_dirs,
                read=self._reader(runtime_library(self._runtime)),
            )
        self._state.set_decision(decision)
        self._observer.decision(decision)
        if decision != self._logged:
            log.info("strategy decision: %s (%s)", decision.label, decision.reason)
            self._logged = decision
        if self.choice.fixed is None and self._runtime is not None and self._runtime.cdi_enabled:
            self._warn_if_the_runtime_cannot_load_the_spec(self._runtime)
        return self.decision_dirs() != dirs_before

    def _reader(self, library: compat.Library | None) -> specdirs.SpecFileCache:
        key = library.version if library is not None else ""
        if key not in self._readers:
            self._readers[key] = specdirs.SpecFileCache(DecisionReader(self.qualified_name, self._own_spec, library))
        return self._readers[key]

    def _warn_if_the_runtime_cannot_load_the_spec(self, runtime: api.RuntimeView) -> None:
        """Log once when the spec that provides our name is one the runtime's own CDI library cannot load (it
        bundles an older one than the spec needs): containers would fail with "unresolvable CDI devices"."""
        from cdi_fuse.cdi import decode

        bundled = compat.reported_runtime_library(runtime.description)
        found = specdirs.scan([Path(d) for d in runtime.cdi_spec_dirs], self._read).resolve(self.qualified_name)
        if bundled is None or found is None:
            return
        try:
            with found.path.open("rb") as stream:
                why = decode.version_refusal(stream.read(specfile.MAX_SPEC_SIZE + 1), bundled.library)
        except OSError:
            return
        warning = (bundled.label, found.path, why)
        if why is not None and warning != self._runtime_library_warned:
            log.warning(
                "%s cannot load %s (%s): a container asking for %s fails with 'unresolvable CDI devices'; "
                "write the spec with --spec-version %s or lower",
                bundled.label,
                found.path,
                why,
                self.qualified_name,
                bundled.library.max_cdi_version,
            )
        self._runtime_library_warned = warning

    def _ask_runtime(self) -> None:
        self._asked_at = self._clock()
        if self._probe is None:
            self._runtime, self._runtime_error = None, errors.RuntimeQueryError("no runtime endpoint", endpoint="")
            return
        try:
            self._runtime, self._runtime_error = self._probe(), None
            self._quick_retries = 0
        except errors.CdiFuseError as exc:
            self._runtime, self._runtime_error = None, exc
            self._quick_retries = max(0, self._quick_retries - 1)
