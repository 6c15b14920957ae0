"""A gRPC service on a unix socket that knows, by the file's identity, whether the socket is still its own.

The serving itself is cdi_fuse.sockets.serve_at (a once-used name renamed into place), as for the device
plugin's endpoints: stopping a server can never delete a successor's socket.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from cdi_fuse import sockets

__all__ = ["ServedSocket", "check_socket_free"]

log = logging.getLogger(__name__)

AddServices = Callable[[grpc.Server], None]


def check_socket_free(path: Path) -> None:
    """Refuse a socket another live process serves; remove a stale one a killed process left behind."""
    sockets.check_socket_free(path, program="cdi-fuse dra")


class ServedSocket:
    """Serve gRPC services on `path`; `is_ours()` compares the file at `path` with the one this serve created.

    `stop()` removes `path` itself only while it is ours, so a restart never deletes a successor's socket.
    """

    def __init__(self, path: Path, add_services: AddServices, *, workers: int = 4) -> None:
        self.path = path
        self._add_services = add_services
        self._workers = workers
        self._server: grpc.Server | None = None
        self._identity: sockets.FileIdentity | None = None

    def serve(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_socket_free(self.path)

        def make_server() -> grpc.Server:
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"grpc-{self.path.stem}"),
                options=[("grpc.so_reuseport", 0)],
            )
            self._add_services(server)
            return server

        self._server = sockets.serve_at(self.path, make_server)
        # None when deleted again at once: the deletion event makes the loop serve it again.
        self._identity = sockets.file_identity(self.path)

    @property
    def serving(self) -> bool:
        return self._server is not None

    def is_ours(self) -> bool:
        return self._identity is not None and sockets.file_identity(self.path) == self._identity

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.2).wait(2.0)
        if self.is_ours():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._server = None
        self._identity = None
