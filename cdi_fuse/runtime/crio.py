"""CRI-O specifics: the drop-in that points it at the CDI spec dirs, checked against what it reads now.

CRI-O has no CDI switch (on from 1.24); it only needs `[crio.runtime] cdi_spec_dirs`. A running CRI-O
says which dirs it scans in its Status answer (see `cri`), so the printed drop-in starts with that: an
admin sees at once whether the drop-in changes anything, and which CRI-O answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cdi_fuse import defaults, errors
from cdi_fuse.runtime import config, cri

__all__ = ["crio_snippet", "describe_crio_dirs"]


def describe_crio_dirs(info: cri.RuntimeInfo | None, error: errors.CdiFuseError | None, wanted: Sequence[str]) -> str:
    """A `#` comment line: which dirs the running CRI-O reads, compared with `wanted`."""
    if info is None:
        return f"# the running cri-o could not be asked ({error}); check it with `cdi-fuse doctor` after the restart"
    label = f"{info.runtime_name} {info.runtime_version}".strip()
    if info.runtime_name.strip().lower() != "cri-o":
        return f"# {info.endpoint} is {label}, not cri-o: pass --runtime-endpoint with cri-o's socket"
    if not info.cdi_spec_dirs_reported:
        return f"# {label} does not report its cdi spec dirs (cri-o < 1.33); the defaults are assumed"
    current = ", ".join(info.cdi_spec_dirs) or "no dirs"
    if _same_dirs(info.cdi_spec_dirs, wanted):
        return f"# {label} already reads CDI specs from {current}: nothing to change"
    return f"# {label} reads CDI specs from {current} now; install this drop-in and restart it"


_SPEC_DIRS = tuple(str(d) for d in defaults.SPEC_DIRS)


def crio_snippet(
    *,
    spec_dirs: Sequence[str] = _SPEC_DIRS,
    runtime_endpoint: str = defaults.CRIO_ENDPOINT,
    timeout: float = defaults.RUNTIME_TIMEOUT_S,
) -> str:
    """The drop-in for `spec_dirs` with its path and a line on what the CRI-O at `runtime_endpoint` reads."""
    body = config.render_crio_config(spec_dirs=spec_dirs)
    info: cri.RuntimeInfo | None = None
    error: errors.CdiFuseError | None = None
    try:
        info = cri.query_runtime(runtime_endpoint, timeout=timeout)
    except errors.CdiFuseError as exc:
        error = exc
    return f"# {defaults.CRIO_DROP_IN}\n{describe_crio_dirs(info, error, spec_dirs)}\n{body}"


def _same_dirs(current: Sequence[str], wanted: Sequence[str]) -> bool:
    # the CDI cache cleans each dir (filepath.Clean) and ranks them by position
    return [Path(d) for d in current] == [Path(d) for d in wanted]
