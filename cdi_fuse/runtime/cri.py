"""Ask the node's container runtime over CRI who it is and whether it resolves CDI device names.

containerd reports its CRI plugin configuration as JSON in `Status(verbose=True).info["config"]`, with
`enableCDI` and `cdiSpecDirs` (1.7 and 2.x). CRI-O resolves CDI devices unconditionally from 1.24 on and
has no switch for it; from 1.33 on its `info["config"]` is `{"sandboxImage": ..., "crio": <its runtime
config>}` with Go field names, so the spec dirs it scans are `crio.CDISpecDirs` (1.27-1.32 send only
`sandboxImage`: then the defaults are assumed, and the reason says so).
For anything else we cannot tell, so the answer is "no CDI" and callers fall back to a raw device node.
grpc and the generated stubs are imported on first use so that importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cdi_fuse import defaults, errors

if TYPE_CHECKING:
    from cdi_fuse._proto import cri_pb2

__all__ = [
    "RuntimeHandler",
    "RuntimeInfo",
    "RuntimeProbe",
    "parse_version",
    "probe_runtime",
    "query_runtime",
]

_log = logging.getLogger(__name__)

#: The spec dirs containerd and CRI-O scan when their configuration names none.
_DEFAULT_SPEC_DIRS: tuple[str, ...] = tuple(str(d) for d in defaults.SPEC_DIRS)


_CRI_API_VERSION = "v1"
_CONTAINERD_CDI_DEFAULT_ON = (2, 0)  # containerd 2.0 turned enable_cdi on by default
_CONTAINERD_FIRST_CDI = (1, 7)
_CRIO_FIRST_CDI = (1, 24)
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)")


@dataclass(frozen=True)
class RuntimeHandler:
    """What one runtime handler (the OCI runtime behind it, e.g. runc) supports, as CRI Status reports it."""

    name: str  # "" is the default handler
    user_namespaces: bool  # pods with hostUsers: false (user namespaces with idmap mounts)
    recursive_read_only_mounts: bool


@dataclass(frozen=True)
class RuntimeInfo:
    """What the runtime at `endpoint` said about itself; `reason` explains how `cdi_enabled` was decided."""

    endpoint: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str
    cdi_enabled: bool
    cdi_spec_dirs: tuple[str, ...]
    reason: str
    # False when the runtime did not say which dirs it scans and `cdi_spec_dirs` are the defaults
    cdi_spec_dirs_reported: bool = True
    # Reported from the CRI of Kubernetes 1.30 on (containerd 2.x, CRI-O 1.30+); empty from older runtimes.
    handlers: tuple[RuntimeHandler, ...] = ()

    @property
    def default_handler(self) -> RuntimeHandler | None:
        """The handler pods get without a RuntimeClass ("" when reported, else the first); None: none reported."""
        by_name = {handler.name: handler for handler in self.handlers}
        return by_name.get("", self.handlers[0] if self.handlers else None)

    @property
    def description(self) -> str:
        return f"{self.runtime_name} {self.runtime_version}".strip() or "unnamed runtime"


class RuntimeProbe:
    """Asks the first answering endpoint (a deviceplugin.api.RuntimeProbe: the plugin's `auto` uses it)."""

    def __init__(
        self, endpoints: Sequence[str] = defaults.RUNTIME_ENDPOINTS, *, timeout: float = defaults.RUNTIME_TIMEOUT_S
    ):
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.socket_paths = tuple(
            Path(os.path.abspath(socket_path(e))) for e in self.endpoints if e.startswith("unix://") or "://" not in e
        )

    def __call__(self) -> RuntimeInfo:
        return probe_runtime(self.endpoints, timeout=self.timeout)


def socket_path(endpoint: str) -> str:
    """The filesystem path of a CRI endpoint given as `unix:///path` or as a plain path."""
    if endpoint.startswith("unix://"):
        return endpoint.removeprefix("unix://")
    if "://" in endpoint:
        raise errors.RuntimeQueryError(
            f"unsupported cri endpoint {endpoint!r}: only unix sockets are supported", endpoint=endpoint
        )
    return endpoint


def query_runtime(endpoint: str, *, timeout: float = 2.0) -> RuntimeInfo:
    """Call Version and Status(verbose=True) on `endpoint` and decide whether the runtime resolves CDI.

    `timeout` (seconds) bounds both calls together. Raises RuntimeQueryError when the socket is missing,
    the runtime does not answer in time, answers with a gRPC error, or reports unparseable configuration.
    """
    path = socket_path(endpoint)
    _require_socket(path, endpoint)

    import grpc

    from cdi_fuse._proto import cri_pb2, cri_pb2_grpc

    deadline = time.monotonic() + timeout
    method = "Version"
    try:
        with grpc.insecure_channel(f"unix://{os.path.abspath(path)}") as channel:
            stub = cri_pb2_grpc.RuntimeServiceStub(channel)
            version = stub.Version(cri_pb2.VersionRequest(version=_CRI_API_VERSION), timeout=_remaining(deadline))
            method = "Status"
            status = stub.Status(cri_pb2.StatusRequest(verbose=True), timeout=_remaining(deadline))
    except grpc.RpcError as err:
        raise errors.RuntimeQueryError(_rpc_error_message(err, method, endpoint), endpoint=endpoint) from err

    decision = _decide_cdi(version, dict(status.info), endpoint)
    info = RuntimeInfo(
        endpoint=endpoint,
        runtime_name=version.runtime_name,
        runtime_version=version.runtime_version,
        runtime_api_version=version.runtime_api_version,
        cdi_enabled=decision.enabled,
        cdi_spec_dirs=decision.spec_dirs,
        reason=decision.reason,
        cdi_spec_dirs_reported=decision.spec_dirs_reported,
        handlers=tuple(
            RuntimeHandler(h.name, h.features.user_namespaces, h.features.recursive_read_only_mounts)
            for h in status.runtime_handlers
        ),
    )
    _log.debug("runtime at %s: %s", endpoint, info)
    return info


def probe_runtime(endpoints: Sequence[str] = defaults.RUNTIME_ENDPOINTS, *, timeout: float = 2.0) -> RuntimeInfo:
    """Query each endpoint whose socket exists, in order, and return the first answer.

    Raises RuntimeQueryError (endpoint: all tried endpoints, comma-separated) when none answers.
    """
    tried = ", ".join(endpoints)
    last_error: errors.RuntimeQueryError | None = None
    failures: list[str] = []
    for endpoint in endpoints:
        try:
            path = socket_path(endpoint)
        except errors.RuntimeQueryError as err:
            last_error = err
            failures.append(str(err))
            continue
        if not os.path.exists(path):
            failures.append(f"no socket at {path!r}")
            continue
        try:
            return query_runtime(endpoint, timeout=timeout)
        except errors.RuntimeQueryError as err:
            _log.debug("runtime probe: %s", err)
            last_error = err
            failures.append(str(err))
    detail = "; ".join(failures) if failures else "no endpoints given"
    raise errors.RuntimeQueryError(f"no container runtime answered over cri: {detail}", endpoint=tried) from (
        last_error
    )


def _require_socket(path: str, endpoint: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise errors.RuntimeQueryError(f"no cri socket at {path!r}", endpoint=endpoint) from err
    if not stat.S_ISSOCK(mode):
        raise errors.RuntimeQueryError(f"cri endpoint {path!r} is not a socket", endpoint=endpoint)


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _rpc_error_message(err: object, method: str, endpoint: str) -> str:
    import grpc

    code = err.code() if isinstance(err, grpc.Call) else None
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"cri {method} call to {endpoint!r} timed out"
    code_name = code.name.lower() if code is not None else "error"
    return f"cri {method} call to {endpoint!r} failed ({code_name}): {details!r}"


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a runtime version such as "v1.7.24" or "2.1.4~ds1"; None when it has none."""
    match = _VERSION_RE.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


def _runtime_config(info: Mapping[str, str], endpoint: str, *, strict: bool) -> dict[str, object] | None:
    """The JSON object in info["config"], None when absent; garbage raises when `strict`, else is ignored."""
    raw = info.get("config")
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except ValueError as err:
        if not strict:
            return None
        raise errors.RuntimeQueryError(
            f"runtime status info 'config' is not json: {raw[:80]!r}", endpoint=endpoint
        ) from err
    if not isinstance(config, dict):
        if not strict:
            return None
        raise errors.RuntimeQueryError(
            f"runtime status info 'config' is not a json object: {raw[:80]!r}", endpoint=endpoint
        )
    return config


def _spec_dirs(config: Mapping[str, object] | None, endpoint: str) -> tuple[str, ...]:
    dirs = config.get("cdiSpecDirs") if config is not None else None
    if dirs is None:
        return _DEFAULT_SPEC_DIRS
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise errors.RuntimeQueryError(f"cdiSpecDirs is not a list of paths: {dirs!r}", endpoint=endpoint)
    return tuple(dirs)


def _enable_cdi(config: Mapping[str, object] | None, endpoint: str) -> bool | None:
    if config is None or "enableCDI" not in config:
        return None
    value = config["enableCDI"]
    if not isinstance(value, bool):
        raise errors.RuntimeQueryError(f"enableCDI is not a boolean: {value!r}", endpoint=endpoint)
    return value


def _crio_spec_dirs(config: Mapping[str, object] | None, endpoint: str) -> tuple[str, ...] | None:
    """`crio.CDISpecDirs` of a CRI-O status config; None when this CRI-O does not report it.

    JSON null is a nil Go slice: CRI-O then hands the CDI cache no dirs at all, so nothing resolves.
    """
    runtime_config = config.get("crio") if config is not None else None
    if not isinstance(runtime_config, dict) or "CDISpecDirs" not in runtime_config:
        return None
    dirs = runtime_config["CDISpecDirs"]
    if dirs is None:
        return ()
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise errors.RuntimeQueryError(f"crio.CDISpecDirs is not a list of paths: {dirs!r}", endpoint=endpoint)
    return tuple(dirs)


class _Decision(NamedTuple):
    enabled: bool
    spec_dirs: tuple[str, ...]
    reason: str
    spec_dirs_reported: bool = True


def _decide_crio(label: str, release: tuple[int, int] | None, info: Mapping[str, str], endpoint: str) -> _Decision:
    reported = _crio_spec_dirs(_runtime_config(info, endpoint, strict=False), endpoint)
    if reported is None:
        dirs, where = (
            _DEFAULT_SPEC_DIRS,
            "it does not report its cdi spec dirs (cri-o < 1.33): assuming the defaults",
        )
    else:
        dirs, where = reported, "spec dirs from its status (crio.CDISpecDirs)"
    if release is None:
        reason = f"{label}: unparseable version, cannot tell whether cdi is supported"
        return _Decision(False, dirs, reason, reported is not None)
    if release >= _CRIO_FIRST_CDI:
        reason = f"{label}: cri-o >= 1.24 always resolves cdi devices; {where}"
        return _Decision(True, dirs, reason, reported is not None)
    return _Decision(False, dirs, f"{label} predates cdi support (cri-o >= 1.24 needed)", reported is not None)


def _decide_cdi(version: cri_pb2.VersionResponse, info: Mapping[str, str], endpoint: str) -> _Decision:
    name = version.runtime_name.strip().lower()
    release = parse_version(version.runtime_version)
    label = f"{version.runtime_name} {version.runtime_version}".strip()

    if name == "containerd":
        config = _runtime_config(info, endpoint, strict=True)
        dirs = _spec_dirs(config, endpoint)
        reported = config is not None and "cdiSpecDirs" in config
        explicit = _enable_cdi(config, endpoint)
        if explicit is not None:
            return _Decision(
                explicit, dirs, f"{label} reports enableCDI={str(explicit).lower()} in its cri config", reported
            )
        if release is None:
            return _Decision(False, dirs, f"{label}: unparseable version and no enableCDI in its cri config", reported)
        if release >= _CONTAINERD_CDI_DEFAULT_ON:
            return _Decision(
                True, dirs, f"{label} reports no enableCDI; containerd >= 2.0 enables cdi by default", reported
            )
        if release >= _CONTAINERD_FIRST_CDI:
            return _Decision(
                False, dirs, f"{label} reports no enableCDI; containerd 1.7 leaves cdi off by default", reported
            )
        return _Decision(False, dirs, f"{label} predates cdi support (containerd >= 1.7 needed)", reported)

    if name == "cri-o":
        return _decide_crio(label, release, info, endpoint)

    config = _runtime_config(info, endpoint, strict=False)
    explicit = _enable_cdi(config, endpoint)
    dirs = _spec_dirs(config, endpoint)
    reported = config is not None and "cdiSpecDirs" in config
    if explicit is not None:
        return _Decision(
            explicit, dirs, f"{label or 'unnamed runtime'} reports enableCDI={str(explicit).lower()}", reported
        )
    return _Decision(
        False,
        dirs,
        f"unknown runtime {version.runtime_name!r}: cannot tell whether it resolves cdi devices, assuming not",
        reported,
    )
