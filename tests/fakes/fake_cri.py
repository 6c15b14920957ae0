"""A fake container runtime: a real gRPC RuntimeService on a unix socket answering Version and Status.

Every other RPC answers UNIMPLEMENTED. Use `serve_fake_cri(...)` for just an endpoint, or `FakeCri` to
also see the requests it received:

    with serve_fake_cri(runtime_name="containerd", runtime_version="v2.0.4",
                        config=containerd_config(enable_cdi=True)) as endpoint:
        info = query_runtime(endpoint)

Sockets live in a fresh short directory under /tmp (AF_UNIX paths are limited to ~107 bytes) that is
removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cdi_fuse._proto import cri_pb2, cri_pb2_grpc

__all__ = [
    "FakeCri",
    "RuntimeAnswers",
    "containerd_config",
    "crio_config",
    "make_stale_socket",
    "serve_fake_cri",
    "short_tmp_dir",
]

SOCKET_NAME = "cri.sock"


def containerd_config(
    *, enable_cdi: bool | None = True, spec_dirs: Sequence[str] | None = ("/etc/cdi", "/var/run/cdi")
) -> dict[str, Any]:
    """A containerd-like CRI config for Status info["config"]; None leaves the key out."""
    config: dict[str, Any] = {"containerd": {"snapshotter": "overlayfs"}, "enableSelinux": False}
    if enable_cdi is not None:
        config["enableCDI"] = enable_cdi
    if spec_dirs is not None:
        config["cdiSpecDirs"] = list(spec_dirs)
    return config


def crio_config(spec_dirs: Any, *, sandbox_image: str = "registry.k8s.io/pause:3.10.1") -> dict[str, Any]:
    """A CRI-O (>= 1.33) Status info["config"]: its runtime config under "crio", Go field names."""
    runtime = {"DefaultRuntime": "crun", "CgroupManagerName": "systemd", "CDISpecDirs": spec_dirs}
    return {"sandboxImage": sandbox_image, "crio": runtime}


@dataclass
class RuntimeAnswers:
    """What the fake says. `config` is JSON-encoded into info["config"]; `info` entries are sent verbatim
    (and win over `config`, so info={"config": "{not json"} sends garbage). `delay` seconds pass before
    each answer."""

    runtime_name: str = "containerd"
    runtime_version: str = "v2.0.4"
    runtime_api_version: str = "v1"
    config: Mapping[str, Any] | None = None
    info: Mapping[str, str] | None = None
    delay: float = 0.0
    # (name, user_namespaces, recursive_read_only_mounts) per runtime handler; none like containerd 1.7
    runtime_handlers: Sequence[tuple[str, bool, bool]] = ()

    def status_info(self) -> dict[str, str]:
        entries: dict[str, str] = {}
        if self.config is not None:
            entries["config"] = json.dumps(self.config)
        entries.update(self.info or {})
        return entries


@dataclass
class _Servicer(cri_pb2_grpc.RuntimeServiceServicer):
    answers: RuntimeAnswers
    stopping: threading.Event
    requests: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, method: str, request: Any) -> None:
        with self.lock:
            self.requests.append((method, request))
        if self.answers.delay:
            self.stopping.wait(self.answers.delay)  # released early when the server stops

    def Version(self, request: cri_pb2.VersionRequest, context: grpc.ServicerContext) -> cri_pb2.VersionResponse:
        self._record("Version", request)
        return cri_pb2.VersionResponse(
            version="0.1.0",
            runtime_name=self.answers.runtime_name,
            runtime_version=self.answers.runtime_version,
            runtime_api_version=self.answers.runtime_api_version,
        )

    def Status(self, request: cri_pb2.StatusRequest, context: grpc.ServicerContext) -> cri_pb2.StatusResponse:
        self._record("Status", request)
        conditions = [
            cri_pb2.RuntimeCondition(type="RuntimeReady", status=True),
            cri_pb2.RuntimeCondition(type="NetworkReady", status=True),
        ]
        return cri_pb2.StatusResponse(
            status=cri_pb2.RuntimeStatus(conditions=conditions),
            info=self.answers.status_info() if request.verbose else {},
            runtime_handlers=[
                cri_pb2.RuntimeHandler(
                    name=name,
                    features=cri_pb2.RuntimeHandlerFeatures(user_namespaces=userns, recursive_read_only_mounts=rro),
                )
                for name, userns, rro in self.answers.runtime_handlers
            ],
        )


def short_tmp_dir(prefix: str = "cdifuse-") -> Path:
    """A new private directory directly under /tmp, short enough for AF_UNIX socket paths."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class FakeCri:
    """A started fake runtime. Use as a context manager; `endpoint` is `unix:///.../cri.sock`."""

    def __init__(self, answers: RuntimeAnswers, directory: Path | None = None) -> None:
        self.answers = answers
        self._own_dir = directory is None
        self.directory = short_tmp_dir() if directory is None else Path(directory)
        self.socket_path = self.directory / SOCKET_NAME
        if len(os.fsencode(self.socket_path)) > 107:
            raise ValueError(f"socket path too long for AF_UNIX: {self.socket_path!r}")
        self._stopping = threading.Event()
        self._servicer = _Servicer(answers, self._stopping)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fake-cri"))
        cri_pb2_grpc.add_RuntimeServiceServicer_to_server(self._servicer, self._server)
        self._server.add_insecure_port(self.endpoint)

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def requests(self) -> list[tuple[str, Any]]:
        """(method, request) pairs in arrival order."""
        with self._servicer.lock:
            return list(self._servicer.requests)

    def start(self) -> FakeCri:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop(grace=None).wait(5)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> FakeCri:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_fake_cri(
    tmp_dir: Path | str | None = None,
    *,
    runtime_name: str = "containerd",
    runtime_version: str = "v2.0.4",
    runtime_api_version: str = "v1",
    config: Mapping[str, Any] | None = None,
    info: Mapping[str, str] | None = None,
    delay: float = 0.0,
    runtime_handlers: Sequence[tuple[str, bool, bool]] = (),
) -> Iterator[str]:
    """Serve a fake runtime and yield its endpoint string. `tmp_dir` must be short; None makes one."""
    answers = RuntimeAnswers(
        runtime_name=runtime_name,
        runtime_version=runtime_version,
        runtime_api_version=runtime_api_version,
        config=config,
        info=info,
        delay=delay,
        runtime_handlers=runtime_handlers,
    )
    with FakeCri(answers, None if tmp_dir is None else Path(tmp_dir)) as fake:
        yield fake.endpoint


def make_stale_socket(path: Path) -> Path:
    """A unix socket file nobody listens on (what a crashed runtime leaves behind)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
    finally:
        sock.close()
    return path
