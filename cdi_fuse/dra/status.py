"""What `doctor` can learn about the DRA driver on this node: its registration socket and the kubelet's answer.

The kubelet tells only the plugin whether it registered it (NotifyRegistrationStatus), so the driver keeps
the last answer in <plugins dir>/<driver>/registration.json for others to read.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from cdi_fuse import errors, files
from cdi_fuse._proto import pluginregistration_pb2 as pb
from cdi_fuse._proto import pluginregistration_pb2_grpc as pb_grpc

__all__ = ["STATUS_FILE", "RecordedStatus", "query_registration", "read_status", "write_status"]

STATUS_FILE = "registration.json"


@dataclass(frozen=True)
class RecordedStatus:
    registered: bool
    error: str
    at: float  # time.time() of the kubelet's answer
    pid: int


def write_status(path: Path, *, registered: bool, error: str) -> None:
    """Record the kubelet's answer (best effort: a failure here must not disturb serving)."""
    data = json.dumps(asdict(RecordedStatus(registered, error, time.time(), os.getpid()))).encode()
    with contextlib.suppress(errors.CdiFuseError):
        files.replace_file(path, data, error=_write_error, mode=0o644, what="registration status")


def _write_error(message: str, *, path: Path) -> errors.CdiFuseError:
    return errors.RegistrationError(message, socket=path)


def read_status(path: Path) -> RecordedStatus | None:
    try:
        data = json.loads(path.read_text("utf-8"))
        return RecordedStatus(bool(data["registered"]), str(data["error"]), float(data["at"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def query_registration(socket: Path, *, timeout: float = 2.0) -> pb.PluginInfo:
    """Ask the registration socket for its PluginInfo, as the kubelet's plugin watcher does."""
    try:
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            info: pb.PluginInfo = pb_grpc.RegistrationStub(channel).GetInfo(pb.InfoRequest(), timeout=timeout)
            return info
    except grpc.RpcError as exc:
        raise errors.RegistrationError(
            f"{socket} does not answer GetInfo: {exc.code().name}: {exc.details()}", socket=socket
        ) from exc
